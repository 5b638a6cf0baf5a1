"""How often `batchrun compare` cries wolf, and how often it catches a real regression.

    python bench/bench_compare.py                 # 40 identical pairs + 40 regressed pairs, ~30-40 min
    python bench/bench_compare.py --pairs 10      # a quicker look
    python bench/bench_compare.py -n 100          # a fixed sample size instead of the default sizing

Each run is a real `batchrun bench` of the CI recipe's shape (one level, --no-sync, -c 8, the
default per-level sample size unless -n is given) against the built-in endpoint, started per run
with its own random seed and realistic noise (fresh lognormal jitter per request, sigma 0.2): its
TTFT model as shipped (250 ms plus prefill), its gaps between tokens cut to 5 ms so that 120 runs
take half an hour, not two. Every run uses the same prompts. It prints the requests each run
measured (the default sizing decides them from each run's own spread).

1. False alarms: pairs of identical configurations, compared at the default tolerances (the
   README's): the share of pairs with any figure `regressed` (target <= 5%), and the share with an
   inconclusive figure. Same-run baseline: the old point comparison on the same pairs with the
   README's example tolerances (latency_p99=10%, ttft_p50=10%, throughput=-5%).
2. Detection: the baseline of each pair against a run whose endpoint has a 20% longer TTFT
   (ttft_s and prefill both x1.2): the share of pairs where ttft_p50 is `regressed` (target >= 95%).
Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.analysis.compare import compare  # noqa: E402
from batchrun.bench.sweep import BenchConfig, execute_bench  # noqa: E402
from batchrun.config import RunConfig  # noqa: E402

PROMPTS = Path(__file__).resolve().parent.parent / "samples" / "prompts.csv"
SCALED = ("ttft_s={ttft}", "prefill_s_per_token={prefill}", "itl_s=0.005")
TTFT_S, PREFILL_S = 0.25, 0.0002          # the built-in endpoint's defaults
EXAMPLE_TOLERANCES = "latency_p99=10%,ttft_p50=10%,throughput=-5%"


def bench_config(n: int | None, concurrency: int, slower: float) -> BenchConfig:
    options = tuple(o.format(ttft=TTFT_S * slower, prefill=PREFILL_S * slower) for o in SCALED)
    run = RunConfig.of(path=PROMPTS, max_tokens=32, timeout=60.0, retries=0, on_bad_row="skip", quiet=True,
                       builtin_options=options)
    return BenchConfig(run=run, requests=n, concurrencies=(concurrency,), sync=False)


def one_run(out: Path, n: int | None, concurrency: int, slower: float = 1.0) -> Path:
    asyncio.run(execute_bench(bench_config(n, concurrency, slower), out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("-n", type=int, default=None,
                        help="requests per run (default: bench's own per-level sizing, as the CI recipe)")
    parser.add_argument("-c", type=int, default=8, help="concurrency (the CI recipe's)")
    args = parser.parse_args()
    started = time.perf_counter()
    alarms = inconclusive = point_alarms = hits = 0
    effects: list[float] = []
    sizes: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.pairs):
            a = one_run(root / f"a{i}", args.n, args.c)
            b = one_run(root / f"b{i}", args.n, args.c)
            slow = one_run(root / f"s{i}", args.n, args.c, slower=1.2)
            sizes += [measured(a), measured(b), measured(slow)]
            same = compare(a, b, defaults=True)
            alarms += not same.passed
            inconclusive += bool(same.inconclusive)
            point = compare(same_summary(a), same_summary(b), EXAMPLE_TOLERANCES)
            point_alarms += not point.passed
            worse = compare(a, slow, defaults=True, figures=["ttft_p50"])
            hits += worse.changes[0].status == "regressed"
            effects.append(worse.changes[0].change_pct)
            regressed = [c.name for c in same.changes if c.status == "regressed"]
            print(f"pair {i + 1:>3}: identical -> {'REGRESSED ' + ','.join(regressed) if regressed else 'pass'}"
                  f"{' (inconclusive: ' + ','.join(c.name for c in same.changes if c.status == 'inconclusive') + ')' if same.inconclusive else ''}"
                  f"; ttft +20% -> {worse.changes[0].status} {worse.changes[0].low:+.1f}%..{worse.changes[0].high:+.1f}%"
                  f"; n {sizes[-3]}/{sizes[-2]}/{sizes[-1]}",
                  flush=True)
    k = args.pairs
    ordered = sorted(sizes)
    print(f"\n{k} pairs, -c {args.c} -n {args.n or 'default sizing'}, {time.perf_counter() - started:.0f} s")
    print(f"requests per run: min {ordered[0]}, median {ordered[len(ordered) // 2]}, max {ordered[-1]} "
          f"(mean {sum(sizes) / len(sizes):.0f}, {len(sizes)} runs)")
    print(f"false alarms (identical pairs, default tolerances):   {alarms}/{k} = {alarms / k:.1%}  (target <= 5%)")
    print(f"  pairs with an inconclusive figure:                 {inconclusive}/{k} = {inconclusive / k:.1%}")
    print(f"  same-run baseline, old point gate ({EXAMPLE_TOLERANCES}): "
          f"{point_alarms}/{k} = {point_alarms / k:.1%}")
    print(f"detection of a 20% TTFT p50 regression:               {hits}/{k} = {hits / k:.1%}  (target >= 95%)")
    print(f"  measured TTFT p50 change in those pairs: median {sorted(effects)[len(effects) // 2]:+.1f}%")


def measured(run_dir: Path) -> int:
    """The bench's measured requests (its one level)."""
    return sum(1 for _ in next((run_dir / "runs").glob("*/records.jsonl")).open())


def same_summary(run_dir: Path) -> dict:
    """The bench's headline summary alone (what the old gate compared: no records)."""
    import json

    return json.loads((run_dir / "summary.json").read_text())["summary"]


if __name__ == "__main__":
    main()
