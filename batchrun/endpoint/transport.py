"""The wire: where requests go and how they authenticate (Endpoint), one POST and its streamed
response read under the run's timeouts (StreamClient.send: never raises for a request failure,
re-sends once what met a dead pooled connection, never follows a redirect), an error response
classified, and the aiohttp session the clients share.

The bytes of a streamed answer go to the kind's parser (endpoint/sse.py) with one clock read per
network read; the openai SDK's default headers are sent, and its exception names used, without
importing it (endpoint/attempt.py).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Callable, Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from batchrun.endpoint.attempt import (
    CONNECTION_ERROR,
    DEFAULT_MAX_RESPONSE_BYTES,
    INCOMPLETE_STREAM,
    MALFORMED_CHUNK,
    TIMEOUT_ERROR,
    AttemptResult,
    error_message,
    status_error_type,
)
from batchrun.endpoint.hints import retry_wait_s
from batchrun.endpoint.reconnect import PoolConnector, closed_before_response, connection_reused, fresh_connection
from batchrun.endpoint.sdk_headers import sdk_default_headers
from batchrun.endpoint.sse import SSEStream
from batchrun.redact import host_and_port, query_secrets, redact
from batchrun.store.records import CANCELLED, ERROR, TIMEOUT

Clock = Callable[[], float]
CHAT_PATH = "chat/completions"  # a client's path unless its kind gives another
_MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True)
class Endpoint:
    """Where requests go and how they authenticate; no secret reaches a repr, a record or a message.

    `base_url` never holds credentials: `user:password@` in a configured URL is taken out by
    `Endpoint.of` and sent as HTTP Basic auth (as the openai SDK's httpx does with such a URL).
    """

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    embedded: bool = False  # the built-in simulated endpoint
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


@dataclass
class StreamClient:
    """Sends one streamed request at a time over a shared aiohttp session (chat unless `path` and
    `parse` say otherwise: endpoint/kinds.py builds the client of each kind)."""

    session: aiohttp.ClientSession
    endpoint: Endpoint
    timeout_s: float | None = 600.0  # whole request
    ttft_timeout_s: float | None = None  # first output chunk
    clock: Clock = time.perf_counter
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    wall_clock: Clock = time.time  # for retry-after HTTP dates only
    on_headers: Callable[[Any], None] | None = None  # sees every response's headers as they arrive
    path: str = CHAT_PATH  # under the base URL (endpoint/kinds.py: each kind's)
    parse: Any = SSEStream  # the response parser: an SSEStream class for a streamed kind
    _headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self._headers = self.endpoint.headers()
        self._url = self.endpoint.url(self.path)

    async def send(
        self, body: bytes, result: AttemptResult | None = None, *, avoid: Sequence[str] = ()
    ) -> AttemptResult:
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
                result.fail(
                    ERROR,
                    INCOMPLETE_STREAM if result.output_chunks else CONNECTION_ERROR,
                    f"the server closed the connection: {exc}",
                )
            except (aiohttp.ClientError, OSError) as exc:
                if self._resend(exc, result):
                    continue
                result.fail(ERROR, CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")
            except ValueError as exc:  # aiohttp: a header line longer than its buffer
                result.fail(ERROR, MALFORMED_CHUNK, f"unreadable stream: {exc}")
            break
        if result.total_s is None:
            result.total_s = self.clock() - result.sent
        return result

    def _resend(self, exc: BaseException, result: AttemptResult) -> bool:
        """True (and the result reset to a new send) when `exc` met a dead pooled connection
        before any response came: the request goes out again at once, on a new connection, not
        as a retry. Once per attempt: that new connection is never a reused one."""
        if (
            result.reconnects
            or result.http_status is not None
            or not connection_reused()
            or not closed_before_response(exc)
        ):
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

    async def _read_stream(
        self, resp: aiohttp.ClientResponse, result: AttemptResult, deadline: asyncio.Timeout, start: float
    ) -> None:
        # One clock read per network read (events that arrived together share their arrival
        # time), and the lines split here rather than by aiohttp's per-line readline.
        stream = self.parse(result, self.max_response_bytes)
        clock = self.clock
        try:
            async for piece in resp.content.iter_any():
                done = stream.feed(piece, clock())
                if stream.first_output:
                    stream.first_output = False
                    if self.ttft_timeout_s is not None:  # swap the TTFT deadline for the whole-request one
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


def fail_status(
    result: AttemptResult, status: int, raw: bytes, content_type: str = "", location: str | None = None
) -> AttemptResult:
    """Classify a non-200 response from its status and body (shared with the sync baseline)."""
    if 300 <= status < 400:
        return result.fail(ERROR, status_error_type(status), f"HTTP {status}: {redirect_text(location)}")
    return result.fail(
        ERROR, status_error_type(status), f"HTTP {status}: {error_body_text(raw[:_MAX_ERROR_BODY], content_type)}"
    )


def redirect_text(location: str | None) -> str:
    """What a redirect of a POST means, for a person: where it points (host and port only: its
    path or query may carry a signed token) and what to do."""
    where = f"to {host_and_port(location)}" if location else "(without a Location)"
    return (
        f"the endpoint redirects this request {where}; batchrun does not follow redirects on POST "
        "(after a 301 or 302 the request would arrive as a GET, and the key could go to another host): "
        "set --base-url to the final URL"
    )


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
        return error_message(json.loads(text).get("error") or json.loads(text))
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


def make_session(concurrency: int, connect_timeout_s: float = 30.0) -> aiohttp.ClientSession:
    """A session whose pool fits the concurrency; a generous connect timeout, since a busy
    client loop makes healthy connects look slow (the SDK's 5 s fires under load). Its
    PoolConnector lets StreamClient re-send what met a dead pooled connection (reconnect.py);
    a StreamClient on any other session never re-sends."""
    connector = PoolConnector(limit=max(concurrency, 1), limit_per_host=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, read_bufsize=2**18)
