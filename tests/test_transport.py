"""transport.py: one request over a real socket -> one AttemptResult, every failure a typed result."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from rawserver import DONE, chunk, cut, raw_server, sse, usage_chunk

from batchrun.endpoint.attempt import (
    CONNECTION_ERROR,
    EMPTY_RESPONSE,
    INCOMPLETE_STREAM,
    MALFORMED_CHUNK,
    STREAM_ERROR,
    AttemptResult,
    status_error_type,
)
from batchrun.endpoint.transport import Endpoint, StreamClient, make_session

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


async def send(base_url: str, **kw) -> AttemptResult:
    async with make_session(4) as session:
        client = StreamClient(session, Endpoint(base_url, api_key=kw.pop("api_key", None)), **kw)
        return await client.send(BODY)


async def test_a_real_stream_over_a_socket() -> None:
    pieces = [
        chunk("", role="assistant"),
        0.05,
        chunk("a"),
        0.05,
        chunk(" b"),
        chunk(finish="stop"),
        usage_chunk(5, 2),
        DONE,
    ]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, pieces)

    async with raw_server(handler) as url:
        r = await send(url)
    assert r.status == "ok" and r.text == "a b" and r.completion_tokens == 2 and r.request_id == "req-raw"
    assert 0.03 < r.ttft_s < 5 and r.latency_s >= r.ttft_s


@pytest.mark.parametrize(
    "status,body,ctype,expected",
    [
        (
            429,
            {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
            "application/json",
            "RateLimitError",
        ),
        (400, {"error": {"message": "bad", "type": "invalid_request_error"}}, "application/json", "BadRequestError"),
        (
            401,
            {"error": {"message": "Incorrect API key provided: sk-abc...xyz"}},
            "application/json",
            "AuthenticationError",
        ),
        (503, "upstream unavailable", "text/plain", "InternalServerError"),
        (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", "InternalServerError"),
    ],
)
async def test_http_errors_become_typed_results(status, body, ctype, expected) -> None:
    async def handler(request: web.Request) -> web.Response:
        text = json.dumps(body) if isinstance(body, dict) else body
        return web.Response(
            status=status, text=text, content_type=ctype, headers={"retry-after-ms": "1500", "x-request-id": "req-err"}
        )

    async with raw_server(handler) as url:
        r = await send(url)
    assert (r.status, r.http_status, r.error_type) == ("error", status, expected)
    assert r.error.startswith(f"HTTP {status}:") and r.retry_after_s == 1.5 and r.request_id == "req-err"
    if ctype == "text/html":
        assert "502 Bad Gateway" in r.error and len(r.error) < 300


async def test_stream_cut_midway_is_incomplete() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await cut(request, [chunk("a"), chunk(" b")])

    async with raw_server(handler) as url:
        r = await send(url)
    assert r.status == "error" and r.error_type == INCOMPLETE_STREAM


async def test_stream_without_done_is_incomplete() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, [chunk("a"), chunk(finish="stop")])

    async with raw_server(handler) as url:
        r = await send(url)
    assert r.error_type == INCOMPLETE_STREAM and r.text == "a"


@pytest.mark.parametrize(
    "pieces,expected",
    [
        ([chunk("a"), b"data: {not json\n\n", DONE], MALFORMED_CHUNK),
        ([chunk("a"), b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n', DONE], STREAM_ERROR),
        ([chunk(role="assistant"), usage_chunk(1, 0), DONE], EMPTY_RESPONSE),  # no content and no finish_reason
    ],
)
async def test_bad_streams(pieces, expected) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, pieces)

    async with raw_server(handler) as url:
        r = await send(url)
    assert r.status == "error" and r.error_type == expected


async def test_an_empty_answer_the_server_ended_is_ok_with_no_timing_invented() -> None:
    """llama-server's answer when a stop sequence matches the first token: a finish chunk, usage
    with one completion token, [DONE], and no content at all."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, [chunk(role="assistant", content=""), chunk(finish="stop"), usage_chunk(5, 1), DONE])

    async with raw_server(handler) as url:
        r = await send(url)
    assert (r.status, r.text, r.finish_reason, r.completion_tokens, r.output_chunks) == ("ok", "", "stop", 1, 0)
    assert r.ttft_s is None and r.latency_s is None and r.total_s is not None  # no output chunk came


async def test_tolerated_stream_variants() -> None:
    """Azure's first chunk with empty choices, SSE comments, no usage, [DONE] without finish_reason."""
    pieces = [chunk(choices=False), b": keep-alive\n\n", chunk("x"), chunk("y"), DONE]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, pieces)

    async with raw_server(handler) as url:
        r = await send(url)
    assert r.status == "ok" and r.text == "xy" and r.finish_reason is None
    assert r.completion_tokens is None and r.output_chunks == 2


async def test_ttft_timeout_and_total_timeout() -> None:
    async def slow_first(request: web.Request) -> web.StreamResponse:
        return await sse(request, [5.0, chunk("late"), DONE])

    async def slow_tail(request: web.Request) -> web.StreamResponse:
        return await sse(request, [chunk("a"), 5.0, chunk("b"), DONE])

    async with raw_server(slow_first) as url:
        r = await send(url, timeout_s=30, ttft_timeout_s=0.2)
    assert r.status == "timeout" and "--ttft-timeout" in r.error
    async with raw_server(slow_tail) as url:
        r = await send(url, timeout_s=0.3, ttft_timeout_s=0.2)
    assert r.status == "timeout" and "--timeout" in r.error
    assert r.text == "a" and r.output_chunks == 1 and r.latency_s == r.ttft_s  # partial, and consistent


async def test_whole_request_timeout_also_bounds_the_wait_for_the_first_token() -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        return await sse(request, [5.0, chunk("late"), DONE])

    async with raw_server(silent) as url:
        r = await send(url, timeout_s=0.2, ttft_timeout_s=30)
    assert r.status == "timeout" and "--timeout" in r.error and r.total_s < 2


async def test_connection_refused() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, [])

    async with raw_server(handler) as url:
        pass  # the port is closed again now
    r = await send(url)
    assert r.status == "error" and r.error_type == CONNECTION_ERROR and "cannot connect" in r.error


async def test_api_key_is_sent_and_redacted_from_errors() -> None:
    key = "sk-test-SECRET-1234567890"
    seen = {}

    async def handler(request: web.Request) -> web.Response:
        seen["auth"] = request.headers.get("Authorization")
        return web.json_response({"error": {"message": f"Incorrect API key provided: {key}"}}, status=401)

    async with raw_server(handler) as url:
        r = await send(url, api_key=key)
    assert seen["auth"] == f"Bearer {key}"
    assert key not in r.error and "***" in r.error


async def test_cancellation_propagates() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, [chunk("a"), 5.0, DONE])

    async with raw_server(handler) as url:
        task = asyncio.create_task(send(url))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_status_error_types_match_the_sdk() -> None:
    assert [status_error_type(s) for s in (400, 401, 403, 404, 409, 422, 429, 500, 503, 418)] == [
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "ConflictError",
        "UnprocessableEntityError",
        "RateLimitError",
        "InternalServerError",
        "InternalServerError",
        "APIStatusError",
    ]


def test_endpoint_repr_hides_key() -> None:
    endpoint = Endpoint("http://127.0.0.1:1/v1", api_key="sk-hidden-123456789")
    assert "sk-hidden" not in repr(endpoint)
    assert endpoint.headers()["Authorization"] == "Bearer sk-hidden-123456789"
