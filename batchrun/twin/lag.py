"""The client's own delay, and taking one copy of it out of a TTFT table. Pure: tables in, tables out.

A TTFT the client measured is the endpoint's time plus the client's own delay in seeing the first
chunk: its event loop busy with other requests, its process waiting for a core. A run against
the twin adds a delay of its own to whatever the twin serves, so a twin that served the measured
table would count the client's delay twice (on a loaded 2-core machine about +0.5-1 ms at the
median and +2-5 ms at p90: a large share of a fast endpoint's TTFT). The fit serves instead a
table D whose sum with one client delay reproduces the measured one:

    measured = D (+) lag      (+: the distribution of a sum of independent draws)

`lag` is the run's event-loop lag (engine/looplag.py: how late a 50 ms timer fired, sampled over
the whole run), the client's delay as the client itself saw it while it measured. D is found by
damped fixed-point iteration on the quantile function (van Cittert's deconvolution):

    D_0 = measured;   D_k+1(p) = max(0, D_k(p) + (measured(p) - Q[D_k (+) lag](p)) / 2), made non-decreasing

keeping the D_k whose sum with the lag is closest to the measured table (largest difference over
the grid's 5%-95%): the iteration sharpens noise if it runs on, so it stops at its best.
Q[A (+) B] is computed through the distribution function: F(x) = mean_j F_A(x - b_j) over B's
quantiles b_j at CONV_POINTS midpoints, F_A read from A's table; Q is F's inverse at the grid.
Exact for a constant B (a shift); a measured value below the lag's own floor is held at 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from batchrun.twin.model import GRID, Table

CONV_POINTS = 100  # quantiles of the second distribution in a sum
X_POINTS = 2000  # values its distribution function is read at
ITERATIONS = 30


def midpoints(n: int = CONV_POINTS) -> list[float]:
    """n probabilities, one at the middle of each of n equal slices of [0, 1]."""
    return [(i + 0.5) / n for i in range(n)]


def sum_quantiles(a: Table, b: Table, grid: Sequence[float] = GRID) -> Table:
    """The quantiles on `grid` of a + b for independent a and b given as quantile tables on `grid`."""
    g, ta, tb = np.asarray(grid), np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    bs = np.interp(midpoints(), g, tb)
    lo, hi = ta[0] + tb[0], ta[-1] + tb[-1]
    if hi <= lo:
        return tuple(float(x) for x in np.full(len(g), lo))
    xs = np.linspace(lo, hi, X_POINTS)
    cdf = _cdf(ta, g, xs[:, None] - bs[None, :]).mean(axis=1)
    return tuple(float(x) for x in np.interp(g, _rising(cdf), xs))


def _cdf(table: np.ndarray, grid: np.ndarray, x: np.ndarray) -> np.ndarray:
    """P(value <= x) for the quantile table: its inverse. A flat stretch of the table is an atom:
    np.interp needs rising x, so each value keeps its highest probability (the jump's top)."""
    last = np.concatenate((np.diff(table) > 0, [True]))
    xs, ps = table[last], grid[last]
    if len(xs) == 1:
        return (x >= xs[0]).astype(float)
    return np.interp(x, xs, ps, left=0.0, right=1.0)


def _rising(cdf: np.ndarray) -> np.ndarray:
    """A distribution function made strictly rising (np.interp inverts it), by a hair."""
    return np.maximum.accumulate(cdf) + np.arange(len(cdf)) * 1e-12


def deconvolve(measured: Table, lag: Table, grid: Sequence[float] = GRID, iterations: int = ITERATIONS) -> Table:
    """The table D with D (+) lag closest to `measured` (see the module docstring)."""
    m = np.asarray(measured, dtype=float)
    inner = (np.asarray(grid) >= 0.05) & (np.asarray(grid) <= 0.95)
    d, best, best_miss = m.copy(), m.copy(), np.inf
    for _ in range(iterations):
        miss = m - np.asarray(sum_quantiles(tuple(d), lag, grid))
        worst = float(np.abs(miss[inner]).max())
        if worst < best_miss:
            best, best_miss = d.copy(), worst
        d = np.maximum.accumulate(np.maximum(0.0, d + miss / 2))
    return tuple(float(x) for x in best)


def mix_tables(tables: Sequence[Table], weights: Sequence[float], grid: Sequence[float] = GRID) -> Table:
    """The quantile table of a mixture: each table's distribution with its weight (e.g. the lag of
    the runs a level's requests came from, weighted by how many came from each)."""
    if len(tables) == 1:
        return tables[0]
    g, ps = np.asarray(grid), np.asarray(midpoints())
    values = np.concatenate([np.interp(ps, g, np.asarray(t, dtype=float)) for t in tables])
    mass = np.concatenate([np.full(len(ps), w / len(ps)) for w in weights])
    order = np.argsort(values, kind="stable")
    values, mass = values[order], mass[order]
    # each point's mass centred on it (as midpoints are), read at the grid's probabilities
    centre = (np.cumsum(mass) - mass / 2) / mass.sum()
    return tuple(float(x) for x in np.interp(g, centre, values))


def summary_lag_table(
    p50: float | None, p99: float | None, top: float | None, grid: Sequence[float] = GRID
) -> Table | None:
    """A lag table from what a run's summary keeps (p50, p99, max of its loop lag): linear from 0
    at p = 0 through p50 and p99 to the max. None when the summary has none of them."""
    if p50 is None or p99 is None:
        return None
    top = p99 if top is None else max(top, p99)
    points = ((0.0, 0.0), (0.5, p50), (0.99, p99), (1.0, top))
    out = []
    for g in grid:
        (p0, v0), (p1, v1) = next((a, b) for a, b in zip(points, points[1:]) if g <= b[0])
        out.append(v0 + (v1 - v0) * (g - p0) / (p1 - p0))
    return tuple(out)
