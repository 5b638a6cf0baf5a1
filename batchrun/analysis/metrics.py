"""Pure metrics: records -> summary dict. No printing, plotting, clock reads or I/O.

docs/metrics.md defines every figure; comments here say why a choice was made.
All times are seconds. Percentiles interpolate linearly between closest ranks
(numpy's default, `method="linear"`), the convention `vllm bench serve` reports.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from array import array

from batchrun.analysis.columns import Columns, ColumnsBuilder, iter_present
from batchrun.store.records import CANCELLED, OK, SKIPPED, STATUSES, Record
from batchrun.values import check_slo

PERCENTILES = (50, 90, 95, 99)
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
    pairs = list(spans)
    return list(_steps(sorted(s for s, _ in pairs), sorted(e for _, e in pairs)))


def _steps(starts: Sequence[float], ends: Sequence[float]) -> Iterator[tuple[float, int]]:
    """The in-flight step function of sorted start and end times, one step per distinct time,
    made by merging the two (no table of every instant: a million-row run stays small)."""
    i = j = count = 0
    n, m = len(starts), len(ends)
    while i < n or j < m:
        t = starts[i] if j >= m or (i < n and starts[i] <= ends[j]) else ends[j]
        while i < n and starts[i] == t:
            count += 1
            i += 1
        while j < m and ends[j] == t:
            count -= 1
            j += 1
        yield t, count


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


def _sent_mask(cols: Columns, skipped: int) -> bytes:
    """Records that were sent: not skipped, and attempted or given a send time."""
    return bytes(s != skipped and (a > 0 or t == t)
                 for s, a, t in zip(cols.column("status"), cols.column("attempts"), cols.column("sent_s")))


def _counts(cols: Columns, sent: bytes) -> dict[str, int]:
    status, names = cols.column("status"), cols.labels_table("status")
    by_status = {names[code]: n for code, n in Counter(status).items()}
    counts = {s: by_status.get(s, 0) for s in STATUSES}
    counts.update({s: n for s, n in by_status.items() if s not in counts})
    counts["total"] = cols.n
    counts["attempted"] = cols.n - counts[SKIPPED]
    # An interrupted run: a cancelled request is neither a success nor a failure.
    counts["sent"] = sum(sent)
    cancelled = cols.label_code("status", CANCELLED)
    counts["never_sent"] = sum(1 for s, was in zip(status, sent) if s == cancelled and not was)
    counts["finished"] = counts["attempted"] - counts[CANCELLED]   # success-rate denominator
    return counts


class GapSample:
    """A uniform random sample of at most `capacity` ITL gaps (Algorithm R, seeded, so the same
    records in the same order always give the same sample), and how many gaps it has seen.

    Below the capacity it holds every gap, so the figures are exact; above it, a million-row run's
    ITL percentiles come from `capacity` gaps instead of hundreds of millions of floats in memory.
    """

    def __init__(self, capacity: int = 1_000_000, seed: int = 0) -> None:
        self.capacity, self.seen = capacity, 0
        self.values = array("d")        # 8 bytes a gap: a full sample is 8 MB, not 32
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


def _tpots(cols: Columns, ok: bytes) -> Iterator[float | None]:
    """tpot() of every record where `ok` (None where it has none), from the columns."""
    return ((lat - ttft) / (n - 1) if m and n >= 2 and lat == lat and ttft == ttft else None
            for m, n, lat, ttft in zip(ok, cols.column("completion_tokens"), cols.column("latency_s"),
                                       cols.column("ttft_s")))


def _distributions(cols: Columns, ok: bytes, sent_timed: bytes,
                   itl: GapSample | Sequence[float]) -> dict[str, dict[str, Any]]:
    gaps = itl.values if isinstance(itl, GapSample) else itl
    itl_d = Distribution.of(gaps).to_dict()
    if isinstance(itl, GapSample):
        itl_d["population"] = itl.seen        # == count unless the gaps were sampled
    itl_d["zero_share"] = zero_share(gaps)
    of = lambda name, mask: Distribution.of(iter_present(cols.column(name), mask)).to_dict()  # noqa: E731
    return {
        "latency_s": of("latency_s", ok),
        "e2el_s": of("total_s", ok),
        "ttft_s": of("ttft_s", ok),
        "ttfo_s": of("ttfo_s", ok),
        "total_s": of("total_s", ok),
        "itl_s": itl_d,
        "tpot_s": Distribution.of(t for t in _tpots(cols, ok) if t is not None).to_dict(),
        "queue_wait_s": of("queue_wait_s", sent_timed),
    }


def zero_share(gaps: Sequence[float]) -> float | None:
    """Share of ITL gaps that are exactly 0: chunks that arrived in one network read."""
    return sum(1 for g in gaps if g == 0) / len(gaps) if gaps else None


def cached_share(records: Iterable[Record]) -> float | None:
    """Share of prompt tokens the server served from its prompt cache: sum(cached_tokens) /
    sum(prompt_tokens) over ok records that report both; None when none does (the server does
    not say). Two bench passes with different shares met different cache states."""
    cached = prompt = 0
    for r in records:
        if r.status == OK and r.cached_tokens is not None and r.prompt_tokens:
            cached += r.cached_tokens
            prompt += r.prompt_tokens
    return cached / prompt if prompt else None


def schedule_figures(cols: Columns, sent_timed: bytes) -> dict[str, Any] | None:
    """Open-loop runs: how late each request left against its planned time, and TTFT and latency
    measured from the planned time (so a client that fell behind cannot hide it: no coordinated
    omission). None when no record has a planned send time."""
    if not cols.has("scheduled_s"):
        return None
    okc = cols.label_code("status", OK)
    lag, ttft, latency = [], [], []
    for m, s, sch, sent, t, lat in zip(sent_timed, cols.column("status"), cols.column("scheduled_s"),
                                       cols.column("sent_s"), cols.column("ttft_s"), cols.column("latency_s")):
        if not m or sch != sch:
            continue
        lag.append(max(0.0, sent - sch))
        if s == okc:
            if t == t:
                ttft.append(sent - sch + t)
            if lat == lat:
                latency.append(sent - sch + lat)
    if not lag:
        return None
    return {"send_lag_s": Distribution.of(lag).to_dict(), "ttft_s": Distribution.of(ttft).to_dict(),
            "latency_s": Distribution.of(latency).to_dict()}


# The client is behind its schedule when requests leave this late (p99) against their planned time.
SCHEDULE_LAG_S = 0.010


# A share of sends this large meeting dead pooled connections is a server that closes them
# without saying so (one per run is the ordinary idle-timeout race): the summary warns.
RECONNECT_WARN_SHARE = 0.01


def answer_flags(cols: Columns, ok: bytes) -> dict[str, Any]:
    """`empty`: ok records whose answer the server ended with no content or tool call, and their
    finish reasons; `tool_choice_ignored`: ok records answered with text although the request
    forced a tool call."""
    empty = bytes(m and e for m, e in zip(ok, cols.column("empty")))
    return {"empty": sum(empty),
            "empty_by_finish_reason": _by_label(cols, "finish_reason", empty, lambda code: "unknown"),
            "tool_choice_ignored": sum(1 for m, f in zip(ok, cols.column("tool_choice_ignored")) if m and f)}


def reconnect_figures(cols: Columns) -> dict[str, Any]:
    """`reconnects`: requests re-sent at once after meeting a pooled connection the server had
    closed (any status); `reconnect_share`: reconnects / (attempts + reconnects), the share of
    all sends that met one (None when nothing was sent)."""
    reconnects = sum(cols.column("reconnects"))
    sends = sum(cols.column("attempts")) + reconnects
    return {"reconnects": reconnects, "reconnect_share": reconnects / sends if sends else None}


def _tool_stats(cols: Columns, ok: bytes) -> dict[str, Any]:
    """Tool-calling rows: calls, calls whose arguments failed their schema, rounds per row,
    tool outcomes, and the TTFT of the first round beside that of the final answer."""
    calls, rounds = cols.column("tool_calls"), cols.column("rounds")
    multi = bytes(m and n > 1 for m, n in zip(ok, rounds))
    outcomes = Counter(status for i in sorted(cols.tool_results) for status in cols.tool_results[i])
    return {"records_with_tool_calls": sum(1 for c in calls if c > 0),
            "tool_calls": sum(calls),
            "invalid_arguments": sum(cols.column("invalid_arguments")),
            "tool_results": dict(outcomes),
            "rounds": Distribution.of(n for n in rounds if n >= 0).to_dict(),
            "first_round_ttft_s": Distribution.of(iter_present(cols.column("first_round_ttft_s"), multi)).to_dict(),
            "final_answer_ttft_s": Distribution.of(iter_present(cols.column("final_round_ttft_s"), multi)).to_dict()}


def _meets_slo(cols: Columns, ok: bytes, slo: Mapping[str, float]) -> int:
    """How many records where `ok` meet every bound (meets_slo, over the columns)."""
    good = 0
    for m, ttft, lat, n in zip(ok, cols.column("ttft_s"), cols.column("latency_s"), cols.column("completion_tokens")):
        if not m:
            continue
        if "ttft" in slo and not ttft <= slo["ttft"]:        # NaN (unknown) fails
            continue
        if "e2e" in slo and not lat <= slo["e2e"]:
            continue
        if "tpot" in slo:
            if n < 0 or lat != lat or ttft != ttft or n < 2:
                # A 1-token answer has no decode phase and passes (vLLM counts its TPOT as 0);
                # an answer whose token count or timing is unknown cannot be shown to pass.
                if not (0 <= n < 2 and ttft == ttft):
                    continue
            elif (lat - ttft) / (n - 1) > slo["tpot"]:
                continue
        good += 1
    return good


def _goodput(cols: Columns, ok: bytes, slo: dict[str, float] | None, wall: float | None) -> dict[str, Any] | None:
    if slo is None:
        return None
    good = _meets_slo(cols, ok, slo)
    return {"slo": slo, "requests": good, "requests_per_s": _per_s(good, wall)}


def batch_jobs(cols: Columns) -> dict[str, Any] | None:
    """Batch API rows: how many jobs and rows, and each job's turnaround (ended_at - created_at,
    whole seconds as the API gives them). None when no record came from a Batch API job."""
    if not cols.has("batch_id"):
        return None
    jobs: dict[str, tuple[int | None, int | None]] = {}
    rows = 0
    for batch_id, c, e in zip(cols.labels("batch_id"), cols.column("batch_created_at"),
                              cols.column("batch_completed_at")):
        if batch_id:
            rows += 1
            jobs[batch_id] = (None if c != c else int(c), None if e != e else int(e))
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
                   "queueing (lower the concurrency; a run can also spread it over processes with --workers N)")
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
                   "(the server sent no usage, or one total for a batch of embedding inputs): token "
                   "figures are approximate")
    return out + _answer_warnings(summary)


def _answer_warnings(summary: Mapping[str, Any]) -> list[str]:
    """Warnings on ok answers that are not what was asked for, and on a server that drops connections.
    Summaries written before these figures existed have none of them: no warning."""
    out = []
    empty, ok = summary.get("empty") or 0, summary["counts"][OK]
    if empty:
        length = (summary.get("empty_by_finish_reason") or {}).get("length", 0)
        cut = (f"; {length} of them stopped at max_tokens (finish_reason length) before any answer: "
               "raise --max-tokens") if length else ""
        out.append(f"{empty} of {ok} ok answers are empty: the server ended them without any content or "
                   f"tool call (text \"\", `empty` in results){cut}")
    ignored = summary.get("tool_choice_ignored") or 0
    if ignored:
        out.append(f"{ignored} of {ok} ok answers are text although the request forced a tool call "
                   "(tool_choice required or a named function): the server ignores tool_choice "
                   "(`tool_choice_ignored` in results)")
    share = summary.get("reconnect_share")
    if share is not None and share >= RECONNECT_WARN_SHARE:
        out.append(f"the server closed {summary['reconnects']} pooled connections ({share:.0%} of sends) "
                   "without `Connection: close`; each request was sent again at once on a new connection "
                   "(not a retry: no backoff, not in attempts), so those requests paid for a new connection")
    return out


def _by_label(cols: Columns, name: str, mask: bytes, fallback: Callable[[int], str]) -> dict[str, int]:
    """Counter of a label column's texts where `mask` is true, in first-seen order; a record
    whose label is missing or empty counts under fallback(its status code)."""
    out: Counter[str] = Counter()
    names = cols.labels_table(name)
    for m, code, status in zip(mask, cols.column(name), cols.column("status")):
        if m:
            out[(names[code] if code >= 0 else None) or fallback(status)] += 1
    return dict(out)


class _Spans:
    """One session's sent records: send and end offsets (each sorted) and their summed busy time."""

    def __init__(self) -> None:
        self.starts: Sequence[float] = array("d")
        self.ends: Sequence[float] = array("d")
        self.busy = 0.0


def _spans(cols: Columns, sent_timed: bytes, by_session: bool = True) -> dict[int, _Spans]:
    """Per session (or all under 1), the records that were sent (not skipped) and ended, in
    first-seen order."""
    spans: dict[int, _Spans] = {}
    sessions = cols.column("session") if by_session else itertools.repeat(1)
    for m, session, s, e in zip(sent_timed, sessions, cols.column("sent_s"), cols.column("end_s")):
        if m and e == e:
            one = spans.get(session or 1)
            if one is None:
                one = spans[session or 1] = _Spans()
            one.starts.append(s)
            one.ends.append(e)
    for one in spans.values():
        one.busy = math.fsum(e - s for s, e in zip(one.starts, one.ends))   # before sorting splits the pairs
        one.starts = array("d", sorted(one.starts))
        one.ends = array("d", sorted(one.ends))
    return spans


def _in_flight(spans: Mapping[int, _Spans]) -> tuple[int, float | None, float | None]:
    """(peak, time-weighted mean, wall time summed over sessions): in_flight_sessions and
    sessions_wall_time over the columns' spans."""
    peak, busy, width, widths = 0, 0.0, 0.0, []
    for one in spans.values():
        peak = max(peak, max(count for _, count in _steps(one.starts, one.ends)))
        busy += one.busy
        widths.append(one.ends[-1] - one.starts[0])
        width += widths[-1]
    return peak, (busy / width if width > 0 else None), (math.fsum(widths) if widths else None)


def _sent_timed(cols: Columns) -> bytes:
    """Records with a send time that were not skipped (the `sent` of the per-record figures)."""
    skipped = cols.label_code("status", SKIPPED)
    return bytes(s != skipped and t == t for s, t in zip(cols.column("status"), cols.column("sent_s")))


# A plot of requests in flight keeps at most this many steps (a million-row run has two million).
PLOT_STEPS = 4000


def session_timelines(cols: Columns, *, by_session: bool = True,
                      max_steps: int = PLOT_STEPS) -> dict[int, list[tuple[float, int]]]:
    """In-flight step functions per session (all under 1 with by_session=False), for plots:
    every step up to `max_steps`, else per time bucket its lowest and highest step (the peaks
    and troughs a plot shows), so a drawing never takes one point per request."""
    out = {}
    for session, one in _spans(cols, _sent_timed(cols), by_session).items():
        out[session] = thin_steps(_steps(one.starts, one.ends), one.starts[0], one.ends[-1],
                                  2 * len(one.starts), max_steps)
    return out


def thin_steps(steps: Iterable[tuple[float, int]], start: float, end: float, n: int,
               max_steps: int = PLOT_STEPS) -> list[tuple[float, int]]:
    """At most ~max_steps of n steps spanning [start, end]: each of max_steps / 2 equal time
    buckets keeps its lowest and its highest step, in time order; all steps when n is small."""
    if n <= max_steps or not end > start:
        return list(steps)
    width = (end - start) / (max_steps // 2)
    out: list[tuple[float, int]] = []
    bucket, lo, hi = None, (0.0, 0), (0.0, 0)
    for t, c in steps:
        b = int((t - start) / width)
        if b != bucket:
            if bucket is not None:
                out.extend(sorted({lo, hi}))
            bucket, lo, hi = b, (t, c), (t, c)
        elif c < lo[1]:
            lo = (t, c)
        elif c > hi[1]:
            hi = (t, c)
    if bucket is not None:
        out.extend(sorted({lo, hi}))
    return out


def summarize(records: Iterable[Record] | Columns, *, wall_time_s: float | None = None,
              slo: Mapping[str, float] | None = None,
              loop_lag_s: Sequence[float] | None = None,
              itl_sample: GapSample | None = None) -> dict[str, Any]:
    """Every run-level figure of the Metrics page (docs/metrics.md) as a JSON-ready dict.

    `records`: Records, or their Columns (a million-row run's summary without a million Records).
    `itl_sample`: the ok records' ITL gaps, gathered (and for huge runs sampled) by the caller,
    whose records then need not carry them; Columns carry no gaps, so pass it with Columns."""
    if wall_time_s is not None and not wall_time_s > 0:
        raise ValueError(f"wall_time_s must be positive, got {wall_time_s!r}")
    if isinstance(records, Columns):
        cols, gaps = records, itl_sample if itl_sample is not None else []
    else:
        cols, gaps = _columns_and_gaps(records, itl_sample)
    okc, skipped = cols.label_code("status", OK), cols.label_code("status", SKIPPED)
    ok = bytes(s == okc for s in cols.column("status"))
    sent = _sent_mask(cols, skipped)
    sent_timed = _sent_timed(cols)
    spans = _spans(cols, sent_timed)
    peak, mean_in_flight, spans_width = _in_flight(spans)
    wall = wall_time_s if wall_time_s is not None else spans_width
    slo_checked = check_slo(slo) if slo is not None else None
    counts = _counts(cols, sent)
    okn = counts[OK]
    prompt_tokens = sum(n for n, m in zip(cols.column("prompt_tokens"), ok) if m and n >= 0)
    completion_tokens = sum(n for n, m in zip(cols.column("completion_tokens"), ok) if m and n >= 0)
    failed = bytes(s != okc and s != skipped for s in cols.column("status"))
    status_of = cols.labels_table("status")
    summary: dict[str, Any] = {
        "counts": counts,
        "success_rate": okn / counts["finished"] if counts["finished"] else None,
        "by_error_type": _by_label(cols, "error_type", failed, lambda code: status_of[code]),
        "by_finish_reason": _by_label(cols, "finish_reason", ok, lambda code: "unknown"),
        **_distributions(cols, ok, sent_timed, gaps),
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens,
                   "estimated_records": sum(1 for m, e in zip(ok, cols.column("tokens_estimated")) if m and e)},
        "wall_time_s": wall,
        "wall_time_source": "given" if wall_time_s is not None else "records",
        "throughput": {"requests_per_s": _per_s(okn, wall),
                       "output_tokens_per_s": _per_s(completion_tokens, wall),
                       "total_tokens_per_s": _per_s(prompt_tokens + completion_tokens, wall)},
        "in_flight": {"peak": peak, "mean": mean_in_flight},
        "goodput": _goodput(cols, ok, slo_checked, wall),
        "schedule": schedule_figures(cols, sent_timed),
        "tool_calls": _tool_stats(cols, ok),
        "loop_lag": loop_lag(loop_lag_s),
        "batch": batch_jobs(cols),
        **answer_flags(cols, ok),
        **reconnect_figures(cols),
    }
    summary["warnings"] = summary_warnings(summary)
    return summary


def _columns_and_gaps(records: Iterable[Record], itl_sample: GapSample | None) -> tuple[Columns, Any]:
    """Records -> their Columns, and (without a caller's sample) every ok record's ITL gaps."""
    builder, gaps = ColumnsBuilder(keep=0), []
    for r in records:
        builder.add_record(r)
        if itl_sample is None and r.status == OK:
            gaps.extend(r.itl_s)
    return builder.finish(), (itl_sample if itl_sample is not None else gaps)


# ---------------------------------------------------------------- repeats

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
