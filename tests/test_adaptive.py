"""engine/adaptive.py: the concurrency controller against scripted servers on a scripted clock,
and the gate whose limit changes while workers wait."""

from __future__ import annotations

import asyncio
import random

import pytest

from batchrun.engine.adaptive import AdaptiveConfig, ConcurrencyController, Gate, settled_limit


class ScriptedServer:
    """A closed-loop server with `knee` slots: below the knee a request takes `service_s` (TTFT
    `ttft_s`); past it, requests queue and their TTFT grows by the wait (Little's law:
    wait = service * (n - knee) / knee). `rate_limit`: more in flight than this gets 429s."""

    def __init__(
        self,
        knee: int,
        *,
        ttft_s: float = 0.25,
        service_s: float = 3.0,
        rate_limit: int | None = None,
        waves: bool = False,
        seed: int = 0,
    ) -> None:
        self.knee, self.ttft_s, self.service_s, self.rate_limit = knee, ttft_s, service_s, rate_limit
        self.waves = waves  # even service times: only the excess waits, a whole service time each
        self.rng = random.Random(seed)

    def drive(self, controller: ConcurrencyController, seconds: float) -> list[tuple[float, int]]:
        """Run the controller for `seconds` of scripted time; (time, limit) after each completion."""
        now, trace = 0.0, []
        while now < seconds:
            n = controller.limit
            wait = self.service_s * max(0, n - self.knee) / self.knee
            step = (self.service_s + wait) / n  # completions arrive n per cycle
            if self.waves:
                wait = self.service_s if self.rng.random() < max(0, n - self.knee) / n else 0.0
            now += step
            jitter = self.rng.lognormvariate(0, 0.15)
            overloaded = self.rate_limit is not None and n > self.rate_limit and self.rng.random() < 0.3
            controller.observe(
                sent=now - self.service_s - wait,
                now=now,
                ttft_s=None if overloaded else (self.ttft_s + wait) * jitter,
                latency_s=None if overloaded else (self.service_s + wait) * jitter,
                overloaded=overloaded,
                in_flight=n,
            )
            trace.append((now, controller.limit))
        return trace


def after(trace: list[tuple[float, int]], t: float) -> list[int]:
    return [n for when, n in trace if when >= t]


@pytest.mark.parametrize("knee, within_s", [(8, 30.0), (16, 30.0), (48, 75.0)])
def test_settles_near_the_knee_and_stays_there(knee: int, within_s: float) -> None:
    controller = ConcurrencyController(AdaptiveConfig(), now=0.0)
    trace = ScriptedServer(knee).drive(controller, 300.0)
    late = after(trace, within_s)
    assert min(late) >= 0.75 * knee and max(late) <= 1.25 * knee  # within ±25% from then on
    settled = settled_limit(controller.history, 300.0)
    assert settled is not None and abs(settled - knee) <= 0.25 * knee
    assert all(abs(n - settled) <= 0.2 * settled + 1 for n in after(trace, 60.0))  # no wide swings


@pytest.mark.parametrize("knee", [16, 32])
def test_a_queue_only_the_excess_waits_in_is_seen_too(knee: int) -> None:
    """Even service times: the few requests past the knee wait a whole service time each while
    the median request waits for nothing. The round mean still sees the queue (Little's law)."""
    controller = ConcurrencyController(AdaptiveConfig(), now=0.0)
    trace = ScriptedServer(knee, waves=True).drive(controller, 300.0)
    settled = settled_limit(controller.history, 300.0)
    assert settled is not None and abs(settled - knee) <= 0.25 * knee
    assert max(after(trace, 60.0)) <= 1.6 * knee and min(after(trace, 60.0)) >= 0.75 * knee


def test_a_server_that_slows_every_token_instead_of_queueing_is_not_pushed_past_2x() -> None:
    """No queue, so TTFT stays flat; past the knee every request just takes longer (throughput
    flat). The latency signal stops the growth where latency has doubled: at about 2x the knee."""
    controller = ConcurrencyController(AdaptiveConfig(), now=0.0)
    rng = random.Random(1)
    now, knee, service = 0.0, 16, 2.0
    for _ in range(4000):
        n = controller.limit
        latency = service * max(1.0, n / knee)
        now += latency / n
        controller.observe(
            sent=now - latency,
            now=now,
            ttft_s=0.25 * rng.lognormvariate(0, 0.15),
            latency_s=latency * rng.lognormvariate(0, 0.15),
            overloaded=False,
            in_flight=n,
        )
    settled = settled_limit(controller.history, now)
    assert settled is not None and knee <= settled <= 2 * knee


def test_slow_start_doubles_then_the_first_congestion_ends_it_at_the_last_good_limit() -> None:
    controller = ConcurrencyController(AdaptiveConfig(start=4), now=0.0)
    ScriptedServer(knee=20).drive(controller, 30.0)
    limits = [n for _, n in controller.history]
    assert limits[:4] == [4, 8, 16, 32]
    assert limits[4] == 16  # back to the last limit that was fine, not 32 * 0.8
    assert not controller.slow_start


def test_errors_cut_multiplicatively() -> None:
    controller = ConcurrencyController(AdaptiveConfig(start=20), now=0.0)
    controller.slow_start = False
    assert controller.observe(sent=1.0, now=2.0, ttft_s=None, latency_s=None, overloaded=True, in_flight=20) == 14
    # A second error from a request sent before the cut says nothing about the new limit.
    assert controller.observe(sent=1.5, now=2.1, ttft_s=None, latency_s=None, overloaded=True, in_flight=14) == 14
    assert controller.observe(sent=2.2, now=2.5, ttft_s=None, latency_s=None, overloaded=True, in_flight=14) == 9


def test_rate_limited_server_keeps_it_below_where_429s_start() -> None:
    controller = ConcurrencyController(AdaptiveConfig(), now=0.0)
    trace = ScriptedServer(knee=100, rate_limit=12).drive(controller, 300.0)
    assert max(after(trace, 60.0)) <= 15  # probes past 12 are cut at once
    settled = settled_limit(controller.history, 300.0)
    assert settled is not None and 8 <= settled <= 12


def test_slo_bounds_the_limit_before_the_knee() -> None:
    # TTFT grows past the knee; an SLO of 0.6 s on p90 TTFT allows only a little queueing.
    config = AdaptiveConfig(slo_ttft_s=0.6, knee_factor=100.0)
    controller = ConcurrencyController(config, now=0.0)
    trace = ScriptedServer(knee=16, ttft_s=0.25, service_s=3.0).drive(controller, 300.0)
    assert max(after(trace, 60.0)) <= 20  # probes past it are cut at once
    settled = settled_limit(controller.history, 300.0)
    assert settled is not None and 12 <= settled <= 17  # p90 TTFT <= 0.6 s allows ~17


def test_an_unused_limit_does_not_grow() -> None:
    """When something else binds (a rate limiter, a slow reader), in-flight stays below the
    limit: growing it would only make the recommendation meaningless."""
    controller = ConcurrencyController(AdaptiveConfig(start=8), now=0.0)
    for i in range(100):
        controller.observe(sent=float(i), now=i + 0.5, ttft_s=0.2, latency_s=1.0, overloaded=False, in_flight=3)
    assert controller.limit == 8


def test_never_past_the_ceiling_or_below_the_floor() -> None:
    controller = ConcurrencyController(AdaptiveConfig(start=4, ceiling=10, floor=2), now=0.0)
    ScriptedServer(knee=1000).drive(controller, 100.0)
    assert controller.limit == 10
    for i in range(50):
        controller.observe(sent=100.0 + i, now=100.5 + i, ttft_s=None, latency_s=None, overloaded=True, in_flight=10)
    assert controller.limit == 2


def test_settled_limit_is_the_time_weighted_median_of_the_last_half() -> None:
    history = [(0.0, 4), (10.0, 100), (50.0, 12), (80.0, 16), (90.0, 12)]
    # Last half is 50..100: 12 for 30 s + 10 s, 16 for 10 s.
    assert settled_limit(history, 100.0) == 12
    assert settled_limit([(0.0, 7)], 10.0) == 7
    assert settled_limit([], 1.0) is None


async def test_gate_applies_a_lower_and_a_higher_limit() -> None:
    gate = Gate(2)
    inside, peak = 0, 0
    release = asyncio.Event()

    async def worker() -> None:
        nonlocal inside, peak
        async with gate:
            inside += 1
            peak = max(peak, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(worker()) for _ in range(6)]
    await asyncio.sleep(0)
    assert inside == 2
    gate.set_limit(5)
    await asyncio.sleep(0)
    assert inside == 5
    gate.set_limit(1)  # holders finish; no one new enters until below 1
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 5 and gate.active == 0


async def test_gate_cancelled_waiter_gives_its_place_on() -> None:
    gate = Gate(1)
    await gate.__aenter__()
    waiter = asyncio.create_task(gate.__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await gate.__aexit__()
    assert gate.active == 0
    await asyncio.wait_for(gate.__aenter__(), timeout=1)
    assert gate.active == 1
