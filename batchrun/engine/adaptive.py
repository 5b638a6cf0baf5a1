"""`--concurrency auto`: a controller that finds the concurrency a server can take, and the gate
that applies it to the pool.

The controller is of the TCP / AIMD family (slow start, additive increase, multiplicative
decrease), with a latency signal like TCP Vegas' and Netflix's gradient limiter: it works in
rounds of requests sent since its last change, and after each round

- on a 429, a 5xx or a timeout in the round: cut the limit to 70%;
- when the round's mean TTFT is past `knee_factor` x the best round mean seen (the server has
  started queueing: a latency knee), or the round's p90 TTFT / latency is past the SLO: cut it
  to 80%. The mean, not the median: by Little's law the mean queue wait past a knee of k slots
  is service_time x (n - k) / k however the wait is shared out, while a server with even service
  times makes only the few requests past its capacity wait (a whole service time each) and the
  median request waits for nothing. With the default factor 2 the knee is flagged once the mean
  wait exceeds the unloaded TTFT. The round's mean latency past `knee_factor` x the best round
  mean counts too: a server that slows every token instead of queueing gains no throughput
  (limit / latency, Little's law) once latency grows as fast as the limit;
- otherwise, if the pool actually used the limit: double it while no round has been congested
  yet (slow start), then add max(1, sqrt(limit) / 2) per round (as the gradient limiter's
  sqrt(limit) queue allowance: a large limit climbs back in a few rounds, a small one by one).

The first congestion ends slow start at the last limit whose round was fine (TCP's ssthresh),
so the doubling does not overshoot by 2x for several rounds. Pure: times are passed in.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field

from batchrun.analysis.distribution import percentile


@dataclass(frozen=True)
class AdaptiveConfig:
    start: int = 4  # the first limit
    floor: int = 1
    ceiling: int = 256  # never more in flight than this
    knee_factor: float = 2.0  # round mean TTFT past this x the best round mean: a knee
    slo_ttft_s: float | None = None  # round p90 TTFT above this: too much load
    slo_e2e_s: float | None = None  # round p90 latency above this: too much load
    error_cut: float = 0.7  # limit x this after a 429 / 5xx / timeout
    latency_cut: float = 0.8  # limit x this after a latency knee or an SLO miss


@dataclass
class _Round:
    started: float  # samples sent before this were sent under an older limit
    ttft: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    overloaded: int = 0
    peak_in_flight: int = 0
    marker: float | None = None  # when the round's first request finished

    @property
    def size(self) -> int:
        return len(self.ttft) + self.overloaded


class ConcurrencyController:
    """Decides the concurrency limit from finished requests; `history` is (time, limit) per change."""

    def __init__(self, config: AdaptiveConfig, now: float) -> None:
        self.config = config
        self.value = float(min(max(config.start, config.floor), config.ceiling))
        self.slow_start = True
        self.best_ttft: float | None = None
        self.best_latency: float | None = None
        self.last_good: float | None = None
        self.history: list[tuple[float, int]] = [(now, self.limit)]
        self._round = _Round(started=now)

    @property
    def limit(self) -> int:
        return max(self.config.floor, int(self.value))

    def observe(
        self,
        *,
        sent: float,
        now: float,
        ttft_s: float | None,
        latency_s: float | None,
        overloaded: bool,
        in_flight: int,
    ) -> int:
        """One finished attempt (sent at `sent`); returns the limit to apply from now on."""
        rnd = self._round
        rnd.peak_in_flight = max(rnd.peak_in_flight, in_flight)
        if sent < rnd.started:
            return self.limit  # sent under an older limit: says nothing about this one
        if overloaded:
            rnd.overloaded += 1
            self._decide(now)  # an error needs no more evidence
        elif ttft_s is not None:
            rnd.ttft.append(ttft_s)
            if latency_s is not None:
                rnd.latency.append(latency_s)
            # A round lasts a window of requests *and* until a request sent after its first
            # finished one has finished too: the first to finish are the ones that did not
            # queue, and the queued ones (sent as early, finished a service time later) must
            # be in the round for it to see the queue.
            if rnd.marker is None:
                rnd.marker = now
            elif rnd.size >= max(4, self.limit) and sent >= rnd.marker:
                self._decide(now)
        return self.limit

    def _decide(self, now: float) -> None:
        rnd, cfg = self._round, self.config
        ttft = sorted(rnd.ttft)
        if rnd.overloaded:
            self._cut(cfg.error_cut)
        elif ttft and self._congested(ttft, sorted(rnd.latency)):
            self._cut(cfg.latency_cut)
        else:
            if ttft:
                mean = sum(ttft) / len(ttft)
                self.best_ttft = mean if self.best_ttft is None else min(self.best_ttft, mean)
            if rnd.latency:
                mean = sum(rnd.latency) / len(rnd.latency)
                self.best_latency = mean if self.best_latency is None else min(self.best_latency, mean)
            self.last_good = self.value
            if rnd.peak_in_flight >= 0.8 * self.limit:  # grow only a limit that was used
                self.value = self.value * 2 if self.slow_start else self.value + max(1.0, math.sqrt(self.value) / 2)
        self.value = min(max(self.value, cfg.floor), cfg.ceiling)
        if self.limit != self.history[-1][1]:
            self.history.append((now, self.limit))
        self._round = _Round(started=now)

    def _congested(self, ttft: list[float], latency: list[float]) -> bool:
        cfg = self.config
        if self.best_ttft is not None and sum(ttft) / len(ttft) > cfg.knee_factor * self.best_ttft:
            return True
        # A server that slows every token instead of queueing: throughput = limit / latency stops
        # growing once latency grows as fast as the limit; past knee_factor x the best, stop.
        if (
            self.best_latency is not None
            and latency
            and sum(latency) / len(latency) > cfg.knee_factor * self.best_latency
        ):
            return True
        if cfg.slo_ttft_s is not None and percentile(ttft, 90) > cfg.slo_ttft_s:
            return True
        return bool(cfg.slo_e2e_s is not None and latency and percentile(latency, 90) > cfg.slo_e2e_s)

    def _cut(self, factor: float) -> None:
        if self.slow_start and self.last_good is not None:
            self.value = min(self.value * factor, self.last_good)
        else:
            self.value *= factor
        self.slow_start = False


def settled_limit(history: list[tuple[float, int]], end: float) -> int | None:
    """The limit the controller held longest over the last half of the run (time-weighted
    median), the concurrency to recommend; None for an empty history."""
    if not history:
        return None
    start = history[0][0] + (end - history[0][0]) / 2
    spans: dict[int, float] = {}
    for (t, limit), nxt in zip(history, [*history[1:], (end, 0)]):
        lo, hi = max(t, start), min(nxt[0], end)
        if hi > lo:
            spans[limit] = spans.get(limit, 0.0) + hi - lo
    if not spans:
        return history[-1][1]
    total, acc = sum(spans.values()), 0.0
    for limit in sorted(spans):
        acc += spans[limit]
        if acc >= total / 2:
            return limit
    return history[-1][1]


class Gate:
    """At most `limit` holders at once; the limit may change at any time. Waiters go in order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future  # the releaser counted us in before waking us
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # woken and cancelled in the same tick: give the slot on
            else:
                self._waiters.remove(future)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        self._wake()

    def _release(self) -> None:
        self.active -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.active < self.limit:
            future = self._waiters.popleft()
            if not future.done():
                self.active += 1
                future.set_result(None)
