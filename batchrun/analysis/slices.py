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

from batchrun.analysis.columns import Columns
from batchrun.analysis.distribution import Distribution
from batchrun.analysis.timeline import per_s
from batchrun.store.records import CANCELLED, OK, SKIPPED, Record


def time_slices(records: Iterable[Record] | Columns, width_s: float) -> list[dict[str, Any]]:
    if not width_s > 0:
        raise ValueError(f"slice width must be positive, got {width_s!r}")
    cols = records if isinstance(records, Columns) else Columns.of(records, keep=0)
    skipped = cols.label_code("status", SKIPPED)
    ends = cols.column("end_s")
    ended = [i for i, (s, e) in enumerate(zip(cols.column("status"), ends)) if s != skipped and e == e]
    if not ended:
        return []
    last = max(ends[i] for i in ended)
    n = max(1, math.ceil(last / width_s)) if last > 0 else 1
    windows: list[list[int]] = [[] for _ in range(n)]
    for i in ended:
        windows[min(n - 1, max(0, int(ends[i] // width_s)))].append(i)
    return [
        _window(k, width_s, min(width_s, last - k * width_s) if k == n - 1 else width_s, cols, rows)
        for k, rows in enumerate(windows)
    ]


def _window(k: int, width_s: float, length_s: float, cols: Columns, rows: list[int]) -> dict[str, Any]:
    status = cols.column("status")
    okc, cancelled = cols.label_code("status", OK), cols.label_code("status", CANCELLED)
    ok = [i for i in rows if status[i] == okc]
    failed = sum(1 for i in rows if status[i] not in (okc, cancelled))
    completion = cols.column("completion_tokens")
    tokens = sum(max(0, completion[i]) for i in ok)
    ttft, latency = cols.column("ttft_s"), cols.column("latency_s")
    return {
        "start_s": k * width_s,
        "length_s": length_s,
        "requests": len(rows),
        "ok": len(ok),
        "failed": failed,
        "requests_per_s": per_s(len(ok), length_s),
        "output_tokens_per_s": per_s(tokens, length_s),
        "ttft_s": Distribution.of(ttft[i] for i in ok if ttft[i] == ttft[i]).to_dict(),
        "latency_s": Distribution.of(latency[i] for i in ok if latency[i] == latency[i]).to_dict(),
    }
