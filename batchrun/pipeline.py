"""One run, start to finish: plan it, claim its directory, open the endpoint, send (in this process,
through worker processes or Ray actors, or through the Batch API), and write its files (finish.py).

What a face decides is injected (hooks.py): where messages go, how progress shows, how Ctrl-C
stops the run. Nothing here prints, exits the process or installs a signal handler; a run that
cannot start raises a BatchrunError, and how a started run ended is its RunOutcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

from batchrun.analysis.cost import Price, RunningCost, Usage, resolve_price
from batchrun.batchapi.mode import choose_mode
from batchrun.config import RunConfig
from batchrun.endpoint.multi import check_more, open_more
from batchrun.endpoint.requests import Job
from batchrun.endpoint.resolve import BUILTIN, choose_base_url, endpoint_info, open_endpoint, preflight, sim_config
from batchrun.endpoint.transport import Endpoint, make_session
from batchrun.engine.adaptive import AdaptiveConfig, settled_limit
from batchrun.engine.budget import Budget
from batchrun.engine.capacity import ensure_open_files, pacing_warnings
from batchrun.engine.coordinator import Coordinator
from batchrun.engine.limits import limits_summary
from batchrun.engine.looplag import sample_loop_lag
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.engine.quietgc import quiet_gc
from batchrun.engine.ray_plan import RayCluster, check_workload
from batchrun.engine.tools import ToolRunner
from batchrun.engine.workers_plan import worker_count, worker_spec
from batchrun.errors import ConfigError, InputChanged, OutputError
from batchrun.finish import RunOutcome, finish_run
from batchrun.hooks import Hooks, Notify, Total
from batchrun.inputs.identity import changed_while_read, input_identity
from batchrun.inputs.prompt import BadRow
from batchrun.inputs.scan import count_rows
from batchrun.plan import announce_row_settings, announce_schema, jobs, limited, open_rows, output_check, resolve_resume
from batchrun.redact import host_and_port
from batchrun.store.outputs import done_ids
from batchrun.store.records import RECORDS, Record, RecordSink
from batchrun.store.rundir import check_input, claim_run_dir, new_run_dir
from batchrun.store.sessions import RUN_JSON, start_session, write_json
from batchrun.workloads import Reading, Workload, kind_of, make_pool, tally
from batchrun.workloads import prepare as prepare_workload

INTERNAL_LOG = "internal-errors.log"


async def execute_run(config: RunConfig, hooks: Hooks = Hooks()) -> RunOutcome:
    """Run `config` to the end (or until stopped) and write every output file."""
    notify = hooks.notify
    config = resolve_resume(config)
    config = await choose_mode(config, notify)
    check_max_cost(config)
    rows = open_rows(config)
    config = config.replace(out=config.control.resume or config.output.out or default_out_dir(config))
    assert config.output.out is not None
    with claim_run_dir(
        config.output.out,
        resume=config.control.resume is not None,
        overwrite=config.control.overwrite,
        about=lock_about(config),
        say=notify,
    ):
        out = prepare_out_dir(config)
        identity = checked_input(config, out / RUN_JSON, notify)
        announce_row_settings(config, notify)
        announce_schema(config, notify)
        raised = ensure_open_files(config.limits.concurrency)
        if raised:
            notify(raised)
        sim = sim_config(config)
        if config.control.mode == "batch":
            from batchrun.batchapi import flow  # lazy: the openai SDK (~0.45 s) is for a batch run only

            sim = flow.sim_config(sim, config, out)
        async with (
            open_endpoint(
                config.endpoint.base_url, config.endpoint.api_key, announce=notify, sim_config=sim
            ) as endpoint,
            open_more(config, notify) as more,
        ):
            model = await preflight(endpoint, config.endpoint.model, timeout_s=config.limits.timeout, announce=notify)
            config = config.replace(
                model=model,
                base_url=BUILTIN
                if endpoint.embedded
                else choose_base_url(config.endpoint.base_url, config.endpoint.api_key),
            )
            price = resolve_price(model, config.output.price_in, config.output.price_out)  # a bad price stops here
            if config.control.max_cost is not None and price is None:
                raise ConfigError(
                    f"--max-cost needs a price for model {model!r}, which is not in the list-price table: "
                    "give --price-in and --price-out (USD per 1M prompt / output tokens)"
                )
            info = endpoint_info(endpoint, model)
            session, previous = start_session(out, config.public_dict(), info)
            save_input_identity(out / RUN_JSON, identity)
            if previous is not None and previous.get("endpoint") != info:
                notify(
                    f"this session's endpoint differs from session {previous.get('n')}'s "
                    f"({_describe(previous.get('endpoint') or {})}): now {_describe(info)}"
                )
            budget, running = _spend(config, price)
            skip = done_ids(out / RECORDS, _carry(budget, running)) if config.control.resume else set()
            if skip:
                notify(f"resuming {out} (session {session}): {len(skip)} rows already done are not sent again")
            keep_ids = config.control.input_changed == "ok" and config.control.limit is None
            reading = Reading(seen=set() if keep_ids else None, total=Total())
            if config.control.mode == "batch":
                items = jobs(config, tally(limited(rows, config.control.limit), skip, reading), skip)
                outcome = await flow.run_batch(config, endpoint, out, items, session, hooks)
            else:
                await check_more(more, config, notify)
                workload = await prepare_workload(
                    config, endpoint, limited(rows, config.control.limit), out, skip, jobs, notify, reading
                )
                workload.more_endpoints = more
                if workload.kind in ("rows", "trace"):
                    workload.items = _warn_pacing(config, workload.items, notify)
                outcome = await _run_pool(
                    config, endpoint, out, workload, _Run(len(skip), session, identity, hooks, reading, budget, running)
                )
            outcome.endpoint = info
            if outcome.input_error is None and not outcome.interrupted and reading.ended:
                report_vanished(skip, reading.seen, notify)
            return outcome


def check_max_cost(config: RunConfig) -> None:
    """--max-cost where the run's shape can honour it: each request is judged before it is sent."""
    if config.control.max_cost is None:
        return
    if config.control.mode == "batch":
        raise ConfigError(
            "--max-cost cannot stop a Batch API run: a job is billed for all its requests once submitted. "
            "Size the run with --limit (the dry run prices it), or send online (--mode online)"
        )
    shape = kind_of(config)
    if shape in ("sessions", "embeddings"):
        what = "multi-turn sessions" if shape == "sessions" else "--endpoint embeddings"
        raise ConfigError(
            f"--max-cost does not apply to {what} yet (only one request per row is judged before it is sent); "
            "size the run with --limit instead"
        )


def _spend(config: RunConfig, price: Price | None) -> tuple[Budget | None, RunningCost | None]:
    """With a price: --max-cost's budget and the running cost the progress shows."""
    if price is None:
        return None, None  # --max-cost without a price was refused above
    budget = None if config.control.max_cost is None else Budget(config.control.max_cost, price)
    return budget, RunningCost(price)


def _carry(budget: Budget | None, running: RunningCost | None) -> Callable[[dict[str, Any]], None] | None:
    """What an earlier session's records (every one: each was a billed request) tell the budget
    and the running cost, read in the pass that finds the rows already done."""
    if running is None:
        return None

    def seen(data: dict[str, Any]) -> None:
        usage = Usage.of(data)  # not Record.from_dict: that would double the pass
        running.add(usage)
        if budget is not None:
            budget.carry([usage])

    return seen


def default_out_dir(config: RunConfig) -> Path:
    stem = config.input.path.stem if config.input.path else "run"
    return new_run_dir(stem)


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


# ---------------------------------------------------------------- the input across sessions


def _saved_run(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except (OSError, ValueError):
        return {}


def save_input_identity(run_json: Path, identity: dict[str, Any] | None) -> None:
    """Keep the input's identity in run.json (start_session keeps keys it does not own)."""
    data = _saved_run(run_json)
    data["input_identity"] = identity
    write_json(run_json, data)


def checked_input(config: RunConfig, run_json: Path, notify: Notify) -> dict[str, Any] | None:
    """The input's identity; on --resume, refused when it is not the file the run started with."""
    if config.input.path is None:
        return None
    identity = input_identity(config.input.path)
    if config.control.resume is not None:
        saved = _saved_run(run_json).get("input_identity")
        difference = check_input(saved, identity, config.control.input_changed == "ok")
        if difference:
            notify(f"--input-changed ok: {difference}; rows are matched by id")
    return identity


def changed_during_run(config: RunConfig, identity: dict[str, Any] | None) -> InputChanged | None:
    """After a run that read its whole input: the file is still the one it began on. Rows added
    after the reader reached its end were never read (and the summary would say 100%)."""
    if config.input.path is None or identity is None:
        return None
    change = changed_while_read(config.input.path, identity, None)
    if change is None:
        return None
    return InputChanged(
        f"changed during the run, after it was read ({change}): rows it has now may not be "
        "in this run, rows it lost may be",
        path=str(config.input.path),
    )


def report_vanished(done: set[str], seen: set[str] | None, notify: Notify) -> None:
    """--input-changed ok: ids the run had finished that the new file no longer has."""
    if seen is None:
        return
    vanished = sorted(done - seen)
    if vanished:
        notify(
            f"{len(vanished)} id(s) done earlier are not in the input any more (kept in the results): "
            + ", ".join(vanished[:10])
            + (" ..." if len(vanished) > 10 else "")
        )


def _warn_pacing(config: RunConfig, items: Iterator[Job | BadRow], notify: Notify) -> Iterator[Job | BadRow]:
    """With --rpm / --tpm: warn before sending when they cannot be what was meant."""
    limits = config.limits
    if limits.rpm is None and limits.tpm is None:
        return items
    first = [item for item in itertools.islice(items, 1)]
    charge = next((i.estimated_tokens for i in first if isinstance(i, Job)), 0)
    rows = count_rows(config.input.path, config.input.fmt) if config.input.path is not None else None
    for warning in pacing_warnings(rows, charge, limits.rpm, limits.tpm):
        notify(f"warning: {warning}")
    return itertools.chain(first, items)


async def count_total(config: RunConfig, reading: Reading, resumed: int) -> None:
    """This session's progress total, the rows left to send (rows minus the `resumed` done
    earlier), estimated from a count of the file made in a thread so the first rows go out at
    once; the reader makes it exact when it meets the input's end (workloads.tally)."""
    total = reading.total
    if config.input.path is None or total is None or reading.ended:
        return
    limit = config.control.limit
    if limit is not None:
        total.rows = limit  # a pilot's total at once; corrected if the file is shorter
    rows = await asyncio.to_thread(count_rows, config.input.path, config.input.fmt)
    if rows is not None and not reading.ended:
        total.rows = max(0, (min(rows, limit) if limit is not None else rows) - resumed)


# ---------------------------------------------------------------- sending


@dataclass
class _Run:
    """What sending needs to know of the session."""

    resumed: int  # rows done in earlier sessions (progress)
    session: int
    identity: dict[str, Any] | None
    hooks: Hooks
    reading: Reading  # the input as read so far (progress total)
    budget: Budget | None = None  # --max-cost
    cost: RunningCost | None = None  # spend and projection so far (progress), when a price is known


async def _run_pool(config: RunConfig, endpoint: Endpoint, out: Path, workload: Workload, run: _Run) -> RunOutcome:
    clock = time.perf_counter
    lag: list[float] = []
    t0 = clock()
    started_wall = time.time()
    workers = worker_count(config, workload.kind) if config.scale.ray is None else 0
    secrets = tuple(dict.fromkeys(s for e in [endpoint, *workload.more_endpoints] for s in e.secrets))
    with RecordSink(out / RECORDS, secrets=secrets) as sink:

        def write(record: Record) -> None:
            record.session = run.session
            sink.write(record)

        def write_many(records: list[Record]) -> None:
            for record in records:
                record.session = run.session
                span.track(record)
            sink.write_many(records)

        span = SendSpan(write)
        send = _send_by_ray if config.scale.ray is not None else _send_by_workers if workers > 1 else _send_in_process
        pool, interrupted = await send(
            config, endpoint, out, workload, _Sending(span.write, write_many, sink, t0, clock, lag, run, workers)
        )
        # First send to last byte: client setup before the first request is not the endpoint's time.
        wall = span.width() or clock() - getattr(pool, "t0", t0)
    outcome = RunOutcome(
        out_dir=out,
        summary={},
        interrupted=interrupted.is_set(),
        aborted=pool.abort_reason,
        input_error=pool.input_error,
        failed=pool.stats.failed,
        endpoint=endpoint_info(endpoint, config.endpoint.model),
        refused=pool.refused,
        internal_errors=len(pool.internal_errors),
    )
    if run.budget is not None:
        outcome.max_cost = {
            "max_usd": run.budget.max_usd,
            "spent_usd": run.budget.spent_usd,
            "reached": run.budget.reached,
        }
    if pool.internal_errors:
        _write_internal_log(out, pool.internal_errors)
    if not (outcome.input_error or outcome.interrupted or outcome.aborted or outcome.refused):
        outcome.input_error = changed_during_run(config, run.identity)
    findings = _pool_findings(pool, config, wall) if isinstance(pool, Pool) else {}
    finish_run(outcome, config, lag, wall, started_wall, findings)
    return outcome


@dataclass
class _Sending:
    """What each way of sending needs from _run_pool."""

    write: Callable[[Record], None]  # one record (sets its session, tracks the send span)
    write_many: Callable[[list[Record]], None]
    sink: RecordSink
    t0: float
    clock: Callable[[], float]
    lag: list[float]  # event-loop lag samples of this process
    run: _Run
    workers: int


async def _send_in_process(
    config: RunConfig, endpoint: Endpoint, out: Path, workload: Workload, send: _Sending
) -> tuple[Any, asyncio.Event]:
    """The pool on this event loop."""
    t0, clock = send.t0, send.clock
    async with make_session(config.limits.concurrency) as session:
        tools = config.tools
        runner = ToolRunner.from_file(tools.tool_module, tools.tool_timeout) if tools.tool_module else None
        pool = make_pool(
            workload,
            session,
            endpoint,
            send.write,
            config,
            _pool_config(config),
            out,
            t0,
            clock,
            runner,
            lambda prompt: next(jobs(config, iter([prompt]), set())),
            send.write_many,
            output_check=output_check(config),
            warn=send.run.hooks.notify,
        )
        pool.stats.resumed = send.run.resumed
        pool.budget, pool.stats.cost = send.run.budget, send.run.cost
        async with _stopping(pool, send) as interrupted, _background(pool, config, send), quiet_gc():
            if workload.schedule is not None:
                pool.t0 = clock()  # a trace's clock starts now, after the setup above (gc freeze)
                await pool.run(workload.items, schedule=workload.schedule)
            else:
                await pool.run(workload.items)
    return pool, interrupted


async def _send_by_workers(
    config: RunConfig, endpoint: Endpoint, out: Path, workload: Workload, send: _Sending
) -> tuple[Any, asyncio.Event]:
    """--workers N: N sending processes; this one reads, writes, paces and counts (engine/coordinator.py)."""
    notify = send.run.hooks.notify
    pool_config = _pool_config(config)
    coordinator = Coordinator(
        worker_spec(config, endpoint, pool_config, send.t0),
        pool_config,
        send.workers,
        t0=send.t0,
        write_many=send.write_many,
        say=notify,
    )
    coordinator.stats.resumed = send.run.resumed
    coordinator.budget, coordinator.stats.cost = send.run.budget, send.run.cost
    async with _stopping(coordinator, send) as interrupted, _background(coordinator, config, send):
        await coordinator.run(
            workload.items,
            started=lambda names: notify(
                f"{len(names)} worker processes ({', '.join(names)}); this process reads, writes and paces"
            ),
        )
    # The loops that timed the requests are the workers': their lag is what the summary judges.
    send.lag[:] = coordinator.loop_lag or send.lag
    if coordinator.resent:
        notify(f"{coordinator.resent} rows held by a worker that ended were sent again; each is recorded once")
    return coordinator.tally, interrupted


async def _send_by_ray(
    config: RunConfig, endpoint: Endpoint, out: Path, workload: Workload, send: _Sending
) -> tuple[Any, asyncio.Event]:
    """--ray: the workers as Ray actors; this process reads, writes, paces and counts (engine/ray_plan.py)."""
    notify = send.run.hooks.notify
    check_workload(workload.kind)
    pool_config = _pool_config(config)
    assert config.scale.ray is not None
    async with RayCluster.open(config.scale.ray, notify) as cluster:
        actors = cluster.plan(
            None if config.scale.workers_auto else config.scale.workers, config.scale.ray_cpus, endpoint
        )
        coordinator = Coordinator(
            worker_spec(config, endpoint, pool_config, send.t0),
            pool_config,
            actors,
            t0=send.t0,
            write_many=send.write_many,
            say=notify,
            launch=cluster.launch,
        )
        coordinator.stats.resumed = send.run.resumed
        coordinator.budget, coordinator.stats.cost = send.run.budget, send.run.cost
        async with _stopping(coordinator, send) as interrupted, _background(coordinator, config, send):
            await coordinator.run(
                workload.items,
                started=lambda names: notify(
                    f"{len(names)} Ray actor{'s' if len(names) > 1 else ''} ({'; '.join(names)}); this process "
                    "reads, writes and paces"
                ),
            )
    send.lag[:] = coordinator.loop_lag or send.lag  # the actors' loops timed the requests
    if coordinator.resent:
        notify(f"{coordinator.resent} rows held by a Ray actor that ended were sent again; each is recorded once")
    return coordinator.tally, interrupted


class SendSpan:
    """Passes records on to `write` and keeps the first send and the last end among them."""

    def __init__(self, write: Callable[[Record], None]) -> None:
        self._write = write
        self.first: float | None = None
        self.last: float | None = None

    def write(self, record: Record) -> None:
        self.track(record)
        self._write(record)

    def track(self, record: Record) -> None:
        if record.sent_s is not None and record.end_s is not None:
            self.first = record.sent_s if self.first is None else min(self.first, record.sent_s)
            self.last = record.end_s if self.last is None else max(self.last, record.end_s)

    def width(self) -> float | None:
        """Seconds from the first send to the last byte; None before any request ended."""
        if self.first is None or self.last is None:
            return None
        return (self.last - self.first) or None


def _pool_findings(pool: Pool, config: RunConfig, wall: float) -> dict[str, Any]:
    """What the pool learned about the endpoint: its rate limits and, with --concurrency auto,
    the concurrency over time and where it settled."""
    assert pool.limits is not None
    stats, limits = pool.stats, config.limits
    found: dict[str, Any] = {
        "rate_limits": limits_summary(
            pool.limits,
            attempts=stats.attempts,
            rate_limited=stats.rate_limited,
            user_rpm=limits.rpm,
            user_tpm=limits.tpm,
            learn=limits.learn_rpm or limits.learn_tpm,
        )
    }
    if pool.controller is not None:
        history = stats.concurrency_history
        found["concurrency"] = {
            "auto": True,
            "ceiling": limits.concurrency,
            "history": history,
            "settled": settled_limit(history, wall),
            "final": history[-1][1] if history else None,
        }
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
    limits = config.limits
    adaptive = None
    if limits.concurrency_auto:
        slo = limits.slo or {}
        adaptive = AdaptiveConfig(ceiling=limits.concurrency, slo_ttft_s=slo.get("ttft"), slo_e2e_s=slo.get("e2e"))
    several = bool(config.endpoint.extra_base_urls)  # then each endpoint has its own limits (endpoint/multi.py)
    return PoolConfig(
        concurrency=limits.concurrency,
        rpm=None if several else limits.rpm,
        tpm=None if several else limits.tpm,
        retries=limits.retries,
        max_errors=config.control.max_errors,
        max_error_rate=config.control.max_error_rate,
        seed=limits.seed,
        max_tool_rounds=config.tools.max_tool_rounds,
        max_retry_wait_s=limits.max_retry_wait,
        learn_rpm=limits.learn_rpm and not several,
        learn_tpm=limits.learn_tpm and not several,
        adaptive=adaptive,
    )


@contextlib.asynccontextmanager
async def _background(pool: Any, config: RunConfig, send: _Sending) -> AsyncIterator[None]:
    """While sending: the event loop's lag sampled, and the face's progress with the row total."""
    tasks = [asyncio.create_task(sample_loop_lag(send.lag))]
    progress = send.run.hooks.progress
    reading = send.run.reading
    if progress is not None and not config.control.quiet and reading.total is not None:
        tasks.append(asyncio.create_task(count_total(config, reading, send.run.resumed)))
        tasks.append(asyncio.create_task(progress.rows(pool.stats, reading.total, send.clock)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def _stopping(pool: Any, send: _Sending) -> AsyncIterator[asyncio.Event]:
    """How the face's Ctrl-C stops sending (hooks.interrupts): the first stops it, in-flight
    requests recorded as cancelled; a second may close the records file at once (whole lines, flushed)."""
    interrupted = asyncio.Event()
    hooks = send.run.hooks

    def stop() -> None:
        if not interrupted.is_set():
            hooks.notify(
                "interrupted: stopping; in-flight requests are recorded as cancelled (Ctrl-C again to quit now)"
            )
        interrupted.set()
        pool.stop()

    with hooks.interrupts(stop, send.sink.close):
        yield interrupted
