"""Every figure of a run's summary, a bench's analysis, a comparison and a find-max probe, for
fixed records, pinned whole: a change to how the figures are computed (moving code between
modules, sharing a helper) must leave every value exactly as it was.

The times are multiples of 1/8 s, so sums and differences are exact in binary floating point
and the hand-worked values in the comments are the pinned values (a mean over 3 or 7 values,
and a percentile between ranks, is pinned as Python computes it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from batchrun.analysis.columns import Columns
from batchrun.analysis.compare import changes_as_dicts, compare
from batchrun.analysis.distribution import GapSample
from batchrun.analysis.metrics import summarize
from batchrun.analysis.sides import side_of_records
from batchrun.bench.findmax import judge
from batchrun.report.bench import bench_analysis
from batchrun.store.records import Record


def ok(
    id: str,
    row: int,
    *,
    sent: float,
    ttft: float,
    itl: list[float],
    tokens: int | None,
    prompt: int | None,
    tail: float = 0.0,
    attempts: int = 1,
    finish: str = "stop",
    **kw: Any,
) -> Record:
    """An ok record: latency = ttft + sum(itl); total_s (and end_s - sent_s) = latency + tail."""
    latency = ttft + sum(itl)
    return Record(
        id=id,
        row=row,
        status="ok",
        sent_s=sent,
        end_s=sent + latency + tail,
        ttft_s=ttft,
        ttfo_s=ttft,
        latency_s=latency,
        total_s=latency + tail,
        itl_s=itl,
        output_chunks=len(itl) + 1,
        completion_tokens=tokens,
        prompt_tokens=prompt,
        attempts=attempts,
        finish_reason=finish,
        **kw,
    )


# Session 1: a, b, c ok; d error; e timeout; f cancelled before it was sent; g skipped.
# Session 2 (a resume, its clock from 0 again): h, i ok.
#
#   record  sent   ttft   itl                 latency  total  end    tokens  prompt  queue wait
#   a       0      1/8    1/8, 1/4            1/2      5/8    5/8    3       10      0
#   b       1/2    1/4    0, 1/4, 1/2         1        1      3/2    7       20      1/2
#   c       1      3/8    -                   3/8      3/8    11/8   1       10      1/4
#   d       1/4    (error)                                    5/4                    0
#   e       3/2    (timeout)                                  5/2                    1/8
#   h (s2)  0      1/2    1/2                 1        1      1      2       30      0
#   i (s2)  1/4    1/4    1/4, 1/4            3/4      3/4    1      None    None    0
RECORDS = [
    ok(
        "a",
        0,
        sent=0.0,
        ttft=0.125,
        itl=[0.125, 0.25],
        tokens=3,
        prompt=10,
        tail=0.125,
        queue_wait_s=0.0,
        cached_tokens=4,
        scheduled_s=0.0,
    ),
    ok(
        "b",
        1,
        sent=0.5,
        ttft=0.25,
        itl=[0.0, 0.25, 0.5],
        tokens=7,
        prompt=20,
        queue_wait_s=0.5,
        attempts=2,
        reconnects=1,
        finish="length",
        scheduled_s=0.25,
    ),
    ok(
        "c",
        2,
        sent=1.0,
        ttft=0.375,
        itl=[],
        tokens=1,
        prompt=10,
        queue_wait_s=0.25,
        tool_choice_ignored=True,
        empty=True,
    ),
    Record(
        id="d",
        row=3,
        status="error",
        error_type="RateLimitError",
        error="429",
        attempts=3,
        sent_s=0.25,
        end_s=1.25,
        queue_wait_s=0.0,
    ),
    Record(
        id="e",
        row=4,
        status="timeout",
        error="timed out",
        attempts=1,
        sent_s=1.5,
        end_s=2.5,
        queue_wait_s=0.125,
        tokens_estimated=True,
    ),
    Record(id="f", row=5, status="cancelled"),
    Record(id="g", row=6, status="skipped", error="column 'prompt' is empty"),
    ok(
        "h",
        7,
        sent=0.0,
        ttft=0.5,
        itl=[0.5],
        tokens=2,
        prompt=30,
        session=2,
        queue_wait_s=0.0,
        tokens_estimated=True,
        tool_calls=[{"id": "c1", "name": "f", "valid": True}, {"id": "c2", "name": "f", "valid": False}],
        rounds=[{"ttft_s": 0.25, "tool_results": [{"status": "ok"}, {"status": "error"}]}, {"ttft_s": 0.5}],
    ),
    ok("i", 8, sent=0.25, ttft=0.25, itl=[0.25, 0.25], tokens=None, prompt=None, session=2, queue_wait_s=0.0),
]
RUN_SLO = {"ttft": 0.25, "tpot": 0.25, "e2e": 1.0}
LOOP_LAG = [0.001, 0.002, 0.004, 0.03]


def dist(
    count: int, mean: float, std: float, lo: float, p50: float, p90: float, p95: float, p99: float, hi: float
) -> dict[str, Any]:
    return {
        "count": count,
        "mean": mean,
        "std": std,
        "min": lo,
        "p50": p50,
        "p90": p90,
        "p95": p95,
        "p99": p99,
        "max": hi,
    }


NO_VALUES = {"count": 0, **dict.fromkeys(("mean", "std", "min", "p50", "p90", "p95", "p99", "max"))}
RUN_SUMMARY: dict[str, Any] = {
    # ok a, b, c, h, i; f never left the queue (sent 7 of the 8 attempted); finished = 8 - 1 cancelled
    "counts": {
        "ok": 5,
        "error": 1,
        "timeout": 1,
        "cancelled": 1,
        "skipped": 1,
        "invalid_output": 0,
        "total": 9,
        "attempted": 8,
        "sent": 7,
        "never_sent": 1,
        "finished": 7,
    },
    "success_rate": 5 / 7,
    "by_error_type": {"RateLimitError": 1, "timeout": 1, "cancelled": 1},
    "by_finish_reason": {"stop": 4, "length": 1},
    # latencies 3/8, 1/2, 3/4, 1, 1: mean 3.625 / 5; p90 at rank 3.6 = 1; std sqrt(0.325 / 5)
    "latency_s": dist(5, 0.725, 0.25495097567963926, 0.375, 0.75, 1.0, 1.0, 1.0, 1.0),
    # total_s 3/8, 5/8, 3/4, 1, 1: mean 3.75 / 5; std sqrt(0.28125 / 5)
    "e2el_s": dist(5, 0.75, 0.23717082451262844, 0.375, 0.75, 1.0, 1.0, 1.0, 1.0),
    # TTFTs 1/8, 1/4, 1/4, 3/8, 1/2: mean 1.5 / 5; p90 at rank 3.6 = 3/8 + 0.6 x 1/8 = 0.45
    "ttft_s": dist(5, 0.3, 0.12747548783981963, 0.125, 0.25, 0.45, 0.475, 0.495, 0.5),
    "ttfo_s": dist(5, 0.3, 0.12747548783981963, 0.125, 0.25, 0.45, 0.475, 0.495, 0.5),
    "total_s": dist(5, 0.75, 0.23717082451262844, 0.375, 0.75, 1.0, 1.0, 1.0, 1.0),
    # gaps 0, 1/8, 1/4 x 4, 1/2 x 2 pooled: mean 2.125 / 8; one of 8 is 0
    "itl_s": {**dist(8, 0.265625, 0.15857643070456592, 0.0, 0.25, 0.5, 0.5, 0.5, 0.5), "zero_share": 0.125},
    # a (1/2 - 1/8) / 2 = 3/16, b (1 - 1/4) / 6 = 1/8, h 1/2; c has 1 token, i no count
    "tpot_s": dist(3, 0.8125 / 3, 0.1640418307085794, 0.125, 0.1875, 0.4375, 0.46875, 0.49375, 0.5),
    # every sent record: 0 x 4, 1/8, 1/4, 1/2; p90 at rank 5.4 = 1/4 + 0.4 x 1/4 (0.35 in binary)
    "queue_wait_s": dist(
        7, 0.125, 0.1767766952966369, 0.0, 0.0, 0.3500000000000001, 0.42500000000000004, 0.4850000000000001, 0.5
    ),
    # ok records: prompt 10 + 20 + 10 + 30 (i: none), completion 3 + 7 + 1 + 2; e's estimate is not ok
    "tokens": {"prompt": 70, "completion": 13, "estimated_records": 1},
    # session 1: 0 .. 5/2 (e), session 2: 0 .. 1
    "wall_time_s": 3.5,
    "wall_time_source": "records",
    "throughput": {"requests_per_s": 5 / 3.5, "output_tokens_per_s": 13 / 3.5, "total_tokens_per_s": 83 / 3.5},
    # at 1/2: a, d, b; busy 5/8 + 1 + 1 + 3/8 + 1 (session 1) + 1 + 3/4 (session 2) = 5.75
    "in_flight": {"peak": 3, "mean": 5.75 / 3.5},
    # a and b meet every bound; c and h are late, i's TPOT is unknown
    "goodput": {"slo": {"ttft": 0.25, "tpot": 0.25, "e2e": 1.0}, "requests": 2, "requests_per_s": 2 / 3.5},
    # a left on time, b 1/4 late: TTFT from the plan 1/8 and 1/2, latency 1/2 and 5/4
    "schedule": {
        "send_lag_s": dist(2, 0.125, 0.125, 0.0, 0.125, 0.225, 0.2375, 0.2475, 0.25),
        "ttft_s": dist(2, 0.3125, 0.1875, 0.125, 0.3125, 0.4625, 0.48124999999999996, 0.49624999999999997, 0.5),
        "latency_s": dist(2, 0.875, 0.375, 0.5, 0.875, 1.175, 1.2125, 1.2425, 1.25),
    },
    "tool_calls": {
        "records_with_tool_calls": 1,
        "tool_calls": 2,
        "invalid_arguments": 1,
        "tool_results": {"ok": 1, "error": 1},
        "rounds": dist(1, 2.0, 0.0, 2, 2.0, 2.0, 2.0, 2.0, 2),
        "first_round_ttft_s": dist(1, 0.25, 0.0, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25),
        "final_answer_ttft_s": dist(1, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5),
    },
    # p99 at rank 2.97: 0.004 + 0.97 x 0.026 = 0.02922 > 0.020
    "loop_lag": {
        "count": 4,
        "p50_s": 0.003,
        "p99_s": 0.029220000000000003,
        "max_s": 0.03,
        "threshold_s": 0.02,
        "client_saturated": True,
    },
    "batch": None,
    "empty": 1,
    "empty_by_finish_reason": {"stop": 1},
    "tool_choice_ignored": 1,
    # 1 re-send of 10 attempts + 1
    "reconnects": 1,
    "reconnect_share": 1 / 11,
    "warnings": [
        "client saturated: event-loop lag p99 29 ms > 20 ms, so latency figures include client-side queueing "
        "(lower the concurrency; a run can also spread it over processes with --workers N)",
        "the client fell behind the arrival schedule: requests left up to 248 ms late (p99); schedule.ttft_s and "
        "schedule.latency_s count that wait",
        "1 ok record(s) have estimated token counts (the server sent no usage, or one total for a batch of "
        "embedding inputs): token figures are approximate",
        '1 of 5 ok answers are empty: the server ended them without any content or tool call (text "", `empty` '
        "in results)",
        "1 of 5 ok answers are text although the request forced a tool call (tool_choice required or a named "
        "function): the server ignores tool_choice (`tool_choice_ignored` in results)",
        "the server closed 1 pooled connections (9% of sends) without `Connection: close`; each request was sent "
        "again at once on a new connection (not a retry: no backoff, not in attempts), so those requests paid "
        "for a new connection",
    ],
}


def test_the_run_summary_of_fixed_records_is_pinned() -> None:
    assert summarize(RECORDS, slo=RUN_SLO, loop_lag_s=LOOP_LAG) == RUN_SUMMARY


def test_the_summary_from_columns_equals_the_summary_from_records() -> None:
    gaps = GapSample()
    gaps.add(g for r in RECORDS if r.status == "ok" for g in r.itl_s)
    from_columns = summarize(Columns.of(RECORDS), slo=RUN_SLO, loop_lag_s=LOOP_LAG, itl_sample=gaps)
    expected = {**RUN_SUMMARY, "itl_s": {**RUN_SUMMARY["itl_s"], "population": 8}}
    assert from_columns == {k: expected[k] for k in from_columns}


# Batch API rows: no timing; two jobs, one whose end is unknown.
BATCH_RECORDS = [
    Record(
        id=f"b{i}",
        row=i,
        status="ok" if i != 2 else "error",
        error_type=None if i != 2 else "BatchError",
        batch_id="batch_1" if i < 3 else "batch_2",
        batch_created_at=1000 if i < 3 else 1100,
        batch_completed_at=1600 if i < 3 else None,
        queue_wait_s=None,
        prompt_tokens=5,
        completion_tokens=2,
        finish_reason="stop" if i != 2 else None,
    )
    for i in range(4)
]
BATCH_SUMMARY: dict[str, Any] = {
    # rows of a Batch API job are never "sent" by the client: no send time, no attempts
    "counts": {
        "ok": 3,
        "error": 1,
        "timeout": 0,
        "cancelled": 0,
        "skipped": 0,
        "invalid_output": 0,
        "total": 4,
        "attempted": 4,
        "sent": 0,
        "never_sent": 0,
        "finished": 4,
    },
    "success_rate": 0.75,
    "by_error_type": {"BatchError": 1},
    "by_finish_reason": {"stop": 3},
    **{key: NO_VALUES for key in ("latency_s", "e2el_s", "ttft_s", "ttfo_s", "total_s")},
    "itl_s": {**NO_VALUES, "zero_share": None},
    "tpot_s": NO_VALUES,
    "queue_wait_s": NO_VALUES,
    "tokens": {"prompt": 15, "completion": 6, "estimated_records": 0},
    "wall_time_s": None,
    "wall_time_source": "records",
    "throughput": {"requests_per_s": None, "output_tokens_per_s": None, "total_tokens_per_s": None},
    "in_flight": {"peak": 0, "mean": None},
    "goodput": None,
    "schedule": None,
    "tool_calls": {
        "records_with_tool_calls": 0,
        "tool_calls": 0,
        "invalid_arguments": 0,
        "tool_results": {},
        "rounds": NO_VALUES,
        "first_round_ttft_s": NO_VALUES,
        "final_answer_ttft_s": NO_VALUES,
    },
    "loop_lag": None,
    # batch_1 ran 1000 -> 1600; batch_2 has no end yet, so no turnaround
    "batch": {
        "jobs": 2,
        "requests": 4,
        "turnaround_s": dist(1, 600.0, 0.0, 600.0, 600.0, 600.0, 600.0, 600.0, 600.0),
        "first_created_at": 1000,
        "last_ended_at": 1600,
    },
    "empty": 0,
    "empty_by_finish_reason": {},
    "tool_choice_ignored": 0,
    "reconnects": 0,
    "reconnect_share": None,
    "warnings": [],
}


def test_the_summary_of_batch_api_rows_is_pinned() -> None:
    assert summarize(BATCH_RECORDS) == BATCH_SUMMARY


def level_records(concurrency: int, repeat: int, n: int) -> list[Record]:
    """n requests in waves of `concurrency`: wave w is sent at w * 5/8 s; TTFT and ITL grow with the
    slot and with the concurrency; the third request of repeat 1 fails."""
    out = []
    for i in range(n):
        wave, slot = divmod(i, concurrency)
        ttft = 0.125 + slot * 0.03125 + concurrency * 0.015625
        itl = [0.0625 + (i % 5) * 0.015625 + concurrency * 0.0078125] * 3
        if repeat == 1 and i == 2:
            out.append(
                Record(
                    id=f"r{i}",
                    row=i,
                    status="error",
                    error_type="InternalServerError",
                    attempts=1,
                    sent_s=wave * 0.625,
                    end_s=wave * 0.625 + 0.25,
                )
            )
            continue
        out.append(ok(f"r{i}", i, sent=wave * 0.625, ttft=ttft, itl=itl, tokens=4, prompt=8, tail=0.0078125))
    return out


def bench_runs() -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = [
        {
            "name": "sync",
            "mode": "sync",
            "concurrency": 1,
            "repeat": 0,
            "wall_time_s": 5.0,
            "records": level_records(1, 0, 8),
        }
    ]
    for c in (1, 4, 8):
        for repeat in (0, 1):
            n = 8 if c == 1 else 40
            records = level_records(c, repeat, n)
            runs.append(
                {
                    "name": f"async-c{c}-r{repeat}",
                    "mode": "async",
                    "concurrency": c,
                    "repeat": repeat,
                    "wall_time_s": max(r.end_s for r in records),
                    "records": records,
                }
            )
    records = level_records(4, 1, 24)  # an open-loop level: its throughput's interval is a Poisson count's
    runs.append(
        {
            "name": "rate-2",
            "mode": "rate",
            "concurrency": 16,
            "repeat": 0,
            "rate": 2.0,
            "wall_time_s": 12.0,
            "records": records,
        }
    )
    return runs


BENCH_WARMUP = {"pass": True, "prompts": 8, "concurrency": 4, "max_tokens": 16, "failed": 0, "wave": None}
BENCH_ANALYSIS: dict[str, Any] = {
    "rows": [
        {
            "name": "sync",
            "mode": "sync",
            "concurrency": 1,
            "repeat": 0,
            "n": 8,
            "planned": None,
            "few": True,
            "wall_time_s": 5.0,
            "requests_per_s": 1.6,
            "output_tokens_per_s": 6.4,
            "goodput_per_s": 1.6,
            "speedup": 1.0,
            "efficiency": 1.0,
            "latency_p50_s": 0.421875,
            "latency_p99_s": 0.53578125,
            "ttft_p50_s": 0.140625,
            "ttft_p99_s": 0.140625,
            "errors": 0,
            "failure_share": 0.0,
            "tpot_p50_s": 0.09375,
            "tpot_p99_s": 0.13171875,
            "itl_p50_s": 0.09375,
            "itl_p99_s": 0.1328125,
            "success_rate": 1.0,
            "cached_share": None,
            "client_saturated": False,
        },
        {
            "name": "async-c1-r0",
            "mode": "async",
            "concurrency": 1,
            "repeat": 0,
            "n": 8,
            "planned": None,
            "few": True,
            "wall_time_s": 4.828125,
            "requests_per_s": 1.656957928802589,
            "output_tokens_per_s": 6.627831715210356,
            "goodput_per_s": 1.656957928802589,
            "speedup": 1.035598705501618,
            "efficiency": 1.035598705501618,
            "latency_p50_s": 0.421875,
            "latency_p99_s": 0.53578125,
            "ttft_p50_s": 0.140625,
            "ttft_p99_s": 0.140625,
            "errors": 0,
            "failure_share": 0.0,
            "tpot_p50_s": 0.09375,
            "tpot_p99_s": 0.13171875,
            "itl_p50_s": 0.09375,
            "itl_p99_s": 0.1328125,
            "success_rate": 1.0,
            "cached_share": None,
            "client_saturated": False,
        },
        {
            "name": "async-c1-r1",
            "mode": "async",
            "concurrency": 1,
            "repeat": 1,
            "n": 8,
            "planned": None,
            "few": True,
            "wall_time_s": 4.828125,
            "requests_per_s": 1.4498381877022655,
            "output_tokens_per_s": 5.799352750809062,
            "goodput_per_s": 1.4498381877022655,
            "speedup": 0.9061488673139159,
            "efficiency": 0.9061488673139159,
            "latency_p50_s": 0.3984375,
            "latency_p99_s": 0.53625,
            "ttft_p50_s": 0.140625,
            "ttft_p99_s": 0.140625,
            "errors": 1,
            "failure_share": 0.125,
            "tpot_p50_s": 0.0859375,
            "tpot_p99_s": 0.13187500000000002,
            "itl_p50_s": 0.0859375,
            "itl_p99_s": 0.1328125,
            "success_rate": 0.875,
            "cached_share": None,
            "client_saturated": False,
        },
        {
            "name": "async-c4-r0",
            "mode": "async",
            "concurrency": 4,
            "repeat": 0,
            "n": 40,
            "planned": None,
            "few": False,
            "wall_time_s": 6.3828125,
            "requests_per_s": 6.2668298653610774,
            "output_tokens_per_s": 25.06731946144431,
            "goodput_per_s": 6.2668298653610774,
            "speedup": 3.916768665850673,
            "efficiency": 0.9791921664626683,
            "latency_p50_s": 0.609375,
            "latency_p99_s": 0.75,
            "ttft_p50_s": 0.234375,
            "ttft_p99_s": 0.28125,
            "errors": 0,
            "failure_share": 0.0,
            "tpot_p50_s": 0.125,
            "tpot_p99_s": 0.15625,
            "itl_p50_s": 0.125,
            "itl_p99_s": 0.15625,
            "success_rate": 1.0,
            "cached_share": None,
            "client_saturated": False,
        },
        {
            "name": "async-c4-r1",
            "mode": "async",
            "concurrency": 4,
            "repeat": 1,
            "n": 40,
            "planned": None,
            "few": False,
            "wall_time_s": 6.3828125,
            "requests_per_s": 6.11015911872705,
            "output_tokens_per_s": 24.4406364749082,
            "goodput_per_s": 6.11015911872705,
            "speedup": 3.818849449204406,
            "efficiency": 0.9547123623011015,
            "latency_p50_s": 0.609375,
            "latency_p99_s": 0.75,
            "ttft_p50_s": 0.21875,
            "ttft_p99_s": 0.28125,
            "errors": 1,
            "failure_share": 0.025,
            "tpot_p50_s": 0.125,
            "tpot_p99_s": 0.15625,
            "itl_p50_s": 0.125,
            "itl_p99_s": 0.15625,
            "success_rate": 0.975,
            "cached_share": None,
            "client_saturated": False,
        },
        {
            "name": "async-c8-r0",
            "mode": "async",
            "concurrency": 8,
            "repeat": 0,
            "n": 40,
            "planned": None,
            "few": False,
            "wall_time_s": 3.5390625,
            "requests_per_s": 11.302428256070641,
            "output_tokens_per_s": 45.209713024282564,
            "goodput_per_s": 11.302428256070641,
            "speedup": 7.064017660044151,
            "efficiency": 0.8830022075055188,
            "latency_p50_s": 0.828125,
            "latency_p99_s": 1.0190625,
            "ttft_p50_s": 0.359375,
            "ttft_p99_s": 0.46875,
            "errors": 0,
            "failure_share": 0.0,
            "tpot_p50_s": 0.15625,
            "tpot_p99_s": 0.1875,
            "itl_p50_s": 0.15625,
            "itl_p99_s": 0.1875,
            "success_rate": 1.0,
            "cached_share": None,
            "client_saturated": False,
        },
        {
            "name": "async-c8-r1",
            "mode": "async",
            "concurrency": 8,
            "repeat": 1,
            "n": 40,
            "planned": None,
            "few": False,
            "wall_time_s": 3.5390625,
            "requests_per_s": 11.019867549668874,
            "output_tokens_per_s": 44.079470198675494,
            "goodput_per_s": 11.019867549668874,
            "speedup": 6.887417218543046,
            "efficiency": 0.8609271523178808,
            "latency_p50_s": 0.828125,
            "latency_p99_s": 1.019375,
            "ttft_p50_s": 0.375,
            "ttft_p99_s": 0.46875,
            "errors": 1,
            "failure_share": 0.025,
            "tpot_p50_s": 0.15625,
            "tpot_p99_s": 0.1875,
            "itl_p50_s": 0.15625,
            "itl_p99_s": 0.1875,
            "success_rate": 0.975,
            "cached_share": None,
            "client_saturated": False,
        },
        {
            "name": "rate-2",
            "mode": "rate",
            "concurrency": 16,
            "repeat": 0,
            "n": 24,
            "planned": None,
            "few": True,
            "wall_time_s": 12.0,
            "requests_per_s": 1.9166666666666667,
            "output_tokens_per_s": 7.666666666666667,
            "goodput_per_s": 1.9166666666666667,
            "speedup": 1.1979166666666667,
            "efficiency": 0.07486979166666667,
            "latency_p50_s": 0.609375,
            "latency_p99_s": 0.743125,
            "ttft_p50_s": 0.21875,
            "ttft_p99_s": 0.28125,
            "errors": 1,
            "failure_share": 0.041666666666666664,
            "tpot_p50_s": 0.125,
            "tpot_p99_s": 0.15625,
            "itl_p50_s": 0.125,
            "itl_p99_s": 0.15625,
            "success_rate": 0.9583333333333334,
            "cached_share": None,
            "client_saturated": False,
        },
    ],
    "groups": [
        {
            "mode": "sync",
            "concurrency": 1,
            "rate": None,
            "repeats": 1,
            "n": 8,
            "errors": 0,
            "failure_share": 0.0,
            "tpot_p50_s": 0.09375,
            "tpot_p99_s": 0.13171875,
            "itl_p50_s": 0.09375,
            "itl_p99_s": 0.1328125,
            "output_tokens_per_s": 6.4,
            "requests_per_s": 1.6,
            "goodput_per_s": 1.6,
            "requests_per_s_ci_low": 1.4622950819672131,
            "requests_per_s_ci_high": 1.7663366336633664,
            "latency_p50_s": 0.421875,
            "latency_p50_s_ci_low": 0.3515625,
            "latency_p50_s_ci_high": 0.5390625,
            "latency_p99_s": 0.53578125,
            "latency_p99_s_ci_low": None,
            "latency_p99_s_ci_high": None,
            "ttft_p50_s": 0.140625,
            "ttft_p50_s_ci_low": 0.140625,
            "ttft_p50_s_ci_high": 0.140625,
            "ttft_p99_s": 0.140625,
            "ttft_p99_s_ci_low": None,
            "ttft_p99_s_ci_high": None,
            "few": True,
            "speedup": 1.0,
            "efficiency": 1.0,
        },
        {
            "mode": "async",
            "concurrency": 1,
            "rate": None,
            "repeats": 2,
            "n": 16,
            "errors": 1,
            "failure_share": 0.0625,
            "tpot_p50_s": 0.0859375,
            "tpot_p99_s": 0.1328125,
            "itl_p50_s": 0.0859375,
            "itl_p99_s": 0.1328125,
            "output_tokens_per_s": 6.213592233009709,
            "requests_per_s": 1.5533980582524272,
            "goodput_per_s": 1.5533980582524272,
            "requests_per_s_ci_low": 1.4491431550140093,
            "requests_per_s_ci_high": 1.6738165123805222,
            "latency_p50_s": 0.3984375,
            "latency_p50_s_ci_low": 0.3515625,
            "latency_p50_s_ci_high": 0.4921875,
            "latency_p99_s": 0.5390625,
            "latency_p99_s_ci_low": None,
            "latency_p99_s_ci_high": None,
            "ttft_p50_s": 0.140625,
            "ttft_p50_s_ci_low": 0.140625,
            "ttft_p50_s_ci_high": 0.140625,
            "ttft_p99_s": 0.140625,
            "ttft_p99_s_ci_low": None,
            "ttft_p99_s_ci_high": None,
            "few": True,
            "speedup": 0.970873786407767,
            "efficiency": 0.970873786407767,
        },
        {
            "mode": "async",
            "concurrency": 4,
            "rate": None,
            "repeats": 2,
            "n": 80,
            "errors": 1,
            "failure_share": 0.0125,
            "tpot_p50_s": 0.125,
            "tpot_p99_s": 0.15625,
            "itl_p50_s": 0.125,
            "itl_p99_s": 0.15625,
            "output_tokens_per_s": 24.753977968176255,
            "requests_per_s": 6.188494492044064,
            "goodput_per_s": 6.188494492044064,
            "requests_per_s_ci_low": 6.035597224943772,
            "requests_per_s_ci_high": 6.357703791068019,
            "latency_p50_s": 0.609375,
            "latency_p50_s_ci_low": 0.578125,
            "latency_p50_s_ci_high": 0.640625,
            "latency_p99_s": 0.75,
            "latency_p99_s_ci_low": None,
            "latency_p99_s_ci_high": None,
            "ttft_p50_s": 0.21875,
            "ttft_p50_s_ci_low": 0.21875,
            "ttft_p50_s_ci_high": 0.25,
            "ttft_p99_s": 0.28125,
            "ttft_p99_s_ci_low": None,
            "ttft_p99_s_ci_high": None,
            "few": False,
            "speedup": 3.8678090575275395,
            "efficiency": 0.9669522643818849,
        },
        {
            "mode": "async",
            "concurrency": 8,
            "rate": None,
            "repeats": 2,
            "n": 80,
            "errors": 1,
            "failure_share": 0.0125,
            "tpot_p50_s": 0.15625,
            "tpot_p99_s": 0.1875,
            "itl_p50_s": 0.15625,
            "itl_p99_s": 0.1875,
            "output_tokens_per_s": 44.64459161147903,
            "requests_per_s": 11.161147902869757,
            "goodput_per_s": 11.161147902869757,
            "requests_per_s_ci_low": 10.900837098530802,
            "requests_per_s_ci_high": 11.448059913953593,
            "latency_p50_s": 0.828125,
            "latency_p50_s_ci_low": 0.796875,
            "latency_p50_s_ci_high": 0.859375,
            "latency_p99_s": 1.03125,
            "latency_p99_s_ci_low": None,
            "latency_p99_s_ci_high": None,
            "ttft_p50_s": 0.375,
            "ttft_p50_s_ci_low": 0.34375,
            "ttft_p50_s_ci_high": 0.375,
            "ttft_p99_s": 0.46875,
            "ttft_p99_s_ci_low": None,
            "ttft_p99_s_ci_high": None,
            "few": False,
            "speedup": 6.975717439293598,
            "efficiency": 0.8719646799116998,
        },
        {
            "mode": "rate",
            "concurrency": 16,
            "rate": 2.0,
            "repeats": 1,
            "n": 24,
            "errors": 1,
            "failure_share": 0.041666666666666664,
            "tpot_p50_s": 0.125,
            "tpot_p99_s": 0.15625,
            "itl_p50_s": 0.125,
            "itl_p99_s": 0.15625,
            "output_tokens_per_s": 7.666666666666667,
            "requests_per_s": 1.9166666666666667,
            "goodput_per_s": 1.9166666666666667,
            "requests_per_s_ci_low": 1.1333619115321005,
            "requests_per_s_ci_high": 2.6999714218012323,
            "latency_p50_s": 0.609375,
            "latency_p50_s_ci_low": 0.546875,
            "latency_p50_s_ci_high": 0.65625,
            "latency_p99_s": 0.743125,
            "latency_p99_s_ci_low": None,
            "latency_p99_s_ci_high": None,
            "ttft_p50_s": 0.21875,
            "ttft_p50_s_ci_low": 0.21875,
            "ttft_p50_s_ci_high": 0.25,
            "ttft_p99_s": 0.28125,
            "ttft_p99_s_ci_low": None,
            "ttft_p99_s_ci_high": None,
            "few": True,
            "speedup": 1.1979166666666667,
            "efficiency": 0.07486979166666667,
        },
    ],
    "sync_requests_per_s": 1.6,
    "ideal_base_requests_per_s": 1.5533980582524272,
    "slo": {"e2e": 1.5},
    "max_failure_share": 0.01,
    "recommended_concurrency": None,
    "best_concurrency": 8,
    "recommendation_reasons": {
        "1": "1/16 failed (6.2%), over the 1% allowed",
        "4": "1/80 failed (1.2%), over the 1% allowed",
        "8": "1/80 failed (1.2%), over the 1% allowed",
    },
    "excluded_levels": [1, 4, 8],
    "plateau_concurrency": None,
    "warmup": {
        "pass": True,
        "prompts": 8,
        "concurrency": 4,
        "max_tokens": 16,
        "failed": 0,
        "wave": None,
        "text": "Warm-up: 8 prompts sent once before measuring (4 at a time, max_tokens 16), not "
        "measured; each run also opened its connections with one unmeasured wave (one request "
        "per slot)",
    },
    "recommendation": [
        "No concurrency level can be recommended: every level measured was ruled out (below).",
        "The level with the most throughput, c=8 (11.16 req/s [10.90, 11.45], n=80), was not "
        "picked: 1/80 failed (1.2%), over the 1% allowed.",
        "Rule: the lowest concurrency whose throughput (successful requests/s) is statistically "
        "indistinguishable from the best (95% intervals), among the levels with at most 1% "
        "failed requests (--max-failure-share) that meet the SLO e2e<=1.50 s.",
        "  c=1 (1.55 req/s [1.45, 1.67], n=16): 1/16 failed (6.2%), over the 1% allowed",
        "  c=4 (6.19 req/s [6.04, 6.36], n=80): 1/80 failed (1.2%), over the 1% allowed",
        "Throughput was still growing at the highest concurrency measured.",
    ],
    "top_concurrency": None,
    "speedup": {
        "8": {
            "estimate": 6.975717439293598,
            "ci_low": 6.299350222434559,
            "ci_high": 7.668470752369169,
            "n": 80,
            "sync_n": 8,
        }
    },
    "answer": [
        "No concurrency can be recommended: every level measured was ruled out (see the recommendation below).",
        "c=8 measured the most, 7.0x faster than sync (95% interval 6.3x to 7.7x), n=80, but was ruled "
        "out: 1/80 failed (1.2%), over the 1% allowed.",
    ],
}


def test_the_bench_analysis_of_fixed_runs_is_pinned() -> None:
    analysis = bench_analysis({"runs": bench_runs(), "slo": {"e2e": 1.5}, "warmup": BENCH_WARMUP})
    assert analysis == BENCH_ANALYSIS


def compare_sides() -> tuple[Any, Any]:
    base = level_records(4, 0, 40) + [
        dataclasses.replace(r, id=r.id + "x", row=r.row + 40) for r in level_records(4, 1, 40)
    ]
    cur = [
        dataclasses.replace(r, ttft_s=r.ttft_s * 1.25, latency_s=r.latency_s * 1.25, itl_s=[g * 1.25 for g in r.itl_s])
        if r.status == "ok"
        else r
        for r in level_records(8, 0, 40)
    ]
    return side_of_records(base, where="base", wall_s=9.0), side_of_records(cur, where="cur", wall_s=4.0)


COMPARISON: dict[str, Any] = {
    "changes": [
        {
            "name": "throughput",
            "unit": "req/s",
            "higher_is_better": True,
            "baseline": 8.777777777777779,
            "current": 10.0,
            "change": 1.2222222222222214,
            "change_pct": 13.924050632911381,
            "tolerance": "-5%",
            "status": "improved",
            "absolute": False,
            "method": "bootstrap",
            "n_baseline": 79,
            "n_current": 40,
            "more_requests": None,
            "note": None,
            "interval": {"low": 9.048089513864554, "high": 19.110739568542435, "unit": "percent"},
        },
        {
            "name": "output_throughput",
            "unit": "tok/s",
            "higher_is_better": True,
            "baseline": 35.111111111111114,
            "current": 40.0,
            "change": 4.888888888888886,
            "change_pct": 13.924050632911381,
            "tolerance": None,
            "status": "not gated",
            "absolute": False,
            "method": "bootstrap",
            "n_baseline": 79,
            "n_current": 40,
            "more_requests": None,
            "note": None,
            "interval": {"low": 9.048089513864554, "high": 19.110739568542435, "unit": "percent"},
        },
        {
            "name": "latency_p50",
            "unit": "s",
            "higher_is_better": False,
            "baseline": 0.609375,
            "current": 1.03515625,
            "change": 0.42578125,
            "change_pct": 69.87179487179488,
            "tolerance": None,
            "status": "not gated",
            "absolute": False,
            "method": "Hodges-Lehmann",
            "n_baseline": 79,
            "n_current": 40,
            "more_requests": None,
            "note": None,
            "interval": {"low": 61.4583333334441, "high": 78.97727272741115, "unit": "percent"},
        },
        {
            "name": "latency_p90",
            "unit": "s",
            "higher_is_better": False,
            "baseline": 0.70625,
            "current": 1.193359375,
            "change": 0.48710937499999996,
            "change_pct": 68.97123893805308,
            "tolerance": None,
            "status": "not gated",
            "absolute": False,
            "method": "order statistics",
            "n_baseline": 79,
            "n_current": 40,
            "more_requests": None,
            "note": None,
            "interval": None,
        },
        {
            "name": "latency_p99",
            "unit": "s",
            "higher_is_better": False,
            "baseline": 0.75,
            "current": 1.273828125,
            "change": 0.5238281250000001,
            "change_pct": 69.84375000000001,
            "tolerance": "+10%",
            "status": "inconclusive",
            "absolute": False,
            "method": "order statistics",
            "n_baseline": 79,
            "n_current": 40,
            "more_requests": 395,
            "note": "a p99 interval needs 435 values a side",
            "interval": None,
        },
        {
            "name": "ttft_p50",
            "unit": "s",
            "higher_is_better": False,
            "baseline": 0.21875,
            "current": 0.44921875,
            "change": 0.23046875,
            "change_pct": 105.35714285714286,
            "tolerance": None,
            "status": "not gated",
            "absolute": False,
            "method": "Hodges-Lehmann",
            "n_baseline": 79,
            "n_current": 40,
            "more_requests": None,
            "note": None,
            "interval": {"low": 78.57142857157066, "high": 108.33333333348452, "unit": "percent"},
        },
        {
            "name": "ttft_p99",
            "unit": "s",
            "higher_is_better": False,
            "baseline": 0.28125,
            "current": 0.5859375,
            "change": 0.3046875,
            "change_pct": 108.33333333333333,
            "tolerance": None,
            "status": "not gated",
            "absolute": False,
            "method": "order statistics",
            "n_baseline": 79,
            "n_current": 40,
            "more_requests": None,
            "note": None,
            "interval": None,
        },
        {
            "name": "tpot_p50",
            "unit": "s",
            "higher_is_better": False,
            "baseline": 0.125,
            "current": 0.1953125,
            "change": 0.0703125,
            "change_pct": 56.25,
            "tolerance": None,
            "status": "not gated",
            "absolute": False,
            "method": "Hodges-Lehmann",
            "n_baseline": 79,
            "n_current": 40,
            "more_requests": None,
            "note": None,
            "interval": {"low": 42.85714285725349, "high": 66.66666666679296, "unit": "percent"},
        },
        {
            "name": "itl_p50",
            "unit": "s",
            "higher_is_better": False,
            "baseline": 0.125,
            "current": 0.1953125,
            "change": 0.0703125,
            "change_pct": 56.25,
            "tolerance": None,
            "status": "not gated",
            "absolute": False,
            "method": "bootstrap",
            "n_baseline": 237,
            "n_current": 120,
            "more_requests": None,
            "note": None,
            "interval": {"low": 38.888888888888886, "high": 78.57142857142858, "unit": "percent"},
        },
        # the failure share (1 of 80 -> 0 of 40): the success rate's former interval turned around
        {
            "name": "failure_share",
            "unit": "ratio",
            "higher_is_better": False,
            "baseline": 0.0125,
            "current": 0.0,
            "change": -0.0125,
            "change_pct": -100.0,
            "tolerance": None,
            "status": "not gated",
            "absolute": True,
            "method": "Newcombe",
            "n_baseline": 80,
            "n_current": 40,
            "more_requests": None,
            "note": None,
            "interval": {"low": -0.06746270077668665, "high": 0.07572374737090931, "unit": "fraction"},
        },
        {
            "name": "errors",
            "unit": "count",
            "higher_is_better": False,
            "baseline": 1,
            "current": 0,
            "change": -1,
            "change_pct": -100.0,
            "tolerance": None,
            "status": "not gated",
            "absolute": False,
            "method": "point",
            "n_baseline": 80,
            "n_current": 40,
            "more_requests": None,
            "note": None,
            "interval": None,
        },
    ],
    "regressions": [],
    "inconclusive": ["latency_p99 +69.8% no interval, tolerance +10% (n=79/40, needs 435 a side)"],
}


def test_a_comparison_of_fixed_records_is_pinned() -> None:
    cmp = compare(*compare_sides(), "latency_p99=10%,throughput=-5%")
    got = {"changes": changes_as_dicts(cmp), "regressions": cmp.regressions, "inconclusive": cmp.inconclusive}
    assert got == COMPARISON


def probe_records() -> list[Record]:
    return level_records(8, 1, 120)


# 120 requests: too few for a 95% interval of a p99 (368), so none is claimed and no close call.
PROBE: dict[str, Any] = {
    "concurrency": 8,
    "requests": 120,
    "ok": 119,
    "requests_per_s": 11.9,
    "ttft_p99_s": 0.46875,
    "ttft_p99_ci": None,
    "latency_p99_s": 1.03125,
    "latency_p99_ci": None,
    "meets": False,
    "close_call": False,
    "why": "p99 latency 1.03 s is over the SLO's 1.00 s",
}


def test_a_find_max_probe_of_fixed_records_is_pinned() -> None:
    probe = judge(8, probe_records(), 10.0, {"ttft": 0.3, "e2e": 1.0})
    assert dataclasses.asdict(probe) == PROBE
