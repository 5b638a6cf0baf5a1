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
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from batchrun.endpoint.client import Endpoint, make_session
from batchrun.config import RunConfig, config_replace, env_base_url
from batchrun.endpoint.multi import check_more, open_more
from batchrun.endpoint.resolve import BUILTIN, choose_base_url, endpoint_info, open_endpoint, preflight
from batchrun.engine.capacity import count_rows, ensure_open_files, pacing_warnings
from batchrun.errors import ConfigError, InputError, OutputError
from batchrun.inputs.rows import read_prompts
from batchrun.analysis.metrics import GapSample, summarize
from batchrun.store.outputs import done_ids, iter_latest, write_results
from batchrun.engine.pool import Job, Pool, PoolConfig
from batchrun.progress import sample_loop_lag, show_progress
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.store.records import OK, Record, RecordSink
from batchrun.store.sessions import RUN_JSON, add_wall_time, read_run_json, restore_base_url, saved_base_url, start_session
from batchrun.engine.tools import ToolRunner
from batchrun.workloads import Workload, make_pool
from batchrun.workloads import prepare as prepare_workload
from batchrun.endpoint.requests import (RequestDefaults, build_body, build_completion_body, estimate_prompt_tokens,
                                       estimate_request_tokens)

RECORDS, SUMMARY, INTERNAL_LOG = "records.jsonl", "summary.json", "internal-errors.log"


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
    stem = config.input.stem if config.input else "run"
    return Path("results") / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


# What defines the rows and their requests: on --resume these come from the saved run
# unless given again; how to send them (concurrency, limits, timeouts) comes from now.
_RESUMED_FIELDS = ("input", "fmt", "prompt_column", "id_column", "template", "system", "on_bad_row",
                   "model", "max_tokens", "temperature", "extra_body", "tools", "tool_choice",
                   "parallel_tool_calls", "tool_module", "output_format", "endpoint", "batch_size",
                   "synthetic")


def resolve_resume(config: RunConfig) -> RunConfig:
    """For --resume DIR: the saved run's input and request settings, unless given again now, and
    its endpoint unless --base-url names another (`config.base_url` is then the flag's value)."""
    if config.resume is None:
        return config
    run = read_run_json(config.resume)
    saved_config = {k: v for k, v in run["config"].items() if k != "base_url"}
    base = RunConfig.from_public_dict(saved_config, resume=config.resume)
    defaults = RunConfig.__dataclass_fields__
    changes: dict[str, Any] = {"out": config.resume}
    if config.base_url is None:
        changes["base_url"] = restore_base_url(saved_base_url(run), env_base_url(), config.api_key)
    for name in _RESUMED_FIELDS:
        now = getattr(config, name)
        default = defaults[name].default
        changes[name] = getattr(base, name) if now is None or now == default or now == {} else now
    return config_replace(config, **changes)


def open_rows(config: RunConfig) -> Iterator[Prompt | BadRow]:
    """The input's rows, read lazily; a missing, empty or unreadable file, or a bad
    --template / --prompt-column, raises InputError here, before anything is started."""
    if config.synthetic is not None:     # checked now; generated once the endpoint is known
        from batchrun.inputs.synthetic import check_spec
        check_spec(config.synthetic)
        return iter(())
    assert config.input is not None
    rows = read_prompts(config.input, fmt=config.fmt, prompt_column=config.prompt_column,
                        id_column=config.id_column, template=config.template,
                        system=config.system, on_bad_row=config.on_bad_row)
    from batchrun.workloads import length_trace
    if length_trace(config):             # lengths without text: prompts are sized once the endpoint is known
        return iter(())
    # Header-level problems (which column is the prompt?) surface with the first row: read it now.
    first = next(rows, None)
    return rows if first is None else itertools.chain([first], rows)


def jobs(config: RunConfig, rows: Iterator[Prompt | BadRow], skip: set[str]) -> Iterator[Job | BadRow]:
    """Rows minus those already done, as ready-to-send Jobs."""
    defaults = RequestDefaults(model=config.model, max_tokens=config.max_tokens,
                               temperature=config.temperature, extra_body=config.extra_body,
                               tools=config.tools, tool_choice=config.tool_choice,
                               parallel_tool_calls=config.parallel_tool_calls)
    build = build_completion_body if config.endpoint == "completions" else build_body
    for item in rows:
        if item.id in skip:
            continue
        if isinstance(item, BadRow):
            yield item
            continue
        try:
            body = build(item, defaults)
            data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()   # NaN is not JSON
        except (TypeError, ValueError, RecursionError) as exc:   # e.g. a Parquet date inside messages
            reason = f"{config.input} line {item.line}: the row cannot be sent as JSON ({exc})"
            if config.on_bad_row == "fail":
                raise InputError(f"the row cannot be sent as JSON ({exc})", path=str(config.input),
                                 line=item.line, hint="fix the row or use --on-bad-row skip") from None
            yield BadRow(item.id, item.row, item.line, reason)
            continue
        yield Job(prompt=item, body=data,
                  estimated_tokens=estimate_request_tokens(body, config.max_tokens),
                  prompt_tokens_estimate=estimate_prompt_tokens(body))


def prepare_out_dir(config: RunConfig) -> Path:
    out = config.resume or config.out or default_out_dir(config)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to {out}: {exc.strerror} (choose another --out)") from exc
    return out


async def execute_run(config: RunConfig) -> RunOutcome:
    """Run `config` to the end (or until stopped) and write every output file."""
    config = resolve_resume(config)
    rows = open_rows(config)
    out = prepare_out_dir(config)
    raised = ensure_open_files(config.concurrency)
    if raised:
        say(raised)
    async with open_endpoint(config.base_url, config.api_key, announce=say) as endpoint, open_more(config, say) as more:
        model = await preflight(endpoint, config.model, timeout_s=config.timeout, announce=say)
        config = config_replace(config, model=model, base_url=BUILTIN if endpoint.embedded
                                else choose_base_url(config.base_url, config.api_key))
        info = endpoint_info(endpoint, model)
        session, previous = start_session(out, config.public_dict(), info)
        if previous is not None and previous.get("endpoint") != info:
            say(f"this session's endpoint differs from session {previous.get('n')}'s "
                f"({_describe(previous.get('endpoint') or {})}): now {_describe(info)}")
        skip = done_ids(out / RECORDS) if config.resume else set()
        if skip:
            say(f"resuming {out} (session {session}): {len(skip)} rows already done are not sent again")
        await check_more(more, config, say)
        workload = await prepare_workload(config, endpoint, rows, out, skip, jobs, say)
        workload.more_endpoints = more
        if workload.kind in ("rows", "trace"):
            workload.items = _warn_pacing(config, workload.items)
        outcome = await _run_pool(config, endpoint, out, workload, len(skip), session)
        outcome.endpoint = info
        return outcome


def _describe(info: dict[str, Any]) -> str:
    where = "the built-in simulated endpoint" if info.get("kind") == "builtin" else info.get("base_url")
    return f"{where}, model {info.get('model')}"


def _warn_pacing(config: RunConfig, items: Iterator[Job | BadRow]) -> Iterator[Job | BadRow]:
    """With --rpm / --tpm: warn before sending when they cannot be what was meant."""
    if config.rpm is None and config.tpm is None:
        return items
    first = [item for item in itertools.islice(items, 1)]
    charge = next((i.estimated_tokens for i in first if isinstance(i, Job)), 0)
    rows = count_rows(config.input) if config.input is not None else None
    for warning in pacing_warnings(rows, charge, config.rpm, config.tpm):
        say(f"warning: {warning}")
    return itertools.chain(first, items)


async def _run_pool(config: RunConfig, endpoint: Endpoint, out: Path, workload: Workload,
                    resumed: int, session_n: int = 1) -> RunOutcome:
    clock = time.perf_counter
    lag: list[float] = []
    t0 = clock()
    started_wall = time.time()
    with RecordSink(out / RECORDS) as sink:
        def write(record: Record) -> None:
            record.session = session_n
            sink.write(record)

        def write_many(records: list[Record]) -> None:
            for record in records:
                record.session = session_n
            sink.write_many(records)

        async with make_session(config.concurrency) as session:
            runner = ToolRunner.from_file(config.tool_module, config.tool_timeout) if config.tool_module else None
            pool = make_pool(workload, session, endpoint, write, config, _pool_config(config), out, t0, clock,
                             runner, lambda prompt: next(jobs(config, iter([prompt]), set())), write_many)
            pool.stats.resumed = resumed
            async with _signals(pool, sink) as interrupted, _background(pool, config, lag, clock), _quiet_gc():
                if workload.schedule is not None:
                    pool.t0 = t0 = clock()      # a trace's clock starts now, after the setup above (gc freeze)
                    await pool.run(workload.items, schedule=workload.schedule)
                else:
                    await pool.run(workload.items)
        wall = clock() - t0
    outcome = RunOutcome(out_dir=out, summary={}, interrupted=interrupted.is_set(),
                         aborted=pool.abort_reason, input_error=pool.input_error, failed=pool.stats.failed,
                         endpoint=endpoint_info(endpoint, config.model), refused=pool.refused,
                         internal_errors=len(pool.internal_errors))
    if pool.internal_errors:
        _write_internal_log(out, pool.internal_errors)
    _finish_outputs(outcome, config, lag, wall, started_wall)
    return outcome


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
    several = bool(config.extra_base_urls)      # then each endpoint has its own limits (endpoint/multi.py)
    return PoolConfig(concurrency=config.concurrency, rpm=None if several else config.rpm,
                      tpm=None if several else config.tpm,
                      retries=config.retries, max_errors=config.max_errors,
                      max_error_rate=config.max_error_rate, seed=config.seed,
                      max_tool_rounds=config.max_tool_rounds, max_retry_wait_s=config.max_retry_wait)


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
    if not config.quiet:
        tasks.append(asyncio.create_task(show_progress(pool.stats, total=None, clock=clock)))
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
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if interrupted.is_set():
            sink.close()
            os._exit(130)
        interrupted.set()
        say("interrupted: stopping; in-flight requests are recorded as cancelled (Ctrl-C again to quit now)")
        pool.stop()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
    try:
        yield interrupted
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _finish_outputs(outcome: RunOutcome, config: RunConfig, lag: list[float], wall: float,
                    started_wall: float) -> None:
    from batchrun.report.summary import write_reports

    out = outcome.out_dir
    outcome.files.append(write_results(out / RECORDS, out, config.output_format))
    wall_total = add_wall_time(out, wall)
    gaps = GapSample()
    records = list(_slim(iter_latest(out / RECORDS), gaps))
    if config.endpoint == "embeddings":
        from batchrun.store.vectors import consolidate
        outcome.files.append(consolidate(out, (r.id for r in records if r.status == OK)))
    summary = summarize(records, wall_time_s=wall_total, loop_lag_s=lag, itl_sample=gaps)
    summary.update(_workloads(out, config, records, wall_total))
    summary["run"] = {"interrupted": outcome.interrupted, "aborted": outcome.aborted,
                      "input_error": str(outcome.input_error) if outcome.input_error else None,
                      "refused": outcome.refused, "internal_errors": outcome.internal_errors,
                      "session_wall_time_s": wall, "started_at": started_wall}
    outcome.summary = summary
    outcome.files.extend(write_reports(out, summary, records, config=config.public_dict(),
                                       endpoint=outcome.endpoint).values())
    from batchrun.report.workloads import write_extras
    outcome.files.extend(write_extras(out, summary).values())


def _workloads(out: Path, config: RunConfig, records: list[Record], wall: float) -> dict[str, Any]:
    from batchrun.report.workloads import workload_sections
    return workload_sections(out, config.public_dict(), records, wall)


def _slim(records: Iterator[Record], gaps: GapSample, keep_text: int = 20) -> Iterator[Record]:
    """Records for the summary and reports, without what they never read (attempt logs, the
    text past the report's sample rows, and ITL gaps, which go to `gaps`), so a million-row
    run's summary fits in memory."""
    for i, record in enumerate(records):
        if record.status == OK:
            gaps.add(record.itl_s)
        record.itl_s = []
        record.attempt_log = []
        if i >= keep_text:
            record.text = ""
            if record.rounds:
                record.rounds = [{**r, "text": "", "itl_s": []} for r in record.rounds]
        yield record
