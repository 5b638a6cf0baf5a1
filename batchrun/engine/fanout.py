"""The run / cancel skeleton the pools share: one reader task fills a bounded queue, a fixed set
of workers drains it, stop() cancels them all, and a run always waits for every task to end.

    class MyPool(Fanout[Entry]):
        async def run(self, items):
            await self._fan_out(self._entries(items), self._work)   # _work: get() until None

Bounding the queue (twice the workers) keeps memory flat however long the input is: the reader
waits for room instead of reading ahead. Cancelling and then gathering with
return_exceptions=True means no task outlives the run, on every path (the end of the input,
stop(), an exception, Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Callable, Coroutine, Generic, TypeVar

from batchrun.errors import BatchrunError

Entry = TypeVar("Entry")


class Fanout(Generic[Entry]):
    """A reader task and `workers` worker tasks over a queue of at most 2 x `workers` entries.
    Each worker gets one None at the end of the input; `input_error` holds the BatchrunError
    that ended the input early (--on-bad-row fail), entries before it having gone out."""

    def __init__(self, workers: int) -> None:
        self.input_error: BatchrunError | None = None
        self._workers = workers
        self._queue: asyncio.Queue[Entry | None] = asyncio.Queue(maxsize=2 * workers)
        self._tasks: list[asyncio.Task[None]] = []

    async def _fan_out(self, entries: AsyncIterator[Entry], worker: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run the reader and the workers until all have ended or stop() cancelled them; our own
        cancellation (Ctrl-C, a timeout around the run) is raised again, stop()'s is not."""
        reader = asyncio.create_task(self._feed(entries), name="batchrun-reader")
        workers = [asyncio.create_task(worker(), name=f"batchrun-worker-{i}") for i in range(self._workers)]
        self._tasks = [reader, *workers]
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        finally:
            await self._cancel_all()

    def stop(self) -> None:
        """Stop now: the reader and every worker are cancelled (workers record what they had)."""
        for task in self._tasks:
            task.cancel()

    async def _cancel_all(self) -> None:
        self.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _feed(self, entries: AsyncIterator[Entry]) -> None:
        try:
            async with contextlib.aclosing(entries):  # type: ignore[type-var]
                async for entry in entries:
                    await self._queue.put(entry)
        except BatchrunError as exc:
            # --on-bad-row fail: entries before this one are sent and recorded; nothing after it.
            self.input_error = exc
        for _ in range(self._workers):
            await self._queue.put(None)  # one end-of-input marker per worker
