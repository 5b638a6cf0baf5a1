"""Simulated runs for the statistics tests: records drawn like the built-in endpoint's latency
model (lognormal TTFT and per-token gaps), laid out on a closed-loop timeline. Pure, seeded, fast."""

from __future__ import annotations

import heapq

import numpy as np

from batchrun.store.records import Record


def simulated_run(
    seed: int,
    n: int = 100,
    concurrency: int = 8,
    ttft_s: float = 0.25,
    itl_s: float = 0.025,
    jitter: float = 0.15,
    tokens: int = 32,
) -> list[Record]:
    """`n` ok records at `concurrency`: TTFT = ttft_s * J, gaps = itl_s * J_k, J ~ lognormal(0, jitter)."""
    rng = np.random.default_rng(seed)
    lanes = [0.0] * concurrency
    heapq.heapify(lanes)
    records = []
    for i in range(n):
        sent = heapq.heappop(lanes)
        ttft = float(ttft_s * rng.lognormal(0.0, jitter))
        gaps = [float(g) for g in itl_s * rng.lognormal(0.0, jitter, tokens - 1)]
        latency = ttft + sum(gaps)
        total = latency + 0.0005
        records.append(
            Record(
                id=str(i),
                row=i,
                sent_s=sent,
                end_s=sent + total,
                ttft_s=ttft,
                latency_s=latency,
                total_s=total,
                itl_s=gaps,
                completion_tokens=tokens,
                prompt_tokens=10,
                output_chunks=tokens,
            )
        )
        heapq.heappush(lanes, sent + total)
    return records
