"""timeline.py: requests in flight and wall time on hand-drawn timelines."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from batchrun.analysis.columns import Columns
from batchrun.analysis.timeline import (
    in_flight,
    in_flight_timeline,
    sent_timed,
    session_spans,
    session_timelines,
    sessions_in_flight,
    thin_steps,
    wall_time,
)
from batchrun.store.records import Record

approx = pytest.approx


def test_in_flight_on_a_hand_drawn_timeline():
    #   A  |=======|          [0, 4)
    #   B    |===|            [1, 3)
    #   C      |=======|      [2, 6)
    #   D          |=|        [4, 5)   starts the instant A ends: no overlap with A
    #      0 1 2 3 4 5 6
    rs = [Record(id=n, row=0, sent_s=s, end_s=e) for n, s, e in [("A", 0, 4), ("B", 1, 3), ("C", 2, 6), ("D", 4, 5)]]
    assert in_flight_timeline(rs) == [(0, 1), (1, 2), (2, 3), (3, 2), (4, 2), (5, 1), (6, 0)]
    cols = Columns.of(rs)
    peak, mean, wall = sessions_in_flight(session_spans(cols, sent_timed(cols)))
    assert (peak, wall) == (3, 6)
    assert mean == approx(11 / 6)  # busy time 4 + 2 + 4 + 1 = 11 over span 6
    assert wall_time(rs) == 6 and in_flight(rs) == (3, 11 / 6)


def test_in_flight_ignores_unsent_records():
    rs = [
        Record(id="a", row=0, sent_s=0, end_s=2),
        Record(id="b", row=0, status="cancelled"),
        Record(id="c", row=0, status="skipped", sent_s=1, end_s=3),
    ]  # a skipped row never ran
    cols = Columns.of(rs)
    assert sessions_in_flight(session_spans(cols, sent_timed(cols))) == (1, 1.0, 2.0)
    assert in_flight(rs[:2]) == (1, 1.0) and in_flight([]) == (0, None) and wall_time([]) is None


def test_two_sessions_each_start_at_zero_and_are_drawn_apart():
    # session 1: [0, 2) and [1, 3); session 2 (a resume): [0, 1)
    rs = [
        Record(id="a", row=0, sent_s=0, end_s=2),
        Record(id="b", row=1, sent_s=1, end_s=3),
        Record(id="c", row=2, sent_s=0, end_s=1, session=2),
    ]
    cols = Columns.of(rs)
    # peak 2 (session 1); busy 2 + 2 + 1 = 5 over widths 3 + 1; wall 3 + 1
    assert sessions_in_flight(session_spans(cols, sent_timed(cols))) == (2, 5 / 4, 4.0)
    assert session_timelines(cols) == {1: [(0, 1), (1, 2), (2, 1), (3, 0)], 2: [(0, 1), (1, 0)]}
    assert session_timelines(cols, by_session=False) == {1: [(0, 2), (1, 2), (2, 1), (3, 0)]}


def test_in_flight_steps_by_merge_match_a_table_of_every_instant() -> None:
    rng = random.Random(3)
    spans = []
    for _ in range(300):
        start = rng.choice([0.0, 0.5, 1.0]) + rng.randrange(20) / 4  # many shared instants
        spans.append((start, start + rng.randrange(1, 8) / 4))
    events = Counter()
    for s, e in spans:
        events[s] += 1
        events[e] -= 1
    count, expected = 0, []
    for t in sorted(events):
        count += events[t]
        expected.append((t, count))
    assert (
        in_flight_timeline([Record(id=str(i), row=i, sent_s=s, end_s=e) for i, (s, e) in enumerate(spans)]) == expected
    )


def test_thinned_steps_keep_every_bucket_peak_and_trough() -> None:
    steps = [(float(t), c) for t, c in enumerate([0, 5, 1, 1, 9, 2, 2, 2, 0, 0])]
    assert thin_steps(iter(steps), 0.0, 9.0, len(steps), max_steps=20) == steps  # few: all kept
    thin = thin_steps(iter(steps), 0.0, 9.0, len(steps), max_steps=4)  # 2 buckets of 4.5 s
    # bucket [0, 4.5): low (0, 0), high (4, 9); [4.5, 9): high (5, 2), low (8, 0); the end, 9.0, alone
    assert thin == [(0.0, 0), (4.0, 9), (5.0, 2), (8.0, 0), (9.0, 0)]
