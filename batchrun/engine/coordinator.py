"""The coordinator of a `--workers N` run: the one input reader, the one records writer, the
global RPM / TPM budget, the run's counts and its stop, with N worker processes sending.

Exactly once: a job is *outstanding* from the moment it is sent to a worker until its record
comes back in a whole BATCH frame, and a record is written only then. A worker that dies leaves
its outstanding jobs to be sent again by the others (its requests may have reached the endpoint,
but no record of them was written); a stop (Ctrl-C, --max-errors) leaves them unsent, and so
resumable with --resume, like the rows never read.

Pacing: the coordinator holds the only RateLimits. While a limit is known (--rpm / --tpm, or one
learned from the headers that workers pass on), each request a worker sends waits for a credit,
one per request and its estimated tokens, taken from those buckets here (engine/workers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Iterator, Protocol

from batchrun.analysis.cost import format_usd
from batchrun.endpoint.requests import Job
from batchrun.engine.budget import SEND, WAIT, Budget
from batchrun.engine.channel import BATCH, CREDIT, DONE, END, JOBS, PACE, READY, START, STOP, Channel, StreamChannel
from batchrun.engine.limits import RateLimits
from batchrun.engine.pool import Pool, PoolConfig, skipped_record
from batchrun.engine.workers import WorkerSpec, info_from_wire, job_wire
from batchrun.errors import BatchrunError
from batchrun.inputs.prompt import BadRow
from batchrun.store.records import OK, Record

JOB_BATCH = 64  # jobs per JOBS frame at most
START_TIMEOUT_S = 60.0  # a cold interpreter on a loaded machine; ~0.5 s is usual
STOP_TIMEOUT_S = 30.0  # a stopped worker records its in-flight rows and ends well within this


class WorkerHandle(Protocol):
    """One started worker, whatever runs it (a process here; a Ray actor later)."""

    name: str  # for messages: "pid 1234"

    @property
    def channel(self) -> Channel: ...  # read-only here, so a handle may hold a narrower channel

    async def finish(self, timeout_s: float) -> None: ...  # wait until it has ended; kill it after timeout_s


Launch = Callable[[int], Awaitable[WorkerHandle]]


class ProcessWorker:
    """A worker in a fresh interpreter (`python -m batchrun.engine.workers FD`) on a socketpair:
    no fork of a process that runs an event loop, no re-import of the user's __main__."""

    def __init__(self, proc: asyncio.subprocess.Process, channel: StreamChannel) -> None:
        self.proc, self.channel, self.pid = proc, channel, proc.pid
        self.name = f"pid {proc.pid}"

    @classmethod
    async def launch(cls, index: int) -> "ProcessWorker":
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])  # the child imports this very batchrun
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        try:
            # A process group of its own: a terminal's Ctrl-C reaches the coordinator only (a worker
            # still importing would die of it), which then sends STOP; a worker whose coordinator is
            # gone, even SIGKILLed with its group, sees its socket close and ends (workers.py).
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "batchrun.engine.workers",
                str(theirs.fileno()),
                pass_fds=[theirs.fileno()],
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        return cls(proc, await StreamChannel.over(ours))

    async def finish(self, timeout_s: float) -> None:
        await self.channel.close()  # a worker still running takes this as STOP
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


@dataclass
class Link:
    """The coordinator's view of one worker."""

    handle: WorkerHandle
    share: int  # its part of --concurrency
    outstanding: dict[str, Job] = field(default_factory=dict)  # sent, no record back yet
    live: list[int] = field(default_factory=lambda: [0] * 6)  # workers.live_stats, as last reported
    credits: int = 0  # granted, not yet posted
    alive: bool = True
    done: bool = False

    @property
    def room(self) -> int:
        """Jobs it may take now: its share in flight plus two shares queued (as Pool's queue)."""
        return 3 * self.share - len(self.outstanding)


class Tally(Pool):
    """The single-process Pool's bookkeeping of finished records (counts, and its StopRule:
    --max-errors, --max-error-rate, a refusing endpoint), fed with the workers' records; it
    never sends."""

    def __init__(self, config: PoolConfig, t0: float, on_stop: Callable[[], None]) -> None:
        super().__init__(None, lambda record: None, config, t0=t0)  # type: ignore[arg-type]
        self._on_stop = on_stop

    def stop(self) -> None:
        self._on_stop()

    def count(self, records: Iterable[Record]) -> None:
        for record in records:
            if record.status == OK and record.ttft_s is not None:
                self.stats.recent_ttft_s.append(record.ttft_s)
            self._finish(record)


def shares(concurrency: int, workers: int) -> list[int]:
    """--concurrency split over the workers as evenly as whole numbers allow; never a zero share."""
    n = max(1, min(workers, concurrency))
    base, extra = divmod(concurrency, n)
    return [base + (i < extra) for i in range(n)]


class Coordinator:
    """Runs `items` through workers started by `launch`; `tally` is the run's Pool-like face
    (stats, abort_reason, refused, input_error, internal_errors, limits) for the pipeline."""

    def __init__(
        self,
        spec: WorkerSpec,
        pool_config: PoolConfig,
        workers: int,
        *,
        t0: float,
        write_many: Callable[[list[Record]], None],
        say: Callable[[str], None],
        launch: Launch = ProcessWorker.launch,
    ) -> None:
        self.spec, self.pool_config, self.launch = spec, pool_config, launch
        self.write_many, self.say = write_many, say
        self.tally = Tally(pool_config, t0, self.stop)
        self.links = [Link(handle=None, share=s) for s in shares(pool_config.concurrency, workers)]  # type: ignore[arg-type]
        self.stopping = False
        self.resent = 0  # jobs sent again after their worker died
        self.loop_lag: list[float] = []  # the workers' event-loop lag samples, seconds
        self._again: deque[Job] = deque()
        self._changed = asyncio.Event()
        self._wants: deque[tuple[Link, int]] = deque()
        self._wanted = asyncio.Event()
        self._metered = spec.metered
        self._posting = False
        self._failure: Exception | None = None  # what broke a listener (raised by run)
        self.budget: Budget | None = None  # --max-cost: set by the caller before run()
        self._held: Job | None = None  # --max-cost: the next row, waiting for the rows in flight

    @property
    def stats(self) -> Any:
        return self.tally.stats

    async def run(
        self, items: Iterable[Job | BadRow], started: Callable[[list[str]], None] = lambda names: None
    ) -> None:
        """Start the workers (`started` gets their names), send everything `items` yields (or until
        stopped), end the workers."""
        cfg = self.pool_config
        limits = self.tally.limits = RateLimits(
            cfg.rpm, cfg.tpm, learn_rpm=cfg.learn_rpm, learn_tpm=cfg.learn_tpm, warn=self.say
        )
        try:
            await self._start()
            started(self.names())
            await self._serve(iter(items), limits)
        finally:
            await asyncio.gather(
                *(link.handle.finish(STOP_TIMEOUT_S) for link in self.links if link.handle is not None)
            )
            await limits.aclose()

    async def _serve(self, items: Iterator[Job | BadRow], limits: RateLimits) -> None:
        listeners = [asyncio.create_task(self._listen(link)) for link in self.links]
        granter = asyncio.create_task(self._grant(limits))
        try:
            await self._dispatch(items)
            for link in self._alive():
                link.handle.channel.post(END)
            await asyncio.gather(*listeners)
            if self._failure is not None:
                raise self._failure
        finally:
            for task in (*listeners, granter):
                task.cancel()
            await asyncio.gather(*listeners, granter, return_exceptions=True)

    def stop(self) -> None:
        """Stop sending: workers record their in-flight rows as cancelled; the rest is resumable."""
        if self.stopping:
            return
        self.stopping = True
        for link in self._alive():
            if link.handle is not None:  # not yet started: it is ended before it gets a job
                link.handle.channel.post(STOP)
        self._changed.set()

    def names(self) -> list[str]:
        return [link.handle.name for link in self.links]

    # --- start ---
    async def _start(self) -> None:
        try:
            handles = await asyncio.gather(*(self.launch(i) for i in range(len(self.links))))
        except OSError as exc:
            raise BatchrunError(f"cannot start a worker process: {exc} (try --workers 1)") from exc
        for link, handle in zip(self.links, handles):
            link.handle = handle
            spec = {**self.spec.to_dict(), "pool": {**self.spec.pool, "concurrency": link.share}}
            await handle.channel.send(START, spec)
        for link in self.links:
            try:
                reply = await asyncio.wait_for(link.handle.channel.recv(), START_TIMEOUT_S)
            except TimeoutError:
                raise BatchrunError(
                    f"worker {link.handle.name} did not start within {START_TIMEOUT_S:g} s "
                    "(--workers 1 sends from this process)"
                ) from None
            if reply is None or reply[0] != READY:
                raise BatchrunError(
                    f"worker {link.handle.name} ended before it started (see the messages "
                    "above; --workers 1 sends from this process)"
                )

    # --- jobs out ---
    async def _dispatch(self, source: Iterator[Job | BadRow]) -> None:
        exhausted = False
        while not self.stopping:
            link = max(self._alive(), key=lambda l: l.room, default=None)
            if link is None:
                self._all_gone()
                return
            batch: list[Job] = []
            if link.room >= min(JOB_BATCH, link.share):
                batch, exhausted = self._take(min(link.room, JOB_BATCH), source, exhausted)
            if batch:
                link.outstanding.update((job.prompt.id, job) for job in batch)
                await link.handle.channel.send(JOBS, [job_wire(job) for job in batch])
                continue
            if exhausted and not self._again and not any(l.outstanding for l in self._alive()):
                return
            self._changed.clear()
            await self._changed.wait()

    def _take(self, n: int, source: Iterator[Job | BadRow], exhausted: bool) -> tuple[list[Job], bool]:
        """Up to `n` jobs: those to send again first, then the input's next rows (bad rows are
        recorded here, as the pool records them)."""
        batch = [self._again.popleft() for _ in range(min(n, len(self._again)))]
        item: Job | BadRow
        while len(batch) < n and not exhausted:
            if self._held is not None:
                item, self._held = self._held, None
            else:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    continue
                except BatchrunError as exc:  # --on-bad-row fail: rows before it are sent, none after
                    self.tally.input_error, exhausted = exc, True
                    continue
            if isinstance(item, BadRow):
                self._record([skipped_record(item, time.time())])
                continue
            verdict = SEND if self.budget is None else self.budget.judge(item)
            if verdict == WAIT:  # --max-cost: judged again when the rows in flight have reported
                self._held = item
                break
            if verdict != SEND:  # this row and the rest are not sent (nor recorded: --resume sends them)
                assert self.budget is not None
                self.tally.stop_rule.abort(
                    f"--max-cost {format_usd(self.budget.max_usd)} reached: {self.budget.reached}"
                )
                exhausted = True
                break
            batch.append(item)
        return batch, exhausted

    def _all_gone(self) -> None:
        left = len(self._again)
        self.tally.stop_rule.abort(
            f"every worker process ended unexpectedly; {left} rows they held and the rows "
            "not yet read were not sent (continue with --resume)"
        )

    # --- records and requests in ---
    async def _listen(self, link: Link) -> None:
        channel = link.handle.channel
        try:
            while (message := await channel.recv()) is not None:
                self._on_message(link, *message)
        except Exception as exc:  # e.g. the disk filled up: stop everything, then raise it (run)
            self._failure = exc
            self.stop()
            raise
        self._gone(link)

    def _on_message(self, link: Link, kind: str, payload: Any) -> None:
        if kind == BATCH:
            self._on_batch(link, payload)
        elif kind == DONE:
            link.done = True
            self.tally.internal_errors.extend(payload.get("internal_errors") or [])
            self.loop_lag.extend(payload.get("loop_lag") or [])

    def _on_batch(self, link: Link, payload: dict[str, Any]) -> None:
        records = []
        for data in payload["records"]:
            record = Record.from_dict(data)
            job = link.outstanding.pop(record.id, None)
            if job is not None:  # the row's columns and request stayed here
                record.input, record.request = job.prompt.data, job.request
            records.append(record)
        if records:
            self._record(records)
        link.live = payload["stats"]
        self._sum_live()
        for tokens in payload["want"]:
            self._wants.append((link, tokens))
        if payload["want"]:
            self._wanted.set()
        for info, problems, unanswered in payload["observe"]:
            self._observe(link, info, problems, unanswered)
        for charged, actual in payload["correct"]:
            self.tally.limits.correct(charged, actual)  # type: ignore[union-attr]
        self._changed.set()

    def _record(self, records: list[Record]) -> None:
        if self.budget is not None:
            for record in records:
                self.budget.settle(record)
        self.write_many(records)
        self.tally.count(records)

    def _sum_live(self) -> None:
        stats, alive = self.tally.stats, self._alive()
        stats.in_flight = sum(l.live[0] for l in alive)
        stats.retrying = sum(l.live[1] for l in alive)
        stats.attempts = sum(l.live[2] for l in self.links)
        stats.rate_limited = sum(l.live[3] for l in self.links)
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)

    def _gone(self, link: Link) -> None:
        link.alive = False
        held = list(link.outstanding.values())
        link.outstanding.clear()
        if not link.done and not self.stopping:
            self._again.extend(held)
            self.resent += len(held)
            self.say(
                f"worker {link.handle.name} ended unexpectedly; its {len(held)} unfinished rows are "
                "sent again by the other workers"
            )
        self._sum_live()
        self._changed.set()

    def _alive(self) -> list[Link]:
        return [link for link in self.links if link.alive]

    # --- the rate budget ---
    def _observe(self, link: Link, info: Any, problems: list[str], unanswered: int) -> None:
        limits = self.tally.limits
        assert limits is not None
        others = sum(l.live[4] for l in self._alive() if l is not link)
        limits.observe(info_from_wire(info), problems, unanswered=unanswered + others)
        paced = limits.paced
        metered = paced["rpm"] is not None or paced["tpm"] is not None
        if metered != self._metered:
            self._metered = metered
            for each in self._alive():
                each.handle.channel.post(PACE, metered)

    async def _grant(self, limits: RateLimits) -> None:
        """Credits in the order they were asked for, each taken from the global buckets."""
        while True:
            while not self._wants:
                self._wanted.clear()
                await self._wanted.wait()
            link, tokens = self._wants.popleft()
            if not link.alive:
                continue
            await limits.acquire(tokens)
            link.credits += 1
            if not self._posting:
                self._posting = True
                asyncio.get_running_loop().call_soon(self._post_credits)

    def _post_credits(self) -> None:
        self._posting = False
        for link in self._alive():
            if link.credits:
                link.handle.channel.post(CREDIT, link.credits)
                link.credits = 0
