"""batchrun against a minimal raw aiohttp client on the new endpoints, measured in the same run.

    python bench/bench_endpoints.py            # about a minute
    python bench/bench_endpoints.py --quick

The built-in endpoint runs in --fast mode (zero delays) in a child process. Per endpoint:
- /v1/completions, streamed, 64 tokens per answer, concurrency 128: the raw client splits SSE
  lines by hand and json.loads each chunk; batchrun is `batchrun run --endpoint completions` as a
  whole process (startup, input, records, results and reports included).
- /v1/embeddings, 32 inputs per request, base64 vectors of 256 floats, concurrency 32: the raw
  client posts the batch and decodes the vectors with numpy; batchrun is `batchrun run
  --endpoint embeddings --batch-size 32` (vectors to Parquet, records, reports included).
Printed: requests (or inputs) per second of each, and the ratio. Target: batchrun >= 0.8x raw.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.sim import SimConfig, SimProcess  # noqa: E402


async def raw_completions(base_url: str, n: int, concurrency: int) -> float:
    body = json.dumps(
        {
            "model": "batchrun-sim",
            "prompt": "benchmark",
            "max_tokens": 64,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    url, headers = base_url + "/completions", {"Content-Type": "application/json"}
    remaining = iter(range(n))

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in remaining:
            async with session.post(url, data=body, headers=headers) as resp:
                async for line in resp.content:
                    if line.startswith(b"data:"):
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            break
                        json.loads(data)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - start


async def raw_embeddings(base_url: str, inputs: int, batch: int, concurrency: int) -> float:
    url, headers = base_url + "/embeddings", {"Content-Type": "application/json"}
    bodies = iter(
        [
            json.dumps(
                {"model": "batchrun-sim", "encoding_format": "base64", "input": [f"text {i + k}" for k in range(batch)]}
            ).encode()
            for i in range(0, inputs, batch)
        ]
    )

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in bodies:
            async with session.post(url, data=body, headers=headers) as resp:
                data = json.loads(await resp.read())
                np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in data["data"]])

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - start


def batchrun_process(base_url: str, n: int, args: list[str], tmp: Path) -> tuple[float, dict]:
    prompts = tmp / f"prompts-{n}.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"text {i}"}) + "\n" for i in range(n)))
    out = tmp / f"out-{time.monotonic_ns()}"
    cmd = [
        sys.executable,
        "-m",
        "batchrun",
        "run",
        str(prompts),
        "--base-url",
        base_url,
        "--out",
        str(out),
        "-q",
        "--retries",
        "0",
        *args,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["counts"]["ok"] == n, summary["counts"]
    return wall, summary


def report(name: str, unit: str, n: int, raw_wall: float, br: tuple[float, dict]) -> None:
    raw, (br_wall, summary) = n / raw_wall, br
    inner = summary["throughput"]["requests_per_s"]
    print(
        f"{name:<12} raw aiohttp {raw:8.0f} {unit}/s   batchrun run (process) {n / br_wall:8.0f} {unit}/s "
        f"(inside the run: {inner:.0f})   ratio {n / br_wall / raw:5.2f}x, inside {inner / raw:4.2f}x   (n={n})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_completions = 4_000 if args.quick else 15_000
    n_inputs = 32_000 if args.quick else 128_000
    with SimProcess(SimConfig(fast=True, output_tokens=64)) as sim, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(raw_completions(sim.base_url, 500, 128))  # warm the endpoint
        raw = asyncio.run(raw_completions(sim.base_url, n_completions, 128))
        br = batchrun_process(
            sim.base_url, n_completions, ["--endpoint", "completions", "-c", "128", "--max-tokens", "64"], Path(tmp)
        )
        report("completions", "req", n_completions, raw, br)
        raw = asyncio.run(raw_embeddings(sim.base_url, n_inputs, 32, 32))
        br = batchrun_process(
            sim.base_url, n_inputs, ["--endpoint", "embeddings", "--batch-size", "32", "-c", "32"], Path(tmp)
        )
        report("embeddings", "input", n_inputs, raw, br)


if __name__ == "__main__":
    main()
