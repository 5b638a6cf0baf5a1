"""request_figures.py: one request's TPOT and SLO verdict, from a Record and from Columns' values
(NaN for an unknown time, -1 for an unknown count), and SLO parsing; worked out by hand."""

from __future__ import annotations

import math

import pytest

from batchrun.analysis.request_figures import meets_bounds, meets_slo, tpot, tpot_of
from batchrun.store.records import Record

approx = pytest.approx
NAN = math.nan


def test_tpot_is_the_decode_time_shared_by_the_tokens_after_the_first():
    assert tpot_of(1.0, 0.5, 10) == approx(0.5 / 9)  # (1.0 - 0.5) / (10 - 1)
    assert tpot_of(0.3, 0.2, 2) == approx(0.1)
    assert tpot_of(0.3, 0.2, 1) is None  # one token: no decode phase
    assert tpot(Record(id="x", row=0, ttft_s=0.1, latency_s=0.2, completion_tokens=None)) is None
    assert tpot(Record(id="x", row=0, ttft_s=0.25, latency_s=0.75, completion_tokens=3)) == 0.25


def test_an_unknown_value_from_columns_gives_no_tpot():
    assert tpot_of(NAN, 0.2, 5) is None and tpot_of(1.0, NAN, 5) is None and tpot_of(1.0, 0.2, -1) is None


SLO = {"ttft": 0.5, "tpot": 0.05, "e2e": 2.0}


@pytest.mark.parametrize(
    "ttft, latency, tokens, meets",
    [
        (0.5, 0.58, 3, True),  # TTFT on its bound (inclusive); TPOT (0.58 - 0.5) / 2 = 0.04
        (0.6, 0.61, 2, False),  # TTFT over
        (0.1, 0.3, 3, False),  # TPOT 0.2 / 2 = 0.1
        (0.1, 2.1, 101, False),  # TPOT 0.02, but latency over 2.0
        (0.2, 0.2, 1, True),  # one token: no decode phase, passes the TPOT bound
        (0.2, 0.2, None, False),  # token count unknown: cannot be shown to pass TPOT
        (0.2, 0.2, -1, False),  # the same, as Columns store it
        (NAN, 0.2, 1, False),  # TTFT unknown (Columns)
        (None, 0.2, 1, False),  # TTFT unknown (Record)
        (0.2, NAN, 5, False),  # latency unknown
    ],
)
def test_meets_bounds_on_hand_worked_values(ttft, latency, tokens, meets) -> None:
    assert meets_bounds(SLO, ttft, latency, tokens) is meets


def test_meets_slo_needs_an_ok_record_and_only_the_bounds_given():
    r = Record(id="a", row=0, ttft_s=0.1, latency_s=0.2, completion_tokens=None)
    assert not meets_slo(r, {"tpot": 1.0})
    assert meets_slo(r, {"ttft": 1.0})
    r.status = "error"
    assert not meets_slo(r, {"ttft": 1.0})
