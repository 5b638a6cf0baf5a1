"""`--slice 10s`: throughput and latency per time window, to show warm-up and drift (pure).

A request belongs to the window in which its final attempt ended (`end_s`, seconds from the
run's start). Window k covers [k * width, (k + 1) * width); the last one ends at the last
request's end, so its rates use its real, possibly shorter, length. Per window:

    requests           records that ended in it (ok or failed; skipped rows never ran)
    ok / failed        of those, by outcome (cancelled rows count as neither)
    requests_per_s     ok / window length
    output_tokens_per_s   completion tokens of its ok records / window length
    ttft_s, latency_s  distributions over its ok records (count is the sample size)
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from batchrun.analysis.metrics import Distribution
from batchrun.store.records import CANCELLED, OK, SKIPPED, Record


def time_slices(records: Iterable[Record], width_s: float) -> list[dict[str, Any]]:
    if not width_s > 0:
        raise ValueError(f"slice width must be positive, got {width_s!r}")
    ended = [r for r in records if r.status != SKIPPED and r.end_s is not None]
    if not ended:
        return []
    last = max(r.end_s for r in ended)
    n = max(1, math.ceil(last / width_s)) if last > 0 else 1
    windows: list[list[Record]] = [[] for _ in range(n)]
    for r in ended:
        windows[min(n - 1, max(0, int(r.end_s // width_s)))].append(r)
    return [_window(k, width_s, min(width_s, last - k * width_s) if k == n - 1 else width_s, rs)
            for k, rs in enumerate(windows)]


def _window(k: int, width_s: float, length_s: float, records: list[Record]) -> dict[str, Any]:
    ok = [r for r in records if r.status == OK]
    failed = sum(1 for r in records if r.status not in (OK, CANCELLED))
    tokens = sum(r.completion_tokens or 0 for r in ok)
    rate = (lambda x: x / length_s) if length_s > 0 else (lambda x: None)
    return {"start_s": k * width_s, "length_s": length_s, "requests": len(records), "ok": len(ok),
            "failed": failed, "requests_per_s": rate(len(ok)), "output_tokens_per_s": rate(tokens),
            "ttft_s": Distribution.of(r.ttft_s for r in ok if r.ttft_s is not None).to_dict(),
            "latency_s": Distribution.of(r.latency_s for r in ok if r.latency_s is not None).to_dict()}
