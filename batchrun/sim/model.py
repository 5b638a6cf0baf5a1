"""The pure part of the simulation: seeded randomness, token counts and the latency model.

Nothing here reads a clock or touches a socket, so every formula is tested on literal inputs.

Latency model (default mode):
    TTFT  = queue wait + ttft_s * J + prefill_s_per_token * prompt_tokens
    ITL_k = itl_s * (1 + itl_load_factor * (decoding - 1)) * J_k
where J, J_k are lognormal(0, jitter) factors drawn from the request's own RNG, `decoding` is the
number of sequences holding a slot when the gap starts, and the queue wait is the FIFO wait for one
of max_concurrency slots. Fixed mode: TTFT = fixed_ttft_s, ITL = fixed_itl_s. Fast mode: all zero.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any, Iterable

from batchrun.sim.config import SimConfig

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English with BPE tokenizers


def request_key(seed: int, messages: Any, tools: Any = None, request_seed: int | None = None) -> bytes:
    """A digest of what decides the answer; independent of arrival order and of other requests.
    A request's own `seed` joins the key: same seed, same text; another seed, another text."""
    parts = [seed, messages, tools] if request_seed is None else [seed, messages, tools, request_seed]
    canon = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canon.encode(), digest_size=16).digest()


def rng_for(key: bytes, purpose: str, attempt: int = 0) -> random.Random:
    """An independent RNG per (request, purpose, attempt): text stays the same across retries
    while fault and jitter rolls differ, so a retried request can succeed."""
    h = hashlib.blake2b(key, digest_size=8, person=purpose.encode()[:16])
    h.update(attempt.to_bytes(4, "little"))
    return random.Random(int.from_bytes(h.digest(), "little"))


def message_text(message: Any) -> str:
    """The text of one chat message: a string, or the text parts of a content list."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def estimate_prompt_tokens(messages: Iterable[Any], chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """ceil(characters / chars_per_token) over every message's text, at least 1."""
    chars = sum(len(message_text(m)) for m in messages)
    return max(1, math.ceil(chars / chars_per_token))


def sample_output_tokens(rng: random.Random, cfg: SimConfig) -> int:
    """The answer's natural length (before max_tokens): fixed, or lognormal with the configured mean."""
    if cfg.output_tokens is not None:
        return cfg.output_tokens
    sigma = cfg.output_tokens_sigma
    mu = math.log(cfg.output_tokens_mean) - sigma * sigma / 2  # so that the mean is output_tokens_mean
    return max(1, round(rng.lognormvariate(mu, sigma)))


def jitter_factors(rng: random.Random, cfg: SimConfig, n: int) -> list[float]:
    """n multiplicative jitter factors; all 1.0 in fixed and fast modes."""
    if cfg.fast or cfg.fixed or cfg.jitter == 0:
        return [1.0] * n
    return [rng.lognormvariate(0.0, cfg.jitter) for _ in range(n)]


def ttft_s(cfg: SimConfig, prompt_tokens: int, jitter: float = 1.0) -> float:
    """Seconds from getting a slot to the first token (the queue wait comes on top)."""
    if cfg.fast:
        return 0.0
    if cfg.fixed:
        return cfg.fixed_ttft_s or 0.0
    return cfg.ttft_s * jitter + cfg.prefill_s_per_token * prompt_tokens


def itl_s(cfg: SimConfig, decoding: int, jitter: float = 1.0) -> float:
    """Seconds between two tokens while `decoding` sequences share the engine (batching slowdown)."""
    if cfg.fast:
        return 0.0
    if cfg.fixed:
        return cfg.fixed_itl_s or 0.0
    return cfg.itl_s * (1.0 + cfg.itl_load_factor * max(0, decoding - 1)) * jitter


def expected_queue_wait_s(cfg: SimConfig, in_flight: int, service_s: float) -> float:
    """Expected FIFO wait for a request arriving while `in_flight` requests hold or await a slot.

    With every slot busy, one frees about every service_s / max_concurrency seconds, so the wait
    grows linearly with the queue depth: the plateau-then-rise a concurrency sweep shows.
    """
    ahead = in_flight - cfg.max_concurrency
    if cfg.fast or cfg.fixed or ahead < 0:
        return 0.0
    return (ahead + 1) * service_s / cfg.max_concurrency


def format_duration(seconds: float) -> str:
    """OpenAI's rate-limit reset format: '20ms', '1s', '2.5s', '6m0s', '1h2m3s'."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{round(secs, 3):g}s"
    if hours >= 1:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes >= 1:
        return f"{int(minutes)}m{text}"
    return text
