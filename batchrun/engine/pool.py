"""The worker pool: a fixed set of workers over a bounded queue, with RPM/TPM limits,
retries, error isolation and cancellation. It never prints; progress is read from
`PoolStats` by whoever displays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator

from batchrun.analysis.cost import RunningCost, format_usd
from batchrun.endpoint.assemble import to_record
from batchrun.endpoint.attempt import CONNECTION_ERROR, INCOMPLETE_STREAM, MALFORMED_CHUNK, STREAM_ERROR, AttemptResult
from batchrun.endpoint.ratelimits import is_ratelimit_header, parse_ratelimit_headers
from batchrun.endpoint.requests import Job, estimate_request_tokens
from batchrun.endpoint.toolcalls import body_forces_tool_call, check_calls
from batchrun.endpoint.transport import StreamClient
from batchrun.engine.adaptive import AdaptiveConfig, ConcurrencyController, Gate
from batchrun.engine.budget import SEND, WAIT, Budget
from batchrun.engine.fanout import Fanout
from batchrun.engine.limits import RateLimits
from batchrun.engine.retry import DEFAULT_MAX_RETRY_WAIT_S, RATE_LIMIT_BASE_S, RETRYABLE_STATUS, retry_delay_s
from batchrun.engine.stop import Stoppable, StopRule
from batchrun.engine.tools import ToolRunner, assistant_message, merge_rounds, round_entry
from batchrun.inputs.prompt import BadRow
from batchrun.redact import mask, redact
from batchrun.store.records import CANCELLED, ERROR, INVALID_OUTPUT, OK, SKIPPED, TIMEOUT, Attempt, Record

Clock = Callable[[], float]
# --json / --json-schema: the answer's text -> (parsed object, None) or (None, why it is invalid).
OutputCheck = Callable[[str], "tuple[dict[str, Any] | None, str | None]"]
TRUNCATED_OUTPUT = "TruncatedOutput"  # error_type of an invalid answer that hit max_tokens
_RETRYABLE_TYPES = {CONNECTION_ERROR, INCOMPLETE_STREAM, MALFORMED_CHUNK, STREAM_ERROR}
_NO_GATE = contextlib.nullcontext()
_STOPPED = "the run was stopped before this request finished"
INTERNAL_ERROR = "InternalError"  # a bug in batchrun, never a provider's failure
Sleep = Callable[[float], Awaitable[None]]
# A queued item: the item, its wall-clock label, the monotonic start of its queue wait, its planned send.
Entry = tuple["Job | BadRow", float, float, "float | None"]


@dataclass(frozen=True)
class PoolConfig:
    concurrency: int = 16
    rpm: float | None = None
    tpm: float | None = None
    retries: int = 3
    backoff_base_s: float = 0.5  # 5xx, cut streams, timeouts: base * 2^attempt ...
    backoff_max_s: float = 30.0  # ... capped here
    rate_limit_backoff_s: float = RATE_LIMIT_BASE_S  # 429 without a hint: this * 3^attempt
    max_retry_wait_s: float = DEFAULT_MAX_RETRY_WAIT_S  # --max-retry-wait: no single wait is longer
    max_errors: int | None = None
    max_error_rate: float | None = None
    seed: int | None = None  # jitter; set in tests for repeatable waits
    max_tool_rounds: int = 3  # follow-up requests after tool results (with a ToolRunner)
    learn_rpm: bool = False  # pace by the provider's rate-limit headers where rpm is None
    learn_tpm: bool = False  # ... and where tpm is None
    adaptive: AdaptiveConfig | None = None  # --concurrency auto; `concurrency` is then the ceiling


@dataclass
class PoolStats:
    """Live counters for the progress display and the summary."""

    done: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    retrying: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    resumed: int = 0  # rows already ok in an earlier run, not sent again
    output_tokens: int = 0  # completion tokens of finished requests (progress tok/s)
    recent_ttft_s: deque[float] = field(default_factory=lambda: deque(maxlen=512))
    attempts: int = 0  # HTTP attempts finished (retries count)
    rate_limited: int = 0  # of which answered 429
    concurrency_history: list[tuple[float, int]] = field(default_factory=list)  # (s since t0, limit)
    cost: RunningCost | None = None  # spend and projected cost, when a price is known

    def count(self, record: Record) -> None:
        """One finished row's record."""
        if self.cost is not None:
            self.cost.add(record)
        self.done += 1
        self.output_tokens += record.completion_tokens or 0
        if record.status == OK:
            self.ok += 1
        elif record.status == SKIPPED:
            self.skipped += 1
        elif record.status != CANCELLED:
            self.failed += 1


def is_retryable(result: AttemptResult) -> bool:
    """429, 408, 409, 5xx, connection errors, cut or garbled streams and timeouts; never 4xx otherwise."""
    if result.status == INVALID_OUTPUT:
        return result.error_type != TRUNCATED_OUTPUT  # cut at max_tokens: a retry is cut the same way
    if result.status == TIMEOUT:
        return True
    if result.http_status is not None and result.http_status != 200:
        return result.http_status in RETRYABLE_STATUS or result.http_status >= 500
    return result.error_type in _RETRYABLE_TYPES


class Pool(Fanout[Entry], Stoppable):
    """Runs Jobs through `concurrency` workers and hands each finished Record to `sink`.

    After a run: `abort_reason` says why --max-errors / --max-error-rate stopped it, `refused`
    why the endpoint refused the run (a rejected key, a wrong model: the run stops at once),
    both decided by `stop_rule` (engine/stop.py), and `internal_errors` holds the tracebacks
    of batchrun's own bugs met on the way.
    """

    def __init__(
        self,
        client: StreamClient,
        sink: Callable[[Record], None],
        config: PoolConfig,
        *,
        t0: float,
        clock: Clock = time.perf_counter,
        tool_runner: ToolRunner | None = None,
        output_check: OutputCheck | None = None,
        sleep: Sleep = asyncio.sleep,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(config.concurrency)
        self.client, self.sink, self.config, self.tool_runner = client, sink, config, tool_runner
        self.output_check = output_check
        self.t0, self.clock, self.sleep = t0, clock, sleep
        self.warn = warn
        self.warnings: list[str] = []
        self.limits: RateLimits | None = None
        self.controller: ConcurrencyController | None = None
        self._gate: Gate | None = None
        self._unanswered = 0  # attempts sent whose response head has not arrived
        self.stats = PoolStats()
        self.stop_rule = StopRule(config.max_errors, config.max_error_rate)
        self.internal_errors: list[str] = []
        self._rng = random.Random(config.seed)
        self._send_until: float | None = None
        self._send_check: Callable[[], bool] | None = None
        self.budget: Budget | None = None  # --max-cost: set by the caller before run()
        self._settled = asyncio.Event()  # a row finished: the budget may have room again

    async def run(
        self,
        items: Iterable[Job | BadRow],
        *,
        schedule: Iterator[float] | None = None,
        send_for_s: float | None = None,
        send_check: Callable[[], bool] | None = None,
    ) -> None:
        """Send everything `items` yields; returns when all is recorded or the run is stopped.

        `schedule` (open-loop load) gives each request's planned send time as an offset from
        `t0`; `send_for_s` stops taking new items that long after `t0` (in-flight ones finish);
        `send_check` is asked just before each job is sent, and one it refuses is not sent (a
        bench level's time share: the items the queue took ahead are judged when they would go).
        """
        self._send_check = send_check
        limits = self.limits = self._new_limits()
        self._start_adaptive()
        hook, self.client.on_headers = self.client.on_headers, self._on_headers
        self._send_until = None if send_for_s is None else self.t0 + send_for_s
        try:
            # stop() (in-flight requests are recorded as `cancelled`) ends it normally; see Fanout.
            await self._fan_out(self._entries(items, schedule, send_for_s), lambda: self._work(limits))
        finally:
            self.client.on_headers = hook
            await limits.aclose()

    def _new_limits(self) -> RateLimits:
        """The run's pacing (a worker process paces by the coordinator's credits instead)."""
        cfg = self.config
        return RateLimits(cfg.rpm, cfg.tpm, learn_rpm=cfg.learn_rpm, learn_tpm=cfg.learn_tpm, warn=self._warning)

    async def _entries(
        self, items: Iterable[Job | BadRow], schedule: Iterator[float] | None, send_for_s: float | None
    ) -> AsyncIterator[Entry]:
        clock, t0 = self.clock, self.t0
        for item in items:
            if send_for_s is not None and clock() - t0 >= send_for_s:
                break
            if self.budget is not None and self.budget.reached:
                break  # --max-cost: the rest is left unread, for --resume
            planned = None
            if schedule is not None:
                planned = next(schedule)
                delay = t0 + planned - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            # Wall-clock label, monotonic start of the queue wait, planned send offset.
            yield item, time.time(), clock(), planned

    async def _work(self, limits: RateLimits) -> None:
        while True:
            entry = await self._queue.get()
            if entry is None:
                return
            item, queued_at, queued_clock, planned = entry
            if self._send_until is not None and self.clock() >= self._send_until:
                continue  # the run's sending time is over: queued items are not sent
            if isinstance(item, BadRow):
                self._finish(skipped_record(item, queued_at))
                continue
            if self._send_check is not None and not self._send_check():
                continue
            if self.budget is not None and not await self._within_budget(item):
                continue  # not sent, not recorded: --resume sends it
            async with self._gate or _NO_GATE:
                record = await self._process(item, limits, queued_at, queued_clock)
            record.scheduled_s = planned
            self._finish(record)

    async def _within_budget(self, job: Job) -> bool:
        """--max-cost: whether `job` may go, after waiting for what is in flight if need be."""
        assert self.budget is not None
        while (verdict := self.budget.judge(job)) == WAIT:
            self._settled.clear()
            await self._settled.wait()
        if verdict != SEND:
            self.stop_rule.abort(f"--max-cost {format_usd(self.budget.max_usd)} reached: {self.budget.reached}")
        return verdict == SEND

    async def _process(self, job: Job, limits: RateLimits, queued_at: float, queued_clock: float) -> Record:
        row = _RowState(queued_clock=queued_clock, forced_tool=body_forces_tool_call(job.body))
        try:
            result = await self._request(job.body, job.estimated_tokens, job, limits, row)
            if result.status == OK and result.tool_calls is not None:
                check_calls(result.tool_calls, self._offered_tools(job))
                if self.tool_runner is not None:
                    result = await self._tool_rounds(job, result, limits, row)
        except asyncio.CancelledError:
            record = self._cancelled(job, row, queued_at)
            self._finish(record)
            raise
        except Exception as exc:  # noqa: BLE001 - a bug of ours: recorded on the row, and surfaced
            # Not a provider failure: the traceback goes to the run's internal-errors.log, the
            # summary warns and the exit code is non-zero (see pipeline.py).
            secrets = self.client.endpoint.secrets
            self.internal_errors.append(redact(f"row {job.prompt.id!r}:\n{traceback.format_exc()}", secrets))
            result = row.result or AttemptResult(sent=self.clock())
            result.fail(
                ERROR,
                INTERNAL_ERROR,
                redact(f"batchrun bug, see internal-errors.log: {type(exc).__name__}: {exc}", secrets),
            )
        record = self._to_record(job, result, row.log, queued_at, row.queue_wait or 0.0)
        record.reconnects = row.reconnects
        record.tool_choice_ignored = row.tool_choice_ignored and record.status == OK
        if row.rounds:
            merge_rounds(record, row.rounds, self.t0)
        if record.status == OK:
            record.parsed = row.parsed
        return record

    async def _request(
        self, body: bytes, estimated_tokens: int, job: Job, limits: RateLimits, row: "_RowState"
    ) -> AttemptResult:
        """One model call with its retries; the last attempt's result. A retry names the
        endpoints that failed this call so far (`row.failed_on`): with several, it goes elsewhere."""
        row.failed_on = []
        for attempt in range(self.config.retries + 1):
            await limits.acquire(estimated_tokens)
            if row.queue_wait is None:
                row.queue_wait = self.clock() - row.queued_clock
            row.result = result = await self._attempt(body, row)
            if result.status == OK and self.output_check is not None and result.tool_calls is None:
                self._check_output(result, row)
            if result.status == OK:
                limits.correct(estimated_tokens, _used_tokens(result, job, estimated_tokens))
                if row.forced_tool and not result.tool_calls:
                    row.tool_choice_ignored = True
                break
            if not is_retryable(result) or attempt == self.config.retries:
                break
            if result.endpoint is not None:
                row.failed_on.append(result.endpoint)
            await self._backoff(attempt, result, row.log[-1])
        return result

    def _check_output(self, result: AttemptResult, row: "_RowState") -> None:
        """--json / --json-schema: parse the answer; an invalid one fails this attempt (retryable)."""
        assert self.output_check is not None
        row.parsed, problem = self.output_check(result.text)
        if problem is not None:
            kind = "InvalidOutput"
            if result.finish_reason == "length":
                kind, problem = TRUNCATED_OUTPUT, f"{problem}; the answer was cut at max_tokens (raise --max-tokens)"
            result.fail(INVALID_OUTPUT, kind, problem)
            entry = row.log[-1]
            entry.status, entry.error_type, entry.error = INVALID_OUTPUT, kind, result.error

    async def _tool_rounds(
        self, job: Job, result: AttemptResult, limits: RateLimits, row: "_RowState"
    ) -> AttemptResult:
        """Run the requested tools, send their results back, and repeat while the model calls
        tools, up to --max-tool-rounds follow-up requests; every round is kept."""
        assert self.tool_runner is not None
        body = json.loads(job.body)
        tools = body.get("tools")
        start = len(row.log)
        for follow_up in range(1, self.config.max_tool_rounds + 2):
            entry = round_entry(result, row.log[start:], self.t0)
            row.rounds.append(entry)
            start = len(row.log)
            if result.status != OK or not result.tool_calls:
                return result
            if follow_up > self.config.max_tool_rounds:
                return result.fail(
                    ERROR,
                    "ToolRoundLimit",
                    f"the model still called tools after --max-tool-rounds {self.config.max_tool_rounds}",
                )
            outputs = await self.tool_runner.run_calls(result.tool_calls)
            entry["tool_results"] = outputs
            body["messages"] = [
                *body["messages"],
                assistant_message(result.text, result.tool_calls),
                *({"role": "tool", "tool_call_id": o["tool_call_id"], "content": o["content"]} for o in outputs),
            ]
            data = json.dumps(body, ensure_ascii=False).encode()
            result = await self._request(data, estimate_request_tokens(body), job, limits, row)
            if result.status == OK and result.tool_calls is not None:
                check_calls(result.tool_calls, tools)
        return result

    def _offered_tools(self, job: Job) -> list[dict[str, Any]] | None:
        return json.loads(job.body).get("tools")

    async def _attempt(self, body: bytes, row: "_RowState") -> AttemptResult:
        stats, log = self.stats, row.log
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        result = AttemptResult(sent=self.clock())
        self._unanswered += 1
        try:
            await self.client.send(body, result, avoid=row.failed_on)
        except asyncio.CancelledError:
            # Keep the attempt that was in flight: what it received, and that it was cut short.
            result.fail(CANCELLED, "Cancelled", _STOPPED)
            result.total_s = result.total_s if result.total_s is not None else self.clock() - result.sent
            row.result = result
            log.append(
                Attempt(
                    status=CANCELLED,
                    sent_s=result.sent - self.t0,
                    duration_s=result.total_s,
                    error_type="Cancelled",
                    error=_STOPPED,
                )
            )
            raise
        finally:
            stats.in_flight -= 1
            row.reconnects += result.reconnects
            if result.http_status is None:  # no response head came (its hook counts those that did)
                self._unanswered -= 1
        log.append(result.logged(self.t0))
        if result.ttft_s is not None and result.status == OK:
            stats.recent_ttft_s.append(result.ttft_s)
        self._observe(result)
        return result

    # --- learned limits and adaptive concurrency ---
    def _warning(self, message: str) -> None:
        self.warnings.append(message)
        if self.warn is not None:
            self.warn(message)

    def _start_adaptive(self) -> None:
        adaptive = self.config.adaptive
        if adaptive is None:
            return
        adaptive = dataclasses.replace(adaptive, ceiling=min(adaptive.ceiling, self.config.concurrency))
        self.controller = ConcurrencyController(adaptive, self.clock())
        self._gate = Gate(self.controller.limit)
        self.stats.concurrency_history = [(self.clock() - self.t0, self.controller.limit)]

    def _on_headers(self, headers: Any) -> None:
        """Every response's head, as it arrives: its rate-limit headers, parsed, to the limits."""
        self._unanswered = max(0, self._unanswered - 1)
        if self.limits is None:
            return
        secrets = self.client.endpoint.secrets  # a value that quotes one is never repeated, not even cut
        fields = {
            name.lower(): mask(value, secrets) for name, value in headers.items() if is_ratelimit_header(name.lower())
        }
        if fields:
            info, problems = parse_ratelimit_headers(fields, time.time())
            self.limits.observe(info, problems, unanswered=self._unanswered)

    def _observe(self, result: AttemptResult) -> None:
        """One finished attempt: count it, and let the concurrency controller see it."""
        stats = self.stats
        stats.attempts += 1
        stats.rate_limited += result.http_status == 429
        if self.controller is None or self._gate is None or result.status == CANCELLED:
            return
        overloaded = result.status == TIMEOUT or (
            result.http_status is not None and (result.http_status == 429 or result.http_status >= 500)
        )
        limit = self.controller.observe(
            sent=result.sent,
            now=self.clock(),
            ttft_s=result.ttft_s if result.status == OK else None,
            latency_s=result.latency_s if result.status == OK else None,
            overloaded=overloaded,
            in_flight=stats.in_flight + 1,
        )
        if limit != self._gate.limit:
            self._gate.set_limit(limit)
            stats.concurrency_history.append((self.clock() - self.t0, limit))

    async def _backoff(self, attempt: int, result: AttemptResult, entry: Attempt) -> None:
        cfg = self.config
        wait = retry_delay_s(
            attempt,
            result.http_status,
            result.retry_after_s,
            rng=self._rng,
            max_wait_s=cfg.max_retry_wait_s,
            base_s=cfg.backoff_base_s,
            max_s=cfg.backoff_max_s,
            rate_limit_base_s=cfg.rate_limit_backoff_s,
        )
        entry.backoff_s = wait
        self.stats.retrying += 1
        try:
            await self.sleep(wait)
        finally:
            self.stats.retrying -= 1

    def _to_record(
        self, job: Job, result: AttemptResult, log: list[Attempt], queued_at: float, queue_wait: float
    ) -> Record:
        return to_record(job, result, log, self.t0, queued_at, queue_wait)

    def _cancelled(self, job: Job, row: "_RowState", queued_at: float) -> Record:
        """The record of a row the run stopped: its last attempt's figures (the one cut short, or
        the failed one it was backing off from), or none when it was never sent."""
        if row.result is None:
            return Record(
                id=job.prompt.id,
                row=job.prompt.row,
                status=CANCELLED,
                error_type="Cancelled",
                error=_STOPPED,
                queued_at=queued_at,
                queue_wait_s=row.queue_wait or 0.0,
                input=job.prompt.data,
                request=job.request,
            )
        record = self._to_record(job, row.result, row.log, queued_at, row.queue_wait or 0.0)
        record.status, record.error_type, record.error = CANCELLED, "Cancelled", _STOPPED
        record.reconnects = row.reconnects
        return record

    def _finish(self, record: Record) -> None:
        if self.budget is not None:
            self.budget.settle(record)
            self._settled.set()
        self.sink(record)
        self.stats.count(record)
        if self._judge(record):
            self.stop()

    def _judge(self, record: Record) -> bool:
        """Whether this finished row stops the run (a worker process leaves that to its coordinator)."""
        return self.stop_rule.see(record)


@dataclass
class _RowState:
    """What one row has done so far, kept outside the call stack so a cancellation can record it."""

    queued_clock: float
    queue_wait: float | None = None
    result: AttemptResult | None = None
    log: list[Attempt] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    parsed: dict[str, Any] | None = None  # --json / --json-schema: the last attempt's parsed answer
    failed_on: list[str] = field(default_factory=list)  # endpoints that failed the current call, in order
    reconnects: int = 0  # dead pooled connections met by all its attempts and rounds
    forced_tool: bool = False  # its body's tool_choice obliges a tool call
    tool_choice_ignored: bool = False  # ... and an ok answer (of any round) came without one


def _used_tokens(result: AttemptResult, job: Job, charged: int) -> int:
    if result.completion_tokens is None:
        return charged  # no usage from the server: keep what was charged
    return (result.prompt_tokens or job.prompt_tokens_estimate) + result.completion_tokens


def skipped_record(bad: BadRow, queued_at: float) -> Record:
    """The record of a row that cannot be sent (--on-bad-row skip): why, the row's input, and
    whether its id is made up (so it never passes for a real row's)."""
    return Record(
        id=bad.id,
        row=bad.row,
        status=SKIPPED,
        error_type="BadRow",
        error=bad.reason,
        queued_at=queued_at,
        input=bad.data,
        synthetic_id=bad.synthetic_id,
    )
