"""Pure interval statistics: percentile CIs, bootstrap, Hodges-Lehmann, proportions, rates.

No I/O, no clock; randomness only from a seeded generator passed in or made from `seed`, so the
same samples always give the same interval. numpy does the resampling and the rank counting
(it is already installed with pandas; a bootstrap of 2,000 resamples in pure Python would cost
seconds per figure).

Every interval here is two-sided at `level` (0.95 unless told) and returns None when the data
cannot give one (too few values), never a made-up interval.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from batchrun.analysis.distribution import percentile

# Offered here with the rest (stats.Interval, stats.mean_interval): `as` marks the re-export.
from batchrun.analysis.interval import LEVEL as LEVEL
from batchrun.analysis.interval import Interval as Interval
from batchrun.analysis.interval import mean_interval as mean_interval
from batchrun.analysis.interval import t_quantile as t_quantile
from batchrun.analysis.interval import z as z

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

BOOTSTRAP_RESAMPLES = 2000


# ---------------------------------------------------------------- binomial helpers


def binom_cdf_all(n: int, p: float) -> np.ndarray:
    """[P(X <= k) for k = 0..n], X ~ Binomial(n, p), from exact log-space terms."""
    if p <= 0.0 or p >= 1.0:
        return np.ones(n + 1) if p <= 0.0 else np.concatenate([np.zeros(n), [1.0]])
    k = np.arange(n + 1)
    lg = np.array([math.lgamma(i + 1) for i in range(n + 1)])
    logpmf = lg[n] - lg - lg[::-1] + k * math.log(p) + (n - k) * math.log1p(-p)
    return np.minimum(np.cumsum(np.exp(logpmf - logpmf.max())) / np.exp(logpmf - logpmf.max()).sum(), 1.0)


def _order_ranks(n: int, q: float, level: float) -> tuple[int, int] | None:
    """1-based ranks (l, u) with P(X(l) <= true q-quantile <= X(u)) >= level, each tail <= alpha/2.

    X(l) misses from above with probability P(Bin(n, q) <= l - 1), X(u) from below with
    P(Bin(n, q) >= u): l is the largest rank keeping the first <= alpha/2, u the smallest keeping
    the second. Exact binomial up to n = 20,000, then the normal approximation. None when either
    rank falls outside 1..n.
    """
    alpha, p = 1 - level, q / 100
    if n < 1:
        return None
    if n > 20_000:
        sd = math.sqrt(n * p * (1 - p))
        l, u = math.floor(n * p - z(level) * sd), math.ceil(n * p + z(level) * sd) + 1
    else:
        cdf = binom_cdf_all(n, p)
        below = np.nonzero(cdf[:n] <= alpha / 2)[0]
        above = np.nonzero(cdf[:n] >= 1 - alpha / 2)[0]
        if not len(below) or not len(above):
            return None
        l, u = int(below[-1]) + 1, int(above[0]) + 1
    if l < 1 or u > n:
        return None
    return l, u


def min_n_for_quantile_ci(q: float, level: float = LEVEL) -> int:
    """The fewest values for which a distribution-free two-sided `level` interval of the q-th
    percentile exists: both 1 - (q/100)^n and 1 - (1 - q/100)^n must reach 1 - alpha/2."""
    p, half = q / 100, (1 - level) / 2
    worst = max(p, 1 - p)
    return math.ceil(math.log(half) / math.log(worst)) if 0 < worst < 1 else 1


def quantile_ci(sorted_values: Sequence[float], q: float, level: float = LEVEL) -> tuple[float, float] | None:
    """Distribution-free `level` CI of the q-th percentile (0..100) from ascending values:
    the order statistics X(l), X(u) of `_order_ranks`. Its coverage is at least `level` for any
    continuous distribution. None when there are too few values (see min_n_for_quantile_ci)."""
    ranks = _order_ranks(len(sorted_values), q, level)
    if ranks is None:
        return None
    l, u = ranks
    return float(sorted_values[l - 1]), float(sorted_values[u - 1])


# ---------------------------------------------------------------- two-sample: relative change


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


Stat = Callable[[list[np.ndarray]], np.ndarray]


def _in_canonical_order(cols: list[np.ndarray]) -> list[np.ndarray]:
    """The rows sorted by their values (last column first): the bootstrap treats rows as
    exchangeable, so sorting changes nothing in what it means, and it makes an interval a
    function of the rows alone. The records of a run read back in row order then give the same
    interval as the same records held in completion order."""
    order = np.lexsort(cols[::-1])
    return [c[order] for c in cols]


def bootstrap_ratio(
    base: Sequence[ArrayLike],
    cur: Sequence[ArrayLike],
    stat: Stat | tuple[Stat, Stat],
    *,
    level: float = LEVEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval | None:
    """Percentile-bootstrap CI of stat(cur) / stat(base) - 1.

    `base` and `cur` are each a list of equally long columns (one row per unit: a request);
    rows are resampled with replacement within each side, columns kept together, so a statistic
    over several columns (tokens over time) keeps each request's values paired. `stat` maps
    columns of shape (..., n) to one value per leading index (it is called on the data, shape (n,),
    and on blocks of resamples, shape (B, n)); a (baseline, current) pair when the sides differ.
    """
    stat_b, stat_c = stat if isinstance(stat, tuple) else (stat, stat)
    b_cols = _in_canonical_order([np.asarray(c, dtype=float) for c in base])
    c_cols = _in_canonical_order([np.asarray(c, dtype=float) for c in cur])
    nb, nc = len(b_cols[0]), len(c_cols[0])
    if nb < 2 or nc < 2:
        return None
    b0, c0 = float(stat_b(b_cols)), float(stat_c(c_cols))
    if not (b0 > 0 and math.isfinite(c0)):
        return None
    g = rng(seed)
    ratios = []
    block = max(1, min(resamples, 2_000_000 // max(nb, nc)))
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        bi, ci = g.integers(0, nb, (size, nb)), g.integers(0, nc, (size, nc))
        sb = np.asarray(stat_b([col[bi] for col in b_cols]), dtype=float)
        sc = np.asarray(stat_c([col[ci] for col in c_cols]), dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios.append(np.where(sb > 0, sc / sb, np.nan))
    all_ratios = np.concatenate(ratios)
    all_ratios = all_ratios[np.isfinite(all_ratios)]
    if len(all_ratios) < resamples * 0.9:
        return None
    alpha = 1 - level
    lo, hi = np.quantile(all_ratios, [alpha / 2, 1 - alpha / 2])
    return Interval(c0 / b0 - 1, float(lo) - 1, float(hi) - 1)


def bootstrap_ci(
    columns: Sequence[Sequence[float]],
    stat: Stat,
    *,
    level: float = LEVEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval | None:
    """Percentile-bootstrap CI of stat(columns) (one sample; rows resampled, columns together)."""
    cols = [np.asarray(c, dtype=float) for c in columns]
    n = len(cols[0])
    if n < 2:
        return None
    cols = _in_canonical_order(cols)
    est = float(stat(cols))
    g = rng(seed)
    values = []
    block = max(1, min(resamples, 2_000_000 // n))
    for start in range(0, resamples, block):
        idx = g.integers(0, n, (min(block, resamples - start), n))
        values.append(np.asarray(stat([c[idx] for c in cols]), dtype=float))
    alpha = 1 - level
    lo, hi = np.quantile(np.concatenate(values), [alpha / 2, 1 - alpha / 2])
    return Interval(est, float(lo), float(hi))


def clustered_median(groups: Sequence[Sequence[float]]) -> Stat:
    """A bootstrap statistic for bootstrap_ratio over one column of group indices (0..k-1): the
    median of every value of the resampled groups, each group counted as often as it was drawn
    (a weighted median, so no resample is ever concatenated).

    Only the middle 30% of the sorted values is scanned, after a matrix product gives each
    resample's weight below it; a resample whose median falls outside is scanned in full."""
    values = np.concatenate([np.asarray(g, dtype=float) for g in groups])
    lengths = np.array([len(g) for g in groups], dtype=np.int32)
    owner = np.repeat(np.arange(len(groups)), lengths)
    order = np.argsort(values, kind="stable")
    values, owner = values[order], owner[order]
    k, size = len(groups), len(values)
    start, end = int(size * 0.35), max(int(size * 0.65), int(size * 0.35) + 1)
    below = np.bincount(owner[:start], minlength=k).astype(np.int32)

    def medians(counts: np.ndarray, lo_pos: int, hi_pos: int, prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cum = np.cumsum(counts[:, owner[lo_pos:hi_pos]], axis=1, dtype=np.int32) + prefix[:, None]
        total = counts @ lengths
        width = hi_pos - lo_pos
        lo = (2 * cum < total[:, None]).sum(axis=1)  # first position reaching half the weight
        hi = (2 * cum <= total[:, None]).sum(axis=1)  # first position past it (even totals)
        inside = (lo > 0) & (hi < width) if lo_pos else hi < width
        lo_c, hi_c = np.minimum(lo, width - 1), np.minimum(hi, width - 1)
        med = (values[lo_c + lo_pos] + values[hi_c + lo_pos]) / 2
        return med, inside

    def stat(cols: list[np.ndarray]) -> np.ndarray:
        idx = cols[0].astype(int)
        idx2 = idx.reshape(-1, idx.shape[-1])
        counts = np.zeros((idx2.shape[0], k), dtype=np.int32)
        np.add.at(counts, (np.repeat(np.arange(idx2.shape[0]), idx2.shape[1]), idx2.ravel()), 1)
        med, inside = medians(counts, start, end, counts @ below)
        if not inside.all():
            full, _ = medians(counts[~inside], 0, size, np.zeros((~inside).sum(), dtype=np.int32))
            med[~inside] = full
        return med.reshape(idx.shape[:-1]) if idx.ndim > 1 else med[0]

    return stat


def _count_le(base: np.ndarray, cur: np.ndarray, d: float) -> int:
    """How many pairs (i, j) have cur[j] - base[i] <= d (both ascending)."""
    return int(np.searchsorted(cur, base + d, side="right").sum())


def _pair_diff_order_stat(base: np.ndarray, cur: np.ndarray, k: int) -> float:
    """The k-th smallest (1-based) of the n·m differences cur[j] - base[i], without building them:
    bisection on the value d, counting pairs <= d with one searchsorted per bisection step."""
    lo = float(cur[0] - base[-1])
    hi = float(cur[-1] - base[0])
    for _ in range(200):
        if hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):
            break
        mid = (lo + hi) / 2
        if _count_le(base, cur, mid) >= k:
            hi = mid
        else:
            lo = mid
    return hi


def hodges_lehmann_ratio(base: Sequence[float], cur: Sequence[float], level: float = LEVEL) -> Interval | None:
    """Relative change of the median, cur / base - 1, by Hodges-Lehmann on log values with the
    distribution-free Mann-Whitney (Moses) confidence interval.

    The estimate is the median of all pairwise log differences; the interval's ends are the
    differences at ranks k and nm + 1 - k, with k from the normal approximation of the
    Mann-Whitney statistic. It measures a common factor (a shift in log scale): the usual
    shape of a slower server. None for fewer than 5 values a side or a value <= 0.
    """
    b = np.sort(np.asarray(base, dtype=float))
    c = np.sort(np.asarray(cur, dtype=float))
    n, m = len(b), len(c)
    if n < 5 or m < 5 or b[0] <= 0 or c[0] <= 0:
        return None
    lb, lc = np.log(b), np.log(c)
    nm = n * m
    k = math.floor(nm / 2 - z(level) * math.sqrt(nm * (n + m + 1) / 12))
    if k < 1:
        return None
    est_lo = _pair_diff_order_stat(lb, lc, (nm + 1) // 2)
    est_hi = _pair_diff_order_stat(lb, lc, nm // 2 + 1)
    est = (est_lo + est_hi) / 2
    low = _pair_diff_order_stat(lb, lc, k)
    high = _pair_diff_order_stat(lb, lc, nm + 1 - k)
    return Interval(math.expm1(est), math.expm1(low), math.expm1(high))


def median_change_half_width(values: Sequence[float], level: float = LEVEL) -> float | None:
    """The half-width (a fraction: 0.04 is ±4%) that hodges_lehmann_ratio would give comparing
    `values` with an independent sample of the same size and distribution, predicted from
    `values` alone: its interval against itself (the pairwise differences of one sample spread
    like those of two). Used to size a bench level; None when no interval exists."""
    iv = hodges_lehmann_ratio(values, values, level)
    return None if iv is None else max(-iv.low, iv.high)


def quantile_ratio(
    base_sorted: Sequence[float], cur_sorted: Sequence[float], q: float, level: float = LEVEL
) -> Interval | None:
    """Relative change of the q-th percentile from two distribution-free intervals.

    Each side gets an order-statistic interval at sqrt(level) (97.47% for 95%), so the two hold
    together with probability >= level, and the ratio lies in [lo_cur / hi_base, hi_cur / lo_base].
    Conservative (wider than it must be) but valid for any distribution and any tail.
    """
    each = math.sqrt(level)
    b, c = quantile_ci(base_sorted, q, each), quantile_ci(cur_sorted, q, each)
    if b is None or c is None or b[0] <= 0:
        return None
    est = percentile(cur_sorted, q) / percentile(base_sorted, q) - 1
    return Interval(est, c[0] / b[1] - 1, c[1] / b[0] - 1)


def min_n_for_quantile_ratio(q: float, level: float = LEVEL) -> int:
    """Values needed on each side before quantile_ratio can give any interval."""
    return min_n_for_quantile_ci(q, math.sqrt(level))


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n."""
    zz = z(level)
    p = k / n
    denom = 1 + zz * zz / n
    centre = (p + zz * zz / (2 * n)) / denom
    half = zz * math.sqrt(p * (1 - p) / n + zz * zz / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_difference(k_base: int, n_base: int, k_cur: int, n_cur: int, level: float = LEVEL) -> Interval | None:
    """CI of p_cur - p_base by Newcombe's hybrid score method (Wilson intervals combined)."""
    if n_base < 1 or n_cur < 1:
        return None
    p1, p2 = k_base / n_base, k_cur / n_cur
    l1, u1 = wilson(k_base, n_base, level)
    l2, u2 = wilson(k_cur, n_cur, level)
    d = p2 - p1
    return Interval(d, d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2))


# ---------------------------------------------------------------- rates


def poisson_rate_ci(k: float, seconds: float, level: float = LEVEL) -> tuple[float, float] | None:
    """CI of the rate k / seconds from an event count over a fixed time (an open-loop run):
    (k -/+ z·sqrt(k)) / seconds, the normal approximation to the Poisson count, the low end at
    least 0. None without any event or time."""
    if not k or not seconds > 0:
        return None
    half = z(level) * math.sqrt(k)
    return max(0.0, k - half) / seconds, (k + half) / seconds


def little_rate_ci(
    weights: Sequence[float],
    totals: Sequence[float],
    wall_s: float,
    *,
    level: float = LEVEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval | None:
    """CI of a closed-loop rate sum(weights) / wall_s (weights: 1 per ok request, or its tokens).

    By Little's law the rate is L · sum(weights) / sum(totals), L = sum(totals) / wall_s the mean
    in flight (each request's total_s is its time in the system); L is held and the requests are
    resampled (bootstrap_ci), so the interval is the noise of the requests, not of the clock."""
    in_flight = math.fsum(totals) / wall_s
    return bootstrap_ci(
        [weights, totals],
        lambda c: in_flight * c[0].sum(axis=-1) / c[1].sum(axis=-1),
        level=level,
        resamples=resamples,
        seed=seed,
    )


def little_rate_ratio(
    base: tuple[Sequence[float], Sequence[float], float],
    cur: tuple[Sequence[float], Sequence[float], float],
    *,
    level: float = LEVEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval | None:
    """Relative change of a closed-loop rate, cur / base - 1, each side (weights, totals, wall_s) as
    in little_rate_ci: the ratio of sum(w) / sum(total) bootstrapped (bootstrap_ratio), times the
    ratio of the two mean-in-flight figures, which are held. None when a side has nothing in flight."""

    def in_flight(side: tuple[Sequence[float], Sequence[float], float]) -> float:
        return math.fsum(side[1]) / side[2] if side[2] else 0.0

    bl, cl = in_flight(base), in_flight(cur)
    if not (bl > 0 and cl > 0):
        return None
    factor = cl / bl

    def stat(cols: list[np.ndarray]) -> np.ndarray:
        return cols[0].sum(axis=-1) / cols[1].sum(axis=-1)

    iv = bootstrap_ratio([base[0], base[1]], [cur[0], cur[1]], stat, level=level, resamples=resamples, seed=seed)
    if iv is None:
        return None
    return Interval((iv.estimate + 1) * factor - 1, (iv.low + 1) * factor - 1, (iv.high + 1) * factor - 1)


def poisson_rate_ratio(k_base: int, t_base: float, k_cur: int, t_cur: float, level: float = LEVEL) -> Interval | None:
    """CI of (k_cur / t_cur) / (k_base / t_base) - 1 for event counts over fixed times
    (log-ratio ± z · sqrt(1/k_base + 1/k_cur))."""
    if k_base < 1 or k_cur < 1 or t_base <= 0 or t_cur <= 0:
        return None
    ratio = (k_cur / t_cur) / (k_base / t_base)
    half = z(level) * math.sqrt(1 / k_base + 1 / k_cur)
    return Interval(ratio - 1, ratio * math.exp(-half) - 1, ratio * math.exp(half) - 1)
