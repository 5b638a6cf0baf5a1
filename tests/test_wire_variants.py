"""Provider wire variants and hostile servers, each over a real socket (servers in wireservers.py)."""

from __future__ import annotations

import json
import tracemalloc
from typing import Callable

import pytest
import wireservers as ws
from rawserver import DONE, chunk, raw_server

from batchrun.endpoint.attempt import EMPTY_RESPONSE, RESPONSE_TOO_LARGE, AttemptResult
from batchrun.endpoint.sse import SSEStream
from batchrun.endpoint.toolcalls import ToolCallAssembler
from batchrun.endpoint.transport import Endpoint, StreamClient, make_session

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


async def send(handler, **kw) -> AttemptResult:
    async with raw_server(handler) as url, make_session(2) as session:
        return await StreamClient(session, Endpoint(url), **kw).send(BODY)


async def test_litellm_usage_chunk_with_an_empty_delta_choice_is_read() -> None:
    r = await send(ws.litellm_usage)
    assert r.status == "ok" and r.text == "Hello you"
    assert (r.prompt_tokens, r.completion_tokens) == (11, 3)  # not estimated
    assert r.output_chunks == 3 and len(r.itl_s) == 2  # the usage chunk is no token


async def test_vllm_continuous_usage_the_last_one_wins_and_no_chunk_counts_twice() -> None:
    r = await send(ws.vllm_continuous_usage)
    assert r.status == "ok" and r.text == "abc" and (r.prompt_tokens, r.completion_tokens) == (7, 3)
    assert r.output_chunks == 3


async def test_cached_prompt_tokens_are_read_from_usage_or_llama_servers_timings() -> None:
    r = await send(ws.openai_cached_prompt)
    assert r.status == "ok" and (r.prompt_tokens, r.cached_tokens) == (1200, 1024)
    r = await send(ws.llama_server_cache_n)
    assert r.status == "ok" and (r.prompt_tokens, r.cached_tokens) == (24, 23)
    r = await send(ws.litellm_usage)
    assert r.cached_tokens is None  # not said: unknown, not 0


async def test_bare_cr_line_endings() -> None:
    r = await send(ws.bare_cr)
    assert r.status == "ok" and r.text == "one two" and r.completion_tokens == 2


async def test_done_without_a_space_and_without_a_newline_ends_the_stream() -> None:
    r = await send(ws.done_without_space)
    assert r.status == "ok" and r.text == "hi"


async def test_n_choices_are_kept_apart_by_index() -> None:
    r = await send(ws.n_choices_interleaved)
    assert r.status == "ok" and r.text == "A1 A2" and r.other_choices == ["B1 B2"]


async def test_reasoning_is_recorded_apart_with_its_own_first_token_time() -> None:
    r = await send(ws.reasoning_then_answer)
    assert r.status == "ok" and r.text == "Yes." and r.reasoning_text == "Let me think."
    assert r.reasoning_tokens == 3 and r.completion_tokens == 6
    assert r.output_chunks == 5  # 3 reasoning + 2 answer chunks
    assert r.ttft_s is not None and r.ttfo_s is not None and r.ttfo_s > r.ttft_s  # first answer comes later
    assert r.first_content_s == r.ttfo_s


def test_reasoning_without_an_answer_or_a_finish_reason_is_an_empty_response() -> None:
    result = AttemptResult(sent=0.0)
    stream = SSEStream(result)
    stream.feed(b'data: {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}\n\n' + DONE, 1.0)
    stream.finish(1.0)
    assert result.error_type == EMPTY_RESPONSE and "reasoning but no answer" in result.error


def test_reasoning_that_spent_max_tokens_is_an_ok_empty_answer_keeping_its_reasoning() -> None:
    """The server ended it (finish_reason length): not a failure of the request, an empty answer."""
    result = AttemptResult(sent=0.0)
    stream = SSEStream(result)
    stream.feed(b'data: {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}\n\n', 0.5)
    stream.feed(chunk(finish="length") + DONE, 1.0)
    stream.finish(1.0)
    assert (result.status, result.text, result.reasoning_text, result.finish_reason) == ("ok", "", "hmm", "length")
    assert (result.ttft_s, result.ttfo_s, result.latency_s) == (0.5, None, 0.5)


async def test_an_endless_stream_ends_at_the_response_cap_not_at_the_timeout() -> None:
    r = await send(ws.endless_stream, max_response_bytes=1 << 20, timeout_s=600)
    assert r.status == "error" and r.error_type == RESPONSE_TOO_LARGE and "--max-response-bytes" in r.error


async def test_a_line_without_a_newline_ends_at_the_cap() -> None:
    r = await send(ws.long_line(8 << 20), max_response_bytes=2 << 20)
    assert r.error_type == RESPONSE_TOO_LARGE


async def test_a_long_line_under_the_cap_is_parsed_whole() -> None:
    async def handler(request):
        from rawserver import sse

        big = "z" * 3_000_000
        body = json.dumps({"choices": [{"index": 0, "delta": {"content": big}}]}).encode()
        return await sse(
            request,
            [b"data: ", *(body[i : i + 1000] for i in range(0, len(body), 1000)), b"\n\n", chunk(finish="stop"), DONE],
        )

    r = await send(handler)
    assert r.status == "ok" and len(r.text) == 3_000_000


async def test_a_429_body_sent_in_two_writes_is_read_whole() -> None:
    r = await send(ws.rate_limit_body_in_two_writes)
    assert r.error_type == "RateLimitError"
    assert r.error.endswith("Limit 3, Used 3, Requested 1."), r.error


def _feed_line(pieces: int) -> None:
    stream = SSEStream(AttemptResult(sent=0.0), max_bytes=1 << 40)
    stream.feed(b'data: {"choices": [{"index": 0, "delta": {"content": "', 0.0)
    block = b"y" * 64
    for _ in range(pieces):
        stream.feed(block, 0.0)
    stream.feed(b'"}}]}\n\n', 0.0)
    assert len(stream._parts[0]) == 64 * pieces


def _join_arguments(pieces: int) -> None:
    tools = ToolCallAssembler()
    tools.add([{"index": 0, "id": "c", "function": {"name": "f", "arguments": "["}}])
    for _ in range(pieces):
        tools.add([{"index": 0, "function": {"arguments": "1," * 32}}])
    tools.add([{"index": 0, "function": {"arguments": "1]"}}])
    assert len(tools.calls()[0]["parsed_arguments"]) == 32 * pieces + 1


def _allocated(calls: list) -> int:
    """Bytes allocated while the calls run: per call, how far traced memory rose above where it
    stood before. Counts work, not time: the same number on any machine, at any load."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        total = 0
        for call in calls:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            call()
            total += tracemalloc.get_traced_memory()[1] - before
        return total
    finally:
        if started:
            tracemalloc.stop()


def _sse_line_reads(pieces: int) -> tuple[list, int, Callable[[], None]]:
    """One long SSE line in `pieces` 64-byte reads: (the feed calls, bytes fed, a check of the text)."""
    stream = SSEStream(AttemptResult(sent=0.0), max_bytes=1 << 40)
    reads = [b'data: {"choices": [{"index": 0, "delta": {"content": "', *[b"y" * 64] * pieces, b'"}}]}\n\n']
    calls = [lambda read=read: stream.feed(read, 0.0) for read in reads]

    def check() -> None:
        assert stream._parts == ["y" * 64 * pieces]

    return calls, sum(map(len, reads)), check


def _tool_argument_deltas(pieces: int) -> tuple[list, int, Callable[[], None]]:
    """A tool call whose arguments arrive in `pieces` 64-character fragments, then joined."""
    tools = ToolCallAssembler()
    deltas = [
        [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "["}}],
        *[[{"index": 0, "function": {"arguments": "1," * 32}}]] * pieces,
        [{"index": 0, "function": {"arguments": "1]"}}],
    ]
    calls = [lambda delta=delta: tools.add(delta) for delta in deltas]
    parsed: list = []
    calls.append(lambda: parsed.append(tools.calls()[0]["parsed_arguments"]))

    def check() -> None:
        assert len(parsed[0]) == 32 * pieces + 1

    return calls, 64 * pieces + 2, check


@pytest.mark.parametrize("make", [_sse_line_reads, _tool_argument_deltas], ids=["sse-line", "tool-arguments"])
def test_parsing_is_linear_in_the_bytes(make) -> None:
    """8x the reads must allocate about 8x the bytes, not 64x: the old `tail + piece` and `+=` copied
    the whole line so far on every read. Allocation is counted, not timed, so the figures are the
    same on any machine at any load (measured: 8.0x; a quadratic join: ~60x)."""
    allocated = []
    for pieces in (500, 4_000):
        calls, _, check = make(pieces)
        allocated.append(_allocated(calls))
        check()
    assert allocated[1] < 16 * allocated[0], allocated
