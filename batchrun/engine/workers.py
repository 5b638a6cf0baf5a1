"""One worker of a `--workers N` run: its own event loop, connection pool and Pool, fed batches of
jobs and rate credits over a Channel, sending finished records back in batches.

The worker never reads input, writes files or decides the run's fate: the coordinator
(engine/coordinator.py) does. `serve(channel)` is the whole worker; `python -m
batchrun.engine.workers FD` runs it in a fresh interpreter on the socket FD (a Ray actor would
run the same `serve` over its own Channel).

Message flow (channel.py names):
    coordinator -> worker  START spec, JOBS [job, ...], CREDIT n, PACE metered, STOP, END
    worker -> coordinator  READY pid, BATCH {records, stats, want, observe, correct}, DONE {...}
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Iterator

import orjson

from batchrun.endpoint.answers import AnswerCheck
from batchrun.endpoint.kinds import kind
from batchrun.endpoint.ratelimits import Quota, RateLimitInfo
from batchrun.endpoint.requests import Job
from batchrun.endpoint.transport import Endpoint, make_session
from batchrun.engine.channel import BATCH, CREDIT, DONE, END, JOBS, PACE, READY, START, STOP, Channel, StreamChannel
from batchrun.engine.looplag import sample_loop_lag
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.engine.tools import ToolRunner
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.store.records import Record

FLUSH_S = 0.01  # finished records wait at most this long before they are sent back
BATCH_RECORDS = 256  # ... or until this many are waiting


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to send requests; JSON-able (it crosses the channel in START)."""

    base_url: str
    api_key: str | None
    basic_auth: tuple[str, str] | None
    embedded: bool
    endpoint_kind: str  # chat / completions
    timeout: float | None
    ttft_timeout: float | None
    max_response_bytes: int
    pool: dict[str, Any]  # PoolConfig fields; `concurrency` is this worker's share
    t0: float  # the run's start on time.perf_counter (one clock for all processes)
    metered: bool  # pace by credits from the start (--rpm / --tpm given)
    tool_module: str | None = None
    tool_timeout: float = 30.0
    json_schema: dict[str, Any] | None = None
    json_mode: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WorkerSpec":
        auth = data.get("basic_auth")
        return cls(**{**data, "basic_auth": tuple(auth) if auth else None})


# --- jobs and rate-limit observations on the wire ---
def job_wire(job: Job) -> list[Any]:
    """What a worker needs of a Job; the row's columns and the saved request stay with the
    coordinator, which puts them back into the record."""
    return [job.prompt.id, job.prompt.row, job.body.decode(), job.estimated_tokens, job.prompt_tokens_estimate]


def job_from_wire(data: list[Any]) -> Job:
    rid, row, body, estimated, prompt_estimate = data
    return Job(
        prompt=Prompt(id=rid, row=row, line=0),
        body=body.encode(),
        estimated_tokens=estimated,
        prompt_tokens_estimate=prompt_estimate,
    )


def info_wire(info: RateLimitInfo | None) -> list[Any] | None:
    if info is None:
        return None
    quota = lambda q: None if q is None else [q.limit, q.remaining, q.reset_s, q.window_s]  # noqa: E731
    return [info.source, quota(info.requests), quota(info.tokens)]


def info_from_wire(data: list[Any] | None) -> RateLimitInfo | None:
    if data is None:
        return None
    source, requests, tokens = data
    return RateLimitInfo(source, Quota(*requests) if requests else None, Quota(*tokens) if tokens else None)


class Outbox:
    """What goes back to the coordinator, gathered into BATCH frames: finished records (sent
    within FLUSH_S), credit requests and rate-limit observations (sent at once)."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._pool: Pool | None = None
        self._records: list[orjson.Fragment] = []
        self._want: list[int] = []
        self._observe: list[Any] = []
        self._correct: list[list[int]] = []
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, pool: Pool) -> None:
        """The pool whose live counters ride along in every BATCH."""
        self._pool = pool

    def record(self, record: Record) -> None:
        self._records.append(orjson.Fragment(record.to_json()))
        if len(self._records) >= BATCH_RECORDS:
            self._soon(0.0)
        elif self._timer is None:
            self._soon(FLUSH_S)

    def want(self, tokens: int) -> None:
        self._want.append(tokens)
        self._soon(0.0)

    def observe(self, entry: list[Any]) -> None:
        self._observe.append(entry)
        self._soon(0.0)

    def correct(self, charged: int, actual: int) -> None:
        self._correct.append([charged, actual])
        self._soon(FLUSH_S)

    def _soon(self, delay: float) -> None:
        if self._timer is not None and delay > 0:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._post)

    def _post(self) -> None:
        self._timer = None
        post = getattr(self._channel, "post", None)
        frame = self._frame()
        if post is not None:
            post(BATCH, frame)  # a stream: queue it now, in order
        else:
            asyncio.get_running_loop().create_task(self._channel.send(BATCH, frame))

    def _frame(self) -> dict[str, Any]:
        frame = {
            "records": self._records,
            "want": self._want,
            "observe": self._observe,
            "correct": self._correct,
            "stats": live_stats(self._pool),
        }
        self._records, self._want, self._observe, self._correct = [], [], [], []
        return frame

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        await self._channel.send(BATCH, self._frame())


def live_stats(pool: Pool | None) -> list[int]:
    """[in flight, retrying, attempts, of which 429, sent but unanswered, peak in flight]."""
    if pool is None:
        return [0] * 6
    s = pool.stats
    return [s.in_flight, s.retrying, s.attempts, s.rate_limited, pool._unanswered, s.peak_in_flight]


class CreditLimits:
    """The worker's side of the run's global RPM / TPM budget: while metered, each request waits
    for one credit from the coordinator, which holds the only buckets; headers seen and token
    corrections go back to it. Unmetered (no limit given or learned yet), requests go at once."""

    def __init__(self, outbox: Outbox, metered: bool) -> None:
        self._outbox, self.metered = outbox, metered
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._spare = 0  # credits that arrived for a waiter that was cancelled

    async def acquire(self, estimated_tokens: int) -> None:
        if not self.metered:
            return
        if self._spare:
            self._spare -= 1
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._outbox.want(estimated_tokens)
        await future

    def grant(self, n: int) -> None:
        while n and self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)
                n -= 1
        self._spare += n

    def set_metered(self, metered: bool) -> None:
        self.metered = metered
        if not metered:
            self.grant(len(self._waiting))

    def correct(self, charged_tokens: int, actual_tokens: int) -> None:
        if self.metered and charged_tokens != actual_tokens:
            self._outbox.correct(charged_tokens, actual_tokens)

    def observe(self, info: RateLimitInfo | None, problems: list[str], *, unanswered: int = 0) -> None:
        self._outbox.observe([info_wire(info), problems, unanswered])

    async def aclose(self) -> None:
        for future in self._waiting:
            future.cancel()


class WorkerPool(Pool):
    """The single-process Pool, fed from the channel's job batches and paced by credits."""

    def __init__(self, *args: Any, credits: CreditLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.credits = credits
        self.inbox: asyncio.Queue[list[Job] | None] = asyncio.Queue()

    def _new_limits(self) -> Any:
        return self.credits

    def _judge(self, record: Record) -> bool:
        """Never here: the run's fate (engine/stop.py) is decided over all workers' records by the
        coordinator's Tally, which then sends STOP."""
        return False

    async def _entries(
        self, items: Iterable[Job | BadRow], schedule: Iterator[float] | None, send_for_s: float | None
    ) -> AsyncIterator[tuple[Job, float, float, None]]:
        """The jobs of every JOBS message, until END: (job, wall-clock label, queue start, no plan)."""
        while (batch := await self.inbox.get()) is not None:
            for job in batch:
                yield job, time.time(), self.clock(), None


async def serve(channel: Channel) -> None:
    """The worker: START, then jobs until END (or STOP, or the coordinator's end), then DONE."""
    first = await channel.recv()
    if first is None or first[0] != START:
        return
    spec = WorkerSpec.from_dict(first[1])

    lag: list[float] = []  # this loop's lag: it is the one that times the requests
    async with make_session(spec.pool["concurrency"]) as session:
        pool, outbox = _build(spec, session, channel)
        await channel.send(READY, os.getpid())
        tasks = [asyncio.create_task(_listen(channel, pool)), asyncio.create_task(sample_loop_lag(lag))]
        try:
            await pool.run(())
            await outbox.flush()
            await channel.send(DONE, {"internal_errors": pool.internal_errors, "loop_lag": lag})
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _build(spec: WorkerSpec, session: Any, channel: Channel) -> tuple[WorkerPool, Outbox]:
    endpoint = Endpoint(spec.base_url, spec.api_key, spec.embedded, spec.basic_auth)
    client = kind(spec.endpoint_kind).client_for(
        session,
        endpoint,
        timeout_s=spec.timeout,
        ttft_timeout_s=spec.ttft_timeout,
        clock=time.perf_counter,
        max_response_bytes=spec.max_response_bytes,
    )
    runner = ToolRunner.from_file(Path(spec.tool_module), spec.tool_timeout) if spec.tool_module else None
    check = None
    if spec.json_schema is not None or spec.json_mode:
        check = AnswerCheck(spec.json_schema)
    outbox = Outbox(channel)
    pool = WorkerPool(
        client,
        outbox.record,
        PoolConfig(**spec.pool),
        t0=spec.t0,
        clock=time.perf_counter,
        tool_runner=runner,
        output_check=check,
        credits=CreditLimits(outbox, spec.metered),
    )
    outbox.watch(pool)
    return pool, outbox


async def _listen(channel: Channel, pool: WorkerPool) -> None:
    """The coordinator's messages; its end (a closed channel) stops the worker like STOP."""
    while (message := await channel.recv()) is not None:
        kind, payload = message
        if kind == JOBS:
            pool.inbox.put_nowait([job_from_wire(j) for j in payload])
        elif kind == CREDIT:
            pool.credits.grant(payload)
        elif kind == PACE:
            pool.credits.set_metered(payload)
        elif kind == STOP:
            pool.stop()
        elif kind == END:
            pool.inbox.put_nowait(None)
    pool.stop()


async def _main(fd: int) -> None:
    channel = await StreamChannel.over(socket.socket(fileno=fd))
    try:
        await serve(channel)
    finally:
        await channel.close()


def main(argv: list[str]) -> None:
    # Ctrl-C reaches the whole process group: the coordinator decides, and tells us (STOP).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()  # as engine/quietgc.py does: fewer, shorter pauses while measuring
    gc.set_threshold(50_000, 50, 100)
    asyncio.run(_main(int(argv[1])))


if __name__ == "__main__":
    main(sys.argv)
