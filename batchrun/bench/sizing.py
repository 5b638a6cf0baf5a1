"""How many requests one bench run measures: a fixed count (-n), until its spread is tight
enough for a gate (levels given with -c / --rate), or while its share of a time budget allows
(the default bench). Pure rules over a run's finished records and an injected clock; the pool
asks them as it sends.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, Sequence, TypeVar

from batchrun.analysis import stats
from batchrun.store.records import OK, Record

T = TypeVar("T")

# Sizing by spread (levels given, no time budget): past its minimum a level keeps sending until
# `compare` against an identical run would give its p50 TTFT and p50 latency a 95% interval
# within ±4% (level_half_width), checked every quarter of the minimum, up to its cap. ±4% against
# the default 10% tolerance catches a 20% regression in ~99% of pairs (simulated; bench_compare.py
# measures it for real).
TARGET_HALF_WIDTH = 0.04
# Sizing by a time share: at least this many requests a run (and one per slot), and the rate
# is read only once this many (or one per slot, if fewer) have finished.
QUICK_MIN = 10


@dataclass(frozen=True)
class RunSize:
    """How many requests one run measures: at least `minimum`, at most `cap`, and in between
    until its spread is tight enough (`target`, a predicted half-width) or its time share would
    be passed (`window_s`, seconds from its first send); neither: exactly `cap`."""

    minimum: int
    cap: int
    target: float | None = None
    window_s: float | None = None


def level_half_width(records: list[Record]) -> float | None:
    """How tight `compare` would be on this level against an identical run of the same size: the
    wider predicted half-width (fraction) of its p50 TTFT and p50 latency intervals; None when
    too few requests succeeded to say."""
    ok = [r for r in records if r.status == OK]
    widths = [
        stats.median_change_half_width([v for r in ok if (v := getattr(r, key)) is not None])
        for key in ("ttft_s", "latency_s")
    ]
    known = [w for w in widths if w is not None]
    return max(known) if known else None


def drain_s(elapsed_s: float, done: int, in_flight: int) -> float:
    """How long the `in_flight` requests of a run will take to finish, at the rate it has
    finished requests so far (`done` in `elapsed_s`; Little's law: in a queue-limited level this
    is the queue's length over the server's rate, in an idle one about one latency); 0 before
    any finished."""
    return in_flight * elapsed_s / done if done else 0.0


def window_allows(elapsed_s: float, window_s: float, done: int, in_flight: int, settled: int) -> bool:
    """Whether a run with a time share of `window_s` may send one more request `elapsed_s` into
    it: only if what it has in flight (`in_flight`, that one included) would end, by drain_s,
    within the share. Until `settled` requests have finished the rate is not read (the first
    wave ends in a clump: its first finisher alone would make the rate look a wave too low),
    and only the share itself bounds the sending."""
    if done < settled:
        return elapsed_s < window_s
    return elapsed_s + drain_s(elapsed_s, done, in_flight) < window_s


class SizedJobs(Generic[T]):
    """The jobs of one run, handed out lazily as its RunSize says: the first `minimum`, then
    more while the measured records are not tight enough (level_half_width above `target`,
    checked every quarter of the minimum) or while the time share allows (window_allows), up to
    `cap`. Only finished requests are judged, and neither rule looks at where their values lie,
    so stopping on them leaves the run's intervals honest (simulated coverage 95-96%).

    The pool takes jobs ahead of sending them (its queue), so with a time share it also asks
    `may_send` just before each send: a job taken but past the share is never sent."""

    def __init__(
        self,
        jobs: Sequence[T],
        records: list[Record],
        size: RunSize,
        concurrency: int = 1,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.jobs, self.records, self.size, self.clock = list(jobs[: size.cap]), records, size, clock
        self.minimum, self.target, self.concurrency = min(size.minimum, len(self.jobs)), size.target, concurrency
        self.every = max(1, size.minimum // 4)
        self.sent = 0  # jobs handed out
        self.launched = 0  # of those, the ones may_send let go
        self.started: float | None = None  # the clock at the first job handed out
        self.stopped = False  # no more will be handed out or sent
        self.width: float | None = None  # the last predicted half-width judged

    def __iter__(self) -> Iterator[T]:
        for i, job in enumerate(self.jobs):
            if self.stopped or (i >= self.minimum and self.enough(i)):
                break
            if self.started is None:
                self.started = self.clock()
            self.sent = i + 1
            yield job
        self.stopped = True

    def enough(self, sent: int) -> bool:
        """Past the minimum: whether the run has measured enough after `sent` requests."""
        if self.size.window_s is not None:
            return not self._in_window()
        if self.target is not None and (sent - self.minimum) % self.every == 0:
            self.width = self.predicted(sent)
            return self.width is None or self.width <= self.target
        return False

    def may_send(self) -> bool:
        """Asked just before each send: with a time share, whether it still allows one more
        (the minimum always goes out)."""
        if self.size.window_s is not None and self.launched >= self.minimum and (self.stopped or not self._in_window()):
            self.stopped = True
            return False
        self.launched += 1
        return True

    def _in_window(self) -> bool:
        assert self.size.window_s is not None
        elapsed = self.clock() - self.started if self.started is not None else 0.0
        done = len(self.records)
        # In flight once this one is sent too: what must end within the share.
        return window_allows(
            elapsed, self.size.window_s, done, max(self.launched - done, 0) + 1, min(self.concurrency, QUICK_MIN)
        )

    def predicted(self, sent: int) -> float | None:
        """The half-width once all `sent` requests have finished: up to 3 waves are still in flight
        or queued, so the finished ones' width is scaled by sqrt(finished / sent) (widths shrink as
        1/sqrt(n))."""
        width = level_half_width(self.records)
        return None if width is None else width * math.sqrt(len(self.records) / sent)

    def capped_width(self) -> float | None:
        """The level's final half-width when the cap stopped it short of the target, else None."""
        if self.target is None or self.sent < len(self.jobs) or self.sent <= self.minimum:
            return None
        width = level_half_width(self.records)
        return math.inf if width is None else width if width > self.target else None

    def outlook(self) -> tuple[str, float | None]:
        """For the progress line: the run's total as text ('100'; '100+' while sized by its
        spread; '~90' by its time share) and the seconds it has left (None: not known yet)."""
        done = len(self.records)
        elapsed = self.clock() - self.started if self.started is not None else 0.0
        rate = done / elapsed if done and elapsed > 0 else None
        if self.stopped:
            return str(self.launched), drain_s(elapsed, done, max(self.launched - done, 0))
        if self.size.window_s is not None:
            left = max(self.size.window_s - elapsed, 0.0)
            if rate is not None and done < self.minimum:
                left = max(left, (self.minimum - done) / rate)
            total = min(len(self.jobs), max(self.minimum, round(done + (rate or 0.0) * left)))
            return (f"~{total}" if rate else f"{self.minimum}+"), left if rate else None
        exact = self.target is None
        total = len(self.jobs) if exact else max(self.minimum, self.sent)
        return (str(total) if exact else f"{total}+"), ((total - done) / rate if rate else None)
