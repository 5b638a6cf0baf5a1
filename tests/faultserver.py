"""Misbehaving handlers for rawserver.raw_server, and a leak check for the tests that use them.

`faulty(fault)` answers row N's prompt ("question N") with a normal stream, except that
rows with N % 3 == 0 suffer `fault` on their first attempt (a retry succeeds) and rows with
N % 50 == 0 suffer it on every attempt. It counts the attempts it saw per row, so a test can
hold the server's count against the records' `attempts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
from collections import Counter
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web
from rawserver import DONE, chunk, sse, usage_chunk

Fault = Callable[[web.Request], Awaitable[web.StreamResponse]]

FLAKY_EVERY = 3  # rows failing on their first attempt only
BROKEN_EVERY = 50  # rows failing on every attempt


def prompt_of(body: bytes) -> str:
    return json.loads(body)["messages"][-1]["content"]


def row_of(body: bytes) -> int:
    return int(prompt_of(body).rsplit(" ", 1)[-1])


def ok_pieces(i: int) -> list[bytes]:
    return [
        chunk("", role="assistant"),
        chunk(f"answer {i}"),
        chunk(" done"),
        chunk(finish="stop"),
        usage_chunk(3, 2),
        DONE,
    ]


def fault_plan(i: int, attempt: int) -> bool:
    """Whether row i's attempt (0-based) gets the fault."""
    return i % BROKEN_EVERY == 0 or (i % FLAKY_EVERY == 0 and attempt == 0)


class Faulty:
    """`.handle` serves row N normally unless fault_plan(N, attempt) says otherwise."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.seen: Counter[int] = Counter()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        i = row_of(await request.read())
        attempt = self.seen[i]
        self.seen[i] += 1
        if fault_plan(i, attempt):
            return await self.fault(request)
        return await sse(request, ok_pieces(i))


# --- the faults -------------------------------------------------------------------------------


async def status_429_no_header(request: web.Request) -> web.StreamResponse:
    return web.json_response(
        {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}, status=429
    )


async def headers_then_nothing(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    # Silent until the client gives up (aiohttp does not cancel a handler on disconnect).
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(0.02)
    return resp


async def malformed_line(request: web.Request) -> web.StreamResponse:
    return await sse(
        request,
        [
            chunk("", role="assistant"),
            chunk("par"),
            b'data: {"choices": [\n\n',
            chunk("tial"),
            chunk(finish="stop"),
            DONE,
        ],
    )


async def wrong_shape_chunk(request: web.Request) -> web.StreamResponse:
    """Valid JSON, wrong shape: `choices` is a string (a broken proxy or a non-OpenAI server)."""
    return await sse(
        request,
        [
            chunk("", role="assistant"),
            chunk("par"),
            b'data: {"id": "x", "choices": "oops"}\n\n',
            chunk(finish="stop"),
            DONE,
        ],
    )


async def non_text_content(request: web.Request) -> web.StreamResponse:
    """`delta.content` that is a number, not text."""
    return await sse(
        request,
        [
            chunk("", role="assistant"),
            b'data: {"choices": [{"index": 0, "delta": {"content": 5}}]}\n\n',
            chunk(finish="stop"),
            DONE,
        ],
    )


async def error_in_stream(request: web.Request) -> web.StreamResponse:
    return await sse(
        request,
        [
            chunk("", role="assistant"),
            chunk("par"),
            b'data: {"error": {"message": "The server had an error while processing '
            b'your request.", "type": "server_error"}}\n\n',
        ],
    )


async def non_json_error(request: web.Request) -> web.StreamResponse:
    return web.Response(
        status=500, text="upstream connect error or disconnect/reset before headers", content_type="text/plain"
    )


PROXY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    + "<!-- padding -->\r\n" * 200
    + "</body>\r\n</html>\r\n"
)


async def proxy_html_page(request: web.Request) -> web.StreamResponse:
    return web.Response(status=502, text=PROXY_PAGE, content_type="text/html")


# Benign oddities: every one of these is a complete, successful answer.


async def azure_empty_choices_first(request: web.Request) -> web.StreamResponse:
    i = row_of(await request.read())
    filter_chunk = (
        b'data: {"choices": [], "created": 0, "id": "", "model": "", "object": "", '
        b'"prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}\n\n'
    )
    return await sse(request, [filter_chunk, *ok_pieces(i)])


async def no_usage_chunk(request: web.Request) -> web.StreamResponse:
    i = row_of(await request.read())
    return await sse(
        request, [chunk("", role="assistant"), chunk(f"answer {i}"), chunk(" done"), chunk(finish="stop"), DONE]
    )


async def done_without_finish_reason(request: web.Request) -> web.StreamResponse:
    i = row_of(await request.read())
    return await sse(
        request, [chunk("", role="assistant"), chunk(f"answer {i}"), chunk(" done"), usage_chunk(3, 2), DONE]
    )


async def usage_as_text(request: web.Request) -> web.StreamResponse:
    """Token counts as strings: they must not reach the records (the summary sums them)."""
    i = row_of(await request.read())
    return await sse(
        request,
        [
            chunk("", role="assistant"),
            chunk(f"answer {i}"),
            chunk(" done"),
            chunk(finish="stop"),
            b'data: {"choices": [], "usage": {"prompt_tokens": "3", "completion_tokens": "2"}}\n\n',
            DONE,
        ],
    )


# --- leaks ------------------------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


@contextlib.asynccontextmanager
async def no_leaks() -> AsyncIterator[None]:
    """Fail if the block leaves a task pending or a socket / file open.

    pytest's filterwarnings=error turns a ResourceWarning from a collected socket into a
    failure, but only if the socket is collected during the test (hence gc.collect()), and a
    task left pending is only logged when the loop closes, never failed: it is checked here.
    """
    before = open_fds()
    yield
    for _ in range(10):  # transports close their sockets in call_soon callbacks
        await asyncio.sleep(0)
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not pending, f"tasks left pending: {pending}"
    gc.collect()
    after = open_fds()
    assert after <= before, f"{after - before} file descriptors left open"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
