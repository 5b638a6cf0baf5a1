"""batchrun's synthetic-workload figures against the truth the built-in endpoint injects.

    python bench/bench_synthetic.py            # about half a minute
    python bench/bench_synthetic.py --quick

1. Fixed-latency mode (TTFT 50 ms, 5 ms between chunks, no queue, no jitter): `batchrun run
   --synthetic prompt_tokens=512,output_tokens=64,stdev=64` at concurrency 32. Truth per request:
   TTFT = 50 ms, TPOT = ITL = 5 ms, latency = 50 + 63 * 5 = 365 ms, output tokens = 64 (held by
   max_tokens + ignore_eos), prompt tokens = the requested length (the endpoint counts ceil(chars / 4)).
   Printed: measured p50 / p99 beside the truth, and requested vs realised lengths.
2. Prefix sharing in the latency model without jitter (TTFT = 20 ms + 0.2 ms per uncached prompt
   token): the same workload with and without shared_prefix_tokens=448; truth for the saving in
   mean TTFT = 0.2 ms x (prefix-cache hit tokens the endpoint reports) / requests.
Everything runs on 127.0.0.1 (endpoint in a child process) and stops by itself.
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


def run(base_url: str, spec: str, concurrency: int, out: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "batchrun",
        "run",
        "--synthetic",
        spec,
        "--base-url",
        base_url,
        "-c",
        str(concurrency),
        "--out",
        str(out),
        "-q",
        "--retries",
        "0",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())["summary"]


def row(name: str, dist: dict, truth_s: float) -> str:
    p50, p99 = dist["p50"] * 1e3, dist["p99"] * 1e3
    return (
        f"{name:<10} truth {truth_s * 1e3:7.1f} ms   measured p50 {p50:7.1f} ms ({p50 - truth_s * 1e3:+6.1f})"
        f"   p99 {p99:7.1f} ms ({p99 - truth_s * 1e3:+6.1f})   n={dist['count']}"
    )


def fixed_mode(n: int) -> None:
    ttft, itl, out_tokens = 0.05, 0.005, 64
    spec = f"prompt_tokens=512,output_tokens={out_tokens},stdev=64,n={n},seed=1"
    print(f"== fixed-latency endpoint (TTFT {ttft * 1e3:.0f} ms, ITL {itl * 1e3:.0f} ms): --synthetic {spec}, -c 32")
    with SimProcess(SimConfig(fixed_ttft_s=ttft, fixed_itl_s=itl)) as sim, tempfile.TemporaryDirectory() as tmp:
        s = run(sim.base_url, spec.replace("stdev=64", "output_stdev=0,prompt_stdev=64"), 32, Path(tmp) / "o")
    print(row("TTFT", s["ttft_s"], ttft))
    print(row("ITL", s["itl_s"], itl))
    print(row("TPOT", s["tpot_s"], itl))
    print(row("latency", s["latency_s"], ttft + (out_tokens - 1) * itl))
    syn = s["synthetic"]
    for key in ("prompt_tokens", "output_tokens"):
        req, real, err = syn["requested"][key], syn["realised"][key], syn[f"{key}_error"]
        print(
            f"{key:<14} requested mean {req['mean']:.1f} (p50 {req['p50']:.0f})   realised mean {real['mean']:.1f} "
            f"(p50 {real['p50']:.0f})   per-row error min {err['min']:+.0f} max {err['max']:+.0f}   n={real['count']}"
        )
    print(f"sizing: {syn['sizing']['source']}")


def prefix_sharing(n: int) -> None:
    base, prefill = 0.02, 0.0002
    config = SimConfig(ttft_s=base, prefill_s_per_token=prefill, itl_s=0.001, jitter=0.0, max_concurrency=1024)
    print(
        f"== prefix sharing, latency model without jitter: TTFT = {base * 1e3:.0f} ms + {prefill * 1e3:.1f} ms "
        "per uncached prompt token"
    )
    means = {}
    for label, extra in (("no sharing", ""), ("shared 448", ",shared_prefix_tokens=448,prefix_pool=4")):
        spec = f"prompt_tokens=512,output_tokens=8,n={n},seed=2{extra}"
        with SimProcess(config) as sim, tempfile.TemporaryDirectory() as tmp:
            s = run(sim.base_url, spec, 8, Path(tmp) / "o")
            hits = sim.stats()["prefix_cache_hit_tokens"]
        means[label] = (s["ttft_s"]["mean"], hits, s["ttft_s"]["count"])
        truth = base + prefill * (s["synthetic"]["realised"]["prompt_tokens"]["mean"] - hits / s["ttft_s"]["count"])
        print(
            f"{label:<11} mean TTFT {s['ttft_s']['mean'] * 1e3:6.1f} ms (truth {truth * 1e3:6.1f} ms)   "
            f"cache hit tokens {hits}   n={s['ttft_s']['count']}"
        )
    (a, _, count), (b, hits, _) = means["no sharing"], means["shared 448"]
    truth = prefill * hits / count
    print(f"saving in mean TTFT: measured {(a - b) * 1e3:.1f} ms, truth {truth * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    fixed_mode(400 if args.quick else 2000)
    prefix_sharing(100 if args.quick else 400)


if __name__ == "__main__":
    main()
