"""`--concurrency auto` against a server with a capacity knee: how fast it settles, how near the
knee, and how much it swings once settled.

    python bench/bench_adaptive.py            # knees 16 and 32, about 2.5 minutes
    python bench/bench_adaptive.py --quick    # knee 16 only

The built-in endpoint (its own process, 127.0.0.1) decodes at most `--max-concurrency` sequences
at once (the knee) and queues the rest FIFO; below the knee each extra sequence slows every
token by 3% (its load factor). `batchrun run --concurrency auto` runs ~75 s of requests
against it; the concurrency limit over time is read from summary.json.

Figures: the settle time (the first moment after which the limit stays within +-25% of the knee),
the settled value batchrun recommends, and the largest swing after settling, as a share of the
settled value. Targets: settles within 30 s, within +-25% of the knee, swings <= 20%.
A same-run baseline: a fixed -c at the knee, for the throughput auto gives up while it searches.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.sim import SimConfig, SimProcess  # noqa: E402

MAX_TOKENS = 64


def run(base_url: str, prompts: Path, out: Path, concurrency: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "batchrun",
        "run",
        str(prompts),
        "--base-url",
        base_url,
        "-c",
        concurrency,
        "--max-tokens",
        str(MAX_TOKENS),
        "--out",
        str(out),
        "-q",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())["summary"]


def settle_time(history: list[list[float]], knee: int, end: float) -> float | None:
    """The first time after which the limit stays within +-25% of the knee to the end."""
    inside_from = None
    for t, limit in history:
        if abs(limit - knee) <= 0.25 * knee:
            inside_from = t if inside_from is None else inside_from
        else:
            inside_from = None
    return inside_from if inside_from is not None and inside_from <= end else None


def measure(knee: int, tmp: Path) -> None:
    # One request takes about 0.25 s + 64 x 25 ms x (1 + 0.03 x 15) = 2.6 s at the knee.
    n = int(75 * knee / 2.6)
    prompts = tmp / f"prompts-{knee}.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(n)))
    config = SimConfig(max_concurrency=knee, output_tokens=MAX_TOKENS)
    with SimProcess(config) as sim:
        auto = run(sim.base_url, prompts, tmp / f"auto-{knee}", "auto")
    with SimProcess(config) as sim:
        fixed = run(sim.base_url, prompts, tmp / f"fixed-{knee}", str(knee))
    conc = auto["concurrency"]
    history, end = conc["history"], auto["wall_time_s"]
    settled_at = settle_time(history, knee, end)
    after = [limit for t, limit in history if settled_at is not None and t >= settled_at]
    swing = max(abs(limit - conc["settled"]) for limit in after) / conc["settled"] if after else None
    print(
        f"== knee {knee}: {n} requests, auto ran {end:.0f} s, {len(history) - 1} changes "
        f"({' '.join(str(int(x[1])) for x in history[:8])} ...)"
    )
    print(
        f"settled within +-25% of the knee after {settled_at:.1f} s (target <= 30 s)"
        if settled_at is not None
        else "never settled within +-25% of the knee"
    )
    print(
        f"settled value (recommended -c) {conc['settled']} = {conc['settled'] / knee:.2f}x the knee "
        f"(target 0.75-1.25x); largest swing after settling {swing:.0%} (target <= 20%)"
        if swing is not None
        else f"settled value {conc['settled']}"
    )
    ratio = auto["throughput"]["requests_per_s"] / fixed["throughput"]["requests_per_s"]
    print(
        f"throughput auto / fixed -c {knee}: {ratio:.2f}x ({auto['throughput']['requests_per_s']:.2f} vs "
        f"{fixed['throughput']['requests_per_s']:.2f} req/s); p50 TTFT {auto['ttft_s']['p50'] * 1e3:.0f} ms vs "
        f"{fixed['ttft_s']['p50'] * 1e3:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="knee 16 only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for knee in (16,) if args.quick else (16, 32):
            measure(knee, Path(tmp))


if __name__ == "__main__":
    main()
