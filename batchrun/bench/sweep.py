"""`batchrun bench`: the same prompts through the sync SDK baseline and the async pool at
several concurrencies (or open-loop arrival rates), each run recorded, then one report.

Every run of a bench shares the endpoint and the prompts; each async run gets its own
connection pool, warmed by `--warmup` requests that are not measured.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from batchrun.endpoint.client import Endpoint, make_session
from batchrun.config import RunConfig
from batchrun.endpoint.resolve import endpoint_info, open_endpoint, preflight
from batchrun.errors import ConfigError, InputError
from batchrun.engine.pool import Job, Pool, PoolConfig
from batchrun.progress import sample_loop_lag
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.store.records import Record, RecordSink
from batchrun.runner import jobs as run_jobs
from batchrun.runner import open_rows
from batchrun.runner import say
from batchrun.bench.sync import run_sync
from batchrun.report.workloads import append_markdown, bench_headline_workloads
from batchrun.workloads import client_class

DEFAULT_SWEEP = (1, 2, 4, 8, 16, 32, 64)
_NOT_IN_BENCH = {"concurrency", "resume", "out", "output_format", "quiet", "fail_on_error", "max_errors",
                 "max_error_rate", "on_bad_row", "tool_module", "max_tool_rounds", "tool_timeout"}


@dataclass(frozen=True)
class BenchConfig:
    """What to measure; `run` holds the input, request and endpoint settings shared with `run`."""

    run: RunConfig
    requests: int = 64                      # per run; prompts cycle when the file has fewer
    concurrencies: tuple[int, ...] = DEFAULT_SWEEP
    rates: tuple[float, ...] = ()           # open-loop requests/s instead of fixed concurrency
    burstiness: float = 1.0                 # gamma shape of inter-arrival times; 1 = Poisson
    max_concurrency: int = 1024             # cap on in-flight requests in open-loop runs
    warmup: int = 0                         # unmeasured requests before each run, same concurrency
    repeat: int = 1
    sync: bool = True
    max_run_s: float | None = 5.0           # stop sending new requests this long into a run
    slo: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.requests < 1 or self.repeat < 1 or self.warmup < 0:
            raise ConfigError("--requests and --repeat must be at least 1, --warmup at least 0")
        if any(c < 1 for c in self.concurrencies) or any(r <= 0 for r in self.rates):
            raise ConfigError("concurrency levels must be >= 1 and rates > 0")
        if self.burstiness <= 0:
            raise ConfigError(f"--burstiness must be positive, got {self.burstiness}")
        if self.run.endpoint == "embeddings":
            raise ConfigError("bench measures streamed endpoints (chat, completions); time embeddings with "
                              "`batchrun run --endpoint embeddings` (its summary has inputs/s and tokens/s)")


def parse_levels(text: str, kind: type = int) -> tuple[Any, ...]:
    """'1,2,4' -> (1, 2, 4), with a ConfigError naming the bad item."""
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"expected a comma-separated list of numbers, got {text!r}") from exc


def bench_jobs(config: RunConfig, n: int, rows: Iterator[Prompt | BadRow] | None = None) -> list[Job]:
    """The first `n` prompts of the input, cycling when it has fewer; bad rows are left out."""
    rows = open_rows(config) if rows is None else rows
    base = [item for item in itertools.islice(run_jobs(config, rows, set()), n) if not isinstance(item, BadRow)]
    if not base:
        raise InputError("no usable prompts to benchmark", path=str(config.input))
    out = []
    for i in range(n):
        job = base[i % len(base)]
        lap = i // len(base)
        prompt = dataclasses.replace(job.prompt, id=job.prompt.id if lap == 0 else f"{job.prompt.id}#{lap}", row=i)
        out.append(dataclasses.replace(job, prompt=prompt))
    return out


def arrivals(rate: float, burstiness: float, seed: int | None) -> Iterator[float]:
    """Planned send offsets (s) for open-loop load: gamma inter-arrival times with mean 1/rate
    (burstiness 1 = Poisson; below 1 burstier, above 1 more regular)."""
    rng = random.Random(seed)
    t = 0.0
    while True:
        yield t
        t += rng.gammavariate(burstiness, 1.0 / (rate * burstiness))


@dataclass
class RunResult:
    name: str
    mode: str
    concurrency: int | None
    repeat: int
    rate: float | None
    wall_time_s: float
    records: list[Record]
    loop_lag_s: list[float]

    def entry(self) -> dict[str, Any]:
        """The run as report.py takes it (records stay Record objects)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


async def measure_async(endpoint: Endpoint, jobs: list[Job], config: BenchConfig, out: Path, *,
                        name: str, concurrency: int, repeat: int, rate: float | None = None) -> RunResult:
    """One async run: warm the pool's connections, then send `jobs` and record each."""
    run = config.run
    workers = config.max_concurrency if rate else concurrency
    clock = time.perf_counter
    records: list[Record] = []
    lag: list[float] = []
    async with make_session(workers) as session:
        client = client_class(run)(session, endpoint, timeout_s=run.timeout, ttft_timeout_s=run.ttft_timeout, clock=clock,
                                   max_response_bytes=run.max_response_bytes)
        pool_config = PoolConfig(concurrency=workers, retries=run.retries, rpm=run.rpm, tpm=run.tpm, seed=run.seed,
                                 max_retry_wait_s=run.max_retry_wait)
        if config.warmup:
            warm = Pool(client, lambda r: None, dataclasses.replace(pool_config, concurrency=concurrency),
                        t0=clock(), clock=clock)
            await warm.run(iter(jobs[: config.warmup]))
        with RecordSink(out / "runs" / name / "records.jsonl") as sink:
            def keep(record: Record) -> None:
                records.append(record)
                sink.write(record)

            t0 = clock()
            pool = Pool(client, keep, pool_config, t0=t0, clock=clock)
            sampler = asyncio.create_task(sample_loop_lag(lag))
            try:
                schedule = arrivals(rate, config.burstiness, run.seed) if rate else None
                await pool.run(iter(jobs), schedule=schedule, send_for_s=config.max_run_s)
            finally:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
            if pool.refused is not None:        # a rejected key or a wrong model: no level can succeed
                raise ConfigError(f"the endpoint refused the run: {pool.refused} (fix OPENAI_API_KEY, "
                                  "--model or --base-url)")
            wall = clock() - t0
    return RunResult(name, "rate" if rate else "async", workers if rate else concurrency, repeat, rate,
                     wall, records, lag)


async def measure_sync(endpoint: Endpoint, jobs: list[Job], config: BenchConfig, out: Path,
                       repeat: int) -> RunResult:
    """The SDK baseline, one request after another, in a thread so the loop stays free."""
    name = f"sync-r{repeat}"
    t0 = time.perf_counter()
    records = await asyncio.to_thread(run_sync, endpoint, jobs, timeout_s=config.run.timeout, t0=t0,
                                      send_for_s=config.max_run_s)
    wall = time.perf_counter() - t0
    with RecordSink(out / "runs" / name / "records.jsonl") as sink:
        for record in records:
            sink.write(record)
    return RunResult(name, "sync", 1, repeat, None, wall, records, [])


async def execute_bench(config: BenchConfig, out: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Run the whole bench; returns the output directory and the bench analysis."""
    from batchrun.report.bench import bench_analysis
    from batchrun.report.summary import write_bench_manifest, write_reports

    run = config.run
    out = out or Path("results") / f"bench-{run.input.stem if run.input else 'run'}-{datetime.now():%Y%m%d-%H%M%S}"
    rows = open_rows(run)                   # a bad file stops here, before the endpoint starts
    out.mkdir(parents=True, exist_ok=True)
    async with open_endpoint(run.base_url, run.api_key, announce=say) as endpoint:
        model = await preflight(endpoint, run.model, timeout_s=run.timeout, announce=say)
        if model != run.model:
            config = dataclasses.replace(config, run=dataclasses.replace(run, model=model))
        info = endpoint_info(endpoint, model)
        synthetic_info = None
        if run.synthetic is not None:
            from batchrun.endpoint.calibrate import synthetic_rows
            rows, synthetic_info = await synthetic_rows(config.run, endpoint, client_class(run), config.requests, say)
        jobs = bench_jobs(config.run, config.requests, rows)
        results = await _all_runs(endpoint, jobs, config, out)
    # The run settings that mean something in a bench (not concurrency, resume, output, ...).
    run_public = {k: v for k, v in config.run.public_dict().items() if k not in _NOT_IN_BENCH}
    public = {**run_public, **_bench_settings(config)}
    bench = {"runs": [r.entry() for r in results], "slo": config.slo}
    write_bench_manifest(out, bench["runs"], slo=config.slo, config=public)
    analysis = bench_analysis(bench)
    headline = _headline(analysis, bench["runs"])
    headline = bench_headline_workloads(headline, bench["runs"], run.synthetic, synthetic_info)
    write_reports(out, headline, [], bench=bench, config=public, endpoint=info)
    append_markdown(out, headline or {})
    analysis["endpoint"] = info
    return out, analysis


async def _all_runs(endpoint: Endpoint, jobs: list[Job], config: BenchConfig, out: Path) -> list[RunResult]:
    results: list[RunResult] = []
    for repeat in range(1, config.repeat + 1):
        if config.sync and config.run.endpoint == "chat":     # the SDK baseline speaks chat only
            say(f"sync baseline (openai.OpenAI, sequential), repeat {repeat}")
            results.append(await measure_sync(endpoint, jobs, config, out, repeat))
        for c in config.concurrencies if not config.rates else ():
            say(f"async, concurrency {c}, repeat {repeat}")
            results.append(await measure_async(endpoint, jobs, config, out, name=f"async-c{c}-r{repeat}",
                                               concurrency=c, repeat=repeat))
        for rate in config.rates:
            say(f"open loop, {rate:g} requests/s, repeat {repeat}")
            results.append(await measure_async(endpoint, jobs, config, out, name=f"rate-{rate:g}-r{repeat}",
                                               concurrency=config.max_concurrency, repeat=repeat, rate=rate))
    return results


def _bench_settings(config: BenchConfig) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in dataclasses.asdict(config).items() if k != "run"}))


def _headline(analysis: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The recommended concurrency's summary (its first repeat), so `compare` can gate a bench."""
    from batchrun.report.bench import run_summary

    best = analysis.get("recommended_concurrency")
    for run in runs:
        if run["mode"] == "async" and run["concurrency"] == best:
            summary = run_summary(run, analysis.get("slo"))
            summary["bench_run"] = run["name"]
            return summary
    return None
