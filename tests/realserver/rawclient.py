"""An independent raw aiohttp client: the yardstick batchrun's wall time is compared with.

It opens a fresh connection for every request (so a server that closes connections costs it nothing
extra), sends the exact bodies batchrun saved, reads each SSE stream to its end and parses every data
line, with at most `concurrency` requests in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Sequence

import aiohttp


@dataclass(frozen=True)
class RawRun:
    wall_s: float  # first send to last stream end
    ok: int  # streams that ended with data: [DONE]
    chunks: int  # data lines parsed


async def _one(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[bool, int]:
    chunks, done = 0, False
    async with session.post(url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            json.loads(data)
            chunks += 1
    return done, chunks


async def _run(url: str, bodies: Sequence[dict[str, Any]], concurrency: int) -> RawRun:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    results: list[tuple[bool, int]] = []
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                results.append(await _one(session, url, queue.get_nowait()))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return RawRun(wall_s=wall, ok=sum(done for done, _ in results), chunks=sum(n for _, n in results))


def raw_run(
    base_url: str, bodies: Sequence[dict[str, Any]], concurrency: int, path: str = "/chat/completions"
) -> RawRun:
    """Stream every body (stream=True and usage added) against `base_url + path`; blocks until done."""
    streamed = [{**b, "stream": True, "stream_options": {"include_usage": True}} for b in bodies]
    return asyncio.run(_run(base_url + path, streamed, concurrency))
