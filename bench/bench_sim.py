"""How fast is the built-in sim, and can it hold 5,000 slow streams?

    python bench/bench_sim.py [--requests 8000] [--slow-streams 5000]

1. Throughput: the sim in --fast mode in a child process (pinned to its own core) driven by a
   minimal raw aiohttp client (pinned to the other core; concurrency 128; 64 content chunks per
   response; SSE lines parsed by hand with json.loads per chunk, as batchrun's client does).
   A "lean" pass reads the same responses without json.loads, to push the server harder.
   The same client then measures a minimal raw-asyncio SSE server (below) as the baseline.
   Server CPU comes from /proc/<pid>/stat: CPU-us per request gives the server's one-core ceiling.
2. Slow streams: N concurrent streams in fixed-latency mode (1 s TTFT, 0.5 s gaps, 8 tokens),
   all open at once; prints how many completed and the server's CPU use.
Loopback only; every server is a child process that this script stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batchrun.sim import SimConfig, SimProcess  # noqa: E402

CHUNKS = 64
CONCURRENCY = 128
SERVER_CORE, CLIENT_CORE = 1, 0

# --- the baseline: a minimal raw-asyncio SSE server. It answers every request with the very bytes
# the sim sent for the same request, precomputed, in one write: the same work for the client, and
# the least a Python server can do per request. ---

BASELINE = r"""
import asyncio, json, sys
try:
    import uvloop
except ImportError:
    uvloop = None

BODY = open(sys.argv[1], "rb").read()
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY))

class SSE(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15:].split(b"\r\n", 1)[0]) if i >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.transport.write(RESPONSE)

async def main():
    server = await asyncio.get_running_loop().create_server(SSE, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)   # until stdin closes

(uvloop.run if uvloop else asyncio.run)(main())
"""


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(pid, {core})


def request_body(tokens: int | None = CHUNKS) -> str:
    text = f"bench [[sim:tokens={tokens}]]" if tokens else "bench"
    return json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": text}]})


async def drive(
    url: str, n: int, parse: bool, concurrency: int = CONCURRENCY, tokens: int | None = CHUNKS
) -> tuple[int, int]:
    """n streamed requests at fixed concurrency; returns (requests completed, data chunks)."""
    body = request_body(tokens)
    headers = {"content-type": "application/json", "authorization": "Bearer x"}
    jobs = iter(range(n))
    done = chunks = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, chunks
        for _ in jobs:
            async with session.post(url, data=body, headers=headers) as resp:
                async for line in resp.content:
                    if line.startswith(b"data: {"):
                        chunks += 1
                        if parse:
                            json.loads(line[6:])
            done += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return done, chunks


async def measure(name: str, url: str, pid: int, n: int, parse: bool) -> dict[str, float]:
    await drive(url, min(500, n), parse)  # warm-up: connections, caches
    c0, t0 = cpu_s(pid), time.perf_counter()
    done, chunks = await drive(url, n, parse)
    wall, cpu = time.perf_counter() - t0, cpu_s(pid) - c0
    row = {
        "req_s": done / wall,
        "chunks_s": chunks / wall,
        "server_cpu": cpu / wall,
        "server_us_per_req": cpu / done * 1e6,
    }
    print(
        f"  {name:<26} {row['req_s']:7.0f} req/s  {row['chunks_s']:9.0f} chunks/s  "
        f"server CPU {row['server_cpu'] * 100:4.0f}%  {row['server_us_per_req']:5.0f} CPU-us/req "
        f"(one-core ceiling ~{1e6 / row['server_us_per_req']:,.0f} req/s)"
    )
    return row


async def fetch_body(url: str, path: Path) -> None:
    """The sim's response body (de-chunked) for the benchmark request, for the baseline to replay."""
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=request_body(), headers={"content-type": "application/json"}) as r:
            path.write_bytes(await r.read())


def start_baseline(body_path: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BASELINE, str(body_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    return proc, int(proc.stdout.readline())  # type: ignore[union-attr]


def stop_baseline(proc: subprocess.Popen[str]) -> None:
    proc.stdin.close()  # type: ignore[union-attr]
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()  # type: ignore[union-attr]


async def throughput(n: int, body_path: Path) -> None:
    print(f"throughput: {n} streamed requests, concurrency {CONCURRENCY}, {CHUNKS} content chunks each")
    async with SimProcess(SimConfig(fast=True)) as sim:
        await fetch_body(sim.base_url + "/chat/completions", body_path)
        pin(sim.pid, SERVER_CORE)  # type: ignore[arg-type]
        url = sim.base_url + "/chat/completions"
        sim_row = await measure("sim --fast, json.loads", url, sim.pid, n, parse=True)  # type: ignore[arg-type]
        lean = await measure("sim --fast, lean client", url, sim.pid, n, parse=False)  # type: ignore[arg-type]
    proc, port = start_baseline(body_path)
    try:
        pin(proc.pid, SERVER_CORE)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        base_row = await measure("baseline, json.loads", url, proc.pid, n, parse=True)
        base_lean = await measure("baseline, lean client", url, proc.pid, n, parse=False)
    finally:
        stop_baseline(proc)
    print(
        f"  sim/baseline req/s: {sim_row['req_s'] / base_row['req_s']:.2f} (json.loads client), "
        f"{lean['req_s'] / base_lean['req_s']:.2f} (lean client); server CPU-us/req sim/baseline: "
        f"{lean['server_us_per_req'] / base_lean['server_us_per_req']:.2f}"
    )


async def slow_streams(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * n + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the child inherits it
    cfg = SimConfig(fixed_ttft_s=1.0, fixed_itl_s=0.5, output_tokens=8)
    print(f"slow streams: {n} at once, fixed TTFT 1 s, 0.5 s gaps, 8 tokens (~5 s each)")
    async with SimProcess(cfg) as sim:
        pin(sim.pid, SERVER_CORE)  # type: ignore[arg-type]
        c0, t0 = cpu_s(sim.pid), time.perf_counter()  # type: ignore[arg-type]
        peak = 0
        task = asyncio.create_task(drive(sim.base_url + "/chat/completions", n, parse=True, concurrency=n, tokens=None))
        while not task.done():
            await asyncio.sleep(0.5)
            peak = max(peak, (await asyncio.to_thread(sim.stats))["open_connections"])
        done, chunks = await asyncio.wait_for(task, 120)
        wall, cpu = time.perf_counter() - t0, cpu_s(sim.pid) - c0  # type: ignore[arg-type]
        stats = sim.stats()
    print(
        f"  completed {done}/{n} ({stats['completed']} by the server's count), peak open connections "
        f"{peak}, {chunks} chunks in {wall:.1f} s; server CPU {cpu:.2f} s = {cpu / wall * 100:.0f}% of a core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--slow-streams", type=int, default=5000)
    args = parser.parse_args()
    pin(0, CLIENT_CORE)
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    with tempfile.TemporaryDirectory() as tmp:
        run(throughput(args.requests, Path(tmp) / "body.sse"))
    if args.slow_streams:
        run(slow_streams(args.slow_streams))


if __name__ == "__main__":
    main()
