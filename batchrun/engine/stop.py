"""When a run must stop before its input is done: the one rule the pool, the coordinator of a
`--workers` run and the embeddings pool all apply to the requests they see finish.

    refused       the endpoint refuses the run itself, so every row would get the same answer:
                  a 401 / 403 (the key), a 404 (the model or the URL), a redirect (a POST is
                  never followed), or the first REFUSAL_WINDOW finished requests all failing
                  with one and the same 4xx that a retry cannot cure
    abort_reason  --max-errors failed, or more than --max-error-rate of those finished once
                  MIN_FOR_RATE have; the reason names the commonest error

The first rule that fires decides (a refusal before the budget when one request crosses both: it
says what to fix) and its reason is kept: records still arriving from requests that were in
flight are counted (the summary has them) but never rewrite why the run stopped.
"""

from __future__ import annotations

from collections import Counter

from batchrun.engine.retry import RETRYABLE_STATUS
from batchrun.store.records import CANCELLED, ERROR, OK, SKIPPED, TIMEOUT, Record

# A refused key, a wrong model/URL, or a URL that redirects (POSTs are never followed): every row would get it.
REFUSED_STATUS = frozenset({301, 302, 303, 307, 308, 401, 403, 404})
REFUSAL_WINDOW = 5  # the first N finished requests all failed with one 4xx: stop
MIN_FOR_RATE = 20  # finished before --max-error-rate may stop a run
_SAMPLE = 160  # characters of an error message kept to name the commonest error


class StopRule:
    """Fed every finished request's record (`see`); says when the run must stop, and why."""

    def __init__(
        self, max_errors: int | None = None, max_error_rate: float | None = None, *, unit: str = "requests"
    ) -> None:
        self.max_errors, self.max_error_rate = max_errors, max_error_rate
        self.unit = unit  # what a record stands for in a reason: requests, inputs
        self.abort_reason: str | None = None
        self.refused: str | None = None
        self.ok = 0
        self.failed = 0
        self._errors: Counter[tuple[str, int | None]] = Counter()
        self._samples: dict[tuple[str, int | None], str] = {}
        self._first: list[int | None] = []  # the 4xx of each of the first finished requests (None: not one)

    @property
    def decided(self) -> bool:
        return self.abort_reason is not None or self.refused is not None

    def see(self, record: Record, count: int = 1) -> bool:
        """One finished request, whose outcome `count` records share (an embeddings batch: one
        per input); True when this request makes the run stop."""
        self._count(record, count)
        if self.decided:
            return False
        self.refused = self._refusal(record)
        if self.refused is None and record.status not in (OK, SKIPPED, CANCELLED):
            self.abort_reason = self._over_budget()
        return self.decided

    def abort(self, reason: str) -> None:
        """Stop for a reason of the caller's (every worker process gone), unless already stopped."""
        if not self.decided:
            self.abort_reason = reason

    def _count(self, record: Record, count: int) -> None:
        if record.status == OK:
            self.ok += count
        elif record.status not in (SKIPPED, CANCELLED):
            self.failed += count
            key = (record.error_type or record.status, record.http_status)
            self._errors[key] += count
            self._samples[key] = (record.error or "")[:_SAMPLE]

    def _refusal(self, record: Record) -> str | None:
        if record.status not in (OK, ERROR, TIMEOUT):
            return None  # skipped, cancelled, an invalid answer: the endpoint said nothing
        status = record.http_status if record.status == ERROR else None
        if status in REFUSED_STATUS:
            return record.error or f"HTTP {status}"
        if len(self._first) >= REFUSAL_WINDOW:
            return None
        self._first.append(status if status is not None and 400 <= status < 500 else None)
        first = self._first[0]
        if (
            len(self._first) == REFUSAL_WINDOW
            and first is not None
            and first not in RETRYABLE_STATUS
            and all(s == first for s in self._first)
        ):
            return f"the first {REFUSAL_WINDOW} requests all failed with HTTP {first}; the last said: {record.error}"
        return None

    def _over_budget(self) -> str | None:
        finished, failed, unit = self.ok + self.failed, self.failed, self.unit
        if self.max_errors is not None and failed >= self.max_errors:
            reason = f"{failed} {unit} failed (--max-errors {self.max_errors})"
        elif self.max_error_rate is not None and finished >= MIN_FOR_RATE and failed / finished > self.max_error_rate:
            reason = f"{failed} of {finished} {unit} failed, more than --max-error-rate {self.max_error_rate:g}"
        else:
            return None
        key, n = self._errors.most_common(1)[0]
        return f"{reason}; the commonest error ({n} of {failed}): {key[0]}: {self._samples[key]}"


class Stoppable:
    """Why a pool's run stopped early, as its StopRule decided (the face the pipeline reads)."""

    stop_rule: StopRule

    @property
    def abort_reason(self) -> str | None:
        return self.stop_rule.abort_reason

    @property
    def refused(self) -> str | None:
        return self.stop_rule.refused
