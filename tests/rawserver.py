"""A tiny loopback HTTP server that misbehaves on purpose, in ways the built-in endpoint cannot.

Each test gives it a handler: `async def handler(request) -> web.StreamResponse`, and talks
to it over a real socket. Helpers below write OpenAI-shaped SSE pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    finish: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    usage: dict[str, int] | None = None,
    choices: bool = True,
) -> bytes:
    """One `data: {chat.completion.chunk}` SSE event."""
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "raw-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def usage_chunk(prompt: int, completion: int) -> bytes:
    return chunk(
        choices=False,
        usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    )


async def sse(
    request: web.Request, pieces: list[bytes | float], *, headers: dict[str, str] | None = None, end: bool = True
) -> web.StreamResponse:
    """Stream `pieces` (bytes are written, floats are sleeps in seconds)."""
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "x-request-id": "req-raw", **(headers or {})}
    )
    await resp.prepare(request)
    for piece in pieces:
        if isinstance(piece, float):
            await asyncio.sleep(piece)
        else:
            await resp.write(piece)
    if end:
        await resp.write_eof()
    return resp


async def cut(request: web.Request, pieces: list[bytes]) -> web.StreamResponse:
    """Send `pieces`, then drop the connection without finishing the chunked body."""
    resp = await sse(request, list(pieces), end=False)
    assert request.transport is not None
    request.transport.close()
    return resp


@contextlib.asynccontextmanager
async def raw_server(
    handler: Handler, models: Handler | None = None, routes: Sequence[web.RouteDef] = ()
) -> AsyncIterator[str]:
    """Serve `handler` for POST /v1/chat/completions, `models` (default: one model, raw-model)
    for GET /v1/models, and any further `routes`; yields the base URL."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    app.router.add_get("/v1/models", models or _models)
    app.router.add_routes(routes)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "raw-model", "object": "model"}]})
