"""A request sent on a pooled connection the server had already closed is sent again at once.

Some servers (llama.cpp's llama-server) close the TCP connection after every streamed response
without saying `Connection: close`. The pool keeps the socket, the next request is written to
it before its FIN has been read, and the request fails before any response came: aiohttp raises
ServerDisconnectedError, "Can not write request body" (ClientOSError) or a reset. The request
never reached the model, so it is not a failed attempt: the client re-sends it at once on a new
connection (no backoff, no rate-limit token, no attempt), and counts the re-send.

Only when both hold: the connection was a *reused* pooled one, and the failure came before the
response's status line and headers were read. A response cut after its head is a cut stream.
The re-send goes out on a connection opened for it (never another pooled one, which may be just
as dead), once: if that fresh connection fails too, it is a real connection error and an
ordinary failed attempt, so a server that drops every connection cannot make a request loop.

This is aiohttp's own rule for idempotent requests (it re-sends a GET once on these errors, and
not a POST), narrowed to reused connections; httpcore and urllib3 look for a FIN before they
reuse an idle connection, which narrows the window but cannot close it (the FIN can be in flight).

How a reuse is seen: aiohttp's TraceConfig has `on_connection_reuseconn`, but a trace config
costs every request ~15 us of client CPU (13-20 us measured against the built-in endpoint, ~15%
of a minimal request), so the connector below notes it instead: the pool hands out the same
protocol object again when it reuses a connection.
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from typing import Any, Iterator

import aiohttp

# Set by PoolConnector.connect in the sending task's context, read by that task after a failure.
_REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("batchrun_connection_reused", default=False)
# Set by the sending task around a re-send: PoolConnector then opens a new connection for it.
_FRESH: contextvars.ContextVar[bool] = contextvars.ContextVar("batchrun_fresh_connection", default=False)


class PoolConnector(aiohttp.TCPConnector):
    """A TCPConnector that tells the sending task whether its connection came from the pool, and
    opens a new connection, outside the pool, for a task inside `fresh_connection()`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handed_out: weakref.WeakSet[Any] = weakref.WeakSet()  # protocols already used once
        self._fresh: aiohttp.TCPConnector | None = None  # made at the first re-send

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        _REUSED.set(False)  # also when connecting fails below: no stale flag from the last request
        if _FRESH.get():
            return await self._fresh_connector().connect(req, traces, timeout)
        conn = await super().connect(req, traces, timeout)
        protocol = conn.protocol
        if protocol in self._handed_out:
            _REUSED.set(True)
        else:
            self._handed_out.add(protocol)
        return conn

    def _fresh_connector(self) -> aiohttp.TCPConnector:
        # force_close: a connection per request, closed after it; never pooled, never reused.
        if self._fresh is None:
            self._fresh = aiohttp.TCPConnector(limit=self.limit, limit_per_host=0, force_close=True, ttl_dns_cache=300)
        return self._fresh

    async def close(self, **kwargs: Any) -> None:
        # The session awaits its connector's close; aiohttp 3.9 closes at the call and
        # returns an awaitable, later versions close when awaited: awaiting both covers either.
        if self._fresh is not None:
            await self._fresh.close(**kwargs)
        await super().close(**kwargs)


def connection_reused() -> bool:
    """Whether the current task's last request went out on a reused pooled connection."""
    return _REUSED.get()


@contextlib.contextmanager
def fresh_connection() -> Iterator[None]:
    """Requests of the current task inside this block go out on new connections (PoolConnector)."""
    token = _FRESH.set(True)
    try:
        yield
    finally:
        _FRESH.reset(token)


def closed_before_response(exc: BaseException) -> bool:
    """True for the errors of a write to, or a first read from, a connection the server had closed
    (pure). Not for a failed connect (ClientConnectorError), a timeout or a cut body, and not for
    a disconnect after a partial response line (aiohttp then passes the parsed part along)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return isinstance(exc.message, str)
    return isinstance(exc, (aiohttp.ClientOSError, ConnectionResetError, BrokenPipeError))
