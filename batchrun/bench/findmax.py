"""`batchrun bench --find-max --slo ...`: the highest concurrency that meets the SLO, found by
doubling and then bisection instead of a full sweep.

After the sweep's warm-up pass over the prompts, each probe is one bench level
(sweep.measure_async), with at least max(100, 4 x concurrency) requests and one unmeasured
warm-up wave, judged by the sweep's own rule (at most --max-failure-share failed, p99 TTFT and
p99 latency within the SLO: recommend.recommend), so the answer is the one a full sweep at every
level would give. A probe whose p99's 95% interval straddles its bound (a close call) is measured
again, up to twice, and judged on all its requests. The answer comes with its bracket (the
lowest failing level) and the 95% interval of each probe's p99s: distribution-free order
statistics (stats.quantile_ci), which exist from 368 requests on; a probe with fewer has none,
so it is judged on its p99s alone and is never a close call.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from batchrun.analysis import stats
from batchrun.analysis.distribution import percentile
from batchrun.analysis.recommend import DEFAULT_MAX_FAILURE_SHARE, BenchPoint, recommend
from batchrun.bench.sizing import RunSize
from batchrun.bench.sweep import (
    BenchConfig,
    RunResult,
    announce_sample,
    bench_jobs,
    builtin_extra,
    measure_async,
    public_settings,
    warm_prompts,
)
from batchrun.endpoint.resolve import endpoint_info, open_endpoint, preflight, sim_config
from batchrun.errors import ConfigError
from batchrun.hooks import Hooks
from batchrun.plan import open_rows
from batchrun.report.format import fmt_num, fmt_s
from batchrun.report.summary import write_bench_manifest, write_reports
from batchrun.store.records import OK, Record
from batchrun.store.rundir import new_run_dir

MIN_REQUESTS = 100  # as bench/sweep.py's per-level floor
MORE_ON_CLOSE_CALL = 2  # a probe whose p99 interval straddles its bound is measured again, up to 2x


@dataclass(frozen=True)
class Probe:
    """One measured level."""

    concurrency: int
    requests: int  # measured (ok and failed)
    ok: int
    requests_per_s: float | None
    ttft_p99_s: float | None
    ttft_p99_ci: tuple[float, float] | None
    latency_p99_s: float | None
    latency_p99_ci: tuple[float, float] | None
    meets: bool  # the sweep's rule: few enough failures, p99 TTFT and latency within the SLO
    close_call: bool  # a p99's 95% interval straddles its bound
    why: str | None = None  # why it missed, when it did


@dataclass(frozen=True)
class FindMaxResult:
    best: int | None  # highest concurrency that met the SLO (None: not even the first)
    first_failing: int | None  # lowest concurrency that missed it (None: the ceiling passed)
    probes: list[Probe]

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_concurrency": self.best,
            "first_failing_concurrency": self.first_failing,
            "probes": [dataclasses.asdict(p) for p in self.probes],
        }


def judge(
    concurrency: int,
    records: Sequence[Record],
    wall_s: float | None,
    slo: dict[str, float],
    max_failure_share: float = DEFAULT_MAX_FAILURE_SHARE,
) -> Probe:
    """A level's figures and verdict; pure."""
    ok = [r for r in records if r.status == OK]
    ttft = sorted(r.ttft_s for r in ok if r.ttft_s is not None)
    latency = sorted(r.latency_s for r in ok if r.latency_s is not None)
    ttft_p99 = percentile(ttft, 99) if ttft else None
    lat_p99 = percentile(latency, 99) if latency else None
    rps = len(ok) / wall_s if wall_s else None
    point = BenchPoint(concurrency, rps, lat_p99, ttft_p99, n=len(records), failed=len(records) - len(ok))
    verdict = recommend([point], slo, max_failure_share)
    # Distribution-free order-statistic intervals: none below 368 values, where no pair of ranks
    # holds the p99 95% of the time (an interval clamped to the largest value would claim it).
    ttft_ci, lat_ci = stats.quantile_ci(ttft, 99), stats.quantile_ci(latency, 99)
    close = any(
        ci is not None and bound is not None and ci[0] <= bound < ci[1]
        for ci, bound in ((ttft_ci, slo.get("ttft")), (lat_ci, slo.get("e2e")))
    )
    return Probe(
        concurrency,
        len(records),
        len(ok),
        rps,
        ttft_p99,
        ttft_ci,
        lat_p99,
        lat_ci,
        verdict.choice is not None,
        close,
        verdict.reasons.get(concurrency),
    )


async def search(
    probe: Callable[[int], Awaitable[Probe]], *, start: int = 1, ceiling: int = 1024, resolution: float = 0.1
) -> FindMaxResult:
    """Double from `start` while the SLO is met, then bisect between the last level that met it and
    the first that did not, until they are within `resolution` (relative) or 1 apart."""
    probes: list[Probe] = []

    async def passes(c: int) -> bool:
        result = await probe(c)
        probes.append(result)
        return result.meets

    lo, hi, c = None, None, max(1, start)
    while True:
        if not await passes(c):
            hi = c
            break
        lo = c
        if c >= ceiling:
            break
        c = min(c * 2, ceiling)
    if lo is None or hi is None:
        return FindMaxResult(lo, hi, probes)
    while hi - lo > max(1, math.floor(lo * resolution)):
        mid = (lo + hi) // 2
        if await passes(mid):
            lo = mid
        else:
            hi = mid
    return FindMaxResult(lo, hi, probes)


def probe_requests(requests: int | None, concurrency: int) -> int:
    """Requests measured per probe: enough for a p99 (at least 100) and four waves."""
    return max(requests or 0, MIN_REQUESTS, 4 * concurrency)


async def execute_find_max(
    config: BenchConfig, out: Path | None = None, hooks: Hooks = Hooks()
) -> tuple[Path, FindMaxResult]:
    """Run the search against the configured endpoint; every probe is written as a bench run.
    Messages and progress go to the face's `hooks`."""
    slo = config.slo
    if not slo:
        raise ConfigError("--find-max needs --slo, e.g. --slo ttft=500ms,e2e=10s")
    run = config.run
    out = out or new_run_dir("findmax")
    rows = open_rows(run)
    announce_sample(config, hooks)
    out.mkdir(parents=True, exist_ok=True)
    # Every request of a probe is measured: no --max-run-time cut, one warm-up wave.
    config = dataclasses.replace(config, max_run_s=None)
    results: list[RunResult] = []
    builtin = sim_config(run, realistic=True)
    async with open_endpoint(
        run.endpoint.base_url, run.endpoint.api_key, announce=hooks.notify, sim_config=builtin
    ) as endpoint:
        model = await preflight(endpoint, run.endpoint.model, timeout_s=run.limits.timeout, announce=hooks.notify)
        if model != run.endpoint.model:
            config = dataclasses.replace(config, run=run.replace(model=model))
        info = endpoint_info(endpoint, model)
        pool = bench_jobs(config.run, probe_requests(config.requests, config.max_concurrency), rows)
        warmup = await warm_prompts(endpoint, pool, config, hooks)
        # Each probe opens its connections with at least one unmeasured wave (none with --no-warmup).
        warmup["wave"] = (config.warmup or None) if config.warm_cache else 0

        async def probe(c: int) -> Probe:
            n = probe_requests(config.requests, c)
            level = dataclasses.replace(config, warmup=max(config.warmup_for(c), c) if config.warm_cache else 0)
            records: list[Record] = []
            wall = 0.0
            for attempt in range(1 + MORE_ON_CLOSE_CALL):
                hooks.notify(f"find-max: concurrency {c}, {n} requests" + (" more (a close call)" if attempt else ""))
                result = await measure_async(
                    endpoint,
                    pool,
                    level,
                    out,
                    concurrency=c,
                    repeat=attempt + 1,
                    name=f"findmax-c{c}" + (f"-more{attempt}" if attempt else ""),
                    size=RunSize(n, n),
                    label=f"find-max c={c}",
                    hooks=hooks,
                )
                results.append(result)
                records += result.records
                wall += result.wall_time_s
                verdict = judge(c, records, wall, slo, config.max_failure_share)
                if not verdict.close_call:
                    break
            hooks.notify(
                f"find-max: concurrency {c}: {'meets' if verdict.meets else 'misses'} the SLO"
                + (f" ({verdict.why})" if verdict.why else "")
            )
            return verdict

        found = await search(probe, start=min(config.concurrencies or (1,)), ceiling=config.max_concurrency)
    found_dict = {"slo": config.slo, **found.to_dict()}
    bench: dict[str, Any] = {
        "runs": [r.entry() for r in results],
        "slo": config.slo,
        "warmup": warmup,
        "max_failure_share": config.max_failure_share,
        "find_max": found_dict,
    }
    public = public_settings(config)
    write_bench_manifest(
        out, bench["runs"], slo=config.slo, config=public, warmup=warmup, max_failure_share=config.max_failure_share
    )
    # The same endpoint block and banner as a sweep's (and a run's) reports.
    write_reports(out, None, [], bench=bench, config=public, endpoint=info, extra=builtin_extra(builtin))
    (out / "find_max.json").write_text(json.dumps(found_dict, indent=2) + "\n")
    return out, found


def format_find_max(result: FindMaxResult, slo: dict[str, float]) -> str:
    """The console lines: the answer with its bracket, then one line per probe."""
    from batchrun.report.bench import find_max_answer  # lazy: the bench report loads numpy

    def ci(value: float | None, interval: tuple[float, float] | None) -> str:
        return fmt_s(value) if interval is None else f"{fmt_s(value)} [{fmt_s(interval[0])}, {fmt_s(interval[1])}]"

    lines = [
        *find_max_answer({"slo": slo, **result.to_dict()}),
        f"{'c':>5}  {'n':>5}  {'req/s':>8}  {'p99 TTFT [95% CI]':>28}  {'p99 latency [95% CI]':>28}  verdict",
    ]
    for p in sorted(result.probes, key=lambda p: p.concurrency):
        verdict = ("meets" if p.meets else f"misses ({p.why})" if p.why else "misses") + (
            " (close call)" if p.close_call else ""
        )
        lines.append(
            f"{p.concurrency:>5}  {p.requests:>5}  {fmt_num(p.requests_per_s):>8}  "
            f"{ci(p.ttft_p99_s, p.ttft_p99_ci):>28}  {ci(p.latency_p99_s, p.latency_p99_ci):>28}  {verdict}"
        )
    return "\n".join(lines)
