"""An asyncio loop on a virtual clock, for pacing: a minute of waiting takes microseconds.

Both aiolimiter and batchrun's buckets read the time from `loop.time()`; here it jumps to the
next timer instead of sleeping (aiolimiter's own tests patch the loop's `time` for the same end).
Only for code that waits on timers: nothing here waits for real I/O.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")

# Each loop iteration moves the clock at least this much, as a real loop's clock moves while
# callbacks run: a timer for "now + 1e-15 s" (a bucket short by a rounding error) would otherwise
# be due again and again at the same instant, for ever.
ITERATION_S = 1e-6


class _JumpingSelector(selectors.BaseSelector):
    """Never sleeps: a wait for the next timer moves the loop's clock there instead."""

    def __init__(self, loop: VirtualLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("the virtual loop has nothing scheduled and nothing to wait for")
        self._loop.now += max(timeout, self._loop.iteration_s)
        return self._real.select(0)


class VirtualLoop(asyncio.SelectorEventLoop):
    """`iteration_s`: the least time one loop iteration takes. A busy real loop takes ~1 ms, and
    every timer and callback that falls due meanwhile runs in the same iteration."""

    def __init__(self, iteration_s: float = ITERATION_S) -> None:
        self.now = 0.0
        self.iteration_s = iteration_s
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


def run_virtual(coro: Coroutine[Any, Any, T], iteration_s: float = ITERATION_S) -> T:
    """`asyncio.run` on a VirtualLoop that starts at time 0."""
    loop = VirtualLoop(iteration_s)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
