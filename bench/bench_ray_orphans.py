"""After a SIGKILLed driver of a local Ray cluster: how long until no process of that cluster runs.

    nice -n 5 python bench/bench_ray_orphans.py            # batchrun, then Ray alone (~2 minutes)
    nice -n 5 python bench/bench_ray_orphans.py --quick    # batchrun only

1. batchrun: `batchrun run --ray --workers 2` (plain --ray: the driver starts its own local cluster)
   against the built-in endpoint (its own process, 127.0.0.1), SIGKILLed once 100 records are on
   disk; the figure is the seconds from the kill until none of the driver's descendants (taken
   just before the kill: GCS, raylet, its agents, the actors, the watchdog) runs any more.
2. Baseline, Ray alone, in the same run: a bare driver (`ray.init()` and one actor, no batchrun)
   SIGKILLed the same way; the same figure, capped at CAP_S. Ray ends its GCS and raylet with the
   driver; the raylet's agents wait on the dead GCS.
Each driver gets a Ray temp dir of its own, so no cluster is joined by mistake; whatever is left
at CAP_S is SIGKILLed by this script (only processes it identified as that driver's).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import ray  # noqa: E402,F401 (puts the psutil Ray ships on sys.path)

from batchrun.engine.ray_watchdog import running  # noqa: E402
from batchrun.sim import SimConfig, SimProcess  # noqa: E402

CAP_S = 120.0
BARE_DRIVER = """
import ray, time
ray.init(include_dashboard=False, num_cpus=2)
@ray.remote
class A:
    def ping(self):
        return 1
a = A.remote()
ray.get(a.ping.remote())
print("ready", flush=True)
time.sleep(600)
"""


def kill_and_time(driver: subprocess.Popen[Any]) -> tuple[float, int, list[str]]:
    """SIGKILL `driver`; (seconds until none of its descendants runs, how many there were, the
    names of those still running at CAP_S)."""
    procs = psutil.Process(driver.pid).children(recursive=True)
    driver.kill()
    killed_at = time.monotonic()
    driver.wait()
    left = running(procs)
    while left and time.monotonic() - killed_at < CAP_S:
        time.sleep(0.05)
        left = running(procs)
    took = time.monotonic() - killed_at
    names = []
    for proc in left:
        names.append(proc.name())
        proc.kill()
    return took, len(procs), names


def in_own_ray_tmp(start: Callable[[dict[str, str]], tuple[float, int, list[str]]]) -> tuple[float, int, list[str]]:
    with tempfile.TemporaryDirectory(prefix="brray", dir="/tmp") as ray_tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
        return start({**env, "RAY_TMPDIR": ray_tmp})


def batchrun_driver(env: dict[str, str]) -> tuple[float, int, list[str]]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimProcess(SimConfig(fixed_ttft_s=0.004, fixed_itl_s=0.002, output_tokens=4)) as sim,
    ):
        (Path(tmp) / "p.csv").write_text("id,prompt\n" + "".join(f"q{i},question {i}\n" for i in range(20_000)))
        records = Path(tmp) / "o" / "records.jsonl"
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchrun",
                "run",
                "p.csv",
                "--base-url",
                sim.base_url,
                "-q",
                "--ray",
                "--workers",
                "2",
                "-c",
                "4",
                "--out",
                "o",
            ],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while not (records.exists() and records.read_bytes().count(b"\n") >= 100):
            if driver.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the --ray run ended or stalled before 100 records")
            time.sleep(0.05)
        return kill_and_time(driver)


def bare_driver(env: dict[str, str]) -> tuple[float, int, list[str]]:
    driver = subprocess.Popen(
        [sys.executable, "-c", BARE_DRIVER],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert driver.stdout is not None
    if driver.stdout.readline().strip() != "ready":
        raise SystemExit("the bare Ray driver did not start")
    return kill_and_time(driver)


def show(label: str, figures: tuple[float, int, list[str]]) -> None:
    took, n, left = figures
    tail = f"; still running at {CAP_S:.0f} s: {', '.join(left)}" if left else ""
    print(f"{label:<34} {took:6.2f} s until none of its {n} descendant processes runs{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batchrun only, no Ray-alone baseline")
    args = parser.parse_args()
    ours = in_own_ray_tmp(batchrun_driver)
    show("batchrun run --ray, SIGKILLed:", ours)
    if args.quick:
        return
    bare = in_own_ray_tmp(bare_driver)
    show("Ray alone (ray.init), SIGKILLed:", bare)
    print(f"ratio (Ray alone / batchrun): {bare[0] / max(ours[0], 1e-3):.0f}x")


if __name__ == "__main__":
    main()
