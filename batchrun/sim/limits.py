"""RPM / TPM limits as token buckets, and OpenAI's x-ratelimit-* headers.

A bucket holds up to `limit` units and refills at limit/60 per second, so a burst of a full
minute's allowance passes at once and then the steady rate applies -- the way OpenAI's limits
behave in practice. Time is passed in (`now`, seconds), so tests use literal clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from batchrun.sim.model import format_duration


class TokenBucket:
    def __init__(self, limit_per_min: int, now: float) -> None:
        self.limit = limit_per_min
        self.rate = limit_per_min / 60.0      # units per second
        self.level = float(limit_per_min)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(float(self.limit), self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_s(self, amount: int, now: float) -> float:
        """Seconds until `amount` units are available (0: available now)."""
        self._refill(now)
        return max(0.0, (amount - self.level) / self.rate)

    def take(self, amount: int, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def remaining(self, now: float) -> int:
        self._refill(now)
        return max(0, math.floor(self.level))

    def reset_s(self, now: float) -> float:
        """Seconds until the bucket is full again (OpenAI's x-ratelimit-reset-*)."""
        self._refill(now)
        return (self.limit - self.level) / self.rate


@dataclass(frozen=True, slots=True)
class Denied:
    kind: str          # "requests" or "tokens"
    limit: int
    used: int
    requested: int
    wait_s: float      # when a retry can pass


class RateLimiter:
    """Admits a request only if both buckets have room; a denied request costs nothing."""

    def __init__(self, rpm: int | None, tpm: int | None, now: float) -> None:
        self.requests = TokenBucket(rpm, now) if rpm else None
        self.tokens = TokenBucket(tpm, now) if tpm else None

    @property
    def active(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def admit(self, cost_tokens: int, now: float) -> Denied | None:
        for kind, bucket, amount in (("requests", self.requests, 1), ("tokens", self.tokens, cost_tokens)):
            if bucket is not None:
                wait = bucket.wait_s(amount, now)
                if wait > 0:
                    used = bucket.limit - bucket.remaining(now)
                    return Denied(kind, bucket.limit, used, amount, wait)
        for bucket, amount in ((self.requests, 1), (self.tokens, cost_tokens)):
            if bucket is not None:
                bucket.take(amount, now)
        return None

    def headers(self, now: float) -> list[tuple[str, str]]:
        """x-ratelimit-{limit,remaining,reset}-{requests,tokens}; none for an unlimited dimension."""
        out: list[tuple[str, str]] = []
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                out += [(f"x-ratelimit-limit-{kind}", str(bucket.limit)),
                        (f"x-ratelimit-remaining-{kind}", str(bucket.remaining(now))),
                        (f"x-ratelimit-reset-{kind}", format_duration(bucket.reset_s(now)))]
        return out
