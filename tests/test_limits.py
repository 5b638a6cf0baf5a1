"""engine/limits.py: the token bucket on literal clocks, refunds, the request pacer on a virtual
clock, learned limits, and that pacing uses only aiolimiter's public API (its private API once
broke --tpm on aiolimiter 1.1.0)."""

from __future__ import annotations

import asyncio
import json
import random
import time

import aiohttp
import pytest
from aiohttp import web
from aiolimiter import AsyncLimiter
from conftest import MakeSim
from rawserver import raw_server, sse
from test_pool import OK_STREAM, job
from virtualloop import run_virtual

from batchrun.endpoint.ratelimits import IETF, OPENAI, Quota, RateLimitInfo
from batchrun.endpoint.transport import Endpoint, StreamClient, make_session
from batchrun.engine import limits as limits_module
from batchrun.engine.limits import RateLimits, RequestPacer, TokenBucket, limits_summary
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.store.records import Record

# ---------------------------------------------------------------- the bucket, pure


def test_bucket_holds_one_second_and_refills_at_the_rate() -> None:
    bucket = TokenBucket(600, now=0.0)  # 10 per second, a bucket of 10
    assert bucket.capacity == 10 and bucket.wait_s(10, 0.0) == 0
    bucket.take(10, 0.0)
    assert bucket.wait_s(1, 0.0) == pytest.approx(0.1)
    assert bucket.wait_s(5, 0.2) == pytest.approx(0.3)  # 2 refilled by 0.2 s, 3 more at 10/s
    bucket.refill(100.0)
    assert bucket.level == 10  # never more than the capacity


def test_under_sixty_per_minute_one_unit_at_a_time() -> None:
    bucket = TokenBucket(30, now=0.0)  # one every 2 s
    bucket.take(1, 0.0)
    assert bucket.capacity == 1 and bucket.wait_s(1, 0.0) == pytest.approx(2.0)


def test_refund_and_new_rate() -> None:
    bucket = TokenBucket(6000, now=0.0)  # 100 tokens per second
    bucket.take(100, 0.0)
    bucket.give_back(90, 0.0)
    assert bucket.level == 90
    bucket.give_back(500, 0.0)
    assert bucket.level == 100  # a refund never overfills
    bucket.set_rate(600, 0.0)  # the limit drops to 10/s
    assert bucket.capacity == 10 and bucket.level == 10
    bucket.take(10, 0.0)
    bucket.set_rate(1200, 0.5)  # 5 refilled at the old rate, then 20/s
    assert bucket.level == pytest.approx(5) and bucket.wait_s(20, 0.5) == pytest.approx(0.75)


def test_provider_remaining_caps_what_is_free_and_may_hold() -> None:
    bucket = TokenBucket(600, now=0.0)
    bucket.at_most(3, 0.0)
    assert bucket.level == 3
    bucket.at_most(50, 0.0)
    assert bucket.level == 3  # only ever lowers
    bucket.at_most(-20, 0.0)  # hold: 2 s of refill before anything is free
    assert bucket.wait_s(1, 0.0) == pytest.approx(2.1)


# ---------------------------------------------------------------- async waiting


async def test_refund_wakes_a_waiter_at_once() -> None:
    limits = RateLimits(tpm=60)  # 1 token per second
    await limits.acquire(1)
    waiter = asyncio.create_task(limits.acquire(1))
    await asyncio.sleep(0)
    assert not waiter.done()
    limits.correct(charged_tokens=1, actual_tokens=0)
    await asyncio.wait_for(waiter, timeout=0.5)  # not the 1 s refill
    await limits.aclose()


async def test_waiters_are_served_in_arrival_order() -> None:
    """A large request first, then small ones: the small ones that would fit sooner still wait."""
    limits = RateLimits(tpm=60_000)  # 1000/s, a bucket of 1000
    bucket = limits._tpm  # noqa: SLF001
    assert bucket is not None
    await bucket.take(1000)  # empty
    order: list[str] = []

    async def one(name: str, amount: int) -> None:
        await bucket.take(amount)
        order.append(name)

    await asyncio.gather(one("large", 400), one("small-1", 50), one("small-2", 50))
    assert order == ["large", "small-1", "small-2"]


# ---------------------------------------------------------------- the request pacer (aiolimiter), on a virtual clock


async def take_times(pacer: RequestPacer, n: int) -> list[float]:
    """n requests one after another; the loop's time at each admission."""
    loop, times = asyncio.get_running_loop(), []
    for _ in range(n):
        await pacer.take()
        times.append(loop.time())
    return times


def test_pacer_lets_one_seconds_worth_through_then_paces_at_the_rate() -> None:
    async def main() -> list[float]:
        return await take_times(RequestPacer(600), 13)  # 10 per second, a burst of 10

    assert run_virtual(main()) == pytest.approx([0.0] * 10 + [0.1, 0.2, 0.3], abs=1e-3)


def test_pacer_under_sixty_per_minute_lets_one_at_a_time() -> None:
    async def main() -> list[float]:
        return await take_times(RequestPacer(30), 3)

    assert run_virtual(main()) == pytest.approx([0.0, 2.0, 4.0], abs=1e-3)


def test_pacer_serves_first_come_first_served_on_a_busy_loop() -> None:
    """64 senders over a 600/min limit on a loop whose iterations take 1 ms: a sender that asks
    in the same iteration as capacity frees must not go before the one woken for it (a bare
    AsyncLimiter lets it, and the woken one queues again behind everyone)."""

    async def main() -> tuple[list[int], int]:
        loop, pacer, rng = asyncio.get_running_loop(), RequestPacer(600), random.Random(4)
        asked, order = [0], []

        async def sender() -> None:
            while loop.time() < 60.0:
                number, asked[0] = asked[0], asked[0] + 1
                await pacer.take()
                order.append(number)
                await asyncio.sleep(rng.uniform(0.5, 3.0))

        await asyncio.gather(*(sender() for _ in range(64)))
        return order, asked[0]

    order, asked = run_virtual(main(), iteration_s=1e-3)
    assert len(order) == asked > 600 and order == sorted(order)


def test_pacer_never_counts_on_more_than_the_provider_says_is_left() -> None:
    async def main() -> list[float]:
        pacer = RequestPacer(600)
        pacer.at_most(3)
        pacer.at_most(50)  # only ever lowers
        return await take_times(pacer, 5)

    assert run_virtual(main()) == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2], abs=1e-3)


def test_pacer_holds_when_the_provider_says_less_than_nothing_is_left() -> None:
    async def main() -> list[float]:
        pacer = RequestPacer(600)
        pacer.at_most(-20)  # 2 s of refill before anything is free
        return await take_times(pacer, 2)

    assert run_virtual(main()) == pytest.approx([2.1, 2.2], abs=1e-3)


def test_a_request_already_waiting_is_held_by_a_lower_remaining() -> None:
    """It waits on the limiter that was current when it asked (due at 0.1 s); the provider's
    `remaining` that comes meanwhile holds it too."""

    async def main() -> float:
        pacer = RequestPacer(600)
        await take_times(pacer, 10)  # the burst, all at 0
        waiting = asyncio.ensure_future(take_times(pacer, 1))
        await asyncio.sleep(0.05)
        pacer.at_most(-10)  # at 0.05: 11 to refill before one goes
        (at,) = await waiting
        return at

    assert run_virtual(main()) == pytest.approx(1.15, abs=1e-3)


def test_a_hold_being_paid_off_is_not_shortened_by_a_milder_one() -> None:
    """25 below nothing at 600/min: the first request goes at 2.6 s. At 0.5 s the provider says
    16 below nothing, while 20 are still owed (the limiter drains its first 10, the other 25 wait
    their turn): that is milder, so nothing changes."""

    async def main() -> float:
        loop, pacer = asyncio.get_running_loop(), RequestPacer(600)
        pacer.at_most(-25)
        loop.call_at(0.5, pacer.at_most, -16)
        (at,) = await take_times(pacer, 1)
        return at

    assert run_virtual(main()) == pytest.approx(2.6, abs=1e-3)


def test_a_lower_rate_brings_no_burst_of_its_own() -> None:
    """600/min, then 300/min from 1.05 s: from then on one request per 0.2 s. The old limiter had
    0.5 free then, which its public API cannot tell apart from none: the first request after the
    change may wait up to that much longer than the exact 1.15 s."""

    async def main() -> list[float]:
        loop, pacer = asyncio.get_running_loop(), RequestPacer(600)
        loop.call_at(1.05, pacer.set_rate, 300)
        times = await take_times(pacer, 30)
        return [t for t in times if t > 1.05]

    after = run_virtual(main())
    assert 1.15 - 1e-3 <= after[0] <= 1.25 + 1e-3
    assert [b - a for a, b in zip(after, after[1:])] == pytest.approx([0.2] * (len(after) - 1), abs=1e-3)


# ---------------------------------------------------------------- learned limits


def openai_info(rpm: float, left_r: float, tpm: float, left_t: float) -> RateLimitInfo:
    return RateLimitInfo(OPENAI, Quota(rpm, left_r, 0.1), Quota(tpm, left_t, 0.1))


async def test_learned_limits_pace_where_the_user_gave_none() -> None:
    limits = RateLimits(rpm=100, learn_rpm=True, learn_tpm=True)
    assert limits.paced == {"rpm": 100, "tpm": None}
    limits.observe(openai_info(600, 599, 40_000, 39_000), [])
    assert limits.paced == {"rpm": 100, "tpm": 40_000}  # the user's --rpm wins
    limits.observe(openai_info(600, 599, 80_000, 79_000), [])
    assert limits.paced["tpm"] == 80_000  # the rate follows the announced limit
    assert limits.seen.requests_per_min == 600 and limits.seen.source == OPENAI


async def test_without_learning_headers_are_only_remembered() -> None:
    limits = RateLimits()
    limits.observe(openai_info(600, 1, 40_000, 10), [])
    assert limits.paced == {"rpm": None, "tpm": None} and limits.seen.lowest_tokens_left == 10


def test_budget_spent_elsewhere_is_not_counted_on() -> None:
    """The provider says none of its 600/min are left: nothing goes until the rate has refilled
    one request (0.1 s), and then one every 0.1 s, not a second's burst."""

    async def main() -> list[float]:
        limits = RateLimits(learn_rpm=True)
        limits.observe(RateLimitInfo(OPENAI, Quota(600, 0, 60.0)), [])  # another process used it all
        return [await admitted(limits) for _ in range(3)]

    assert run_virtual(main()) == pytest.approx([0.1, 0.2, 0.3], abs=1e-3)


def test_an_ietf_window_must_last_until_its_reset() -> None:
    async def main() -> float:
        limits = RateLimits(learn_rpm=True)
        limits.observe(RateLimitInfo(IETF, Quota(60, 5, 30.0, 60.0)), [])  # 1/s; 5 left for 30 s
        return await admitted(limits)

    # The refill before the reset (30) is not counted on: 5 - 30 = -25 free, so the first goes at 26 s.
    assert run_virtual(main()) == pytest.approx(26.0, abs=1e-3)


async def admitted(limits: RateLimits) -> float:
    """Acquire one request of one token; the loop's time when it was admitted."""
    await limits.acquire(1)
    return asyncio.get_running_loop().time()


async def test_learned_tokens_are_not_refunded() -> None:
    limits = RateLimits(learn_tpm=True)
    limits.observe(RateLimitInfo(OPENAI, tokens=Quota(6000, 6000, 0.0)), [])
    await limits.acquire(100)
    limits.correct(charged_tokens=100, actual_tokens=10)  # the provider still counts its 100
    assert limits._tpm.core.level == pytest.approx(0, abs=1)  # noqa: SLF001


async def test_an_unreadable_header_is_warned_about_once() -> None:
    said: list[str] = []
    limits = RateLimits(learn_rpm=True, warn=said.append)
    for _ in range(3):
        limits.observe(None, ["x-ratelimit-limit-requests: 'many' is not a count"])
    limits.observe(None, ["x-ratelimit-reset-tokens: 'soon' is not a time"])
    assert len(said) == 2 and "'many'" in said[0] and "'soon'" in said[1]
    assert set(limits.seen.problems) == {"x-ratelimit-limit-requests", "x-ratelimit-reset-tokens"}


async def test_summary_recommends_the_announced_limits() -> None:
    limits = RateLimits(learn_rpm=True, learn_tpm=True)
    limits.observe(openai_info(600.0, 500, 40_000.5, 30_000), [])
    doc = limits_summary(limits, attempts=200, rate_limited=1, user_rpm=None, user_tpm=None, learn=True)
    assert doc["recommend"] == {"rpm": 600, "tpm": 40_000}
    assert doc["rate_limited_share"] == 0.005 and doc["provider"]["lowest_requests_left"] == 500


# ---------------------------------------------------------------- through the built-in endpoint


async def run_learning(url: str, n: int, **config: object) -> tuple[list[Record], Pool]:
    records: list[Record] = []
    cfg = PoolConfig(seed=1, **config)
    async with make_session(cfg.concurrency) as session:
        pool = Pool(StreamClient(session, Endpoint(url)), records.append, cfg, t0=time.perf_counter())
        await pool.run(job(i) for i in range(n))
    return records, pool


@pytest.mark.parametrize("style", ["openai", "anthropic", "ietf"])
async def test_limits_are_learned_from_each_header_format(make_sim: MakeSim, style: str) -> None:
    sim = await make_sim(fast=True, rpm=6000, tpm=600_000, ratelimit_headers=style)
    records, pool = await run_learning(sim.base_url, 20, concurrency=4, learn_rpm=True, learn_tpm=True)
    assert all(r.status == "ok" for r in records)
    assert pool.limits is not None and pool.limits.seen.source == style
    assert pool.limits.paced == {"rpm": 6000, "tpm": 600_000}


async def test_a_run_that_starts_with_the_minute_mostly_spent_stays_under_the_limit(make_sim: MakeSim) -> None:
    sim = await make_sim(fast=True, rpm=600)  # 10/s, a full minute's 600 at the start
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1})
    async with aiohttp.ClientSession() as other:  # another process spends 595 of them

        async def spend() -> None:
            async with other.post(sim.base_url + "/chat/completions", data=body) as resp:
                await resp.read()

        await asyncio.gather(*(spend() for _ in range(595)))
    records, pool = await run_learning(sim.base_url, 40, concurrency=4, learn_rpm=True, learn_tpm=True)
    assert all(r.status == "ok" for r in records)
    assert pool.stats.rate_limited <= 1  # without learning: most of the 40 are 429s


async def test_a_server_with_an_unreadable_header_gets_one_warning_and_its_rows_succeed() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(
            request,
            OK_STREAM,
            headers={
                "x-ratelimit-limit-requests": "plenty",
                "x-ratelimit-remaining-requests": "5",
                "x-ratelimit-limit-tokens": "100000",
            },
        )

    async with raw_server(handler) as url:
        records, pool = await run_learning(url, 12, concurrency=3, learn_rpm=True, learn_tpm=True)
    assert all(r.status == "ok" for r in records)
    assert len(pool.warnings) == 1 and "x-ratelimit-limit-requests: 'plenty'" in pool.warnings[0]
    assert pool.limits is not None and pool.limits.paced == {"rpm": None, "tpm": 100_000}


class PublicOnly:
    """aiolimiter's AsyncLimiter showing its documented API and nothing else: `max_rate`,
    `time_period`, `has_capacity`, `acquire` and `async with`."""

    made = 0

    def __init__(self, max_rate: float, time_period: float = 60) -> None:
        self.__real = AsyncLimiter(max_rate, time_period)
        self.max_rate, self.time_period = max_rate, time_period
        PublicOnly.made += 1

    def has_capacity(self, amount: float = 1) -> bool:
        return self.__real.has_capacity(amount)

    async def acquire(self, amount: float = 1) -> None:
        await self.__real.acquire(amount)

    async def __aenter__(self) -> None:
        await self.__real.acquire()

    async def __aexit__(self, *exc: object) -> None:
        return None


async def test_pacing_uses_only_aiolimiters_public_api(make_sim: MakeSim, monkeypatch: pytest.MonkeyPatch) -> None:
    """aiolimiter 1.1.0 (allowed by pyproject then) had no `_wake_next`, which the pacing called:
    every --tpm refund raised AttributeError and each ok request was recorded as ClientError.
    With every limiter limited to its public API: a learned request rate (swapped in when the
    provider's `remaining` is below what is free), a changed rate, and --tpm with its refunds
    (our own bucket) all work."""
    monkeypatch.setattr(limits_module, "AsyncLimiter", PublicOnly)
    sim = await make_sim(fast=True, rpm=6000, tpm=60_000_000)
    records, pool = await run_learning(sim.base_url, 40, concurrency=4, learn_rpm=True, tpm=6_000_000)
    assert [r.status for r in records] == ["ok"] * 40  # every answer is refunded: far under 16 tokens
    assert pool.limits is not None and pool.limits.paced == {"rpm": 6000, "tpm": 6_000_000}
    pacer = RequestPacer(600)
    made = PublicOnly.made
    pacer.set_rate(1200)
    pacer.at_most(-1)
    await pacer.take()
    assert PublicOnly.made >= made + 2 and made >= 2  # the run's pacer, swapped at least once
