"""endpoint/reconnect.py's rule for the openai SDK's clients (bench's sync baseline, the Batch API).

The SDK sends over httpx (httpx2 in newer SDKs: the module is taken from the SDK itself). httpcore
checks an idle connection for a FIN before reusing it (`has_expired`: the socket is readable),
which narrows the window but cannot close it, and it never re-sends: a request written into a
connection the server had just closed fails with "Server disconnected without sending a
response" (RemoteProtocolError), a WriteError or a reset (ReadError), and the SDK counts that as
a failed try and backs off before its own retry (the sync baseline turns those retries off).

These transports wrap the SDK's default one: such a failure on a *reused* connection, raised
before the response head came back (handle_request returns once the head is read), is sent
again at once, once, on a connection opened for it, and counted in `reconnects`. A connection
is known to be new from httpcore's `trace` extension (its connect_tcp / connect_unix_socket
events); without them the connection came from the pool.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import openai


def _sdk_http_module() -> Any:
    """The httpx the installed SDK is built on (httpx, or httpx2 in newer SDKs)."""
    base = next(c for c in openai.DefaultHttpxClient.__mro__ if c.__name__ == "Client")
    return importlib.import_module(base.__module__.split(".")[0])


httpx = _sdk_http_module()
_DEAD = (httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError)
# Which httpx these come from is known only at run time, so the type checker sees them as Any.
_BaseTransport: Any = httpx.BaseTransport
_AsyncBaseTransport: Any = httpx.AsyncBaseTransport


class _Connects:
    """A `trace` callback (chained to one the request already had) that notes a new connection."""

    def __init__(self, chained: Callable[..., Any] | None) -> None:
        self.new = False
        self._chained = chained

    def _see(self, name: str) -> None:
        if "connect_tcp" in name or "connect_unix_socket" in name:
            self.new = True

    def sync(self, name: str, info: dict[str, Any]) -> None:
        self._see(name)
        if self._chained is not None:
            self._chained(name, info)

    async def asynchronous(self, name: str, info: dict[str, Any]) -> None:
        self._see(name)
        if self._chained is not None:
            await self._chained(name, info)


def _watch(request: Any, asynchronous: bool) -> _Connects:
    connects = _Connects(request.extensions.get("trace"))
    request.extensions = {**request.extensions, "trace": connects.asynchronous if asynchronous else connects.sync}
    return connects


def _fresh_limits() -> Any:
    return httpx.Limits(max_keepalive_connections=0)  # never kept: every request gets a new one


class ResendTransport(_BaseTransport):
    """The SDK's sync transport, re-sending once what met a dead pooled connection."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._pool = httpx.HTTPTransport(**kwargs)
        self._fresh: Any = None
        self.reconnects = 0  # requests re-sent after a dead pooled connection

    def handle_request(self, request: Any) -> Any:
        connects = _watch(request, asynchronous=False)
        try:
            return self._pool.handle_request(request)
        except _DEAD:
            if connects.new:
                raise  # a new connection that fails is a real connection error
        self.reconnects += 1
        if self._fresh is None:
            self._fresh = httpx.HTTPTransport(**{**self._kwargs, "limits": _fresh_limits()})
        return self._fresh.handle_request(request)

    def close(self) -> None:
        self._pool.close()
        if self._fresh is not None:
            self._fresh.close()


class AsyncResendTransport(_AsyncBaseTransport):
    """The SDK's async transport, re-sending once what met a dead pooled connection."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._pool = httpx.AsyncHTTPTransport(**kwargs)
        self._fresh: Any = None
        self.reconnects = 0

    async def handle_async_request(self, request: Any) -> Any:
        connects = _watch(request, asynchronous=True)
        try:
            return await self._pool.handle_async_request(request)
        except _DEAD:
            if connects.new:
                raise
        self.reconnects += 1
        if self._fresh is None:
            self._fresh = httpx.AsyncHTTPTransport(**{**self._kwargs, "limits": _fresh_limits()})
        return await self._fresh.handle_async_request(request)

    async def aclose(self) -> None:
        await self._pool.aclose()
        if self._fresh is not None:
            await self._fresh.aclose()
