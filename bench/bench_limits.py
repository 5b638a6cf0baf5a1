"""Limits the client is not told: a run with no limit flags against hand-tuned flags, same run.

    python bench/bench_limits.py            # about 3 minutes
    python bench/bench_limits.py --quick    # about 1.5 minutes

The built-in endpoint (its own process, 127.0.0.1) enforces 600 requests/min and a tokens/min
limit that binds first (each request costs prompt + max_tokens, as OpenAI reserves it), and
announces them in its rate-limit headers (OpenAI's format). A fresh endpoint per run; before
each run "another process" spends 90% of the minute's token budget, so no run can finish inside
the first minute's burst and every run must be paced by the refill. Runs, each `batchrun run`
as a whole process:

- no limit flags (batchrun's default: --rpm auto --tpm auto, paced by the headers);
- hand-tuned: --rpm 600 --tpm <the limit>, and --tpm <the limit> alone;
- reference: --rpm off --tpm off (no pacing at all: what batchrun did before learning limits).

Target: no flags within 10% of the best hand-tuned wall time, with <= 2% of requests 429.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.endpoint.requests import estimate_request_tokens  # noqa: E402
from batchrun.sim import SimConfig, SimProcess  # noqa: E402

RPM = 600
MAX_TOKENS = 64
CONCURRENCY = 16


def run(base_url: str, prompts: Path, out: Path, flags: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "batchrun",
        "run",
        str(prompts),
        "--base-url",
        base_url,
        "-c",
        str(CONCURRENCY),
        "--max-tokens",
        str(MAX_TOKENS),
        "--out",
        str(out),
        "-q",
        "--retries",
        "8",
        *flags,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())["summary"]
    limits = summary["rate_limits"]
    return {
        "wall": wall,
        "ok": summary["counts"]["ok"],
        "total": summary["counts"]["total"],
        "attempts": limits["attempts"],
        "429": limits["rate_limited"],
    }


async def spend(base_url: str, tokens: int) -> None:
    """Another process takes `tokens` of the minute's token budget (prompt + max_tokens each)."""
    async with aiohttp.ClientSession() as session:

        async def one(cost: int) -> None:
            body = {"model": "batchrun-sim", "messages": [{"role": "user", "content": "x"}], "max_tokens": cost}
            async with session.post(base_url + "/chat/completions", json=body) as resp:
                await resp.read()
                assert resp.status == 200, resp.status

        await asyncio.gather(*(one(tokens // 4) for _ in range(4)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    args = parser.parse_args()
    n = 90 if args.quick else 160
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        prompts = tmp / "prompts.jsonl"
        texts = [f"Summarise item {i} of the benchmark in one line." for i in range(n)]
        prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
        body = {"messages": [{"role": "user", "content": texts[0]}], "max_tokens": MAX_TOKENS}
        cost = estimate_request_tokens(body)
        # A tokens/min limit that allows ~40% of the requests/min limit: it binds first.
        tpm = int(cost * RPM * 0.4)
        print(
            f"== {n} requests of ~{cost} tokens at concurrency {CONCURRENCY}; the endpoint allows "
            f"{RPM} requests/min and {tpm:,} tokens/min ({tpm / cost:.0f} requests/min: tokens bind)"
        )
        runs = {
            "no limit flags (auto)": [],
            f"hand-tuned --rpm {RPM} --tpm {tpm}": ["--rpm", str(RPM), "--tpm", str(tpm)],
            f"hand-tuned --tpm {tpm}": ["--rpm", "off", "--tpm", str(tpm)],
            "reference: --rpm off --tpm off": ["--rpm", "off", "--tpm", "off"],
        }
        results = {}
        for i, (name, flags) in enumerate(runs.items()):
            with SimProcess(SimConfig(rpm=RPM, tpm=tpm, ttft_s=0.1, itl_s=0.005, output_tokens=MAX_TOKENS)) as sim:
                asyncio.run(spend(sim.base_url, int(tpm * 0.9)))
                results[name] = run(sim.base_url, prompts, tmp / f"out{i}", flags)
            r = results[name]
            print(
                f"{name:42} {r['wall']:7.1f} s   {r['ok']}/{r['total']} ok   "
                f"429s {r['429']}/{r['attempts']} ({r['429'] / r['attempts']:.1%})"
            )
    auto = results["no limit flags (auto)"]
    tuned = {k: v for k, v in results.items() if k.startswith("hand-tuned") and v["429"] / v["attempts"] <= 0.02}
    best_name, best = min(tuned.items(), key=lambda kv: kv[1]["wall"]) if tuned else (None, None)
    if best is None:
        print("no hand-tuned run stayed at <= 2% 429s")
        return
    ratio = auto["wall"] / best["wall"]
    print(
        f"no flags / best hand-tuned ({best_name}): {ratio:.3f}x wall time "
        f"(target <= 1.10); 429s {auto['429'] / auto['attempts']:.1%} of attempts (target <= 2%)"
    )


if __name__ == "__main__":
    main()
