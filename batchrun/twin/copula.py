"""How a request's TTFT and its chunk gaps move together. Pure.

A twin draws TTFT and the request's mean gap from separate tables; drawn independently, a slow
first chunk would as often come with slow gaps as with fast ones. Real endpoints are not like
that: under continuous batching a request that waited for its prefill often streams its answer
with the batch already drained (a negative correlation, -0.3 to -0.75 measured on llama-server),
and a client that was late to read the first chunk reads the next ones at once (negative too);
a machine slowed for a while slows both (positive). Served independently, the latency (TTFT plus
the gaps) of such an endpoint spreads too wide: up to +40% at p90 on the llama-server sweeps
this was measured on.

The fit keeps, per level, Spearman's rank correlation rho of the two; the twin couples the two
draws with a Gaussian copula of that rank correlation, which keeps both tables exactly as fitted:

    v = Phi(r Phi^-1(u) + sqrt(1 - r^2) Phi^-1(u_m)),   r = 2 sin(pi rho / 6)

u is the TTFT's rank, u_m the request's own uniform draw, v the rank its mean gap is read at.
r = 2 sin(pi rho / 6) is the normal correlation whose Spearman correlation is rho.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

_NORMAL = NormalDist()


def coupled_rank(rho: float, u: float, u_own: float) -> float:
    """The rank a second draw is read at, given the first's rank u and its own uniform u_own."""
    if rho == 0.0:
        return u_own
    r = 2.0 * math.sin(math.pi * rho / 6.0)
    z = r * _NORMAL.inv_cdf(_inside(u)) + math.sqrt(max(0.0, 1.0 - r * r)) * _NORMAL.inv_cdf(_inside(u_own))
    return _NORMAL.cdf(z)


def _inside(u: float) -> float:
    """u kept inside (0, 1), where the normal's inverse is finite."""
    return min(max(u, 1e-9), 1.0 - 1e-9)


def spearman(pairs: Sequence[tuple[float, float]]) -> float:
    """Spearman's rank correlation of the pairs (Pearson's of their mid-ranks); 0 when either
    side is constant."""
    rx, ry = mid_ranks([x for x, _ in pairs]), mid_ranks([y for _, y in pairs])
    n = len(pairs)
    mx, my = math.fsum(rx) / n, math.fsum(ry) / n
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = math.fsum((a - mx) ** 2 for a in rx), math.fsum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def mid_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks
