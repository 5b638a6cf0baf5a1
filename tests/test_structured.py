"""--json / --json-schema: the request body, the answer check, and the built-in endpoint's
response_format support."""

from __future__ import annotations

import json
import random

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from batchrun.endpoint.answers import AnswerCheck, response_format
from batchrun.endpoint.requests import RequestDefaults, build_body
from batchrun.inputs.prompt import Prompt
from batchrun.sim.structured import instance

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["label", "confidence", "tags"],
    "properties": {
        "label": {"type": "string", "enum": ["positive", "negative"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "detail": {"type": "object", "properties": {"n": {"type": "integer"}}},
    },
}


def test_the_body_asks_for_strict_json_schema_and_extra_body_still_wins() -> None:
    defaults = RequestDefaults(model="m", response_format=response_format(SCHEMA, False))
    body = build_body(Prompt("1", 0, 2, messages=[{"role": "user", "content": "hi"}]), defaults)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }
    assert response_format(None, True) == {"type": "json_object"} and response_format(None, False) is None
    override = RequestDefaults(
        response_format={"type": "json_object"}, extra_body={"response_format": {"type": "text"}}
    )
    assert build_body(Prompt("1", 0, 2, messages=[{"role": "user", "content": "hi"}]), override)["response_format"] == {
        "type": "text"
    }


def test_answer_check_parses_validates_and_words_the_problem() -> None:
    check = AnswerCheck(SCHEMA)
    good = {"label": "positive", "confidence": 0.9, "tags": []}
    assert check(json.dumps(good)) == (good, None)
    parsed, problem = check('{"label": "positive"')
    assert parsed is None and "not valid JSON" in problem
    parsed, problem = check(json.dumps({**good, "label": "meh"}))
    assert parsed is None and "at label" in problem and "'meh' is not one of" in problem
    assert AnswerCheck()("[1, 2]") == (None, "the answer is JSON but not an object {...}")
    assert AnswerCheck()('{"a": 1}') == ({"a": 1}, None)


def test_sim_instances_follow_the_schema() -> None:
    validator = Draft202012Validator(SCHEMA)
    for seed in range(50):
        validator.validate(instance(SCHEMA, random.Random(seed)))


async def post(sim, body: dict) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.post(sim.url + "/v1/chat/completions", json=body) as resp:
            return resp.status, await resp.read()


def streamed_text(payload: bytes) -> str:
    text = ""
    for line in payload.decode().split("\n"):
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or []:
                text += choice["delta"].get("content") or ""
    return text


async def test_the_sim_streams_json_that_matches_the_schema(sim) -> None:
    fmt = response_format(SCHEMA, False)
    status, payload = await post(
        sim,
        {"model": "m", "messages": [{"role": "user", "content": "rate it"}], "stream": True, "response_format": fmt},
    )
    assert status == 200
    Draft202012Validator(SCHEMA).validate(json.loads(streamed_text(payload)))
    status, payload = await post(
        sim, {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}
    )
    assert status == 200
    assert isinstance(json.loads(json.loads(payload)["choices"][0]["message"]["content"]), dict)


async def test_the_sim_rejects_a_malformed_response_format(sim) -> None:
    status, payload = await post(
        sim,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {}},
        },
    )
    assert status == 400 and json.loads(payload)["error"]["param"] == "response_format.json_schema"
    status, _ = await post(
        sim, {"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}
    )
    assert status == 400


async def test_the_sim_can_break_json_and_max_tokens_cuts_it(make_sim) -> None:
    broken = await make_sim(fast=True, invalid_json_rate=1.0)
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "response_format": {"type": "json_object"},
    }
    _, payload = await post(broken, body)
    with pytest.raises(ValueError):
        json.loads(streamed_text(payload))
    fine = await make_sim(fast=True)
    _, payload = await post(fine, {**body, "max_tokens": 2})
    assert len(streamed_text(payload)) <= 8 and '"finish_reason":"length"' in payload.decode()


def test_strict_mode_problems_are_named() -> None:
    from batchrun.endpoint.answers import strict_problems

    assert strict_problems(SCHEMA) == [
        "the schema does not require detail",
        "the schema.detail does not set additionalProperties: false",
        "the schema.detail does not require n",
    ]
    loose = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert strict_problems(loose) == [
        "the schema does not set additionalProperties: false",
        "the schema does not require a",
    ]
