"""The distribution of one figure: percentiles, the DIST block of every summary, and a bounded
sample of ITL gaps. Pure Python, so a run's summary imports no numpy (intervals are in stats.py).

Percentiles interpolate linearly between closest ranks (numpy's default, `method="linear"`),
the convention `vllm bench serve` reports.
"""

from __future__ import annotations

import math
import random
from array import array
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

PERCENTILES = (50, 90, 95, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ascending values, linear between closest ranks."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


@dataclass(frozen=True, slots=True)
class Distribution:
    """Summary statistics of one figure; every field None (count 0) for no values."""

    count: int = 0
    mean: float | None = None
    std: float | None = None  # population std (ddof=0), as numpy and vllm bench serve report
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        xs = sorted(values)
        if not xs:
            return cls()
        n = len(xs)
        mean = math.fsum(xs) / n
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / n)
        p50, p90, p95, p99 = (percentile(xs, q) for q in PERCENTILES)
        return cls(n, mean, std, xs[0], p50, p90, p95, p99, xs[-1])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GapSample:
    """A uniform random sample of at most `capacity` ITL gaps (Algorithm R, seeded, so the same
    records in the same order always give the same sample), and how many gaps it has seen.

    Below the capacity it holds every gap, so the figures are exact; above it, a million-row run's
    ITL percentiles come from `capacity` gaps instead of hundreds of millions of floats in memory.
    """

    def __init__(self, capacity: int = 1_000_000, seed: int = 0) -> None:
        self.capacity, self.seen = capacity, 0
        self.values = array("d")  # 8 bytes a gap: a full sample is 8 MB, not 32
        self._rng = random.Random(seed)

    def add(self, gaps: Iterable[float]) -> None:
        for gap in gaps:
            self.seen += 1
            if len(self.values) < self.capacity:
                self.values.append(gap)
            else:
                slot = self._rng.randrange(self.seen)
                if slot < self.capacity:
                    self.values[slot] = gap


def zero_share(gaps: Sequence[float]) -> float | None:
    """Share of ITL gaps that are exactly 0: chunks that arrived in one network read."""
    return sum(1 for g in gaps if g == 0) / len(gaps) if gaps else None
