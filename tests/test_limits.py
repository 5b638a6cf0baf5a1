"""engine/limits.py: the token bucket on literal clocks, refunds, learned limits, and that
pacing needs nothing of aiolimiter (whose private API broke --tpm on aiolimiter 1.1.0)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from batchrun.endpoint.transport import Endpoint, StreamClient, make_session
from batchrun.endpoint.ratelimits import IETF, OPENAI, Quota, RateLimitInfo
from batchrun.engine.limits import RateLimits, TokenBucket, limits_summary
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.store.records import Record
from aiohttp import web

from conftest import MakeSim
from rawserver import raw_server, sse
from test_pool import OK_STREAM, job

# ---------------------------------------------------------------- the bucket, pure


def test_bucket_holds_one_second_and_refills_at_the_rate() -> None:
    bucket = TokenBucket(600, now=0.0)                 # 10 per second, a bucket of 10
    assert bucket.capacity == 10 and bucket.wait_s(10, 0.0) == 0
    bucket.take(10, 0.0)
    assert bucket.wait_s(1, 0.0) == pytest.approx(0.1)
    assert bucket.wait_s(5, 0.2) == pytest.approx(0.3)   # 2 refilled by 0.2 s, 3 more at 10/s
    bucket.refill(100.0)
    assert bucket.level == 10                          # never more than the capacity


def test_under_sixty_per_minute_one_unit_at_a_time() -> None:
    bucket = TokenBucket(30, now=0.0)                  # one every 2 s
    bucket.take(1, 0.0)
    assert bucket.capacity == 1 and bucket.wait_s(1, 0.0) == pytest.approx(2.0)


def test_refund_and_new_rate() -> None:
    bucket = TokenBucket(6000, now=0.0)                # 100 tokens per second
    bucket.take(100, 0.0)
    bucket.give_back(90, 0.0)
    assert bucket.level == 90
    bucket.give_back(500, 0.0)
    assert bucket.level == 100                         # a refund never overfills
    bucket.set_rate(600, 0.0)                          # the limit drops to 10/s
    assert bucket.capacity == 10 and bucket.level == 10
    bucket.take(10, 0.0)
    bucket.set_rate(1200, 0.5)                         # 5 refilled at the old rate, then 20/s
    assert bucket.level == pytest.approx(5) and bucket.wait_s(20, 0.5) == pytest.approx(0.75)


def test_provider_remaining_caps_what_is_free_and_may_hold() -> None:
    bucket = TokenBucket(600, now=0.0)
    bucket.at_most(3, 0.0)
    assert bucket.level == 3
    bucket.at_most(50, 0.0)
    assert bucket.level == 3                           # only ever lowers
    bucket.at_most(-20, 0.0)                           # hold: 2 s of refill before anything is free
    assert bucket.wait_s(1, 0.0) == pytest.approx(2.1)


# ---------------------------------------------------------------- async waiting


async def test_refund_wakes_a_waiter_at_once() -> None:
    limits = RateLimits(tpm=60)                        # 1 token per second
    await limits.acquire(1)
    waiter = asyncio.create_task(limits.acquire(1))
    await asyncio.sleep(0)
    assert not waiter.done()
    limits.correct(charged_tokens=1, actual_tokens=0)
    await asyncio.wait_for(waiter, timeout=0.5)       # not the 1 s refill
    await limits.aclose()


async def test_waiters_are_served_in_arrival_order() -> None:
    """A large request first, then small ones: the small ones that would fit sooner still wait."""
    limits = RateLimits(rpm=60_000)                    # 1000/s, a bucket of 1000
    bucket = limits._rpm                               # noqa: SLF001
    assert bucket is not None
    await bucket.take(1000)                            # empty
    order: list[str] = []

    async def one(name: str, amount: int) -> None:
        await bucket.take(amount)
        order.append(name)

    await asyncio.gather(one("large", 400), one("small-1", 50), one("small-2", 50))
    assert order == ["large", "small-1", "small-2"]


# ---------------------------------------------------------------- learned limits


def openai_info(rpm: float, left_r: float, tpm: float, left_t: float) -> RateLimitInfo:
    return RateLimitInfo(OPENAI, Quota(rpm, left_r, 0.1), Quota(tpm, left_t, 0.1))


async def test_learned_limits_pace_where_the_user_gave_none() -> None:
    limits = RateLimits(rpm=100, learn_rpm=True, learn_tpm=True)
    assert limits.paced == {"rpm": 100, "tpm": None}
    limits.observe(openai_info(600, 599, 40_000, 39_000), [])
    assert limits.paced == {"rpm": 100, "tpm": 40_000}      # the user's --rpm wins
    limits.observe(openai_info(600, 599, 80_000, 79_000), [])
    assert limits.paced["tpm"] == 80_000                    # the rate follows the announced limit
    assert limits.seen.requests_per_min == 600 and limits.seen.source == OPENAI


async def test_without_learning_headers_are_only_remembered() -> None:
    limits = RateLimits()
    limits.observe(openai_info(600, 1, 40_000, 10), [])
    assert limits.paced == {"rpm": None, "tpm": None} and limits.seen.lowest_tokens_left == 10


async def test_budget_spent_elsewhere_is_not_counted_on() -> None:
    limits = RateLimits(learn_rpm=True)
    limits.observe(RateLimitInfo(OPENAI, Quota(600, 0, 60.0)), [])   # another process used it all
    assert limits._rpm is not None and limits._rpm.core.level <= 0   # noqa: SLF001


async def test_an_ietf_window_must_last_until_its_reset() -> None:
    limits = RateLimits(learn_rpm=True)
    limits.observe(RateLimitInfo(IETF, Quota(60, 5, 30.0, 60.0)), [])  # 1/s; 5 left for 30 s
    core = limits._rpm.core                                            # noqa: SLF001
    assert core.level == pytest.approx(5 - 30)         # the refill before the reset is not counted on


async def test_learned_tokens_are_not_refunded() -> None:
    limits = RateLimits(learn_tpm=True)
    limits.observe(RateLimitInfo(OPENAI, tokens=Quota(6000, 6000, 0.0)), [])
    await limits.acquire(100)
    limits.correct(charged_tokens=100, actual_tokens=10)   # the provider still counts its 100
    assert limits._tpm.core.level == pytest.approx(0, abs=1)   # noqa: SLF001


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
    sim = await make_sim(fast=True, rpm=600)             # 10/s, a full minute's 600 at the start
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1})
    async with aiohttp.ClientSession() as other:         # another process spends 595 of them
        async def spend() -> None:
            async with other.post(sim.base_url + "/chat/completions", data=body) as resp:
                await resp.read()
        await asyncio.gather(*(spend() for _ in range(595)))
    records, pool = await run_learning(sim.base_url, 40, concurrency=4, learn_rpm=True, learn_tpm=True)
    assert all(r.status == "ok" for r in records)
    assert pool.stats.rate_limited <= 1                  # without learning: most of the 40 are 429s


async def test_a_server_with_an_unreadable_header_gets_one_warning_and_its_rows_succeed() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, OK_STREAM, headers={"x-ratelimit-limit-requests": "plenty",
                                                      "x-ratelimit-remaining-requests": "5",
                                                      "x-ratelimit-limit-tokens": "100000"})

    async with raw_server(handler) as url:
        records, pool = await run_learning(url, 12, concurrency=3, learn_rpm=True, learn_tpm=True)
    assert all(r.status == "ok" for r in records)
    assert len(pool.warnings) == 1 and "x-ratelimit-limit-requests: 'plenty'" in pool.warnings[0]
    assert pool.limits is not None and pool.limits.paced == {"rpm": None, "tpm": 100_000}


_WITHOUT_AIOLIMITER = """
import asyncio, json, sys, time
sys.modules["aiolimiter"] = None                     # any import of it now fails
from batchrun.endpoint.transport import Endpoint, StreamClient, make_session
from batchrun.endpoint.requests import Job
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.inputs.prompt import Prompt
from batchrun.sim import SimConfig, serve_sim

async def main():
    records = []
    async with serve_sim(SimConfig(fast=True)) as sim, make_session(4) as session:
        pool = Pool(StreamClient(session, Endpoint(sim.base_url)), records.append,
                    PoolConfig(concurrency=4, tpm=6_000_000), t0=time.perf_counter())
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                "stream_options": {"include_usage": True}, "max_tokens": 2000}
        jobs = [Job(Prompt(id=str(i), row=i, line=i + 1, messages=body["messages"]), json.dumps(body).encode(),
                    estimated_tokens=2002, prompt_tokens_estimate=2) for i in range(8)]
        await pool.run(iter(jobs))       # every answer is far under 2000 tokens: each one is refunded
    print(json.dumps([[r.status, r.error] for r in records]))

asyncio.run(main())
"""


def test_tpm_pacing_needs_nothing_of_aiolimiter(tmp_path: Path) -> None:
    """aiolimiter 1.1.0 (allowed by pyproject) has no `_wake_next`, so every --tpm refund raised
    AttributeError and each ok request was recorded as ClientError. With aiolimiter made
    unimportable, --tpm pacing and its refunds must still work: they depend on none of it."""
    done = subprocess.run([sys.executable, "-c", _WITHOUT_AIOLIMITER], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = json.loads(done.stdout)
    assert outcomes == [["ok", None]] * 8
