"""recommend.py on hand-built levels; every expected value is worked out in a comment."""

from __future__ import annotations

import math

import pytest

from batchrun.analysis.recommend import (
    BenchPoint,
    failed_text,
    indistinguishable,
    percent,
    plateau_concurrency,
    recommend,
    throughput_text,
)

CURVE = [
    BenchPoint(1, 10.0, 1.0, 0.2),
    BenchPoint(2, 19.0, 1.1, 0.25),
    BenchPoint(4, 35.0, 1.5, 0.35),
    BenchPoint(8, 50.0, 2.5, 0.6),
    BenchPoint(16, 52.0, 5.0, 1.5),
]


def test_without_an_slo_latency_does_not_decide():
    # No intervals: only a tie is indistinguishable, so the most throughput wins (16), whatever
    # its latency (5 x c=1's); the rule no longer bounds latency at 2 x the lowest level's.
    rec = recommend(CURVE)
    assert (rec.choice, rec.best, rec.excluded) == (16, 16, ())
    assert "below c=16's 52.00 req/s" in rec.reasons[8]


def test_with_an_slo_the_levels_over_it_are_ruled_out():
    assert recommend(CURVE, slo={"e2e": 3.0, "ttft": 1.0}).choice == 8
    assert recommend(CURVE, slo={"ttft": 2.0}).choice == 16  # latency left free
    rec = recommend(CURVE, slo={"e2e": 0.5})
    assert rec.choice is None and rec.best == 16 and rec.excluded == (1, 2, 4, 8, 16)
    assert rec.reasons[1] == "p99 latency 1.00 s is over the SLO's 500 ms"


def test_ties_and_missing_values():
    pts = [(1, 10.0, 1.0, 0.1), (2, 20.0, 1.0, 0.1), (4, 20.0, 1.0, 0.1), (8, 30.0, None, 0.1)]
    assert recommend(pts).choice == 8  # no SLO: a missing latency does not matter
    assert recommend(pts, {"e2e": 2.0}).choice == 2  # 8's unknown latency cannot meet it; 2 and 4 tie
    assert recommend(pts, {"e2e": 2.0}).reasons[8] == "p99 latency unknown is over the SLO's 2.00 s"
    assert recommend([]).choice is None and recommend([]).best is None


def test_a_llama_server_bench_c1_is_not_within_noise_of_c8():
    """llama-server: c=1 1.58 req/s, p99 TTFT 31 ms; c=8 7.74 req/s, p99 TTFT 133 ms. The former
    rule bounded p99 TTFT at 2 x c=1's (62 ms), ruled c=8 out and called c=1 "within noise of
    the best" (the best of what was left: itself)."""
    c1 = BenchPoint(1, 1.58, 0.70, 0.031, 1.50, 1.66, n=40)
    c8 = BenchPoint(8, 7.74, 1.10, 0.133, 7.30, 8.10, n=40)
    rec = recommend([c1, c8])
    assert (rec.choice, rec.best) == (8, 8)
    # gap 6.16 against sqrt((7.74 - 7.30)^2 + (1.66 - 1.58)^2) = 0.447: far beyond the noise
    assert not indistinguishable(c1, c8)
    assert rec.reasons[1] == (
        "its throughput is below c=8's 7.74 req/s [7.30, 8.10] by more than the noise of the two 95% intervals"
    )
    # With the TTFT bound as an SLO the user asked for, c=1 it is, and c=8 says why not.
    slo = recommend([c1, c8], {"ttft": 0.062})
    assert slo.choice == 1 and slo.best == 8 and slo.reasons[8] == "p99 TTFT 133 ms is over the SLO's 62 ms"


def test_a_level_with_45_percent_failures_is_never_recommended():
    c1 = BenchPoint(1, 1.58, 0.70, 0.031, 1.50, 1.66, n=40)
    c8 = BenchPoint(8, 7.74, 1.10, 0.133, 7.30, 8.10, n=40, failed=18)
    rec = recommend([c1, c8])
    assert (rec.choice, rec.best, rec.excluded) == (1, 8, (8,))
    assert rec.reasons[8] == "18/40 failed (45%), over the 1% allowed"
    # 45% is never within a threshold below it, whatever the throughput.
    assert recommend([c8], max_failure_share=0.44).choice is None
    assert recommend([c8], max_failure_share=0.45).choice == 8


def test_the_failure_threshold_is_inclusive_and_nothing_succeeding_says_so():
    # 1/100 = 1% is allowed at the default 1%; 2/100 is not.
    assert recommend([BenchPoint(4, 9.0, 1.0, 0.1, n=100, failed=1)]).choice == 4
    assert (
        recommend([BenchPoint(4, 9.0, 1.0, 0.1, n=100, failed=2)]).reasons[4]
        == "2/100 failed (2%), over the 1% allowed"
    )
    dead = recommend([BenchPoint(2, 0.0, None, None, n=20, failed=20), BenchPoint(4, None, None, None)])
    assert dead.choice is None and dead.best is None
    assert dead.reasons == {2: "no request succeeded (20/20 failed)", 4: "no request succeeded"}


def test_the_lowest_level_indistinguishable_from_the_best_wins():
    points = [
        BenchPoint(1, 10.0, 1.0, 0.2, 9.5, 10.5),
        BenchPoint(8, 70.0, 1.1, 0.25, 66.0, 74.0),
        BenchPoint(16, 72.0, 1.2, 0.3, 68.0, 76.0),
        BenchPoint(32, 73.0, 2.5, 1.0, 69.0, 77.0),
    ]
    rec = recommend(points)
    # best 32 (73, low side 4); 8: gap 3 <= sqrt(4^2 + 4^2) = 5.66 -> indistinguishable; 1 is not
    assert (rec.choice, rec.best) == (8, 32)
    assert rec.reasons[32] == (
        "its throughput is statistically indistinguishable from c=8's 70.00 req/s "
        "[66.00, 74.00], and c=8 keeps fewer requests in flight (p99 TTFT 250 ms vs 1.00 s)"
    )
    assert "indistinguishable from the best, c=32's" in rec.reasons[16] and "below c=32's" in rec.reasons[1]
    assert recommend(points, {"e2e": 1.15}).choice == 8 and recommend(points, {"ttft": 0.1}).choice is None


def test_indistinguishable_is_the_interval_of_the_difference_not_an_overlap():
    top = BenchPoint(16, 100.0, None, None, 96.0, 104.0)
    # Half-widths 4 and 4: the difference's is sqrt(32) = 5.66. The intervals of 93 [89, 97]
    # overlap top's (a gap of 7 < 4 + 4), yet the difference is beyond its noise.
    assert not indistinguishable(BenchPoint(8, 93.0, None, None, 89.0, 97.0), top)
    assert indistinguishable(BenchPoint(8, 94.5, None, None, 90.5, 98.5), top)  # 5.5 <= 5.66
    # No intervals: only a tie (or more) is indistinguishable.
    assert indistinguishable(BenchPoint(8, 100.0, None, None), BenchPoint(16, 100.0, None, None))
    assert not indistinguishable(BenchPoint(8, 99.9, None, None), BenchPoint(16, 100.0, None, None))
    assert math.hypot(4, 4) == pytest.approx(5.657, abs=1e-3)


def test_texts():
    assert percent(0.45) == "45%" and percent(0.005) == "0.5%" and percent(1 / 3) == "33.3%" and percent(1) == "100%"
    assert failed_text(18, 40) == "18/40 failed (45%)" and failed_text(0, 40) == "0 failed"
    assert (
        throughput_text(BenchPoint(8, 7.74, None, None, 7.3, 8.1, n=40, failed=18))
        == "7.74 req/s [7.30, 8.10], n=40, 18/40 failed (45%)"
    )
    assert throughput_text(BenchPoint(8, 7.74, None, None)) == "7.74 req/s"


def test_plateau_concurrency():
    # per doubling: 19/10 = +90%, 35/19 = +84%, 50/35 = +43%, 52/50 = +4% < 10% -> after 8
    assert plateau_concurrency(CURVE) == 8
    assert plateau_concurrency(CURVE[:4]) is None
    assert plateau_concurrency(CURVE, gain=0.5) == 4


def test_plateau_scales_gain_to_one_doubling():
    # 1 -> 4 is two doublings: (12 / 10) ** (1 / 2) - 1 = 9.5% per doubling < 10%
    assert plateau_concurrency([(1, 10.0, None, None), (4, 12.0, None, None)]) == 1
    assert plateau_concurrency([(1, 10.0, None, None), (4, 13.0, None, None)]) is None  # 14%
