"""Figures for the HTML report, each returned as SVG markup (one <svg> element) drawn by report/svg.py.

Inputs are plain sequences and mappings of floats; None, NaN and infinite values are dropped, and
an empty input draws empty axes saying "no data" rather than failing.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from batchrun.report.svg import PALETTE, Chart, Key, finite, fixed_axis, linear_axis, log2_axis

_SIZE = (510, 300)  # px: two fit side by side in the report's width
_WIDE = (1060, 380)  # the per-concurrency plots: full width, readable at 8+ levels
_MAX_LEGEND = 12  # past this many series a legend hides the plot
_BAR = "#4C72B0"
_NO_DATA = "no data"


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _keys(names: Sequence[str], *, marker: bool = False) -> list[Key]:
    return [Key(name, _color(i), marker=marker) for i, name in enumerate(names)]


def _legend(keys: list[Key]) -> list[Key]:
    return keys if 0 < len(keys) <= _MAX_LEGEND else []


def histogram(values: Sequence[float | None], *, title: str, xlabel: str) -> str:
    """Histogram of one figure's per-request values (seconds): min(50, max(5, n // 4)) equal bins
    from the smallest value to the largest."""
    xs = finite(values)
    if not xs:
        chart = Chart(title, xlabel, "requests", linear_axis(0, 1), linear_axis(0, 1, integer=True), *_SIZE)
        chart.note(_NO_DATA)
        return chart.render()
    bins = min(50, max(5, len(xs) // 4))
    lo, hi = min(xs), max(xs)
    if hi == lo:  # one distinct value: one bar in the middle
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in xs:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    edges = [lo + i * width for i in range(bins)] + [hi]
    chart = Chart(
        title,
        xlabel,
        "requests",
        linear_axis(lo, hi, zero=False),
        linear_axis(0, max(counts), integer=True, headroom=0.05),
        *_SIZE,
    )
    chart.bars(edges, counts, _BAR)
    return chart.render()


def cdf(series: Mapping[str, Sequence[float | None]], *, title: str, xlabel: str) -> str:
    """Empirical CDF, one step line per named series: the share of requests at or below x."""
    drawn = {name: sorted(xs) for name, values in series.items() if (xs := finite(values))}
    every = [v for xs in drawn.values() for v in (xs[0], xs[-1])]
    x_axis = linear_axis(min(every), max(every), zero=False) if every else linear_axis(0, 1)
    keys = _keys(list(drawn))
    chart = Chart(
        title,
        xlabel,
        "fraction of requests",
        x_axis,
        fixed_axis(0.0, 1.04, [0.0, 0.25, 0.5, 0.75, 1.0]),
        *_SIZE,
        legend=_legend(keys),
    )
    for key, xs in zip(keys, drawn.values()):
        n = len(xs)
        # From 0 at the first value, so the jump there shows (and one value is still a visible step).
        chart.line([(xs[0], 0.0)] + [(x, (i + 1) / n) for i, x in enumerate(xs)], key, step=True)
    if not drawn:
        chart.note(_NO_DATA)
    return chart.render()


def timeline(series: Mapping[str, Sequence[tuple[float, int]]], *, title: str) -> str:
    """Requests in flight over time (step function from timeline.in_flight_timeline)."""
    drawn = {
        name: pts
        for name, steps in series.items()
        if (
            pts := [
                (float(t), float(n))
                for t, n in steps
                if t is not None and n is not None and math.isfinite(t) and math.isfinite(n)
            ]
        )
    }
    ts = [t for pts in drawn.values() for t, _ in pts]
    ns = [n for pts in drawn.values() for _, n in pts]
    x_axis = linear_axis(min(ts), max(ts)) if ts else linear_axis(0, 1)
    y_axis = linear_axis(0, max(ns), integer=True, headroom=0.05) if ns else linear_axis(0, 1, integer=True)
    keys = _keys(list(drawn))
    chart = Chart(
        title,
        "seconds since run start",
        "requests in flight",
        x_axis,
        y_axis,
        *_SIZE,
        legend=_legend(keys) if len(keys) > 1 else [],
    )
    for key, pts in zip(keys, drawn.values()):
        chart.line(pts, key, step=True)
    if not drawn:
        chart.note(_NO_DATA)
    return chart.render()


_SYNC = "#d62728"  # the sync baseline's point
_RECOMMENDED = "#2ca02c"  # the recommended level's line


def _recommended_key(recommended: int | None, levels: Sequence[float]) -> Key | None:
    return Key(f"recommended c={recommended}", _RECOMMENDED, dashed=True) if recommended in levels else None


def throughput_vs_concurrency(
    concurrency: Sequence[int],
    throughput: Sequence[float | None],
    *,
    ideal_base: float | None,
    ci: Sequence[tuple[float | None, float | None]] | None = None,
    sync: float | None = None,
    recommended: int | None = None,
) -> str:
    """Measured requests/s per concurrency, the ideal linear line c x ideal_base, optional 95% CIs,
    the sync baseline's requests/s as its own point at c=1 (`sync`), and a line at the
    `recommended` level.

    The y axis fits the measurements and their intervals; the ideal line, which grows much faster
    once a server saturates, is drawn until it leaves the plot rather than flattening the curve."""
    levels = [c for c in concurrency if c is not None and c > 0]
    pts = [(c, t) for c, t in zip(concurrency, throughput) if c is not None and c > 0]
    spans = [
        (float(c), bounds[0], bounds[1])
        for c, (lo, hi) in zip(concurrency, ci or [])
        if c is not None and c > 0 and len(bounds := finite([lo, hi])) == 2
    ]
    sync_pts = [(1, v) for v in finite([sync])]
    measured = finite([t for _, t in pts]) + [v for _, lo, hi in spans for v in (lo, hi)] + [v for _, v in sync_pts]
    base = [b for b in finite([ideal_base]) if b > 0]
    ideal = [(c, c * base[0]) for c in sorted(set(levels))] if base and levels else []
    top = max(measured) if measured else max(finite(v for _, v in ideal), default=1.0)
    series = [
        (key, points)
        for key, points in (
            (Key("measured", _color(0), marker=True), pts if finite([t for _, t in pts]) else []),
            (Key("ideal (linear from c=1)", "#7f7f7f", dashed=True), ideal),
            (Key("sync baseline (c=1)", _SYNC, marker=True, ring=True), sync_pts),
        )
        if points
    ]
    mark = _recommended_key(recommended, levels)
    chart = Chart(
        "Throughput vs concurrency",
        "concurrency (log 2)",
        "requests / s",
        log2_axis([*levels, *(c for c, _ in sync_pts)]),
        linear_axis(0, top, headroom=0.08),
        *_WIDE,
        legend=_legend([key for key, _ in series] + ([mark] if mark else [])),
    )
    if mark and recommended is not None:
        chart.mark(recommended, mark)
    for key, points in series:
        chart.line(points, key)
    chart.intervals(spans)
    if not series:
        chart.note(_NO_DATA)
    return chart.render()


def percentiles_vs_concurrency(
    concurrency: Sequence[float],
    lines: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    ylabel: str = "seconds",
    xlabel: str = "concurrency (log 2)",
    recommended: int | None = None,
) -> str:
    """Several per-concurrency figures (e.g. p50/p99 latency and TTFT), in seconds unless `ylabel`
    says, and a line at the `recommended` level."""
    levels = [c for c in concurrency if c is not None and c > 0]
    drawn = {
        name: list(zip(concurrency, values))
        for name, values in lines.items()
        if finite(v for c, v in zip(concurrency, values) if c is not None and c > 0)
    }
    values = [v for pts in drawn.values() for v in finite(v for _, v in pts)]
    keys = _keys(list(drawn), marker=True)
    mark = _recommended_key(recommended, levels)
    chart = Chart(
        title,
        xlabel,
        ylabel,
        log2_axis(levels),
        linear_axis(0, max(values, default=1.0), headroom=0.08),
        *_WIDE,
        legend=_legend(keys + ([mark] if mark else [])),
    )
    if mark and recommended is not None:
        chart.mark(recommended, mark)
    for key, pts in zip(keys, drawn.values()):
        chart.line(pts, key)
    if not drawn:
        chart.note(_NO_DATA)
    return chart.render()
