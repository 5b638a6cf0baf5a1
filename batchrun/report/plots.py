"""Figures for the HTML report, each returned as base64 PNG text ready for a data: URI.

Figures are built with `matplotlib.figure.Figure` rather than pyplot: a bare Figure renders
with the Agg canvas, never touches pyplot's global figure registry (so nothing can leak or
need `plt.close`), and does not switch the backend of whoever imported us.
"""

from __future__ import annotations

import base64
import io
from typing import Mapping, Sequence

from matplotlib.figure import Figure

_SIZE = (6.4, 3.4)  # inches; at 100 dpi a figure is ~30-60 kB, so a report stays small
_WIDE = (10.0, 4.0)  # the per-concurrency plots: shown full width, readable at 8+ levels
_MAX_LEGEND = 12    # past this many series a legend hides the plot


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _new(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = _SIZE) -> tuple[Figure, object]:
    fig = Figure(figsize=size)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _legend(ax: object, n_series: int) -> None:
    if 0 < n_series <= _MAX_LEGEND:
        ax.legend(fontsize="small")


def histogram(values: Sequence[float], *, title: str, xlabel: str) -> str:
    """Histogram of one figure's per-request values (seconds)."""
    fig, ax = _new(title, xlabel, "requests")
    if values:
        ax.hist(values, bins=min(50, max(5, len(values) // 4)), color="#4C72B0")
    return _png(fig)


def cdf(series: Mapping[str, Sequence[float]], *, title: str, xlabel: str) -> str:
    """Empirical CDF, one line per named series: the share of requests at or below x."""
    fig, ax = _new(title, xlabel, "fraction of requests")
    drawn = 0
    for name, values in series.items():
        xs = sorted(values)
        if not xs:
            continue
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", label=name)
        drawn += 1
    ax.set_ylim(0, 1.02)
    _legend(ax, drawn)
    return _png(fig)


def timeline(series: Mapping[str, Sequence[tuple[float, int]]], *, title: str) -> str:
    """Requests in flight over time (step function from metrics.in_flight_timeline)."""
    fig, ax = _new(title, "seconds since run start", "requests in flight")
    drawn = 0
    for name, steps in series.items():
        if not steps:
            continue
        ax.step([t for t, _ in steps], [n for _, n in steps], where="post", label=name)
        drawn += 1
    if drawn > 1:
        _legend(ax, drawn)
    return _png(fig)


def throughput_vs_concurrency(concurrency: Sequence[int], throughput: Sequence[float | None], *,
                              ideal_base: float | None,
                              ci: Sequence[tuple[float | None, float | None]] | None = None) -> str:
    """Measured requests/s per concurrency, the ideal linear line c x ideal_base, optional 95% CIs."""
    fig, ax = _new("Throughput vs concurrency", "concurrency (log 2)", "requests / s", _WIDE)
    pts = [(c, t) for c, t in zip(concurrency, throughput) if t is not None]
    drawn = 0
    if pts:
        ax.plot([c for c, _ in pts], [t for _, t in pts], "o-", label="measured")
        drawn += 1
    for c, (low, high) in zip(concurrency, ci or []):
        if low is not None and high is not None:
            ax.vlines(c, low, high, color="#333333", linewidth=1)
    if ideal_base and concurrency:
        cs = sorted(set(concurrency))
        ax.plot(cs, [c * ideal_base for c in cs], "--", color="grey", label="ideal (linear from c=1)")
        drawn += 1
    _log2_x(ax, concurrency)
    _legend(ax, drawn)
    return _png(fig)


def percentiles_vs_concurrency(concurrency: Sequence[int],
                               lines: Mapping[str, Sequence[float | None]], *, title: str) -> str:
    """Several per-concurrency figures (e.g. p50/p99 latency and TTFT) in seconds."""
    fig, ax = _new(title, "concurrency (log 2)", "seconds", _WIDE)
    drawn = 0
    for name, values in lines.items():
        pts = [(c, v) for c, v in zip(concurrency, values) if v is not None]
        if pts:
            ax.plot([c for c, _ in pts], [v for _, v in pts], "o-", label=name)
            drawn += 1
    _log2_x(ax, concurrency)
    _legend(ax, drawn)
    return _png(fig)


def _log2_x(ax: object, concurrency: Sequence[int]) -> None:
    # Concurrency doubles from level to level; a log-2 axis spaces the levels evenly.
    # Only with positive data: matplotlib warns when log-scaling an empty axis.
    levels = sorted({c for c in concurrency if c > 0})
    if levels:
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])  # "16", not "2^4"
        ax.minorticks_off()
