"""Header time parsers, against hand-written values."""

from __future__ import annotations

import pytest

from batchrun.endpoint.hints import parse_http_date, parse_rfc3339, retry_wait_s, seconds_until


def test_http_date_and_rfc3339() -> None:
    assert parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT") == 1445412480.0
    assert parse_http_date("not a date") is None
    assert parse_rfc3339("2015-10-21T07:28:00Z") == 1445412480.0
    assert parse_rfc3339("2015-10-21T09:28:00+02:00") == 1445412480.0
    assert parse_rfc3339("2015-10-21T07:28:00") is None  # no zone: not trusted
    assert parse_rfc3339("yesterday") is None


def test_seconds_until_takes_seconds_or_a_date() -> None:
    now = 1445412470.0
    assert seconds_until("7", now) == 7.0
    assert seconds_until("0.25", now) == 0.25
    assert seconds_until("Wed, 21 Oct 2015 07:28:00 GMT", now) == 10.0
    assert seconds_until("Wed, 21 Oct 2015 07:27:00 GMT", now) == 0.0  # already past
    assert seconds_until("soon", now) is None
    assert seconds_until(None, now) is None


NOW = 1445412470.0  # 10 s before Wed, 21 Oct 2015 07:28:00 GMT


@pytest.mark.parametrize(
    "headers, wait",
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 10.0),  # an HTTP-date
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the finer one first
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"llm_provider-retry-after": "12"}, 12.0),  # LiteLLM
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),  # both windows
        ({"x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({"retry-after": "soon", "x-ratelimit-reset-requests": "2s"}, 2.0),  # unreadable: the next hint
        ({}, None),
        ({"retry-after": "-3"}, None),
    ],
)
def test_retry_wait_reads_every_providers_hint(headers: dict[str, str], wait: float | None) -> None:
    assert retry_wait_s(headers, NOW) == (pytest.approx(wait) if wait is not None else None)
