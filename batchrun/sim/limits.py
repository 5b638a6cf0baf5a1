"""RPM / TPM limits as token buckets, and the headers that announce them (OpenAI's
x-ratelimit-*, Anthropic's anthropic-ratelimit-*, or the IETF draft's RateLimit / RateLimit-Policy).

A bucket holds up to `limit` units and refills at limit/60 per second, so a burst of a full
minute's allowance passes at once and then the steady rate applies -- the way OpenAI's limits
behave in practice. Time is passed in (`now`, seconds), so tests use literal clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from batchrun.sim.model import format_duration


class TokenBucket:
    def __init__(self, limit_per_min: int, now: float) -> None:
        self.limit = limit_per_min
        self.rate = limit_per_min / 60.0  # units per second
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
    kind: str  # "requests" or "tokens"
    limit: int
    used: int
    requested: int
    wait_s: float  # when a retry can pass


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

    def headers(self, now: float, style: str = "openai", wall: float = 0.0) -> list[tuple[str, str]]:
        """The limits as `style` announces them (see SimConfig.ratelimit_headers); none for an
        unlimited dimension. `wall` is the POSIX time, for Anthropic's absolute resets."""
        out: list[tuple[str, str]] = []
        if style == "ietf":
            return _ietf_headers(self.requests, self.tokens, now)
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is None:
                continue
            limit, left, reset = str(bucket.limit), str(bucket.remaining(now)), bucket.reset_s(now)
            if style == "openai":
                out += [
                    (f"x-ratelimit-limit-{kind}", limit),
                    (f"x-ratelimit-remaining-{kind}", left),
                    (f"x-ratelimit-reset-{kind}", format_duration(reset)),
                ]
            elif style == "anthropic":
                moment = datetime.fromtimestamp(math.ceil(wall + reset), timezone.utc)
                out += [
                    (f"anthropic-ratelimit-{kind}-limit", limit),
                    (f"anthropic-ratelimit-{kind}-remaining", left),
                    (f"anthropic-ratelimit-{kind}-reset", moment.strftime("%Y-%m-%dT%H:%M:%SZ")),
                ]
        return out


def _ietf_headers(requests: TokenBucket | None, tokens: TokenBucket | None, now: float) -> list[tuple[str, str]]:
    """Draft 8 on: one named policy per limit (tokens marked `qu="tokens"`) and its state."""
    policies, states = [], []
    for name, bucket in (("requests", requests), ("tokens", tokens)):
        if bucket is not None:
            unit = ';qu="tokens"' if name == "tokens" else ""
            policies.append(f'"{name}";q={bucket.limit};w=60{unit}')
            states.append(f'"{name}";r={bucket.remaining(now)};t={math.ceil(bucket.reset_s(now))}')
    if not policies:
        return []
    return [("RateLimit-Policy", ", ".join(policies)), ("RateLimit", ", ".join(states))]
