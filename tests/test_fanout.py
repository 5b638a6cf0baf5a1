"""The run / cancel skeleton Pool and EmbedPool share (engine/fanout.py), on plain asyncio: no
timers, so every step is the same on any machine."""

from __future__ import annotations

import asyncio
import itertools
from typing import AsyncIterator, Iterable

import pytest

from batchrun.engine.fanout import Fanout
from batchrun.errors import InputError


class Collect(Fanout[int]):
    """Workers that note each entry; while `gate` is unset they hold the first one they get."""

    def __init__(self, workers: int, stop_at: int | None = None) -> None:
        super().__init__(workers)
        self.produced, self.seen, self.stop_at = 0, [], stop_at
        self.gate = asyncio.Event()
        self.gate.set()
        self.input_closed = False
        self.ends = 0

    async def run(self, items: Iterable[int]) -> None:
        await self._fan_out(self._entries(items), self._work)

    async def _entries(self, items: Iterable[int]) -> AsyncIterator[int]:
        try:
            for item in items:
                self.produced += 1
                assert self.produced - len(self.seen) <= 3 * self._workers + 1
                yield item
        finally:
            self.input_closed = True

    async def _work(self) -> None:
        while (entry := await self._queue.get()) is not None:
            self.seen.append(entry)
            if entry == self.stop_at:
                self.stop()
            await self.gate.wait()
        self.ends += 1


async def settle() -> None:
    """Let every ready task run until it waits (no timers here, so this is exact)."""
    for _ in range(100):
        await asyncio.sleep(0)


def alone() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


async def test_every_entry_reaches_one_worker_and_each_worker_gets_one_end_marker() -> None:
    pool = Collect(4)
    await pool.run(range(50))
    assert sorted(pool.seen) == list(range(50)) and pool.ends == 4
    assert pool.input_error is None and pool.input_closed and alone()


async def test_the_reader_stays_at_most_a_bounded_queue_ahead_of_the_workers() -> None:
    pool = Collect(3)
    pool.gate.clear()  # each worker holds its first entry
    run = asyncio.create_task(pool.run(range(1_000)))
    await settle()
    # 3 held by workers + 6 in the queue + 1 the reader waits to put: never the whole input.
    assert (len(pool.seen), pool.produced) == (3, 10)
    pool.gate.set()
    await run
    assert sorted(pool.seen) == list(range(1_000)) and alone()


async def test_an_input_error_ends_the_input_after_the_entries_before_it() -> None:
    def items():
        yield from range(5)
        raise InputError("bad row", path="p.csv", line=7)

    pool = Collect(2)
    await pool.run(items())
    assert sorted(pool.seen) == [0, 1, 2, 3, 4] and pool.ends == 2
    assert isinstance(pool.input_error, InputError) and pool.input_error.line == 7 and alone()


async def test_stop_from_a_worker_is_a_normal_end_and_leaves_no_task() -> None:
    pool = Collect(2, stop_at=5)
    await pool.run(itertools.count())  # endless input
    assert 5 in pool.seen and pool.input_closed and alone()


async def test_our_own_cancellation_is_raised_again_and_leaves_no_task() -> None:
    pool = Collect(2)
    pool.gate.clear()
    run = asyncio.create_task(pool.run(itertools.count()))
    await settle()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert pool.input_closed and alone()


async def test_a_worker_crash_cancels_the_rest_and_propagates() -> None:
    class Crash(Collect):
        async def _work(self) -> None:
            await self._queue.get()
            raise ValueError("bug")

    pool = Crash(3)
    with pytest.raises(ValueError, match="bug"):
        await pool.run(itertools.count())
    assert pool.input_closed and alone()
