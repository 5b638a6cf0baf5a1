"""The event-loop lag sampler that tells whether the client kept up: the loop that times the
requests samples itself (a worker process its own), and the summary judges the samples."""

from __future__ import annotations

import asyncio

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
