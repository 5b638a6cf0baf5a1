"""The sim over real loopback sockets: the openai SDK must parse every byte it sends."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any, AsyncIterator

import aiohttp
import openai
import pytest

from batchrun.endpoint.attempt import AttemptResult
from batchrun.endpoint.kinds import kind
from batchrun.endpoint.transport import Endpoint, make_session
from batchrun.sim import SimServer

if TYPE_CHECKING:
    from conftest import MakeSim

HELLO = [{"role": "user", "content": "Say something about rivers."}]


@contextlib.asynccontextmanager
async def sdk(sim: SimServer, api_key: str = "sk-test", **kw: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=api_key, max_retries=kw.pop("max_retries", 0), **kw)
    try:
        yield client
    finally:
        await client.close()


async def raw(
    sim: SimServer,
    body: Any,
    method: str = "POST",
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, bytes]:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    async with aiohttp.ClientSession() as session:
        async with session.request(method, sim.url + path, data=data, headers=headers) as resp:
            return resp.status, resp.headers, await resp.read()


def sse_events(payload: bytes) -> list[str]:
    return [line[6:] for line in payload.decode().split("\n") if line.startswith("data: ")]


# --- completions ---


async def test_sdk_parses_a_non_streamed_completion(sim: SimServer) -> None:
    async with sdk(sim) as client:
        raw_resp = await client.chat.completions.with_raw_response.create(model="gpt-x", messages=HELLO)
        done = raw_resp.parse()
    assert raw_resp.headers["x-request-id"].startswith("req_")
    assert done.object == "chat.completion" and done.id.startswith("chatcmpl-")
    assert done.model == "gpt-x" and done.system_fingerprint == "fp_sim"
    choice = done.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert done.usage.completion_tokens == len(choice.message.content.split())  # one token = one word
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


async def test_sdk_parses_a_stream_with_usage(sim: SimServer) -> None:
    async with sdk(sim) as client:
        stream = await client.chat.completions.create(
            model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    first, finish, usage = chunks[0], chunks[-2], chunks[-1]
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    content = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert all(content) and finish.choices[0].finish_reason == "stop"
    assert usage.choices == [] and usage.usage.completion_tokens == len(content)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


async def test_stream_bytes_follow_openai_order(sim: SimServer) -> None:
    body = {"model": "m", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 3}
    status, headers, payload = await raw(sim, body)
    events = sse_events(payload)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert headers["transfer-encoding"] == "chunked"
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert ['"usage":null' in e for e in events[:-2]] == [True] * (len(events) - 2)
    assert parsed[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert parsed[-1]["usage"]["completion_tokens"] == 3 and len(parsed) == 1 + 3 + 2


async def test_stream_without_include_usage_sends_no_usage(sim: SimServer) -> None:
    _, _, payload = await raw(sim, {"model": "m", "messages": HELLO, "stream": True})
    events = sse_events(payload)
    assert events[-1] == "[DONE]" and not any("usage" in e for e in events)


async def test_sync_sdk_streams_and_honours_max_completion_tokens(sim: SimServer) -> None:
    def call() -> list[Any]:
        with openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0) as client:
            stream = client.chat.completions.create(model="m", messages=HELLO, stream=True, max_completion_tokens=5)
            return list(stream)

    chunks = await asyncio.to_thread(call)  # the sim runs on this loop, the sync client in a thread
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) == 5
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_same_prompt_and_seed_give_the_same_text(make_sim: MakeSim) -> None:
    a, b, c = await make_sim(fast=True, seed=1), await make_sim(fast=True, seed=1), await make_sim(fast=True, seed=2)
    texts = []
    for server in (a, b, c):
        async with sdk(server) as client:
            done = await client.chat.completions.create(model="m", messages=HELLO)
            texts.append(done.choices[0].message.content)
    assert texts[0] == texts[1] != texts[2]


async def test_tokens_directive_sets_the_exact_length(sim: SimServer) -> None:
    async with sdk(sim) as client:
        done = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi [[sim:tokens=64]]"}]
        )
    assert done.usage.completion_tokens == 64 and len(done.choices[0].message.content.split()) == 64


# --- tools ---

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "required": ["zone"],
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
        },
    },
}


async def test_sdk_assembles_streamed_parallel_tool_calls(sim: SimServer) -> None:
    messages = [{"role": "user", "content": "Call get_weather for Oslo and get_time too."}]
    async with sdk(sim) as client:
        async with client.chat.completions.stream(model="m", messages=messages, tools=[WEATHER, TIME]) as stream:
            final = await stream.get_final_completion()
    choice = final.choices[0]
    calls = choice.message.tool_calls
    assert choice.finish_reason == "tool_calls"
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Oslo"}, {"zone": "UTC"}]
    assert all(c.id.startswith("call_") for c in calls)
    assert sim.stats()["tool_call_responses"] == 1


async def test_tool_call_stream_sends_name_first_then_argument_pieces(sim: SimServer) -> None:
    body = {
        "model": "m",
        "stream": True,
        "tools": [WEATHER],
        "tool_choice": "required",
        "messages": [{"role": "user", "content": "weather?"}],
    }
    _, _, payload = await raw(sim, body)
    deltas = [json.loads(e)["choices"][0]["delta"] for e in sse_events(payload)[:-1]]
    head, pieces = deltas[1]["tool_calls"][0], [d["tool_calls"][0] for d in deltas[2:-1]]
    assert head["function"] == {"name": "get_weather", "arguments": ""} and head["type"] == "function"
    assert len(pieces) >= 3 and all(p["index"] == 0 and set(p) == {"index", "function"} for p in pieces)
    json.loads("".join(p["function"]["arguments"] for p in pieces))


async def test_tool_result_gets_a_content_answer_unless_told_to_keep_calling(sim: SimServer) -> None:
    history = [
        {"role": "user", "content": "use get_weather"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    async with sdk(sim) as client:
        final = await client.chat.completions.create(model="m", messages=history, tools=[WEATHER])
        history[0]["content"] += " [[sim:always_tools]]"
        again = await client.chat.completions.create(model="m", messages=history, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content
    assert again.choices[0].finish_reason == "tool_calls" and again.choices[0].message.content is None


async def test_bad_args_directive_sends_arguments_that_are_not_json(sim: SimServer) -> None:
    messages = [{"role": "user", "content": "get_weather [[sim:bad_args]]"}]
    async with sdk(sim) as client:
        done = await client.chat.completions.create(model="m", messages=messages, tools=[WEATHER])
    with pytest.raises(ValueError):
        json.loads(done.choices[0].message.tool_calls[0].function.arguments)


# --- errors ---


async def test_wrong_api_key_is_an_authentication_error(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True, api_key="sk-right")
    async with sdk(server, api_key="sk-wrong-key") as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="m", messages=HELLO)
    assert info.value.code == "invalid_api_key" and "x-request-id" in info.value.response.headers
    async with sdk(server, api_key="sk-right") as client:
        assert (await client.chat.completions.create(model="m", messages=HELLO)).choices


async def test_unknown_model_is_not_found_when_models_are_enforced(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True, models=("a", "b"), enforce_models=True)
    async with sdk(server) as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(model="c", messages=HELLO)
        listed = await client.models.list()
    assert info.value.code == "model_not_found"
    assert [m.id for m in listed.data] == ["a", "b"]


MODEL_ENDPOINTS = {
    "chat": (
        "/v1/chat/completions",
        lambda model, text: {"model": model, "messages": [{"role": "user", "content": text}]},
    ),
    "completions": ("/v1/completions", lambda model, text: {"model": model, "prompt": text, "max_tokens": 3}),
    "embeddings": ("/v1/embeddings", lambda model, text: {"model": model, "input": text}),
}


@pytest.mark.parametrize("endpoint", list(MODEL_ENDPOINTS))
async def test_model_endpoints_share_the_first_checks_and_injected_errors(make_sim: MakeSim, endpoint: str) -> None:
    """Auth, JSON body, strict parameters, enforced models and injected errors, in that order, alike
    on chat, completions and embeddings (one shared implementation in sim/handling.py)."""
    server = await make_sim(fast=True, models=("a",), enforce_models=True, api_key="sk-right")
    path, body = MODEL_ENDPOINTS[endpoint]
    auth = {"Authorization": "Bearer sk-right"}
    answers = [
        await raw(server, body("b", "hi"), path=path),  # no key, unknown model: 401 first
        await raw(server, b"{not json", path=path, headers=auth),
        await raw(server, {**body("b", "hi"), "bogus": 1}, path=path, headers=auth),
        await raw(server, body("b", "hi"), path=path, headers=auth),
        await raw(server, body("a", "hi [[sim:error=503]]"), path=path, headers=auth),
        await raw(server, body("a", "hi [[sim:error=429]]"), path=path, headers=auth),
        await raw(server, body("a", "hi"), path=path, headers=auth),
    ]
    errors = [json.loads(payload)["error"] for _, _, payload in answers[:-1]]
    assert [status for status, _, _ in answers] == [401, 400, 400, 404, 503, 429, 200]
    assert [e["code"] for e in errors] == [
        "invalid_api_key",
        None,
        None,
        "model_not_found",
        None,
        "rate_limit_exceeded",
    ]
    assert errors[2]["message"] == "Unrecognized request argument supplied: bogus"
    assert [headers.get("retry-after") for _, headers, _ in answers[4:]] == ["1", "1", None]
    assert all(headers["x-request-id"].startswith("req_") for _, headers, _ in answers)
    assert answers[-1][1]["content-type"] == "application/json"
    stats = server.stats()
    assert stats["by_endpoint"] == {endpoint: 7} and stats["requests"] == 7
    assert stats["responses"] == {"200": 1, "400": 2, "401": 1, "404": 1, "429": 1, "503": 1}
    assert (stats["faults"]["error_503"], stats["faults"]["error_429"]) == (1, 1)


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", None),
        ({"model": "m"}, "missing_required_parameter"),
        ({"model": "m", "messages": []}, "empty_array"),
        ({"model": "m", "messages": "hi"}, "invalid_type"),
        ({"model": "m", "messages": HELLO, "max_tokens": 0}, "integer_below_min_value"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "invalid_value"),
        ({"model": "m", "messages": HELLO, "stream_options": {"include_usage": True}}, "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "[[sim:nonsense]]"}]}, None),
    ],
)
async def test_invalid_bodies_get_openai_400s(sim: SimServer, body: Any, code: str | None) -> None:
    status, headers, payload = await raw(sim, body)
    error = json.loads(payload)["error"]
    assert status == 400 and set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["code"] == code
    assert headers["x-request-id"].startswith("req_")


async def test_unknown_path_is_a_json_404(sim: SimServer) -> None:
    status, _, payload = await raw(sim, None, "GET", "/v1/nope")
    assert status == 404 and json.loads(payload)["error"]["message"] == "Invalid URL (GET /v1/nope)"


@pytest.mark.parametrize(
    "code, exc",
    [
        (500, openai.InternalServerError),
        (502, openai.InternalServerError),
        (503, openai.InternalServerError),
        (429, openai.RateLimitError),
    ],
)
async def test_error_directives_raise_the_sdks_exceptions(sim: SimServer, code: int, exc: type) -> None:
    async with sdk(sim) as client:
        with pytest.raises(exc) as info:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"x [[sim:error={code}]]"}], stream=True
            )
    assert info.value.status_code == code
    assert sim.stats()["faults"][f"error_{code}"] == 1


# --- rate limits ---


async def test_rpm_limit_answers_429_with_retry_after(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True, rpm=2)
    async with sdk(server) as client:
        ok = await client.chat.completions.with_raw_response.create(model="m", messages=HELLO)
        await client.chat.completions.create(model="m", messages=HELLO)
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="m", messages=HELLO)
    assert ok.headers["x-ratelimit-limit-requests"] == "2"
    assert ok.headers["x-ratelimit-remaining-requests"] == "1"
    assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
    err = info.value
    assert err.code == "rate_limit_exceeded" and err.body["type"] == "requests"  # type: ignore[index]
    assert int(err.response.headers["retry-after"]) == 30  # a slot refills every 30 s at 2 rpm
    assert 29_000 < int(err.response.headers["retry-after-ms"]) <= 30_000
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert server.stats()["rate_limited"] == {"requests": 1, "tokens": 0}


async def test_tpm_limit_counts_prompt_plus_max_tokens(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True, tpm=1000)
    async with sdk(server) as client:
        await client.chat.completions.create(model="m", messages=HELLO, max_tokens=900)
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="m", messages=HELLO, max_tokens=900)
    assert info.value.body["type"] == "tokens"  # type: ignore[index]
    assert server.stats()["rate_limited"]["tokens"] == 1


async def test_unlimited_sim_sends_no_ratelimit_headers(sim: SimServer) -> None:
    _, headers, _ = await raw(sim, {"model": "m", "messages": HELLO})
    assert not [h for h in headers if h.lower().startswith("x-ratelimit")]


# --- other endpoints and HTTP ---


async def test_health_models_and_stats_endpoints(sim: SimServer) -> None:
    assert (await raw(sim, None, "GET", "/health"))[0] == 200
    status, _, payload = await raw(sim, None, "GET", "/v1/models")
    assert status == 200 and json.loads(payload)["data"][0]["id"] == "batchrun-sim"
    await raw(sim, {"model": "m", "messages": HELLO})
    stats = json.loads((await raw(sim, None, "GET", "/sim/stats"))[2])
    assert stats["requests"] == 1 and stats["responses"] == {"200": 2} and stats["completed"] == 1


async def test_keep_alive_and_pipelined_requests_are_answered_in_order(sim: SimServer) -> None:
    body = json.dumps({"model": "m", "messages": HELLO, "max_tokens": 2}).encode()
    req = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    reader, writer = await asyncio.open_connection(sim.host, sim.port)
    try:
        writer.write(req + req + b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)  # read() ends when the server closes
    finally:
        writer.close()
        await writer.wait_closed()
    assert data.count(b"HTTP/1.1 200 OK") == 3 and data.endswith(b'{"status":"ok"}')
    assert sim.stats()["requests"] == 2


# --- wire quirks a twin copies (usage placement, tokens per chunk, token counting) ---


async def client_send(sim: SimServer, body: dict[str, Any], path: str = "/chat/completions") -> AttemptResult:
    name = "completions" if path == "/completions" else "chat"
    async with make_session(1) as session:
        return await kind(name).client_for(session, Endpoint(sim.base_url)).send(json.dumps(body).encode())


@pytest.mark.parametrize("placement", ["trailing", "finish", "content", "none"])
@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
async def test_usage_placement_is_where_the_client_finds_usage(make_sim: MakeSim, placement: str, path: str) -> None:
    server = await make_sim(fast=True, usage_placement=placement, output_tokens=5)
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        **({"prompt": "Say something."} if path == "/completions" else {"messages": HELLO}),
    }
    r = await client_send(server, body, path)
    assert r.status == "ok" and r.output_chunks == 5
    assert r.usage_chunk == (None if placement == "none" else placement)
    assert r.completion_tokens == (None if placement == "none" else 5)


async def test_sdk_reads_usage_on_the_finish_chunk(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True, usage_placement="finish", output_tokens=4)
    async with sdk(server) as client:
        stream = await client.chat.completions.create(
            model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 4


@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
async def test_tokens_per_chunk_groups_the_same_text(make_sim: MakeSim, path: str) -> None:
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        **({"prompt": "Say something."} if path == "/completions" else {"messages": HELLO}),
    }
    one = await client_send(await make_sim(fast=True, output_tokens=7), body, path)
    three = await client_send(await make_sim(fast=True, output_tokens=7, tokens_per_chunk=3), body, path)
    assert (one.output_chunks, three.output_chunks) == (7, 3)  # 3 + 3 + 1 tokens
    assert three.text == one.text and three.completion_tokens == one.completion_tokens == 7


async def test_a_fractional_tokens_per_chunk_streams_that_many_chunks(make_sim: MakeSim) -> None:
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True}, "messages": HELLO}
    one = await client_send(await make_sim(fast=True, output_tokens=8), body)
    merged = await client_send(await make_sim(fast=True, output_tokens=8, tokens_per_chunk=1.6), body)
    assert (one.output_chunks, merged.output_chunks) == (8, 5)  # ceil(8 / 1.6): sizes 1, 2, 1, 2, 2
    assert merged.text == one.text and merged.completion_tokens == 8


async def test_logprobs_keep_one_token_per_chunk(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True, output_tokens=6, tokens_per_chunk=3)
    r = await client_send(server, {"model": "m", "messages": HELLO, "stream": True, "logprobs": True})
    assert r.output_chunks == 6


async def test_chars_per_token_counts_prompt_tokens(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True, chars_per_token=3.5)
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x" * 35}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert (await client_send(server, body)).prompt_tokens == 10
