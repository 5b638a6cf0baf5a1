"""One streamed chat request -> one timed AttemptResult. Never raises for a request failure.

The hot path is deliberately lean: aiohttp, SSE lines split by hand, one
`orjson.loads` per chunk and a clock read per network read. Building an SDK object per
chunk costs ~100 us and caps a core at ~100 streamed requests/s (see
shared/PERF-FACTS.md); the openai package gives us configuration, auth headers
and the names of its error types instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import aiohttp
import openai
import orjson

from batchrun.store.records import CANCELLED, ERROR, OK, TIMEOUT
from batchrun.redact import redact
from batchrun.engine.tools import ToolCallAssembler

Clock = Callable[[], float]

# Our own error types, for failures the openai SDK has no class for.
INCOMPLETE_STREAM = "IncompleteStream"   # connection closed before `data: [DONE]`
MALFORMED_CHUNK = "MalformedChunk"       # a `data:` line that is not JSON
STREAM_ERROR = "StreamError"             # `data: {"error": ...}` inside a 200 stream
EMPTY_RESPONSE = "EmptyResponse"         # the stream finished with no output at all
TIMEOUT_ERROR = openai.APITimeoutError.__name__
CONNECTION_ERROR = openai.APIConnectionError.__name__

_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}
_MAX_ERROR_BODY = 64 * 1024
_MAX_MESSAGE = 500


def status_error_type(status: int) -> str:
    """The openai SDK's exception name for an HTTP status, as the SDK would raise it."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status].__name__
    return (openai.InternalServerError if status >= 500 else openai.APIStatusError).__name__


@dataclass(frozen=True)
class Endpoint:
    """Where requests go and how they authenticate; the key never reaches a repr or a record."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    embedded: bool = False                 # the built-in simulated endpoint

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,) if self.api_key else ()

    def headers(self) -> dict[str, str]:
        """The SDK's own default headers plus auth, without building a client per request."""
        sdk = openai.OpenAI(api_key=self.api_key or "not-needed", base_url=self.base_url)
        try:
            headers = {k: v for k, v in sdk.default_headers.items() if isinstance(v, str)}
        finally:
            sdk.close()
        headers["Accept"] = "text/event-stream"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        else:
            headers.pop("Authorization", None)
        return headers


@dataclass(slots=True)
class AttemptResult:
    """What one HTTP attempt produced; times are seconds on the injected monotonic clock."""

    sent: float                            # clock value when the request was sent
    status: str = OK
    http_status: int | None = None
    error_type: str | None = None
    error: str | None = None
    retry_after_s: float | None = None
    request_id: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None            # send -> first output chunk (content or tool-call delta)
    first_content_s: float | None = None   # send -> first content chunk
    first_tool_call_s: float | None = None  # send -> first tool-call delta
    latency_s: float | None = None         # send -> last output chunk
    total_s: float | None = None           # send -> end of the response
    itl_s: list[float] = field(default_factory=list)
    output_chunks: int = 0
    endpoint: str | None = None            # which endpoint answered, with several (--base-url A --base-url B)

    def fail(self, status: str, error_type: str, message: str) -> "AttemptResult":
        self.status, self.error_type, self.error = status, error_type, message[:_MAX_MESSAGE]
        return self


@dataclass
class StreamClient:
    """Sends one streamed chat request at a time over a shared aiohttp session."""

    session: aiohttp.ClientSession
    endpoint: Endpoint
    timeout_s: float | None = 600.0        # whole request
    ttft_timeout_s: float | None = None    # first output chunk
    clock: Clock = time.perf_counter
    _headers: dict[str, str] = field(init=False)
    path: ClassVar[str] = "/chat/completions"   # class attributes: a subclass serves another endpoint
    stream_class: ClassVar[Any] = None              # the SSE parser class; SSEStream (set below the class)

    def __post_init__(self) -> None:
        self._headers = self.endpoint.headers()
        self._url = self.endpoint.base_url.rstrip("/") + self.path

    async def send(self, body: bytes, result: AttemptResult | None = None) -> AttemptResult:
        """Stream one request; every failure becomes a result, only cancellation propagates
        (pass `result` to keep what a cancelled request had received)."""
        result = AttemptResult(sent=self.clock()) if result is None else result
        try:
            await self._send_timed(body, result)
        except asyncio.CancelledError:
            result.fail(CANCELLED, "Cancelled", "cancelled before the response finished")
            raise
        except TimeoutError:
            self._timed_out(result)
        except aiohttp.ClientPayloadError as exc:
            result.fail(ERROR, INCOMPLETE_STREAM, f"the stream ended early: {exc}")
        except (aiohttp.ServerDisconnectedError, ConnectionResetError) as exc:
            result.fail(ERROR, INCOMPLETE_STREAM if result.output_chunks else CONNECTION_ERROR,
                        f"the server closed the connection: {exc}")
        except aiohttp.ClientConnectorError as exc:
            result.fail(ERROR, CONNECTION_ERROR, f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}")
        except (aiohttp.ClientError, OSError) as exc:
            result.fail(ERROR, CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")
        except ValueError as exc:   # aiohttp: a line longer than its buffer
            result.fail(ERROR, MALFORMED_CHUNK, f"unreadable stream: {exc}")
        if result.total_s is None:
            result.total_s = self.clock() - result.sent
        if result.error:
            result.error = redact(result.error, self.endpoint.secrets)
        return result

    def _timed_out(self, result: AttemptResult) -> None:
        if result.ttft_s is None and self.ttft_timeout_s is not None:
            elapsed = self.clock() - result.sent
            if self.timeout_s is None or elapsed < self.timeout_s - 1e-3:
                result.fail(TIMEOUT, TIMEOUT_ERROR, f"no first token within {self.ttft_timeout_s:g}s (--ttft-timeout)")
                return
        result.fail(TIMEOUT, TIMEOUT_ERROR, f"the request took longer than {self.timeout_s:g}s (--timeout)")

    async def _send_timed(self, body: bytes, result: AttemptResult) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Before the first token both bounds apply: the TTFT one, and the whole-request one.
        bounds = [b for b in (self.ttft_timeout_s, self.timeout_s) if b is not None]
        first_deadline = min(bounds) if bounds else None
        async with asyncio.timeout_at(None if first_deadline is None else start + first_deadline) as deadline:
            async with self.session.post(self._url, data=body, headers=self._headers) as resp:
                result.http_status = resp.status
                result.request_id = resp.headers.get("x-request-id")
                if resp.status != 200:
                    await self._read_error(resp, result)
                    return
                await self._read_stream(resp, result, deadline, start)

    async def _read_stream(self, resp: aiohttp.ClientResponse, result: AttemptResult,
                           deadline: asyncio.Timeout, start: float) -> None:
        # One clock read per network read (events that arrived together share their arrival
        # time), and the lines split here rather than by aiohttp's per-line readline.
        stream = self.stream_class(result)
        clock = self.clock
        try:
            async for piece in resp.content.iter_any():
                done = stream.feed(piece, clock())
                if stream.first_output:
                    stream.first_output = False
                    if self.ttft_timeout_s is not None:   # swap the TTFT deadline for the whole-request one
                        deadline.reschedule(None if self.timeout_s is None else start + self.timeout_s)
                if done:
                    break
        finally:
            # Also on a timeout, a cut or a cancellation: keep the partial text and timings
            # (the caller then sets the outcome, which finish() never overrides).
            stream.finish(clock())

    async def _read_error(self, resp: aiohttp.ClientResponse, result: AttemptResult) -> None:
        raw = await resp.content.read(_MAX_ERROR_BODY)
        result.retry_after_s = retry_after(resp.headers)
        try:
            message = _error_message(json.loads(raw).get("error"))
        except (ValueError, AttributeError):
            # A proxy's HTML page or plain text: show its start, not the whole page.
            message = " ".join(raw.decode("utf-8", "replace").split())[:200] or "(empty body)"
        result.fail(ERROR, status_error_type(resp.status), f"HTTP {resp.status}: {message}")


class SSEStream:
    """Turns the bytes of one streamed response into the AttemptResult's text, tool calls,
    usage and chunk times. Pure: `feed(bytes, now)` per network read, `finish(now)` at the end.

    The per-chunk path is one orjson.loads (0.7 us against json.loads' 2.7 us for a typical
    chunk) and a few dict lookups for an ordinary content chunk; everything rarer is off it.
    """

    __slots__ = ("result", "first_output", "done", "_tail", "_parts", "_tools", "_last")

    def __init__(self, result: AttemptResult) -> None:
        self.result = result
        self.first_output = False       # set when the first output chunk arrives (cleared by the caller)
        self.done = False               # `data: [DONE]` seen
        self._tail = b""
        self._parts: list[str] = []
        self._tools: ToolCallAssembler | None = None
        self._last: float | None = None

    def feed(self, piece: bytes, now: float) -> bool:
        """Process one network read that arrived at `now`; True once the stream is over."""
        lines = (self._tail + piece).split(b"\n") if self._tail else piece.split(b"\n")
        self._tail = lines.pop()
        result, loads = self.result, orjson.loads
        for line in lines:
            if not line.startswith(b"data:"):
                continue            # blank separators, `event:` lines and `: keep-alive` comments
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
                    delta = choice.get("delta")
                    if delta:
                        content = delta.get("content")
                        calls = delta.get("tool_calls")
                        if content or calls:
                            if content is not None and not isinstance(content, str):
                                raise TypeError("content is not text")
                            self._output(chunk, content, calls, now)
                    if choice.get("finish_reason"):
                        result.finish_reason = choice["finish_reason"]
                        _read_usage(chunk, result)      # some servers put usage on the finish chunk
                elif chunk.get("error"):
                    result.fail(ERROR, STREAM_ERROR, _error_message(chunk["error"]))
                    return True
                else:
                    _read_usage(chunk, result)
            except (ValueError, AttributeError, TypeError, KeyError, IndexError):
                result.fail(ERROR, MALFORMED_CHUNK, f"a stream line is not a chat completion chunk: {data[:80]!r}")
                return True
        return False

    def _output(self, chunk: dict[str, Any], content: str | None, calls: Any, now: float) -> None:
        result = self.result
        since_send = now - result.sent
        if self._last is None:
            result.ttft_s = since_send
            result.model = chunk.get("model")
            self.first_output = True
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
        if self._tail.strip() == b"data: [DONE]":      # the last line may come without its newline
            self.done = True
        result.total_s = now - result.sent
        result.output_chunks = 0 if self._last is None else len(result.itl_s) + 1
        result.text = "".join(self._parts)
        if self._tools is not None:
            result.tool_calls = self._tools.calls()
        if self._last is not None:
            result.latency_s = self._last - result.sent
        if result.status != OK:
            return
        if not self.done:
            result.fail(ERROR, INCOMPLETE_STREAM, "the stream ended without `data: [DONE]`")
        elif self._last is None:
            result.fail(ERROR, EMPTY_RESPONSE, "the stream finished without any content or tool call")


StreamClient.stream_class = SSEStream


def _read_usage(chunk: dict[str, Any], result: AttemptResult) -> None:
    usage = chunk.get("usage")
    if usage:
        # Only whole numbers: a string here would break every sum in the summary later.
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        result.prompt_tokens = prompt if type(prompt) is int else None
        result.completion_tokens = completion if type(completion) is int else None
    if result.model is None:
        result.model = chunk.get("model")


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or error)
    return str(error)


def retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms` first, then `retry-after` in seconds."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue            # an HTTP-date: rare from LLM providers, ignored in favour of backoff
        if seconds >= 0:
            return seconds
    return None


def make_session(concurrency: int, connect_timeout_s: float = 30.0) -> aiohttp.ClientSession:
    """A session whose pool fits the concurrency; a generous connect timeout, since a busy
    client loop makes healthy connects look slow (the SDK's 5 s fires under load)."""
    connector = aiohttp.TCPConnector(limit=max(concurrency, 1), limit_per_host=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, read_bufsize=2**18)
