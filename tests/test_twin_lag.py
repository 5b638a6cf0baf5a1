"""twin/lag.py and twin/copula.py: taking the client's own delay out of a TTFT table, and the rank
statistics of the TTFT / gap coupling (values worked out by hand)."""

from __future__ import annotations

import pytest

from batchrun.twin.copula import mid_ranks, spearman
from batchrun.twin.lag import deconvolve, midpoints, mix_tables, sum_quantiles, summary_lag_table
from batchrun.twin.model import GRID, at


def flat(value: float) -> tuple[float, ...]:
    return (value,) * len(GRID)


def linear(lo: float, hi: float) -> tuple[float, ...]:
    return tuple(lo + g * (hi - lo) for g in GRID)


def test_a_sum_with_a_constant_shifts_every_quantile() -> None:
    got = sum_quantiles(linear(0.010, 0.020), flat(0.002))
    assert got == pytest.approx(linear(0.012, 0.022), abs=1e-9)
    assert midpoints(4) == [0.125, 0.375, 0.625, 0.875]


def test_a_sum_of_two_uniforms_is_triangular() -> None:
    # U(0, 1) + U(0, 1): P(S <= x) = x^2 / 2 below 1, so the 12.5% quantile is 0.5 and the median 1
    got = sum_quantiles(linear(0.0, 1.0), linear(0.0, 1.0))
    assert at(GRID, got, 0.5) == pytest.approx(1.0, abs=2e-3)
    assert at(GRID, got, 0.125) == pytest.approx(0.5, abs=2e-3)
    assert at(GRID, got, 0.875) == pytest.approx(1.5, abs=2e-3)


def test_deconvolving_a_constant_delay_takes_it_off() -> None:
    measured = sum_quantiles(linear(0.010, 0.020), flat(0.002))
    d = deconvolve(measured, flat(0.002))
    assert all(abs(x - (m - 0.002)) < 1e-9 for x, m in zip(d, measured))


def test_deconvolving_a_spread_delay_gives_back_the_server() -> None:
    server, lag = linear(0.010, 0.020), linear(0.0, 0.004)  # lag uniform on 0-4 ms, mean 2 ms
    measured = sum_quantiles(server, lag)
    d = deconvolve(measured, lag)
    for p in (0.1, 0.25, 0.5, 0.75, 0.9):
        # the server comes back within 0.3 ms, and adding the lag again gives the measured table
        assert at(GRID, d, p) == pytest.approx(at(GRID, server, p), abs=3e-4), p
        assert at(GRID, sum_quantiles(d, lag), p) == pytest.approx(at(GRID, measured, p), abs=1e-4), p
    assert all(b >= a for a, b in zip(d, d[1:])) and d[0] >= 0


def test_a_lag_table_from_a_runs_summary() -> None:
    table = summary_lag_table(0.001, 0.005, 0.009)
    assert at(GRID, table, 0.25) == pytest.approx(0.0005) and at(GRID, table, 0.5) == pytest.approx(0.001)
    assert at(GRID, table, 0.9) == pytest.approx(0.001 + 0.4 / 0.49 * 0.004)
    assert table[-1] == pytest.approx(0.009)
    assert summary_lag_table(None, None, None) is None


def test_spearman_of_mid_ranks() -> None:
    assert mid_ranks([3.0, 1.0, 2.0, 2.0]) == [4.0, 1.0, 2.5, 2.5]
    assert spearman([(1, 10), (2, 20), (3, 30)]) == pytest.approx(1.0)
    assert spearman([(1, 30), (2, 20), (3, 10)]) == pytest.approx(-1.0)
    # ranks x 1 2 3 4, y 2 1 4 3: d = -1 1 -1 1; Pearson of ranks = 1 - 6 x 4 / (4 x 15) = 0.6
    assert spearman([(1, 2), (2, 1), (3, 4), (4, 3)]) == pytest.approx(0.6)
    assert spearman([(1, 5), (2, 5), (3, 5)]) == 0.0


def test_a_mixture_of_two_lags_in_proportion_to_their_requests() -> None:
    # three parts at 1 ms, one part at 5 ms: the lower 75% is 1 ms, the top 25% 5 ms
    mixed = mix_tables([flat(0.001), flat(0.005)], [300, 100])
    assert at(GRID, mixed, 0.5) == pytest.approx(0.001) and at(GRID, mixed, 0.9) == pytest.approx(0.005)
    assert mix_tables([flat(0.002)], [7]) == flat(0.002)
