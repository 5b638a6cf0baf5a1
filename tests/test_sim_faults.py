"""Injected faults over real sockets: what the client sees matches what the counters say."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import aiohttp
import openai
import pytest

from batchrun.sim import SimServer

if TYPE_CHECKING:
    from conftest import MakeSim


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def read_stream(
    session: aiohttp.ClientSession, sim: SimServer, text: str, read_timeout: float | None = None
) -> tuple[list[str], str | None]:
    """(data payloads received, name of the exception that ended the stream or None)."""
    body = {"model": "m", "stream": True, "messages": ask(text)}
    events: list[str] = []
    timeout = aiohttp.ClientTimeout(sock_read=read_timeout)
    try:
        async with session.post(sim.base_url + "/chat/completions", json=body, timeout=timeout) as resp:
            async for line in resp.content:
                if line.startswith(b"data: "):
                    events.append(line[6:].decode().strip())
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return events, type(exc).__name__
    return events, None


def content_count(events: list[str]) -> int:
    return sum(1 for e in events if '"content":"' in e and '"content":""' not in e)


async def test_cut_closes_the_stream_after_n_chunks_without_done(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as session:
        events, error = await read_stream(session, sim, "story [[sim:cut=5]]")
    assert error == "ClientPayloadError"
    assert content_count(events) == 5 and "[DONE]" not in events
    assert sim.stats()["faults"]["cut"] == 1 and sim.stats()["completed"] == 0


async def test_sdk_reports_a_cut_stream_as_a_connection_error(sim: SimServer) -> None:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0) as client:
        stream = await client.chat.completions.create(model="m", messages=ask("[[sim:cut=3]]"), stream=True)
        with pytest.raises(openai.APIConnectionError):
            async for _ in stream:
                pass
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model="m", messages=ask("[[sim:cut=1]]"))
    assert sim.stats()["faults"]["cut"] == 2


async def test_malformed_sends_one_line_that_is_not_json(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as session:
        events, error = await read_stream(session, sim, "[[sim:malformed=2]]")
    bad = []
    for e in events[:-1]:
        try:
            json.loads(e)
        except ValueError:
            bad.append(e)
    assert error is None and events[-1] == "[DONE]" and len(bad) == 1
    assert events.index(bad[0]) == 2 + 1  # the role chunk, then 2 content chunks, then the bad line
    assert sim.stats()["faults"]["malformed"] == 1


async def test_sdk_fails_to_decode_a_malformed_chunk_or_body(sim: SimServer) -> None:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0) as client:
        stream = await client.chat.completions.create(model="m", messages=ask("[[sim:malformed]]"), stream=True)
        with pytest.raises(ValueError):
            async for _ in stream:
                pass
        with pytest.raises(ValueError):
            await client.chat.completions.create(model="m", messages=ask("[[sim:malformed]]"))


async def test_stall_goes_silent_after_n_chunks(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as session:
        events, error = await read_stream(session, sim, "[[sim:stall=3]]", read_timeout=0.3)
    assert error in ("ServerTimeoutError", "SocketTimeoutError", "TimeoutError")
    assert content_count(events) == 3
    stats = sim.stats()
    assert stats["faults"]["stall"] == 1 and stats["decoding"] == 0


async def test_short_stall_resumes_and_finishes(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True, stall_s=0.2)
    async with aiohttp.ClientSession() as session:
        start = asyncio.get_running_loop().time()
        events, error = await read_stream(session, server, "[[sim:stall=2,tokens=4]]")
        took = asyncio.get_running_loop().time() - start
    assert error is None and content_count(events) == 4 and events[-1] == "[DONE]"
    assert 0.19 < took < 5


async def test_server_stops_cleanly_while_a_stall_holds_a_connection(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True)
    async with aiohttp.ClientSession() as session:
        reader = asyncio.create_task(read_stream(session, server, "[[sim:stall=1]]"))
        while server.stats()["faults"]["stall"] == 0:
            await asyncio.sleep(0.01)
        await server.stop()
        events, error = await asyncio.wait_for(reader, 5)
    assert error == "ClientPayloadError" and content_count(events) == 1
    assert server.stats()["open_connections"] == 0


async def test_directive_limited_to_two_attempts_then_succeeds(make_sim: MakeSim) -> None:
    server = await make_sim(fast=True, retry_after_s=0.01)  # the SDK honours retry-after-ms: fast retries
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=2) as client:
        done = await client.chat.completions.create(model="m", messages=ask("hello [[sim:error=503x2]]"))
        with pytest.raises(openai.InternalServerError):
            await client.with_options(max_retries=0).chat.completions.create(
                model="m", messages=ask("other [[sim:error=500x1]]")
            )
    assert done.choices[0].finish_reason == "stop"
    stats = server.stats()
    assert stats["responses"] == {"200": 1, "500": 1, "503": 2}
    assert stats["faults"]["error_503"] == 2 and stats["faults"]["error_500"] == 1


async def test_seeded_fault_rates_match_what_the_client_saw(make_sim: MakeSim) -> None:
    server = await make_sim(
        fast=True, seed=11, error_500_rate=0.15, error_502_rate=0.1, cut_rate=0.15, malformed_rate=0.1
    )
    seen = {"500": 0, "502": 0, "cut": 0, "malformed": 0, "ok": 0}
    async with aiohttp.ClientSession() as session:
        for i in range(120):
            body = {"model": "m", "stream": True, "messages": ask(f"prompt number {i}")}
            async with session.post(server.base_url + "/chat/completions", json=body) as resp:
                if resp.status != 200:
                    seen[str(resp.status)] += 1
                    continue
                try:
                    payload = (await resp.read()).decode()
                except aiohttp.ClientPayloadError:
                    seen["cut"] += 1
                    continue
            bad = [e for e in payload.split("\n") if e.startswith("data: {") and not _is_json(e[6:])]
            seen["malformed" if bad else "ok"] += 1
    faults = server.stats()["faults"]
    assert (faults["error_500"], faults["error_502"], faults["cut"], faults["malformed"]) == (
        seen["500"],
        seen["502"],
        seen["cut"],
        seen["malformed"],
    )
    assert all(seen[k] > 0 for k in seen)  # the seed gives every kind at least once
    assert server.stats()["completed"] == seen["ok"] + seen["malformed"]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


async def test_same_seed_injects_the_same_faults(make_sim: MakeSim) -> None:
    async def statuses(server: SimServer) -> list[int]:
        async with aiohttp.ClientSession() as session:
            out = []
            for i in range(40):
                body = {"model": "m", "messages": ask(f"p{i}")}
                async with session.post(server.base_url + "/chat/completions", json=body) as resp:
                    out.append(resp.status)
            return out

    a = await statuses(await make_sim(fast=True, seed=4, error_500_rate=0.3))
    b = await statuses(await make_sim(fast=True, seed=4, error_500_rate=0.3))
    assert a == b and 500 in a and 200 in a
