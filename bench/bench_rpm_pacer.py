"""The request-rate pacer (--rpm): aiolimiter against batchrun's own bucket, in the same run.

    python bench/bench_rpm_pacer.py            # about 2 minutes
    python bench/bench_rpm_pacer.py --quick    # about 40 s

Pacers, each admitting requests one unit at a time: batchrun's own bucket (engine/limits.py
`Bucket`, which paced --rpm before), batchrun's RequestPacer (aiolimiter's AsyncLimiter under a
first-come-first-served lock, a new rate swapped in with what the new limiter is owed), and a bare
AsyncLimiter configured two ways: a one-second burst (rate/s per 1 s) and a minute's (rpm per 60 s);
a new rate replaces the bare limiter (callers already waiting on the old one stay there).

1. Rate accuracy, on an event loop with a virtual clock (tests/virtualloop.py: the loop's `time()`
   jumps to the next timer, so a simulated hour takes a second; all pacers read `loop.time()`):
   the most requests admitted in any sliding 60 s and any sliding 1 s window, over what the limit
   allows in it (the integral of the rate, so a window across a rate change is judged against
   both), and the requests admitted over the run / what the limit allows. Demands:
   - saturating: 64 workers, each asking again 0.5-3 s after it was admitted (~36/s at 10/s);
     and 8 workers at 30/min (under one per second: one at a time);
   - bursty: half a minute's worth of requests at once, every 45 s (open loop);
   - rate change: saturating, the limit 600/min, then 300/min at 120 s, 1,200/min at 240 s
     (a limit learned from the headers changing mid-run).
1b. Order under contention on the virtual clock with every loop iteration taking 1 ms (as on a
   busy loop, where a timer and a new arrival fall due in the same iteration): saturating demand
   at 600/min; the share of requests admitted after a request that asked later (overtaken), and
   the wait p50 / p99 / max.
2a. Real time, 128 workers each asking again 20-40 ms after admission (~4,200/s wanted), the
   limit 120,000/min (2,000/s): process CPU per admitted request, over the same harness with no
   pacer; the admitted rate after the first second's burst / the limit; fairness: the share of
   requests admitted after a request that asked later (overtaken) and the p99 wait. Alternated
   repeats; CPU figures are the least of the repeats (other processes on a shared machine only
   ever add to them), the rest medians.
2b. The hot path: one task acquiring in a row with the limit far above (what --rpm 100000 costs a
   run on a fast endpoint): CPU µs per acquire over an `await` of nothing (least of the repeats).
3. `batchrun run` as a whole process on the fast built-in endpoint (its own process and core),
   with --rpm 1000000 (never binds: the hot path) and --rpm 100000 (1,667/s: binds near the
   client's one-core ceiling), RequestPacer against the same CLI with the old Bucket pacing
   requests, and --rpm off: requests/s and CPU per request, alternated repeats, the best of them
   (the most req/s, the least CPU) and the median req/s; "vs old" is against the same --rpm with
   the old Bucket (--rpm off: against itself).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import aiolimiter  # noqa: E402
from aiolimiter import AsyncLimiter  # noqa: E402
from virtualloop import run_virtual  # noqa: E402

from batchrun.engine.limits import Bucket, RequestPacer  # noqa: E402
from batchrun.sim import SimConfig, SimProcess  # noqa: E402

# ---------------------------------------------------------------- the pacers under test


class Pacer(Protocol):
    async def acquire(self) -> None: ...
    def set_rate(self, per_minute: float) -> None: ...


class OurBucket:
    """batchrun's own bucket (engine/limits.py): one second's worth, FIFO, rate changed in place."""

    def __init__(self, per_minute: float) -> None:
        self.bucket = Bucket(per_minute)

    async def acquire(self) -> None:
        await self.bucket.take(1)

    def set_rate(self, per_minute: float) -> None:
        self.bucket.set_rate(per_minute)


class Aiolimiter:
    """aiolimiter, public API only: acquire(1); a new rate is a new limiter (callers already
    waiting on the old one stay there). `period_s`: the limiter's time_period (its burst)."""

    def __init__(self, per_minute: float, period_s: float) -> None:
        self.period_s = period_s
        self.limiter = self._new(per_minute)

    def _new(self, per_minute: float) -> AsyncLimiter:
        per_s = per_minute / 60.0
        if per_s * self.period_s >= 1:
            return AsyncLimiter(per_s * self.period_s, self.period_s)
        return AsyncLimiter(1, 1 / per_s)  # under one per period: one at a time

    async def acquire(self) -> None:
        await self.limiter.acquire()

    def set_rate(self, per_minute: float) -> None:
        self.limiter = self._new(per_minute)


class OurPacer:
    """batchrun's RequestPacer (engine/limits.py): aiolimiter under a FIFO lock, a new rate swapped
    in with what the new limiter is owed."""

    def __init__(self, per_minute: float) -> None:
        self.pacer = RequestPacer(per_minute)

    async def acquire(self) -> None:
        await self.pacer.take()

    def set_rate(self, per_minute: float) -> None:
        self.pacer.set_rate(per_minute)


class NoPacer:
    async def acquire(self) -> None:
        return None

    def set_rate(self, per_minute: float) -> None:
        return None


OURS, PACER, BARE = "ours: Bucket (before)", "RequestPacer (aiolimiter)", "bare AsyncLimiter(r/s, 1 s)"
PACERS: dict[str, Callable[[float], Pacer]] = {
    OURS: OurBucket,
    PACER: OurPacer,
    BARE: lambda pm: Aiolimiter(pm, 1.0),
    "bare AsyncLimiter(rpm, 60 s)": lambda pm: Aiolimiter(pm, 60.0),
}


# ---------------------------------------------------------------- demands


@dataclass
class Admissions:
    asked: list[float] = field(default_factory=list)  # per request: when it asked (loop time)
    admitted: list[float] = field(default_factory=list)  # per request: when it was admitted
    order: list[int] = field(default_factory=list)  # request numbers (by asking order) as admitted


async def one(pacer_box: list[Pacer], out: Admissions) -> None:
    loop = asyncio.get_running_loop()
    number = len(out.asked)
    out.asked.append(loop.time())
    out.admitted.append(-1.0)
    await pacer_box[0].acquire()
    out.admitted[number] = loop.time()
    out.order.append(number)


async def saturating(
    pacer: Pacer,
    until_s: float,
    seed: int,
    workers: int = 64,
    service: tuple[float, float] = (0.5, 3.0),
    changes: tuple[tuple[float, float], ...] = (),
) -> Admissions:
    """`workers` senders, each asking again a random service time after it was admitted."""
    loop = asyncio.get_running_loop()
    out, rng, box = Admissions(), random.Random(seed), [pacer]

    async def worker() -> None:
        while loop.time() < until_s:
            await one(box, out)
            await asyncio.sleep(rng.uniform(*service))

    async def change_rates() -> None:
        for at_s, per_minute in changes:
            await asyncio.sleep(at_s - loop.time())
            pacer.set_rate(per_minute)

    await asyncio.gather(change_rates(), *(worker() for _ in range(workers)))
    return out


async def bursty(pacer: Pacer, per_minute: float, until_s: float, every_s: float = 45.0) -> Admissions:
    """Half a minute's worth of requests at once, every `every_s` seconds."""
    loop = asyncio.get_running_loop()
    out, box, tasks = Admissions(), [pacer], []
    while loop.time() < until_s:
        tasks += [asyncio.ensure_future(one(box, out)) for _ in range(int(per_minute / 2))]
        await asyncio.sleep(every_s)
    await asyncio.gather(*tasks)
    return out


# ---------------------------------------------------------------- figures (pure)


def allowed(rates: list[tuple[float, float]], start: float, end: float) -> float:
    """Requests the limit allows in [start, end): the integral of the per-second rate.
    `rates`: (from time, per minute), sorted, the first from 0."""
    total = 0.0
    for i, (t0, per_minute) in enumerate(rates):
        t1 = rates[i + 1][0] if i + 1 < len(rates) else float("inf")
        lo, hi = max(start, t0), min(end, t1)
        if hi > lo:
            total += (hi - lo) * per_minute / 60.0
    return total


def worst_window(times: list[float], width_s: float, rates: list[tuple[float, float]]) -> float:
    """The most admitted in any window [t, t + width) over what the limit allows in it (windows
    that start at an admission hold the maximum); only windows inside the run are judged."""
    times = sorted(times)
    worst = 0.0
    for i, t in enumerate(times):
        if t + width_s > times[-1]:
            break
        count = bisect.bisect_left(times, t + width_s) - i
        worst = max(worst, count / allowed(rates, t, t + width_s))
    return worst


def achieved(times: list[float], rates: list[tuple[float, float]]) -> float:
    """Admitted over the run / what the limit allows from the first admission to the last."""
    times = sorted(times)
    return len(times) / allowed(rates, times[0], times[-1])


def steady_rate(times: list[float], after: float) -> float:
    """Admitted per second from `after` (past the first second's burst) to the last admission."""
    later = [t for t in times if t >= after]
    return len(later) / (max(later) - after)


def overtaken(order: list[int]) -> float:
    """Share of requests admitted after a request that asked later than they did."""
    highest, late = -1, 0
    for number in order:
        if number < highest:
            late += 1
        highest = max(highest, number)
    return late / len(order)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------- the sections


def accuracy(names: list[str], minutes: float) -> None:
    until = 60.0 * minutes
    scenarios: list[tuple[str, list[tuple[float, float]], Callable[[Pacer], Awaitable[Admissions]]]] = [
        ("saturating 600/min", [(0.0, 600.0)], lambda p: saturating(p, until, seed=1)),
        ("saturating 30/min", [(0.0, 30.0)], lambda p: saturating(p, until, seed=2, workers=8)),
        ("bursty 600/min", [(0.0, 600.0)], lambda p: bursty(p, 600.0, until)),
        (
            "rate change 600->300->1200",
            [(0.0, 600.0), (120.0, 300.0), (240.0, 1200.0)],
            lambda p: saturating(p, max(until, 360.0), seed=3, workers=128, changes=((120.0, 300.0), (240.0, 1200.0))),
        ),
    ]
    print("== 1. rate accuracy (virtual clock): most admitted in a sliding window / what the limit allows")
    print(f"   {'demand':28} {'pacer':28} {'n':>6} {'60 s window':>12} {'1 s window':>11} {'achieved':>9}")
    for title, rates, demand in scenarios:
        for name in names:
            got = run_virtual(_made(name, rates[0][1], demand))
            w60, w1 = worst_window(got.admitted, 60.0, rates), worst_window(got.admitted, 1.0, rates)
            print(
                f"   {title:28} {name:28} {len(got.admitted):6} {w60:11.3f}x {w1:10.3f}x "
                f"{achieved(got.admitted, rates):8.3f}x"
            )
            title = ""


async def _made(name: str, per_minute: float, demand: Callable[[Pacer], Awaitable[Admissions]]) -> Admissions:
    return await demand(PACERS[name](per_minute))  # the pacer is made inside the running loop


def order(names: list[str], minutes: float) -> None:
    print(
        "== 1b. order under contention (virtual clock, every loop iteration taking 1 ms as on a busy loop; "
        "600/min, 64 workers)"
    )
    print(f"   {'pacer':28} {'n':>6} {'overtaken':>10} {'wait p50':>9} {'p99':>8} {'max':>8}")
    for name in names:
        got = run_virtual(_made(name, 600.0, lambda p: saturating(p, 60.0 * minutes, seed=4)), iteration_s=1e-3)
        waits = [a - b for a, b in zip(got.admitted, got.asked)]
        print(
            f"   {name:28} {len(waits):6} {overtaken(got.order):9.1%} {quantile(waits, 0.5):8.2f}s "
            f"{quantile(waits, 0.99):7.2f}s {max(waits):7.2f}s"
        )


def binding(names: list[str], seconds: float, repeats: int) -> None:
    """Real time, the limit 120,000/min (2,000/s) below the demand: CPU per admitted request with
    the harness's own cost measured without a pacer, alternated repeats."""
    per_minute = 120_000.0
    runs: dict[str, list[tuple[float, float, float, float, int]]] = {name: [] for name in ["no pacer", *names]}
    for _ in range(repeats):
        for name in runs:

            async def go(name: str = name) -> tuple[Admissions, float, float]:
                pacer = PACERS[name](per_minute) if name in PACERS else NoPacer()
                loop = asyncio.get_running_loop()
                cpu0, t0 = time.process_time(), loop.time()
                got = await saturating(pacer, t0 + seconds, seed=5, workers=128, service=(0.020, 0.040))
                return got, time.process_time() - cpu0, t0

            got, cpu_s, t0 = asyncio.run(go())
            waits = [a - b for a, b in zip(got.admitted, got.asked)]
            runs[name].append(
                (
                    cpu_s / len(waits) * 1e6,
                    steady_rate(got.admitted, t0 + 1.0) / (per_minute / 60),
                    overtaken(got.order),
                    quantile(waits, 0.99),
                    len(waits),
                )
            )
    print(
        f"== 2a. real time, 128 workers wanting ~4,200/s, limit 120,000/min (2,000/s) "
        f"({repeats} repeats of {seconds:.0f} s alternated; CPU: the least, the rest: medians)"
    )
    print(
        f"   {'pacer':28} {'n':>6} {'CPU µs/request':>15} {'over harness':>13} {'rate/limit after 1 s':>21} "
        f"{'vs ours':>8} {'overtaken':>10} {'wait p99':>9}"
    )
    base = min(r[0] for r in runs["no pacer"])
    ours = min(r[0] for r in runs[OURS]) - base
    for name, rs in runs.items():
        rate, late, p99 = (statistics.median(r[i] for r in rs) for i in range(1, 4))
        us = min(r[0] for r in rs)
        n = int(statistics.median(r[4] for r in rs))
        rate_s, ratio = ("(no limit)", "") if name == "no pacer" else (f"{rate:10.3f}x", f"{(us - base) / ours:7.2f}x")
        print(f"   {name:28} {n:6} {us:15.1f} {us - base:13.1f} {rate_s:>21} {ratio:>8} {late:9.1%} {p99 * 1e3:7.1f}ms")


def hot_path(names: list[str], n: int, repeats: int) -> None:
    """One task acquiring n times in a row, the limit far above: every acquire finds capacity
    (an --rpm 100000 run on a fast endpoint). µs per acquire over an `await` of nothing."""
    per_minute = 1e12
    runs: dict[str, list[float]] = {name: [] for name in ["no pacer", *names]}
    for _ in range(repeats):
        for name in runs:

            async def go(name: str = name) -> float:
                pacer = PACERS[name](per_minute) if name in PACERS else NoPacer()
                cpu0 = time.process_time()
                for _ in range(n):
                    await pacer.acquire()
                return time.process_time() - cpu0

            runs[name].append(asyncio.run(go()) / n * 1e6)
    base = min(runs["no pacer"])
    ours = min(runs[OURS]) - base
    print(f"== 2b. hot path: {n:,} acquires in a row, each finding capacity ({repeats} repeats alternated, the least)")
    print(f"   {'pacer':28} {'CPU µs/acquire':>15} {'over nothing':>13} {'vs ours':>8}")
    for name, values in runs.items():
        us = min(values)
        ratio = f"{(us - base) / ours:7.2f}x" if name != "no pacer" else ""
        print(f"   {name:28} {us:15.2f} {us - base:13.2f} {ratio:>8}")


# `batchrun run` with the RPM dimension paced by the old Bucket instead: the same CLI, the same
# process, only the pacer class differs.
_WITH_OLD_BUCKET = """
import sys
import batchrun.engine.limits as limits

class OldRpm(limits.Bucket):
    async def take(self, amount: float = 1.0) -> None:
        await super().take(amount)

limits.RequestPacer = OldRpm
from batchrun.cli import main
main(sys.argv[1:])
"""


def whole_runs(n: int, repeats: int) -> None:
    """`batchrun run` as a whole process on the fast built-in endpoint (own process, own core
    when there are two), concurrency 128, 64 tokens per answer: req/s and CPU per request."""
    variants = {
        f"--rpm {rpm}, {name}": (how, ["--rpm", rpm])
        for rpm in ("1000000", "100000")
        for name, how in ((PACER, ["-m", "batchrun"]), (OURS, ["-c", _WITH_OLD_BUCKET]))
    }
    variants["--rpm off (no pacing)"] = (["-m", "batchrun"], ["--rpm", "off"])
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = ["taskset", "-c", str(cores[0])] if len(cores) > 1 and shutil.which("taskset") else []
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    with SimProcess(SimConfig(fast=True, output_tokens=64)) as sim, tempfile.TemporaryDirectory() as tmp_name:
        if pin and sim.pid is not None:
            os.sched_setaffinity(sim.pid, {cores[-1]})
        prompts = Path(tmp_name) / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": f"benchmark {i}"}) + "\n" for i in range(n)))
        for repeat in range(repeats):
            for i, (name, (how, flags)) in enumerate(variants.items()):
                out = Path(tmp_name) / f"out-{repeat}-{i}"
                cmd = [
                    *pin,
                    sys.executable,
                    *how,
                    "run",
                    str(prompts),
                    "--base-url",
                    sim.base_url,
                    "-c",
                    "128",
                    "--max-tokens",
                    "64",
                    "--out",
                    str(out),
                    "-q",
                    "--retries",
                    "0",
                    *flags,
                ]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
                wall = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                ok = json.loads((out / "summary.json").read_text())["summary"]["counts"]["ok"]
                assert ok == n, f"{name}: {ok} of {n} ok"
                got[name].append((n / wall, cpu_s / n * 1e3))
    print(
        f"== 3. `batchrun run` whole process, {n:,} requests at -c 128 on the fast built-in endpoint "
        f"({repeats} repeats alternated{', client and endpoint on their own cores' if pin else ''})"
    )
    print(
        f"   {'run':48} {'req/s best':>10} {'vs old':>7} {'median':>7} {'vs old':>7} {'CPU ms/request':>15} {'vs old':>7}"
    )

    def figures(values: list[tuple[float, float]]) -> tuple[float, float, float]:
        return max(v[0] for v in values), statistics.median(v[0] for v in values), min(v[1] for v in values)

    for name, values in got.items():
        old_best, old_median, old_cpu = figures(got[name.replace(PACER, OURS)])
        best, median, cpu_ms = figures(values)
        print(
            f"   {name:48} {best:10.0f} {best / old_best:6.3f}x {median:7.0f} {median / old_median:6.3f}x "
            f"{cpu_ms:15.3f} {cpu_ms / old_cpu:6.3f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    print(f"aiolimiter {aiolimiter.__version__}, Python {sys.version.split()[0]}")
    names = list(PACERS)
    accuracy(names, 6.0 if args.quick else 20.0)
    order(names[:3], 3.0 if args.quick else 10.0)
    binding(names[:3], 3.0 if args.quick else 5.0, 3 if args.quick else 5)
    hot_path(names[:3], 50_000 if args.quick else 200_000, 3 if args.quick else 5)
    whole_runs(4_000 if args.quick else 10_000, 3 if args.quick else 5)


if __name__ == "__main__":
    main()
