"""`batchrun run --workers N`: CPU per request, TTFT inflation under many slow streams, the
concurrency where one process stops keeping up, and exactly-once over many rows with faults and a killed worker.

    nice -n 5 python bench/bench_workers.py            # every part (a few minutes)
    nice -n 5 python bench/bench_workers.py --quick    # smaller counts
    python bench/bench_workers.py --only cpu|ttft|knee|exact

1. CPU seconds per 1,000 requests vs N. The built-in endpoint (`--fast`, 64 tokens) runs in its
   own process pinned to the last core (`taskset` / sched_setaffinity); the whole batchrun process
   tree (coordinator and workers) is pinned to the other cores. CPU is user+system time of the
   tree (getrusage of reaped children), and the figure is the *marginal* cost: the difference
   between a run of `big` and of `small` rows, per 1,000 rows, so start-up and report writing
   (the same for both sizes) cancel out. Target: it does not grow with N.
2. TTFT inflation at 1,024 slow streams (endpoint fixed TTFT 50 ms, 5 ms gaps, 32 chunks):
   measured TTFT - 50 ms, p50 / p99, with 1 and 2 workers, the endpoint pinned to its own core.
   On a 2-core machine the client then has one core whatever N is, so this shows the cost of
   the coordinator's hop, not the gain of a second core: said in the output.
3. The knee (`--only knee`): one process's TTFT inflation and loop lag by concurrency, with the
   same slow streams: where `--workers auto` starts to use more processes.
4. Exactness: `rows` rows (20,000 by default) against an endpoint with 8% injected faults
   (500, 502, cut streams, malformed chunks; retried), 2 workers, one SIGKILLed a third of the
   way: every row must end ok exactly once.
Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from batchrun.sim import SimConfig, SimProcess  # noqa: E402

FAULTS = dict(error_500_rate=0.02, error_502_rate=0.02, cut_rate=0.02, malformed_rate=0.02)


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin_endpoint(sim: SimProcess) -> tuple[list[int], list[int]]:
    """The endpoint on the last core, the client on the rest: (client cores, endpoint cores)."""
    mine = cores()
    if len(mine) < 2:
        return mine, mine
    assert sim.pid is not None
    os.sched_setaffinity(sim.pid, {mine[-1]})
    return mine[:-1], mine[-1:]


def write_prompts(path: Path, n: int) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt"])
        writer.writerows([f"q{i}", f"benchmark question {i}"] for i in range(n))
    return path


# `batchrun run` that also writes its own process's CPU seconds (the coordinator alone) at exit.
_SELF_CPU = (
    "import atexit, resource, sys\n"
    "def _cpu():\n"
    "    u = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    open('self-cpu.txt', 'w').write(str(u.ru_utime + u.ru_stime))\n"
    "atexit.register(_cpu)\n"
    "from batchrun.cli import main\n"
    "sys.argv = ['batchrun', *sys.argv[1:]]\n"
    "main()\n"
)


def run_batchrun(args: list[str], client_cores: list[int], cwd: Path) -> float:
    """`batchrun run ...` pinned to `client_cores`; CPU seconds (user + system) of its process tree."""
    return run_batchrun_split(args, client_cores, cwd)[0]


def run_batchrun_split(args: list[str], client_cores: list[int], cwd: Path) -> tuple[float, float]:
    """(CPU seconds of the whole process tree, of the coordinator process alone)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = ["taskset", "-c", ",".join(map(str, client_cores)), sys.executable, "-c", _SELF_CPU, "run", *args]
    subprocess.run(cmd, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return tree, float((cwd / "self-cpu.txt").read_text())


def cpu_per_1k(workers: list[int], small: int, big: int, concurrency: int) -> None:
    print(
        f"== CPU s per 1,000 requests (marginal: {big:,} - {small:,} rows), endpoint --fast, 64 tokens, "
        f"concurrency {concurrency}"
    )
    with SimProcess(SimConfig(fast=True, output_tokens=64)) as sim, tempfile.TemporaryDirectory() as tmp:
        client, endpoint = pin_endpoint(sim)
        print(f"   endpoint on core {endpoint}, batchrun (coordinator + workers) on cores {client}")
        base = None
        for n_workers in workers:
            cpu, own = {}, {}
            for n in (small, big):
                write_prompts(Path(tmp) / f"p{n}.csv", n)
                cpu[n], own[n] = min(
                    run_batchrun_split(
                        [
                            f"p{n}.csv",
                            "--base-url",
                            sim.base_url,
                            "-q",
                            "-c",
                            str(concurrency),
                            "--workers",
                            str(n_workers),
                            "--max-tokens",
                            "64",
                            "--out",
                            f"o-{n_workers}-{n}-{rep}",
                            "--retries",
                            "0",
                        ],
                        client,
                        Path(tmp),
                    )
                    for rep in range(2)
                )
            per_1k = (cpu[big] - cpu[small]) / (big - small) * 1000
            coordinator = (own[big] - own[small]) / (big - small) * 1000
            base = per_1k if base is None else base
            print(
                f"   --workers {n_workers}: {per_1k:6.2f} CPU s / 1k requests   ({per_1k / base:.2f}x of "
                f"--workers {workers[0]}; of which this process: {coordinator:.2f} s; whole runs: "
                f"{cpu[small]:.2f} s and {cpu[big]:.2f} s)"
            )


def ttft_inflation(workers: list[int], n: int, streams: int) -> None:
    print(f"== TTFT inflation: {streams} streams, {n} requests; endpoint fixed TTFT 50 ms, 5 ms gaps, 32 chunks")
    config = SimConfig(fixed_ttft_s=0.05, fixed_itl_s=0.005, output_tokens=32)
    for pinned in (True, False):
        with SimProcess(config) as sim, tempfile.TemporaryDirectory() as tmp:
            client, endpoint = pin_endpoint(sim) if pinned else (cores(), cores())
            note = (
                "  (one core for the client whatever N is: this machine cannot show a second core's gain)"
                if pinned and len(client) < 2
                else ""
            )
            print(f"   endpoint on cores {endpoint}, batchrun on cores {client}{note}")
            write_prompts(Path(tmp) / "p.csv", n)
            for n_workers in workers:
                _one_ttft_run(sim, client, Path(tmp), n_workers, streams)


def _one_ttft_run(sim: SimProcess, client: list[int], tmp: Path, n_workers: int, streams: int) -> None:
    out = tmp / f"o{n_workers}"
    cpu = run_batchrun(
        [
            "p.csv",
            "--base-url",
            sim.base_url,
            "-q",
            "-c",
            str(streams),
            "--workers",
            str(n_workers),
            "--max-tokens",
            "32",
            "--out",
            out.name,
            "--retries",
            "0",
        ],
        client,
        tmp,
    )
    over = sorted(r["ttft_s"] - 0.05 for r in _records(out) if r["status"] == "ok")
    summary = json.loads((out / "summary.json").read_text())["summary"]
    print(
        f"     --workers {n_workers}: TTFT - 50 ms p50 {_pct(over, 0.5) * 1e3:+7.1f} ms  "
        f"p99 {_pct(over, 0.99) * 1e3:+7.1f} ms  (n={len(over)}; {summary['throughput']['requests_per_s']:.0f} "
        f"req/s; client CPU {cpu:.1f} s)"
    )


def knee(levels: list[int], waves: int) -> None:
    """Where one process stops keeping up: TTFT inflation p99 by concurrency, one worker (the
    measurement behind workers_plan.AUTO_MIN_CONCURRENCY)."""
    print(f"== one process by concurrency ({waves} waves each); endpoint fixed TTFT 50 ms, 5 ms gaps, 32 chunks")
    config = SimConfig(fixed_ttft_s=0.05, fixed_itl_s=0.005, output_tokens=32)
    with SimProcess(config) as sim, tempfile.TemporaryDirectory() as tmp:
        client, endpoint = pin_endpoint(sim)
        for level in levels:
            write_prompts(Path(tmp) / f"p{level}.csv", waves * level)
            out = Path(tmp) / f"k{level}"
            run_batchrun(
                [
                    f"p{level}.csv",
                    "--base-url",
                    sim.base_url,
                    "-q",
                    "-c",
                    str(level),
                    "--max-tokens",
                    "32",
                    "--out",
                    out.name,
                    "--retries",
                    "0",
                ],
                client,
                Path(tmp),
            )
            over = sorted(r["ttft_s"] - 0.05 for r in _records(out) if r["status"] == "ok")
            lag = json.loads((out / "summary.json").read_text())["summary"]["loop_lag"]
            print(
                f"   -c {level:5d}: TTFT - 50 ms p50 {_pct(over, 0.5) * 1e3:+7.1f} ms  p99 {_pct(over, 0.99) * 1e3:+7.1f} ms"
                f"  loop lag p99 {lag['p99_s'] * 1e3:6.1f} ms  (n={len(over)})"
            )


def exactness(rows: int) -> None:
    print(f"== exactness: {rows:,} rows, 8% injected faults (retried), 2 workers, one SIGKILLed mid-run")
    config = SimConfig(fixed_ttft_s=0.004, fixed_itl_s=0.002, output_tokens=4, seed=11, **FAULTS)
    with SimProcess(config) as sim, tempfile.TemporaryDirectory() as tmp:
        write_prompts(Path(tmp) / "p.csv", rows)
        cmd = [
            sys.executable,
            "-m",
            "batchrun",
            "run",
            "p.csv",
            "--base-url",
            sim.base_url,
            "--out",
            "o",
            "-q",
            "-c",
            "64",
            "--workers",
            "2",
            "--max-retry-wait",
            "0.05",
            "--retries",
            "8",
        ]
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
        reader.start()
        pid = _worker_pid(proc, lines)
        _wait_lines(Path(tmp) / "o" / "records.jsonl", rows // 3, proc)
        os.kill(pid, signal.SIGKILL)
        code = proc.wait()
        reader.join(10)
        records = _records(Path(tmp) / "o")
        per_id = Counter(r["id"] for r in records)
        ok = Counter(r["id"] for r in records if r["status"] == "ok")
        resent = next((line.strip() for line in lines if "were sent again" in line), "no resend message")
        print(
            f"   exit {code}; {len(per_id):,} rows recorded, {sum(per_id.values()):,} records; "
            f"ok exactly once: {sum(1 for v in ok.values() if v == 1):,}; rows with two records: "
            f"{sum(1 for v in per_id.values() if v > 1)}; faults injected: {sum(sim.stats()['faults'].values())}"
        )
        print(f"   {resent}")
        good = code == 0 and len(ok) == rows and set(per_id.values()) == {1}
        print(f"   {'PASS' if good else 'FAIL'}: every row ok exactly once")


def _worker_pid(proc: subprocess.Popen[str], lines: list[str]) -> int:
    while proc.poll() is None:
        for line in list(lines):
            if "worker processes (" in line:
                return int(re.findall(r"pid (\d+)", line)[0])
        time.sleep(0.01)
    raise SystemExit(f"the run ended before its workers started: {''.join(lines)[-2000:]}")


def _wait_lines(path: Path, n: int, proc: subprocess.Popen[str]) -> None:
    while proc.poll() is None and not (path.exists() and path.read_bytes().count(b"\n") >= n):
        time.sleep(0.01)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_bytes().splitlines() if line.strip()]


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller request counts")
    parser.add_argument("--only", choices=("cpu", "ttft", "knee", "exact"))
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the exactness part")
    parser.add_argument("--streams", type=int, default=1024)
    args = parser.parse_args()
    print(f"cores: {len(cores())}")
    if args.only in (None, "cpu"):
        cpu_per_1k([1, 2, 3], 2_000, 4_000 if args.quick else 10_000, 128)
    if args.only in (None, "ttft"):
        ttft_inflation([1, 2], 2 * args.streams if args.quick else 4 * args.streams, args.streams)
    if args.only in (None, "knee"):
        knee([64, 128, 256, 512, 1024], 3)
    if args.only in (None, "exact"):
        exactness(5_000 if args.quick else args.rows)


if __name__ == "__main__":
    main()
