"""Output length and text rules a real server applies: max_tokens, ignore_eos, min_tokens, stop
sequences and logprobs (pure: seeded RNGs in, lists out).

    length: ignore_eos -> exactly max_tokens (or the natural length when there is none);
            otherwise max(natural, min_tokens), capped by max_tokens.
    stop:   the text ends just before the first stop sequence that begins after the first
            min_tokens tokens; the stop sequence itself is not returned (OpenAI, vLLM).
"""

from __future__ import annotations

import random
from typing import Any

from batchrun.sim.model import rng_for
from batchrun.sim.text import WORDS


def output_length(
    natural: int, cap: int | None, ignore_eos: bool = False, min_tokens: int | None = None
) -> tuple[int, str]:
    """(tokens to generate, finish_reason) before any stop sequence."""
    target = (cap or natural) if ignore_eos else max(natural, min_tokens or 0)
    if cap is not None and target >= cap and (ignore_eos or target > cap):
        return cap, "length"
    return target, "stop"


def apply_stop(tokens: list[str], stops: list[str], min_tokens: int = 0) -> tuple[list[str], bool]:
    """Cut the tokens before the earliest stop sequence starting at or after token `min_tokens`;
    (tokens kept, whether a stop sequence was found). A token cut in the middle keeps its head."""
    if not stops or not tokens:
        return tokens, False
    text = "".join(tokens)
    start = sum(len(t) for t in tokens[:min_tokens])
    hits = [p for p in (text.find(s, start) for s in stops) if p >= 0]
    if not hits:
        return tokens, False
    cut = min(hits)
    kept: list[str] = []
    pos = 0
    for token in tokens:
        if pos + len(token) <= cut:
            kept.append(token)
            pos += len(token)
            continue
        if cut > pos:
            kept.append(token[: cut - pos])
        break
    return kept, True


def token_logprobs(rng: random.Random, tokens: list[str], top: int) -> list[tuple[float, list[tuple[str, float]]]]:
    """Per token: its logprob and `top` alternatives (itself first, most likely first)."""
    out = []
    for token in tokens:
        lp = -round(abs(rng.gauss(0.0, 0.8)), 6)
        alts = [(token, lp)]
        for k in range(1, top):
            alt = " " + WORDS[rng.randrange(len(WORDS))]
            alts.append((alt, round(lp - k * (0.5 + rng.random()), 6)))
        out.append((lp, alts[:top] if top else []))
    return out


def chat_logprob_entry(token: str, lp: float, alts: list[tuple[str, float]]) -> dict[str, Any]:
    """One element of a chat choice's `logprobs.content`."""
    return {
        "token": token,
        "logprob": lp,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in alts],
    }


def completion_logprobs(
    tokens: list[str], lps: list[tuple[float, list[tuple[str, float]]]], offset: int = 0
) -> dict[str, Any]:
    """A completions choice's `logprobs`: tokens, token_logprobs, top_logprobs, text_offset."""
    offsets, pos = [], offset
    for token in tokens:
        offsets.append(pos)
        pos += len(token)
    return {
        "tokens": list(tokens),
        "token_logprobs": [lp for lp, _ in lps],
        "top_logprobs": [dict(alts) for _, alts in lps],
        "text_offset": offsets,
    }


def plan_logprobs(key: bytes, tokens: list[str], top: int) -> list[tuple[float, list[tuple[str, float]]]]:
    """The logprobs of a plan's tokens, from the request's own RNG (same request, same numbers)."""
    return token_logprobs(rng_for(key, "logprobs"), tokens, top)
