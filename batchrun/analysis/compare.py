"""Baseline comparison: two runs (or benches) -> per-figure verdict from an interval of the change.

With records on both sides each headline figure gets a 95% interval of its relative change
(pooled over a bench level's repeats), and a verdict against its tolerance:

    regressed     the whole interval is past the tolerance in the bad direction
    improved      the whole interval is past the tolerance in the good direction
    unchanged     no part of the interval is past the tolerance in the bad direction
    inconclusive  the interval straddles the tolerance: too few samples to say

A tolerance bounds how far a figure may move in its *bad* direction: `latency_p99=10%` lets
p99 latency rise at most 10%; `throughput=-5%` lets throughput fall at most 5%. Without '%'
the bound is absolute in the figure's unit (`errors=3`, `failure_share=0.02`, also written
`failure_share=2pt`). Summaries alone
(no records) fall back to comparing the two point values, and say so; the failure share keeps
its interval there, since it needs only the counts.

The failure share is gated one-sided: a share of failures cannot show an interval inside a
tolerance of a point or two at CI sample sizes (0 failed of 200 still allows 1.9%), so instead
of calling every clean run inconclusive it fails on evidence of a rise past the tolerance, and is
inconclusive only when the measured rise is past the tolerance but the interval's low end is not.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from batchrun.analysis import stats
from batchrun.analysis.request_figures import meets_slo, tpot
from batchrun.analysis.sides import (  # noqa: F401  (CompareRefused, side_of_records: the library face)
    CompareRefused,
    Side,
    _headline_level,
    _pick_levels,
    _pool_level,
    config_differences,
    load_side,
    side_of_records,
)
from batchrun.report.format import fmt_num, fmt_s
from batchrun.store.records import OK, SKIPPED, Record


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    higher_is_better: bool
    unit: str  # "s", "req/s", "tok/s", "ratio", "count"
    get: Callable[[Mapping[str, Any]], Any]
    method: str  # how its interval is made from records
    one_sided: bool = False  # inconclusive only when the estimate is past the tolerance


def _dist(key: str, stat: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda s: (s.get(key) or {}).get(stat)


def _errors(s: Mapping[str, Any]) -> Any:
    counts = s.get("counts") or {}
    return counts["attempted"] - counts["ok"] if "attempted" in counts and "ok" in counts else None


def failure_counts(s: Mapping[str, Any]) -> tuple[int, int] | None:
    """(failed, finished) requests: finished = attempted - cancelled (an interrupted run's cancelled
    requests neither succeeded nor failed; the summary's success_rate has the same denominator)."""
    counts = s.get("counts") or {}
    if "ok" not in counts or "attempted" not in counts:
        return None
    finished = counts.get("finished", counts["attempted"] - counts.get("cancelled", 0))
    return finished - counts["ok"], finished


def _failure_share(s: Mapping[str, Any]) -> float | None:
    """Failed requests / finished requests (0..1): the complement of success_rate."""
    fc = failure_counts(s)
    return fc[0] / fc[1] if fc and fc[1] else None


HL, ORDER, BOOT, NEWCOMBE, POINT = ("Hodges-Lehmann", "order statistics", "bootstrap", "Newcombe", "point")
FIGURES: dict[str, Figure] = {
    f.name: f
    for f in (
        Figure("throughput", True, "req/s", lambda s: (s.get("throughput") or {}).get("requests_per_s"), BOOT),
        Figure(
            "output_throughput", True, "tok/s", lambda s: (s.get("throughput") or {}).get("output_tokens_per_s"), BOOT
        ),
        Figure("latency_p50", False, "s", _dist("latency_s", "p50"), HL),
        Figure("latency_p90", False, "s", _dist("latency_s", "p90"), ORDER),
        Figure("latency_p99", False, "s", _dist("latency_s", "p99"), ORDER),
        Figure("ttft_p50", False, "s", _dist("ttft_s", "p50"), HL),
        Figure("ttft_p99", False, "s", _dist("ttft_s", "p99"), ORDER),
        Figure("tpot_p50", False, "s", _dist("tpot_s", "p50"), HL),
        Figure("itl_p50", False, "s", _dist("itl_s", "p50"), BOOT),
        Figure("failure_share", False, "ratio", _failure_share, NEWCOMBE, one_sided=True),
        Figure("errors", False, "count", _errors, POINT),
        Figure("goodput", True, "req/s", lambda s: (s.get("goodput") or {}).get("requests_per_s"), BOOT),
    )
}
# Shown even when absent on both sides; goodput only exists when an SLO was given.
HEADLINE = tuple(name for name in FIGURES if name != "goodput")


@dataclass(frozen=True, slots=True)
class Tolerance:
    limit: float  # how far the figure may move in its bad direction (>= 0)
    relative: bool  # True: percent of the baseline value; False: the figure's own unit (a share: 0..1)

    def __str__(self) -> str:
        return f"{self.limit:g}%" if self.relative else f"{self.limit:g}"


# The documented defaults (docs/ci-gate.md): every headline figure but `errors` gates, so a bare
# `compare A B` is a gate. failure_share=1pt is bench's --max-failure-share default: a level that
# fails more than 1% is never recommended, and a rise of more than a point fails the gate.
DEFAULT_TOLERANCES_TEXT = (
    "throughput=-10%,output_throughput=-10%,latency_p50=10%,latency_p90=15%,"
    "latency_p99=20%,ttft_p50=10%,ttft_p99=20%,tpot_p50=10%,itl_p50=10%,"
    "failure_share=1pt,goodput=-10%"
)

_TOL_ITEM = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*(%|pt)?\s*$")
# Names kept from before the figure was turned around: success_rate=-0.05 is failure_share=5pt.
_COMPLEMENTS = {"success_rate": "failure_share"}


def figure_name(name: str) -> str:
    """Canonical figure name; 'p99_latency' is accepted for 'latency_p99'. ValueError if unknown."""
    key = name.strip().lower()
    key = _COMPLEMENTS.get(key, key)
    m = re.match(r"^(p\d+)_(\w+)$", key)
    if key not in FIGURES and m:
        key = f"{m.group(2)}_{m.group(1)}"
    if key not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; valid names: {', '.join(FIGURES)}")
    return key


def parse_tolerances(text: str) -> dict[str, Tolerance]:
    """'latency_p99=10%,throughput=-5%,failure_share=2pt' -> {figure name: Tolerance}.

    N% is relative to the baseline; N alone is in the figure's unit; Npt is points of a share
    (failure_share=2pt == failure_share=0.02)."""
    tolerances: dict[str, Tolerance] = {}
    for item in filter(str.strip, text.split(",")):
        m = _TOL_ITEM.match(item)
        if not m:
            raise ValueError(
                f"bad tolerance {item.strip()!r}: write FIGURE=N% (e.g. latency_p99=10%, "
                "throughput=-5%), FIGURE=N for an absolute bound, or failure_share=Npt"
            )
        given, sign, number, unit = m.group(1), m.group(2), float(m.group(3)), m.group(4) or ""
        name = figure_name(given)
        fig = FIGURES[name]
        higher_is_better = True if given.strip().lower() in _COMPLEMENTS else fig.higher_is_better
        if unit == "pt" and fig.unit != "ratio":
            raise ValueError(
                f"{name} is not a share: 'pt' (points) is for failure_share; write "
                f"{name}={sign}{m.group(3)}% or an absolute bound"
            )
        if fig.unit == "ratio" and not unit and number > 1:
            raise ValueError(
                f"{given.strip()}={sign}{m.group(3)} would allow {number * 100:g} points: a share's "
                f"bound is a fraction or points, e.g. {given.strip()}={sign}{m.group(3)}pt"
            )
        if number and higher_is_better and sign != "-":
            raise ValueError(
                f"{given.strip()} is higher-is-better: a tolerance says how far it may fall, "
                f"so write it negative, e.g. {given.strip()}=-{m.group(3)}{unit}"
            )
        if number and not higher_is_better and sign == "-":
            raise ValueError(
                f"{name} is lower-is-better: a tolerance says how far it may rise, "
                f"so write it positive, e.g. {name}={m.group(3)}{unit}"
            )
        if name in tolerances:
            raise ValueError(f"tolerance for {name} is given twice")
        limit = number / 100 if unit == "pt" else number
        tolerances[name] = Tolerance(limit, relative=unit == "%")
    return tolerances


DEFAULT_TOLERANCES = parse_tolerances(DEFAULT_TOLERANCES_TEXT)


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    unit: str
    higher_is_better: bool
    baseline: float | None
    current: float | None
    change: float | None  # current - baseline
    change_pct: float | None  # 100 * change / |baseline|; None when baseline is 0 or missing
    tolerance: Tolerance | None
    status: str  # regressed / improved / unchanged / inconclusive / missing / not gated
    low: float | None = None  # 95% interval of the change: percent of baseline, or the figure's unit
    high: float | None = None  #   (`absolute` says which)
    absolute: bool = False
    method: str = POINT
    n_baseline: int | None = None
    n_current: int | None = None
    more_requests: int | None = None  # per side, to settle an inconclusive figure (estimate)
    note: str | None = None


@dataclass(slots=True)
class Comparison:
    changes: list[Change] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)  # one sentence per failed figure
    inconclusive: list[str] = field(default_factory=list)  # undecided_text of each undecided figure
    differences: list[str] = field(default_factory=list)  # configuration differences (allowed)
    notes: list[str] = field(default_factory=list)
    statistical: bool = False
    baseline_label: str = ""
    current_label: str = ""

    @property
    def passed(self) -> bool:
        return not self.regressions

    def inconclusive_line(self) -> str | None:
        """Every undecided figure in one line, or None when every figure was decided."""
        return "inconclusive: " + "; ".join(self.inconclusive) if self.inconclusive else None


def _past(worse: float, bound: float) -> bool:
    # isclose: 1.0 -> 1.1 with a 10% tolerance is within it despite float rounding
    return worse > bound and not math.isclose(worse, bound, rel_tol=1e-9, abs_tol=1e-12)


def _bound(tol: Tolerance, base: float, absolute_space: bool) -> float:
    """The tolerance in the space the interval lives in: percent of baseline, or absolute units."""
    if absolute_space:
        return tol.limit / 100 * abs(base) if tol.relative else tol.limit
    if tol.relative:
        return tol.limit
    return 100 * tol.limit / abs(base) if base else (0.0 if tol.limit == 0 else math.inf)


def _verdict(worse_est: float, worse_low: float, worse_high: float, bound: float, one_sided: bool) -> str:
    if _past(worse_low, bound):
        return "regressed"
    if worse_high < -bound and not math.isclose(worse_high, -bound, rel_tol=1e-9, abs_tol=1e-12):
        return "improved"
    if _past(worse_est if one_sided else worse_high, bound):
        return "inconclusive"
    return "unchanged"


def _more_needed(n: int, worse_est: float, worse_low: float, worse_high: float, bound: float) -> int | None:
    """Requests a side to add so the interval stops straddling the bound (widths shrink as 1/sqrt(n))."""
    if worse_est < bound:
        need, have = bound - worse_est, worse_high - worse_est
    else:
        need, have = worse_est - bound, worse_est - worse_low
    if need <= 0 or have <= 0:
        return None
    factor = (have / need) ** 2
    return max(1, math.ceil(n * factor) - n) if factor < 1e4 else None


# ---------------------------------------------------------------- intervals from records


def _ok(side: Side) -> list[Record]:
    return [r for r in side.records or [] if r.status == OK]


def _sent(side: Side) -> list[Record]:
    return [r for r in side.records or [] if r.status != SKIPPED and r.sent_s is not None and r.total_s is not None]


def _per_request(side: Side, name: str) -> list[float]:
    ok = _ok(side)
    if name.startswith("latency"):
        return sorted(r.latency_s for r in ok if r.latency_s is not None)
    if name.startswith("ttft"):
        return sorted(r.ttft_s for r in ok if r.ttft_s is not None)
    return sorted(t for t in map(tpot, ok) if t is not None)


def _itl_interval(base: Side, cur: Side, seed: int) -> tuple[stats.Interval | None, int, int]:
    """Median ITL: a bootstrap that resamples whole requests (gaps within one are not independent)."""
    bg = [r.itl_s for r in _ok(base) if r.itl_s]
    cg = [r.itl_s for r in _ok(cur) if r.itl_s]
    nb, nc = sum(map(len, bg)), sum(map(len, cg))
    if len(bg) < 2 or len(cg) < 2:
        return None, nb, nc
    index = [np.arange(len(bg), dtype=float)], [np.arange(len(cg), dtype=float)]
    pair = (stats.clustered_median(bg), stats.clustered_median(cg))
    return stats.bootstrap_ratio(*index, pair, seed=seed), nb, nc


def _throughput_interval(
    base: Side, cur: Side, name: str, slo: Mapping[str, float] | None, seed: int
) -> stats.Interval | None:
    """Closed loop: throughput = L · ok / sum(total_s) (Little's law, with L the measured mean in
    flight), so resampling requests gives its noise. Open loop: counts over the run time (Poisson)."""

    def columns(side: Side) -> tuple[list[float], list[float], float]:
        sent = _sent(side)
        if name == "throughput":
            weight = [1.0 if r.status == OK else 0.0 for r in sent]
        elif name == "output_throughput":
            weight = [float(r.completion_tokens or 0) if r.status == OK else 0.0 for r in sent]
        else:
            weight = [1.0 if slo is not None and meets_slo(r, slo) else 0.0 for r in sent]
        return weight, [r.total_s for r in sent if r.total_s is not None], side.wall_s  # _sent: all known

    b, c = columns(base), columns(cur)
    if base.open_loop or cur.open_loop:
        kb, kc = sum(b[0]), sum(c[0])
        if name == "output_throughput":  # tokens are not Poisson counts: use requests as the unit
            kb, kc = sum(1 for w in b[0] if w > 0), sum(1 for w in c[0] if w > 0)
        return stats.poisson_rate_ratio(int(kb), base.wall_s, int(kc), cur.wall_s)
    return stats.little_rate_ratio(b, c, seed=seed)


def _interval(fig: Figure, base: Side, cur: Side, seed: int) -> tuple[stats.Interval | None, int, int, str | None]:
    """(interval of the relative change, n baseline, n current, why there is none)."""
    if fig.method == HL or fig.method == ORDER:
        b, c = _per_request(base, fig.name), _per_request(cur, fig.name)
        if fig.method == HL:
            iv = stats.hodges_lehmann_ratio(b, c)
            if iv is None and len(b) >= 5 and len(c) >= 5:  # zeros (fast endpoints): bootstrap medians
                iv = stats.bootstrap_ratio([b], [c], lambda cols: np.median(cols[0], axis=-1), seed=seed)
            return iv, len(b), len(c), None if iv else "fewer than 5 values a side"
        q = float(fig.name.rsplit("_p", 1)[1])
        iv = stats.quantile_ratio(b, c, q)
        need = stats.min_n_for_quantile_ratio(q)
        return iv, len(b), len(c), None if iv else f"a p{q:g} interval needs {need} values a side"
    if fig.name == "itl_p50":
        iv, nb, nc = _itl_interval(base, cur, seed)
        return iv, nb, nc, None if iv else "too few gaps, or a median gap of 0"
    slo = (cur.summary.get("goodput") or {}).get("slo")
    iv = _throughput_interval(base, cur, fig.name, slo, seed)
    return iv, len(_sent(base)), len(_sent(cur)), None if iv else "too few requests"


def _statistical_change(fig: Figure, base: Side, cur: Side, tol: Tolerance | None, seed: int) -> Change:
    bv, cv = fig.get(base.summary), fig.get(cur.summary)
    if bv is None or cv is None or fig.method == POINT:
        return _point_change(fig, base.summary, cur.summary, tol)
    if fig.method == NEWCOMBE:
        return _share_change(fig, base.summary, cur.summary, tol)
    iv, nb, nc, why = _interval(fig, base, cur, seed)
    if iv is None:
        more = None
        if fig.method == ORDER:
            more = max(0, stats.min_n_for_quantile_ratio(float(fig.name.rsplit("_p", 1)[1])) - min(nb, nc))
        return _judged(fig, bv, cv, tol, None, False, nb, nc, more_requests=more or None, note=why)
    # The interval's own centre (Hodges-Lehmann, bootstrap point), in percent like its ends.
    return _judged(fig, bv, cv, tol, stats.Interval(100 * iv.estimate, 100 * iv.low, 100 * iv.high), False, nb, nc)


def _share_change(
    fig: Figure, baseline: Mapping[str, Any], current: Mapping[str, Any], tol: Tolerance | None
) -> Change:
    """The failure share from the two summaries' counts (records or not): Newcombe's interval of the
    difference of the two shares, in fractions (a rise of 0.02 is 2 points)."""
    b, c = failure_counts(baseline), failure_counts(current)
    if b is None or c is None or not b[1] or not c[1]:
        return _point_change(fig, baseline, current, tol)
    iv = stats.proportion_difference(b[0], b[1], c[0], c[1])
    return _judged(fig, b[0] / b[1], c[0] / c[1], tol, iv, True, b[1], c[1])


def _judged(
    fig: Figure,
    bv: float,
    cv: float,
    tol: Tolerance | None,
    iv: stats.Interval | None,
    absolute: bool,
    nb: int,
    nc: int,
    *,
    more_requests: int | None = None,
    note: str | None = None,
) -> Change:
    """A Change with its verdict from the interval `iv` of the change (percent, or the figure's unit
    when `absolute`); without an interval a gated figure is inconclusive."""
    delta = cv - bv
    pct = 100 * delta / abs(bv) if bv else (0.0 if delta == 0 else None)
    low, high = (iv.low, iv.high) if iv else (None, None)
    common: dict[str, Any] = dict(low=low, high=high, absolute=absolute, method=fig.method, n_baseline=nb, n_current=nc)
    if tol is None:
        return Change(fig.name, fig.unit, fig.higher_is_better, bv, cv, delta, pct, tol, "not gated", **common)
    if iv is None:
        return Change(
            fig.name,
            fig.unit,
            fig.higher_is_better,
            bv,
            cv,
            delta,
            pct,
            tol,
            "inconclusive",
            more_requests=more_requests,
            note=note,
            **common,
        )
    bound = _bound(tol, bv, absolute)
    sign = -1 if fig.higher_is_better else 1
    w_est, w_lo, w_hi = sign * iv.estimate, min(sign * iv.low, sign * iv.high), max(sign * iv.low, sign * iv.high)
    status = _verdict(w_est, w_lo, w_hi, bound, fig.one_sided)
    more = _more_needed(min(nb, nc), w_est, w_lo, w_hi, bound) if status == "inconclusive" else None
    return Change(
        fig.name, fig.unit, fig.higher_is_better, bv, cv, delta, pct, tol, status, more_requests=more, **common
    )


def _point_n(fig: Figure, summary: Mapping[str, Any]) -> int | None:
    """The sample size behind a summary's figure: the values of its distribution, else requests."""
    dist = summary.get(fig.name.rsplit("_p", 1)[0] + "_s") if fig.method in (HL, ORDER, BOOT) else None
    if isinstance(dist, Mapping) and dist.get("count") is not None:
        return dist["count"]
    return (summary.get("counts") or {}).get("attempted")


def _point_change(
    fig: Figure, baseline: Mapping[str, Any], current: Mapping[str, Any], tol: Tolerance | None
) -> Change:
    base, cur = fig.get(baseline), fig.get(current)
    n: dict[str, Any] = dict(n_baseline=_point_n(fig, baseline), n_current=_point_n(fig, current))
    if base is None or cur is None:
        return Change(fig.name, fig.unit, fig.higher_is_better, base, cur, None, None, tol, "missing", **n)
    delta = cur - base
    pct = 100 * delta / abs(base) if base else (0.0 if delta == 0 else None)
    if tol is None:
        return Change(fig.name, fig.unit, fig.higher_is_better, base, cur, delta, pct, tol, "not gated", **n)
    worse = -delta if fig.higher_is_better else delta
    bound = tol.limit / 100 * abs(base) if tol.relative else tol.limit
    status = "regressed" if _past(worse, bound) else "improved" if (worse < -bound and bound > 0) else "unchanged"
    return Change(fig.name, fig.unit, fig.higher_is_better, base, cur, delta, pct, tol, status, **n)


# ---------------------------------------------------------------- sentences


def value_text(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    return (
        fmt_s(v)
        if unit == "s"
        else fmt_num(v * 100, 1, "%")
        if unit == "ratio"
        else str(int(v))
        if unit == "count"
        else fmt_num(v, 2)
    )


def tolerance_text(c: Change) -> str:
    """'+10%', '-5%', '-1.0 pt' (a rate's absolute bound), '+3' (a count)."""
    if c.tolerance is None:
        return "-"
    sign = "-" if c.higher_is_better else "+"
    if not c.tolerance.relative and c.unit == "ratio":
        return f"{sign}{c.tolerance.limit * 100:g} pt"
    if not c.tolerance.relative and c.unit == "s":
        return sign + value_text(c.tolerance.limit, "s")
    return sign + str(c.tolerance)


def interval_text(c: Change) -> str:
    if c.low is None or c.high is None:
        return "-"
    if c.absolute:
        return f"[{c.low * 100:+.1f} pt, {c.high * 100:+.1f} pt]"
    return f"[{c.low:+.1f}%, {c.high:+.1f}%]"


def change_text(c: Change) -> str:
    """'+19.5%'; a share's change in points ('+4.0 pt'); a change from 0 in the figure's unit."""
    if c.change is None:
        return "-"
    if c.unit == "ratio":
        return f"{c.change * 100:+.1f} pt"
    if c.change_pct is not None:
        return f"{c.change_pct:+.1f}%"
    return ("+" if c.change >= 0 else "-") + value_text(abs(c.change), c.unit)


def n_text(c: Change) -> str:
    return "n=?" if c.n_baseline is None else f"n={c.n_baseline}/{c.n_current}"


def failure_text(c: Change) -> str:
    """A failed figure: its values, the change with its interval, the tolerance and n."""
    if c.status == "missing":
        side = "baseline" if c.baseline is None else "current"
        return f"{c.name}: missing in the {side} run (the tolerance {tolerance_text(c)} names it; {n_text(c)})"
    assert c.change is not None  # only a missing figure has no change
    verb = "fell" if c.change < 0 else "rose" if c.change > 0 else "did not move"
    size = f" {change_text(c).lstrip('+-')}" if c.change else ""
    iv = f"95% interval {interval_text(c)}" if c.low is not None else "no interval (point values)"
    return (
        f"{c.name} {verb}{size} ({value_text(c.baseline, c.unit)} -> {value_text(c.current, c.unit)}), "
        f"{iv}, past the tolerance {tolerance_text(c)} ({n_text(c)})"
    )


def needs_text(c: Change) -> str | None:
    """'needs ~435 a side': requests a side that would settle an undecided figure (an estimate, but
    for a percentile's exact minimum), or None when no estimate exists."""
    if not c.more_requests or c.n_baseline is None or c.n_current is None:
        return None
    exact = c.low is None and c.method == ORDER
    return f"needs {'' if exact else '~'}{min(c.n_baseline, c.n_current) + c.more_requests} a side"


def undecided_text(c: Change) -> str:
    """An undecided figure in a few words: 'latency_p99 +3.1% no interval, tolerance +20%
    (n=200/200, needs 435 a side)'."""
    iv = interval_text(c) if c.low is not None else "no interval"
    needs = needs_text(c)
    settle = f", {needs}" if needs else f"; {c.note}" if c.note else ""
    return f"{c.name} {change_text(c)} {iv}, tolerance {tolerance_text(c)} ({n_text(c)}{settle})"


# ---------------------------------------------------------------- compare


def _merged_tolerances(tolerances: Mapping[str, Tolerance] | str | None, defaults: bool) -> dict[str, Tolerance]:
    given = (
        parse_tolerances(tolerances)
        if isinstance(tolerances, str)
        else {figure_name(k): v for k, v in (tolerances or {}).items()}
    )
    return {**(DEFAULT_TOLERANCES if defaults else {}), **given}


def _label(side: Side, n: int | None) -> str:
    what = f"{side.kind}" + (f" {side.level}" if side.level else "")
    runs = f", {side.runs} repeats pooled" if side.runs > 1 else ""
    return f"{side.where} ({what}, {n if n is not None else '?'} requests{runs})"


def compare(
    baseline: Mapping[str, Any] | Path | str | Side,
    current: Mapping[str, Any] | Path | str | Side,
    tolerances: Mapping[str, Tolerance] | str | None = None,
    *,
    defaults: bool = False,
    allow_config_change: bool = True,
    seed: int = 0,
    figures: Sequence[str] | None = None,
) -> Comparison:
    """Every headline figure, baseline vs current, with a verdict against its tolerance.

    `defaults`: start from DEFAULT_TOLERANCES (the CLI does); `allow_config_change=False` refuses
    (CompareRefused) when the configurations differ. `seed` fixes the bootstrap's resamples;
    `figures` limits the comparison to those names."""
    tols = _merged_tolerances(tolerances, defaults)
    base = baseline if isinstance(baseline, Side) else load_side(baseline)
    cur = current if isinstance(current, Side) else load_side(current)
    base, cur = _pick_levels(base, cur)
    if (
        base.doc.get("kind")
        and cur.doc.get("kind")
        and base.doc["kind"] != cur.doc["kind"]
        and not (base.level or cur.level)
    ):
        raise CompareRefused(
            f"{base.where} is a {base.doc['kind']} and {cur.where} a {cur.doc['kind']}: "
            "compare like with like (a bench run is RUN_DIR/runs/<name>)"
        )
    if (base.summary.get("counts") or {}).get(OK) == 0:
        raise CompareRefused(
            f"{base.where}: no request succeeded in the baseline, so it has no figures to "
            "compare against (record a good baseline first)"
        )
    diffs, notes = config_differences(base, cur)
    if diffs and not allow_config_change:
        raise CompareRefused(
            "the two sides were measured differently: "
            + "; ".join(diffs)
            + " (pass --allow-config-change to compare anyway)"
        )
    statistical = base.records is not None and cur.records is not None
    if not statistical:
        notes.append(
            "no records on "
            + (
                "either side"
                if base.records is None and cur.records is None
                else "the baseline side"
                if base.records is None
                else "the current side"
            )
            + ": point comparison of the two summaries, without intervals but the failure share's, "
            "which needs only the counts (pass run directories to compare distributions)"
        )
    names = [
        n
        for n in FIGURES
        if n in HEADLINE
        or FIGURES[n].get(base.summary) is not None
        or FIGURES[n].get(cur.summary) is not None
        or (n in tols and n != "goodput")
    ]
    if figures is not None:
        wanted = {figure_name(f) for f in figures}
        names = [n for n in names if n in wanted]
    if "goodput" in names and (FIGURES["goodput"].get(base.summary) is None) != (
        FIGURES["goodput"].get(cur.summary) is None
    ):
        notes.append("goodput is on one side only (an SLO was given to one run): not compared")
        names.remove("goodput")
    result = Comparison(
        differences=diffs,
        notes=notes,
        statistical=statistical,
        baseline_label=_label(base, (base.summary.get("counts") or {}).get("attempted")),
        current_label=_label(cur, (cur.summary.get("counts") or {}).get("attempted")),
    )
    for name in names:
        fig, tol = FIGURES[name], tols.get(name)
        if statistical:
            change = _statistical_change(fig, base, cur, tol, seed)
        elif fig.method == NEWCOMBE:
            change = _share_change(fig, base.summary, cur.summary, tol)
        else:
            change = _point_change(fig, base.summary, cur.summary, tol)
        result.changes.append(change)
        if failed(change):
            result.regressions.append(failure_text(change))
        elif change.status == "inconclusive":
            result.inconclusive.append(undecided_text(change))
    return result


def failed(c: Change) -> bool:
    """A figure that fails the gate: regressed, or missing while a tolerance names it."""
    return c.status == "regressed" or (c.status == "missing" and c.tolerance is not None)


def changes_as_dicts(cmp: Comparison) -> list[dict[str, Any]]:
    """The comparison's rows as JSON-ready dicts."""
    out = []
    for c in cmp.changes:
        row = {k: getattr(c, k) for k in Change.__slots__}
        row["tolerance"] = None if c.tolerance is None else tolerance_text(c)
        row["interval"] = (
            None if c.low is None else {"low": c.low, "high": c.high, "unit": "fraction" if c.absolute else "percent"}
        )
        del row["low"], row["high"]
        out.append(row)
    return out
