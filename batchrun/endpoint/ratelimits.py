"""What a provider's response headers say about its rate limits. Pure parsing, no I/O.

Three families are read:
- OpenAI and Azure OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as
  Go durations ("1s", "6m0s", "20ms") meaning "until the limit is back to its full value".
- Anthropic: `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, resets as
  RFC 3339 instants.
- The IETF draft (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy: "p";q=100;w=60` with
  `RateLimit: "p";r=50;t=30` (draft 8 on), `RateLimit: limit=100, remaining=50, reset=30`
  (drafts 5-7), and the separate `RateLimit-Limit` / `-Remaining` / `-Reset` fields (drafts 0-4).
  Their quota is in requests.

A value that cannot be read is left out and named in the returned problems (the caller warns
once per header name); it never fails a request. Times parse with `endpoint.hints`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

from batchrun.endpoint.hints import parse_duration_s, parse_rfc3339

REQUESTS, TOKENS = "requests", "tokens"
OPENAI, ANTHROPIC, IETF = "openai", "anthropic", "ietf"
_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "ratelimit")


@dataclass(frozen=True, slots=True)
class Quota:
    """One limit as a response reported it; None where the response did not say."""

    limit: float | None = None          # units per window
    remaining: float | None = None      # units left now
    reset_s: float | None = None        # seconds from the response until the limit is whole again
    window_s: float | None = None       # the policy's window when stated (IETF `w`); else per minute


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """The limits one response announced: requests and tokens, and the header family."""

    source: str
    requests: Quota | None = None
    tokens: Quota | None = None


def is_ratelimit_header(name: str) -> bool:
    """True for a header name (lower case) this module reads; lets a client keep only these."""
    return name.startswith(_PREFIXES)


def parse_ratelimit_headers(headers: Mapping[str, str], now_s: float) -> tuple[RateLimitInfo | None, list[str]]:
    """The limits in `headers` (names in lower case), and one problem line per unreadable value.

    `now_s` is the POSIX time the response arrived, for Anthropic's absolute resets.
    """
    problems: list[str] = []
    for parse in (_openai, _anthropic, _ietf):
        info = parse(headers, now_s, problems)
        if info is not None:
            return info, problems
    return None, problems


def _number(headers: Mapping[str, str], name: str, problems: list[str]) -> float | None:
    text = headers.get(name)
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        problems.append(f"{name}: {text[:40]!r} is not a count")
        return None
    return value


def _checked(headers: Mapping[str, str], name: str, value: float | None, problems: list[str]) -> float | None:
    text = headers.get(name)
    if text is not None and value is None:
        problems.append(f"{name}: {text[:40]!r} is not a time")
    return value


def _quota(limit: float | None, remaining: float | None, reset_s: float | None,
           window_s: float | None = None) -> Quota | None:
    if limit is None and remaining is None:
        return None
    return Quota(limit, remaining, reset_s, window_s)


def _openai(headers: Mapping[str, str], now_s: float, problems: list[str]) -> RateLimitInfo | None:
    quotas = {}
    for kind in (REQUESTS, TOKENS):
        limit = _number(headers, f"x-ratelimit-limit-{kind}", problems)
        remaining = _number(headers, f"x-ratelimit-remaining-{kind}", problems)
        name = f"x-ratelimit-reset-{kind}"
        reset = _checked(headers, name, parse_duration_s(headers.get(name)), problems)
        quotas[kind] = _quota(limit, remaining, reset)
    if not any(quotas.values()):
        return None
    return RateLimitInfo(OPENAI, quotas[REQUESTS], quotas[TOKENS])


def _anthropic(headers: Mapping[str, str], now_s: float, problems: list[str]) -> RateLimitInfo | None:
    quotas = {}
    for kind in (REQUESTS, TOKENS):
        base = f"anthropic-ratelimit-{kind}"
        limit = _number(headers, f"{base}-limit", problems)
        remaining = _number(headers, f"{base}-remaining", problems)
        moment = _checked(headers, f"{base}-reset", parse_rfc3339(headers.get(f"{base}-reset")), problems)
        quotas[kind] = _quota(limit, remaining, None if moment is None else max(0.0, moment - now_s))
    if not any(quotas.values()):
        return None
    return RateLimitInfo(ANTHROPIC, quotas[REQUESTS], quotas[TOKENS])


# One member of a structured-field list or dictionary: `"name";q=100;w=60` or `limit=100`.
_PARAM = re.compile(r'\s*([a-z*][a-z0-9_.*-]*)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,\s]+))?\s*')


def _params(member: str) -> dict[str, str]:
    """`"p";q=100;w=60` -> {"q": "100", "w": "60"} (the leading item name is dropped)."""
    out: dict[str, str] = {}
    for part in member.split(";"):
        match = _PARAM.fullmatch(part)
        if match and match.group(2) is not None:
            out[match.group(1)] = match.group(2).strip('"')
    return out


def _ietf(headers: Mapping[str, str], now_s: float, problems: list[str]) -> RateLimitInfo | None:
    field, policy = headers.get("ratelimit"), headers.get("ratelimit-policy")
    if field is None and policy is None:
        return _ietf_separate(headers, problems)
    if field is not None and ";" not in field:        # drafts 5-7: one dictionary
        state = {k: v for member in field.split(",") for k, v in _params(member).items()}
        quota = _ietf_quota(state, _old_policy(policy or ""), problems)
        return None if quota is None else RateLimitInfo(IETF, requests=quota)
    # Draft 8 on: named policies (`"p";q=100;w=60`) and their state (`"p";r=50;t=30`). The
    # quota unit `qu` is requests unless it says "tokens" (an extension some LLM gateways use);
    # policies in other units (bytes, concurrent requests) are not rates we can pace.
    states = {_name(m): _params(m) for m in (field or "").split(",") if m.strip()}
    quotas: dict[str, Quota | None] = {}
    for member in (policy or "").split(","):
        if not member.strip():
            continue
        pol = _params(member)
        kind = {"requests": REQUESTS, "tokens": TOKENS}.get(pol.get("qu", "requests"))
        if kind is not None and kind not in quotas:
            quotas[kind] = _ietf_quota(states.get(_name(member), {}), pol, problems)
    if policy is None and len(states) == 1:            # state without a policy: requests
        quotas[REQUESTS] = _ietf_quota(next(iter(states.values())), {}, problems)
    if not any(quotas.values()):
        return None
    return RateLimitInfo(IETF, quotas.get(REQUESTS), quotas.get(TOKENS))


def _name(member: str) -> str:
    return member.split(";")[0].strip().strip('"')


def _old_policy(policy: str) -> dict[str, str]:
    """Drafts 5-7: `100;w=60`, the quota as the bare item."""
    first = policy.split(",")[0]
    return {"q": first.partition(";")[0].strip(), **_params(first)} if first.strip() else {}


def _ietf_quota(state: dict[str, str], pol: dict[str, str], problems: list[str]) -> Quota | None:
    def num(table: dict[str, str], *keys: str) -> float | None:
        for key in keys:
            if key in table:
                try:
                    value = float(table[key])
                except ValueError:
                    value = math.nan
                if math.isfinite(value) and value >= 0:
                    return value
                problems.append(f"ratelimit {key}: {table[key][:40]!r} is not a number")
        return None

    limit = num(state, "limit")
    return _quota(limit if limit is not None else num(pol, "q"), num(state, "remaining", "r"),
                  num(state, "reset", "t"), num(pol, "w") or None)


def _ietf_separate(headers: Mapping[str, str], problems: list[str]) -> RateLimitInfo | None:
    # Drafts 0-4: `RateLimit-Limit: 100` or `100, 100;w=60` (the first number is the quota; a
    # policy member with the same quota may give its window as `w` or `window`).
    limit, window = None, None
    text = headers.get("ratelimit-limit")
    if text is not None:
        head = text.split(",")[0].partition(";")[0]
        limit = _number({"ratelimit-limit": head}, "ratelimit-limit", problems)
        for member in text.split(","):
            params = _params(member)
            found = params.get("w", params.get("window"))
            if found is not None and member.partition(";")[0].strip() == head.strip():
                window = parse_duration_s(found)
    remaining = _number(headers, "ratelimit-remaining", problems)
    reset = _checked(headers, "ratelimit-reset", parse_duration_s(headers.get("ratelimit-reset")), problems)
    quota = _quota(limit, remaining, reset, window or None)
    return None if quota is None else RateLimitInfo(IETF, requests=quota)
