"""endpoint/completions.py: TextSSEStream reads `text_completion` chunks with SSEStream's own
framing, timing, usage, errors and choice rules; pinned on exact instants, no network."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rawserver import DONE, chunk, usage_chunk
from test_sse import feed as feed_stream

from batchrun.endpoint.attempt import MALFORMED_CHUNK, STREAM_ERROR, AttemptResult
from batchrun.endpoint.sse import TextSSEStream


def feed(pieces: list[tuple[float, bytes]], end: float, sent: float = 0.0) -> AttemptResult:
    """TextSSEStream on network reads that arrived at exact instants."""
    return feed_stream(pieces, end, sent, TextSSEStream)


def text_chunk(
    text: str | None = "", finish: str | None = None, *, choices: list[dict[str, Any]] | None = None, **extra: Any
) -> bytes:
    """One `data: {text_completion}` SSE event, as vLLM and OpenAI send them."""
    if choices is None:
        choices = [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]
    body = {
        "id": "cmpl-raw",
        "object": "text_completion",
        "created": 0,
        "model": "text-model",
        "choices": choices,
        **extra,
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def test_text_chunks_timed_on_exact_instants() -> None:
    reads = [
        (10.2, text_chunk("Once")),
        (10.25, text_chunk(" upon")),
        (10.4, text_chunk(" a time")),
        (10.41, text_chunk("", "length") + usage_chunk(4, 3) + DONE),
    ]
    r = feed(reads, end=10.5, sent=10.0)
    assert r.status == "ok" and r.text == "Once upon a time" and r.finish_reason == "length"
    assert r.ttft_s == pytest.approx(0.2) and r.itl_s == pytest.approx([0.05, 0.15])
    assert r.latency_s == pytest.approx(0.4)  # the last text chunk, not the finish or usage chunk
    assert r.latency_s - r.ttft_s == pytest.approx(sum(r.itl_s))
    assert (r.prompt_tokens, r.completion_tokens, r.output_chunks, r.model) == (4, 3, 3, "text-model")


def test_only_choice_0_is_read_by_its_index() -> None:
    both = [{"index": 1, "text": "other", "finish_reason": "stop"}, {"index": 0, "text": "mine", "finish_reason": None}]
    reads = [
        (0.1, text_chunk(choices=both)),
        (0.2, text_chunk(choices=[{"index": 1, "text": " more", "finish_reason": "length"}])),
        (0.3, text_chunk(" too", "stop") + DONE),
    ]
    r = feed(reads, end=0.4)
    assert r.status == "ok" and r.text == "mine too" and r.finish_reason == "stop"
    assert r.itl_s == pytest.approx([0.2])


def test_a_chunk_without_choices_names_the_model_until_the_first_text_does() -> None:
    first = text_chunk(choices=[], model="azure-model")
    r = feed([(0.1, first), (0.2, text_chunk("x", "stop", model="served-model") + DONE)], end=0.3)
    assert r.status == "ok" and r.text == "x" and r.model == "served-model"
    r = feed([(0.1, first), (0.2, text_chunk("", "stop") + DONE)], end=0.3)
    assert r.model == "azure-model" and r.text == ""


@pytest.mark.parametrize(
    "bad", [b"data: {not json\n\n", text_chunk(choices=[{"index": 0, "text": 7}]), text_chunk(choices="x")]
)
def test_a_garbled_text_stream_is_a_malformed_chunk(bad: bytes) -> None:
    r = feed([(0.1, text_chunk("a")), (0.2, bad), (0.3, DONE)], end=0.4)
    assert r.status == "error" and r.error_type == MALFORMED_CHUNK and r.text == "a"
    assert "a stream line is not a text completion chunk" in r.error


def test_a_chat_stream_names_its_own_kind_when_garbled() -> None:
    r = feed_stream([(0.1, chunk("a")), (0.2, b"data: {not json\n\n")], end=0.3)
    assert r.error_type == MALFORMED_CHUNK and "a stream line is not a chat completion chunk" in r.error


def test_an_error_event_ends_the_text_stream() -> None:
    event = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    r = feed([(0.1, text_chunk("a")), (0.2, event), (0.3, text_chunk("b") + DONE)], end=0.4)
    assert r.status == "error" and r.error_type == STREAM_ERROR and "overloaded" in r.error and r.text == "a"
