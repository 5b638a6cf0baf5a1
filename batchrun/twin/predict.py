"""What a twin serves, drawn without a server: per level, requests like the measured ones (their
prompt lengths and max_tokens resampled) played through the same draws the server makes, at that
level's requests in flight. Pure and seeded: the report compares these with the records.

    TTFT          = the twin's draw + the client's own delay (a draw of the level's lag_s)
    latency       = TTFT + the sum of the gaps between the answer's chunks
    chunks        = ceil(output tokens / tokens_per_chunk)   (as the server streams them)
    throughput(x) = x / (s * mean latency at x)      (Little's law for x requests kept in flight;
                                                      s = the share of requests the twin answers,
                                                      its failures taken as instant)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Sequence

from batchrun.sim.planner import content_chunk_count
from batchrun.store.records import Record
from batchrun.twin.fit import Observed
from batchrun.twin.model import TwinModel

DRAWS = 2000  # requests drawn per level


@dataclass
class Draws:
    """Seconds per drawn request (ttft_s, latency_s) and per gap (itl_s)."""

    ttft_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    itl_s: list[float] = field(default_factory=list)


def request_cap(record: Record) -> int | None:
    """The max_tokens the saved request asked for (max_completion_tokens first, as the server reads it)."""
    body = record.request or {}
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    return cap if isinstance(cap, int) and not isinstance(cap, bool) else None


def draw_level(twin: TwinModel, like: Sequence[Observed], in_flight: float, n: int = DRAWS, seed: int = 0) -> Draws:
    """`n` requests drawn as the twin serves them at `in_flight`, shaped like the records `like`."""
    rng = random.Random(seed)
    out = Draws()
    per_chunk = twin.wire.tokens_per_chunk
    for _ in range(n):
        record = like[rng.randrange(len(like))].record
        prompt = twin.prompt.ref_tokens if record.prompt_tokens is None else record.prompt_tokens
        u_ttft = rng.random()
        # What a client measures: what the twin serves, plus the client's own delay (twin/lag.py).
        ttft = twin.ttft_s(in_flight, u_ttft, prompt) + twin.client_lag_s(in_flight, rng.random())
        cap = request_cap(record)
        tokens = twin.answer_tokens(rng.random(), cap)
        tokens = min(tokens, cap) if cap else tokens
        u_request = twin.mean_gap_rank(in_flight, u_ttft, rng.random())
        ranks = [rng.random() for _ in range(content_chunk_count(tokens, per_chunk, rng.random()) - 1)]
        scale = twin.ratio_mean(in_flight, ranks)
        gaps = [twin.gap_s(in_flight, u_request, u, scale) for u in ranks]
        out.ttft_s.append(ttft)
        out.latency_s.append(ttft + math.fsum(gaps))
        out.itl_s += gaps
    return out


def answered_share(twin: TwinModel) -> float:
    """The share of attempts the twin answers (1 minus its served failure shares)."""
    return 1.0 - sum(twin.failures.share(f) for f in twin.failures.kinds if f.served)


def throughput(in_flight: float, latencies: Sequence[float], answered: float) -> float | None:
    """Requests per second with `in_flight` kept in flight (the module docstring's formula)."""
    if not latencies or answered <= 0:
        return None
    mean = math.fsum(latencies) / len(latencies)
    return in_flight / (answered * mean) if mean > 0 else None
