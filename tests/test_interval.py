"""interval.py: the t quantile and the t interval of a mean, against a t table and by hand."""

from __future__ import annotations

import pytest

from batchrun.analysis import interval

approx = pytest.approx


@pytest.mark.parametrize(
    ("df", "level", "table"),
    # Student's t table (two-sided): df 1, 2, 4, 10, 29 at 95%; df 4 at 90% and 99%; df 1000 at 95%.
    [(1, 0.95, 12.706), (2, 0.95, 4.303), (4, 0.95, 2.776), (10, 0.95, 2.228), (29, 0.95, 2.045)]
    + [(4, 0.90, 2.132), (4, 0.99, 4.604), (1000, 0.95, 1.962)],
)
def test_t_quantile_matches_the_table(df, level, table):
    assert interval.t_quantile(df, level) == approx(table, abs=5e-4)


def test_t_quantile_is_continuous_where_the_series_hands_over_to_the_expansion():
    below, above = interval.t_quantile(200), interval.t_quantile(201)
    assert 0 < below - above < 1e-4  # t(200) = 1.971896, t(201) = 1.971837


def test_mean_interval_by_hand():
    # 1..5: mean 3, s = sqrt(10 / 4) = 1.581139, s / sqrt(5) = 0.707107, t(4) = 2.776445:
    # 3 -/+ 1.963243.
    mean = interval.mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == approx((3.0, 1.036757, 4.963243))
    assert interval.mean_interval([2.0, 2.0]) == (2.0, 2.0, 2.0)  # no spread: no width
    assert interval.mean_interval([7.0]) is None and interval.mean_interval([]) is None
