"""A prefix cache like vLLM's automatic prefix caching: prompts are split into blocks of
BLOCK_TOKENS tokens (BLOCK_TOKENS * 4 characters), each block keyed by the hash of everything up
to its end; a request whose leading blocks are cached skips their prefill. Least recently used
blocks are evicted past `capacity_tokens`. At least one prompt token is always computed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Iterable

from batchrun.sim.model import CHARS_PER_TOKEN, message_text

BLOCK_TOKENS = 16
BLOCK_CHARS = BLOCK_TOKENS * CHARS_PER_TOKEN


class PrefixCache:
    def __init__(self, capacity_tokens: int) -> None:
        self.capacity_blocks = capacity_tokens // BLOCK_TOKENS
        self._blocks: OrderedDict[bytes, None] = OrderedDict()
        self.hit_tokens = 0  # cached prompt tokens served, over all requests

    def admit(self, text: str, prompt_tokens: int) -> int:
        """Cached tokens for this prompt (before it is inserted); inserts its blocks."""
        if self.capacity_blocks <= 0:
            return 0
        matched, still_matching = 0, True
        h = hashlib.blake2b(digest_size=16)
        for i in range(len(text) // BLOCK_CHARS):
            h.update(text[i * BLOCK_CHARS : (i + 1) * BLOCK_CHARS].encode())
            key = h.copy().digest()
            if still_matching and key in self._blocks:
                matched += 1
                self._blocks.move_to_end(key)
                continue
            still_matching = False
            self._blocks[key] = None
            if len(self._blocks) > self.capacity_blocks:
                self._blocks.popitem(last=False)
        cached = max(0, min(matched * BLOCK_TOKENS, prompt_tokens - 1))
        self.hit_tokens += cached
        return cached


def chat_prefix_text(messages: Iterable[Any]) -> str:
    """The text a chat template would feed the model, close enough for prefix matching."""
    return "".join(f"<{m.get('role', '')}>{message_text(m)}" if isinstance(m, dict) else "" for m in messages)


def apply_cache(cache: PrefixCache, plan: Any, prefill_s_per_token: float, text: str) -> None:
    """Look the prompt up, record its cached tokens on the plan, and take their prefill off its
    TTFT. Only a queued plan follows the latency model (fast, fixed and [[sim:ttft]] are exact)."""
    plan.cached_tokens = cache.admit(text, plan.prompt_tokens)
    if plan.queued:
        plan.ttft_s = max(0.0, plan.ttft_s - prefill_s_per_token * plan.cached_tokens)
