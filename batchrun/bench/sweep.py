"""`batchrun bench`: the same prompts through the sync SDK baseline and the async pool at
several concurrencies (or open-loop arrival rates), each run recorded, then one report.

Every run of a bench shares the endpoint and the prompts. Before the first measured run, one
unmeasured pass sends every distinct prompt once (max_tokens 1: the prefill is what a prompt
cache keeps), so the sync baseline and every async level meet the same server cache state;
`--no-warmup` skips it. Each async run also gets its own connection pool, warmed by `--warmup`
requests that are not measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import math
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

from batchrun import options
from batchrun.analysis.metrics import summarize
from batchrun.analysis.recommend import DEFAULT_MAX_FAILURE_SHARE
from batchrun.bench.sizing import QUICK_MIN, TARGET_HALF_WIDTH, RunSize, SizedJobs
from batchrun.bench.sync import run_sync
from batchrun.config import RunConfig
from batchrun.endpoint.calibrate import synthetic_rows
from batchrun.endpoint.kinds import kind
from batchrun.endpoint.requests import Job
from batchrun.endpoint.resolve import endpoint_info, open_endpoint, preflight, sim_config
from batchrun.endpoint.transport import Endpoint, make_session
from batchrun.engine.looplag import sample_loop_lag
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.engine.quietgc import quiet_gc
from batchrun.errors import ConfigError, InputError
from batchrun.hooks import Hooks, LevelProgress
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.inputs.scan import count_rows
from batchrun.plan import jobs as run_jobs
from batchrun.plan import open_rows
from batchrun.report.bench import bench_analysis
from batchrun.report.summary import write_bench_manifest, write_reports
from batchrun.report.workloads import append_markdown, bench_headline_workloads
from batchrun.sim.config import public as public_sim
from batchrun.store.records import CANCELLED, OK, Record, RecordSink
from batchrun.store.rundir import new_run_dir

# The default levels: a factor of 4 apart, so four runs span what seven doubling ones did.
DEFAULT_LEVELS = (1, 4, 16, 64)
# What `batchrun bench` measures when given no prompts (package data): real prompts, short
# questions to paragraph-long tasks, so a first bench needs no file, no tokenizer and no
# calibration request, and answers like real traffic on a real model.
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.csv"
_NOT_IN_BENCH = {
    "concurrency",
    "resume",
    "out",
    "output_format",
    "quiet",
    "fail_on_error",
    "max_errors",
    "max_error_rate",
    "max_cost",
    "on_bad_row",
    "tool_module",
    "max_tool_rounds",
    "tool_timeout",
}


MIN_REQUESTS = 100  # per level by default: at least this many, and 4 x the concurrency
FEW_REQUESTS = 30  # a level with fewer measured requests is marked in every table
# Levels given (-c / --rate), no time budget: each async level sized by its spread (sizing.py)
# between its minimum and MAX_FACTOR x that; the sync baseline, only the speedup's denominator,
# measures its minimum.
MAX_FACTOR = 4
# The default bench (no -c, --rate, -n): a time budget shared by its runs, each sending while
# what it has in flight would end within its share, after at least QUICK_MIN requests (and one
# per slot). The sync baseline gets SYNC_SHARES shares: the speedup's interval is mostly its
# width. Against the built-in endpoint (~1 s a request) the whole bench took 46-49 s (3 runs,
# /usr/bin/time, 2-core machine at load 2.6-3.8).
DEFAULT_TIME_BUDGET_S = 36.0
SYNC_SHARES = 2
# The warm-up pass's requests in flight (at most the largest level): quick over a few hundred
# prompts, and few enough that a small server (llama-server's 4 slots) only queues a little.
WARMUP_CONCURRENCY = 8


@dataclass(frozen=True)
class BenchConfig:
    """What to measure; `run` holds the input, request and endpoint settings shared with `run`."""

    run: RunConfig
    requests: int | None = None  # per run; None: sized (time_budget_s, else by spread)
    concurrencies: tuple[int, ...] = DEFAULT_LEVELS
    rates: tuple[float, ...] = ()  # open-loop requests/s instead of fixed concurrency
    burstiness: float = 1.0  # gamma shape of inter-arrival times; 1 = Poisson
    max_concurrency: int = 1024  # cap on in-flight requests in open-loop runs
    warmup: int | None = None  # unmeasured requests before each run; None: one wave
    warm_cache: bool = True  # one unmeasured pass over the distinct prompts before measuring
    repeat: int = 1
    sync: bool = True
    max_run_s: float | None = None  # stop sending new requests this long into a run
    slo: dict[str, float] | None = None
    max_failure_share: float = DEFAULT_MAX_FAILURE_SHARE  # a level failing more is never recommended
    time_budget_s: float | None = None  # seconds the runs share (resolve_time_budget); None: none
    sample: bool = False  # no prompts were given: the input is the bundled SAMPLE

    def __post_init__(self) -> None:
        if (
            (self.requests is not None and self.requests < 1)
            or self.repeat < 1
            or (self.warmup is not None and self.warmup < 0)
        ):
            raise ConfigError("--requests and --repeat must be at least 1, --warmup at least 0")
        if not 0.0 <= self.max_failure_share <= 1.0:
            raise ConfigError(
                f"--max-failure-share is a share between 0 and 1 (0.05 allows 5%), got {self.max_failure_share:g}"
            )
        if any(c < 1 for c in self.concurrencies) or any(r <= 0 for r in self.rates):
            raise ConfigError("concurrency levels must be >= 1 and rates > 0")
        if self.burstiness <= 0:
            raise ConfigError(f"--burstiness must be positive, got {self.burstiness}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(f"--time-budget is a number of seconds above 0 (0 for none), got {self.time_budget_s:g}")
        if self.time_budget_s is not None and self.requests is not None:
            raise ConfigError(
                "-n measures exactly N requests a run and --time-budget sizes runs by time: give one of them"
            )
        if self.run.endpoint.endpoint == "embeddings":
            raise ConfigError(
                "bench measures streamed endpoints (chat, completions); time embeddings with "
                "`batchrun run --endpoint embeddings` (its summary has inputs/s and tokens/s)"
            )

    @classmethod
    def from_options(cls, **given: Any) -> BenchConfig:
        """A bench from option values as a user gives them (`batchrun bench`'s options in
        options.py); the rest take their declared defaults. Bad rows are skipped in a bench.
        Without prompts (no file, no --synthetic) it measures the bundled SAMPLE."""
        sample = given.get("input") is None and given.get("synthetic") is None
        if sample:
            given = {**given, "input": SAMPLE}
        run = RunConfig.from_options("bench", **given).replace(on_bad_row="skip")
        picked = options.with_defaults("bench", given)
        if picked["no_warmup"] and picked["warmup"] is not None:
            raise ConfigError("--no-warmup sends nothing unmeasured: leave out --warmup (or --no-warmup)")
        fields: dict[str, Any] = {}
        for option in options.of("bench"):
            if option.group == "bench" and picked[option.name] is not None:  # None: the bench's own default
                fields.update(option.config_values(picked[option.name]))
        if picked["no_warmup"]:
            fields.update(warmup=0, warm_cache=False)
        levels_given = bool(picked["concurrency"] or picked["rate"])
        fields["time_budget_s"] = resolve_time_budget(
            picked["time_budget"], requests=picked["requests"], levels_given=levels_given
        )
        return cls(run=run, sample=sample, **fields)

    @property
    def has_sync(self) -> bool:
        """Whether the sync SDK baseline runs (it speaks chat only)."""
        return self.sync and self.run.endpoint.endpoint == "chat"

    def requests_for(self, concurrency: int) -> int:
        """Measured requests at one level: -n, else at least max(100, 4 x concurrency)."""
        return self.requests if self.requests is not None else max(MIN_REQUESTS, 4 * concurrency)

    def requests_cap(self, concurrency: int) -> int:
        """The most an async level may measure: -n, else MAX_FACTOR x its minimum (SizedJobs
        decides in between)."""
        return self.requests if self.requests is not None else MAX_FACTOR * self.requests_for(concurrency)

    def size(self, concurrency: int, *, sync: bool = False) -> RunSize:
        """How many requests a run at `concurrency` measures (the sync baseline: sync=True)."""
        if self.requests is not None:
            return RunSize(self.requests, self.requests)
        if self.time_budget_s is not None:
            share = self.time_budget_s / self.shares()
            return RunSize(
                max(QUICK_MIN, concurrency),
                self.requests_cap(concurrency),
                window_s=share * (SYNC_SHARES if sync else 1),
            )
        if sync:
            return RunSize(self.requests_for(1), self.requests_for(1))
        return RunSize(self.requests_for(concurrency), self.requests_cap(concurrency), target=TARGET_HALF_WIDTH)

    def shares(self) -> int:
        """How many shares of the time budget the runs take: SYNC_SHARES for the sync baseline,
        one per level (or rate), every repeat."""
        return self.repeat * (self._levels() + (SYNC_SHARES if self.has_sync else 0))

    def run_count(self) -> int:
        """The runs the bench measures: the sync baseline and every level, every repeat."""
        return self.repeat * (self._levels() + self.has_sync)

    def _levels(self) -> int:
        return len(self.rates) if self.rates else len(self.concurrencies)

    def warmup_for(self, concurrency: int) -> int:
        """Unmeasured requests before a level: --warmup, else one wave (one per slot)."""
        return self.warmup if self.warmup is not None else concurrency

    def largest_level(self) -> int:
        levels = [*self.concurrencies, *(math.ceil(r) for r in self.rates), 1]
        return max(levels)


def resolve_time_budget(given: float | None, *, requests: int | None, levels_given: bool) -> float | None:
    """The bench's time budget: as given (0: none); else DEFAULT_TIME_BUDGET_S for a bench given
    neither levels (-c / --rate) nor -n, and none otherwise (each level then sized by its spread,
    the sizing the CI recipe's detection power rests on)."""
    if given is not None:
        return given or None
    return None if requests is not None or levels_given else DEFAULT_TIME_BUDGET_S


def bench_jobs(config: RunConfig, n: int, rows: Iterator[Prompt | BadRow] | None = None) -> list[Job]:
    """The first `n` prompts of the input, cycling when it has fewer; bad rows are left out."""
    rows = open_rows(config) if rows is None else rows
    base = [item for item in itertools.islice(run_jobs(config, rows, set()), n) if not isinstance(item, BadRow)]
    if not base:
        raise InputError("no usable prompts to benchmark", path=str(config.input.path))
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
    planned: int = 0  # requests the run meant to measure

    def entry(self) -> dict[str, Any]:
        """The run as report/bench.py takes it (records stay Record objects)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def send_span(records: list[Record]) -> float | None:
    """Seconds from the first send to the last byte among `records` (setup never counted)."""
    sent = [(r.sent_s, r.end_s) for r in records if r.sent_s is not None and r.end_s is not None]
    if not sent:
        return None
    return max(e for _, e in sent) - min(s for s, _ in sent) or None


def _cut_warning(name: str, records: list[Record], planned: int, max_run_s: float | None, hooks: Hooks) -> None:
    if max_run_s is not None and len(records) < planned:
        hooks.notify(
            f"warning: {name}: --max-run-time {max_run_s:g}s cut it to {len(records)} of {planned} "
            f"requests{' (fewer than 30: its figures are marked)' if len(records) < FEW_REQUESTS else ''}"
        )


async def measure_async(
    endpoint: Endpoint,
    jobs: list[Job],
    config: BenchConfig,
    out: Path,
    *,
    name: str,
    concurrency: int,
    repeat: int,
    size: RunSize,
    rate: float | None = None,
    label: str | None = None,
    hooks: Hooks = Hooks(),
) -> RunResult:
    """One async run: warm the pool's connections with one wave, then send `jobs` as `size` says
    and record each, under the same garbage-collector settings as `batchrun run`; live progress
    (the face's) under `label` (none with --quiet)."""
    run = config.run
    workers = config.max_concurrency if rate else concurrency
    level = math.ceil(rate) if rate else concurrency
    clock = time.perf_counter
    records: list[Record] = []
    lag: list[float] = []
    async with make_session(workers) as session:
        client, pool_config = _client(session, endpoint, run, workers, clock)
        warmup = config.warmup_for(level)
        sized = SizedJobs(jobs, records, size, level, clock)
        if warmup:
            warm = Pool(
                client,
                lambda r: None,
                dataclasses.replace(pool_config, concurrency=min(level, workers)),
                t0=clock(),
                clock=clock,
            )
            await warm.run(iter(_warmup_jobs(jobs, warmup)))
        with RecordSink(out / "runs" / name / "records.jsonl", secrets=endpoint.secrets) as sink:

            def keep(record: Record) -> None:
                records.append(record)
                sink.write(record)

            async with quiet_gc(), _progress(config, label, sized, hooks):
                t0 = clock()
                pool = Pool(client, keep, pool_config, t0=t0, clock=clock)
                sampler = asyncio.create_task(sample_loop_lag(lag))
                interrupted = False
                try:
                    schedule = arrivals(rate, config.burstiness, run.limits.seed) if rate else None
                    await pool.run(
                        iter(sized), schedule=schedule, send_for_s=config.max_run_s, send_check=sized.may_send
                    )
                except asyncio.CancelledError:
                    interrupted = True  # Ctrl-C: keep what finished (below), then stop the bench
                finally:
                    sampler.cancel()
                    await asyncio.gather(sampler, return_exceptions=True)
                    wall = send_span(records) or clock() - t0
                if pool.refused is not None:  # a rejected key or a wrong model: no level can succeed
                    raise ConfigError(
                        f"the endpoint refused the run: {pool.refused} (fix OPENAI_API_KEY, --model or --base-url)"
                    )
    finished = [r for r in records if r.status != CANCELLED]
    result = RunResult(
        name,
        "rate" if rate else "async",
        workers if rate else concurrency,
        repeat,
        rate,
        send_span(finished) or wall,
        finished,
        lag,
        _planned(sized, config.max_run_s),
    )
    if interrupted:
        raise Interrupted(result)
    _cut_warning(name, records, result.planned, config.max_run_s, hooks)
    capped = sized.capped_width()
    if capped is not None:
        width = "unknown" if math.isinf(capped) else f"±{100 * capped:.1f}%"
        hooks.notify(
            f"warning: {name}: stopped at its cap of {sized.sent} requests with the p50 TTFT/latency "
            f"interval against an identical run still {width} (the default sizing aims at "
            f"±{100 * TARGET_HALF_WIDTH:g}%): a small regression may not be caught; measure more with -n"
        )
    return result


def _planned(sized: SizedJobs, max_run_s: float | None) -> int:
    """The requests a run meant to measure, against which a --max-run-time cut is shown: those
    its sizing handed out (at least its minimum when a cut may have stopped it); with a time
    share, those it sent (the share is the plan)."""
    if sized.size.window_s is not None:
        return sized.launched
    return max(sized.sent, sized.minimum) if max_run_s is not None else sized.sent


@contextlib.asynccontextmanager
async def _progress(config: BenchConfig, label: str | None, sized: SizedJobs, hooks: Hooks) -> AsyncIterator[None]:
    """The face's live progress of one run while the block runs (none with --quiet or no label)."""
    progress = hooks.progress
    if label is None or config.run.control.quiet or progress is None:
        yield
        return

    def state() -> LevelProgress:
        total, eta = sized.outlook()
        ok = sum(r.status == OK for r in sized.records)
        return LevelProgress(label, len(sized.records), total, ok, len(sized.records) - ok, eta)

    task = asyncio.create_task(progress.level(state))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _client(session: Any, endpoint: Endpoint, run: RunConfig, workers: int, clock: Any) -> tuple[Any, PoolConfig]:
    """The async client and pool settings every bench run (and the warm-up pass) uses."""
    limits = run.limits
    client = kind(run.endpoint.endpoint).client_for(
        session,
        endpoint,
        timeout_s=limits.timeout,
        ttft_timeout_s=limits.ttft_timeout,
        clock=clock,
        max_response_bytes=limits.max_response_bytes,
    )
    return client, PoolConfig(
        concurrency=workers,
        retries=limits.retries,
        rpm=limits.rpm,
        tpm=limits.tpm,
        seed=limits.seed,
        max_retry_wait_s=limits.max_retry_wait,
        learn_rpm=limits.learn_rpm,
        learn_tpm=limits.learn_tpm,
    )


def one_token(job: Job, id: str) -> tuple[Job, int | None]:
    """`job` unmeasured: its output cap cut to 1 token and its id `id` (never a measured one's);
    also the cap sent (None: the body had none, so it was left as it was). What warming needs is
    the prompt's prefill (what a server's prompt cache keeps) and an open connection; the
    answer adds nothing to either, and at 1 token a wave takes about a TTFT, not a whole answer."""
    body, cap = json.loads(job.body), None
    for key in ("max_tokens", "max_completion_tokens"):
        if key in body:
            body[key] = cap = 1
    return dataclasses.replace(
        job, body=json.dumps(body, ensure_ascii=False).encode(), prompt=dataclasses.replace(job.prompt, id=id)
    ), cap


def cache_pass_jobs(jobs: list[Job]) -> tuple[list[Job], int | None]:
    """One job per distinct request body among `jobs` (the prompts cycle), each cut to one token
    (one_token), and the cap sent."""
    seen: set[bytes] = set()
    out: list[Job] = []
    cap: int | None = None
    for job in jobs:
        if job.body in seen:
            continue
        seen.add(job.body)
        warm, cap = one_token(job, f"warmup-pass-{len(out)}")
        out.append(warm)
    return out, cap


async def warm_prompts(
    endpoint: Endpoint, jobs: list[Job], config: BenchConfig, hooks: Hooks = Hooks()
) -> dict[str, Any]:
    """The warm-up pass: every distinct prompt of `jobs` sent once, unmeasured, before the first
    measured run, so each run meets a server that has seen all of them (a cold prompt cache
    otherwise slows the first run only). Returns what was done, for bench.json and the reports."""
    if not config.warm_cache:
        return {"pass": False, "wave": config.warmup}
    distinct, cap = cache_pass_jobs(jobs)
    level = min(WARMUP_CONCURRENCY, config.largest_level(), len(distinct))
    failed = 0

    def count(record: Record) -> None:
        nonlocal failed
        failed += record.status != OK

    _note(config, hooks, f"warm-up: {len(distinct)} distinct prompts once, {level} at a time, not measured")
    clock = time.perf_counter
    async with make_session(level) as session:
        client, pool_config = _client(session, endpoint, config.run, level, clock)
        # The first prompt alone: a rejected key or a wrong model stops the bench after one
        # request, not after a whole wave of them.
        for part, width in ((distinct[:1], 1), (distinct[1:], level)):
            pool = Pool(client, count, dataclasses.replace(pool_config, concurrency=width), t0=clock(), clock=clock)
            await pool.run(iter(part))
            if pool.refused is not None:
                raise ConfigError(
                    f"the endpoint refused the run: {pool.refused} (fix OPENAI_API_KEY, --model or --base-url)"
                )
    if failed:
        hooks.notify(
            f"warning: warm-up: {failed} of {len(distinct)} requests failed"
            + (": the first measured run may meet a cold cache" if failed == len(distinct) else "")
        )
    return {
        "pass": True,
        "prompts": len(distinct),
        "failed": failed,
        "concurrency": level,
        "max_tokens": cap,
        "wave": config.warmup,
    }


class Interrupted(Exception):
    """Ctrl-C during a run; carries what the run had finished."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(result.name)
        self.result = result


def _warmup_jobs(jobs: list[Job], n: int) -> list[Job]:
    """`n` jobs for the warm-up wave (the prompts cycle), cut to one token (one_token)."""
    return [one_token(jobs[i % len(jobs)], f"warmup-{i}")[0] for i in range(n)]


async def measure_sync(
    endpoint: Endpoint,
    jobs: list[Job],
    config: BenchConfig,
    out: Path,
    repeat: int,
    label: str | None = None,
    hooks: Hooks = Hooks(),
) -> RunResult:
    """The SDK baseline, one request after another, in a thread so the loop stays free; its client
    is built and warmed before the clock starts. Sized by config.size(1, sync=True)."""
    name = f"sync-r{repeat}"
    stop = threading.Event()
    interrupted = False
    records: list[Record] = []
    sized = SizedJobs(jobs, records, config.size(1, sync=True))
    async with quiet_gc(), _progress(config, label, sized, hooks):
        thread = asyncio.get_running_loop().run_in_executor(
            None,
            functools.partial(
                run_sync,
                endpoint,
                sized,
                timeout_s=config.run.limits.timeout,
                send_for_s=config.max_run_s,
                warmup=_warmup_jobs(jobs, config.warmup_for(1)),
                stop=stop,
                send_check=sized.may_send,
                records=records,
            ),
        )
        try:
            await asyncio.shield(thread)
        except asyncio.CancelledError:
            # Ctrl-C: a thread cannot be cancelled; it stops after its request in flight, and
            # what it finished is kept.
            stop.set()
            interrupted = True
            await thread
    wall = send_span(records) or 1e-9
    with RecordSink(out / "runs" / name / "records.jsonl", secrets=endpoint.secrets) as sink:
        for record in records:
            sink.write(record)
    result = RunResult(name, "sync", 1, repeat, None, wall, records, [], _planned(sized, config.max_run_s))
    if interrupted:
        raise Interrupted(result)
    _cut_warning(name, records, result.planned, config.max_run_s, hooks)
    return result


async def execute_bench(
    config: BenchConfig, out: Path | None = None, hooks: Hooks = Hooks()
) -> tuple[Path, dict[str, Any]]:
    """Run the whole bench; returns the output directory and the bench analysis. Messages and
    progress go to the face's `hooks`.

    bench.json is rewritten after every run, so a bench stopped by Ctrl-C keeps (and reports)
    every run it finished; KeyboardInterrupt is raised again after the reports are written."""
    run = config.run
    out = out or new_run_dir(f"bench-{run.input.path.stem if run.input.path else 'run'}")
    rows = open_rows(run)  # a bad file stops here, before the endpoint starts
    announce_sample(config, hooks)
    out.mkdir(parents=True, exist_ok=True)
    builtin = sim_config(run, realistic=True)
    extra = builtin_extra(builtin)
    results: list[RunResult] = []
    interrupted = False
    async with open_endpoint(
        run.endpoint.base_url, run.endpoint.api_key, announce=lambda m: _note(config, hooks, m), sim_config=builtin
    ) as endpoint:
        model = await preflight(endpoint, run.endpoint.model, timeout_s=run.limits.timeout, announce=hooks.notify)
        if model != run.endpoint.model:
            config = dataclasses.replace(config, run=run.replace(model=model))
        info = endpoint_info(endpoint, model)
        needed = max(config.requests_cap(config.largest_level()), config.requests_for(1))
        synthetic_info = None
        if run.input.synthetic is not None:
            # Without -n the runs are sized as they go: generate as many prompts as they may take.
            rows, synthetic_info = await synthetic_rows(config.run, endpoint, needed, hooks.notify)
        public = public_settings(config)
        jobs = bench_jobs(config.run, needed, rows)
        warmup: dict[str, Any] | None = None

        def manifest() -> None:
            write_bench_manifest(
                out,
                [r.entry() for r in results],
                slo=config.slo,
                config=public,
                warmup=warmup,
                max_failure_share=config.max_failure_share,
            )

        try:
            warmup = await warm_prompts(endpoint, jobs, config, hooks)
            await _all_runs(endpoint, jobs, config, out, results, manifest, hooks)
        except (KeyboardInterrupt, asyncio.CancelledError, Interrupted) as exc:
            interrupted = True
            if isinstance(exc, Interrupted) and exc.result.records:
                results.append(exc.result)
                manifest()
            hooks.notify(
                f"interrupted: keeping the {len(results)} run(s) measured so far"
                + (
                    f" ({exc.result.name} partly: {len(exc.result.records)} requests)"
                    if isinstance(exc, Interrupted) and exc.result.records
                    else ""
                )
            )
    bench: dict[str, Any] = {
        "runs": [r.entry() for r in results],
        "slo": config.slo,
        "warmup": warmup,
        "max_failure_share": config.max_failure_share,
    }
    analysis = bench_analysis(bench)
    headline = _headline(analysis, bench["runs"])
    headline = bench_headline_workloads(headline, bench["runs"], run.input.synthetic, synthetic_info)
    if results:
        write_reports(
            out, headline, [], bench=bench, config=public, endpoint=info, extra={**extra, "interrupted": interrupted}
        )
        append_markdown(out, headline or {})
    analysis["endpoint"] = info
    if interrupted:
        raise KeyboardInterrupt
    return out, analysis


def announce_sample(config: BenchConfig, hooks: Hooks) -> None:
    """A bench given no prompts says what it measures instead (also with --quiet: the figures
    are of these prompts, not the user's)."""
    if config.sample:
        hooks.notify(
            f"no prompts given: benching the built-in sample of {count_rows(SAMPLE)} prompts ({SAMPLE}); "
            "give a file to bench yours"
        )


def _note(config: BenchConfig, hooks: Hooks, message: str) -> None:
    """Progress lines, left out with --quiet (warnings always go to the face)."""
    if not config.run.control.quiet:
        hooks.notify(message)


def builtin_extra(builtin: Any) -> dict[str, Any]:
    """summary.json's `builtin_endpoint`: every setting of the built-in endpoint that answered
    (its seed too, so a bench can be repeated exactly); nothing for a configured endpoint."""
    return {"builtin_endpoint": public_sim(builtin)} if builtin is not None else {}


def public_settings(config: BenchConfig) -> dict[str, Any]:
    """The settings a bench's reports and bench.json show: the run settings that mean something
    in a bench (not concurrency, resume, output, ...) and the bench's own."""
    run_public = {k: v for k, v in config.run.public_dict().items() if k not in _NOT_IN_BENCH}
    return {**run_public, **_bench_settings(config)}


async def _all_runs(
    endpoint: Endpoint,
    jobs: list[Job],
    config: BenchConfig,
    out: Path,
    results: list[RunResult],
    manifest: Callable[[], None],
    hooks: Hooks,
) -> None:
    def done(result: RunResult) -> None:
        results.append(result)
        manifest()

    def label(what: str) -> str:
        return f"{what} (run {len(results) + 1}/{config.run_count()})"

    for repeat in range(1, config.repeat + 1):
        if config.has_sync:
            _note(config, hooks, f"sync baseline (openai.OpenAI, sequential), repeat {repeat}")
            done(await measure_sync(endpoint, jobs, config, out, repeat, label("sync"), hooks))
        for c in config.concurrencies if not config.rates else ():
            _note(config, hooks, f"async, concurrency {c}, repeat {repeat}")
            done(
                await measure_async(
                    endpoint,
                    jobs,
                    config,
                    out,
                    name=f"async-c{c}-r{repeat}",
                    concurrency=c,
                    repeat=repeat,
                    size=config.size(c),
                    label=label(f"async c={c}"),
                    hooks=hooks,
                )
            )
        for rate in config.rates:
            _note(config, hooks, f"open loop, {rate:g} requests/s, repeat {repeat}")
            done(
                await measure_async(
                    endpoint,
                    jobs,
                    config,
                    out,
                    name=f"rate-{rate:g}-r{repeat}",
                    concurrency=config.max_concurrency,
                    repeat=repeat,
                    size=config.size(math.ceil(rate)),
                    rate=rate,
                    label=label(f"rate {rate:g}/s"),
                    hooks=hooks,
                )
            )


def _bench_settings(config: BenchConfig) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in dataclasses.asdict(config).items() if k not in ("run", "sample")}))


def _headline(analysis: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The recommended level's summary, every repeat pooled (as `compare` pools them);
    `bench_run` names its first run."""
    best = analysis.get("recommended_concurrency")
    level = [run for run in runs if run["mode"] == "async" and run["concurrency"] == best]
    if not level:
        return None
    records = [r for run in level for r in run["records"]]
    wall = sum(run["wall_time_s"] or 0.0 for run in level) or None
    summary = summarize(
        records,
        wall_time_s=wall,
        slo=analysis.get("slo"),
        loop_lag_s=[x for run in level for x in run.get("loop_lag_s") or []],
    )
    summary["bench_run"] = level[0]["name"]
    summary["bench_runs"] = [run["name"] for run in level]
    return summary
