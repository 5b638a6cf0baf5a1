"""Sessions through the worker pool: one worker runs one session at a time, its turns in order,
each request carrying the history so far; `concurrency` sessions are in flight at once.

Every turn is a Record of its own (its TTFT and latency are the turn's). When a turn fails, the
session's later turns are recorded as failed without being sent (their history does not exist).
A turn answered ok by an earlier run (`Turn.answer`, on resume) is neither sent nor recorded
again: its answer goes into the history as it was recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Callable

from batchrun.endpoint.requests import Job
from batchrun.engine.limits import RateLimits
from batchrun.engine.pool import Pool, skipped_record
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.inputs.sessions import Session
from batchrun.store.records import ERROR, OK, Record

SESSION_ABORTED = "SessionAborted"


class SessionPool(Pool):
    """Pool whose items are Sessions (or BadRows); `make_job` turns a Prompt into a ready Job."""

    def __init__(self, *args: Any, make_job: Callable[[Prompt], Job | BadRow], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.make_job = make_job

    async def _work(self, limits: RateLimits) -> None:
        while True:
            entry = await self._queue.get()
            if entry is None:
                return
            item, queued_at, queued_clock, _ = entry
            if self._send_until is not None and self.clock() >= self._send_until:
                continue
            if isinstance(item, BadRow):
                self._finish(skipped_record(item, queued_at))
                continue
            await self._session(item, limits, queued_at, queued_clock)  # type: ignore[arg-type]

    async def _session(self, session: Session, limits: RateLimits, queued_at: float, queued_clock: float) -> None:
        history: list[dict[str, Any]] = []
        answered_now = False  # the previous answer came in this run (a replayed one: no think time)
        for k, turn in enumerate(session.turns):
            new = [m for m in turn.prompt.messages or [] if not (history and m.get("role") in ("system", "developer"))]
            if turn.answer is not None:
                history = [*history, *new, {"role": "assistant", "content": turn.answer}]
                answered_now = False
                continue
            if answered_now and turn.think_s:
                await asyncio.sleep(turn.think_s)
                queued_at, queued_clock = time.time(), self.clock()
            job = self.make_job(dataclasses.replace(turn.prompt, messages=[*history, *new]))
            if isinstance(job, BadRow):
                self._finish(skipped_record(job, queued_at))
                return self._abort_rest(session, k + 1, queued_at, f"turn {turn.number} could not be sent")
            record = await self._process(job, limits, queued_at, queued_clock)
            self._finish(record)
            if record.status != OK:
                return self._abort_rest(session, k + 1, queued_at, f"turn {turn.number} failed ({record.error_type})")
            history = [*history, *new, {"role": "assistant", "content": record.text}]
            answered_now = True
            queued_at, queued_clock = time.time(), self.clock()

    def _abort_rest(self, session: Session, start: int, queued_at: float, why: str) -> None:
        """The turns after a failed one, recorded as not sent; one already ok keeps its record."""
        for turn in session.turns[start:]:
            if turn.answer is not None:
                continue
            self._finish(
                Record(
                    id=turn.prompt.id,
                    row=turn.prompt.row,
                    status=ERROR,
                    error_type=SESSION_ABORTED,
                    error=f"not sent: {why}; --resume carries the session on from the failed turn",
                    queued_at=queued_at,
                )
            )
