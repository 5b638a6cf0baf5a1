"""Requests on the run's timeline: how many were in flight, and for how long the run sent.

Each sent request occupies the half-open interval [sent_s, end_s): one ending at t and another
starting at t never overlap. A resumed run's sessions each count their offsets from their own
start, so the spans of two sessions are never laid on one timeline.
"""

from __future__ import annotations

import itertools
import math
from array import array
from typing import Iterable, Iterator, Mapping

from batchrun.analysis.columns import Columns
from batchrun.store.records import SKIPPED, Record

# A plot of requests in flight keeps at most this many steps (a million-row run has two million).
PLOT_STEPS = 4000


def per_s(amount: float, seconds: float | None) -> float | None:
    """A rate: amount / seconds; None when the time is unknown or zero (no rate, never infinity)."""
    return amount / seconds if seconds else None


class Spans:
    """The [sent, end) spans of one timeline: send and end offsets, each sorted once closed,
    and their summed busy time. Arrays of 8-byte floats: a million-row run's spans stay small."""

    def __init__(self) -> None:
        self.starts = array("d")
        self.ends = array("d")
        self.busy = 0.0

    @classmethod
    def of(cls, pairs: Iterable[tuple[float, float]]) -> Spans:
        spans = cls()
        for s, e in pairs:
            spans.add(s, e)
        return spans.close()

    def add(self, start: float, end: float) -> None:
        self.starts.append(start)
        self.ends.append(end)

    def close(self) -> Spans:
        self.busy = math.fsum(e - s for s, e in zip(self.starts, self.ends))  # before sorting splits the pairs
        self.starts = array("d", sorted(self.starts))
        self.ends = array("d", sorted(self.ends))
        return self

    @property
    def width(self) -> float:
        """max(end) - min(sent): the span's wall time."""
        return self.ends[-1] - self.starts[0]

    def steps(self) -> Iterator[tuple[float, int]]:
        """The in-flight step function: (time, count from this time on), one step per distinct
        time, made by merging the sorted starts and ends (all events at one instant are applied
        before its step is given; no table of every instant)."""
        starts, ends = self.starts, self.ends
        i = j = count = 0
        n, m = len(starts), len(ends)
        while i < n or j < m:
            t = starts[i] if j >= m or (i < n and starts[i] <= ends[j]) else ends[j]
            while i < n and starts[i] == t:
                count += 1
                i += 1
            while j < m and ends[j] == t:
                count -= 1
                j += 1
            yield t, count


def _pairs(records: Iterable[Record]) -> Iterator[tuple[float, float]]:
    return ((r.sent_s, r.end_s) for r in records if r.sent_s is not None and r.end_s is not None)


def in_flight_timeline(records: Iterable[Record]) -> list[tuple[float, int]]:
    """Spans.steps of every record with a send and an end time, on one timeline."""
    return list(Spans.of(_pairs(records)).steps())


def in_flight(records: Iterable[Record]) -> tuple[int, float | None]:
    """(peak, time-weighted mean) requests in flight of records on one timeline (sessions_in_flight
    of their spans); (0, None) when none was sent."""
    spans = Spans.of(_pairs(records))
    if not spans.starts:
        return 0, None
    peak, mean, _ = sessions_in_flight({1: spans})
    return peak, mean


def wall_time(records: Iterable[Record]) -> float | None:
    """max(end_s) - min(sent_s) over records that were sent, on one timeline; None when none was."""
    spans = Spans.of(_pairs(records))
    return spans.width if spans.starts else None


def sent_timed(cols: Columns) -> bytes:
    """Records with a send time that were not skipped: the ones on the timeline."""
    skipped = cols.label_code("status", SKIPPED)
    return bytes(s != skipped and t == t for s, t in zip(cols.column("status"), cols.column("sent_s")))


def session_spans(cols: Columns, sent: bytes, by_session: bool = True) -> dict[int, Spans]:
    """Per session (or all under 1), the spans of the records where `sent` that also ended, in
    first-seen order."""
    spans: dict[int, Spans] = {}
    sessions = cols.column("session") if by_session else itertools.repeat(1)
    for m, session, s, e in zip(sent, sessions, cols.column("sent_s"), cols.column("end_s")):
        if m and e == e:
            one = spans.get(session or 1)
            if one is None:
                one = spans[session or 1] = Spans()
            one.add(s, e)
    for one in spans.values():
        one.close()
    return spans


def sessions_in_flight(spans: Mapping[int, Spans]) -> tuple[int, float | None, float | None]:
    """(peak, time-weighted mean, wall time) over sessions: the peak is the highest of any
    session; the mean is all busy time over the sum of the sessions' widths (Little's law per
    session, pooled); the wall time is the sessions' widths summed (the time between two
    sessions is not sending time)."""
    peak, busy, width, widths = 0, 0.0, 0.0, []
    for one in spans.values():
        peak = max(peak, max(count for _, count in one.steps()))
        busy += one.busy
        widths.append(one.width)
        width += widths[-1]
    return peak, (busy / width if width > 0 else None), (math.fsum(widths) if widths else None)


def session_timelines(
    cols: Columns, *, by_session: bool = True, max_steps: int = PLOT_STEPS
) -> dict[int, list[tuple[float, int]]]:
    """In-flight step functions per session (all under 1 with by_session=False), for plots:
    every step up to `max_steps`, else per time bucket its lowest and highest step (the peaks
    and troughs a plot shows), so a drawing never takes one point per request."""
    out = {}
    for session, one in session_spans(cols, sent_timed(cols), by_session).items():
        out[session] = thin_steps(one.steps(), one.starts[0], one.ends[-1], 2 * len(one.starts), max_steps)
    return out


def thin_steps(
    steps: Iterable[tuple[float, int]], start: float, end: float, n: int, max_steps: int = PLOT_STEPS
) -> list[tuple[float, int]]:
    """At most ~max_steps of n steps spanning [start, end]: each of max_steps / 2 equal time
    buckets keeps its lowest and its highest step, in time order; all steps when n is small."""
    if n <= max_steps or not end > start:
        return list(steps)
    width = (end - start) / (max_steps // 2)
    out: list[tuple[float, int]] = []
    bucket, lo, hi = None, (0.0, 0), (0.0, 0)
    for t, c in steps:
        b = int((t - start) / width)
        if b != bucket:
            if bucket is not None:
                out.extend(sorted({lo, hi}))
            bucket, lo, hi = b, (t, c), (t, c)
        elif c < lo[1]:
            lo = (t, c)
        elif c > hi[1]:
            hi = (t, c)
    if bucket is not None:
        out.extend(sorted({lo, hi}))
    return out
