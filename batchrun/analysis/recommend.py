"""Which level of a bench to recommend, and where its throughput stops growing: pure functions
of per-level figures (BenchPoint), no printing, no clock.

The rule. A level is *eligible* when at most `max_failure_share` (default 1%) of its measured
requests failed and, with an SLO, its p99 latency and p99 TTFT are within the SLO's bounds. The
recommendation is the **lowest** eligible concurrency whose throughput is statistically
indistinguishable from the highest eligible throughput: fewer requests in flight for the same
work. Two throughputs are indistinguishable when their gap is within sqrt(h1² + h2²), h1 and h2
the half-widths of their 95% intervals on the sides facing each other (the 95% interval of the
difference of two independent estimates; two intervals merely overlapping is a much looser test).

Without an SLO latency does not decide: a level whose TTFT is higher but whose throughput is
really higher wins. That is what `vllm bench`'s auto-tune does without a latency bound (the most
throughput), minus the levels that buy nothing; a user who cares about latency gives --slo.

Throughput here is successful requests per second of wall time: failed requests take time but
are not counted, so a level with failures is never shown without its failure share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple

from batchrun.options import named

DEFAULT_MAX_FAILURE_SHARE: float = named("bench", "max_failure_share").default  # the option's: 1%


class BenchPoint(NamedTuple):
    """One level of a bench (its repeats pooled)."""

    concurrency: int
    throughput: float | None  # successful requests per second of wall time
    p99_latency_s: float | None
    p99_ttft_s: float | None
    throughput_low: float | None = None  # 95% interval of the throughput, when known
    throughput_high: float | None = None
    n: int | None = None  # measured requests, ok and failed; None: not known
    failed: int = 0  # of the n, the ones that did not succeed

    @property
    def failure_share(self) -> float | None:
        return self.failed / self.n if self.n else None


@dataclass(frozen=True)
class Recommendation:
    choice: int | None  # the recommended concurrency; None: no level is eligible
    best: int | None  # the level with the most throughput, eligible or not
    top: int | None = None  # the eligible level with the most throughput
    reasons: dict[int, str] = field(default_factory=dict)  # why each other level was not recommended
    excluded: tuple[int, ...] = ()  # levels ruled out before their throughput was compared


def percent(share: float) -> str:
    """0.45 -> '45%', 0.005 -> '0.5%', 1/3 -> '33.3%'."""
    return f"{100 * share:.1f}".rstrip("0").rstrip(".") + "%"


def failed_text(failed: int, n: int) -> str:
    """'18/40 failed (45%)', or '0 failed'."""
    return f"{failed}/{n} failed ({percent(failed / n)})" if failed and n else "0 failed"


def throughput_text(p: BenchPoint, counts: bool = True) -> str:
    """'7.74 req/s [7.40, 8.05], n=40, 18/40 failed (45%)' (or '..., n=40, 0 failed'): a level's
    throughput with its interval, sample size and failures, as a sentence introducing the level
    shows it; counts=False leaves out n and failures (for a level whose counts were just given)."""
    text = f"{p.throughput or 0:.2f} req/s"
    if p.throughput_low is not None and p.throughput_high is not None:
        text += f" [{p.throughput_low:.2f}, {p.throughput_high:.2f}]"
    if counts and p.n is not None:
        text += f", n={p.n}, {failed_text(p.failed, p.n)}"
    return text


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def exclusion(p: BenchPoint, slo: Mapping[str, float] | None, max_failure_share: float) -> str | None:
    """Why a level cannot be recommended whatever its throughput; None when it is eligible."""
    if not p.throughput:
        return "no request succeeded" + (f" ({p.failed}/{p.n} failed)" if p.n else "")
    share = p.failure_share
    if share is not None and share > max_failure_share:
        return f"{failed_text(p.failed, p.n or 0)}, over the {percent(max_failure_share)} allowed"
    for key, value, name in (("e2e", p.p99_latency_s, "latency"), ("ttft", p.p99_ttft_s, "TTFT")):
        bound = (slo or {}).get(key)
        if bound is not None and (value is None or value > bound):
            shown = "unknown" if value is None else _ms(value)
            return f"p99 {name} {shown} is over the SLO's {_ms(bound)}"
    return None


def indistinguishable(a: BenchPoint, top: BenchPoint) -> bool:
    """True when a's throughput cannot be told from top's (the higher) at 95%: the gap is within
    the combined half-widths, each on the side facing the other (0 where no interval is known)."""
    gap = (top.throughput or 0.0) - (a.throughput or 0.0)
    if gap <= 0:
        return True
    h_top = top.throughput - top.throughput_low if top.throughput_low is not None and top.throughput else 0.0
    h_a = a.throughput_high - a.throughput if a.throughput_high is not None and a.throughput else 0.0
    return gap <= math.hypot(max(h_top, 0.0), max(h_a, 0.0))


def _most(points: Iterable[BenchPoint]) -> BenchPoint | None:
    """The point with the most throughput; the lower concurrency on a tie."""
    return max((p for p in points if p.throughput), key=lambda p: (p.throughput, -p.concurrency), default=None)


def recommend(
    points: Iterable[BenchPoint | tuple],
    slo: Mapping[str, float] | None = None,
    max_failure_share: float = DEFAULT_MAX_FAILURE_SHARE,
) -> Recommendation:
    """The recommended level, the throughput-best level, and why every other level lost (the
    module docstring states the rule)."""
    pts = sorted((BenchPoint(*p) for p in points), key=lambda p: p.concurrency)
    best = _most(pts)
    reasons = {p.concurrency: why for p in pts if (why := exclusion(p, slo, max_failure_share)) is not None}
    excluded = tuple(reasons)
    eligible = [p for p in pts if p.concurrency not in reasons]
    top = _most(eligible)
    if top is None:
        return Recommendation(None, best.concurrency if best else None, None, reasons, excluded)
    choice = min((p for p in eligible if indistinguishable(p, top)), key=lambda p: p.concurrency)
    for p in eligible:
        if p is not choice:
            reasons[p.concurrency] = _lost(p, choice, top)
    return Recommendation(choice.concurrency, best.concurrency if best else None, top.concurrency, reasons, excluded)


def _lost(p: BenchPoint, choice: BenchPoint, top: BenchPoint) -> str:
    """Why an eligible level lost to `choice`, given the eligible level with the most throughput
    (a predicate: the caller names the level and its figures)."""
    if not indistinguishable(p, top):
        return (
            f"its throughput is below c={top.concurrency}'s {throughput_text(top, False)} by more than "
            "the noise of the two 95% intervals"
        )
    fewer = f"c={choice.concurrency} keeps fewer requests in flight"
    if choice.p99_ttft_s is not None and p.p99_ttft_s is not None:
        fewer += f" (p99 TTFT {_ms(choice.p99_ttft_s)} vs {_ms(p.p99_ttft_s)})"
    if p is top:
        return (
            f"its throughput is statistically indistinguishable from c={choice.concurrency}'s "
            f"{throughput_text(choice, False)}, and {fewer}"
        )
    return (
        f"its throughput is statistically indistinguishable from the best, c={top.concurrency}'s "
        f"{throughput_text(top, False)}, as is c={choice.concurrency}'s, and {fewer}"
    )


def plateau_concurrency(points: Iterable[BenchPoint | tuple], gain: float = 0.1) -> int | None:
    """The first concurrency after which doubling raises throughput by less than `gain` (10%).

    Consecutive points are compared; when they are not exactly 2x apart the gain is scaled to
    one doubling: (thr2 / thr1) ** (1 / log2(c2 / c1)) - 1. None while throughput keeps growing.
    """
    pts = sorted((BenchPoint(*p) for p in points), key=lambda p: p.concurrency)
    for a, b in zip(pts, pts[1:]):
        if a.throughput is None or b.throughput is None or b.concurrency <= a.concurrency:
            continue
        if a.throughput <= 0:
            continue  # nothing succeeded yet at a: no growth rate to speak of
        doublings = math.log2(b.concurrency / a.concurrency)
        per_doubling = (max(b.throughput, 0.0) / a.throughput) ** (1 / doublings) - 1
        if per_doubling < gain:
            return a.concurrency
    return None
