"""What a server's headers say about time: duration strings, HTTP dates, RFC 3339 instants.

Pure parsers shared by retry waits (how long to back off) and learned rate limits (when a
window resets). Each returns None for a value it cannot read, never raises: a malformed header
is the server's problem and must not become a failed row.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Mapping

from batchrun.values import parse_duration_s  # Go-style durations: also what --deadline takes


def parse_http_date(text: str | None) -> float | None:
    """POSIX seconds of an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"), or None."""
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_rfc3339(text: str | None) -> float | None:
    """POSIX seconds of an RFC 3339 instant ("2026-11-24T12:00:05Z", Anthropic's resets), or None."""
    if not text:
        return None
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # an instant without a zone is ambiguous: not trusted
    return moment.timestamp()


def seconds_until(text: str | None, now_s: float) -> float | None:
    """A wait written as seconds ("2", "1.5") or as an HTTP-date, in seconds from `now_s`
    (POSIX seconds); a date in the past is a wait of 0."""
    seconds = parse_duration_s(text) if text and re.fullmatch(r"\s*[\d.]+\s*", text) else None
    if seconds is not None:
        return seconds
    moment = parse_http_date(text)
    if moment is None:
        return None
    return max(0.0, moment - now_s)


# Every header a provider uses to say when to come back, read in this order; the longest of the
# resets wins, since both the request and the token window must have room again.
_RESET_HEADERS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")


def retry_wait_s(headers: Mapping[str, str], now_s: float) -> float | None:
    """Seconds a server asked us to wait before retrying (`now_s`: POSIX seconds, for dates).

    `retry-after-ms` (milliseconds), `retry-after` (seconds or an HTTP-date), LiteLLM's
    `llm_provider-retry-after` (seconds), then OpenAI's `x-ratelimit-reset-requests` /
    `-tokens` durations ("1s", "6m0s", "20ms"). None when none of them is readable.
    """
    milliseconds = parse_duration_s(headers.get("retry-after-ms"))
    if milliseconds is not None and _plain_number(headers.get("retry-after-ms")):
        return milliseconds / 1000.0
    for name in ("retry-after", "llm_provider-retry-after"):
        wait = seconds_until(headers.get(name), now_s)
        if wait is not None:
            return wait
    resets = [parse_duration_s(headers.get(name)) for name in _RESET_HEADERS]
    known = [r for r in resets if r is not None]
    return max(known) if known else None


def _plain_number(text: str | None) -> bool:
    return text is not None and re.fullmatch(r"\s*[\d.]+\s*", text) is not None
