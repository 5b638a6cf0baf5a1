"""Server-sent events of one streamed response -> the AttemptResult's text, tool calls, usage and
chunk times (pure: no I/O, no clock of its own; `feed(bytes, now)` per network read, `finish(now)`
at the end). SSEStream reads chat completion chunks, TextSSEStream /v1/completions' text chunks.

The hot path is deliberately lean: SSE lines split by hand, one `orjson.loads` per chunk and the
caller's one clock read per network read. Building an SDK object per chunk costs ~100 us and caps
a core at ~100 streamed requests/s; bench/bench_sse.py measures the cost per chunk.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from batchrun.endpoint.attempt import (
    DEFAULT_MAX_RESPONSE_BYTES,
    EMPTY_RESPONSE,
    INCOMPLETE_STREAM,
    MALFORMED_CHUNK,
    RESPONSE_TOO_LARGE,
    STREAM_ERROR,
    AttemptResult,
    error_message,
)
from batchrun.endpoint.toolcalls import ToolCallAssembler
from batchrun.store.records import ERROR, OK

_CR, _LF = 13, 10


class SSEStream:
    """Turns the bytes of one streamed response into the AttemptResult's text, tool calls,
    usage and chunk times. Pure: `feed(bytes, now)` per network read, `finish(now)` at the end.

    The per-chunk path is one orjson.loads (0.7 us against json.loads' 2.7 us for a typical
    chunk) and a few dict lookups for an ordinary content chunk; everything rarer is off it.
    Bytes are handled in linear time: a read without a line end is only kept, and joined once
    its line ends, so a 200 MB line costs one join rather than one copy per read.
    """

    __slots__ = (
        "result",
        "first_output",
        "done",
        "_pending",
        "_parts",
        "_tools",
        "_last",
        "_size",
        "_max_bytes",
        "_others",
        "_reasoning",
    )
    kind: ClassVar[str] = "chat completion"  # what a garbled line is not, in its error message

    def __init__(self, result: AttemptResult, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.result = result
        self.first_output = False  # set when the first output chunk arrives (cleared by the caller)
        self.done = False  # `data: [DONE]` seen
        self._pending: list[bytes] = []  # the start of a line whose end has not arrived
        self._parts: list[str] = []
        self._tools: ToolCallAssembler | None = None
        self._last: float | None = None
        self._size = 0
        self._max_bytes = max_bytes
        self._others: dict[int, list[str]] | None = None
        self._reasoning: list[str] | None = None

    def _lines(self, piece: bytes) -> list[bytes] | None:
        """The lines this network read completes (a line still open is kept for the next read);
        None once the response has grown past the cap. Called per read, not per chunk."""
        self._size += len(piece)
        if self._size > self._max_bytes:
            return None
        # `13 in piece` (an int) is a memchr; `b"\r" in piece` costs 6x as much per read.
        if _CR in piece:  # SSE allows CRLF, LF and a bare CR as line ends
            piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._pending:  # a line began in an earlier read: join it once it ends
            self._pending.append(piece)
            if _LF not in piece:
                return []
            piece = b"".join(self._pending)
            self._pending = []
        lines = piece.split(b"\n")
        tail = lines.pop()
        if tail:
            self._pending.append(tail)
        return lines

    def feed(self, piece: bytes, now: float) -> bool:
        """Process one network read that arrived at `now`; True once the stream is over."""
        lines = self._lines(piece)
        if lines is None:
            return self._too_large()
        result, loads = self.result, orjson.loads
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, `event:` lines and `: keep-alive` comments
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                return True
            # One try around the whole chunk: JSON of the wrong shape (`"choices": "x"`, a
            # number for content) is a garbled stream like invalid JSON, never a crash.
            try:
                chunk = loads(data)
                choices = chunk.get("choices")
                if choices:
                    choice = choices[0]
                    if choice.get("index") or len(choices) > 1:
                        for choice in choices:  # n > 1: each by its index
                            self._choice(chunk, choice, now)
                    else:  # the common case, inline
                        delta = choice.get("delta")
                        if delta:
                            content = delta.get("content")
                            if content and content.__class__ is str and "tool_calls" not in delta:
                                self._output(chunk, content, None, now)
                            else:
                                self._delta(chunk, delta, now)
                        else:  # chat's finish chunk; every text chunk
                            self._no_delta(chunk, choice, now)
                        if choice.get("finish_reason"):
                            result.finish_reason = choice["finish_reason"]
                elif chunk.get("error"):
                    result.fail(ERROR, STREAM_ERROR, error_message(chunk["error"]))
                    return True
                if chunk.get("usage"):  # on any chunk, whatever its choices hold; the last one wins
                    _read_usage(chunk, result)
                    result.usage_chunk = usage_place(choices)
                elif result.model is None and not choices:
                    result.model = chunk.get("model") or None
            except (ValueError, AttributeError, TypeError, KeyError, IndexError):
                result.fail(ERROR, MALFORMED_CHUNK, f"a stream line is not a {self.kind} chunk: {data[:80]!r}")
                return True
        return False

    def _too_large(self) -> bool:
        self._pending = []
        self.result.fail(
            ERROR,
            RESPONSE_TOO_LARGE,
            f"the response grew past {self._max_bytes} bytes (--max-response-bytes); it was cut there",
        )
        return True

    def _choice0(self, chunk: dict[str, Any], choice: dict[str, Any], now: float) -> None:
        """Choice 0 (what `feed` does inline for a one-choice chunk)."""
        delta = choice.get("delta")
        if delta:
            self._delta(chunk, delta, now)
        else:
            self._no_delta(chunk, choice, now)
        if choice.get("finish_reason"):
            self.result.finish_reason = choice["finish_reason"]

    def _no_delta(self, chunk: dict[str, Any], choice: dict[str, Any], now: float) -> None:
        """Choice 0 with no (or an empty) delta: nothing to read in chat; TextSSEStream reads `text`."""

    def _delta(self, chunk: dict[str, Any], delta: dict[str, Any], now: float) -> None:
        """Choice 0's delta: content and tool calls are the answer, reasoning is kept apart."""
        content = delta.get("content")
        calls = delta.get("tool_calls")
        if content or calls:
            if content is not None and content.__class__ is not str:
                raise TypeError("content is not text")
            self._output(chunk, content, calls, now)
        elif delta.get("reasoning_content") or delta.get("reasoning"):
            self._reasoning_delta(chunk, delta, now)

    def _choice(self, chunk: dict[str, Any], choice: dict[str, Any], now: float) -> None:
        """One of several choices (n > 1), taken by its `index`, never by its position."""
        index = choice.get("index") or 0
        if index != 0:
            self._other_choice(index, choice)
        else:
            self._choice0(chunk, choice, now)

    def _other_choice(self, index: int, choice: dict[str, Any]) -> None:
        """n > 1: choices other than the first keep their own text, by `index`, not position."""
        if not isinstance(index, int) or index < 0 or index > 1024:
            raise ValueError("bad choice index")
        content = (choice.get("delta") or {}).get("content")
        if content:
            if not isinstance(content, str):
                raise TypeError("content is not text")
            if self._others is None:
                self._others = {}
            self._others.setdefault(index, []).append(content)

    def _reasoning_delta(self, chunk: dict[str, Any], delta: dict[str, Any], now: float) -> None:
        text = delta.get("reasoning_content") or delta.get("reasoning")
        if not isinstance(text, str):
            raise TypeError("reasoning is not text")
        if self._reasoning is None:
            self._reasoning = []
        self._reasoning.append(text)
        self._tick(chunk, now)

    def _tick(self, chunk: dict[str, Any], now: float) -> float:
        """An output chunk (reasoning or answer) arrived at `now`: TTFT and ITL; seconds since send."""
        result = self.result
        if self._last is None:
            result.ttft_s = now - result.sent
            result.model = chunk.get("model")
            self.first_output = True
        else:
            result.itl_s.append(now - self._last)
        self._last = now
        return now - result.sent

    def _output(self, chunk: dict[str, Any], content: str | None, calls: Any, now: float) -> None:
        result = self.result
        if result.first_content_s is not None and calls is None:  # the per-chunk path
            result.itl_s.append(now - self._last)  # type: ignore[operator]
            self._last = now
            self._parts.append(content)  # type: ignore[arg-type]
            return
        since_send = now - result.sent
        if self._last is None or result.ttfo_s is None:
            since_send = self._tick(chunk, now)
            result.ttfo_s = since_send
        else:
            result.itl_s.append(now - self._last)
            self._last = now
        if content:
            self._parts.append(content)
            if result.first_content_s is None:
                result.first_content_s = since_send
        if calls:
            if self._tools is None:
                self._tools = ToolCallAssembler()
                result.first_tool_call_s = since_send
            self._tools.add(calls)

    def finish(self, now: float) -> None:
        """The response ended at `now` (or was abandoned): settle totals and the outcome."""
        result = self.result
        if self._pending and not self.done:  # the last line may come without its line end
            last = b"".join(self._pending).strip()
            if last.startswith(b"data:") and last[5:].strip() == b"[DONE]":
                self.done = True
        self._pending = []
        result.total_s = now - result.sent
        result.output_chunks = 0 if self._last is None else len(result.itl_s) + 1
        result.text = "".join(self._parts)
        if self._reasoning is not None:
            result.reasoning_text = "".join(self._reasoning)
        if self._others is not None:
            top = max(self._others)
            result.other_choices = ["".join(self._others.get(i, ())) for i in range(1, top + 1)]
        if self._tools is not None:
            result.tool_calls = self._tools.calls()
        if self._last is not None:
            result.latency_s = self._last - result.sent
        if result.status != OK:
            return
        if not self.done:
            result.fail(ERROR, INCOMPLETE_STREAM, "the stream ended without `data: [DONE]`")
        elif result.ttfo_s is None and result.finish_reason is None:
            # No answer and no finish_reason: nothing says the server meant to end there. With a
            # finish_reason the server ended the answer itself (a stop sequence on the first token,
            # max_tokens spent on reasoning): an ok, empty answer (Record.empty).
            what = "reasoning but no answer" if self._last is not None else "no content or tool call"
            result.fail(ERROR, EMPTY_RESPONSE, f"the stream finished with {what} and no finish_reason")


class TextSSEStream(SSEStream):
    """SSEStream for /v1/completions' `text_completion` chunks: `{"choices": [{"text": "...",
    "finish_reason": ...}]}`. Only where the text sits differs from chat: line framing, the
    response cap, timing (TTFT, ITL), usage, errors, choices by index and the end-of-stream rules
    are SSEStream's own (its `feed` hands a choice without a delta to `_no_delta`, which is where
    a text chunk's `text` is read)."""

    __slots__ = ()
    kind: ClassVar[str] = "text completion"

    def _no_delta(self, chunk: dict[str, Any], choice: dict[str, Any], now: float) -> None:
        text = choice.get("text")
        if text:
            if not isinstance(text, str):
                raise TypeError("text is not a string")
            self._output(chunk, text, None, now)

    def _other_choice(self, index: int, choice: dict[str, Any]) -> None:
        """n > 1: only choice 0's text is read; the other choices' text is not kept."""


def usage_place(choices: Any) -> str:
    """Which chunk carried usage, from that chunk's choices: `finish` (the one with finish_reason),
    `content` (an output chunk), else `trailing` (a chunk of its own: no choices, or an empty
    delta as LiteLLM sends). Off the per-chunk path: called once per usage chunk."""
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    if choice.get("finish_reason"):
        return "finish"
    delta = choice.get("delta") or {}
    if (isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls"))) or choice.get("text"):
        return "content"
    return "trailing"


def _read_usage(chunk: dict[str, Any], result: AttemptResult) -> None:
    usage = chunk["usage"]
    # Only whole numbers: a string here would break every sum in the summary later.
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    result.prompt_tokens = prompt if type(prompt) is int else None
    result.completion_tokens = completion if type(completion) is int else None
    details = usage.get("completion_tokens_details")
    if isinstance(details, dict) and type(details.get("reasoning_tokens")) is int:
        result.reasoning_tokens = details["reasoning_tokens"]
    result.cached_tokens = _cached_tokens(usage, chunk.get("timings"))
    if result.model is None:
        result.model = chunk.get("model")


def _cached_tokens(usage: dict[str, Any], timings: Any) -> int | None:
    """Prompt tokens served from the server's prompt cache: OpenAI's and vLLM's
    usage.prompt_tokens_details.cached_tokens, else llama-server's timings.cache_n (sent in the
    same final chunk as its usage); None when the server does not say."""
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and type(details.get("cached_tokens")) is int:
        return details["cached_tokens"]
    if isinstance(timings, dict) and type(timings.get("cache_n")) is int and timings["cache_n"] >= 0:
        return timings["cache_n"]
    return None
