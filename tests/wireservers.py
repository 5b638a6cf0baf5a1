"""One small handler per provider wire variant or hostile server, for rawserver.raw_server.

Each speaks the variant as the named server sends it (shapes taken from their docs and from
captured streams), so the client is tested against bytes on a real socket, not a fake.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from rawserver import DONE, chunk, sse


def _data(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _usage(prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **extra}


# --- usage --------------------------------------------------------------------------------------


async def litellm_usage(request: web.Request) -> web.StreamResponse:
    """LiteLLM's proxy: the usage chunk keeps a choice with an empty delta (not `choices: []`)."""
    usage_chunk = {
        "id": "chatcmpl-l",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {}}],
        "usage": _usage(11, 3),
    }
    return await sse(
        request,
        [
            chunk("", role="assistant"),
            chunk("Hel"),
            chunk("lo"),
            chunk(" you"),
            chunk(finish="stop"),
            _data(usage_chunk),
            DONE,
        ],
    )


async def vllm_continuous_usage(request: web.Request) -> web.StreamResponse:
    """vLLM with `stream_options.continuous_usage_stats`: usage on every chunk, growing."""

    def c(content: str | None, n: int, finish: str | None = None) -> bytes:
        delta = {} if content is None else {"content": content}
        return _data(
            {
                "id": "cmpl-v",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "llama",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                "usage": _usage(7, n),
            }
        )

    return await sse(request, [c("a", 1), c("b", 2), c("c", 3), c(None, 3, "stop"), DONE])


async def openai_cached_prompt(request: web.Request) -> web.StreamResponse:
    """OpenAI (and vLLM with --enable-prompt-tokens-details): the prompt tokens taken from the
    prompt cache in usage.prompt_tokens_details.cached_tokens."""
    usage = _usage(1200, 2, prompt_tokens_details={"cached_tokens": 1024, "audio_tokens": 0})
    return await sse(request, [chunk("ok"), chunk(finish="stop"), _data({"choices": [], "usage": usage}), DONE])


async def llama_server_cache_n(request: web.Request) -> web.StreamResponse:
    """llama.cpp's llama-server: no prompt_tokens_details; its final chunk carries `timings`,
    whose cache_n is the prompt tokens reused from the slot's cache, beside the usage."""
    final = {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": _usage(24, 2),
        "timings": {"cache_n": 23, "prompt_n": 1, "prompt_ms": 2.1, "predicted_n": 2, "predicted_ms": 9.8},
    }
    return await sse(request, [chunk("o"), chunk("k"), _data(final), DONE])


# --- stream edge cases --------------------------------------------------------------------------


async def bare_cr(request: web.Request) -> web.StreamResponse:
    """Old-Mac line ends: every SSE line ends in a bare CR."""
    pieces = [
        chunk("", role="assistant"),
        chunk("one"),
        chunk(" two"),
        chunk(finish="stop"),
        _data({"choices": [], "usage": _usage(2, 2)}),
        DONE,
    ]
    return await sse(request, [p.replace(b"\n", b"\r") for p in pieces])


async def done_without_space(request: web.Request) -> web.StreamResponse:
    """`data:[DONE]` with no space, as the last bytes, without a final newline."""
    return await sse(request, [chunk("hi"), chunk(finish="stop"), b"data:[DONE]"])


async def n_choices_interleaved(request: web.Request) -> web.StreamResponse:
    """n=2: each chunk carries one choice, by `index`, interleaved (as OpenAI sends them)."""

    def c(index: int, content: str) -> bytes:
        return _data(
            {
                "id": "x",
                "object": "chat.completion.chunk",
                "model": "m",
                "choices": [{"index": index, "delta": {"content": content}, "finish_reason": None}],
            }
        )

    return await sse(request, [c(1, "B1 "), c(0, "A1 "), c(1, "B2"), c(0, "A2"), chunk(finish="stop"), DONE])


async def reasoning_then_answer(request: web.Request) -> web.StreamResponse:
    """DeepSeek-R1 / vLLM reasoning parser: `reasoning_content` deltas, then `content`."""

    def r(text: str) -> bytes:
        return _data(
            {
                "id": "x",
                "object": "chat.completion.chunk",
                "model": "r1",
                "choices": [{"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None}],
            }
        )

    usage = _usage(5, 6, completion_tokens_details={"reasoning_tokens": 3})
    return await sse(
        request,
        [
            r("Let me"),
            0.05,
            r(" think"),
            0.05,
            r("."),
            0.05,
            chunk("Yes"),
            chunk("."),
            chunk(finish="stop"),
            _data({"choices": [], "usage": usage}),
            DONE,
        ],
    )


async def endless_stream(request: web.Request) -> web.StreamResponse:
    """A stream that never ends: 64 KB content chunks until the client goes away."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    piece = chunk("x" * 65_000)
    try:
        while request.transport is not None and not request.transport.is_closing():
            await resp.write(piece)
    except (ConnectionResetError, RuntimeError):
        pass
    return resp


def long_line(size: int, piece: int = 4096):
    """A handler sending one `data:` line of `size` bytes without a newline, in `piece`-byte writes."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices": [{"index": 0, "delta": {"content": "')
        block = b"y" * piece
        try:
            for _ in range(size // piece):
                await resp.write(block)
        except (ConnectionResetError, RuntimeError):
            return resp
        await resp.write_eof()
        return resp

    return handler


# --- errors and refusals ------------------------------------------------------------------------


def error(status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None):
    """A handler answering every chat request with an OpenAI-shaped error."""

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {"error": {"message": message, "type": "invalid_request_error", "code": code}},
            status=status,
            headers=headers,
        )

    return handler


REFUSED_KEY = error(
    401,
    "Incorrect API key provided: hrd-***. You can find your API key at https://platform.openai.com/account/api-keys.",
    code="invalid_api_key",
)
NO_SUCH_MODEL = error(404, "The model `gpt-9` does not exist or you do not have access to it.", code="model_not_found")


async def rate_limit_body_in_two_writes(request: web.Request) -> web.StreamResponse:
    """A 429 whose JSON body arrives in two TCP writes (a proxy flushing early)."""
    await request.read()
    body = json.dumps(
        {
            "error": {
                "message": "Rate limit reached for gpt-4o in organization org-x on "
                "requests per min (RPM): Limit 3, Used 3, Requested 1.",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        }
    ).encode()
    resp = web.StreamResponse(
        status=429, headers={"Content-Type": "application/json", "Content-Length": str(len(body))}
    )
    await resp.prepare(request)
    await resp.write(body[:20])
    await asyncio.sleep(0.05)
    await resp.write(body[20:])
    await resp.write_eof()
    return resp


def echo_basic_auth(request_log: list[str]):
    """A server behind Basic auth that echoes the Authorization header it got in its 400 errors."""

    async def handler(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        request_log.append(auth)
        await request.read()
        return web.json_response({"error": {"message": f"bad request; you sent Authorization: {auth}"}}, status=400)

    return handler


# --- /models variants ---------------------------------------------------------------------------


async def several_models(request: web.Request) -> web.Response:
    return web.json_response(
        {"object": "list", "data": [{"id": m, "object": "model"} for m in ("gpt-4o", "gpt-4o-mini", "o3")]}
    )


async def no_models_route(request: web.Request) -> web.Response:
    return web.json_response({"error": {"message": "Not Found"}}, status=404)


def slow_models(delay_s: float):
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        return web.json_response({"object": "list", "data": [{"id": "raw-model"}]})

    return handler


# --- redirects ----------------------------------------------------------------------------------

MOVED_TO = "/v2/moved"  # where `redirect` points: a client that follows it lands here


def redirect(status: int, log: list[str]):
    """An endpoint that has moved: every request is answered `status` with a Location on this host
    carrying credentials, a path and a signed query (none of which may be shown). `log` gets
    'METHOD path' of every request, so a test sees whether the client followed."""

    async def handler(request: web.Request) -> web.Response:
        log.append(f"{request.method} {request.path}")
        await request.read()
        return web.Response(
            status=status, headers={"Location": f"http://mover:pa55word@{request.host}{MOVED_TO}?sig=SIGNED-TOKEN-0123"}
        )

    return handler


def moved_answer(log: list[str]):
    """What a client that follows the redirect gets: a whole, ok chat answer to whatever it sent
    (a GET: the prompt is lost)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        log.append(f"{request.method} {request.path}")
        return await sse(
            request,
            [
                chunk("", role="assistant"),
                chunk("an answer to no prompt"),
                chunk(finish="stop"),
                _data({"choices": [], "usage": _usage(1, 5)}),
                DONE,
            ],
        )

    return handler
