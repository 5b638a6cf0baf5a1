"""Client-side RPM / TPM pacing on top of aiolimiter, and the retry backoff rule."""

from __future__ import annotations

import asyncio
import random

from aiolimiter import AsyncLimiter

# A bucket that holds one second's worth of the limit: smooth pacing, so a run set just
# under a provider's limit stays under it whether the provider counts in a sliding
# 60 s window (a full-minute bucket could let through up to twice the limit there)
# or in a refilling bucket like OpenAI's.
_BURST_S = 1.0


class _Bucket:
    """One leaky bucket; requests larger than the bucket are charged in bucket-sized parts."""

    def __init__(self, per_minute: float) -> None:
        self._turn = asyncio.Lock()
        rate = per_minute / 60.0
        if rate * _BURST_S >= 1:
            self._limiter = AsyncLimiter(rate * _BURST_S, _BURST_S)
        else:                       # under 60/min: one unit per 60/limit seconds
            self._limiter = AsyncLimiter(1, 1 / rate)

    async def take(self, amount: float) -> None:
        # First come, first served: aiolimiter wakes its smallest waiter first and lets a new
        # arrival take free capacity, so under load a larger request (and every part of one
        # larger than the bucket) could be overtaken for ever, parking its worker.
        async with self._turn:
            cap = self._limiter.max_rate
            while amount > cap:
                await self._limiter.acquire(cap)
                amount -= cap
            if amount > 0:
                await self._limiter.acquire(amount)

    def give_back(self, amount: float) -> None:
        """Return over-charged capacity. aiolimiter has no public refund, so this lowers its
        bucket level directly (`_level`, stable since aiolimiter 1.0)."""
        limiter = self._limiter
        limiter._leak()
        limiter._level = max(0.0, limiter._level - amount)
        limiter._wake_next()


class RateLimits:
    """RPM and TPM limits; create inside the running loop (aiolimiter binds to it)."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self._rpm = _Bucket(rpm) if rpm else None
        self._tpm = _Bucket(tpm) if tpm else None
        self._debts: set[asyncio.Task[None]] = set()

    async def acquire(self, estimated_tokens: int) -> None:
        """Wait until one request of about `estimated_tokens` tokens fits both limits."""
        if self._rpm is not None:
            await self._rpm.take(1)
        if self._tpm is not None:
            await self._tpm.take(estimated_tokens)

    def correct(self, charged_tokens: int, actual_tokens: int) -> None:
        """After the response: refund an over-estimate now, charge an under-estimate later."""
        if self._tpm is None or actual_tokens == charged_tokens:
            return
        if actual_tokens < charged_tokens:
            self._tpm.give_back(charged_tokens - actual_tokens)
        else:
            # Charge the excess in the background: this request is already done, but
            # the next ones must wait for the tokens it really used.
            task = asyncio.get_running_loop().create_task(self._tpm.take(actual_tokens - charged_tokens))
            self._debts.add(task)
            task.add_done_callback(self._debts.discard)

    async def aclose(self) -> None:
        """Drop debts still waiting to be charged: the run is over."""
        for task in self._debts:
            task.cancel()
        await asyncio.gather(*self._debts, return_exceptions=True)


def backoff_s(attempt: int, retry_after_s: float | None, *, base_s: float, max_s: float,
              rng: random.Random) -> float:
    """Seconds to wait before attempt `attempt + 1`.

    The server's `retry-after` wins when it sent one (plus up to 10% jitter so that a
    crowd of workers does not return in the same millisecond); otherwise exponential
    backoff `base * 2**attempt`, capped at `max_s`, with equal jitter (half fixed, half random).
    """
    if retry_after_s is not None:
        return min(retry_after_s * (1 + 0.1 * rng.random()), max(max_s, retry_after_s))
    delay = min(max_s, base_s * 2 ** attempt)
    return delay / 2 + rng.random() * delay / 2
