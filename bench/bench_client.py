"""batchrun's client against a minimal raw aiohttp streaming client, measured in the same run.

    python bench/bench_client.py            # throughput + TTFT accuracy (about a minute)
    python bench/bench_client.py --quick    # smaller counts
    python bench/bench_client.py --throughput-only --against DIR --repeat 3
                                            # also `batchrun run` from another checkout (DIR holds
                                            # its batchrun/ package, e.g. `git archive main`),
                                            # interleaved with this one: the ratio of the two

1. Throughput: the built-in endpoint in --fast mode (zero delays) in a child process, 64 tokens
   per response; a raw aiohttp client at concurrency 128 (SSE lines split by hand, one
   json.loads per chunk) vs `batchrun run` as a whole process (startup, reading the input,
   writing records, results and reports included). Target: batchrun >= 0.8x raw.
2. TTFT accuracy: the endpoint at a fixed 50 ms TTFT and 5 ms between 32 chunks; measured
   TTFT minus 50 ms, p50 / p99, for the raw client and batchrun at 64 streams, then at 1,024
   streams where one core cannot keep up (batchrun should say so: loop-lag warning).
Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.sim import SimConfig, SimProcess  # noqa: E402


async def raw_client(base_url: str, n: int, concurrency: int, max_tokens: int) -> tuple[float, list[float]]:
    """The baseline: n streamed requests, `concurrency` at a time; (wall seconds, TTFTs)."""
    body = json.dumps(
        {
            "model": "batchrun-sim",
            "messages": [{"role": "user", "content": "benchmark"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
        }
    ).encode()
    url = base_url + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    ttfts: list[float] = []
    remaining = iter(range(n))

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in remaining:
            sent = time.perf_counter()
            first = None
            async with session.post(url, data=body, headers=headers) as resp:
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    chunk = json.loads(data)
                    if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        first = time.perf_counter() - sent
            ttfts.append(first)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - start, ttfts


def batchrun_process(
    base_url: str, n: int, concurrency: int, max_tokens: int, tmp: Path, src: Path | None = None
) -> tuple[float, dict]:
    """`batchrun run` as a user runs it (from the checkout `src`, else this one); (wall seconds of
    the whole process, summary)."""
    prompts = tmp / f"prompts-{n}.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"benchmark {i}"}) + "\n" for i in range(n)))
    out = tmp / f"out-{n}-{concurrency}-{time.monotonic_ns()}"
    cmd = [
        sys.executable,
        "-m",
        "batchrun",
        "run",
        str(prompts),
        "--base-url",
        base_url,
        "-c",
        str(concurrency),
        "--max-tokens",
        str(max_tokens),
        "--out",
        str(out),
        "-q",
        "--retries",
        "0",
    ]
    env = {**os.environ, "PYTHONPATH": str(src)} if src is not None else None
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    return wall, json.loads((out / "summary.json").read_text())["summary"]


def child_cpu_s() -> float:
    """CPU seconds (user + system) of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def batchrun_ttfts(summary_dir: Path) -> list[float]:
    return [json.loads(line)["ttft_s"] for line in (summary_dir / "records.jsonl").read_text().splitlines()]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def throughput_against(n: int, other: Path, repeat: int) -> None:
    """This checkout's `batchrun run` and another's, interleaved `repeat` times on one endpoint
    process, each beside the raw client: medians and the ratio this / other."""
    print(
        f"== throughput: {n} requests, 64 tokens each, concurrency 128; this checkout vs {other}, "
        f"{repeat} interleaved rounds"
    )
    walls: dict[str, list[float]] = {"raw": [], "this": [], "other": []}
    cpu: dict[str, list[float]] = {"this": [], "other": []}  # CPU us per request of the process
    with SimProcess(SimConfig(fast=True, output_tokens=64)) as sim, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(raw_client(sim.base_url, 500, 128, 64))  # warm the endpoint
        for round_ in range(repeat):
            walls["raw"].append(asyncio.run(raw_client(sim.base_url, n, 128, 64))[0])
            order = [("this", None), ("other", other)]
            for name, src in order if round_ % 2 == 0 else order[::-1]:  # neither always goes first
                before = child_cpu_s()
                walls[name].append(batchrun_process(sim.base_url, n, 128, 64, Path(tmp), src=src)[0])
                cpu[name].append((child_cpu_s() - before) / n * 1e6)
    rps = {k: [n / w for w in v] for k, v in walls.items()}
    for name in ("raw", "this", "other"):
        print(
            f"{name:6} req/s  "
            + "  ".join(f"{x:7.0f}" for x in rps[name])
            + f"   median {statistics.median(rps[name]):7.0f}"
        )
    ratios = [t / o for t, o in zip(rps["this"], rps["other"])]
    print(
        f"ratio this / other per round: {'  '.join(f'{r:.3f}' for r in ratios)}   median "
        f"{statistics.median(ratios):.3f}"
    )
    print(
        f"ratio to raw: this {statistics.median(rps['this']) / statistics.median(rps['raw']):.2f}x, "
        f"other {statistics.median(rps['other']) / statistics.median(rps['raw']):.2f}x"
    )
    for name in ("this", "other"):  # CPU is steadier than wall time on a shared machine
        print(
            f"{name:6} CPU us/request (whole process)  "
            + "  ".join(f"{x:6.0f}" for x in cpu[name])
            + f"   median {statistics.median(cpu[name]):6.0f}"
        )
    cpu_ratios = [t / o for t, o in zip(cpu["this"], cpu["other"])]
    print(
        f"CPU per request this / other per round: {'  '.join(f'{r:.3f}' for r in cpu_ratios)}   median "
        f"{statistics.median(cpu_ratios):.3f}"
    )


def throughput(n: int) -> None:
    print(f"== throughput: {n} requests, 64 tokens each, concurrency 128, endpoint --fast in its own process")
    with SimProcess(SimConfig(fast=True, output_tokens=64)) as sim, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(raw_client(sim.base_url, 500, 128, 64))  # warm the endpoint
        raw_wall, _ = asyncio.run(raw_client(sim.base_url, n, 128, 64))
        br_wall, summary = batchrun_process(sim.base_url, n, 128, 64, Path(tmp))
    raw_rps, br_rps = n / raw_wall, n / br_wall
    inner = summary["throughput"]["requests_per_s"]
    print(f"raw aiohttp client        {raw_rps:8.0f} req/s")
    print(f"batchrun run (process)    {br_rps:8.0f} req/s   (inside the run: {inner:.0f} req/s)")
    print(f"ratio batchrun / raw      {br_rps / raw_rps:8.2f}x   (target >= 0.80)")


def accuracy(n: int, streams: int) -> None:
    print(f"== TTFT accuracy: endpoint fixed TTFT 50 ms, 5 ms gaps, 32 chunks; {streams} streams, {n} requests")
    config = SimConfig(fixed_ttft_s=0.05, fixed_itl_s=0.005, output_tokens=32)
    with SimProcess(config) as sim, tempfile.TemporaryDirectory() as tmp:
        _, raw = asyncio.run(raw_client(sim.base_url, n, streams, 32))
        _, summary = batchrun_process(sim.base_url, n, streams, 32, Path(tmp))
    raw_over = [t - 0.05 for t in raw]
    ttft = summary["ttft_s"]
    print(
        f"raw aiohttp   TTFT - 50 ms: p50 {pct(raw_over, 0.5) * 1e3:+7.1f} ms  p99 {pct(raw_over, 0.99) * 1e3:+7.1f} ms"
    )
    print(
        f"batchrun      TTFT - 50 ms: p50 {(ttft['p50'] - 0.05) * 1e3:+7.1f} ms  p99 {(ttft['p99'] - 0.05) * 1e3:+7.1f} ms"
    )
    lag = summary.get("loop_lag") or {}
    print(
        f"batchrun loop lag p99 {lag.get('p99_s', 0) * 1e3:.1f} ms; client saturated warning: "
        f"{bool(lag.get('client_saturated'))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller request counts")
    parser.add_argument("--throughput-only", action="store_true", help="skip the TTFT accuracy runs")
    parser.add_argument("--against", type=Path, help="another checkout (the directory holding its batchrun/)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds with --against")
    args = parser.parse_args()
    n = 4_000 if args.quick else 20_000
    if args.against is not None:
        throughput_against(n, args.against.resolve(), args.repeat)
    else:
        throughput(n)
    if args.throughput_only:
        return
    accuracy(640 if args.quick else 2_000, 64)
    accuracy(2_048 if args.quick else 4_096, 1024)


if __name__ == "__main__":
    main()
