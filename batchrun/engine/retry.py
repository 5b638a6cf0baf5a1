"""How long to wait before a retry: the server's hint when it gave one, else a backoff sized to
the failure (a 429 waits out a per-minute window; a 5xx or a cut connection retries soon)."""

from __future__ import annotations

import random

DEFAULT_MAX_RETRY_WAIT_S = 60.0
# 429 without a hint: 5 s, 15 s, 45 s (65 s over the default 3 retries), so a provider counting
# in a one-minute window (LiteLLM's default) has reset by the last retry.
RATE_LIMIT_BASE_S, RATE_LIMIT_FACTOR = 5.0, 3.0
OTHER_BASE_S, OTHER_MAX_S = 0.5, 30.0
# 4xx statuses worth another try (timeout, conflict, rate limit); every other 4xx would be answered the same.
RETRYABLE_STATUS = frozenset({408, 409, 429})


def retry_delay_s(
    attempt: int,
    http_status: int | None,
    hint_s: float | None,
    *,
    rng: random.Random,
    max_wait_s: float = DEFAULT_MAX_RETRY_WAIT_S,
    base_s: float = OTHER_BASE_S,
    max_s: float = OTHER_MAX_S,
    rate_limit_base_s: float = RATE_LIMIT_BASE_S,
) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt is 0-based), never past `max_wait_s`.

    A server hint (retry-after and kin) is honoured with up to 10% added jitter, so that a crowd
    of workers does not return in the same millisecond. Without one, a 429 waits
    `rate_limit_base_s` (5 s) x 3^attempt plus up to 10%; any other retryable failure
    `base_s` (0.5 s) x 2^attempt capped at `max_s` (30 s) with equal jitter (half fixed, half random).
    """
    if hint_s is not None:
        wait = hint_s * (1 + 0.1 * rng.random())
    elif http_status == 429:
        wait = rate_limit_base_s * RATE_LIMIT_FACTOR**attempt * (1 + 0.1 * rng.random())
    else:
        delay = min(max_s, base_s * 2**attempt)
        wait = delay / 2 + rng.random() * delay / 2
    return min(wait, max_wait_s)
