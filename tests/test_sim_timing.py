"""When the built-in endpoint sends each chunk: its timeline starts when a request is handed to
its handler (parsing and planning are inside the TTFT it draws), and chunk counts follow a
fractional tokens_per_chunk. Ordering against timers, never a wall-clock bound."""

from __future__ import annotations

import asyncio
import time

import pytest

from batchrun.sim.config import SimConfig
from batchrun.sim.delivery import Engine, Hooks, StreamDelivery
from batchrun.sim.planner import Plan, chunk_edges, content_chunk_count


class Wire:
    """The socket side of a connection, faked at the edge: it keeps what is written, and when."""

    def __init__(self, received_s: float) -> None:
        self.received_s = received_s
        self.watcher: object = None
        self.writes: list[tuple[float, bytes]] = []
        self.first = asyncio.get_running_loop().create_future()

    def write(self, data: bytes) -> None:
        self.writes.append((time.monotonic(), data))
        if data != b"HEAD" and not self.first.done():
            self.first.set_result(None)

    def finish(self) -> None:
        self.watcher = None

    def close(self) -> None:
        self.watcher = None


async def test_a_request_is_timed_from_its_hand_over_not_from_when_its_plan_was_ready() -> None:
    """A request handed over 0.3 s before its delivery starts (a slow parse, a busy loop), with a
    TTFT of 0.5 s, gets its first chunk 0.2 s after the start: before a timer set at 0.4 s."""
    wire = Wire(received_s=time.monotonic() - 0.3)
    plan = Plan(prompt_tokens=1, tokens=["a", "b"], queued=False, ttft_s=0.5)
    delivery = StreamDelivery(
        SimConfig(fixed_ttft_s=0.5, fixed_itl_s=0.01),
        Engine(1),
        wire,  # type: ignore[arg-type]
        plan,
        Hooks(lambda kind: None, lambda done: None),
        b"HEAD",
        [b"a", b"b"],
        b"END",
        b"",
    )
    marker = asyncio.get_running_loop().create_future()
    handle = asyncio.get_running_loop().call_later(0.4, marker.set_result, None)
    delivery.start()
    try:
        done, _ = await asyncio.wait([wire.first, marker], return_when=asyncio.FIRST_COMPLETED)
        assert wire.first in done and not marker.done(), "the first chunk waited the whole TTFT again"
    finally:
        handle.cancel()
        delivery.cancel()


def test_fractional_tokens_per_chunk_mixes_chunk_sizes_evenly() -> None:
    edges = chunk_edges(32, 32 / 27)
    assert len(edges) - 1 == content_chunk_count(32, 32 / 27) == 27
    sizes = [b - a for a, b in zip(edges, edges[1:])]
    assert sorted(set(sizes)) == [1, 2] and sizes.count(2) == 5 and sum(sizes) == 32
    assert chunk_edges(7, 3.0) == [0, 3, 6, 7] and content_chunk_count(0, 1.5) == 0


def test_a_fractional_chunk_count_keeps_its_mean() -> None:
    """24 tokens at 1.18 a chunk are 20.34 chunks: 21 for draws under 0.34, else 20 (a whole
    tokens_per_chunk still rounds up: 7 tokens at 3 are 3 + 3 + 1)."""
    k = 24 / 20.34
    assert [content_chunk_count(24, k, u) for u in (0.0, 0.33, 0.35, 0.99)] == [21, 21, 20, 20]
    draws = [content_chunk_count(24, k, (i + 0.5) / 1000) for i in range(1000)]
    assert sum(draws) / 1000 == pytest.approx(20.34, abs=0.01)
    assert {content_chunk_count(7, 3.0, u) for u in (0.0, 0.9)} == {3}
    assert content_chunk_count(1, 1.5, 0.9) == 1  # never no chunk for a token
