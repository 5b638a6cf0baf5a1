"""How close is an endpoint twin to the endpoint it copies, and how fast does it start?

    python bench/bench_twin.py                    # every setting below and the startup, ~4 min
    python bench/bench_twin.py --only startup     # just the startup figure
    python bench/bench_twin.py --only queue,sweep

1. Fidelity. For each setting, two runs against the built-in endpoint with known settings
   (source A and source B, different seeds: the same-run baseline, how much two runs of the
   source itself differ), `batchrun fit` on A, `batchrun serve --like twin.json` in its own
   process, and a run against the twin with the same prompts and options. Printed: p50 and p90
   TTFT and latency of A, then B and the twin as differences from A. The "sweep" setting does the
   same with `batchrun bench` at three levels (per level; throughput too).
2. Startup. Seconds from spawning `batchrun serve --like twin.json --port 0 -q` to its base URL
   on stdout (median of --runs), beside plain `batchrun serve` timed the same way (the baseline,
   as a ratio), and `serve --like RUN_DIR`, which fits the run's records as it starts.

Every process is a child of this script on 127.0.0.1 and is stopped by it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.analysis.distribution import percentile  # noqa: E402
from batchrun.store.records import OK, read_records  # noqa: E402

WORDS = "river stone bridge market signal pattern garden window letter answer".split()
# name: (built-in endpoint options, run options, requests)
SETTINGS: dict[str, tuple[list[str], list[str], int]] = {
    "queue": (
        ["ttft_s=0.05", "itl_s=0.005", "max_concurrency=8", "error_500_rate=0.05", "output_tokens_mean=12"],
        ["-c", "16", "--max-tokens", "64"],
        480,
    ),
    "no-queue": (
        ["ttft_s=0.05", "itl_s=0.005", "max_concurrency=64", "output_tokens_mean=12"],
        ["-c", "8", "--max-tokens", "64"],
        480,
    ),
    "prefill": (
        ["ttft_s=0.1", "prefill_s_per_token=0.0005", "itl_s=0.004", "max_concurrency=4", "output_tokens=24"],
        ["-c", "8", "--max-tokens", "24"],
        400,
    ),
}
SWEEP = (["ttft_s=0.05", "itl_s=0.005", "max_concurrency=8", "output_tokens_mean=12"], "1,4,16", 200)
ENV = {
    k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCHRUN_")) and k != "PYTHONDONTWRITEBYTECODE"
}


def batchrun(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "batchrun", *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"batchrun {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")


def prompts(path: Path, n: int, chars: int = 256) -> Path:
    lines = ["id,prompt"]
    for i in range(n):
        words = [f"question {i}:"]
        while sum(len(w) + 1 for w in words) < chars:
            words.append(WORDS[(i + len(words)) % len(WORDS)])
        lines.append(f"q{i},{' '.join(words)[:chars]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def builtin(options: list[str], seed: int) -> list[str]:
    return [
        "--base-url",
        "builtin",
        *(x for o in [*options, "fresh_jitter=true", f"seed={seed}"] for x in ("--builtin-option", o)),
    ]


class Twin:
    """`batchrun serve --like ...` as a child process; `.url`, and the seconds it took to start."""

    def __init__(self, like: list[str], cwd: Path) -> None:
        args = [x for item in like for x in ("--like", item)] if like else []
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchrun", "serve", *args, "--port", "0", "-q"],
            cwd=cwd,
            env=ENV,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        self.start_s = time.perf_counter() - t0
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise SystemExit(f"serve {' '.join(args)} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()  # type: ignore[union-attr]


def figures(records_path: Path) -> dict[str, float]:
    ok = [r for r in read_records(records_path) if r.status == OK]
    out = {}
    for key in ("ttft_s", "latency_s"):
        xs = sorted(getattr(r, key) for r in ok)
        out.update({f"{key[:-2]} p50": percentile(xs, 50), f"{key[:-2]} p90": percentile(xs, 90)})
    out["n"] = len(ok)
    return out


def show(name: str, a: dict[str, float], b: dict[str, float], twin: dict[str, float], extra: str = "") -> float:
    """One line per figure; returns the largest |twin - A| / A."""
    print(f"{name}{extra}  (n: A {a['n']:.0f}, B {b['n']:.0f}, twin {twin['n']:.0f})")
    worst = 0.0
    for key in ("ttft p50", "ttft p90", "latency p50", "latency p90"):
        db, dt = b[key] / a[key] - 1, twin[key] / a[key] - 1
        worst = max(worst, abs(dt))
        print(f"    {key:12s} A {a[key] * 1000:7.1f} ms   B {db:+6.1%}   twin {dt:+6.1%}")
    return worst


def fidelity(name: str, tmp: Path) -> float:
    options, run_args, n = SETTINGS[name]
    data = prompts(tmp / "p.csv", n)
    for side, seed in (("A", 1), ("B", 2)):
        batchrun("run", str(data), "--out", side, "-q", "--retries", "0", *run_args, *builtin(options, seed), cwd=tmp)
    batchrun("fit", "A", "--out", "twin.json", "-q", "--no-report", cwd=tmp)
    twin = Twin(["twin.json"], tmp)
    try:
        batchrun("run", str(data), "--out", "T", "-q", "--retries", "0", *run_args, "--base-url", twin.url, cwd=tmp)
    finally:
        twin.stop()
    return show(
        name,
        figures(tmp / "A" / "records.jsonl"),
        figures(tmp / "B" / "records.jsonl"),
        figures(tmp / "T" / "records.jsonl"),
        f" [{' '.join(options)}; {' '.join(run_args)}]",
    )


def sweep(tmp: Path) -> float:
    options, levels, n = SWEEP
    data = prompts(tmp / "p.csv", n)
    bench = ["bench", str(data), "-c", levels, "-n", str(n), "--no-sync", "--max-tokens", "64", "-q"]
    for side, seed in (("A", 1), ("B", 2)):
        batchrun(*bench, "--out", side, *builtin(options, seed), cwd=tmp)
    batchrun("fit", "A", "--out", "twin.json", "-q", "--no-report", cwd=tmp)
    twin = Twin(["twin.json"], tmp)
    try:
        batchrun(*bench, "--out", "T", "--base-url", twin.url, cwd=tmp)
    finally:
        twin.stop()
    worst = 0.0
    for c in levels.split(","):
        name = f"async-c{c}-r1"
        got = [figures(tmp / side / "runs" / name / "records.jsonl") for side in ("A", "B", "T")]
        worst = max(worst, show(f"sweep c={c}", *got, f" [{' '.join(options)}]"))
    rps = {
        side: {
            r["name"]: r["requests_per_s"]
            for r in json.loads((tmp / side / "summary.json").read_text())["bench"]["rows"]
        }
        for side in ("A", "B", "T")
    }
    for c in levels.split(","):
        a, b, t = (rps[side][f"async-c{c}-r1"] for side in ("A", "B", "T"))
        print(f"    throughput c={c}: A {a:.2f} req/s   B {b / a - 1:+6.1%}   twin {t / a - 1:+6.1%}")
    return worst


def startup(tmp: Path, runs: int) -> None:
    options, run_args, n = SETTINGS["queue"]
    data = prompts(tmp / "p.csv", n)
    batchrun("run", str(data), "--out", "src", "-q", "--retries", "0", *run_args, *builtin(options, 1), cwd=tmp)
    batchrun("fit", "src", "--out", "twin.json", "-q", "--no-report", cwd=tmp)
    timings: dict[str, list[float]] = {}
    for _ in range(runs):
        for name, like in (
            ("batchrun serve (baseline)", []),
            ("batchrun serve --like twin.json", ["twin.json"]),
            (f"batchrun serve --like RUN_DIR ({n} records)", ["src"]),
        ):
            twin = Twin(like, tmp)
            twin.stop()
            timings.setdefault(name, []).append(twin.start_s)
    base = statistics.median(timings["batchrun serve (baseline)"])
    print(f"startup, spawn to base URL on stdout, median of {runs}:")
    for name, values in timings.items():
        med = statistics.median(values)
        print(f"    {name:44s} {med * 1000:6.0f} ms  {med / base:4.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated: " + ", ".join([*SETTINGS, "sweep", "startup"]))
    ap.add_argument("--runs", type=int, default=7, help="startup timings per command (median shown)")
    opts = ap.parse_args()
    chosen = opts.only.split(",") if opts.only else [*SETTINGS, "sweep", "startup"]
    worst = 0.0
    for name in chosen:
        with tempfile.TemporaryDirectory() as tmp:
            if name == "startup":
                startup(Path(tmp), opts.runs)
            elif name == "sweep":
                worst = max(worst, sweep(Path(tmp)))
            else:
                worst = max(worst, fidelity(name, Path(tmp)))
    if worst:
        print(f"largest twin difference from source A over every p50/p90 TTFT/latency shown: {worst:.1%}")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average at the end (1 / 5 / 15 min): {load} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
