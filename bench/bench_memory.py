"""Peak memory (RSS) of a whole `batchrun run` process, by input size: is it flat in the rows?

    python bench/bench_memory.py [--sizes 10k,100k,1m] [--concurrency 128] [--max-tokens 16]

Starts `batchrun serve --fast --port 0 -q` (zero delays: the client is the only cost) in a child
process on 127.0.0.1, writes a CSV of N generated prompts per size to a temporary directory, and
runs `batchrun run in.csv --base-url URL -q` as a child process for each size. The figure is the
run process's own peak RSS (`ru_maxrss` from `os.wait4` on that child, so the server is never
counted), taken over its whole life: sending, then results.csv, summary.json and the reports.
Same-run baseline: the peak RSS of a 100-row run, made the same way; each size is shown as a
ratio to it. Also printed: wall time per size and records.jsonl's size. A 1M-row run takes
several minutes (the whole client at ~1,500 req/s on a shared core). Loopback only; the server
is a child process this script stops.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE_ROWS = 100


def _batchrun() -> list[str]:
    return [sys.executable, "-c", "from batchrun.cli import main; main()"]


def row_count(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def write_input(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,prompt\n")
        for i in range(rows):
            f.write(f"r{i},Write one sentence about the number {i}.\n")


def _run(cmd: list[str], env: dict[str, str]) -> tuple[int, float]:
    """(peak RSS in bytes, wall seconds) of one child process, from its own rusage."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{err}")
    return usage.ru_maxrss * 1024, wall  # Linux: ru_maxrss is in KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10k,100k,1m", help="comma-separated row counts (10k, 100k, 1m, 2500)")
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=16, help="answer length asked of the fast sim")
    ap.add_argument(
        "--index-rows",
        default=None,
        help="instead: peak RSS of reading the results index of a generated records.jsonl of "
        "this many rows (dict of every id vs the array index), against importing the module",
    )
    opts = ap.parse_args()
    if opts.index_rows:
        return _index_bench(row_count(opts.index_rows))
    sizes = [row_count(s) for s in opts.sizes.split(",") if s.strip()]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCHRUN_"))}
    server = subprocess.Popen(
        _batchrun() + ["serve", "--fast", "--host", "127.0.0.1", "--port", "0", "-q"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    results: list[tuple[int, int, float, int]] = []
    try:
        url = server.stdout.readline().strip() if server.stdout else ""
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"the sim did not start: {url!r}")
        with tempfile.TemporaryDirectory() as tmp:
            for rows in [BASELINE_ROWS, *sizes]:
                data, out = Path(tmp, f"in-{rows}.csv"), Path(tmp, f"run-{rows}")
                write_input(data, rows)
                cmd = _batchrun() + [
                    "run",
                    str(data),
                    "--base-url",
                    url,
                    "-q",
                    "--out",
                    str(out),
                    "-c",
                    str(opts.concurrency),
                    "--max-tokens",
                    str(opts.max_tokens),
                ]
                peak, wall = _run(cmd, env)
                records = (out / "records.jsonl").stat().st_size
                results.append((rows, peak, wall, records))
                print(
                    f"  {rows:>9,} rows: peak RSS {peak / 2**20:7.1f} MiB in {wall:7.1f} s", file=sys.stderr, flush=True
                )
                for path in (data, *out.iterdir()):
                    path.unlink()
    finally:
        server.terminate()
        server.wait(timeout=10)
    base = results[0][1]
    print(
        f"peak RSS of the `batchrun run` process (fast built-in endpoint, -c {opts.concurrency}, "
        f"--max-tokens {opts.max_tokens}); baseline: a {BASELINE_ROWS}-row run"
    )
    print(f"  {'rows':>9}  {'peak RSS':>10}  {'x baseline':>10}  {'wall':>8}  {'records.jsonl':>13}")
    for rows, peak, wall, size in results:
        print(f"  {rows:>9,}  {peak / 2**20:7.1f} MiB  {peak / base:9.2f}x  {wall:7.1f}s  {size / 2**20:9.1f} MiB")


def _index_bench(rows: int) -> None:
    """Peak RSS of one process that indexes a records.jsonl of `rows` records, each way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCHRUN_"))}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "records.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for i in range(rows):
                f.write(f'{{"id": "r{i}", "row": {i}, "status": "ok", "text": "an answer", "ttft_s": 0.01}}\n')
        load = "from pathlib import Path; from batchrun.store import outputs as o; p = Path({!r}); ".format(str(path))
        cases = [
            ("import batchrun.store.outputs (baseline)", load + "pass"),
            ("index_records: dict of every id", load + "i = o.index_records(p); sorted(i.values())"),
            ("latest_offsets: arrays", load + "i = o.latest_offsets(p)"),
        ]
        print(f"results index over {rows:,} records (peak RSS of one process each)")
        base = None
        for label, code in cases:
            peak, wall = _run([sys.executable, "-c", code], env)
            base = base or peak
            print(f"  {label:42} {peak / 2**20:7.1f} MiB  {peak / base:5.2f}x  {wall:6.1f}s")


if __name__ == "__main__":
    main()
