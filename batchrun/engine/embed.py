"""The embeddings pool: rows grouped into batches of --batch-size inputs, one POST /embeddings
per batch, `concurrency` workers (the reader / workers / cancel skeleton is Pool's, engine/fanout.py),
RPM/TPM limits, retries, error isolation and cancellation as in pool.py. It has Pool's face
(run / stop / stats / abort_reason / input_error) so the pipeline drives both alike; a batch's
outcome becomes one Record per input (the embeddings kind's record assembly, endpoint/embeddings.py),
its vectors one Parquet row per input (store/vectors.py writes them before the records).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Callable, Iterable, Iterator

from batchrun.endpoint.embeddings import EmbeddingsClient, EmbedResult, build_embeddings_body, input_records
from batchrun.endpoint.requests import prompt_text
from batchrun.engine.fanout import Fanout
from batchrun.engine.limits import RateLimits
from batchrun.engine.pool import PoolConfig, PoolStats, is_retryable, skipped_record
from batchrun.engine.retry import retry_delay_s
from batchrun.engine.stop import Stoppable, StopRule
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.redact import redact
from batchrun.store.records import CANCELLED, ERROR, OK, Attempt, Record
from batchrun.store.vectors import VectorSink

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp

    from batchrun.config import RunConfig
    from batchrun.endpoint.transport import Endpoint

Clock = Callable[[], float]
_STOPPED = "the run was stopped before this batch finished"


@dataclass(frozen=True, slots=True)
class Batch:
    prompts: list[Prompt]
    texts: list[str]
    body: bytes
    estimated_tokens: int
    queued_at: float = 0.0
    queued_clock: float = 0.0


def make_batches(
    rows: Iterable[Prompt | BadRow], size: int, model: str | None, extra_body: dict
) -> Iterator[Batch | BadRow]:
    """Consecutive prompts in groups of `size` (the last may be smaller); bad rows pass through."""
    group: list[Prompt] = []
    for item in rows:
        if isinstance(item, BadRow):
            yield item
            continue
        group.append(item)
        if len(group) == size:
            yield _batch(group, model, extra_body)
            group = []
    if group:
        yield _batch(group, model, extra_body)


def _batch(prompts: list[Prompt], model: str | None, extra_body: dict) -> Batch:
    texts = [prompt_text(p) for p in prompts]
    body = build_embeddings_body(texts, model, extra_body)
    tokens = sum(math.ceil(len(t.encode()) / 4) for t in texts)
    return Batch(prompts, texts, json.dumps(body, ensure_ascii=False).encode(), max(1, tokens))


class EmbedPool(Fanout["Batch | BadRow"], Stoppable):
    def __init__(
        self,
        client: EmbeddingsClient,
        sink: Callable[[Record], None],
        vectors: VectorSink,
        config: PoolConfig,
        *,
        t0: float,
        clock: Clock = time.perf_counter,
    ) -> None:
        super().__init__(config.concurrency)
        self.client, self.sink, self.vectors, self.config = client, sink, vectors, config
        self.t0, self.clock = t0, clock
        self.stats = PoolStats()
        self.stop_rule = StopRule(config.max_errors, config.max_error_rate, unit="inputs")
        self.internal_errors: list[str] = []  # Pool's face; a bug here is recorded on its rows instead
        self._rng = random.Random(config.seed)

    async def run(self, items: Iterable[Batch | BadRow]) -> None:
        limits = RateLimits(self.config.rpm, self.config.tpm)
        try:
            await self._fan_out(self._entries(items), lambda: self._work(limits))
        finally:
            await limits.aclose()
            self.vectors.flush()

    async def _entries(self, items: Iterable[Batch | BadRow]) -> AsyncIterator[Batch | BadRow]:
        for item in items:
            if isinstance(item, Batch):  # its queue wait starts now
                item = dataclasses.replace(item, queued_at=time.time(), queued_clock=self.clock())
            yield item

    async def _work(self, limits: RateLimits) -> None:
        while (item := await self._queue.get()) is not None:
            if self.stop_rule.decided:
                return  # stopped: stop() cancels us at the next suspension; send nothing more
            if isinstance(item, BadRow):
                self._finish([skipped_record(item, time.time())])
                continue
            log: list[Attempt] = []
            try:
                result, wait = await self._request(item, limits, log)
            except asyncio.CancelledError:
                self._finish([_cancelled(p, item, log) for p in item.prompts])
                raise
            except Exception as exc:  # noqa: BLE001 - a bug in one batch never stops the run
                result = EmbedResult(sent=self.clock(), inputs=len(item.prompts))
                result.fail(ERROR, "ClientError", redact(f"{type(exc).__name__}: {exc}", self.client.endpoint.secrets))
                wait = 0.0
            await self._settle(item, result, log, wait)

    async def _request(self, batch: Batch, limits: RateLimits, log: list[Attempt]) -> tuple[EmbedResult, float]:
        wait: float | None = None
        reconnects = 0
        for attempt in range(self.config.retries + 1):
            await limits.acquire(batch.estimated_tokens)
            if wait is None:
                wait = self.clock() - batch.queued_clock
            self.stats.in_flight += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
            try:
                result = await self.client.embed(batch.body, len(batch.prompts))
            finally:
                self.stats.in_flight -= 1
            reconnects += result.reconnects
            result.reconnects = reconnects  # the batch's total, over its attempts
            log.append(result.logged(self.t0))
            if result.status == OK:
                limits.correct(batch.estimated_tokens, result.prompt_tokens or batch.estimated_tokens)
                return result, wait
            if not is_retryable(result) or attempt == self.config.retries:
                return result, wait
            cfg = self.config
            delay = retry_delay_s(
                attempt,
                result.http_status,
                result.retry_after_s,
                rng=self._rng,
                max_wait_s=cfg.max_retry_wait_s,
                base_s=cfg.backoff_base_s,
                max_s=cfg.backoff_max_s,
                rate_limit_base_s=cfg.rate_limit_backoff_s,
            )
            log[-1].backoff_s = delay
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _settle(self, batch: Batch, result: EmbedResult, log: list[Attempt], wait: float) -> None:
        records = input_records(batch.prompts, batch.texts, result, log, self.t0, batch.queued_at, wait)
        if result.status == OK and result.vectors is not None:
            self._count(records)
            await self.vectors.add(records, result.vectors)  # records go out once their vectors are on disk
        else:
            self._finish(records)

    def _finish(self, records: list[Record]) -> None:
        for record in records:
            self.sink(record)
        self._count(records)

    def _count(self, records: list[Record]) -> None:
        """The records of one request (or one skipped row): counted, and judged as one request."""
        for record in records:
            self.stats.count(record)
        if records and self.stop_rule.see(records[0], len(records)):
            self.stop()


def _cancelled(prompt: Prompt, batch: Batch, log: list[Attempt]) -> Record:
    """The record of an input whose batch the run stopped (its attempts so far kept)."""
    return Record(
        id=prompt.id,
        row=prompt.row,
        status=CANCELLED,
        error_type="Cancelled",
        error=_STOPPED,
        attempts=len(log),
        attempt_log=log,
        queued_at=batch.queued_at,
        queue_wait_s=0.0,
    )


def embed_items(config: "RunConfig", rows: Iterable[Prompt | BadRow], skip: set[str]) -> Iterator[Batch | BadRow]:
    """The rows not yet done, in batches of --batch-size."""
    return make_batches(
        (r for r in rows if r.id not in skip),
        config.request.batch_size,
        config.endpoint.model,
        config.request.extra_body,
    )


def embed_pool(
    session: "aiohttp.ClientSession",
    endpoint: "Endpoint",
    write: Callable[[Record], None],
    config: "RunConfig",
    pool_config: PoolConfig,
    out: "Path",
    t0: float,
    clock: Clock,
    write_many: Callable[[list[Record]], None] | None = None,
) -> EmbedPool:
    client = EmbeddingsClient(
        session,
        endpoint,
        timeout_s=config.limits.timeout,
        clock=clock,
        max_response_bytes=config.limits.max_response_bytes,
    )

    def write_each(records: list[Record]) -> None:
        for record in records:
            write(record)

    many = write_many or write_each
    return EmbedPool(client, write, VectorSink(out, many), pool_config, t0=t0, clock=clock)
