"""--max-cost: no request goes out once the run's spend would pass the budget.

    budget = Budget(max_usd=5.0, price=price)       # price: analysis/cost.resolve_price
    budget.judge(job)     # before sending: SEND, WAIT (for what is in flight) or STOP (for good)
    budget.settle(record) # each finished row: its usage becomes spend, its reservation is freed

A request is judged by the projection spend so far (the usage of every request that reported it,
earlier sessions included) + the requests in flight at their expected cost + this request at its
expected cost. Within the budget: SEND (its expected cost is reserved). Over it while requests
are in flight: WAIT, since what they really cost may leave room. Over it with nothing in flight:
STOP, and every later request is refused too.

A request's expected cost is its estimated prompt tokens, scaled by what the finished requests
measured against their estimates, and the mean completion tokens of the ok rows so far (its
max_tokens until one has finished): the measured cost, so a budget is spent rather than left at
the ceiling's margin. What a request really costs can differ from what it was expected to: the
spend can pass the budget by that difference on the requests that were in flight, never by a
request sent after the budget was reached.
"""

from __future__ import annotations

from typing import Iterable

from batchrun.analysis.cost import Price, Usage, estimate_cost, format_usd
from batchrun.endpoint.requests import Job
from batchrun.store.records import OK, Record

SEND, WAIT, STOP = "send", "wait", "stop"


class Budget:
    """The spend of one run against --max-cost (USD)."""

    def __init__(self, max_usd: float, price: Price, spent_usd: float = 0.0) -> None:
        self.max_usd, self.price = max_usd, price
        self.spent_usd = spent_usd
        self.reached: str | None = None  # why the last request was refused; then every later one is
        self._in_flight: dict[str, tuple[float, int]] = {}  # row id -> (expected USD, prompt estimate)
        self._reserved = 0.0
        self._prompt_measured = 0  # prompt tokens reported by requests whose estimate is known ...
        self._prompt_estimated = 0  # ... and what they were estimated at
        self._completion_sum = 0  # completion tokens of the ok rows so far ...
        self._completion_rows = 0  # ... and how many they are

    def carry(self, records: Iterable[Record | Usage]) -> None:
        """An earlier session's records, every one (each was a billed request, also a row sent
        again since): their usage is spend, their ok rows' answers measured."""
        for record in records:
            self._charge(record, expected=0.0)

    @property
    def in_flight_usd(self) -> float:
        return self._reserved

    def expected(self, job: Job) -> float:
        """USD this job is expected to cost (see the module's docstring)."""
        ratio = self._prompt_measured / self._prompt_estimated if self._prompt_estimated else 1.0
        prompt = job.prompt_tokens_estimate * ratio
        if self._completion_rows:
            completion: float = self._completion_sum / self._completion_rows
        else:
            completion = job.estimated_tokens - job.prompt_tokens_estimate  # its max_tokens
        return estimate_cost(prompt, completion, self.price)

    def judge(self, job: Job) -> str:
        """SEND (its expected cost reserved), WAIT for the requests in flight, or STOP."""
        if self.reached is not None:
            return STOP
        cost = self.expected(job)
        if self.spent_usd + self._reserved + cost <= self.max_usd:
            self._in_flight[job.prompt.id] = (cost, job.prompt_tokens_estimate)
            self._reserved += cost
            return SEND
        if self._in_flight:
            return WAIT
        self.reached = f"{format_usd(self.spent_usd)} spent, and the next request would cost ~{format_usd(cost)}"
        return STOP

    def settle(self, record: Record) -> None:
        """A finished row: its reservation freed, its usage added to the spend."""
        expected, estimate = self._in_flight.pop(record.id, (0.0, 0))
        self._reserved = max(0.0, self._reserved - expected)
        self._charge(record, expected)
        if estimate and record.prompt_tokens is not None:
            self._prompt_measured += record.prompt_tokens
            self._prompt_estimated += estimate

    def _charge(self, record: Record | Usage, expected: float) -> None:
        if record.sent_s is None and record.batch_id is None:
            return  # never sent: skipped, or stopped in the queue
        if record.prompt_tokens is None and record.completion_tokens is None:
            # Sent, but the server reported no usage: it may have billed it; count what was expected.
            self.spent_usd += expected
            return
        self.spent_usd += estimate_cost(record.prompt_tokens or 0, record.completion_tokens or 0, self.price)
        if record.status == OK and record.completion_tokens is not None:
            self._completion_sum += record.completion_tokens
            self._completion_rows += 1
