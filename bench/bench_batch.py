"""Batch API mode's own cost: a whole `batchrun run --mode batch` of N rows against the built-in
endpoint with a zero processing delay, beside `batchrun run --mode online` of the same rows in the
same run (the endpoint in --fast mode, in a child process).

    python bench/bench_batch.py            # 50,000 rows: one full Batch API file
    python bench/bench_batch.py --rows 5000

What it shows: the client-side time to plan, write, upload, poll, download and collect a job of
the API's maximum size (the provider's turnaround, hours at OpenAI, is not batchrun's), and the
peak memory of the client process. Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.sim import SimConfig, SimProcess  # noqa: E402


def write_rows(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,prompt\n")
        for i in range(n):
            f.write(f"r{i},question number {i} about something\n")
    return path


def timed_run(prompts: Path, out: Path, mode: str, base_url: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one `batchrun run` process."""
    cmd = [
        sys.executable,
        "-m",
        "batchrun",
        "run",
        str(prompts),
        "--mode",
        mode,
        "--base-url",
        base_url,
        "--out",
        str(out),
        "--max-tokens",
        "16",
        "-q",
        "--concurrency",
        "128",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimProcess(SimConfig(fast=True, batch_delay_s=0.0, output_tokens=16)) as sim,
    ):
        prompts = write_rows(Path(tmp) / "p.csv", args.rows)
        batch_s, batch_mib = timed_run(prompts, Path(tmp) / "batch", "batch", sim.base_url)
        online_s, online_mib = timed_run(prompts, Path(tmp) / "online", "online", sim.base_url)
    print(f"{args.rows:,} rows, 16 output tokens each, built-in endpoint (--fast, batch delay 0)")
    print(f"  --mode batch : {batch_s:6.1f} s  ({args.rows / batch_s:,.0f} rows/s), peak RSS {batch_mib:,.0f} MiB")
    print(f"  --mode online: {online_s:6.1f} s  ({args.rows / online_s:,.0f} rows/s), peak RSS {online_mib:,.0f} MiB")
    print(
        f"  batch / online wall time: {batch_s / online_s:.2f}x (batch includes the sim answering every request at job creation)"
    )


if __name__ == "__main__":
    main()
