"""One streamed chat request -> one timed AttemptResult. Never raises for a request failure.

The hot path is deliberately lean: aiohttp, SSE lines split by hand, one
`orjson.loads` per chunk and a clock read per network read. Building an SDK object per
chunk costs ~100 us and caps a core at ~100 streamed requests/s (the
openai SDK's AsyncOpenAI, measured on a 2-core machine); we send the openai SDK's default
headers and use the names of its error types instead, both spelled out here so a run never imports the SDK.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Callable, ClassVar, Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import orjson

from batchrun.store.records import CANCELLED, ERROR, OK, TIMEOUT
from batchrun.redact import host_and_port, query_secrets, redact
from batchrun.endpoint.hints import retry_wait_s
from batchrun.endpoint.reconnect import PoolConnector, closed_before_response, connection_reused, fresh_connection
from batchrun.endpoint.sdk_headers import sdk_default_headers
from batchrun.engine.tools import ToolCallAssembler

Clock = Callable[[], float]

# Our own error types, for failures the openai SDK has no class for.
INCOMPLETE_STREAM = "IncompleteStream"   # connection closed before `data: [DONE]`
MALFORMED_CHUNK = "MalformedChunk"       # a `data:` line that is not JSON
STREAM_ERROR = "StreamError"             # `data: {"error": ...}` inside a 200 stream
EMPTY_RESPONSE = "EmptyResponse"         # the stream finished with no answer and no finish_reason
RESPONSE_TOO_LARGE = "ResponseTooLarge"  # the response grew past --max-response-bytes
# The openai SDK's exception names, spelled out so a run does not import the SDK (~0.4 s) just for
# them; tests/test_lazy_imports.py pins them to the SDK's classes.
TIMEOUT_ERROR = "APITimeoutError"
CONNECTION_ERROR = "APIConnectionError"

_STATUS_ERRORS: dict[int, str] = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}
_MAX_ERROR_BODY = 64 * 1024
_MAX_MESSAGE = 500
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def status_error_type(status: int) -> str:
    """The openai SDK's exception name for an HTTP status, as the SDK would raise it."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    return "InternalServerError" if status >= 500 else "APIStatusError"


@dataclass(frozen=True)
class Endpoint:
    """Where requests go and how they authenticate; no secret reaches a repr, a record or a message.

    `base_url` never holds credentials: `user:password@` in a configured URL is taken out by
    `Endpoint.of` and sent as HTTP Basic auth (as the openai SDK's httpx does with such a URL).
    """

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    embedded: bool = False                 # the built-in simulated endpoint
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, url: str, api_key: str | None = None, *, embedded: bool = False) -> "Endpoint":
        """An endpoint from a configured URL, credentials in it split off into `basic_auth`."""
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return cls(url, api_key, embedded)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
        clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        auth = (unquote(parts.username or ""), unquote(parts.password or ""))
        return cls(clean, api_key, embedded, auth)

    def url(self, path: str) -> str:
        """`base_url` + "/" + `path`, before any query (`?api_key=` of some gateways) it has."""
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + path))

    @functools.cached_property
    def chat_url(self) -> str:
        return self.url("chat/completions")

    @functools.cached_property
    def secrets(self) -> tuple[str, ...]:
        """What a provider must never get written back: the key, URL credentials (as sent: the
        Basic token too) and key-like query values of the base URL (`?api_key=`)."""
        found = [self.api_key] if self.api_key else []
        if self.basic_auth is not None:
            user, password = self.basic_auth
            found += [password, f"{user}:{password}", self._basic_token()]
        found += query_secrets(self.base_url)
        return tuple(dict.fromkeys(s for s in found if s))

    @property
    def display_url(self) -> str:
        """The URL as it may be shown and written: secrets masked, `***:***@` where credentials were."""
        url = self.base_url
        if self.basic_auth is not None:
            scheme, sep, rest = url.partition("://")
            url = f"{scheme}{sep}***:***@{rest}"
        return redact(url, self.secrets)

    def _basic_token(self) -> str:
        assert self.basic_auth is not None
        return base64.b64encode(":".join(self.basic_auth).encode()).decode()

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header: Basic from URL credentials (they win, as in the SDK), else Bearer."""
        if self.basic_auth is not None:
            return {"Authorization": f"Basic {self._basic_token()}"}
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def headers(self) -> dict[str, str]:
        """The openai SDK's default headers plus auth (streaming: Accept text/event-stream)."""
        headers = sdk_default_headers()
        headers["Accept"] = "text/event-stream"
        headers.update(self.auth_headers())
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
    reasoning_tokens: int | None = None    # usage.completion_tokens_details.reasoning_tokens
    cached_tokens: int | None = None       # usage.prompt_tokens_details.cached_tokens (llama-server: timings.cache_n)
    usage_chunk: str | None = None         # where usage came: trailing, finish or content (see usage_place)
    reasoning_text: str = ""               # `reasoning_content` / `reasoning` deltas
    other_choices: list[str] | None = None  # n > 1: the texts of choices 1.. by their `index`
    ttft_s: float | None = None            # send -> first output chunk (reasoning, content or tool call)
    ttfo_s: float | None = None            # send -> first answer chunk (content or tool call, not reasoning)
    first_content_s: float | None = None   # send -> first content chunk
    first_tool_call_s: float | None = None  # send -> first tool-call delta
    latency_s: float | None = None         # send -> last output chunk
    total_s: float | None = None           # send -> end of the response
    itl_s: list[float] = field(default_factory=list)
    output_chunks: int = 0
    secrets: tuple[str, ...] = ()          # redacted from `error` before it is cut to length
    endpoint: str | None = None            # which endpoint answered, with several (--base-url A --base-url B)
    reconnects: int = 0                    # re-sends after a dead pooled connection (not attempts)

    def fail(self, status: str, error_type: str, message: str) -> "AttemptResult":
        # Redact first: a key echoed past the cut point must not leave its first characters behind.
        message = redact(message, self.secrets)
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
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    wall_clock: Clock = time.time          # for retry-after HTTP dates only
    on_headers: Callable[[Any], None] | None = None   # sees every response's headers as they arrive
    _headers: dict[str, str] = field(init=False)
    path: ClassVar[str] = "/chat/completions"   # class attributes: a subclass serves another endpoint
    stream_class: ClassVar[Any] = None              # the SSE parser class; SSEStream (set below the class)

    def __post_init__(self) -> None:
        self._headers = self.endpoint.headers()
        self._url = self.endpoint.url(self.path.lstrip("/"))

    async def send(self, body: bytes, result: AttemptResult | None = None, *,
                   avoid: Sequence[str] = ()) -> AttemptResult:
        """Stream one request; every failure becomes a result, only cancellation propagates
        (pass `result` to keep what a cancelled request had received). `avoid` (endpoints that
        failed this row) matters only to a MultiClient: one endpoint has nowhere else to send.

        A request that met a pooled connection the server had already closed is sent again at
        once on a new connection (endpoint/reconnect.py): `result.reconnects` is then 1, and
        `result.sent` and every time in `result` are the re-send's."""
        result = AttemptResult(sent=self.clock()) if result is None else result
        result.secrets = self.endpoint.secrets
        while True:
            try:
                if result.reconnects:
                    with fresh_connection():
                        await self._send_timed(body, result)
                else:
                    await self._send_timed(body, result)
            except asyncio.CancelledError:
                result.fail(CANCELLED, "Cancelled", "cancelled before the response finished")
                raise
            except TimeoutError:
                self._timed_out(result)
            except aiohttp.ClientPayloadError as exc:
                result.fail(ERROR, INCOMPLETE_STREAM, f"the stream ended early: {exc}")
            except aiohttp.ClientConnectorError as exc:
                result.fail(ERROR, CONNECTION_ERROR, f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}")
            except (aiohttp.ServerDisconnectedError, ConnectionResetError) as exc:
                if self._resend(exc, result):
                    continue
                result.fail(ERROR, INCOMPLETE_STREAM if result.output_chunks else CONNECTION_ERROR,
                            f"the server closed the connection: {exc}")
            except (aiohttp.ClientError, OSError) as exc:
                if self._resend(exc, result):
                    continue
                result.fail(ERROR, CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")
            except ValueError as exc:   # aiohttp: a header line longer than its buffer
                result.fail(ERROR, MALFORMED_CHUNK, f"unreadable stream: {exc}")
            break
        if result.total_s is None:
            result.total_s = self.clock() - result.sent
        return result

    def _resend(self, exc: BaseException, result: AttemptResult) -> bool:
        """True (and the result reset to a new send) when `exc` met a dead pooled connection
        before any response came: the request goes out again at once, on a new connection, not
        as a retry. Once per attempt: that new connection is never a reused one."""
        if (result.reconnects or result.http_status is not None or not connection_reused()
                or not closed_before_response(exc)):
            return False
        result.reconnects = 1
        # The clock restarts: the time lost on the dead connection is neither this send's
        # latency nor queue wait (the caller measured that up to the first send).
        result.sent = self.clock()
        return True

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
            # Never follow a redirect: a 301/302 turns the POST into a GET, whose answer is not this request's.
            async with self.session.post(self._url, data=body, headers=self._headers, allow_redirects=False) as resp:
                result.http_status = resp.status
                result.request_id = resp.headers.get("x-request-id")
                if self.on_headers is not None:
                    self.on_headers(resp.headers)
                if resp.status != 200:
                    await self._read_error(resp, result)
                    return
                await self._read_stream(resp, result, deadline, start)

    async def _read_stream(self, resp: aiohttp.ClientResponse, result: AttemptResult,
                           deadline: asyncio.Timeout, start: float) -> None:
        # One clock read per network read (events that arrived together share their arrival
        # time), and the lines split here rather than by aiohttp's per-line readline.
        stream = self.stream_class(result, self.max_response_bytes)
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
        raw = await read_capped(resp.content, _MAX_ERROR_BODY)
        result.retry_after_s = retry_wait_s(resp.headers, self.wall_clock())
        fail_status(result, resp.status, raw, resp.headers.get("Content-Type", ""), resp.headers.get("Location"))


def fail_status(result: AttemptResult, status: int, raw: bytes, content_type: str = "",
                location: str | None = None) -> AttemptResult:
    """Classify a non-200 response from its status and body (shared with the sync baseline)."""
    if 300 <= status < 400:
        return result.fail(ERROR, status_error_type(status), f"HTTP {status}: {redirect_text(location)}")
    return result.fail(ERROR, status_error_type(status),
                       f"HTTP {status}: {error_body_text(raw[:_MAX_ERROR_BODY], content_type)}")


def redirect_text(location: str | None) -> str:
    """What a redirect of a POST means, for a person: where it points (host and port only: its
    path or query may carry a signed token) and what to do."""
    where = f"to {host_and_port(location)}" if location else "(without a Location)"
    return (f"the endpoint redirects this request {where}; batchrun does not follow redirects on POST "
            "(after a 301 or 302 the request would arrive as a GET, and the key could go to another host): "
            "set --base-url to the final URL")


async def read_capped(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to `limit` bytes, however many writes the server split it into."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        part = await content.read(limit - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def error_body_text(raw: bytes, content_type: str = "") -> str:
    """What an error body says, for a person: the `error.message` of a JSON body, the visible
    text of an HTML page (a proxy's 502), or the start of plain text."""
    text = raw.decode("utf-8", "replace")
    try:
        return _error_message(json.loads(text).get("error") or json.loads(text))
    except (ValueError, AttributeError):
        pass
    if "html" in content_type.lower() or text.lstrip()[:1] == "<":
        text = _HTMLText.of(text)
    return " ".join(text.split())[:300] or "(empty body)"


class _HTMLText(HTMLParser):
    """The visible text of an HTML page: no tags, comments, scripts or styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    @classmethod
    def of(cls, page: str) -> str:
        parser = cls()
        parser.feed(page)
        parser.close()
        return " ".join(parser.parts)

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(data.strip())


_CR, _LF = 13, 10


class SSEStream:
    """Turns the bytes of one streamed response into the AttemptResult's text, tool calls,
    usage and chunk times. Pure: `feed(bytes, now)` per network read, `finish(now)` at the end.

    The per-chunk path is one orjson.loads (0.7 us against json.loads' 2.7 us for a typical
    chunk) and a few dict lookups for an ordinary content chunk; everything rarer is off it.
    Bytes are handled in linear time: a read without a line end is only kept, and joined once
    its line ends, so a 200 MB line costs one join rather than one copy per read.
    """

    __slots__ = ("result", "first_output", "done", "_pending", "_parts", "_tools",
                 "_last", "_size", "_max_bytes", "_others", "_reasoning")
    kind: ClassVar[str] = "chat completion"     # what a garbled line is not, in its error message

    def __init__(self, result: AttemptResult, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.result = result
        self.first_output = False       # set when the first output chunk arrives (cleared by the caller)
        self.done = False               # `data: [DONE]` seen
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
        if _CR in piece:                # SSE allows CRLF, LF and a bare CR as line ends
            piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._pending:               # a line began in an earlier read: join it once it ends
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
                    if choice.get("index") or len(choices) > 1:
                        for choice in choices:              # n > 1: each by its index
                            self._choice(chunk, choice, now)
                    else:                                   # the common case, inline
                        delta = choice.get("delta")
                        if delta:
                            content = delta.get("content")
                            if content and content.__class__ is str and "tool_calls" not in delta:
                                self._output(chunk, content, None, now)
                            else:
                                self._delta(chunk, delta, now)
                        else:                               # chat's finish chunk; every text chunk
                            self._no_delta(chunk, choice, now)
                        if choice.get("finish_reason"):
                            result.finish_reason = choice["finish_reason"]
                elif chunk.get("error"):
                    result.fail(ERROR, STREAM_ERROR, _error_message(chunk["error"]))
                    return True
                if chunk.get("usage"):      # on any chunk, whatever its choices hold; the last one wins
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
        self.result.fail(ERROR, RESPONSE_TOO_LARGE, f"the response grew past {self._max_bytes} bytes "
                         "(--max-response-bytes); it was cut there")
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
        if result.first_content_s is not None and calls is None:     # the per-chunk path
            result.itl_s.append(now - self._last)                     # type: ignore[operator]
            self._last = now
            self._parts.append(content)                               # type: ignore[arg-type]
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
        if self._pending and not self.done:     # the last line may come without its line end
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


StreamClient.stream_class = SSEStream


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


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error.get("code") or error)
    return str(error)


def make_session(concurrency: int, connect_timeout_s: float = 30.0) -> aiohttp.ClientSession:
    """A session whose pool fits the concurrency; a generous connect timeout, since a busy
    client loop makes healthy connects look slow (the SDK's 5 s fires under load). Its
    PoolConnector lets StreamClient re-send what met a dead pooled connection (reconnect.py);
    a StreamClient on any other session never re-sends."""
    connector = PoolConnector(limit=max(concurrency, 1), limit_per_host=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, read_bufsize=2**18)
