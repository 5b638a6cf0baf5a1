"""How often `batchrun compare` cries wolf, and how often it catches a real regression.

    python bench/bench_compare.py                 # 40 identical pairs + 40 regressed pairs, ~30-40 min
    python bench/bench_compare.py --pairs 10      # a quicker look
    python bench/bench_compare.py -n 100          # a fixed sample size instead of the default sizing
    python bench/bench_compare.py --pairs 0       # only the failure share's exact error rates (1 s)

Each run is a real `batchrun bench` of the CI recipe's shape (one level, --no-sync, -c 8, the
default per-level sample size unless -n is given) against the built-in endpoint, started per run
with its own random seed and realistic noise (fresh lognormal jitter per request, sigma 0.2): its
TTFT model as shipped (250 ms plus prefill), its gaps between tokens cut to 5 ms so that 120 runs
take half an hour, not two. Every run uses the same prompts. It prints the requests each run
measured (the default sizing decides them from each run's own spread).

1. False alarms: pairs of identical configurations, compared at the default tolerances (those of
   docs/ci-gate.md): the share of pairs with any figure `regressed` (target <= 5%), and the share
   with an inconclusive figure. Same-run baseline: the old point comparison on the same pairs with
   the docs' former example tolerances (latency_p99=10%, ttft_p50=10%, throughput=-5%).
   What a pass prints: pairs whose text output is not empty, and the most `::warning` lines one
   identical pair gave in `--format github` (at most one).
2. Detection: the baseline of each pair against a run whose endpoint has a 20% longer TTFT
   (ttft_s and prefill both x1.2): the share of pairs where ttft_p50 is `regressed` (target >= 95%).
3. Failures (with --failure-rate R): the baseline against a run whose endpoint fails a share R
   of requests with HTTP 500 (no retries): the share of pairs where failure_share is `regressed`.
4. The failure share's test, exactly: for n requests a side and true failure shares p1 -> p2, the
   probability of each verdict, summed over every pair of binomial counts (no simulation).
Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.analysis import stats  # noqa: E402
from batchrun.analysis.compare import DEFAULT_TOLERANCES, compare  # noqa: E402
from batchrun.bench.sweep import BenchConfig, execute_bench  # noqa: E402
from batchrun.config import RunConfig  # noqa: E402
from batchrun.report.compare import console_output  # noqa: E402

PROMPTS = Path(__file__).resolve().parent.parent / "samples" / "prompts.csv"
SCALED = ("ttft_s={ttft}", "prefill_s_per_token={prefill}", "itl_s=0.005")
TTFT_S, PREFILL_S = 0.25, 0.0002  # the built-in endpoint's defaults
EXAMPLE_TOLERANCES = "latency_p99=10%,ttft_p50=10%,throughput=-5%"
# The default gate before failures were gated: success_rate=-0.05 regressed only when the whole
# interval of the rise was past 5 points, which is what failure_share=5pt's regressed verdict is.
BEFORE = "failure_share=5pt"


def bench_config(n: int | None, concurrency: int, slower: float, failing: float = 0.0) -> BenchConfig:
    options = tuple(o.format(ttft=TTFT_S * slower, prefill=PREFILL_S * slower) for o in SCALED)
    options += (f"error_500_rate={failing}",) if failing else ()
    run = RunConfig.of(
        path=PROMPTS, max_tokens=32, timeout=60.0, retries=0, on_bad_row="skip", quiet=True, builtin_options=options
    )
    return BenchConfig(run=run, requests=n, concurrencies=(concurrency,), sync=False)


def one_run(out: Path, n: int | None, concurrency: int, slower: float = 1.0, failing: float = 0.0) -> Path:
    asyncio.run(execute_bench(bench_config(n, concurrency, slower, failing), out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument(
        "-n", type=int, default=None, help="requests per run (default: bench's own per-level sizing, as the CI recipe)"
    )
    parser.add_argument("-c", type=int, default=8, help="concurrency (the CI recipe's)")
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=0.0,
        help="also run a failing side per pair: this share of requests fails (e.g. 0.05)",
    )
    args = parser.parse_args()
    exact_failure_share()
    if args.pairs:
        pairs(args)


def pairs(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    alarms = inconclusive = point_alarms = hits = failing_hits = loud_passes = most_warnings = 0
    alarms_before = failing_before = 0
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
            alarms_before += not compare(a, b, BEFORE, defaults=True).passed
            inconclusive += bool(same.inconclusive)
            point = compare(same_summary(a), same_summary(b), EXAMPLE_TOLERANCES)
            point_alarms += not point.passed
            if same.passed:
                loud_passes += console_output(same, "text") != ""
                most_warnings = max(
                    most_warnings,
                    sum(line.startswith("::warning") for line in console_output(same, "github").splitlines()),
                )
            worse = compare(a, slow, defaults=True, figures=["ttft_p50"])
            hits += worse.changes[0].status == "regressed"
            if args.failure_rate:
                failing = one_run(root / f"f{i}", args.n, args.c, failing=args.failure_rate)
                share = compare(a, failing, defaults=True, figures=["failure_share"]).changes[0]
                failing_hits += share.status == "regressed"
                failing_before += (
                    compare(a, failing, BEFORE, defaults=True, figures=["failure_share"]).changes[0].status
                    == "regressed"
                )
                print(
                    f"          failing {args.failure_rate:.0%} -> failure_share {share.status} "
                    f"{share.current:.1%} [{share.low * 100:+.1f} pt, {share.high * 100:+.1f} pt] "
                    f"(n={share.n_baseline}/{share.n_current})",
                    flush=True,
                )
            effects.append(worse.changes[0].change_pct)
            regressed = [c.name for c in same.changes if c.status == "regressed"]
            print(
                f"pair {i + 1:>3}: identical -> {'REGRESSED ' + ','.join(regressed) if regressed else 'pass'}"
                f"{' (inconclusive: ' + ','.join(c.name for c in same.changes if c.status == 'inconclusive') + ')' if same.inconclusive else ''}"
                f"; ttft +20% -> {worse.changes[0].status} {worse.changes[0].low:+.1f}%..{worse.changes[0].high:+.1f}%"
                f"; n {sizes[-3]}/{sizes[-2]}/{sizes[-1]}",
                flush=True,
            )
    k = args.pairs
    ordered = sorted(sizes)
    print(f"\n{k} pairs, -c {args.c} -n {args.n or 'default sizing'}, {time.perf_counter() - started:.0f} s")
    print(
        f"requests per run: min {ordered[0]}, median {ordered[len(ordered) // 2]}, max {ordered[-1]} "
        f"(mean {sum(sizes) / len(sizes):.0f}, {len(sizes)} runs)"
    )
    print(f"false alarms (identical pairs, default tolerances):   {alarms}/{k} = {alarms / k:.1%}  (target <= 5%)")
    print(f"  same pairs, the default gate before (success_rate=-0.05): {alarms_before}/{k}")
    print(f"  pairs with an inconclusive figure:                 {inconclusive}/{k} = {inconclusive / k:.1%}")
    print(f"  same-run baseline, old point gate ({EXAMPLE_TOLERANCES}): {point_alarms}/{k} = {point_alarms / k:.1%}")
    print(f"  passes that printed anything (text format):        {loud_passes}")
    print(f"  most ::warning lines from one identical pair:      {most_warnings}  (at most 1)")
    print(f"detection of a 20% TTFT p50 regression:               {hits}/{k} = {hits / k:.1%}  (target >= 95%)")
    if args.failure_rate:
        print(
            f"detection of {args.failure_rate:.0%} failed requests (failure_share): "
            f"{failing_hits}/{k} = {failing_hits / k:.1%}; the default gate before: {failing_before}/{k}"
        )
    print(f"  measured TTFT p50 change in those pairs: median {sorted(effects)[len(effects) // 2]:+.1f}%")


def exact_failure_share() -> None:
    """P(regressed) and P(inconclusive) of the default failure-share gate, exactly: every pair of
    failure counts (k1, k2) of n requests a side, weighted by their binomial probabilities."""
    tol = DEFAULT_TOLERANCES["failure_share"].limit
    print(f"failure_share gate (+{tol * 100:g} pt), exact: P(regressed) / P(inconclusive)")
    cases = [
        (0.0, 0.0),
        (0.01, 0.01),
        (0.02, 0.02),
        (0.05, 0.05),
        (0.0, 0.03),
        (0.0, 0.05),
        (0.0, 0.10),
        (0.01, 0.05),
        (0.02, 0.06),
    ]
    print(
        "  p1 -> p2     "
        + "".join(f"n={n:<16}" for n in (100, 200, 400))
        + "before: success_rate=-0.05, n=200, P(regressed)"
    )
    columns = {n: verdict_grid(n, tol) for n in (100, 200, 400)}
    before = verdict_grid(200, 0.05)[0]  # the old default: the whole interval past 5 points
    for p1, p2 in cases:
        cells = []
        for n, (regressed, undecided) in columns.items():
            weight = np.outer(binomial(n, p1), binomial(n, p2))
            cells.append(f"{(weight * regressed).sum():6.1%} / {(weight * undecided).sum():5.1%}   ")
        old = (np.outer(binomial(200, p1), binomial(200, p2)) * before).sum()
        print(f"  {p1:4.0%} -> {p2:4.0%}  " + "".join(cells) + f"{old:6.1%}")
    print()


def verdict_grid(n: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(regressed, inconclusive) for every (k1 failed of n, k2 failed of n), as compare judges it."""
    regressed, undecided = np.zeros((n + 1, n + 1)), np.zeros((n + 1, n + 1))
    for k1 in range(n + 1):
        for k2 in range(n + 1):
            iv = stats.proportion_difference(k1, n, k2, n)
            regressed[k1, k2] = iv.low > tol + 1e-12
            undecided[k1, k2] = not regressed[k1, k2] and iv.estimate > tol + 1e-12
    return regressed, undecided


def binomial(n: int, p: float) -> np.ndarray:
    return np.diff(stats.binom_cdf_all(n, p), prepend=0.0) if p else np.eye(n + 1)[0]


def measured(run_dir: Path) -> int:
    """The bench's measured requests (its one level)."""
    return sum(1 for _ in next((run_dir / "runs").glob("*/records.jsonl")).open())


def same_summary(run_dir: Path) -> dict:
    """The bench's headline summary alone (what the old gate compared: no records)."""
    import json

    return json.loads((run_dir / "summary.json").read_text())["summary"]


if __name__ == "__main__":
    main()
