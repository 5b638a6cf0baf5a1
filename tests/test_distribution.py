"""distribution.py: percentiles, the DIST block and the ITL gap sample, on literal values."""

from __future__ import annotations

import math

import pytest

from batchrun.analysis.distribution import Distribution, GapSample, percentile, zero_share

approx = pytest.approx


def test_percentiles_of_one_to_ten_interpolate_linearly():
    xs = [float(i) for i in range(1, 11)]
    # rank = 9q/100: p50 -> 4.5 -> 5.5; p90 -> 8.1 -> 9.1; p95 -> 8.55 -> 9.55; p99 -> 8.91 -> 9.91
    assert [percentile(xs, q) for q in (0, 50, 90, 95, 99, 100)] == approx([1, 5.5, 9.1, 9.55, 9.91, 10])


def test_distribution_of_one_to_ten():
    d = Distribution.of(range(10, 0, -1))  # order must not matter
    # population variance of 1..10 = (100 - 1) / 12 = 8.25
    assert (d.count, d.mean, d.min, d.max) == (10, 5.5, 1, 10)
    assert d.std == approx(math.sqrt(8.25))
    assert (d.p50, d.p90, d.p95, d.p99) == approx((5.5, 9.1, 9.55, 9.91))


def test_empty_distribution_is_all_none():
    d = Distribution.of([]).to_dict()
    assert d.pop("count") == 0
    assert set(d.values()) == {None}


def test_single_value_distribution():
    d = Distribution.of([0.25])
    assert (d.count, d.mean, d.std, d.min, d.p50, d.p99, d.max) == (1, 0.25, 0.0, 0.25, 0.25, 0.25, 0.25)


def test_percentile_of_nothing_raises():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_gap_sample_is_exact_below_capacity_and_bounded_above():
    exact = GapSample(capacity=10)
    exact.add([0.1, 0.2])
    exact.add([0.3])
    assert (list(exact.values), exact.seen) == ([0.1, 0.2, 0.3], 3)
    big = GapSample(capacity=1000, seed=1)
    big.add(i / 100_000 for i in range(100_000))  # uniform on [0, 1)
    assert len(big.values) == 1000 and big.seen == 100_000
    assert Distribution.of(big.values).p50 == approx(0.5, abs=0.06)  # a uniform sample's median
    again = GapSample(capacity=1000, seed=1)
    again.add(i / 100_000 for i in range(100_000))
    assert again.values == big.values  # seeded: the same run, the same figures


def test_zero_share_counts_gaps_of_exactly_zero():
    assert zero_share([0.0, 0.0, 0.1, 0.2]) == 0.5  # 2 of 4
    assert zero_share([1e-9]) == 0.0  # small is not zero
    assert zero_share([]) is None
