"""Client-side RPM / TPM pacing and limits learned from the provider's headers.

The request rate (--rpm) is paced by aiolimiter's AsyncLimiter, through its public API: every
request is one unit, so nothing is ever refunded. bench/bench_rpm_pacer.py measured it against
our own bucket: the same requests in every sliding 60 s and 1 s window, and CPU per acquire
0.83x ours when capacity is free, ~1.2x (+3 µs) when a 2,000/s limit binds. The token budget
(--tpm) is our own bucket: it charges an estimate before the request and corrects it from the
response's `usage` after (refunds, and charges for an under-estimate), which a leaky bucket
that only fills offers no way to express.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, TypeVar

from aiolimiter import AsyncLimiter

from batchrun.endpoint.ratelimits import IETF, Quota, RateLimitInfo

# A bucket that holds one second's worth of the limit: smooth pacing, so a run set just
# under a provider's limit stays under it whether the provider counts in a sliding
# 60 s window (a full-minute bucket could let through up to twice the limit there)
# or in a refilling bucket like OpenAI's.
_BURST_S = 1.0
_MINUTE_S = 60.0


class TokenBucket:
    """The arithmetic of one bucket, on times passed in (seconds): pure, tested on literal clocks.

    `level` is the capacity free now; it may go below zero when the provider said to hold off.
    """

    def __init__(self, per_minute: float, now: float) -> None:
        if not per_minute > 0:
            raise ValueError(f"a rate limit must be positive, got {per_minute}")
        self.rate = per_minute / _MINUTE_S  # units per second
        self.capacity = max(1.0, self.rate * _BURST_S)  # under 60/min: one unit at a time
        self.level = self.capacity
        self.stamp = now

    def set_rate(self, per_minute: float, now: float) -> None:
        """A new limit from now on; what is free now stays free up to the new capacity."""
        self.refill(now)
        self.rate = per_minute / _MINUTE_S
        self.capacity = max(1.0, self.rate * _BURST_S)
        self.level = min(self.level, self.capacity)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until `amount` (at most the capacity) is free; 0 when it is free now."""
        self.refill(now)
        return max(0.0, (amount - self.level) / self.rate)

    def take(self, amount: float, now: float) -> None:
        self.refill(now)
        self.level -= amount

    def give_back(self, amount: float, now: float) -> None:
        self.refill(now)
        self.level = min(self.capacity, self.level + amount)

    def at_most(self, available: float, now: float) -> None:
        """The provider says only `available` units are left: never count on more (a negative
        value holds everything until the refill has made up for it)."""
        self.refill(now)
        self.level = min(self.level, available)


class Bucket:
    """A TokenBucket that async callers wait on, first come first served; requests larger
    than the bucket are charged in bucket-sized parts. Create inside the running loop."""

    def __init__(self, per_minute: float, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or asyncio.get_running_loop().time
        self.core = TokenBucket(per_minute, self._clock())
        # asyncio.Lock wakes waiters in arrival order, so a large request (and every part of one
        # larger than the bucket) is never overtaken by a stream of small ones.
        self._turn = asyncio.Lock()
        self._wakeup: asyncio.Future[None] | None = None

    @property
    def per_minute(self) -> float:
        return self.core.rate * _MINUTE_S

    async def take(self, amount: float) -> None:
        async with self._turn:
            while amount > 0:
                amount -= await self._take_part(amount)

    async def _take_part(self, amount: float) -> float:
        loop = asyncio.get_running_loop()
        while True:
            part = min(amount, self.core.capacity)
            wait = self.core.wait_s(part, self._clock())
            if wait <= 0:
                self.core.take(part, self._clock())
                return part
            # Sleep until the part is free, or until a refund / a new rate may have freed it sooner.
            self._wakeup = loop.create_future()
            timer = loop.call_later(wait, _wake, self._wakeup)
            try:
                await self._wakeup
            finally:
                timer.cancel()
                self._wakeup = None

    def give_back(self, amount: float) -> None:
        """Return over-charged capacity; a waiter that now fits goes at once."""
        self.core.give_back(amount, self._clock())
        self._poke()

    def set_rate(self, per_minute: float) -> None:
        self.core.set_rate(per_minute, self._clock())
        self._poke()

    def at_most(self, available: float) -> None:
        self.core.at_most(available, self._clock())

    def _poke(self) -> None:
        if self._wakeup is not None:
            _wake(self._wakeup)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _limiter(per_minute: float) -> AsyncLimiter:
    """An AsyncLimiter holding one second's worth of the limit (not a minute's: see _BURST_S);
    under 60/min, one request at a time."""
    per_s = per_minute / _MINUTE_S
    if per_s * _BURST_S >= 1:
        return AsyncLimiter(per_s * _BURST_S, _BURST_S)
    return AsyncLimiter(1, 1 / per_s)


class RequestPacer:
    """The request rate, one unit per request, paced by aiolimiter. Create inside the running loop.

    Served first come, first served under our lock: aiolimiter lets an arrival take capacity
    that has just freed while its woken waiter has not run yet, and that waiter then queues
    again behind the others. With the lock only one request at a time waits on the limiter.

    A limiter's level can only be raised, by acquiring. So a new limit or the provider's
    `remaining` swaps in a new limiter together with what it is owed: requests charged to it
    before the next one goes.
    """

    def __init__(self, per_minute: float) -> None:
        if not per_minute > 0:
            raise ValueError(f"a rate limit must be positive, got {per_minute}")
        self._loop = asyncio.get_running_loop()
        self.per_minute = per_minute
        self._limiter = _limiter(per_minute)
        # What the limiter is owed. Until it is first charged (`_owed_at`: when it was swapped in,
        # else None) it is empty, so the debt drains at the rate, as the old level would have;
        # once charged, the limiter's own level drains instead.
        self._owed: float = 0.0
        self._owed_at: float | None = None
        self._turn = asyncio.Lock()

    async def take(self) -> None:
        async with self._turn:
            while not await self._one_from(self._limiter):
                pass  # swapped while we waited: go again on the new one

    async def _one_from(self, limiter: AsyncLimiter) -> bool:
        """Pay what `limiter` is owed, then one request; False if it was swapped out meanwhile."""
        while (owed := self._owing()) > 0:
            part = min(owed, limiter.max_rate)
            await limiter.acquire(part)
            if limiter is not self._limiter:
                return False
            self._owed, self._owed_at = owed - part, None
        await limiter.acquire()
        return limiter is self._limiter

    def _owing(self) -> float:
        if self._owed_at is None:
            return self._owed
        return self._owed - (self._loop.time() - self._owed_at) * self.per_minute / _MINUTE_S

    def set_rate(self, per_minute: float) -> None:
        """A new limit from now on. What the old limiter has free is known only as far as
        `has_capacity` tells: the new one's whole burst, or else none (and a hold stays)."""
        owed = max(0.0, self._owing())
        burst = _limiter(per_minute).max_rate
        free = burst if self._limiter.has_capacity(owed + burst) else -owed
        self.per_minute = per_minute
        self._swap(free)

    def at_most(self, available: float) -> None:
        """The provider says only `available` requests are left: never count on more (a negative
        value holds everything until the rate has made up for it)."""
        owed = max(0.0, self._owing())
        if available >= self._limiter.max_rate - owed:
            return  # never more free than that anyway
        if available + owed > 0 and not self._limiter.has_capacity(available + owed):
            return  # less than `available` is free already
        self._swap(available)

    def _swap(self, free: float) -> None:
        self._limiter = _limiter(self.per_minute)
        self._owed, self._owed_at = self._limiter.max_rate - free, self._loop.time()


@dataclass
class LimitsSeen:
    """What the provider's headers said over a run, for the summary and the recommendation."""

    source: str | None = None
    requests_per_min: float | None = None  # the last limit announced, per minute
    tokens_per_min: float | None = None
    lowest_requests_left: float | None = None
    lowest_tokens_left: float | None = None
    responses: int = 0  # responses that carried rate-limit headers
    problems: dict[str, str] = field(default_factory=dict)  # header name -> first unreadable value

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "requests_per_min": self.requests_per_min,
            "tokens_per_min": self.tokens_per_min,
            "lowest_requests_left": self.lowest_requests_left,
            "lowest_tokens_left": self.lowest_tokens_left,
            "responses": self.responses,
            "unreadable": dict(self.problems),
        }


def per_minute(quota: Quota) -> float | None:
    """A quota's limit per minute: per its window when the header gave one, else per minute."""
    if quota.limit is None or quota.limit <= 0:
        return None
    return quota.limit * _MINUTE_S / quota.window_s if quota.window_s else quota.limit


class _Paced(Protocol):
    """What a learned limit adjusts: a RequestPacer or a Bucket."""

    @property
    def per_minute(self) -> float: ...
    def set_rate(self, per_minute: float) -> None: ...
    def at_most(self, available: float) -> None: ...


_P = TypeVar("_P", bound=_Paced)


class RateLimits:
    """RPM and TPM pacing; create inside the running loop.

    A limit the user gave is fixed. With `learn_rpm` / `learn_tpm`, a dimension the user left open is paced at the
    limit the provider's headers announce, from the first response that names it: the bucket's
    rate follows the announced limit, its free capacity never exceeds the provider's `remaining`
    (so budget spent by another process counts), and what is left of an IETF window must last
    until its reset.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        learn_rpm: bool = False,
        learn_tpm: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._rpm = RequestPacer(rpm) if rpm else None
        self._tpm = Bucket(tpm) if tpm else None
        self._learn_rpm = learn_rpm and not rpm  # a limit the user gave always wins
        self._learn_tpm = learn_tpm and not tpm
        self._warn = warn
        self.seen = LimitsSeen()
        self._acquired, self._mean_tokens = 0, 0.0  # for the tokens of requests still in transit
        self._debts: set[asyncio.Task[None]] = set()

    @property
    def paced(self) -> dict[str, float | None]:
        """The limits pacing now, per minute (user-given or learned)."""
        return {"rpm": self._rpm.per_minute if self._rpm else None, "tpm": self._tpm.per_minute if self._tpm else None}

    async def acquire(self, estimated_tokens: int) -> None:
        """Wait until one request of about `estimated_tokens` tokens fits both limits."""
        self._mean_tokens += (estimated_tokens - self._mean_tokens) / min(self._acquired + 1, 100)
        self._acquired += 1
        if self._rpm is not None:
            await self._rpm.take()
        if self._tpm is not None:
            await self._tpm.take(estimated_tokens)

    def correct(self, charged_tokens: int, actual_tokens: int) -> None:
        """After the response: refund an over-estimate now, charge an under-estimate later.

        Only for a --tpm the user gave: a learned limit is the provider's, and providers charge
        their own estimate (prompt + max_tokens) when they admit a request, so a refund would
        spend budget the provider still counts."""
        if self._tpm is None or self._learn_tpm or actual_tokens == charged_tokens:
            return
        if actual_tokens < charged_tokens:
            self._tpm.give_back(charged_tokens - actual_tokens)
        else:
            # Charge the excess in the background: this request is already done, but
            # the next ones must wait for the tokens it really used.
            task = asyncio.get_running_loop().create_task(self._tpm.take(actual_tokens - charged_tokens))
            self._debts.add(task)
            task.add_done_callback(self._debts.discard)

    def observe(self, info: RateLimitInfo | None, problems: list[str], *, unanswered: int = 0) -> None:
        """One response's headers, parsed: remember them and, where learning, pace by them.

        `unanswered`: requests sent since that the provider's `remaining` may not count yet."""
        for problem in problems:
            name = problem.split(":")[0]
            if name not in self.seen.problems:
                self.seen.problems[name] = problem
                if self._warn is not None:
                    self._warn(f"ignored a rate-limit header ({problem}); warned once per header")
        if info is None:
            return
        seen = self.seen
        seen.source, seen.responses = info.source, seen.responses + 1
        if info.requests is not None:
            seen.requests_per_min = per_minute(info.requests) or seen.requests_per_min
            seen.lowest_requests_left = _lowest(seen.lowest_requests_left, info.requests.remaining)
            if self._learn_rpm:
                self._rpm = self._follow(self._rpm, RequestPacer, info.requests, info.source, unanswered)
        if info.tokens is not None:
            seen.tokens_per_min = per_minute(info.tokens) or seen.tokens_per_min
            seen.lowest_tokens_left = _lowest(seen.lowest_tokens_left, info.tokens.remaining)
            if self._learn_tpm:
                self._tpm = self._follow(self._tpm, Bucket, info.tokens, info.source, unanswered * self._mean_tokens)

    @staticmethod
    def _follow(
        bucket: _P | None, make: Callable[[float], _P], quota: Quota, source: str, in_transit: float
    ) -> _P | None:
        rate = per_minute(quota)
        if rate is None:
            return bucket
        if bucket is None:
            bucket = make(rate)
        elif abs(bucket.per_minute - rate) > 1e-9 * rate:
            bucket.set_rate(rate)
        if quota.remaining is not None:
            left = quota.remaining - in_transit
            if source == IETF and quota.reset_s:
                # The draft's windows may be fixed: what is left must last until the reset, so
                # the refill the bucket would add before then is not counted on.
                left -= rate / _MINUTE_S * quota.reset_s
            bucket.at_most(left)
        return bucket

    async def aclose(self) -> None:
        """Drop debts still waiting to be charged: the run is over."""
        for task in self._debts:
            task.cancel()
        await asyncio.gather(*self._debts, return_exceptions=True)


def _lowest(current: float | None, value: float | None) -> float | None:
    if value is None:
        return current
    return value if current is None else min(current, value)


def limits_summary(
    limits: RateLimits, *, attempts: int, rate_limited: int, user_rpm: float | None, user_tpm: float | None, learn: bool
) -> dict[str, object]:
    """The limits a run saw and paced by, its share of 429s, and the --rpm/--tpm to recommend:
    the provider's announced limits (batchrun paces at them by default; giving them as flags
    also paces the first wave of requests, sent before any header was seen)."""
    seen = limits.seen
    recommend = {
        "rpm": math.floor(seen.requests_per_min) if seen.requests_per_min else None,
        "tpm": math.floor(seen.tokens_per_min) if seen.tokens_per_min else None,
    }
    return {
        "provider": seen.to_dict(),
        "user": {"rpm": user_rpm, "tpm": user_tpm},
        "learned": learn,
        "paced": limits.paced,
        "attempts": attempts,
        "rate_limited": rate_limited,
        "rate_limited_share": rate_limited / attempts if attempts else None,
        "recommend": recommend,
    }
