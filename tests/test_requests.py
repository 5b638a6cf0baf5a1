"""requests.py: body precedence, streaming fields, Batch API bodies, token estimates."""

from __future__ import annotations

import json
from typing import Any

from batchrun.endpoint.requests import (
    DEFAULT_OUTPUT_TOKENS,
    RequestDefaults,
    build_body,
    estimate_prompt_tokens,
    estimate_request_tokens,
)
from batchrun.inputs.prompt import Prompt

USER = [{"role": "user", "content": "hello"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
STREAM = {"stream": True, "stream_options": {"include_usage": True}}


def prompt(**params: Any) -> Prompt:
    return Prompt("1", 0, 2, messages=list(USER), params=params)


def test_defaults_and_stream_fields() -> None:
    body = build_body(prompt(), RequestDefaults(model="m", max_tokens=100, temperature=0.5))
    assert body == {"model": "m", "messages": USER, "max_tokens": 100, "temperature": 0.5, **STREAM}
    json.dumps(body)


def test_unset_defaults_are_left_out() -> None:
    assert build_body(prompt(), RequestDefaults()) == {"messages": USER, **STREAM}


def test_row_params_beat_extra_body_which_beats_named_defaults() -> None:
    defaults = RequestDefaults(model="m", temperature=0.1, extra_body={"temperature": 0.2, "top_k": 5, "model": "x"})
    body = build_body(prompt(model="row-model"), defaults)
    assert (body["model"], body["temperature"], body["top_k"]) == ("row-model", 0.2, 5)
    assert build_body(prompt(temperature=0.9), defaults)["temperature"] == 0.9


def test_extra_body_cannot_replace_messages_or_streaming() -> None:
    defaults = RequestDefaults(extra_body={"messages": [], "stream": False, "stream_options": {"x": 1}})
    body = build_body(prompt(), defaults)
    assert body["messages"] == USER and body["stream"] is True
    assert body["stream_options"] == {"x": 1, "include_usage": True}


def test_a_token_limit_replaces_both_names_from_lower_layers() -> None:
    by_extra = RequestDefaults(max_tokens=100, extra_body={"max_completion_tokens": 50})
    body = build_body(prompt(), by_extra)
    assert "max_tokens" not in body and body["max_completion_tokens"] == 50
    body = build_body(prompt(max_tokens=7), by_extra)
    assert body["max_tokens"] == 7 and "max_completion_tokens" not in body
    body = build_body(prompt(max_completion_tokens=9), RequestDefaults(max_tokens=100))
    assert body["max_completion_tokens"] == 9 and "max_tokens" not in body


def test_tool_options_only_go_with_tools() -> None:
    defaults = RequestDefaults(tool_choice="auto", parallel_tool_calls=False)
    assert "tool_choice" not in build_body(prompt(), defaults)
    body = build_body(prompt(tools=TOOLS), defaults)
    assert (body["tools"], body["tool_choice"], body["parallel_tool_calls"]) == (TOOLS, "auto", False)
    body = build_body(prompt(tools=TOOLS, tool_choice="none"), defaults)
    assert body["tool_choice"] == "none"
    assert build_body(prompt(), RequestDefaults(tools=TOOLS, tool_choice="required"))["tool_choice"] == "required"


def test_inputs_are_not_mutated() -> None:
    extra = {"stream_options": {"x": 1}, "top_p": 0.5}
    row = prompt(max_tokens=3)
    build_body(row, RequestDefaults(max_tokens=10, extra_body=extra))
    assert extra == {"stream_options": {"x": 1}, "top_p": 0.5} and row.params == {"max_tokens": 3}


def test_batch_body_is_sent_as_written_plus_streaming() -> None:
    source = {"model": "own", "messages": USER, "max_tokens": 5, "stream": False}
    batch = Prompt("r1", 0, 1, body=source)
    defaults = RequestDefaults(model="run", max_tokens=100, temperature=1.0, extra_body={"top_k": 2})
    assert build_body(batch, defaults) == {"model": "own", "messages": USER, "max_tokens": 5, **STREAM}
    assert source["stream"] is False  # the Prompt's body is untouched


def test_batch_body_takes_run_model_only_when_it_has_none() -> None:
    body = build_body(Prompt("r1", 0, 1, body={"messages": USER}), RequestDefaults(model="run"))
    assert body["model"] == "run"


def test_prompt_estimate_is_utf8_bytes_over_four_plus_message_overhead() -> None:
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": "x" * 400}]}) == 100 + 4
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": "世界" * 10}]}) == 15 + 4
    assert estimate_prompt_tokens({"messages": []}) == 1
    assert estimate_prompt_tokens({}) == 1


def test_prompt_estimate_counts_parts_images_tool_calls_and_tools() -> None:
    parts = [{"type": "text", "text": "abcd" * 2}, {"type": "image_url", "image_url": {"url": "data:..."}}]
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": parts}]}) == 2 + 4 + 85
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    with_call = {"messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]}
    assert estimate_prompt_tokens(with_call) > 4
    assert estimate_prompt_tokens({"messages": USER, "tools": TOOLS}) > estimate_prompt_tokens({"messages": USER})


def test_request_estimate_adds_the_output_limit() -> None:
    base = estimate_prompt_tokens({"messages": USER})
    assert estimate_request_tokens({"messages": USER, "max_tokens": 50}) == base + 50
    assert estimate_request_tokens({"messages": USER, "max_completion_tokens": 70, "max_tokens": 50}) == base + 70
    assert estimate_request_tokens({"messages": USER}, default_max_tokens=30) == base + 30
    assert estimate_request_tokens({"messages": USER}) == base + DEFAULT_OUTPUT_TOKENS
