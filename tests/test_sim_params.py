"""The built-in endpoint's faithful parameters over real sockets: strict / lenient checks, stop,
seed, logprobs, ignore_eos / min_tokens, the prefix cache, /v1/completions and /v1/embeddings
(parsed by the openai SDK where it has a type for the answer)."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from test_sim_server import raw, sdk

from batchrun.sim import SimConfig, SimServer
from batchrun.sim.params import check_sampling
from batchrun.sim.prefix_cache import BLOCK_CHARS, BLOCK_TOKENS, PrefixCache
from batchrun.sim.sampling import apply_stop, output_length
from batchrun.sim.validate import validate_chat
from batchrun.sim.wire import ApiError

if TYPE_CHECKING:
    from conftest import MakeSim

HELLO = [{"role": "user", "content": "Say something about rivers."}]


def chat(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "messages": HELLO, **kw}


# --- pure rules ---


@pytest.mark.parametrize(
    "natural,cap,ignore_eos,min_tokens,expected",
    [
        (50, None, False, None, (50, "stop")),
        (50, 20, False, None, (20, "length")),
        (20, 20, False, None, (20, "stop")),
        (5, 20, True, None, (20, "length")),  # ignore_eos: exactly max_tokens
        (5, None, False, 12, (12, "stop")),  # min_tokens lengthens a short answer
        (5, 10, False, 12, (10, "length")),  # ... but max_tokens still caps it
    ],
)
def test_output_length(
    natural: int, cap: int | None, ignore_eos: bool, min_tokens: int | None, expected: tuple[int, str]
) -> None:
    assert output_length(natural, cap, ignore_eos, min_tokens) == expected


def test_stop_cuts_before_the_sequence_and_not_inside_min_tokens() -> None:
    tokens = ["The", " river", " runs.", " The", " end."]
    assert apply_stop(tokens, ["."]) == (["The", " river", " runs"], True)
    assert apply_stop(tokens, [" ri", "xyz"]) == (["The"], True)
    assert apply_stop(tokens, ["."], min_tokens=3) == (["The", " river", " runs.", " The", " end"], True)
    assert apply_stop(tokens, ["zzz"]) == (tokens, False)


@pytest.mark.parametrize(
    "check,body,param,message",
    [
        (
            lambda b: check_sampling(b, "chat"),
            chat(seed=True),
            "seed",
            "Invalid type for 'seed': expected an integer, but got a boolean instead.",
        ),
        (
            validate_chat,
            {"model": "m", "messages": "hi"},
            "messages",
            "Invalid type for 'messages': expected an array, but got a string instead.",
        ),
        (
            validate_chat,
            {"model": "m", "messages": HELLO, "stream": 1.5},
            "stream",
            "Invalid type for 'stream': expected a boolean, but got a number instead.",
        ),
    ],
)
def test_wrong_types_are_worded_alike_by_params_and_validate(
    check: Any, body: dict[str, Any], param: str, message: str
) -> None:
    with pytest.raises(ApiError) as caught:
        check(body)
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, param, "invalid_type")
    assert caught.value.message == message


def test_prefix_cache_counts_leading_blocks_only_and_evicts_lru() -> None:
    cache = PrefixCache(capacity_tokens=4 * BLOCK_TOKENS)
    shared = "a" * (2 * BLOCK_CHARS)
    assert cache.admit(shared + "b" * BLOCK_CHARS, 100) == 0
    assert cache.admit(shared + "c" * BLOCK_CHARS, 100) == 2 * BLOCK_TOKENS  # the shared two blocks
    assert cache.admit(shared, 2 * BLOCK_TOKENS) == 2 * BLOCK_TOKENS - 1  # one token is always computed
    assert cache.admit("d" * (3 * BLOCK_CHARS), 100) == 0  # evicts the 3 least recent blocks
    assert cache.admit(shared, 100) == 0  # ... the first shared one among them
    other = PrefixCache(capacity_tokens=100 * BLOCK_TOKENS)
    other.admit(shared, 100)
    assert other.admit("c" * BLOCK_CHARS + shared, 100) == 0  # same text, other place: no hit
    assert PrefixCache(0).admit(shared, 100) == 0


# --- strict / lenient ---


@pytest.mark.parametrize(
    "field,value,code",
    [
        ("temperature", 5, "decimal_above_max_value"),
        ("presence_penalty", 9, "decimal_above_max_value"),
        ("top_p", -0.5, "decimal_below_min_value"),
        ("top_logprobs", 21, "integer_above_max_value"),
        ("frobnicate", 1, None),
    ],
)
async def test_strict_rejects_out_of_range_and_unknown_parameters(
    sim: SimServer, field: str, value: Any, code: str | None
) -> None:
    body = chat(**{field: value})
    if field == "top_logprobs":
        body["logprobs"] = True
    status, _, payload = await raw(sim, body)
    error = json.loads(payload)["error"]
    assert status == 400 and error["param"] == field and error["code"] == code
    assert error["type"] == "invalid_request_error"


async def test_lenient_accepts_and_ignores_them(make_sim: MakeSim) -> None:
    sim = await make_sim(fast=True, strict=False)
    status, _, payload = await raw(sim, chat(temperature=5, frobnicate=1, top_k=3))
    assert status == 200 and json.loads(payload)["choices"][0]["message"]["content"]


async def test_n_above_one_is_rejected_with_a_reason(sim: SimServer) -> None:
    status, _, payload = await raw(sim, chat(n=2))
    assert status == 400 and "one choice" in json.loads(payload)["error"]["message"]


# --- honoured parameters ---


async def test_seed_same_seed_same_text_other_seed_other_text(sim: SimServer) -> None:
    async with sdk(sim) as client:
        texts = [
            (await client.chat.completions.create(model="m", messages=HELLO, seed=s, max_tokens=20))
            .choices[0]
            .message.content
            for s in (7, 7, 8)
        ]
    assert texts[0] == texts[1] != texts[2]


async def test_stop_ends_the_text_before_the_sequence(make_sim: MakeSim) -> None:
    sim = await make_sim(fast=True, output_tokens=40)
    async with sdk(sim) as client:
        full = (await client.chat.completions.create(model="m", messages=HELLO)).choices[0].message.content
        cut = await client.chat.completions.create(model="m", messages=HELLO, stop=["."])
    assert "." in full
    assert cut.choices[0].message.content == full[: full.index(".")]
    assert cut.choices[0].finish_reason == "stop"


async def test_ignore_eos_and_min_tokens_hold_the_output_length(make_sim: MakeSim) -> None:
    sim = await make_sim(fast=True, output_tokens=5)
    async with sdk(sim) as client:
        held = await client.chat.completions.create(
            model="m", messages=HELLO, max_tokens=64, extra_body={"ignore_eos": True}
        )
        floor = await client.chat.completions.create(
            model="m", messages=HELLO, max_tokens=64, extra_body={"min_tokens": 30}
        )
    assert held.usage.completion_tokens == 64 and held.choices[0].finish_reason == "length"
    assert floor.usage.completion_tokens == 30


async def test_logprobs_streamed_and_not_agree_and_parse(sim: SimServer) -> None:
    async with sdk(sim) as client:
        whole = await client.chat.completions.create(
            model="m", messages=HELLO, max_tokens=6, logprobs=True, top_logprobs=3
        )
        stream = await client.chat.completions.create(
            model="m", messages=HELLO, max_tokens=6, stream=True, logprobs=True, top_logprobs=3
        )
        streamed = [c.choices[0].logprobs.content[0] async for c in stream if c.choices and c.choices[0].logprobs]
    content = whole.choices[0].logprobs.content
    assert [e.token for e in content] == [e.token for e in streamed]
    assert "".join(e.token for e in content) == whole.choices[0].message.content
    assert all(len(e.top_logprobs) == 3 and e.top_logprobs[0].logprob == e.logprob <= 0 for e in content)
    assert [e.logprob for e in content] == [e.logprob for e in streamed]


async def test_prefix_cache_reports_cached_tokens_and_shortens_ttft(make_sim: MakeSim) -> None:
    # Latency model without jitter: TTFT = 0 + 0.001 s per uncached prompt token.
    sim = await make_sim(ttft_s=0.0, prefill_s_per_token=0.001, jitter=0.0, itl_s=0.0, output_tokens=1)
    prefix = "Shared system prompt. " * 40  # 880 characters = 220 tokens
    messages = [{"role": "system", "content": prefix}, {"role": "user", "content": "one"}]
    async with sdk(sim) as client:
        first = await client.chat.completions.create(model="m", messages=messages)
        messages[1]["content"] = "two"
        second = await client.chat.completions.create(model="m", messages=messages)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 200 and cached % BLOCK_TOKENS == 0
    assert sim.stats()["prefix_cache_hit_tokens"] == cached


# --- /v1/completions ---


async def test_sdk_parses_completions_streamed_and_not(sim: SimServer) -> None:
    async with sdk(sim) as client:
        whole = await client.completions.create(model="m", prompt="Once upon a time", max_tokens=8, logprobs=2)
        stream = await client.completions.create(
            model="m", prompt="Once upon a time", max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    assert whole.object == "text_completion" and whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 8 and len(whole.choices[0].logprobs.tokens) == 8
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == 8
    assert sim.stats()["by_endpoint"] == {"completions": 2}


async def test_completions_echo_and_errors(sim: SimServer) -> None:
    status, _, payload = await raw(
        sim, {"model": "m", "prompt": "Hi there", "max_tokens": 2, "echo": True}, path="/v1/completions"
    )
    assert status == 200 and json.loads(payload)["choices"][0]["text"].startswith("Hi there")
    status, _, payload = await raw(sim, {"model": "m", "prompt": ["a", "b"]}, path="/v1/completions")
    assert status == 400 and "one prompt" in json.loads(payload)["error"]["message"]
    status, _, payload = await raw(sim, {"model": "m", "prompt": "a", "logprobs": 9}, path="/v1/completions")
    assert status == 400 and json.loads(payload)["error"]["code"] == "integer_above_max_value"


# --- /v1/embeddings ---


async def test_sdk_parses_embeddings_float_and_base64_alike(sim: SimServer) -> None:
    async with sdk(sim) as client:
        by_sdk = await client.embeddings.create(model="m", input=["alpha", "beta"], dimensions=8)  # base64
        floats = await client.embeddings.create(
            model="m", input=["alpha", "beta"], dimensions=8, encoding_format="float"
        )
    assert [len(d.embedding) for d in by_sdk.data] == [8, 8]
    assert np.allclose(by_sdk.data[0].embedding, floats.data[0].embedding)
    assert abs(np.linalg.norm(floats.data[1].embedding) - 1.0) < 1e-5
    assert by_sdk.usage.prompt_tokens == 3  # ceil(5/4) + ceil(4/4)
    status, _, payload = await raw(
        sim, {"model": "m", "input": "alpha", "encoding_format": "base64", "dimensions": 8}, path="/v1/embeddings"
    )
    vec = np.frombuffer(base64.b64decode(json.loads(payload)["data"][0]["embedding"]), "<f4")
    assert np.allclose(vec, floats.data[0].embedding)


async def test_embeddings_errors_and_injected_faults(sim: SimServer) -> None:
    for body, code in [
        ({"model": "m", "input": []}, None),
        ({"model": "m", "input": ["ok", ""]}, "invalid_value"),
        ({"model": "m", "input": "x", "encoding_format": "hex"}, "invalid_value"),
    ]:
        status, _, payload = await raw(sim, body, path="/v1/embeddings")
        assert status == 400 and json.loads(payload)["error"]["code"] == code
    status, _, _ = await raw(sim, {"model": "m", "input": ["a", "[[sim:error=503]]"]}, path="/v1/embeddings")
    assert status == 503


async def test_embeddings_wait_for_the_fixed_latency(make_sim: MakeSim) -> None:
    sim = await make_sim(fixed_ttft_s=0.0, seed=3)
    async with sdk(sim) as client:
        one = await client.embeddings.create(model="m", input="same text", encoding_format="float")
    other = await make_sim(fast=True, seed=4)
    async with sdk(other) as client:
        two = await client.embeddings.create(model="m", input="same text", encoding_format="float")
    assert len(one.data[0].embedding) == SimConfig().embedding_dim
    assert one.data[0].embedding != two.data[0].embedding  # the seed decides the vector
