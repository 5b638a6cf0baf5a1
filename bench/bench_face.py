"""Is the Python face as fast as the command line? The same rows through both, as whole processes.

    nice -n 5 python bench/bench_face.py                   # 5,000 rows, c=64, 3 rounds
    python bench/bench_face.py --rows 1000 --rounds 1      # quicker

Starts the built-in endpoint in a child process on 127.0.0.1 with a fixed latency (TTFT 20 ms,
8 chunks 5 ms apart: no jitter, no queueing, so both faces meet the same endpoint), writes a CSV of
`rows` prompts, then, in each round (the order turning from round to round, so no kind always
follows the same one):
  cli    `batchrun run in.csv --base-url URL -c 64 -q --out DIR` in a child process;
  face   `batchrun.run("in.csv", base_url=URL, concurrency=64, quiet=True, out=DIR)` in a child
         process (`python -c`), the same process kind;
  frame  the face given the rows as a pandas DataFrame and reading `run.frame` at the end (what a
         notebook does: the rows written as Parquet first, the frame built after).
For each: requests/s over the send span (the run's own summary.json: rows / wall_time_s) and over
the whole process (rows / spawn-to-exit wall clock, start-up and report writing included); the
median over the rounds, and each face's ratio to the CLI measured in the same run. Everything runs
on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from batchrun.sim import SimConfig, SimProcess  # noqa: E402

FACE = """
import sys, batchrun
batchrun.run(sys.argv[1], base_url=sys.argv[2], concurrency=int(sys.argv[3]), quiet=True, out=sys.argv[4])
"""
FRAME = """
import sys, pandas as pd, batchrun
rows = pd.read_csv(sys.argv[1])
run = batchrun.run(rows, base_url=sys.argv[2], concurrency=int(sys.argv[3]), quiet=True, out=sys.argv[4])
assert len(run.frame) == len(rows)
"""


def _command(kind: str, data: Path, url: str, concurrency: int, out: Path) -> list[str]:
    args = [str(data), url, str(concurrency), str(out)]
    if kind == "cli":
        cli = "from batchrun.cli import main; main()"
        return [
            sys.executable,
            "-c",
            cli,
            "run",
            str(data),
            "--base-url",
            url,
            "-c",
            str(concurrency),
            "-q",
            "--out",
            str(out),
        ]
    return [sys.executable, "-c", FACE if kind == "face" else FRAME, *args]


def _measure(
    kind: str, data: Path, url: str, concurrency: int, out: Path, rows: int, env: dict[str, str]
) -> tuple[float, float]:
    """(requests/s over the send span, requests/s over the whole process) of one run."""
    t0 = time.perf_counter()
    proc = subprocess.run(_command(kind, data, url, concurrency, out), env=env, capture_output=True, text=True)
    whole = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())["summary"]
    ok = summary["counts"]["ok"]
    if ok != rows:
        raise SystemExit(f"{kind}: {ok} of {rows} rows ok")
    return rows / summary["wall_time_s"], rows / whole


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each kind, alternating (median shown)")
    opts = ap.parse_args()
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PYTHONDONTWRITEBYTECODE")
    }
    kinds = ("cli", "face", "frame")
    sim = SimConfig(fixed_ttft_s=0.02, fixed_itl_s=0.005, output_tokens=8, seed=1)
    with tempfile.TemporaryDirectory() as tmp, SimProcess(sim) as server:
        base = Path(tmp)
        data = base / "in.csv"
        with open(data, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "prompt"])
            writer.writerows([f"r{i}", f"question number {i}: what follows {i}?"] for i in range(opts.rows))
        _measure("cli", data, server.base_url, opts.concurrency, base / "warm", opts.rows, env)  # .pyc files, caches
        spans: dict[str, list[float]] = {k: [] for k in kinds}
        wholes: dict[str, list[float]] = {k: [] for k in kinds}
        for n in range(opts.rounds):
            for kind in kinds[n % 3 :] + kinds[: n % 3]:  # each kind in each place of a round in turn
                span, whole = _measure(
                    kind, data, server.base_url, opts.concurrency, base / f"{kind}{n}", opts.rows, env
                )
                spans[kind].append(span)
                wholes[kind].append(whole)
    print(
        f"{opts.rows} rows, c={opts.concurrency}, built-in endpoint TTFT 20 ms + 8 x 5 ms, "
        f"{opts.rounds} round(s) alternating; median req/s (n={opts.rounds} runs each)"
    )
    cli_span, cli_whole = statistics.median(spans["cli"]), statistics.median(wholes["cli"])
    for kind in kinds:
        span, whole = statistics.median(spans[kind]), statistics.median(wholes[kind])
        print(
            f"  {kind:<6} send span {span:8.1f} req/s ({span / cli_span:.2f}x cli)   "
            f"whole process {whole:8.1f} req/s ({whole / cli_whole:.2f}x cli)   "
            f"runs: {', '.join(f'{s:.0f}' for s in spans[kind])}"
        )


if __name__ == "__main__":
    main()
