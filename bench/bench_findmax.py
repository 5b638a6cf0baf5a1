"""`bench --find-max` against a full sweep of the same levels, same endpoint, same run.

    python bench/bench_findmax.py            # two SLOs, about 4 minutes
    python bench/bench_findmax.py --quick    # the TTFT SLO only

The built-in endpoint (its own process, 127.0.0.1): 100 ms TTFT, 4 ms between 16 tokens, a
capacity knee at 16 sequences (FIFO queue past it) and 10% slower tokens per extra sequence.
Two SLOs: `ttft=200ms` (met up to the knee, missed just past it) and `e2e=275ms` (p99 latency
grows with load, ~8 ms per level near 12, about as much as a p99 of 100 requests varies: met
somewhere below the knee). For each, `batchrun bench --find-max`
and a full sweep (`batchrun bench -c <every level>`, 100 requests per level, one warm-up wave),
both as whole processes. The sweep's answer is its highest level whose p99 TTFT and p99 latency
meet the SLO, judged on its own records by the same rule (its recommendation, the smallest level
within noise of the best throughput, is printed beside it); find-max must agree with it (the same level, or - when
p99s at neighbouring levels are within noise of the bound - a level such that every sweep
level between the two answers was a close call in the sweep's own data: its p99's 95% interval
straddled the bound, so 100 requests could not decide it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.bench.findmax import judge  # noqa: E402
from batchrun.sim import SimConfig, SimProcess  # noqa: E402
from batchrun.store.records import read_records  # noqa: E402

SIM = SimConfig(ttft_s=0.1, itl_s=0.004, output_tokens=16, max_concurrency=16, itl_load_factor=0.1)
SWEEPS = {
    "ttft=200ms": (1, 2, 4, 8, 12, 14, 15, 16, 17, 18, 20, 24),
    "e2e=275ms": (1, 2, 4, 8, 10, 11, 12, 13, 14, 15, 16, 20),
}


def bench(base_url: str, prompts: Path, out: Path, args: list[str]) -> float:
    cmd = [
        sys.executable,
        "-m",
        "batchrun",
        "bench",
        str(prompts),
        "--base-url",
        base_url,
        "--max-tokens",
        "16",
        "--no-sync",
        "--out",
        str(out),
        *args,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def compare(slo: str, tmp: Path) -> None:
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(64)))
    levels = SWEEPS[slo]
    with SimProcess(SIM) as sim:
        fm_wall = bench(sim.base_url, prompts, tmp / f"fm-{slo}", ["--find-max", "--slo", slo, "-n", "100"])
    with SimProcess(SIM) as sim:
        sweep_wall = bench(
            sim.base_url,
            prompts,
            tmp / f"sweep-{slo}",
            ["-c", ",".join(map(str, levels)), "--slo", slo, "-n", "100", "--warmup", "16", "--max-run-time", "0"],
        )
    found = json.loads((tmp / f"fm-{slo}" / "find_max.json").read_text())
    analysis = json.loads((tmp / f"sweep-{slo}" / "summary.json").read_text())["bench"]
    recommended = analysis["recommended_concurrency"]
    # (the wall time only sets req/s, which the verdict does not use)
    verdicts = {
        c: judge(c, _records(tmp / f"sweep-{slo}" / "runs" / f"async-c{c}-r1"), 1.0, analysis["slo"]) for c in levels
    }
    meeting = [c for c, v in verdicts.items() if v.meets]
    sweep_best = max(meeting, default=None)  # the sweep's highest level meeting the SLO
    probes = " ".join(f"{p['concurrency']}{'+' if p['meets'] else '-'}" for p in found["probes"])
    best = found["best_concurrency"]
    # Agree: the same level, or every sweep level between the two answers was a close call in the
    # sweep's own data (its p99's 95% interval straddled the bound: 100 requests cannot decide it).
    between = [c for c in levels if min(best or 0, sweep_best or 0) < c <= max(best or 0, sweep_best or 0)]
    agree = best == sweep_best or all(verdicts[c].close_call for c in between)
    calls = ", ".join(f"{c}{' (close call)' if verdicts[c].close_call else ''}" for c in between)
    print(f"== SLO {slo}")
    print(
        f"find-max   {fm_wall:6.1f} s, {len(found['probes'])} probes ({probes}): concurrency {best} "
        f"in [{best}, {found['first_failing_concurrency']})"
    )
    print(
        f"full sweep {sweep_wall:6.1f} s, {len(levels)} levels: best SLO-meeting level {sweep_best} "
        f"(levels meeting it: {', '.join(map(str, meeting))}; the sweep recommends {recommended})"
    )
    if between:
        print(f"sweep levels between the two answers: {calls}")
    print(f"agree: {'yes' if agree else 'NO'}; find-max took {fm_wall / sweep_wall:.2f}x the sweep's time")


def _records(run_dir: Path) -> list:
    return list(read_records(run_dir / "records.jsonl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the TTFT SLO only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for slo in ("ttft=200ms",) if args.quick else ("ttft=200ms", "e2e=275ms"):
            compare(slo, Path(tmp))


if __name__ == "__main__":
    main()
