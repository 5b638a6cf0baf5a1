"""Pure metrics: records -> summary dict. No printing, plotting, clock reads or I/O.

docs/metrics.md defines every figure; comments here say why a choice was made.
All times are seconds. Percentiles interpolate linearly between closest ranks
(numpy's default, `method="linear"`), the convention `vllm bench serve` reports.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from batchrun.store.records import CANCELLED, OK, SKIPPED, STATUSES, Record

PERCENTILES = (50, 90, 95, 99)
SLO_KEYS = ("ttft", "tpot", "e2e")
# p99 event-loop lag above this means the client was busy: a request's clock starts late or
# its chunks are read late, so measured latency includes client-side queueing.
LOOP_LAG_SATURATED_S = 0.020


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ascending values, linear between closest ranks."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


@dataclass(frozen=True, slots=True)
class Distribution:
    """Summary statistics of one figure; every field None (count 0) for no values."""

    count: int = 0
    mean: float | None = None
    std: float | None = None    # population std (ddof=0), as numpy and vllm bench serve report
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        xs = sorted(values)
        if not xs:
            return cls()
        n = len(xs)
        mean = math.fsum(xs) / n
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / n)
        p50, p90, p95, p99 = (percentile(xs, q) for q in PERCENTILES)
        return cls(n, mean, std, xs[0], p50, p90, p95, p99, xs[-1])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- per-request figures

def tpot(record: Record) -> float | None:
    """Time per output token after the first: (latency - ttft) / (completion_tokens - 1).

    None for fewer than 2 output tokens: with one token there is no decode time to share.
    """
    n = record.completion_tokens
    if n is None or n < 2 or record.latency_s is None or record.ttft_s is None:
        return None
    return (record.latency_s - record.ttft_s) / (n - 1)


def meets_slo(record: Record, slo: Mapping[str, float]) -> bool:
    """True when an ok record meets every bound in `slo` (inclusive); unknown values fail."""
    if record.status != OK:
        return False
    if "ttft" in slo and (record.ttft_s is None or record.ttft_s > slo["ttft"]):
        return False
    if "e2e" in slo and (record.latency_s is None or record.latency_s > slo["e2e"]):
        return False
    if "tpot" in slo:
        value = tpot(record)
        if value is None:
            # A 1-token answer has no decode phase and passes (vLLM counts its TPOT as 0);
            # an answer whose token count or timing is unknown cannot be shown to pass.
            return record.completion_tokens is not None and record.completion_tokens < 2 \
                and record.ttft_s is not None
        if value > slo["tpot"]:
            return False
    return True


# ---------------------------------------------------------------- SLO parsing

_SLO_ITEM = re.compile(r"^\s*([a-z0-9_]+)\s*=\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*$", re.IGNORECASE)


def parse_slo(text: str) -> dict[str, float]:
    """'ttft=500ms,tpot=50ms,e2e=10s' -> {'ttft': 0.5, 'tpot': 0.05, 'e2e': 10.0} (seconds)."""
    slo: dict[str, float] = {}
    for item in text.split(","):
        m = _SLO_ITEM.match(item)
        if not m:
            raise ValueError(f"bad SLO item {item.strip()!r}: write NAME=VALUE with a unit, "
                             f"e.g. ttft=500ms or e2e=10s (names: {', '.join(SLO_KEYS)})")
        name, value, unit = m.group(1).lower(), float(m.group(2)), m.group(3).lower()
        if name in slo:
            raise ValueError(f"SLO {name!r} is given twice")
        slo[name] = value / 1000 if unit == "ms" else value
    return check_slo(slo)


def check_slo(slo: Mapping[str, float]) -> dict[str, float]:
    """Validate an SLO mapping (names in SLO_KEYS, positive seconds) and return a copy."""
    unknown = sorted(set(slo) - set(SLO_KEYS))
    if unknown:
        raise ValueError(f"unknown SLO name(s) {', '.join(unknown)}; valid names: {', '.join(SLO_KEYS)}")
    for name, value in slo.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"SLO {name} must be a positive number of seconds, got {value!r}")
    if not slo:
        raise ValueError(f"empty SLO; give at least one of {', '.join(SLO_KEYS)}")
    return {k: float(v) for k, v in slo.items()}


# ---------------------------------------------------------------- timeline

def _intervals(records: Iterable[Record]) -> list[tuple[float, float]]:
    return [(r.sent_s, r.end_s) for r in records if r.sent_s is not None and r.end_s is not None]


def session_of(record: Record) -> int:
    """The 1-based session (first run, first resume, ...) a record was written in."""
    return record.session or 1


def _session_intervals(records: Iterable[Record]) -> dict[int, list[tuple[float, float]]]:
    """(sent, end) spans per session: each session's offsets count from its own start, so spans
    of two sessions must never be laid on one timeline."""
    spans: dict[int, list[tuple[float, float]]] = {}
    for r in records:
        if r.sent_s is not None and r.end_s is not None:
            spans.setdefault(session_of(r), []).append((r.sent_s, r.end_s))
    return spans


def in_flight_sessions(sessions: Mapping[int, list[tuple[float, float]]]) -> tuple[int, float | None]:
    """(peak, time-weighted mean) in flight over several sessions: the peak is the highest of any
    session; the mean is all busy time over the sum of the sessions' spans (Little's law per session,
    pooled), never over one timeline running from the first session's start to the last's end."""
    peak, busy, width = 0, 0.0, 0.0
    for spans in sessions.values():
        if not spans:
            continue
        peak = max(peak, max(count for _, count in in_flight_timeline_from(spans)))
        busy += math.fsum(e - s for s, e in spans)
        width += max(e for _, e in spans) - min(s for s, _ in spans)
    return peak, (busy / width if width > 0 else None)


def in_flight_timeline(records: Iterable[Record]) -> list[tuple[float, int]]:
    """Step function of requests in flight: (time, count from this time on), one per distinct time."""
    return in_flight_timeline_from(_intervals(records))


def in_flight(records: Iterable[Record]) -> tuple[int, float | None]:
    """(peak, time-weighted mean) requests in flight over [min sent_s, max end_s].

    The mean is sum(end - sent) / (max end - min sent): Little's law over the run's span.
    """
    spans = _intervals(records)
    if not spans:
        return 0, None
    peak = max(count for _, count in in_flight_timeline_from(spans))
    width = max(e for _, e in spans) - min(s for s, _ in spans)
    mean = math.fsum(e - s for s, e in spans) / width if width > 0 else None
    return peak, mean


def in_flight_timeline_from(spans: Iterable[tuple[float, float]]) -> list[tuple[float, int]]:
    """in_flight_timeline for bare (start, end) pairs.

    Each request occupies the half-open interval [start, end), so one ending at t and another
    starting at t never overlap: all events at one instant are applied before a step is emitted.
    """
    events = Counter[float]()
    for start, end in spans:
        events[start] += 1
        events[end] -= 1
    steps, count = [], 0
    for t in sorted(events):
        count += events[t]
        steps.append((t, count))
    return steps


def sessions_wall_time(records: Iterable[Record]) -> float | None:
    """wall_time per session, summed: a resumed run's time between sessions is not sending time."""
    spans = _session_intervals(records)
    if not spans:
        return None
    return math.fsum(max(e for _, e in s) - min(t for t, _ in s) for s in spans.values())


def wall_time(records: Iterable[Record]) -> float | None:
    """max(end_s) - min(sent_s) over records that were sent; None when nothing was sent."""
    spans = _intervals(records)
    if not spans:
        return None
    return max(e for _, e in spans) - min(s for s, _ in spans)


# ---------------------------------------------------------------- loop lag

def loop_lag(samples: Sequence[float] | None,
             threshold_s: float = LOOP_LAG_SATURATED_S) -> dict[str, Any] | None:
    """p50/p99/max of event-loop lag samples and whether the client was saturated."""
    if samples is None:
        return None
    dist = Distribution.of(samples)
    saturated = dist.p99 is not None and dist.p99 > threshold_s
    return {"count": dist.count, "p50_s": dist.p50, "p99_s": dist.p99, "max_s": dist.max,
            "threshold_s": threshold_s, "client_saturated": saturated}


# ---------------------------------------------------------------- summary

def _per_s(amount: float, seconds: float | None) -> float | None:
    return amount / seconds if seconds else None


def _sum(values: Iterable[int | None]) -> int:
    return sum(v for v in values if v is not None)


def _counts(records: list[Record]) -> dict[str, int]:
    by_status = Counter(r.status for r in records)
    counts = {status: by_status.get(status, 0) for status in STATUSES}
    counts.update({s: n for s, n in by_status.items() if s not in counts})
    counts["total"] = len(records)
    counts["attempted"] = len(records) - counts[SKIPPED]
    # An interrupted run: a cancelled request is neither a success nor a failure.
    sent = [r.status != SKIPPED and (r.attempts > 0 or r.sent_s is not None) for r in records]
    counts["sent"] = sum(sent)
    counts["never_sent"] = sum(1 for r, was in zip(records, sent) if r.status == CANCELLED and not was)
    counts["finished"] = counts["attempted"] - counts[CANCELLED]   # success-rate denominator
    return counts


class GapSample:
    """A uniform random sample of at most `capacity` ITL gaps (Algorithm R, seeded, so the same
    records in the same order always give the same sample), and how many gaps it has seen.

    Below the capacity it holds every gap, so the figures are exact; above it, a million-row run's
    ITL percentiles come from `capacity` gaps instead of hundreds of millions of floats in memory.
    """

    def __init__(self, capacity: int = 1_000_000, seed: int = 0) -> None:
        self.capacity, self.seen, self.values = capacity, 0, []
        self._rng = random.Random(seed)

    def add(self, gaps: Iterable[float]) -> None:
        for gap in gaps:
            self.seen += 1
            if len(self.values) < self.capacity:
                self.values.append(gap)
            else:
                slot = self._rng.randrange(self.seen)
                if slot < self.capacity:
                    self.values[slot] = gap


def _distributions(ok: list[Record], sent: list[Record],
                   itl_sample: GapSample | None = None) -> dict[str, dict[str, Any]]:
    if itl_sample is None:
        itl = Distribution.of(gap for r in ok for gap in r.itl_s).to_dict()
    else:
        itl = Distribution.of(itl_sample.values).to_dict()
        itl["population"] = itl_sample.seen        # == count unless the gaps were sampled
    itl["zero_share"] = zero_share(itl_sample.values if itl_sample is not None else
                                   [gap for r in ok for gap in r.itl_s])
    return {
        "latency_s": Distribution.of(r.latency_s for r in ok if r.latency_s is not None).to_dict(),
        "e2el_s": Distribution.of(r.total_s for r in ok if r.total_s is not None).to_dict(),
        "ttft_s": Distribution.of(r.ttft_s for r in ok if r.ttft_s is not None).to_dict(),
        "ttfo_s": Distribution.of(r.ttfo_s for r in ok if r.ttfo_s is not None).to_dict(),
        "total_s": Distribution.of(r.total_s for r in ok if r.total_s is not None).to_dict(),
        "itl_s": itl,
        "tpot_s": Distribution.of(t for t in map(tpot, ok) if t is not None).to_dict(),
        "queue_wait_s": Distribution.of(r.queue_wait_s for r in sent).to_dict(),
    }


def zero_share(gaps: Sequence[float]) -> float | None:
    """Share of ITL gaps that are exactly 0: chunks that arrived in one network read."""
    return sum(1 for g in gaps if g == 0) / len(gaps) if gaps else None


def schedule_figures(sent: list[Record]) -> dict[str, Any] | None:
    """Open-loop runs: how late each request left against its planned time, and TTFT and latency
    measured from the planned time (so a client that fell behind cannot hide it: no coordinated
    omission). None when no record has a planned send time."""
    planned = [r for r in sent if r.scheduled_s is not None and r.sent_s is not None]
    if not planned:
        return None
    ok = [r for r in planned if r.status == OK]
    return {"send_lag_s": Distribution.of(max(0.0, r.sent_s - r.scheduled_s) for r in planned).to_dict(),
            "ttft_s": Distribution.of(r.sent_s - r.scheduled_s + r.ttft_s for r in ok if r.ttft_s is not None).to_dict(),
            "latency_s": Distribution.of(r.sent_s - r.scheduled_s + r.latency_s
                                         for r in ok if r.latency_s is not None).to_dict()}


# The client is behind its schedule when requests leave this late (p99) against their planned time.
SCHEDULE_LAG_S = 0.010


def _tool_stats(records: list[Record]) -> dict[str, Any]:
    """Tool-calling rows: calls, calls whose arguments failed their schema, rounds per row,
    tool outcomes, and the TTFT of the first round beside that of the final answer."""
    with_calls = [r for r in records if r.tool_calls]
    multi = [r for r in records if r.rounds and len(r.rounds) > 1 and r.status == OK]
    outcomes = Counter(t["status"] for r in records for rnd in r.rounds or [] for t in rnd.get("tool_results") or [])
    return {"records_with_tool_calls": len(with_calls),
            "tool_calls": sum(len(r.tool_calls or []) for r in with_calls),
            "invalid_arguments": sum(1 for r in with_calls for c in r.tool_calls or [] if c.get("valid") is False),
            "tool_results": dict(outcomes),
            "rounds": Distribution.of(len(r.rounds) for r in records if r.rounds is not None).to_dict(),
            "first_round_ttft_s": Distribution.of(r.rounds[0]["ttft_s"] for r in multi
                                                  if r.rounds[0]["ttft_s"] is not None).to_dict(),
            "final_answer_ttft_s": Distribution.of(r.rounds[-1]["ttft_s"] for r in multi
                                                   if r.rounds[-1]["ttft_s"] is not None).to_dict()}


def _goodput(ok: list[Record], slo: dict[str, float] | None, wall: float | None) -> dict[str, Any] | None:
    if slo is None:
        return None
    good = sum(meets_slo(r, slo) for r in ok)
    return {"slo": slo, "requests": good, "requests_per_s": _per_s(good, wall)}


def batch_jobs(records: Iterable[Record]) -> dict[str, Any] | None:
    """Batch API rows: how many jobs and rows, and each job's turnaround (ended_at - created_at,
    whole seconds as the API gives them). None when no record came from a Batch API job."""
    jobs: dict[str, tuple[int | None, int | None]] = {}
    rows = 0
    for r in records:
        if r.batch_id:
            rows += 1
            jobs[r.batch_id] = (r.batch_created_at, r.batch_completed_at)
    if not jobs:
        return None
    times = [(c, e) for c, e in jobs.values() if c is not None and e is not None]
    return {"jobs": len(jobs), "requests": rows,
            "turnaround_s": Distribution.of(float(e - c) for c, e in times).to_dict(),
            "first_created_at": min((c for c, _ in times), default=None),
            "last_ended_at": max((e for _, e in times), default=None)}


def summary_warnings(summary: Mapping[str, Any]) -> list[str]:
    """Plain-language warnings for a summary (client saturation, no successes, estimated tokens)."""
    out = []
    lag = summary["loop_lag"]
    if lag and lag["client_saturated"]:
        out.append(f"client saturated: event-loop lag p99 {lag['p99_s'] * 1000:.0f} ms > "
                   f"{lag['threshold_s'] * 1000:.0f} ms, so latency figures include client-side "
                   "queueing (lower the concurrency or use more client processes)")
    itl_p50 = (summary.get("itl_s") or {}).get("p50")
    if lag and not lag["client_saturated"] and itl_p50 and lag["p99_s"] is not None and lag["p99_s"] > itl_p50 / 2:
        out.append(f"event-loop lag p99 {lag['p99_s'] * 1000:.1f} ms is large against the median ITL "
                   f"{itl_p50 * 1000:.1f} ms: gaps between chunks include client-side delay")
    sched = summary.get("schedule")
    if sched and sched["send_lag_s"]["p99"] is not None and sched["send_lag_s"]["p99"] > SCHEDULE_LAG_S:
        out.append(f"the client fell behind the arrival schedule: requests left up to "
                   f"{sched['send_lag_s']['p99'] * 1000:.0f} ms late (p99); schedule.ttft_s and "
                   "schedule.latency_s count that wait")
    if summary["counts"]["attempted"] and not summary["counts"][OK]:
        out.append("no request succeeded: latency figures are empty")
    internal = summary["by_error_type"].get("InternalError")
    if internal:
        out.append(f"{internal} row(s) hit an internal error of batchrun (a bug, not the endpoint's "
                   "failure): the tracebacks are in internal-errors.log; please report them")
    if summary["tokens"]["estimated_records"]:
        out.append(f"{summary['tokens']['estimated_records']} ok record(s) have estimated token counts "
                   "(the server sent no usage): token figures are approximate")
    return out


def summarize(records: Iterable[Record], *, wall_time_s: float | None = None,
              slo: Mapping[str, float] | None = None,
              loop_lag_s: Sequence[float] | None = None,
              itl_sample: GapSample | None = None) -> dict[str, Any]:
    """Every run-level figure of the README's Metrics section as a JSON-ready dict.

    `itl_sample`: the ok records' ITL gaps, gathered (and for huge runs sampled) by the caller,
    whose records then need not carry them."""
    recs = list(records)
    ok = [r for r in recs if r.status == OK]
    sent = [r for r in recs if r.status != SKIPPED and r.sent_s is not None]
    if wall_time_s is not None and not wall_time_s > 0:
        raise ValueError(f"wall_time_s must be positive, got {wall_time_s!r}")
    wall = wall_time_s if wall_time_s is not None else sessions_wall_time(sent)
    slo_checked = check_slo(slo) if slo is not None else None
    counts = _counts(recs)
    peak, mean_in_flight = in_flight_sessions(_session_intervals(sent))
    prompt_tokens, completion_tokens = _sum(r.prompt_tokens for r in ok), _sum(r.completion_tokens for r in ok)
    summary: dict[str, Any] = {
        "counts": counts,
        "success_rate": counts[OK] / counts["finished"] if counts["finished"] else None,
        "by_error_type": dict(Counter(r.error_type or r.status for r in recs
                                      if r.status not in (OK, SKIPPED))),
        "by_finish_reason": dict(Counter(r.finish_reason or "unknown" for r in ok)),
        **_distributions(ok, sent, itl_sample),
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens,
                   "estimated_records": sum(r.tokens_estimated for r in ok)},
        "wall_time_s": wall,
        "wall_time_source": "given" if wall_time_s is not None else "records",
        "throughput": {"requests_per_s": _per_s(len(ok), wall),
                       "output_tokens_per_s": _per_s(completion_tokens, wall),
                       "total_tokens_per_s": _per_s(prompt_tokens + completion_tokens, wall)},
        "in_flight": {"peak": peak, "mean": mean_in_flight},
        "goodput": _goodput(ok, slo_checked, wall),
        "schedule": schedule_figures(sent),
        "tool_calls": _tool_stats(recs),
        "loop_lag": loop_lag(loop_lag_s),
        "batch": batch_jobs(recs),
    }
    summary["warnings"] = summary_warnings(summary)
    return summary


# ---------------------------------------------------------------- repeats and bench curves

# Two-sided 95% Student's t quantiles t(0.975, df) for df = 1..30 (standard table values).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964


def t975(df: int) -> float:
    """t(0.975, df): the table up to df 30, then a Cornish-Fisher expansion (error < 0.001)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci95(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high): 95% CI of the mean, mean ± t(0.975, n-1) · s / √n with sample std s.

    One value has no interval: (value, None, None). No values: (None, None, None).
    """
    n = len(values)
    if n == 0:
        return None, None, None
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None, None
    s = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * s / math.sqrt(n)
    return mean, mean - half, mean + half


class BenchPoint(NamedTuple):
    """One concurrency level of a bench (pooled over repeats)."""

    concurrency: int
    throughput: float | None        # ok requests per second
    p99_latency_s: float | None
    p99_ttft_s: float | None
    throughput_low: float | None = None     # 95% interval of the throughput, when known
    throughput_high: float | None = None


def _within(value: float | None, bound: float | None) -> bool:
    return bound is None or (value is not None and value <= bound)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def recommend(points: Iterable[BenchPoint | tuple], slo: Mapping[str, float] | None = None,
              factor: float = 2.0) -> tuple[int | None, dict[int, str]]:
    """(recommended concurrency, why each other level lost).

    A level qualifies when its p99 latency and p99 TTFT stay within bounds: slo["e2e"] and
    slo["ttft"] when an SLO is given (a missing key leaves that figure free), else `factor` x the
    values at the lowest concurrency. Among qualifying levels, the recommendation is the
    **smallest** concurrency whose throughput is within noise of the best: its throughput (or its
    interval's upper end) reaches the lower end of the best level's 95% interval (the best's own
    value when no interval is known). None when no level qualifies.
    """
    pts = sorted((BenchPoint(*p) for p in points), key=lambda p: p.concurrency)
    reasons: dict[int, str] = {}
    if not pts:
        return None, reasons
    if slo is not None:
        lat_bound, ttft_bound = slo.get("e2e"), slo.get("ttft")
    else:
        base = pts[0]
        lat_bound = factor * base.p99_latency_s if base.p99_latency_s is not None else None
        ttft_bound = factor * base.p99_ttft_s if base.p99_ttft_s is not None else None
    ok = []
    for p in pts:
        if p.throughput is None:
            reasons[p.concurrency] = "no request succeeded"
        elif not _within(p.p99_latency_s, lat_bound):
            reasons[p.concurrency] = f"p99 latency {_ms(p.p99_latency_s or 0)} is over the bound {_ms(lat_bound)}"
        elif not _within(p.p99_ttft_s, ttft_bound):
            reasons[p.concurrency] = f"p99 TTFT {_ms(p.p99_ttft_s or 0)} is over the bound {_ms(ttft_bound)}"
        else:
            ok.append(p)
    if not ok:
        return None, reasons
    best = max(ok, key=lambda p: p.throughput)
    floor = best.throughput_low if best.throughput_low is not None else best.throughput
    near = [p for p in ok if (p.throughput_high if p.throughput_high is not None else p.throughput) >= floor]
    choice = min(p.concurrency for p in near)
    for p in ok:
        if p.concurrency == choice:
            continue
        if p in near:
            reasons[p.concurrency] = (f"throughput {p.throughput:.2f} req/s is within noise of the best, "
                                      f"but concurrency {choice} gets there with fewer requests in flight")
        else:
            reasons[p.concurrency] = (f"throughput {p.throughput:.2f} req/s is below the best level's "
                                      f"(c={best.concurrency}, {best.throughput:.2f} req/s, 95% interval "
                                      f"from {floor:.2f})")
    return choice, reasons


def recommend_concurrency(points: Iterable[BenchPoint | tuple], slo: Mapping[str, float] | None = None,
                          factor: float = 2.0) -> int | None:
    """The recommended concurrency of `recommend` (without the reasons)."""
    return recommend(points, slo, factor)[0]


def plateau_concurrency(points: Iterable[BenchPoint | tuple], gain: float = 0.1) -> int | None:
    """The first concurrency after which doubling raises throughput by less than `gain` (10%).

    Consecutive points are compared; when they are not exactly 2x apart the gain is scaled to
    one doubling: (thr2 / thr1) ** (1 / log2(c2 / c1)) - 1. None while throughput keeps growing.
    """
    pts = sorted((BenchPoint(*p) for p in points), key=lambda p: p.concurrency)
    for a, b in zip(pts, pts[1:]):
        if a.throughput is None or b.throughput is None or b.concurrency <= a.concurrency:
            continue
        if a.throughput <= 0:
            continue  # nothing succeeded yet at a: no growth rate to speak of
        doublings = math.log2(b.concurrency / a.concurrency)
        per_doubling = (max(b.throughput, 0.0) / a.throughput) ** (1 / doublings) - 1
        if per_doubling < gain:
            return a.concurrency
    return None
