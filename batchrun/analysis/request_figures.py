"""One request's own figures: TPOT, and whether it meets an SLO (the SLO itself is an option's value:
values.py reads it).

Each figure is a function of plain values, so a Record and a row of Columns (where an unknown
time is NaN and an unknown count is -1) go through the same arithmetic.
"""

from __future__ import annotations

from typing import Mapping, TypeGuard

from batchrun.store.records import OK, Record


def _known(value: float | None) -> TypeGuard[float]:
    """Not None and not NaN (Columns' mark for a missing time)."""
    return value is not None and value == value


def tpot_of(latency_s: float | None, ttft_s: float | None, completion_tokens: int | None) -> float | None:
    """Time per output token after the first: (latency - ttft) / (completion_tokens - 1).

    None for fewer than 2 output tokens (with one token there is no decode time to share), and
    when a time or the count is unknown.
    """
    n = completion_tokens
    if n is None or n < 2 or not (_known(latency_s) and _known(ttft_s)):
        return None
    return (latency_s - ttft_s) / (n - 1)


def tpot(record: Record) -> float | None:
    """tpot_of a record's latency, TTFT and completion tokens."""
    return tpot_of(record.latency_s, record.ttft_s, record.completion_tokens)


def meets_bounds(
    slo: Mapping[str, float], ttft_s: float | None, latency_s: float | None, completion_tokens: int | None
) -> bool:
    """True when one ok request's figures meet every bound in `slo` (inclusive); an unknown
    value fails its bound."""
    if "ttft" in slo and not (_known(ttft_s) and ttft_s <= slo["ttft"]):
        return False
    if "e2e" in slo and not (_known(latency_s) and latency_s <= slo["e2e"]):
        return False
    if "tpot" in slo:
        value = tpot_of(latency_s, ttft_s, completion_tokens)
        if value is None:
            # A 1-token answer has no decode phase and passes (vLLM counts its TPOT as 0);
            # an answer whose token count or timing is unknown cannot be shown to pass.
            n = completion_tokens
            return n is not None and 0 <= n < 2 and _known(ttft_s)
        if value > slo["tpot"]:
            return False
    return True


def meets_slo(record: Record, slo: Mapping[str, float]) -> bool:
    """True when an ok record meets every bound in `slo` (meets_bounds); any other status fails."""
    return record.status == OK and meets_bounds(slo, record.ttft_s, record.latency_s, record.completion_tokens)
