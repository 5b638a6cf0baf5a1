"""The run-level summary: records (or their Columns) -> the summary dict of summary.json, with
its warnings. Pure: no printing, plotting, clock reads or I/O.

docs/metrics.md defines every figure; comments here say why a choice was made. All times are
seconds. The figures of one request are in request_figures.py, distributions in
distribution.py, the timeline (in flight, wall time) in timeline.py, intervals in stats.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from batchrun.analysis.columns import Columns, ColumnsBuilder, iter_present
from batchrun.analysis.distribution import Distribution, GapSample, zero_share
from batchrun.analysis.request_figures import meets_bounds, tpot_of
from batchrun.analysis.timeline import per_s, sent_timed, session_spans, sessions_in_flight
from batchrun.store.records import CANCELLED, OK, SKIPPED, STATUSES, Record
from batchrun.values import check_slo

# p99 event-loop lag above this means the client was busy: a request's clock starts late or
# its chunks are read late, so measured latency includes client-side queueing.
LOOP_LAG_SATURATED_S = 0.020


# ---------------------------------------------------------------- loop lag


def loop_lag(samples: Sequence[float] | None, threshold_s: float = LOOP_LAG_SATURATED_S) -> dict[str, Any] | None:
    """p50/p99/max of event-loop lag samples and whether the client was saturated."""
    if samples is None:
        return None
    dist = Distribution.of(samples)
    saturated = dist.p99 is not None and dist.p99 > threshold_s
    return {
        "count": dist.count,
        "p50_s": dist.p50,
        "p99_s": dist.p99,
        "max_s": dist.max,
        "threshold_s": threshold_s,
        "client_saturated": saturated,
    }


# ---------------------------------------------------------------- summary


def _sent_mask(cols: Columns, skipped: int) -> bytes:
    """Records that were sent: not skipped, and attempted or given a send time."""
    return bytes(
        s != skipped and (a > 0 or t == t)
        for s, a, t in zip(cols.column("status"), cols.column("attempts"), cols.column("sent_s"))
    )


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
    counts["finished"] = counts["attempted"] - counts[CANCELLED]  # success-rate denominator
    return counts


def _tpots(cols: Columns, ok: bytes) -> Iterator[float | None]:
    """tpot_of every record where `ok` (None where it has none), from the columns."""
    return (
        tpot_of(lat, ttft, n) if m else None
        for m, n, lat, ttft in zip(
            ok, cols.column("completion_tokens"), cols.column("latency_s"), cols.column("ttft_s")
        )
    )


def _distributions(
    cols: Columns, ok: bytes, timed: bytes, itl: GapSample | Sequence[float]
) -> dict[str, dict[str, Any]]:
    gaps = itl.values if isinstance(itl, GapSample) else itl
    itl_d = Distribution.of(gaps).to_dict()
    if isinstance(itl, GapSample):
        itl_d["population"] = itl.seen  # == count unless the gaps were sampled
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
        "queue_wait_s": of("queue_wait_s", timed),
    }


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


def schedule_figures(cols: Columns, timed: bytes) -> dict[str, Any] | None:
    """Open-loop runs: how late each request left against its planned time, and TTFT and latency
    measured from the planned time (so a client that fell behind cannot hide it: no coordinated
    omission). None when no record has a planned send time."""
    if not cols.has("scheduled_s"):
        return None
    okc = cols.label_code("status", OK)
    lag, ttft, latency = [], [], []
    for m, s, sch, sent, t, lat in zip(
        timed,
        cols.column("status"),
        cols.column("scheduled_s"),
        cols.column("sent_s"),
        cols.column("ttft_s"),
        cols.column("latency_s"),
    ):
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
    return {
        "send_lag_s": Distribution.of(lag).to_dict(),
        "ttft_s": Distribution.of(ttft).to_dict(),
        "latency_s": Distribution.of(latency).to_dict(),
    }


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
    return {
        "empty": sum(empty),
        "empty_by_finish_reason": _by_label(cols, "finish_reason", empty, lambda code: "unknown"),
        "tool_choice_ignored": sum(1 for m, f in zip(ok, cols.column("tool_choice_ignored")) if m and f),
    }


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
    return {
        "records_with_tool_calls": sum(1 for c in calls if c > 0),
        "tool_calls": sum(calls),
        "invalid_arguments": sum(cols.column("invalid_arguments")),
        "tool_results": dict(outcomes),
        "rounds": Distribution.of(n for n in rounds if n >= 0).to_dict(),
        "first_round_ttft_s": Distribution.of(iter_present(cols.column("first_round_ttft_s"), multi)).to_dict(),
        "final_answer_ttft_s": Distribution.of(iter_present(cols.column("final_round_ttft_s"), multi)).to_dict(),
    }


def _meets_slo(cols: Columns, ok: bytes, slo: Mapping[str, float]) -> int:
    """How many records where `ok` meet every bound (meets_bounds, over the columns)."""
    return sum(
        1
        for m, ttft, lat, n in zip(
            ok, cols.column("ttft_s"), cols.column("latency_s"), cols.column("completion_tokens")
        )
        if m and meets_bounds(slo, ttft, lat, n)
    )


def _goodput(cols: Columns, ok: bytes, slo: dict[str, float] | None, wall: float | None) -> dict[str, Any] | None:
    if slo is None:
        return None
    good = _meets_slo(cols, ok, slo)
    return {"slo": slo, "requests": good, "requests_per_s": per_s(good, wall)}


def batch_jobs(cols: Columns) -> dict[str, Any] | None:
    """Batch API rows: how many jobs and rows, and each job's turnaround (ended_at - created_at,
    whole seconds as the API gives them). None when no record came from a Batch API job."""
    if not cols.has("batch_id"):
        return None
    jobs: dict[str, tuple[int | None, int | None]] = {}
    rows = 0
    for batch_id, c, e in zip(
        cols.labels("batch_id"), cols.column("batch_created_at"), cols.column("batch_completed_at")
    ):
        if batch_id:
            rows += 1
            jobs[batch_id] = (None if c != c else int(c), None if e != e else int(e))
    if not jobs:
        return None
    times = [(c, e) for c, e in jobs.values() if c is not None and e is not None]
    return {
        "jobs": len(jobs),
        "requests": rows,
        "turnaround_s": Distribution.of(float(e - c) for c, e in times).to_dict(),
        "first_created_at": min((c for c, _ in times), default=None),
        "last_ended_at": max((e for _, e in times), default=None),
    }


def summary_warnings(summary: Mapping[str, Any]) -> list[str]:
    """Plain-language warnings for a summary (client saturation, no successes, estimated tokens)."""
    out = []
    lag = summary["loop_lag"]
    if lag and lag["client_saturated"]:
        out.append(
            f"client saturated: event-loop lag p99 {lag['p99_s'] * 1000:.0f} ms > "
            f"{lag['threshold_s'] * 1000:.0f} ms, so latency figures include client-side "
            "queueing (lower the concurrency; a run can also spread it over processes with --workers N)"
        )
    itl_p50 = (summary.get("itl_s") or {}).get("p50")
    if lag and not lag["client_saturated"] and itl_p50 and lag["p99_s"] is not None and lag["p99_s"] > itl_p50 / 2:
        out.append(
            f"event-loop lag p99 {lag['p99_s'] * 1000:.1f} ms is large against the median ITL "
            f"{itl_p50 * 1000:.1f} ms: gaps between chunks include client-side delay"
        )
    sched = summary.get("schedule")
    if sched and sched["send_lag_s"]["p99"] is not None and sched["send_lag_s"]["p99"] > SCHEDULE_LAG_S:
        out.append(
            f"the client fell behind the arrival schedule: requests left up to "
            f"{sched['send_lag_s']['p99'] * 1000:.0f} ms late (p99); schedule.ttft_s and "
            "schedule.latency_s count that wait"
        )
    if summary["counts"]["attempted"] and not summary["counts"][OK]:
        out.append("no request succeeded: latency figures are empty")
    internal = summary["by_error_type"].get("InternalError")
    if internal:
        out.append(
            f"{internal} row(s) hit an internal error of batchrun (a bug, not the endpoint's "
            "failure): the tracebacks are in internal-errors.log; please report them"
        )
    if summary["tokens"]["estimated_records"]:
        out.append(
            f"{summary['tokens']['estimated_records']} ok record(s) have estimated token counts "
            "(the server sent no usage, or one total for a batch of embedding inputs): token "
            "figures are approximate"
        )
    return out + _answer_warnings(summary)


def _answer_warnings(summary: Mapping[str, Any]) -> list[str]:
    """Warnings on ok answers that are not what was asked for, and on a server that drops connections.
    Summaries written before these figures existed have none of them: no warning."""
    out = []
    empty, ok = summary.get("empty") or 0, summary["counts"][OK]
    if empty:
        length = (summary.get("empty_by_finish_reason") or {}).get("length", 0)
        cut = (
            (f"; {length} of them stopped at max_tokens (finish_reason length) before any answer: raise --max-tokens")
            if length
            else ""
        )
        out.append(
            f"{empty} of {ok} ok answers are empty: the server ended them without any content or "
            f'tool call (text "", `empty` in results){cut}'
        )
    ignored = summary.get("tool_choice_ignored") or 0
    if ignored:
        out.append(
            f"{ignored} of {ok} ok answers are text although the request forced a tool call "
            "(tool_choice required or a named function): the server ignores tool_choice "
            "(`tool_choice_ignored` in results)"
        )
    share = summary.get("reconnect_share")
    if share is not None and share >= RECONNECT_WARN_SHARE:
        out.append(
            f"the server closed {summary['reconnects']} pooled connections ({share:.0%} of sends) "
            "without `Connection: close`; each request was sent again at once on a new connection "
            "(not a retry: no backoff, not in attempts), so those requests paid for a new connection"
        )
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


def summarize(
    records: Iterable[Record] | Columns,
    *,
    wall_time_s: float | None = None,
    slo: Mapping[str, float] | None = None,
    loop_lag_s: Sequence[float] | None = None,
    itl_sample: GapSample | None = None,
) -> dict[str, Any]:
    """Every run-level figure of the Metrics page (docs/metrics.md) as a JSON-ready dict.

    `records`: Records, or their Columns (a million-row run's summary without a million Records).
    `itl_sample`: the ok records' ITL gaps, gathered (and for huge runs sampled) by the caller,
    whose records then need not carry them; Columns carry no gaps, so pass it with Columns."""
    if wall_time_s is not None and not wall_time_s > 0:
        raise ValueError(f"wall_time_s must be positive, got {wall_time_s!r}")
    gaps: GapSample | list[float]
    if isinstance(records, Columns):
        cols, gaps = records, itl_sample if itl_sample is not None else []
    else:
        cols, gaps = _columns_and_gaps(records, itl_sample)
    okc, skipped = cols.label_code("status", OK), cols.label_code("status", SKIPPED)
    ok = bytes(s == okc for s in cols.column("status"))
    sent = _sent_mask(cols, skipped)
    timed = sent_timed(cols)
    peak, mean_in_flight, spans_width = sessions_in_flight(session_spans(cols, timed))
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
        **_distributions(cols, ok, timed, gaps),
        "tokens": {
            "prompt": prompt_tokens,
            "completion": completion_tokens,
            "estimated_records": sum(1 for m, e in zip(ok, cols.column("tokens_estimated")) if m and e),
        },
        "wall_time_s": wall,
        "wall_time_source": "given" if wall_time_s is not None else "records",
        "throughput": {
            "requests_per_s": per_s(okn, wall),
            "output_tokens_per_s": per_s(completion_tokens, wall),
            "total_tokens_per_s": per_s(prompt_tokens + completion_tokens, wall),
        },
        "in_flight": {"peak": peak, "mean": mean_in_flight},
        "goodput": _goodput(cols, ok, slo_checked, wall),
        "schedule": schedule_figures(cols, timed),
        "tool_calls": _tool_stats(cols, ok),
        "loop_lag": loop_lag(loop_lag_s),
        "batch": batch_jobs(cols),
        **answer_flags(cols, ok),
        **reconnect_figures(cols),
    }
    summary["warnings"] = summary_warnings(summary)
    return summary


def _columns_and_gaps(
    records: Iterable[Record], itl_sample: GapSample | None
) -> tuple[Columns, GapSample | list[float]]:
    """Records -> their Columns, and (without a caller's sample) every ok record's ITL gaps."""
    builder = ColumnsBuilder(keep=0)
    gaps: list[float] = []
    for r in records:
        builder.add_record(r)
        if itl_sample is None and r.status == OK:
            gaps.extend(r.itl_s)
    return builder.finish(), (itl_sample if itl_sample is not None else gaps)
