"""Live progress (tqdm) and the event-loop lag sampler that tells whether the client kept up."""

from __future__ import annotations

import asyncio
import statistics
import sys
from typing import Callable

from tqdm import tqdm

from batchrun.engine.pool import PoolStats

LAG_INTERVAL_S = 0.05


async def sample_loop_lag(samples: list[float], interval_s: float = LAG_INTERVAL_S) -> None:
    """Append, every `interval_s`, how late the loop woke us (seconds). Runs until cancelled.

    A busy client loop reads chunks late, which inflates every measured TTFT and ITL;
    the summary warns when this lag was high, so client queueing never hides inside
    what looks like server latency.
    """
    loop = asyncio.get_running_loop()
    while True:
        planned = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        samples.append(max(0.0, loop.time() - planned))


async def show_progress(stats: PoolStats, *, total: int | None, clock: Callable[[], float],
                        interval_s: float = 0.5) -> None:
    """A tqdm bar on stderr with ok / failed / retrying, requests/s and median TTFT, until cancelled."""
    if not sys.stderr.isatty():
        interval_s = max(interval_s, 10.0)     # a log file gets a line every 10 s, not a stream of \r
    bar = tqdm(total=total, unit="req", file=sys.stderr, dynamic_ncols=True, mininterval=interval_s)
    start = clock()
    try:
        while True:
            await asyncio.sleep(interval_s)
            _refresh(bar, stats, clock() - start)
    finally:
        _refresh(bar, stats, clock() - start)
        bar.close()


def _refresh(bar: tqdm, stats: PoolStats, elapsed_s: float) -> None:
    bar.n = stats.done + stats.resumed
    ttft = statistics.median(stats.recent_ttft_s) if stats.recent_ttft_s else None
    bar.set_postfix_str(
        f"ok={stats.ok} failed={stats.failed} retrying={stats.retrying} "
        f"in-flight={stats.in_flight} {stats.done / elapsed_s if elapsed_s > 0 else 0:.1f} req/s"
        + (f" ttft_p50={ttft * 1000:.0f}ms" if ttft is not None else ""),
        refresh=False,
    )
    bar.refresh()
