"""`batchrun run --mode batch` from where an online run would start its pool: plan, upload, create,
wait, collect, then the same output files.

Every step is saved in run.json before the next (see ledger.py), so `--resume DIR` after a
crash reattaches to the jobs already created, collects them, and submits only rows that have
no ok record and were not in a job collected in this session: never a file or job twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from batchrun.batchapi.api import TRANSIENT, BatchApi, BatchApiError
from batchrun.batchapi.jobobject import KNOWN_STATUSES, read_job
from batchrun.batchapi.ledger import TERMINAL, JobEntry, Ledger
from batchrun.batchapi.lines import Limits, Splitter, oversize_reason, read_ids
from batchrun.batchapi.results import ResultIndex, job_records
from batchrun.config import RunConfig
from batchrun.endpoint.batch import JobInfo, batch_body, request_line
from batchrun.endpoint.requests import Job
from batchrun.endpoint.resolve import endpoint_info
from batchrun.endpoint.transport import Endpoint
from batchrun.engine.pool import TRUNCATED_OUTPUT
from batchrun.errors import ConfigError, InputError
from batchrun.finish import RunOutcome, finish_run
from batchrun.hooks import Hooks
from batchrun.inputs.prompt import BadRow
from batchrun.plan import output_check
from batchrun.store.records import INVALID_OUTPUT, OK, SKIPPED, Record, RecordSink, read_records

BATCH_DIR = "batch"  # the run directory's request files
SIM_STATE_DIR = "sim-batches"  # the built-in endpoint's files and jobs, kept for --resume
POLL_FIRST_S, POLL_GROWTH, POLL_MAX_S = 0.5, 1.5, 30.0
BATCH_WAIT_S = 25 * 3600.0  # --batch-wait's default: the 24 h window and an hour to finalize
LIMITS = Limits()  # the Batch API's per-file limits (50,000 requests, 200 MB)
CAPACITY_CODE = "token_limit_exceeded"  # "Enqueued token limit reached for <model> ..."


def sim_config(base: Any, config: RunConfig, out: Path) -> Any:
    """The built-in endpoint's SimConfig (`base`, None for a configured endpoint) for this run: in
    batch mode its files and jobs are kept in the run directory, so a resumed run finds them."""
    if base is None or config.control.mode != "batch":
        return base
    return base.replace(batch_state_dir=str((out / SIM_STATE_DIR).resolve()))


async def run_batch(
    config: RunConfig,
    endpoint: Endpoint,
    out: Path,
    items: Iterator[Job | BadRow],
    session_n: int = 1,
    hooks: Hooks = Hooks(),
) -> RunOutcome:
    """Where an online run starts its pool: the same rows (`plan.jobs`: the same bodies, bad
    rows and skips) through the Batch API, then the same output files (finish.py)."""
    ledger = Ledger.load(out)
    _check_endpoint(ledger, endpoint, out)
    ledger.save(out)
    session = BatchSession(config, endpoint, out, ledger, LIMITS, POLL_MAX_S, hooks)
    session.session_n = session_n
    await session.run(items)
    outcome = RunOutcome(
        out_dir=out,
        summary={},
        interrupted=session.interrupted,
        failed=session.failed,
        aborted=session.aborted,
        endpoint=endpoint_info(endpoint, config.endpoint.model),
    )
    finish_run(outcome, config, None, max(session.wall_s, 1e-9), session.started_wall)
    return outcome


def _check_endpoint(ledger: Ledger, endpoint: Endpoint, out: Path) -> None:
    here = "embedded" if endpoint.embedded else endpoint.display_url
    if ledger.endpoint is None or not ledger.open_jobs():
        ledger.endpoint = here
    elif ledger.endpoint != here:
        raise ConfigError(
            f"the open Batch API jobs of {out} live at {ledger.endpoint}, not {here}: resume "
            f"against the same endpoint (--base-url / OPENAI_BASE_URL) to collect them"
        )


class BatchSession:
    """One session of a batch run: its planning, submissions, waiting and collecting."""

    def __init__(
        self,
        config: RunConfig,
        endpoint: Endpoint,
        out: Path,
        ledger: Ledger,
        limits: Limits,
        poll_max_s: float,
        hooks: Hooks = Hooks(),
    ) -> None:
        self.config, self.endpoint, self.out, self.ledger, self.hooks = config, endpoint, out, ledger, hooks
        self.note = hooks.notify  # one line for the user
        self.limits, self.poll_max_s = limits, poll_max_s
        self.interrupted, self.failed = False, 0
        self.aborted: str | None = None  # why this session stopped early (--batch-wait, a failed download)
        self.uncollected: list[str] = []  # jobs that ended but whose files could not be downloaded
        self._warned: set[tuple[str, str]] = set()  # (job, problem) already warned about
        self.wall_s, self.started_wall = 0.0, time.time()
        self._stop = asyncio.Event()
        self._t0, self._cancelled = time.perf_counter(), False
        self.session_n = 1  # run.json's session number, kept on every record
        self._answer_check = output_check(config)

    async def run(self, items: Iterator[Job | BadRow]) -> None:
        t0 = self._t0 = time.perf_counter()
        records = self.out / "records.jsonl"
        try:
            with RecordSink(records, secrets=self.endpoint.secrets) as sink:
                self._sink = sink
                already = _recorded_by_job(records, {j.batch_id for j in self.ledger.open_jobs() if j.batch_id})
                self._plan(items, self._open_ids())
                async with BatchApi(self.endpoint) as api, self._signals():
                    try:
                        await self._submit(api)
                        await self._wait(api, already)
                    finally:
                        if api.reconnects:
                            self.note(
                                f"{api.reconnects} Batch API call(s) met a pooled connection the server had "
                                "closed and were sent again at once on a new one (not retries)"
                            )
        finally:
            self.wall_s = time.perf_counter() - t0

    # --- planning ---
    def _open_ids(self) -> set[str]:
        return {cid for job in self.ledger.open_jobs() for cid, _ in read_ids(self.out / job.ids)}

    def _plan(self, items: Iterator[Job | BadRow], skip: set[str]) -> None:
        """Write request files for the rows not in an open job; add them to the ledger."""
        first = len(self.ledger.jobs)
        splitter = Splitter(self.out / BATCH_DIR, lambda i: f"{first + i + 1:04d}", self.limits)
        try:
            for item in items:
                if _item_id(item) not in skip:
                    self._plan_row(item, splitter)
        finally:
            chunks = splitter.close()
        for chunk in chunks:
            self.ledger.jobs.append(
                JobEntry(
                    name=chunk.name,
                    input=str(chunk.input_path.relative_to(self.out)),
                    ids=str(chunk.ids_path.relative_to(self.out)),
                    requests=chunk.requests,
                    bytes=chunk.bytes,
                    model=chunk.model,
                    planned_at=time.time(),
                )
            )
        self.ledger.save(self.out)
        if chunks:
            self.note(
                f"{sum(c.requests for c in chunks)} rows in {len(chunks)} Batch API file(s) under "
                f"{self.out / BATCH_DIR}"
            )

    def _plan_row(self, item: Job | BadRow, splitter: Splitter) -> None:
        if isinstance(item, BadRow):  # recorded as the pool records it
            self._record(
                Record(
                    id=item.id, row=item.row, status=SKIPPED, error_type="BadRow", error=item.reason, input=item.data
                )
            )
            return
        prompt = item.prompt
        body = batch_body(json.loads(item.body))
        line = request_line(prompt.id, body)
        too_big = oversize_reason(len(line), self.limits)
        if too_big is None:
            splitter.add(line, prompt.id, prompt.row, body.get("model"), row_extras(item))
        elif self.config.input.on_bad_row == "fail":
            raise InputError(
                too_big, path=str(self.config.input.path), line=prompt.line, hint="fix the row or use --on-bad-row skip"
            )
        else:
            self._record(
                Record(
                    id=prompt.id,
                    row=prompt.row,
                    status=SKIPPED,
                    error_type="BadRow",
                    error=f"{self.config.input.path} line {prompt.line}: {too_big}",
                    input=prompt.data,
                )
            )

    # --- submitting ---
    async def _submit(self, api: BatchApi) -> None:
        for job in self.ledger.open_jobs():
            if self._stop.is_set():
                return
            await self._send(api, job)

    async def _send(self, api: BatchApi, job: JobEntry) -> None:
        """Upload the job's file and create its job, unless run.json or the provider says it was done."""
        name = self.ledger.upload_name(job)
        if job.file_id is None:
            job.file_id = await api.find_file(name, job.planned_at) or await api.upload(self.out / job.input, name)
            self.ledger.save(self.out)
        if job.batch_id is None:
            batch = await api.find_batch(job.file_id, job.planned_at, set(job.refused)) or await api.create(
                job.file_id, name
            )
            self._warn(job, _update(job, batch, self.endpoint.secrets))
            if job.batch_id is None:
                raise BatchApiError(
                    f"creating the job for {name} at {self.endpoint.display_url}: the answer has no "
                    f"job id to follow; --resume looks for the job by its file ({job.file_id}) again"
                )
            self.ledger.save(self.out)
            self.note(f"job {job.batch_id}: {job.requests} requests ({job.status})")

    # --- waiting and collecting ---
    async def _wait(self, api: BatchApi, already: dict[str, set[str]]) -> None:
        waiting = [j for j in self.ledger.open_jobs() if j.batch_id]
        queued: list[JobEntry] = []  # refused for the enqueued-token limit: sent again later
        if not waiting:
            return
        shown = self.hooks.progress
        progress = None if self.config.control.quiet or shown is None else shown.jobs(waiting)
        interval, since = POLL_FIRST_S, time.perf_counter()
        try:
            while (waiting or queued) and not self._stop.is_set() and not self._waited_enough(since, waiting + queued):
                if await self._past_deadline(api, waiting):
                    for job in queued:  # never created again: their rows are cancelled, resumable
                        job.status = "cancelled"
                        await self._collect(api, job, set())
                    queued = []
                freed = False
                for job in list(waiting):
                    if not await self._poll(api, job):
                        continue
                    waiting.remove(job)
                    if waiting and not self._cancelled and _refused_for_capacity(job):
                        self._requeue(job)
                        queued.append(job)
                        continue
                    await self._collect(api, job, already.get(job.batch_id or "", set()))
                    freed = True
                if freed and queued:  # a job ended: there may be room for the refused ones
                    for job in queued:
                        await self._send(api, job)
                    waiting, queued = waiting + queued, []
                if progress is not None:
                    progress.update()
                if waiting or queued:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), interval)
                    interval = min(interval * POLL_GROWTH, self.poll_max_s)
        finally:
            if progress is not None:
                progress.close()
        if (waiting or queued) and self.aborted is None:
            self.interrupted = True
            self.note(
                f"{len(waiting) + len(queued)} job(s) not collected (the open ones keep running at the "
                f"provider); continue with batchrun run --resume {self.out}"
            )
        elif self.uncollected and self.aborted is None:
            self.aborted = (
                f"the results of {len(self.uncollected)} ended job(s) could not be downloaded "
                f"({', '.join(self.uncollected[:5])}); they stay open"
            )

    def _waited_enough(self, since: float, waiting: list[JobEntry]) -> bool:
        """--batch-wait: once this session has waited that long, stop (the jobs go on at the
        provider, not cancelled) and say what to do; True from then on."""
        limit = self.config.control.batch_wait_s or BATCH_WAIT_S
        if self.aborted is None and time.perf_counter() - since >= limit:
            open_jobs = ", ".join(f"{j.batch_id} ({_status_text(j.status)})" for j in waiting[:5])
            self.aborted = (
                f"waited {_hours(limit)} for the Batch API jobs (--batch-wait) and {len(waiting)} are "
                f"still open: {open_jobs or 'none created yet'}. They go on at the provider: look at "
                f"them with batchrun batch status {self.out}, or stop them with batchrun batch cancel "
                f"{self.out}"
            )
        return self.aborted is not None

    def _warn(self, job: JobEntry, problems: list[str], suffix: str = "; ignored") -> None:
        """Each problem of a job's object once per session (a poll every 30 s would repeat it)."""
        for problem in problems:
            if (job.batch_id or job.name, problem) not in self._warned:
                self._warned.add((job.batch_id or job.name, problem))
                self.note(f"warning: job {job.batch_id or job.name}: the provider's {problem}{suffix}")

    def _requeue(self, job: JobEntry) -> None:
        """A job the provider refused at its enqueued-token limit ran nothing: its file is sent as a
        new job once one of this run's other jobs has ended."""
        self.note(
            f"job {job.batch_id} refused: {job.errors[0].get('message') if job.errors else ''} "
            "(it will be created again when another job of this run ends)"
        )
        job.refused.append(job.batch_id or "")
        job.batch_id, job.status, job.errors, job.request_counts = None, "waiting", [], {}
        self.ledger.save(self.out)

    async def _past_deadline(self, api: BatchApi, waiting: list[JobEntry]) -> bool:
        """--deadline: once it has passed, cancel the open jobs (once) and collect what they did.
        True in the round it passes."""
        deadline = self.config.control.deadline_s
        if deadline is None or self._cancelled or time.perf_counter() - self._t0 < deadline:
            return False
        self._cancelled = True
        self.note(
            f"--deadline {deadline:g} s passed: cancelling {len(waiting)} open job(s); rows they did "
            "not finish are recorded cancelled (send them again with --resume)"
        )
        for job in waiting:
            await api.cancel(job.batch_id or "")
        return True

    async def _poll(self, api: BatchApi, job: JobEntry) -> bool:
        """Refresh one job; True once it has ended."""
        try:
            batch = await api.retrieve(job.batch_id or "")
        except TRANSIENT as exc:
            self.note(f"job {job.batch_id}: status unavailable ({type(exc).__name__}); trying again")
            return False
        before = job.status
        self._warn(job, _update(job, batch, self.endpoint.secrets))
        if job.status not in KNOWN_STATUSES:
            limit = _hours(self.config.control.batch_wait_s or BATCH_WAIT_S)
            self._warn(
                job,
                [f"status {_status_text(job.status)} is one batchrun does not know"],
                f": the job is waited for as a running one, for at most {limit} in this session (--batch-wait)",
            )
        if job.status != before:
            self.ledger.save(self.out)
        return job.status in TERMINAL

    async def _collect(self, api: BatchApi, job: JobEntry, recorded: set[str]) -> None:
        """_collect_job; a job whose files cannot be downloaded stays open (not collected in
        run.json) while the others are collected and the run's files written: --resume tries again."""
        try:
            await self._collect_job(api, job, recorded)
        except BatchApiError as exc:
            self.uncollected.append(job.batch_id or job.name)
            self.note(f"warning: {exc}; job {job.batch_id} stays open and --resume {self.out} collects it")

    async def _collect_job(self, api: BatchApi, job: JobEntry, recorded: set[str]) -> None:
        """One record per row of the job, in input order (results.job_records). The provider's files
        are kept beside the request file (batch/0001.output.jsonl, ...) as lines.KeptLines makes
        them. Idempotent: rows already in `recorded` (a session killed mid-collect wrote them) are
        not written again, and run.json calls the job collected only once all its records are on disk."""
        index = ResultIndex(self.out)
        ids = {cid for cid, _ in read_ids(self.out / job.ids)}
        for kind, file_id in (("output", job.output_file_id), ("errors", job.error_file_id)):
            if file_id:
                target = self.out / BATCH_DIR / f"{job.name}.{kind}.jsonl"
                index.add(await api.download(file_id, target, self.config.limits.max_response_bytes), ids)
        info = JobInfo(
            batch_id=job.batch_id or "",
            status=job.status or "",
            created_at=job.created_at,
            ended_at=job.ended_at,
            errors=tuple(str(e["message"]) for e in job.errors if e.get("message")),
        )
        for record, extra in job_records(index, self.out / job.ids, self.out / job.input, info, self.endpoint.secrets):
            record = self._checked(record)
            for name, value in extra.items():
                setattr(record, name, value)
            self._write(record, recorded)
        self._sink.flush()  # the job's records on disk before run.json calls it collected
        job.collected = True
        self.ledger.save(self.out)
        counts = job.request_counts
        unmatched = f", {index.unmatched_count} naming no row of it" if index.unmatched_count else ""
        self.note(
            f"job {job.batch_id} {job.status}: {counts.get('completed', '?')} completed, "
            f"{counts.get('failed', '?')} failed, {len(ids) - len(index.found) - len(index.twice)} without "
            f"a result line{unmatched}"
        )

    def _checked(self, record: Record) -> Record:
        """--json / --json-schema: an ok answer is parsed and checked as online mode does; an invalid
        one is `invalid_output` (no retry within a job: --resume sends the row again)."""
        if record.status != OK or record.tool_calls or self._answer_check is None:
            return record
        record.parsed, problem = self._answer_check(record.text)
        if problem is not None:
            kind = "InvalidOutput"
            if record.finish_reason == "length":
                kind, problem = TRUNCATED_OUTPUT, f"{problem}; the answer was cut at max_tokens (raise --max-tokens)"
            record.status, record.error_type, record.error = INVALID_OUTPUT, kind, problem
        return record

    def _write(self, record: Record, recorded: set[str]) -> None:
        if record.id in recorded:
            return  # written by a session killed while collecting this job
        if record.status != OK:
            self.failed += 1
        self._record(record)

    def _record(self, record: Record) -> None:
        record.session = self.session_n
        self._sink.write(record)

    @contextlib.asynccontextmanager
    async def _signals(self) -> AsyncIterator[None]:
        """The face's Ctrl-C (hooks.interrupts): stop waiting (the jobs run on at the provider) and
        write the reports."""

        def stop() -> None:
            self.note("interrupted: no longer waiting; the jobs keep running at the provider")
            self._stop.set()

        try:
            with self.hooks.interrupts(stop, None):
                yield
        finally:
            if self._stop.is_set():
                self.interrupted = True


def _update(job: JobEntry, batch: Any, secrets: tuple[str, ...] = ()) -> list[str]:
    """Copy what the provider says about a job into its ledger entry, every field checked
    (jobobject.read_job: what does not check out is left out); the problems, to warn about."""
    view = read_job(batch, job.requests, secrets)
    job.batch_id = view.batch_id or job.batch_id
    job.status, job.request_counts = view.status, view.request_counts
    job.created_at, job.ended_at = view.created_at, view.ended_at
    job.output_file_id, job.error_file_id, job.errors = view.output_file_id, view.error_file_id, view.errors
    return view.problems


def _status_text(status: str | None) -> str:
    return f"'{status}'" if status else "(none)"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def row_extras(job: Job) -> dict[str, Any]:
    """What a row's record carries from the input besides the answer, kept beside the request line
    until the job ends (Record field -> value): the row's own columns and the request as sent."""
    extras = {"input": job.prompt.data, "request": job.request}
    return {name: value for name, value in extras.items() if value is not None}


def _refused_for_capacity(job: JobEntry) -> bool:
    """OpenAI creates a job past the enqueued-token limit and fails it at once with this code."""
    return job.status == "failed" and any(e.get("code") == CAPACITY_CODE for e in job.errors)


def _item_id(item: Job | BadRow) -> str:
    return item.id if isinstance(item, BadRow) else item.prompt.id


def _recorded_by_job(path: Path, batch_ids: set[str]) -> dict[str, set[str]]:
    """Ids already recorded for each of `batch_ids` (a session killed mid-collect wrote some)."""
    found: dict[str, set[str]] = {bid: set() for bid in batch_ids}
    if batch_ids:
        for record in read_records(path):
            if record.batch_id in found:
                found[record.batch_id].add(record.id)
    return found
