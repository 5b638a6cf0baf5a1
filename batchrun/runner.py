"""One `batchrun run`, start to finish: endpoint, output dir, pool, signals, final files.

The order of the final steps is what makes a run crash-safe: every record is in
records.jsonl (flushed) before anything else is written, and results / summary are
rebuilt from that file, so they can always be written again with `batchrun report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

from batchrun.endpoint.transport import Endpoint, make_session
from batchrun.config import DEFAULTS, RunConfig, env_base_url
from batchrun.endpoint.multi import check_more, open_more
from batchrun.endpoint.resolve import BUILTIN, choose_base_url, endpoint_info, open_endpoint, preflight
from batchrun.engine.capacity import ensure_open_files, pacing_warnings
from batchrun.inputs.scan import count_rows
from batchrun.errors import ConfigError, InputError, OutputError
from batchrun.inputs.rows import read_prompts
from batchrun.analysis.metrics import GapSample, summarize
from batchrun.store.outputs import done_ids, write_results
from batchrun.engine.adaptive import AdaptiveConfig
from batchrun.endpoint.requests import Job
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.engine.looplag import sample_loop_lag
from batchrun.progress import Total, show_progress
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.store.records import OK, RECORDS, Record, RecordSink
from batchrun.store.rundir import claim_run_dir, drop_held_locks, new_run_dir
from batchrun.interrupts import loop_handlers
from batchrun.redact import host_and_port
from batchrun.store.sessions import RUN_JSON, add_wall_time, read_run_json, restore_base_url, saved_base_url, start_session  # noqa: F401 (RUN_JSON: kept importable from here)
from batchrun.engine.tools import ToolRunner
from batchrun.workloads import Workload, make_pool
from batchrun.workloads import prepare as prepare_workload
from batchrun.endpoint.kinds import kind
from batchrun.endpoint.requests import RequestDefaults, estimate_prompt_tokens, estimate_request_tokens
from batchrun.endpoint.answers import response_format
from batchrun.analysis.cost import resolve_price
from batchrun.datarun import (add_run_facts, announce_row_settings, announce_schema, changed_during_run,
                              checked_input, count_total, limited, output_check, report_vanished,
                              save_input_identity, saved_request)

SUMMARY, INTERNAL_LOG = "summary.json", "internal-errors.log"


@dataclass
class RunOutcome:
    out_dir: Path
    summary: dict[str, Any]
    interrupted: bool = False
    aborted: str | None = None
    input_error: Exception | None = None
    failed: int = 0
    files: list[Path] = field(default_factory=list)
    endpoint: dict[str, Any] = field(default_factory=dict)   # endpoint_info of this session
    refused: str | None = None         # the endpoint refused the run (key, model): what it said
    internal_errors: int = 0           # rows that met a bug of batchrun's (see internal-errors.log)


def say(message: str) -> None:
    """One line for the user, on stderr so stdout stays clean for pipes."""
    print(f"batchrun: {message}", file=sys.stderr, flush=True)


def default_out_dir(config: RunConfig) -> Path:
    stem = config.input.path.stem if config.input.path else "run"
    return new_run_dir(stem)


# What defines the rows and their requests: on --resume these come from the saved run
# unless given again; how to send them (concurrency, limits, timeouts) comes from now.
_RESUMED_FIELDS = ("path", "fmt", "prompt_column", "id_column", "template", "system", "on_bad_row",
                   "model", "max_tokens", "temperature", "extra_body", "tools", "tool_choice",
                   "parallel_tool_calls", "tool_module", "output_format", "mode", "endpoint", "batch_size",
                   "synthetic")
# Data-team runs: how rows become requests and answers are read. --limit is not kept, so a resume
# without it extends a pilot to the whole file.
_RESUMED_FIELDS += ("row_settings", "save_request", "csv_formulas", "json_schema", "json_mode",
                    "price_in", "price_out")


def resolve_resume(config: RunConfig) -> RunConfig:
    """For --resume DIR: the saved run's input and request settings, unless given again now, and
    its endpoint unless --base-url names another (`config.endpoint.base_url` is then the flag's value)."""
    if config.control.resume is None:
        return config
    run = read_run_json(config.control.resume)
    saved_config = {k: v for k, v in run["config"].items() if k != "base_url"}
    base = RunConfig.from_public_dict(saved_config, resume=config.control.resume, overwrite=False, dry_run=False)
    now, saved = config.flat(), base.flat()
    changes: dict[str, Any] = {"out": config.control.resume}
    if config.endpoint.base_url is None:
        changes["base_url"] = restore_base_url(saved_base_url(run), env_base_url(), config.endpoint.api_key)
    for name in _RESUMED_FIELDS:
        given = now[name] is not None and now[name] != DEFAULTS[name] and now[name] != {}
        changes[name] = now[name] if given else saved[name]
    return config.replace(**changes)


def open_rows(config: RunConfig) -> Iterator[Prompt | BadRow]:
    """The input's rows, read lazily; a missing, empty or unreadable file, or a bad
    --template / --prompt-column, raises InputError here, before anything is started."""
    if config.input.synthetic is not None:     # checked now; generated once the endpoint is known
        from batchrun.inputs.synthetic import check_spec
        check_spec(config.input.synthetic)
        return iter(())
    assert config.input.path is not None
    rows = read_prompts(config.input.path, fmt=config.input.fmt, prompt_column=config.input.prompt_column,
                        id_column=config.input.id_column, template=config.input.template,
                        system=config.input.system, on_bad_row=config.input.on_bad_row, row_settings=config.input.row_settings)
    from batchrun.workloads import length_trace
    if length_trace(config):             # lengths without text: prompts are sized once the endpoint is known
        return iter(())
    # Header-level problems (which column is the prompt?) surface with the first row: read it now.
    first = next(rows, None)
    return rows if first is None else itertools.chain([first], rows)


def request_defaults(config: RunConfig) -> RequestDefaults:
    return RequestDefaults(model=config.endpoint.model, max_tokens=config.request.max_tokens,
                           temperature=config.request.temperature, extra_body=config.request.extra_body,
                           tools=config.tools.tools, tool_choice=config.tools.tool_choice,
                           parallel_tool_calls=config.tools.parallel_tool_calls,
                           response_format=response_format(config.request.json_schema, config.request.json_mode))


def jobs(config: RunConfig, rows: Iterator[Prompt | BadRow], skip: set[str],
         seen_ids: set[str] | None = None) -> Iterator[Job | BadRow]:
    """Rows minus those already done, as ready-to-send Jobs; `seen_ids` collects every id read."""
    defaults = request_defaults(config)
    build = kind(config.endpoint.endpoint).build_body
    for item in rows:
        if seen_ids is not None:
            seen_ids.add(item.id)
        if item.id in skip:
            continue
        if isinstance(item, BadRow):
            yield item
            continue
        try:
            body = build(item, defaults)
            data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()   # NaN is not JSON
        except (TypeError, ValueError, RecursionError) as exc:   # e.g. a Parquet date inside messages
            reason = f"{config.input.path} line {item.line}: the row cannot be sent as JSON ({exc})"
            if config.input.on_bad_row == "fail":
                raise InputError(f"the row cannot be sent as JSON ({exc})", path=str(config.input.path),
                                 line=item.line, hint="fix the row or use --on-bad-row skip") from None
            yield BadRow(item.id, item.row, item.line, reason, data=item.data)
            continue
        yield Job(prompt=item, body=data,
                  estimated_tokens=estimate_request_tokens(body, config.request.max_tokens),
                  prompt_tokens_estimate=estimate_prompt_tokens(body),
                  request=saved_request(body) if config.output.save_request else None)


def prepare_out_dir(config: RunConfig) -> Path:
    out = config.control.resume or config.output.out or default_out_dir(config)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not out.is_dir():
            raise NotADirectoryError(20, "not a directory")
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to {out}: {exc.strerror} (choose another --out)") from exc
    return out


async def execute_run(config: RunConfig) -> RunOutcome:
    """Run `config` to the end (or until stopped) and write every output file."""
    config = resolve_resume(config)
    from batchrun import batchapi

    config = await batchapi.choose_mode(config, say)
    rows = open_rows(config)
    config = config.replace(out=config.control.resume or config.output.out or default_out_dir(config))
    assert config.output.out is not None
    with claim_run_dir(config.output.out, resume=config.control.resume is not None, overwrite=config.control.overwrite,
                       about=lock_about(config), say=say):
        out = prepare_out_dir(config)
        identity = checked_input(config, out / RUN_JSON, say)
        announce_row_settings(config, say)
        announce_schema(config, say)
        raised = ensure_open_files(config.limits.concurrency)
        if raised:
            say(raised)
        sim = sim_config(config)
        if config.control.mode == "batch":   # batchapi.sim_config loads the openai SDK: only a batch run needs it
            sim = batchapi.sim_config(sim, config, out)
        async with open_endpoint(config.endpoint.base_url, config.endpoint.api_key, announce=say, sim_config=sim) as endpoint, \
                open_more(config, say) as more:
            model = await preflight(endpoint, config.endpoint.model, timeout_s=config.limits.timeout, announce=say)
            config = config.replace(model=model, base_url=BUILTIN if endpoint.embedded
                                    else choose_base_url(config.endpoint.base_url, config.endpoint.api_key))
            resolve_price(config.endpoint.model, config.output.price_in, config.output.price_out)   # a bad price stops here
            info = endpoint_info(endpoint, model)
            session, previous = start_session(out, config.public_dict(), info)
            save_input_identity(out / RUN_JSON, identity)
            if previous is not None and previous.get("endpoint") != info:
                say(f"this session's endpoint differs from session {previous.get('n')}'s "
                    f"({_describe(previous.get('endpoint') or {})}): now {_describe(info)}")
            skip = done_ids(out / RECORDS) if config.control.resume else set()
            if skip:
                say(f"resuming {out} (session {session}): {len(skip)} rows already done are not sent again")
            seen = set() if config.control.input_changed == "ok" and config.control.limit is None else None
            if config.control.mode == "batch":
                items = jobs(config, limited(rows, config.control.limit), skip, seen)
                outcome = await batchapi.run_batch(config, endpoint, out, items, session)
            else:
                await check_more(more, config, say)
                workload = await prepare_workload(config, endpoint, limited(rows, config.control.limit), out, skip,
                                                  lambda c, r, k: jobs(c, r, k, seen), say)
                workload.more_endpoints = more
                if workload.kind in ("rows", "trace"):
                    workload.items = _warn_pacing(config, workload.items)
                outcome = await _run_pool(config, endpoint, out, workload, len(skip), session, identity)
            outcome.endpoint = info
            if outcome.input_error is None and not outcome.interrupted:
                report_vanished(skip, seen, say)
            return outcome


def lock_about(config: RunConfig) -> dict[str, str]:
    """What the run directory's lock says the run is, for a person who finds it: the subcommand,
    the input file and the endpoint's host and port (never a URL's credentials, path or query)."""
    about = {"subcommand": "batchrun run" + (" --resume" if config.control.resume else "")}
    if config.input.path is not None:
        about["input"] = str(config.input.path)
    url = choose_base_url(config.endpoint.base_url, config.endpoint.api_key)
    about["endpoint"] = "the built-in endpoint" if url == BUILTIN else host_and_port(url)
    return about


def _describe(info: dict[str, Any]) -> str:
    where = "the built-in simulated endpoint" if info.get("kind") == "builtin" else info.get("base_url")
    return f"{where}, model {info.get('model')}"


def _warn_pacing(config: RunConfig, items: Iterator[Job | BadRow]) -> Iterator[Job | BadRow]:
    """With --rpm / --tpm: warn before sending when they cannot be what was meant."""
    if config.limits.rpm is None and config.limits.tpm is None:
        return items
    first = [item for item in itertools.islice(items, 1)]
    charge = next((i.estimated_tokens for i in first if isinstance(i, Job)), 0)
    rows = count_rows(config.input.path, config.input.fmt) if config.input.path is not None else None
    for warning in pacing_warnings(rows, charge, config.limits.rpm, config.limits.tpm):
        say(f"warning: {warning}")
    return itertools.chain(first, items)


async def _run_pool(config: RunConfig, endpoint: Endpoint, out: Path, workload: Workload,
                    resumed: int, session_n: int = 1, identity: dict[str, Any] | None = None) -> RunOutcome:
    clock = time.perf_counter
    lag: list[float] = []
    t0 = clock()
    started_wall = time.time()
    from batchrun.engine.workers_plan import worker_count
    workers = worker_count(config, workload.kind) if config.scale.ray is None else 0
    secrets = tuple(dict.fromkeys(s for e in [endpoint, *workload.more_endpoints] for s in e.secrets))
    with RecordSink(out / RECORDS, secrets=secrets) as sink:
        def write(record: Record) -> None:
            record.session = session_n
            sink.write(record)

        def write_many(records: list[Record]) -> None:
            for record in records:
                record.session = session_n
                span.track(record)
            sink.write_many(records)

        span = SendSpan(write)
        send = _send_by_ray if config.scale.ray is not None else _send_by_workers if workers > 1 else _send_in_process
        pool, interrupted = await send(config, endpoint, out, workload,
                                       _Sending(span.write, write_many, sink, t0, clock, lag, resumed, workers))
        # First send to last byte: client setup before the first request is not the endpoint's time.
        wall = span.width() or clock() - getattr(pool, "t0", t0)
    outcome = RunOutcome(out_dir=out, summary={}, interrupted=interrupted.is_set(),
                         aborted=pool.abort_reason, input_error=pool.input_error, failed=pool.stats.failed,
                         endpoint=endpoint_info(endpoint, config.endpoint.model), refused=pool.refused,
                         internal_errors=len(pool.internal_errors))
    if pool.internal_errors:
        _write_internal_log(out, pool.internal_errors)
    if not (outcome.input_error or outcome.interrupted or outcome.aborted or outcome.refused):
        outcome.input_error = changed_during_run(config, identity)
    findings = _pool_findings(pool, config, wall) if isinstance(pool, Pool) else {}
    _finish_outputs(outcome, config, lag, wall, started_wall, findings)
    return outcome


@dataclass
class _Sending:
    """What either way of sending needs from _run_pool."""

    write: Callable[[Record], None]              # one record (sets its session, tracks the send span)
    write_many: Callable[[list[Record]], None]
    sink: RecordSink
    t0: float
    clock: Callable[[], float]
    lag: list[float]                             # event-loop lag samples of this process
    resumed: int                                 # rows done in earlier sessions (progress)
    workers: int


async def _send_in_process(config: RunConfig, endpoint: Endpoint, out: Path, workload: Workload,
                           run: _Sending) -> tuple[Any, asyncio.Event]:
    """Today's single-process run: the pool on this event loop."""
    t0, clock = run.t0, run.clock
    async with make_session(config.limits.concurrency) as session:
        runner = ToolRunner.from_file(config.tools.tool_module, config.tools.tool_timeout) if config.tools.tool_module else None
        pool = make_pool(workload, session, endpoint, run.write, config, _pool_config(config), out, t0, clock,
                         runner, lambda prompt: next(jobs(config, iter([prompt]), set())), run.write_many,
                         output_check=output_check(config), warn=say)
        pool.stats.resumed = run.resumed
        async with _signals(pool, run.sink) as interrupted, _background(pool, config, run.lag, clock), \
                _quiet_gc():
            if workload.schedule is not None:
                pool.t0 = clock()      # a trace's clock starts now, after the setup above (gc freeze)
                await pool.run(workload.items, schedule=workload.schedule)
            else:
                await pool.run(workload.items)
    return pool, interrupted


async def _send_by_workers(config: RunConfig, endpoint: Endpoint, out: Path, workload: Workload,
                           run: _Sending) -> tuple[Any, asyncio.Event]:
    """--workers N: N sending processes; this one reads, writes, paces and counts (engine/coordinator.py)."""
    from batchrun.engine.coordinator import Coordinator
    from batchrun.engine.workers_plan import worker_spec

    pool_config = _pool_config(config)
    coordinator = Coordinator(worker_spec(config, endpoint, pool_config, run.t0), pool_config, run.workers,
                              t0=run.t0, write_many=run.write_many, say=say)
    coordinator.stats.resumed = run.resumed
    async with _signals(coordinator, run.sink) as interrupted, _background(coordinator, config, run.lag, run.clock):
        await coordinator.run(workload.items, started=lambda names: say(
            f"{len(names)} worker processes ({', '.join(names)}); this process reads, writes and paces"))
    # The loops that timed the requests are the workers': their lag is what the summary judges.
    run.lag[:] = coordinator.loop_lag or run.lag
    if coordinator.resent:
        say(f"{coordinator.resent} rows held by a worker that ended were sent again; each is recorded once")
    return coordinator.tally, interrupted


async def _send_by_ray(config: RunConfig, endpoint: Endpoint, out: Path, workload: Workload,
                       run: _Sending) -> tuple[Any, asyncio.Event]:
    """--ray: the workers as Ray actors; this process reads, writes, paces and counts (engine/ray_plan.py)."""
    from batchrun.engine.coordinator import Coordinator
    from batchrun.engine.ray_plan import RayCluster, check_workload
    from batchrun.engine.workers_plan import worker_spec

    check_workload(workload.kind)
    pool_config = _pool_config(config)
    async with RayCluster.open(config.scale.ray, say) as cluster:
        actors = cluster.plan(None if config.scale.workers_auto else config.scale.workers, config.scale.ray_cpus, endpoint)
        coordinator = Coordinator(worker_spec(config, endpoint, pool_config, run.t0), pool_config, actors,
                                  t0=run.t0, write_many=run.write_many, say=say, launch=cluster.launch)
        coordinator.stats.resumed = run.resumed
        async with _signals(coordinator, run.sink) as interrupted, \
                _background(coordinator, config, run.lag, run.clock):
            await coordinator.run(workload.items, started=lambda names: say(
                f"{len(names)} Ray actor{'s' if len(names) > 1 else ''} ({'; '.join(names)}); this process reads, "
                "writes and paces"))
    run.lag[:] = coordinator.loop_lag or run.lag      # the actors' loops timed the requests
    if coordinator.resent:
        say(f"{coordinator.resent} rows held by a Ray actor that ended were sent again; each is recorded once")
    return coordinator.tally, interrupted


class SendSpan:
    """Passes records on to `write` and keeps the first send and the last end among them."""

    def __init__(self, write: Callable[[Record], None]) -> None:
        self._write, self.first, self.last = write, None, None

    def write(self, record: Record) -> None:
        self.track(record)
        self._write(record)

    def track(self, record: Record) -> None:
        if record.sent_s is not None and record.end_s is not None:
            self.first = record.sent_s if self.first is None else min(self.first, record.sent_s)
            self.last = record.end_s if self.last is None else max(self.last, record.end_s)

    def width(self) -> float | None:
        """Seconds from the first send to the last byte; None before any request ended."""
        width = None if self.first is None else self.last - self.first
        return width if width else None


def sim_config(config: RunConfig, realistic: bool = False) -> Any:
    """The built-in endpoint's SimConfig for this run (None with a configured endpoint): the
    defaults, or `realistic` noise for a bench, with --builtin-option applied."""
    if choose_base_url(config.endpoint.base_url, config.endpoint.api_key) != BUILTIN:
        if config.endpoint.builtin_options:
            raise ConfigError("--builtin-option configures the built-in endpoint; it has no effect with "
                              "--base-url / OPENAI_BASE_URL (leave one of them out)")
        return None
    from batchrun.sim.config import SimConfig, realistic as noisy

    return (noisy() if realistic else SimConfig()).with_options(config.endpoint.builtin_options)
def _pool_findings(pool: Pool, config: RunConfig, wall: float) -> dict[str, Any]:
    """What the pool learned about the endpoint: its rate limits and, with --concurrency auto,
    the concurrency over time and where it settled."""
    from batchrun.engine.adaptive import settled_limit
    from batchrun.engine.limits import limits_summary

    assert pool.limits is not None
    stats = pool.stats
    found: dict[str, Any] = {"rate_limits": limits_summary(
        pool.limits, attempts=stats.attempts, rate_limited=stats.rate_limited, user_rpm=config.limits.rpm,
        user_tpm=config.limits.tpm, learn=config.limits.learn_rpm or config.limits.learn_tpm)}
    if pool.controller is not None:
        history = stats.concurrency_history
        found["concurrency"] = {"auto": True, "ceiling": config.limits.concurrency, "history": history,
                                "settled": settled_limit(history, wall), "final": history[-1][1] if history else None}
    return found


def _write_internal_log(out: Path, tracebacks: list[str]) -> None:
    """A bug of batchrun's is not a provider failure: its tracebacks go to internal-errors.log."""
    stamp = datetime.now(timezone.utc).isoformat()
    try:
        with open(out / INTERNAL_LOG, "a", encoding="utf-8") as f:
            for text in tracebacks:
                f.write(f"--- {stamp} {text}\n")
    except OSError as exc:
        raise OutputError(f"cannot write {out / INTERNAL_LOG}: {exc.strerror}") from exc


def _pool_config(config: RunConfig) -> PoolConfig:
    adaptive = None
    if config.limits.concurrency_auto:
        slo = config.limits.slo or {}
        adaptive = AdaptiveConfig(ceiling=config.limits.concurrency, slo_ttft_s=slo.get("ttft"), slo_e2e_s=slo.get("e2e"))
    several = bool(config.endpoint.extra_base_urls)      # then each endpoint has its own limits (endpoint/multi.py)
    return PoolConfig(concurrency=config.limits.concurrency, rpm=None if several else config.limits.rpm,
                      tpm=None if several else config.limits.tpm,
                      retries=config.limits.retries, max_errors=config.control.max_errors,
                      max_error_rate=config.control.max_error_rate, seed=config.limits.seed,
                      max_tool_rounds=config.tools.max_tool_rounds, max_retry_wait_s=config.limits.max_retry_wait,
                      learn_rpm=config.limits.learn_rpm and not several, learn_tpm=config.limits.learn_tpm and not several,
                      adaptive=adaptive)


@contextlib.asynccontextmanager
async def _quiet_gc() -> AsyncIterator[None]:
    """Fewer, shorter garbage-collector pauses while measuring: the objects alive at the start
    (modules, config) are frozen out of collection and collections run less often, so a GC
    pause rarely lands between a chunk's arrival and its timestamp."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextlib.asynccontextmanager
async def _background(pool: Pool, config: RunConfig, lag: list[float], clock: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(sample_loop_lag(lag))]
    if not config.control.quiet:
        total = Total()
        tasks.append(asyncio.create_task(count_total(config, total)))
        tasks.append(asyncio.create_task(show_progress(pool.stats, total=total, clock=clock)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def _signals(pool: Pool, sink: RecordSink) -> AsyncIterator[asyncio.Event]:
    """First Ctrl-C / SIGTERM: stop sending, record in-flight requests as cancelled.
    Second: exit at once; records already written are whole lines, flushed."""
    interrupted = asyncio.Event()

    def on_signal() -> None:
        if interrupted.is_set():
            sink.close()
            drop_held_locks()
            os._exit(130)
        interrupted.set()
        say("interrupted: stopping; in-flight requests are recorded as cancelled (Ctrl-C again to quit now)")
        pool.stop()

    with loop_handlers(asyncio.get_running_loop(), on_signal):
        yield interrupted


def _finish_outputs(outcome: RunOutcome, config: RunConfig, lag: list[float], wall: float,
                    started_wall: float, findings: dict[str, Any] | None = None) -> None:
    from batchrun.analysis.columns import ColumnsBuilder
    from batchrun.report.limits import add_findings
    from batchrun.report.summary import SAMPLE_ROWS, slim_records, write_reports
    from batchrun.sim.config import public as public_sim

    out = outcome.out_dir
    gc.collect()        # the run's cyclic garbage (collected rarely while sending) is free for what follows
    gaps = GapSample()
    lean = ColumnsBuilder(keep=SAMPLE_ROWS, gaps=gaps)     # the summary's figures, one record at a time
    outcome.files.append(write_results(out / RECORDS, out, config.output.output_format, id_column=config.input.id_column,
                                       csv_formulas=config.output.csv_formulas, each=lean.add))
    wall_total = add_wall_time(out, wall)
    records = lean.finish()
    if config.endpoint.endpoint == "embeddings":
        from batchrun.store.vectors import consolidate
        outcome.files.append(consolidate(out, (r.id for r in slim_records(out / RECORDS) if r.status == OK)))
    summary = summarize(records, wall_time_s=wall_total, loop_lag_s=lag, itl_sample=gaps, slo=config.limits.slo)
    summary.update(_workloads(out, config, records, wall_total))
    add_findings(summary, findings or {})
    summary["run"] = {"interrupted": outcome.interrupted, "aborted": outcome.aborted,
                      "input_error": str(outcome.input_error) if outcome.input_error else None,
                      "refused": outcome.refused, "internal_errors": outcome.internal_errors,
                      "session_wall_time_s": wall, "started_at": started_wall}
    add_run_facts(summary, config, records)       # len() and one pass of light per-record views
    outcome.summary = summary
    builtin = sim_config(config)
    extra = {"builtin_endpoint": public_sim(builtin)} if builtin is not None else None
    outcome.files.extend(write_reports(out, summary, records, config=config.public_dict(),
                                       endpoint=outcome.endpoint, extra=extra).values())
    from batchrun.report.workloads import write_extras
    outcome.files.extend(write_extras(out, summary).values())


def _workloads(out: Path, config: RunConfig, records: Any, wall: float) -> dict[str, Any]:
    from batchrun.report.summary import slim_records
    from batchrun.report.workloads import workload_sections
    return workload_sections(out, config.public_dict(), records, wall, lambda: slim_records(out / RECORDS))
