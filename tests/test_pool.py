"""pool.py: concurrency bound, retries, error isolation, error budget, cancellation."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web
from rawserver import DONE, chunk, cut, raw_server, sse, usage_chunk

from batchrun.endpoint.requests import Job
from batchrun.endpoint.transport import Endpoint, StreamClient, make_session
from batchrun.engine.limits import RateLimits
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.engine.retry import retry_delay_s
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.store.records import Record


def job(i: int, text: str = "hello", max_tokens: int = 16) -> Job:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
    }
    return Job(
        prompt=Prompt(id=f"r{i}", row=i, line=i + 2, messages=body["messages"]),
        body=json.dumps(body).encode(),
        estimated_tokens=2 + max_tokens,
        prompt_tokens_estimate=2,
    )


def prompt_of(request_body: bytes) -> str:
    return json.loads(request_body)["messages"][-1]["content"]


async def run_pool(url: str, items, **config) -> tuple[list[Record], Pool]:
    records: list[Record] = []
    client_kw = {k: config.pop(k) for k in ("timeout_s", "ttft_timeout_s") if k in config}
    cfg = PoolConfig(seed=1, **config)
    async with make_session(cfg.concurrency) as session:
        client = StreamClient(session, Endpoint(url), **client_kw)
        pool = Pool(client, records.append, cfg, t0=time.perf_counter())
        await pool.run(items)
    return records, pool


OK_STREAM = [chunk("", role="assistant"), chunk("fine"), chunk(finish="stop"), usage_chunk(2, 1), DONE]


async def test_concurrency_never_exceeds_n_and_every_row_has_a_record() -> None:
    live = {"now": 0, "peak": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        try:
            return await sse(request, [0.01, *OK_STREAM])
        finally:
            live["now"] -= 1

    async with raw_server(handler) as url:
        records, pool = await run_pool(url, (job(i) for i in range(60)), concurrency=5)
    assert live["peak"] == 5 and pool.stats.peak_in_flight == 5
    assert sorted(r.row for r in records) == list(range(60))
    assert all(r.status == "ok" and r.text == "fine" and r.attempts == 1 for r in records)


async def test_429_is_retried_after_retry_after_and_400_is_not() -> None:
    seen: dict[str, int] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        text = prompt_of(await request.read())
        seen[text] = seen.get(text, 0) + 1
        if text == "limited" and seen[text] <= 2:
            return web.json_response(
                {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
                status=429,
                headers={"retry-after-ms": "50"},
            )
        if text == "invalid":
            return web.json_response({"error": {"message": "bad body"}}, status=400)
        return await sse(request, OK_STREAM)

    async with raw_server(handler) as url:
        records, _ = await run_pool(url, [job(0, "limited"), job(1, "invalid")], concurrency=2, retries=3)
    by_id = {r.id: r for r in records}
    limited, invalid = by_id["r0"], by_id["r1"]
    assert limited.status == "ok" and limited.attempts == 3
    assert [a.http_status for a in limited.attempt_log] == [429, 429, 200]
    assert all(a.retry_after_s == 0.05 and 0.05 <= a.backoff_s <= 0.055 for a in limited.attempt_log[:2])
    assert invalid.status == "error" and invalid.attempts == 1 and invalid.error_type == "BadRequestError"


async def test_retries_are_bounded() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "down"}}, status=503)

    async with raw_server(handler) as url:
        records, pool = await run_pool(url, [job(0)], retries=2, backoff_base_s=0.01)
    assert records[0].attempts == 3 and records[0].status == "error"
    assert records[0].error_type == "InternalServerError" and pool.stats.failed == 1


async def test_one_cut_stream_does_not_disturb_the_others() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if prompt_of(await request.read()) == "cut":
            return await cut(request, [chunk("par")])
        return await sse(request, OK_STREAM)

    items = [job(i, "cut" if i == 3 else "ok") for i in range(20)]
    async with raw_server(handler) as url:
        records, _ = await run_pool(url, items, concurrency=4, retries=0)
    bad = [r for r in records if r.status != "ok"]
    assert len(records) == 20 and [r.id for r in bad] == ["r3"]
    assert bad[0].error_type == "IncompleteStream"


async def test_timeout_is_its_own_status_and_retried() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, [10.0, *OK_STREAM])

    async with raw_server(handler) as url:
        records, _ = await run_pool(url, [job(0)], retries=1, backoff_base_s=0.01, timeout_s=0.2)
    assert records[0].status == "timeout" and records[0].attempts == 2
    assert records[0].error_type == "APITimeoutError"


async def test_bad_rows_are_recorded_as_skipped() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, OK_STREAM)

    items = [job(0), BadRow(id="1", row=1, line=3, reason="prompts.csv line 3: empty prompt"), job(2)]
    async with raw_server(handler) as url:
        records, pool = await run_pool(url, items)
    skipped = [r for r in records if r.status == "skipped"]
    assert len(records) == 3 and skipped[0].error == "prompts.csv line 3: empty prompt"
    assert pool.stats.skipped == 1


async def test_max_errors_stops_the_run() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "nope"}}, status=500)

    async with raw_server(handler) as url:
        records, pool = await run_pool(url, (job(i) for i in range(500)), concurrency=4, max_errors=10, retries=0)
    assert pool.abort_reason and "--max-errors 10" in pool.abort_reason
    assert "InternalServerError: HTTP 500: nope" in pool.abort_reason  # names the commonest error
    assert 10 <= len(records) < 500  # stopped long before the end


async def test_stop_records_in_flight_as_cancelled() -> None:
    sent_a = 0
    three_sent = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal sent_a
        resp = await sse(request, [chunk("a")], end=False)
        sent_a += 1
        if sent_a == 3:
            three_sent.set()
        await asyncio.sleep(30.0)
        return resp

    records: list[Record] = []
    async with raw_server(handler) as url, make_session(3) as session:
        pool = Pool(
            StreamClient(session, Endpoint(url)), records.append, PoolConfig(concurrency=3), t0=time.perf_counter()
        )
        task = asyncio.create_task(pool.run(job(i) for i in range(10)))
        # Stop only once every stream's first chunk is on the wire (being in flight is not enough:
        # a request counts as in flight before it is even sent), then give loopback time to deliver it.
        await asyncio.wait_for(three_sent.wait(), 30)
        await asyncio.sleep(0.3)
        pool.stop()
        await task
    assert len(records) == 3 and all(r.status == "cancelled" for r in records)
    for r in records:  # the attempt cut short is kept, with its send time and duration
        assert r.attempts == 1 and r.attempt_log[0].status == "cancelled"
        assert r.sent_s is not None and r.end_s is not None and r.end_s > r.sent_s
        assert r.text == "a" and r.ttft_s is not None  # what arrived before the stop is kept


async def test_rate_limit_paces_requests() -> None:
    """60 requests at 1,200 RPM (20/s, a bucket of 20): at least 2 s on any machine."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse(request, OK_STREAM)

    async with raw_server(handler) as url:
        start = time.perf_counter()
        records, _ = await run_pool(url, (job(i) for i in range(60)), concurrency=16, rpm=1200)
        elapsed = time.perf_counter() - start
    assert len(records) == 60 and elapsed >= 1.9


async def test_tpm_refund_lets_the_next_request_through() -> None:
    limits = RateLimits(tpm=6000)  # a bucket of 100 tokens
    await limits.acquire(100)  # the bucket is now full
    limits.correct(charged_tokens=100, actual_tokens=10)  # 90 refunded
    await asyncio.wait_for(limits.acquire(80), timeout=0.5)  # fits at once after the refund
    await limits.aclose()


async def test_a_large_request_is_not_starved_by_smaller_ones() -> None:
    """A TPM bucket of 20,000 tokens (1.2M/min) kept busy by 8 workers taking 4,000 at a time:
    a 30,000-token request (larger than the bucket) still gets its turn (first come, first served)."""
    limits = RateLimits(tpm=1_200_000)
    stop = asyncio.Event()

    async def small() -> None:
        while not stop.is_set():
            await limits.acquire(4_000)

    crowd = [asyncio.create_task(small()) for _ in range(8)]
    await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(limits.acquire(30_000), timeout=10)  # ~1.5 s of budget at the fair share
    finally:
        stop.set()
        for task in crowd:
            task.cancel()
        await asyncio.gather(*crowd, return_exceptions=True)
        await limits.aclose()


def test_backoff_rule() -> None:
    import random

    rng = random.Random(0)
    waits = [retry_delay_s(a, 500, None, base_s=1.0, max_s=8.0, rng=rng) for a in range(6)]
    assert [0.5 <= waits[0] <= 1, 1 <= waits[1] <= 2, 2 <= waits[2] <= 4] == [True] * 3
    assert all(4 <= w <= 8 for w in waits[3:])  # capped at max_s
    assert 2.0 <= retry_delay_s(0, 429, 2.0, base_s=1, max_s=8, rng=rng) <= 2.2  # retry-after wins
    # A 429 without a hint outlasts a one-minute window within the default 3 retries ...
    assert sum(retry_delay_s(a, 429, None, rng=rng) for a in range(3)) >= 60
    # ... and --max-retry-wait caps every wait, hinted or not.
    assert retry_delay_s(2, 429, None, max_wait_s=7.0, rng=rng) == 7.0
    assert retry_delay_s(0, 429, 3600.0, max_wait_s=60.0, rng=rng) == 60.0
