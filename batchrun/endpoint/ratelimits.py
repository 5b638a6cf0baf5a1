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

A value that cannot be read, or that no real limit could be (see MOST_PER_MIN), is left out and
named in the returned problems (the caller warns once per header name); it never fails a request,
is never paced by and never reaches a report. Times parse with `endpoint.hints`.
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
_MINUTE_S = 60.0

# Beyond these a header's figure is broken or hostile, not a limit (`1e300` would otherwise be
# advised as a 300-digit --rpm, and `1e-300` would hold the run forever). The highest per-key limits
# providers publish are ~3e4 requests and ~1.5e8 tokens a minute (OpenAI's top tier); the bounds
# leave four orders of magnitude above them. A limit is a count: at least 1 per window.
MOST_PER_MIN = {REQUESTS: 1e9, TOKENS: 1e12}
LONGEST_S = 31 * 86_400.0  # a reset or window past a month is no rate limit's
SHORTEST_WINDOW_S = 0.001


@dataclass(frozen=True, slots=True)
class Quota:
    """One limit as a response reported it; None where the response did not say."""

    limit: float | None = None  # units per window
    remaining: float | None = None  # units left now
    reset_s: float | None = None  # seconds from the response until the limit is whole again
    window_s: float | None = None  # the policy's window when stated (IETF `w`); else per minute


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


def _quota(
    kind: str,
    names: tuple[str, ...],
    problems: list[str],
    limit: float | None,
    remaining: float | None,
    reset_s: float | None,
    window_s: float | None = None,
) -> Quota | None:
    """The quota of one kind, its figures within MOST_PER_MIN / LONGEST_S; `names` are the
    (limit, remaining, reset, window) headers, for the problem lines of figures left out."""

    def out_of_range(name: str, value: float, bound: str) -> None:
        problems.append(f"{name}: {value:.3g} is out of range ({bound}), not a real limit")

    if window_s is not None and not SHORTEST_WINDOW_S <= window_s <= LONGEST_S:
        out_of_range(names[3], window_s, f"a window is {SHORTEST_WINDOW_S:g} s to 31 days")
        limit, window_s = None, None
    window_min = (window_s or _MINUTE_S) / _MINUTE_S
    most = MOST_PER_MIN[kind] * window_min
    if limit is not None and not 1 <= limit <= most:
        out_of_range(names[0], limit, f"{kind} limits are 1 to {MOST_PER_MIN[kind]:.0e} a minute")
        limit = None
    if remaining is not None and remaining > most:
        out_of_range(names[1], remaining, f"at most {MOST_PER_MIN[kind]:.0e} {kind} a minute")
        remaining = None
    if reset_s is not None and reset_s > LONGEST_S:
        out_of_range(names[2], reset_s, "a reset is at most 31 days away")
        reset_s = None
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
        names = (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", name)
        quotas[kind] = _quota(kind, names, problems, limit, remaining, reset)
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
        names = (f"{base}-limit", f"{base}-remaining", f"{base}-reset")
        quotas[kind] = _quota(
            kind, names, problems, limit, remaining, None if moment is None else max(0.0, moment - now_s)
        )
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
    if field is not None and ";" not in field:  # drafts 5-7: one dictionary
        state = {k: v for member in field.split(",") for k, v in _params(member).items()}
        quota = _ietf_quota(REQUESTS, state, _old_policy(policy or ""), problems)
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
            quotas[kind] = _ietf_quota(kind, states.get(_name(member), {}), pol, problems)
    if policy is None and len(states) == 1:  # state without a policy: requests
        quotas[REQUESTS] = _ietf_quota(REQUESTS, next(iter(states.values())), {}, problems)
    if not any(quotas.values()):
        return None
    return RateLimitInfo(IETF, quotas.get(REQUESTS), quotas.get(TOKENS))


def _name(member: str) -> str:
    return member.split(";")[0].strip().strip('"')


def _old_policy(policy: str) -> dict[str, str]:
    """Drafts 5-7: `100;w=60`, the quota as the bare item."""
    first = policy.split(",")[0]
    return {"q": first.partition(";")[0].strip(), **_params(first)} if first.strip() else {}


def _ietf_quota(kind: str, state: dict[str, str], pol: dict[str, str], problems: list[str]) -> Quota | None:
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
    return _quota(
        kind,
        ("ratelimit limit", "ratelimit remaining", "ratelimit reset", "ratelimit-policy w"),
        problems,
        limit if limit is not None else num(pol, "q"),
        num(state, "remaining", "r"),
        num(state, "reset", "t"),
        num(pol, "w") or None,
    )


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
    quota = _quota(
        REQUESTS,
        ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-limit w"),
        problems,
        limit,
        remaining,
        reset,
        window or None,
    )
    return None if quota is None else RateLimitInfo(IETF, requests=quota)
