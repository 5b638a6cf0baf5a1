"""The numpy-free base of the interval statistics: the Interval, the level, the normal and
Student's t quantiles and the t interval of one mean. A run's own summary uses them, and a run
must not load numpy (tests/test_lazy_imports.py); stats.py builds the other intervals on them.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple, Sequence

LEVEL = 0.95


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float


def z(level: float = LEVEL) -> float:
    """The two-sided normal quantile for `level` (1.95996 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + level / 2)


_T_SERIES_MAX_DF = 200  # above it, the Cornish-Fisher expansion is within 1e-6 of the exact quantile


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with `df` degrees of freedom: the finite series of
    Abramowitz & Stegun 26.7.3-4 in theta = atan(t / sqrt(df)), exact for integer df."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term, total = 1.0, 1.0
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided Student's t quantile: P(|T| <= t) = level (12.706 for df 1, 2.776 for df 4
    at 0.95). Bisection on the exact series up to _T_SERIES_MAX_DF, Cornish-Fisher above."""
    if df < 1:
        raise ValueError(f"a t quantile needs at least 1 degree of freedom, got {df}")
    zz = z(level)
    if df > _T_SERIES_MAX_DF:
        g1 = (zz**3 + zz) / 4
        g2 = (5 * zz**5 + 16 * zz**3 + 3 * zz) / 96
        g3 = (3 * zz**7 + 19 * zz**5 + 17 * zz**3 - 15 * zz) / 384
        return zz + g1 / df + g2 / df**2 + g3 / df**3
    lo, hi = zz, zz
    while _t_central(hi, df) < level:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_central(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval | None:
    """Student's t interval of the mean: mean -/+ t(n-1) · s / sqrt(n), s the sample standard
    deviation (n - 1 in its denominator). None with fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    return t_interval(n, mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)), level)


def t_interval(n: int, mean: float, sd: float, level: float = LEVEL) -> Interval | None:
    """mean_interval from a sample's size, mean and standard deviation (kept as it grows)."""
    if n < 2:
        return None
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)
