"""How long does a one-row `batchrun run` take, end to end, as a whole process?

    python bench/bench_startup.py [--runs 7]

Starts `batchrun serve --fast --port 0 -q` in a child process on 127.0.0.1, writes a one-row CSV to
a temporary directory, then times N whole-process calls of
`batchrun run in.csv --base-url URL -q --out tmp/runK` (wall clock, from spawn to exit) and prints
the median. Same-run baselines, timed the same way: `python -c pass` (the interpreter alone) and
`python -c "import batchrun.cli"` (the CLI module and what it imports at load). Ratios are to
`python -c pass`. Beside the wall clock, the median CPU time (user + system) of each child: on a
shared machine it moves much less than the wall clock does. Loopback only; the server is a
child process this script stops.

Bytecode is cached as for any installed package: PYTHONDONTWRITEBYTECODE is dropped from the
children's environment and one warm-up run writes the .pyc files (without them, compiling ~80
modules adds ~0.3 s to every run, which no pip-installed batchrun pays).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _batchrun() -> list[str]:
    return [sys.executable, "-c", "from batchrun.cli import main; main()"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(cmd: list[str], runs: int, env: dict[str, str], make_args=None) -> tuple[float, float]:
    """Median wall-clock and median CPU seconds of `runs` whole-process runs of `cmd`."""
    walls, cpus = [], []
    for k in range(runs):
        args = cmd + (make_args(k) if make_args else [])
        t0, c0 = time.perf_counter(), _cpu()
        proc = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode()}")
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="whole-process timings per command (median shown)")
    opts = ap.parse_args()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "BATCHRUN_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    server = subprocess.Popen(
        _batchrun() + ["serve", "--fast", "--host", "127.0.0.1", "--port", "0", "-q"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"the sim did not start: {url!r}")
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp, "in.csv")
            data.write_text("id,prompt\nr1,Name a famous bridge in San Francisco.\n")
            run_cmd = _batchrun() + ["run", str(data), "--base-url", url, "-q"]
            _time(run_cmd, 1, env, lambda k: ["--out", str(Path(tmp, "warm"))])  # file cache, .pyc files
            bare = _time([sys.executable, "-c", "pass"], opts.runs, env)
            cli = _time([sys.executable, "-c", "import batchrun.cli"], opts.runs, env)
            one = _time(run_cmd, opts.runs, env, lambda k: ["--out", str(Path(tmp, f"run{k}"))])
    finally:
        server.terminate()
        server.wait(timeout=10)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"load average at the end (1 / 5 / 15 min): {load} on {os.cpu_count()} cores; above the core count, "
        "other work shares the CPU and the wall clock grows with it"
    )
    print(f"median of {opts.runs} whole-process runs each:      wall clock        CPU (user+sys)")
    for name, (wall, cpu) in (
        ("python -c pass", bare),
        ("python -c 'import batchrun.cli'", cli),
        ("batchrun run (1 row, -q)", one),
    ):
        print(f"  {name:32s} {wall * 1000:6.0f} ms {wall / bare[0]:5.1f}x   {cpu * 1000:6.0f} ms {cpu / bare[1]:5.1f}x")


if __name__ == "__main__":
    main()
