"""Latency-model properties seen from a client; bounds are generous so a busy machine passes."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import aiohttp

from batchrun.sim import SimServer
from batchrun.twin.model import GRID, Level, Output, TwinModel

if TYPE_CHECKING:
    from conftest import MakeSim


async def timed_stream(
    session: aiohttp.ClientSession, sim: SimServer, text: str, **body: object
) -> tuple[float, list[float], float]:
    """(TTFT, arrival time of every content chunk, total), in seconds from sending."""
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": text}], **body}
    start = time.perf_counter()
    arrivals: list[float] = []
    async with session.post(sim.base_url + "/chat/completions", json=payload) as resp:
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                arrivals.append(time.perf_counter() - start)
    return arrivals[0], arrivals, time.perf_counter() - start


async def test_fixed_mode_gives_the_set_ttft_and_gaps(make_sim: MakeSim) -> None:
    server = await make_sim(fixed_ttft_s=0.05, fixed_itl_s=0.005, output_tokens=32)
    async with aiohttp.ClientSession() as session:
        ttft, arrivals, total = await timed_stream(session, server, "hi")
    assert len(arrivals) == 32
    assert 0.045 <= ttft < 0.5
    # 31 gaps of 5 ms to the last token, one more before the finish chunk
    assert arrivals[-1] - arrivals[0] >= 31 * 0.005 - 0.01
    assert 0.05 + 32 * 0.005 - 0.01 <= total < 2.0


async def test_ttft_directive_overrides_the_model(make_sim: MakeSim) -> None:
    server = await make_sim(ttft_s=5.0, itl_s=0.001, jitter=0)
    async with aiohttp.ClientSession() as session:
        ttft, arrivals, _ = await timed_stream(session, server, "[[sim:ttft=0.1,tokens=3]]")
    assert 0.09 <= ttft < 2.0 and len(arrivals) == 3


async def test_ttft_rises_with_queue_depth_beyond_capacity(make_sim: MakeSim) -> None:
    # capacity 2, each answer holds its slot 0.4 + 5 x 0.02 s = 0.5 s: requests 3-4 wait one
    # round, 5-6 two. Each request is sent only once the server holds the previous one (decoding
    # or queued), so the FIFO order is the sending order however busy the machine (it was a race
    # of six connections). Request k + 2 takes the slot request k frees, so its first token comes
    # one hold time after request k's, measured on one clock: how long the sending took cancels.
    hold = 0.4 + 5 * 0.02
    server = await make_sim(
        max_concurrency=2, ttft_s=0.4, prefill_s_per_token=0, itl_s=0.02, itl_load_factor=0, jitter=0, output_tokens=5
    )

    def held() -> int:
        s = server.stats()
        return s["decoding"] + s["queued"] + s["completed"]

    async def first_token_at(session: aiohttp.ClientSession, i: int) -> tuple[float, float]:
        sent = time.perf_counter()
        ttft, _, _ = await timed_stream(session, server, f"p{i}")
        return ttft, sent + ttft

    async with aiohttp.ClientSession() as session:
        tasks = []
        for i in range(6):
            tasks.append(asyncio.create_task(first_token_at(session, i)))
            for _ in range(5000):  # polls until held, not a timed guess
                if held() > i:
                    break
                await asyncio.sleep(0.001)
            assert held() == i + 1, f"request {i} never reached the server"
        assert server.stats()["completed"] == 0 and server.stats()["queued"] == 4  # all in the queue in time
        ttfts, firsts = zip(*await asyncio.gather(*tasks))
    assert max(ttfts[:2]) < 0.4 + 0.5  # no wait (generous upper bound)
    for k in range(4):  # 3-4 waited one round, 5-6 two
        assert firsts[k + 2] - firsts[k] > 0.8 * hold, (k, firsts)
    assert min(ttfts[4:]) > max(ttfts[2:4]) > max(ttfts[:2])
    assert server.stats()["completed"] == 6 and server.stats()["decoding"] == 0


async def test_fast_mode_has_no_delay_and_no_queue(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True, max_concurrency=1, output_tokens=64)
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        results = await asyncio.gather(*(timed_stream(session, server, f"p{i}") for i in range(20)))
        took = time.perf_counter() - start
    assert all(len(arrivals) == 64 for _, arrivals, _ in results)
    assert took < 3.0


async def test_many_slow_streams_are_held_at_once(make_sim: MakeSim) -> None:
    # A TTFT far longer than 300 connects take: every stream is open before any can finish,
    # however busy the machine (polling, not a fixed sleep, decides when to look).
    server = await make_sim(fixed_ttft_s=3.0, fixed_itl_s=0.1, output_tokens=2)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(timed_stream(session, server, f"s{i}")) for i in range(300)]
        open_now = 0
        for _ in range(250):
            open_now = server.stats()["open_connections"]
            if open_now == 300 or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*tasks)
    assert open_now == 300
    assert all(len(arrivals) == 2 for _, arrivals, _ in results)
    assert server.stats()["completed"] == 300


async def test_client_leaving_a_queue_frees_its_place(make_sim: MakeSim) -> None:
    server = await make_sim(max_concurrency=1, ttft_s=0.2, jitter=0, output_tokens=2, itl_s=0.01)
    async with aiohttp.ClientSession() as session:
        first = asyncio.create_task(timed_stream(session, server, "a"))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(timed_stream(session, server, "b"))
        await asyncio.sleep(0.05)
        assert server.stats()["queued"] == 1
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        await asyncio.sleep(0.05)
        assert server.stats()["queued"] == 0
        await first
    stats = server.stats()
    assert stats["disconnects"] == 1 and stats["completed"] == 1 and stats["decoding"] == 0


async def test_ttft_directive_also_delays_a_fast_sim(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as session:
        ttft, arrivals, _ = await timed_stream(session, sim, "[[sim:ttft=0.15,tokens=4]]")
    assert 0.14 <= ttft < 2.0 and len(arrivals) == 4


async def test_a_twin_draws_ttft_at_the_requests_it_is_answering(make_sim: MakeSim) -> None:
    """Alone, a request gets the 1-in-flight level's TTFT (50 ms); the fourth of four held open
    gets the 4-in-flight level's (1 s), the two between them an interpolation. Each answer is 3
    tokens 0.5 s apart, so the first is still open when the fourth arrives."""

    def flat(v: float) -> tuple[float, ...]:
        return (v,) * len(GRID)

    levels = tuple(Level(x, 30, flat(ttft), 30, flat(0.5), 60, flat(1.0)) for x, ttft in ((1.0, 0.05), (4.0, 1.0)))
    twin = TwinModel(levels=levels, output=Output(n=30, stop_n=30, stop_tokens=flat(3.0)))
    server = await make_sim(twin=twin)
    async with aiohttp.ClientSession() as session:
        tasks = []
        for i in range(4):
            tasks.append(asyncio.create_task(timed_stream(session, server, f"p{i}")))
            for _ in range(5000):  # polls until the server holds it
                if server.stats()["answering"] > i:
                    break
                await asyncio.sleep(0.001)
            assert server.stats()["answering"] == i + 1
        results = await asyncio.gather(*tasks)
    ttfts = [ttft for ttft, _, _ in results]
    assert ttfts[0] < 0.5 and ttfts[3] >= 1.0 - 0.01  # a timer never fires early
    assert all(len(arrivals) == 3 for _, arrivals, _ in results)
    assert server.stats()["answering"] == 0
