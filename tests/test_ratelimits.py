"""endpoint/ratelimits.py: every header family, against hand-written headers; bad values are dropped."""

from __future__ import annotations

import pytest

from batchrun.endpoint.ratelimits import (
    ANTHROPIC,
    IETF,
    OPENAI,
    Quota,
    RateLimitInfo,
    is_ratelimit_header,
    parse_ratelimit_headers,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def parse(headers: dict[str, str], now: float = NOW) -> tuple[RateLimitInfo | None, list[str]]:
    return parse_ratelimit_headers(headers, now)


def test_openai_and_azure_headers() -> None:
    info, problems = parse(
        {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-reset-requests": "6ms",
            "x-ratelimit-limit-tokens": "2000000",
            "x-ratelimit-remaining-tokens": "1999950",
            "x-ratelimit-reset-tokens": "1m30.5s",
        }
    )
    assert problems == []
    assert info == RateLimitInfo(OPENAI, Quota(10000, 9999, 0.006), Quota(2_000_000, 1_999_950, 90.5))


def test_openai_with_only_tokens() -> None:
    info, _ = parse({"x-ratelimit-limit-tokens": "40000", "x-ratelimit-remaining-tokens": "100"})
    assert info == RateLimitInfo(OPENAI, None, Quota(40000, 100, None))


def test_anthropic_headers_with_rfc3339_resets() -> None:
    info, problems = parse(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:01.5Z",
            "anthropic-ratelimit-tokens-limit": "80000",
            "anthropic-ratelimit-tokens-remaining": "79000",
            "anthropic-ratelimit-tokens-reset": "2027-01-15T09:00:12+01:00",
        }
    )
    assert problems == []
    assert info == RateLimitInfo(ANTHROPIC, Quota(50, 49, 1.5), Quota(80000, 79000, 12.0))


def test_anthropic_reset_in_the_past_is_zero() -> None:
    info, _ = parse(
        {"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-reset": "2027-01-15T07:59:00Z"}
    )
    assert info is not None and info.requests == Quota(50, None, 0.0)


def test_ietf_draft8_policies_and_state() -> None:
    info, problems = parse(
        {
            "ratelimit-policy": '"burst";q=100;w=60, "day";q=1000;w=86400',
            "ratelimit": '"burst";r=40;t=12, "day";r=900;t=3600',
        }
    )
    assert problems == []
    assert info == RateLimitInfo(IETF, requests=Quota(100, 40, 12, 60))


def test_ietf_token_policy_marked_with_qu() -> None:
    info, _ = parse(
        {
            "ratelimit-policy": '"requests";q=600;w=60, "tokens";q=40000;w=60;qu="tokens"',
            "ratelimit": '"requests";r=599;t=1, "tokens";r=39000;t=2',
        }
    )
    assert info == RateLimitInfo(IETF, Quota(600, 599, 1, 60), Quota(40000, 39000, 2, 60))


def test_ietf_policy_in_other_units_is_not_a_rate() -> None:
    info, _ = parse({"ratelimit-policy": '"b";q=1000000;w=60;qu="content-bytes"', "ratelimit": '"b";r=5;t=1'})
    assert info is None


def test_ietf_drafts_5_to_7_dictionary() -> None:
    info, _ = parse({"ratelimit": "limit=100, remaining=50, reset=30", "ratelimit-policy": "100;w=60"})
    assert info == RateLimitInfo(IETF, requests=Quota(100, 50, 30, 60))


def test_ietf_early_drafts_separate_fields() -> None:
    info, _ = parse({"ratelimit-limit": "100, 100;w=60", "ratelimit-remaining": "4", "ratelimit-reset": "7"})
    assert info == RateLimitInfo(IETF, requests=Quota(100, 4, 7, 60))


def test_no_rate_limit_headers() -> None:
    assert parse({"content-type": "text/event-stream", "x-request-id": "req_1"}) == (None, [])


@pytest.mark.parametrize(
    "headers, bad",
    [
        ({"x-ratelimit-limit-requests": "many", "x-ratelimit-remaining-requests": "5"}, "x-ratelimit-limit-requests"),
        (
            {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "-1"},
            "x-ratelimit-remaining-requests",
        ),
        ({"x-ratelimit-limit-requests": "60", "x-ratelimit-reset-requests": "soon"}, "x-ratelimit-reset-requests"),
        ({"x-ratelimit-limit-tokens": "nan"}, "x-ratelimit-limit-tokens"),
        (
            {"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-reset": "tomorrow"},
            "anthropic-ratelimit-requests-reset",
        ),
        ({"anthropic-ratelimit-tokens-limit": "1e999"}, "anthropic-ratelimit-tokens-limit"),
        ({"ratelimit": '"p";r=abc;t=3', "ratelimit-policy": '"p";q=10;w=60'}, "ratelimit r"),
    ],
)
def test_malformed_values_are_left_out_and_named(headers: dict[str, str], bad: str) -> None:
    info, problems = parse(headers)
    assert len(problems) == 1 and problems[0].startswith(bad + ":")
    for quota in (info.requests, info.tokens) if info else ():
        for value in (quota.limit, quota.remaining, quota.reset_s) if quota else ():
            assert value is None or value >= 0


def test_only_rate_limit_header_names_are_kept() -> None:
    keep = ["x-ratelimit-limit-requests", "anthropic-ratelimit-tokens-reset", "ratelimit", "ratelimit-policy"]
    assert all(is_ratelimit_header(n) for n in keep)
    assert not any(is_ratelimit_header(n) for n in ("retry-after", "content-type", "x-request-id"))


@pytest.mark.parametrize(
    "headers, bad",
    [
        ({"x-ratelimit-limit-requests": "1e300", "x-ratelimit-remaining-requests": "5"}, "x-ratelimit-limit-requests"),
        ({"x-ratelimit-limit-requests": "1e-300"}, "x-ratelimit-limit-requests"),  # would hold a run forever
        ({"x-ratelimit-limit-requests": "2000000000"}, "x-ratelimit-limit-requests"),  # 2e9 a minute
        ({"x-ratelimit-limit-tokens": "40000", "x-ratelimit-remaining-tokens": "1e20"}, "x-ratelimit-remaining-tokens"),
        ({"x-ratelimit-limit-tokens": "40000", "x-ratelimit-reset-tokens": "1e300"}, "x-ratelimit-reset-tokens"),
        ({"anthropic-ratelimit-tokens-limit": "5e12"}, "anthropic-ratelimit-tokens-limit"),
        ({"ratelimit-policy": '"p";q=100;w=0.00000001', "ratelimit": '"p";r=50;t=3'}, "ratelimit-policy w"),
        ({"ratelimit-policy": '"p";q=1e300;w=60', "ratelimit": '"p";r=50;t=3'}, "ratelimit limit"),
        ({"ratelimit-limit": "100", "ratelimit-reset": "99999999999"}, "ratelimit-reset"),
    ],
)
def test_figures_no_real_limit_could_have_are_left_out_and_named(headers: dict[str, str], bad: str) -> None:
    """Bounds: 1 to 1e9 requests / 1e12 tokens a minute, resets and windows up to 31 days, windows
    from 1 ms. The figure is named in the problem short (never its 300 digits) and not kept."""
    info, problems = parse(headers)
    assert len(problems) == 1 and problems[0].startswith(bad + ":") and "out of range" in problems[0], problems
    assert len(problems[0]) < 200
    for quota in (info.requests, info.tokens) if info else ():
        for value in (quota.limit, quota.remaining) if quota else ():
            assert value is None or 0 <= value <= 1e12
        assert quota is None or quota.reset_s is None or quota.reset_s <= 31 * 86_400


def test_the_highest_real_limits_are_kept() -> None:
    info, problems = parse(
        {
            "x-ratelimit-limit-requests": "30000",
            "x-ratelimit-limit-tokens": "150000000",
            "x-ratelimit-reset-tokens": "86400",
        }
    )
    assert problems == []
    assert info == RateLimitInfo(OPENAI, Quota(30_000, None, None), Quota(150_000_000, None, 86_400))
