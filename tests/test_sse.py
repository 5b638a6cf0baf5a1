"""sse.py: the bytes of one streamed response -> one AttemptResult; the timing maths on exact instants."""

from __future__ import annotations

import pytest
from rawserver import DONE, chunk, usage_chunk

from batchrun.endpoint.attempt import AttemptResult
from batchrun.endpoint.sse import SSEStream

USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def feed(
    pieces: list[tuple[float, bytes]], end: float, sent: float = 0.0, parse: type[SSEStream] = SSEStream
) -> AttemptResult:
    """Run SSEStream (or a subclass) on network reads that arrived at exact instants."""
    result = AttemptResult(sent=sent)
    stream = parse(result)
    for now, piece in pieces:
        if stream.feed(piece, now):
            break
    stream.finish(end)
    return result


def test_timing_on_exact_instants() -> None:
    reads = [
        (10.05, chunk("", role="assistant")),
        (10.3, chunk("a")),
        (10.32, chunk(" b")),
        (10.37, chunk(" c") + chunk(finish="stop")),
        (10.372, usage_chunk(5, 3) + DONE),
    ]
    r = feed(reads, end=10.4, sent=10.0)
    assert r.status == "ok" and r.text == "a b c" and r.finish_reason == "stop"
    assert r.ttft_s == pytest.approx(0.3)  # the empty role chunk is not a token
    assert r.itl_s == pytest.approx([0.02, 0.05])
    assert r.latency_s == pytest.approx(0.37)  # the last content chunk, not the usage chunk
    assert r.latency_s - r.ttft_s == pytest.approx(sum(r.itl_s))
    assert r.total_s == pytest.approx(0.4)
    assert (r.prompt_tokens, r.completion_tokens, r.output_chunks, r.model) == (5, 3, 3, "raw-model")


def test_events_in_one_read_share_its_arrival_time_and_lines_may_split_anywhere() -> None:
    stream = chunk("x") + chunk("y") + chunk("z") + DONE
    first = len(chunk("x"))
    r = feed([(1.0, stream[:7]), (1.5, stream[7 : first + 20]), (2.0, stream[first + 20 :])], end=2.0)
    assert r.text == "xyz" and r.status == "ok" and r.ttft_s == 1.5  # the first event completes at 1.5
    assert r.itl_s == [0.5, 0.0]  # y and z arrived in the same read
    assert sum(r.itl_s) == pytest.approx(r.latency_s - r.ttft_s)


def test_multi_token_chunks_count_one_gap_each() -> None:
    r = feed(
        [
            (0.1, chunk("one two")),
            (0.3, chunk(" three four five")),
            (0.31, chunk(finish="length") + usage_chunk(2, 5) + DONE),
        ],
        end=0.4,
    )
    assert r.itl_s == pytest.approx([0.2]) and r.completion_tokens == 5 and r.finish_reason == "length"


@pytest.mark.parametrize(
    "tail,place",
    [
        (chunk(" c") + chunk(finish="stop") + usage_chunk(5, 3), "trailing"),
        (chunk(" c") + chunk(finish="stop", usage=USAGE), "finish"),
        (chunk(" c", usage=USAGE) + chunk(finish="stop"), "content"),
        (chunk(" c") + chunk(finish="stop") + chunk("", usage=USAGE), "trailing"),  # LiteLLM: an empty delta
        (chunk(" c") + chunk(finish="stop"), None),
    ],
)
def test_where_usage_came_is_recorded(tail: bytes, place: str | None) -> None:
    r = feed([(0.1, chunk("a")), (0.2, chunk(" b")), (0.3, tail + DONE)], end=0.4)
    assert r.status == "ok" and r.text == "a b c" and r.usage_chunk == place
    assert r.completion_tokens == (None if place is None else 3)


def test_done_without_a_final_newline_still_ends_the_stream() -> None:
    r = feed([(0.1, chunk("a") + b"data: [DONE]")], end=0.2)
    assert r.status == "ok" and r.text == "a"
