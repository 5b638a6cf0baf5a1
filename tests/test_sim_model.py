"""The sim's pure parts on literal inputs: latency model, text, directives, tools, faults, limits."""

from __future__ import annotations

import json
import random

import pytest

from batchrun.errors import ConfigError
from batchrun.sim import SimConfig, model
from batchrun.sim.directives import DirectiveError, Directives, parse_directives
from batchrun.sim.faults import choose_faults, roll_fault
from batchrun.sim.limits import RateLimiter, TokenBucket
from batchrun.sim.planner import plan_request, token_cost
from batchrun.sim.text import WORDS, generate_tokens
from batchrun.sim.tools import choose_tools, make_calls, mentioned_tools, split_arguments

NO_DIRECTIVES = Directives()
USER = [{"role": "user", "content": "Tell me about rivers."}]


def plan(cfg: SimConfig, body: dict, attempt: int = 0):
    d = parse_directives(body["messages"][-1].get("content") or "", attempt)
    return plan_request(cfg, body, d, attempt, model.estimate_prompt_tokens(body["messages"]))


# --- latency model ---


def test_ttft_adds_prefill_per_prompt_token() -> None:
    cfg = SimConfig(ttft_s=0.2, prefill_s_per_token=0.001)
    assert model.ttft_s(cfg, 100) == pytest.approx(0.3)
    assert model.ttft_s(cfg, 100, jitter=2.0) == pytest.approx(0.5)


def test_itl_grows_with_decoding_sequences() -> None:
    cfg = SimConfig(itl_s=0.02, itl_load_factor=0.05)
    assert model.itl_s(cfg, 1) == pytest.approx(0.02)
    assert model.itl_s(cfg, 11) == pytest.approx(0.03)


def test_fast_and_fixed_modes_ignore_load_and_jitter() -> None:
    fast, fixed = SimConfig(fast=True), SimConfig(fixed_ttft_s=0.05, fixed_itl_s=0.005)
    assert (model.ttft_s(fast, 1000), model.itl_s(fast, 16)) == (0.0, 0.0)
    assert (model.ttft_s(fixed, 1000, 3.0), model.itl_s(fixed, 16, 3.0)) == (0.05, 0.005)
    assert model.jitter_factors(random.Random(1), fixed, 3) == [1.0, 1.0, 1.0]


def test_queue_wait_is_zero_below_capacity_then_grows_linearly() -> None:
    cfg = SimConfig(max_concurrency=4)
    waits = [model.expected_queue_wait_s(cfg, n, service_s=1.0) for n in (0, 3, 4, 8, 12)]
    assert waits == [0.0, 0.0, 0.25, 1.25, 2.25]


def test_default_output_length_has_the_configured_mean() -> None:
    rng = random.Random(7)
    lengths = [model.sample_output_tokens(rng, SimConfig()) for _ in range(4000)]
    assert 72 < sum(lengths) / len(lengths) < 88
    assert min(lengths) >= 1


def test_prompt_tokens_are_chars_over_four_across_messages_and_parts() -> None:
    messages = [
        {"role": "system", "content": "x" * 10},
        {"role": "user", "content": [{"type": "text", "text": "y" * 7}, {"type": "image_url"}]},
    ]
    assert model.estimate_prompt_tokens(messages) == 5  # ceil(17 / 4)


@pytest.mark.parametrize(
    "seconds, text", [(0.02, "20ms"), (1.0, "1s"), (2.5, "2.5s"), (360.0, "6m0s"), (3723.0, "1h2m3s")]
)
def test_reset_durations_use_openai_format(seconds: float, text: str) -> None:
    assert model.format_duration(seconds) == text


# --- text and determinism ---


def test_tokens_are_words_forming_sentences() -> None:
    tokens = generate_tokens(random.Random(3), 40)
    assert len(tokens) == 40
    assert tokens[0][0].isupper() and not tokens[0].startswith(" ")
    assert all(t.startswith(" ") for t in tokens[1:])
    assert all(t.strip().rstrip(".").lower() in WORDS for t in tokens)
    assert tokens[-1].endswith(".")


def test_text_depends_on_seed_and_messages_not_on_attempt() -> None:
    body = {"model": "m", "messages": USER}
    a, b = plan(SimConfig(seed=1), body), plan(SimConfig(seed=1), body, attempt=3)
    assert a.tokens == b.tokens
    assert plan(SimConfig(seed=2), body).tokens != a.tokens
    other = {"model": "m", "messages": [{"role": "user", "content": "Tell me about roads."}]}
    assert plan(SimConfig(seed=1), other).tokens != a.tokens


def test_max_tokens_caps_the_answer_with_finish_length() -> None:
    cfg = SimConfig(output_tokens=50)
    capped = plan(cfg, {"model": "m", "messages": USER, "max_completion_tokens": 7})
    assert (len(capped.tokens), capped.finish_reason, capped.completion_tokens) == (7, "length", 7)
    full = plan(cfg, {"model": "m", "messages": USER, "max_tokens": 50})
    assert (len(full.tokens), full.finish_reason) == (50, "stop")


def test_jitter_differs_between_attempts_but_is_reproducible() -> None:
    body = {"model": "m", "messages": USER}
    cfg = SimConfig()
    assert plan(cfg, body).ttft_s == plan(cfg, body).ttft_s
    assert plan(cfg, body).ttft_s != plan(cfg, body, attempt=1).ttft_s


# --- directives ---


def test_directives_parse_values_flags_and_several_per_marker() -> None:
    d = parse_directives("hi [[sim:tokens=32,cut=10]] and [[sim:bad_args]] [[sim:ttft=0.5]]")
    assert d == Directives(tokens=32, cut=10, bad_args=True, ttft=0.5)
    assert parse_directives("[[sim:malformed]]").malformed == 1
    assert parse_directives("no marker here") == Directives()


def test_directive_with_attempt_limit_fires_only_on_first_attempts() -> None:
    text = "[[sim:error=500x2]]"
    assert [parse_directives(text, a).error for a in range(4)] == [500, 500, None, None]


@pytest.mark.parametrize(
    "text",
    [
        "[[sim:nonsense=3]]",
        "[[sim:tokens]]",
        "[[sim:error=200]]",
        "[[sim:cut=x]]",
        "[[sim:batch_line=nope]]",
        "[[sim:batch_line=5]]",
        "[[sim:batch_bytes=0]]",
    ],
)
def test_bad_directives_are_rejected(text: str) -> None:
    with pytest.raises(DirectiveError):
        parse_directives(text)


# --- tools ---

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "required": ["city", "days", "unit"],
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "maximum": 10},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}, "exact": {"type": "boolean"}}},
    },
}


def choose(body: dict, text: str, last_role: str = "user", d: Directives = NO_DIRECTIVES, rate: float = 0.0):
    return choose_tools(body, text, last_role, d, random.Random(0), rate)


def test_named_tools_are_called_in_mention_order_and_parallel_can_be_off() -> None:
    body = {"tools": [WEATHER, TIME]}
    text = "use get_time and then get_weather"
    assert choose(body, text) == ["get_time", "get_weather"]
    assert choose({**body, "parallel_tool_calls": False}, text) == ["get_time"]
    assert mentioned_tools(["get_weather"], "get_weathers is not it") == []


def test_tool_choice_none_required_named_and_tool_results() -> None:
    body = {"tools": [WEATHER, TIME]}
    assert choose({**body, "tool_choice": "none"}, "get_weather") == []
    assert len(choose({**body, "tool_choice": "required"}, "hello")) == 1
    named = {**body, "tool_choice": {"type": "function", "function": {"name": "get_time"}}}
    assert choose(named, "hello") == ["get_time"]
    assert choose(body, "get_weather", last_role="tool") == []
    assert choose(body, "get_weather", last_role="tool", d=Directives(always_tools=True)) == ["get_weather"]
    assert choose(body, "hello", rate=0.0) == [] and len(choose(body, "hello", rate=1.0)) == 1


def test_arguments_follow_the_schema_with_values_from_the_prompt() -> None:
    text = "Weather in Paris for 3 days please [[sim:tokens=99]]"
    [call] = make_calls(["get_weather"], {"tools": [WEATHER]}, text, random.Random(0), bad_args=False)
    assert json.loads(call.arguments) == {"city": "Paris", "days": 3, "unit": "celsius"}
    assert call.id.startswith("call_")
    [loose] = make_calls(["get_time"], {"tools": [TIME]}, "now", random.Random(0), bad_args=False)
    assert set(json.loads(loose.arguments)) == {"zone", "exact"}


def test_bad_args_are_not_json_and_pieces_rebuild_the_arguments() -> None:
    [call] = make_calls(["get_weather"], {"tools": [WEATHER]}, "x", random.Random(0), bad_args=True)
    with pytest.raises(ValueError):
        json.loads(call.arguments)
    pieces = split_arguments('{"city":"Paris","days":3}', random.Random(1))
    assert len(pieces) > 3 and "".join(pieces) == '{"city":"Paris","days":3}'


# --- faults ---


def test_fault_roll_matches_rates_and_lands_mid_stream() -> None:
    cfg = SimConfig(error_500_rate=0.2, cut_rate=0.3)
    rng = random.Random(5)
    rolls = [roll_fault(cfg, rng, 10) for _ in range(5000)]
    errors = sum(f.error == 500 for f in rolls) / 5000
    cuts = [f.events[0][0] for f in rolls if f.events]
    assert 0.17 < errors < 0.23 and 0.27 < len(cuts) / 5000 < 0.33
    assert min(cuts) >= 1 and max(cuts) <= 9


def test_directive_faults_override_rates_and_clamp_to_the_stream() -> None:
    cfg = SimConfig(error_500_rate=1.0)
    assert choose_faults(cfg, Directives(cut=50), random.Random(0), 10).events == ((10, "cut"),)
    both = choose_faults(cfg, Directives(cut=5, malformed=2), None, 10)
    assert both.events == ((2, "malformed"), (5, "cut"))


# --- limits ---


def test_token_bucket_refills_at_limit_per_minute() -> None:
    b = TokenBucket(60, now=0.0)
    b.take(60, 0.0)
    assert b.remaining(0.0) == 0 and b.wait_s(1, 0.0) == pytest.approx(1.0)
    assert b.remaining(10.0) == 10 and b.reset_s(10.0) == pytest.approx(50.0)


def test_limiter_denies_without_charging_and_reports_headers() -> None:
    lim = RateLimiter(rpm=2, tpm=1000, now=0.0)
    assert lim.admit(400, 0.0) is None and lim.admit(400, 0.0) is None
    denied = lim.admit(100, 0.0)
    assert denied is not None and denied.kind == "requests" and denied.wait_s == pytest.approx(30.0)
    tokens = RateLimiter(rpm=None, tpm=1000, now=0.0)
    assert tokens.admit(900, 0.0) is None
    assert tokens.admit(200, 0.0).kind == "tokens"  # type: ignore[union-attr]
    assert tokens.admit(100, 0.0) is None  # the denied request cost nothing
    headers = dict(lim.headers(0.0))
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "1m0s"
    assert "x-ratelimit-limit-requests" not in dict(tokens.headers(0.0))


def test_token_cost_reserves_max_tokens_or_a_default() -> None:
    assert token_cost({"max_tokens": 100}, 20) == 120
    assert token_cost({}, 20) == 20 + 256


# --- config ---


@pytest.mark.parametrize(
    "bad",
    [{"max_concurrency": 0}, {"cut_rate": 1.5}, {"models": ()}, {"error_500_rate": 0.6, "cut_rate": 0.6}, {"rpm": 0}],
)
def test_config_rejects_nonsense(bad: dict) -> None:
    with pytest.raises(ConfigError):
        SimConfig(**bad)


def test_config_round_trips_through_json() -> None:
    cfg = SimConfig(seed=3, models=("a", "b"), rpm=5, fixed_ttft_s=0.1)
    assert SimConfig.from_json(cfg.to_json()) == cfg


def test_fresh_jitter_differs_for_the_same_prompt_and_keyed_jitter_does_not() -> None:
    body = {"model": "m", "messages": USER, "max_tokens": 8}
    keyed = SimConfig(jitter=0.2)
    assert plan(keyed, body).ttft_s == plan(keyed, body).ttft_s
    fresh = SimConfig(jitter=0.2, fresh_jitter=True)
    assert plan(fresh, body).ttft_s != plan(fresh, body).ttft_s
    assert plan(fresh, body).tokens == plan(keyed, body).tokens  # the answer itself stays
