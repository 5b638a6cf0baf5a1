"""Retry waits over a real socket: every provider's hint is honoured, a 429 without one outlasts a
one-minute window, and --max-retry-wait caps it. The pool's sleep is a fake that advances a
scripted clock, so nothing here waits for real."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from aiohttp import web
from faultserver import ok_pieces, row_of
from rawserver import raw_server, sse

from batchrun.endpoint.requests import Job
from batchrun.endpoint.transport import Endpoint, StreamClient, make_session
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.inputs.prompt import Prompt
from batchrun.store.records import Record


class ScriptedTime:
    """A clock that only moves when the pool sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def job(i: int) -> Job:
    messages = [{"role": "user", "content": f"question {i}"}]
    body = {"model": "m", "messages": messages, "stream": True}
    return Job(
        prompt=Prompt(id=f"q{i}", row=i, line=i + 2, messages=messages),
        body=json.dumps(body).encode(),
        estimated_tokens=10,
        prompt_tokens_estimate=2,
    )


async def run(url: str, n: int, scripted: ScriptedTime, **config) -> list[Record]:
    out: list[Record] = []
    async with make_session(4) as session:
        client = StreamClient(session, Endpoint(url), wall_clock=lambda: NOW)
        pool = Pool(client, out.append, PoolConfig(seed=3, **config), t0=time.perf_counter(), sleep=scripted.sleep)
        await pool.run(job(i) for i in range(n))
    return sorted(out, key=lambda r: r.row)


NOW = 1_700_000_000.0
IN_20_S = format_datetime(datetime.fromtimestamp(NOW + 20, timezone.utc), usegmt=True)


@pytest.mark.parametrize(
    "headers, hint, wait",
    [
        ({"retry-after": "3"}, 3.0, 3.0),
        ({"retry-after": IN_20_S}, 20.0, 20.0),
        ({"retry-after-ms": "1500"}, 1.5, 1.5),
        ({"llm_provider-retry-after": "7"}, 7.0, 7.0),
        ({"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "20ms"}, 360.0, 60.0),  # --max-retry-wait
    ],
    ids=["seconds", "http-date", "ms", "litellm", "openai-reset"],
)
async def test_every_retry_hint_is_the_wait_taken(headers: dict[str, str], hint: float, wait: float) -> None:
    asked: dict[int, int] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        i = row_of(await request.read())
        asked[i] = asked.get(i, 0) + 1
        if asked[i] == 1:
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers=headers)
        return await sse(request, ok_pieces(i))

    scripted = ScriptedTime()
    async with raw_server(handler) as url:
        records = await run(url, 1, scripted)
    first = records[0].attempt_log[0]
    assert records[0].status == "ok" and records[0].attempts == 2
    assert first.retry_after_s == pytest.approx(hint)  # what the server asked for
    assert wait <= first.backoff_s <= wait * 1.1 and scripted.waits == [first.backoff_s]  # what was waited


async def test_max_retry_wait_caps_a_long_hint() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response(
            {"error": {"message": "come back in an hour"}}, status=429, headers={"retry-after": "3600"}
        )

    scripted = ScriptedTime()
    async with raw_server(handler) as url:
        records = await run(url, 1, scripted, retries=2, max_retry_wait_s=5.0)
    assert scripted.waits == [5.0, 5.0]
    assert [a.backoff_s for a in records[0].attempt_log] == [5.0, 5.0, None]


async def test_a_429_without_a_hint_outlasts_a_one_minute_window_with_the_default_retries() -> None:
    """LiteLLM's proxy limits per minute and sends no retry header: today's short backoff gave up
    after ~9 s. Every row must get through once the window has reset."""
    scripted = ScriptedTime()

    async def handler(request: web.Request) -> web.StreamResponse:
        i = row_of(await request.read())
        if scripted.now < 60.0:
            return web.json_response({"error": {"message": "LiteLLM Rate Limit Handler: crossed TPM/RPM"}}, status=429)
        return await sse(request, ok_pieces(i))

    async with raw_server(handler) as url:
        records = await run(url, 8, scripted)  # PoolConfig defaults: 3 retries
    assert all(r.status == "ok" for r in records), [r.error for r in records]
    for r in records:  # 5 s, 15 s, 45 s (+ up to 10%): 65 s in all
        waits = [a.backoff_s for a in r.attempt_log if a.backoff_s is not None]
        assert all(5.0 * 3**k <= w <= 5.5 * 3**k for k, w in enumerate(waits)), waits
