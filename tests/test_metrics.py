"""metrics.py (the run summary) on tiny literal inputs; every expected value is worked out by hand in a comment."""

from __future__ import annotations

import pytest

from batchrun.analysis.distribution import GapSample
from batchrun.analysis.metrics import cached_share, loop_lag, summarize
from batchrun.analysis.request_figures import meets_slo, tpot
from batchrun.store.records import Record

approx = pytest.approx


def ok(
    id: str,
    *,
    sent: float = 0.0,
    ttft: float = 0.1,
    itl: list[float] | None = None,
    tokens: int | None = None,
    prompt: int | None = 5,
    **kw,
) -> Record:
    """An ok record whose latency is ttft + sum(itl), as the client guarantees."""
    itl = itl or []
    latency = ttft + sum(itl)
    tokens = len(itl) + 1 if tokens is None else tokens
    return Record(
        id=id,
        row=0,
        status="ok",
        sent_s=sent,
        end_s=sent + latency,
        ttft_s=ttft,
        latency_s=latency,
        total_s=latency,
        itl_s=itl,
        output_chunks=len(itl) + 1,
        completion_tokens=tokens,
        prompt_tokens=prompt,
        finish_reason="stop",
        **kw,
    )


def failed(
    id: str,
    status: str = "error",
    error_type: str | None = "APIError",
    *,
    sent: float | None = 0.0,
    end: float | None = 1.0,
) -> Record:
    return Record(id=id, row=0, status=status, error_type=error_type, error="boom", sent_s=sent, end_s=end)


def skipped(id: str) -> Record:
    return Record(id=id, row=0, status="skipped", error="column 'text' is empty")


# ---------------------------------------------------------------- TPOT, ITL and token cases


def test_tpot_excludes_one_token_requests():
    one = ok("a", ttft=0.2, tokens=1)
    two = ok("b", ttft=0.2, itl=[0.1], tokens=2)
    assert tpot(one) is None
    assert tpot(two) == approx(0.1)  # (0.3 - 0.2) / (2 - 1)
    s = summarize([one, two])
    assert s["tpot_s"]["count"] == 1 and s["tpot_s"]["mean"] == approx(0.1)
    assert s["itl_s"]["count"] == 1  # the 1-token request has no gap


def test_multi_token_chunks_count_each_gap_once_and_tpot_per_token():
    # 3 chunks carrying 10 tokens: ttft 0.5, gaps 0.2 and 0.3, latency 1.0
    r = ok("a", ttft=0.5, itl=[0.2, 0.3], tokens=10)
    s = summarize([r])
    assert s["itl_s"]["count"] == 2
    assert s["itl_s"]["mean"] == approx(0.25)
    assert s["tpot_s"]["p50"] == approx(0.5 / 9)  # (1.0 - 0.5) / (10 - 1)
    assert s["latency_s"]["p50"] == approx(1.0)


def test_itl_gaps_are_pooled_across_ok_requests():
    s = summarize([ok("a", itl=[0.1, 0.3]), ok("b", itl=[0.2]), failed("c")])
    # pooled gaps 0.1, 0.2, 0.3: median 0.2; the failed record adds none
    assert (s["itl_s"]["count"], s["itl_s"]["p50"]) == (3, approx(0.2))


# ---------------------------------------------------------------- counts and rates


def test_no_successes():
    s = summarize([failed("a"), failed("b", "timeout", "APITimeoutError", sent=1.0, end=3.0)])
    assert s["counts"]["ok"] == 0 and s["counts"]["attempted"] == 2
    assert s["success_rate"] == 0.0
    assert s["latency_s"]["count"] == 0 and s["latency_s"]["p50"] is None
    assert s["wall_time_s"] == 3.0  # max end 3.0 - min sent 0.0
    assert s["throughput"]["requests_per_s"] == 0.0
    assert any("no request succeeded" in w for w in s["warnings"])


def test_empty_run():
    s = summarize([])
    assert s["counts"]["total"] == 0 and s["success_rate"] is None
    assert s["wall_time_s"] is None and s["throughput"]["requests_per_s"] is None
    assert s["in_flight"] == {"peak": 0, "mean": None}


def test_failed_and_skipped_rows_mixed_in():
    records = [
        ok("a", ttft=0.1, itl=[0.1]),  # latency 0.2
        ok("b", sent=1.0, ttft=0.3, itl=[0.5]),  # latency 0.8
        failed("c", "error", "RateLimitError", sent=0.0, end=9.0),  # a failure must not stretch latency
        failed("d", "timeout", None, sent=0.5, end=2.0),
        failed("e", "cancelled", None, sent=None, end=None),
        skipped("f"),
    ]
    s = summarize(records)
    c = s["counts"]
    assert (c["ok"], c["error"], c["timeout"], c["cancelled"], c["skipped"]) == (2, 1, 1, 1, 1)
    assert (c["total"], c["attempted"]) == (6, 5)
    # Over finished requests: neither the skipped row nor the cancelled one is in the denominator.
    assert s["success_rate"] == approx(2 / 4)
    assert (c["finished"], c["sent"], c["never_sent"]) == (4, 4, 1)
    assert s["by_error_type"] == {"RateLimitError": 1, "timeout": 1, "cancelled": 1}
    assert s["by_finish_reason"] == {"stop": 2}
    assert (s["latency_s"]["count"], s["latency_s"]["max"]) == (2, approx(0.8))
    assert s["wall_time_s"] == approx(9.0)  # failed requests were sent: they count in wall time


def test_throughputs_over_default_wall_time():
    # a: sent 0, ends 1.0; b: sent 2, ends 4.0 -> wall time 4.0
    a = ok("a", ttft=0.5, itl=[0.5], tokens=10, prompt=5)
    b = ok("b", sent=2.0, ttft=1.0, itl=[1.0], tokens=20, prompt=5)
    s = summarize([a, b, skipped("c")])
    assert s["wall_time_s"] == approx(4.0) and s["wall_time_source"] == "records"
    t = s["throughput"]
    assert t["requests_per_s"] == approx(0.5)  # 2 / 4
    assert t["output_tokens_per_s"] == approx(7.5)  # 30 / 4
    assert t["total_tokens_per_s"] == approx(10.0)  # (30 + 10) / 4
    assert s["tokens"] == {"prompt": 10, "completion": 30, "estimated_records": 0}


def test_given_wall_time_wins_and_must_be_positive():
    s = summarize([ok("a", tokens=4)], wall_time_s=2.0)
    assert (s["wall_time_s"], s["wall_time_source"]) == (2.0, "given")
    assert s["throughput"]["output_tokens_per_s"] == approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        summarize([], wall_time_s=0)


def test_queue_wait_covers_every_sent_record():
    rs = [ok("a", queue_wait_s=0.5), failed("b"), skipped("c")]
    rs[1].queue_wait_s = 1.5
    s = summarize(rs)
    assert (s["queue_wait_s"]["count"], s["queue_wait_s"]["mean"]) == (2, approx(1.0))


def test_estimated_tokens_are_counted_and_warned():
    s = summarize([ok("a", tokens_estimated=True), ok("b")])
    assert s["tokens"]["estimated_records"] == 1
    assert any("estimated token counts" in w for w in s["warnings"])


def test_estimated_tokens_of_failed_rows_are_not_warned_about():
    cut = failed("b")
    cut.tokens_estimated = True  # a stream cut after some output: no usage, but no answer either
    s = summarize([ok("a"), cut])
    assert s["tokens"]["estimated_records"] == 0
    assert not any("estimated token counts" in w for w in s["warnings"])


def test_empty_answers_ignored_tool_choice_and_reconnects_on_hand_counted_records():
    # 4 ok (2 empty: one stopped, one cut at max_tokens; 1 text despite a forced tool call),
    # 1 failed; attempts 1+1+2+1+3 = 8, re-sends 1+0+1+0+1 = 3 (a failed row's count too).
    rs = [
        ok("a", empty=True, reconnects=1, attempts=1),
        ok("b", empty=True, attempts=1),
        ok("c", tool_choice_ignored=True, reconnects=1, attempts=2),
        ok("d", attempts=1),
        failed("e"),
    ]
    rs[1].finish_reason = "length"
    rs[4].attempts, rs[4].reconnects = 3, 1
    rs[4].empty = rs[4].tool_choice_ignored = True  # flags on a failed row are not counted
    s = summarize(rs)
    assert (s["empty"], s["empty_by_finish_reason"], s["tool_choice_ignored"]) == (2, {"stop": 1, "length": 1}, 1)
    assert (s["reconnects"], s["reconnect_share"]) == (3, approx(3 / (8 + 3)))
    warned = " ".join(s["warnings"])
    assert "2 of 4 ok answers are empty" in warned and "1 of them stopped at max_tokens" in warned
    assert "1 of 4 ok answers are text although the request forced a tool call" in warned
    assert "closed 3 pooled connections (27% of sends)" in warned


def test_a_reconnect_share_under_one_percent_is_counted_not_warned():
    rs = [ok(f"r{i}", attempts=1) for i in range(100)]
    rs[0].reconnects = 1
    s = summarize(rs)
    assert (s["reconnects"], s["reconnect_share"]) == (1, approx(1 / 101))
    assert not any("pooled connections" in w for w in s["warnings"])
    quiet = summarize([ok("a", attempts=1)])
    assert (quiet["reconnects"], quiet["empty"], quiet["tool_choice_ignored"]) == (0, 0, 0)
    assert quiet["warnings"] == []


def test_tool_call_stats():
    good = {"id": "c1", "name": "f", "valid": True}
    bad = {"id": "c2", "name": "f", "valid": False}
    rounds = [
        {"ttft_s": 0.2, "tool_results": [{"status": "ok"}, {"status": "error"}]},
        {"ttft_s": 0.5, "tool_results": [{"status": "ok"}]},
        {"ttft_s": 0.3, "tool_results": None},
    ]
    rs = [ok("a", tool_calls=[good, bad, good], rounds=rounds), ok("b", tool_calls=[], rounds=[{}]), ok("c")]
    t = summarize(rs)["tool_calls"]
    assert (t["records_with_tool_calls"], t["tool_calls"], t["invalid_arguments"]) == (1, 3, 1)
    assert (t["rounds"]["count"], t["rounds"]["mean"]) == (2, 2.0)
    assert t["tool_results"] == {"ok": 2, "error": 1}
    assert t["first_round_ttft_s"]["p50"] == 0.2 and t["final_answer_ttft_s"]["p50"] == 0.3


# ---------------------------------------------------------------- SLO and goodput


def test_goodput_counts_ok_requests_meeting_every_bound():
    slo = {"ttft": 0.5, "tpot": 0.05, "e2e": 2.0}
    rs = [
        ok("pass", ttft=0.5, itl=[0.04, 0.04], tokens=3),  # ttft on the bound, tpot 0.04, e2e 0.58
        ok("slow_ttft", ttft=0.6, itl=[0.01], tokens=2),
        ok("slow_tpot", ttft=0.1, itl=[0.2], tokens=3),  # tpot 0.2 / 2 = 0.1
        ok("slow_e2e", ttft=0.1, itl=[2.0], tokens=101),  # tpot 0.02 but e2e 2.1
        ok("one_token", ttft=0.2, tokens=1),  # no decode phase: passes tpot
        failed("err"),  # fast but failed
    ]
    s = summarize(rs, wall_time_s=10.0, slo=slo)
    assert s["goodput"] == {"slo": slo, "requests": 2, "requests_per_s": approx(0.2)}
    assert summarize(rs)["goodput"] is None


def test_meets_slo_fails_when_tokens_unknown():
    r = ok("a", ttft=0.1, itl=[0.1])
    r.completion_tokens = None
    assert not meets_slo(r, {"tpot": 1.0})
    assert meets_slo(r, {"ttft": 1.0})


def test_summarize_rejects_bad_slo_dict():
    with pytest.raises(ValueError, match="unknown SLO"):
        summarize([], slo={"itl": 0.1})


# ---------------------------------------------------------------- loop lag


def test_loop_lag_saturation_flag_and_warning():
    samples = [0.001] * 98 + [0.05, 0.1]
    lag = loop_lag(samples)
    # rank 99 * 0.99 = 98.01 -> 0.05 + 0.01 * (0.1 - 0.05)
    assert lag["p99_s"] == approx(0.0505) and lag["max_s"] == 0.1 and lag["p50_s"] == approx(0.001)
    assert lag["client_saturated"] is True
    s = summarize([ok("a")], loop_lag_s=samples)
    assert any("include client-side queueing" in w for w in s["warnings"])


def test_loop_lag_below_threshold_and_absent():
    assert loop_lag([0.001, 0.002, 0.019])["client_saturated"] is False
    assert loop_lag(None) is None
    assert summarize([ok("a")])["warnings"] == []


# ---------------------------------------------------------------- ITL sample for huge runs


def test_a_gap_sample_below_capacity_gives_the_exact_itl_figures():
    exact = GapSample(capacity=10)
    exact.add([0.1, 0.2])
    exact.add([0.3])
    assert (list(exact.values), exact.seen) == ([0.1, 0.2, 0.3], 3)
    s = summarize([ok("a", itl=[0.1, 0.2]), ok("b", itl=[0.3])], itl_sample=exact)
    assert s["itl_s"]["count"] == 3 and s["itl_s"]["population"] == 3 and s["itl_s"]["p50"] == approx(0.2)


# ---------------------------------------------------------------- e2el, zero gaps, open-loop schedule


def test_e2el_is_send_to_the_end_of_the_stream_and_latency_stays_to_the_last_token():
    r = ok("a", ttft=0.1, itl=[0.2, 0.3])
    r.total_s = 0.65  # a trailing finish / usage chunk 50 ms after the last token
    s = summarize([r])
    assert s["latency_s"]["p50"] == approx(0.6) and s["e2el_s"]["p50"] == approx(0.65)
    assert s["e2el_s"]["count"] == 1


def test_share_of_zero_itl_gaps():
    s = summarize([ok("a", itl=[0.0, 0.0, 0.1]), ok("b", itl=[0.2])])
    assert s["itl_s"]["zero_share"] == approx(0.5)  # 2 of 4 gaps arrived in one read
    assert summarize([ok("c")])["itl_s"]["zero_share"] is None


def test_open_loop_figures_count_from_the_planned_send():
    on_time = ok("a", sent=1.0, ttft=0.1, itl=[0.1], scheduled_s=1.0)
    late = ok("b", sent=2.5, ttft=0.1, itl=[0.1], scheduled_s=2.0)  # left 0.5 s behind schedule
    s = summarize([on_time, late])
    sched = s["schedule"]
    assert sched["send_lag_s"]["max"] == approx(0.5) and sched["send_lag_s"]["min"] == 0
    assert sched["ttft_s"]["max"] == approx(0.6) and sched["latency_s"]["max"] == approx(0.7)
    assert s["ttft_s"]["max"] == approx(0.1)  # from the actual send, as before
    assert any("fell behind the arrival schedule" in w for w in s["warnings"])
    assert summarize([ok("c")])["schedule"] is None


def test_loop_lag_large_against_itl_is_warned():
    s = summarize([ok("a", itl=[0.004, 0.004, 0.004])], loop_lag_s=[0.003] * 10)
    assert not s["loop_lag"]["client_saturated"]
    assert any("large against the median ITL 4.0 ms" in w for w in s["warnings"])


def test_an_interrupted_runs_counts_split_cancelled_rows():
    sent_and_cut = Record(id="c", row=2, status="cancelled", attempts=1, sent_s=0.5, end_s=0.7)
    never_sent = Record(id="d", row=3, status="cancelled")
    s = summarize([ok("a"), failed("b"), sent_and_cut, never_sent])
    c = s["counts"]
    assert (c["sent"], c["never_sent"], c["cancelled"], c["finished"]) == (3, 1, 2, 2)
    assert s["success_rate"] == approx(1 / 2)


def test_a_resumed_runs_sessions_are_never_laid_on_one_timeline():
    # Two sessions of 2 concurrent requests each, both counted from their own start at 0.
    first = [ok("a", sent=0.0, ttft=1.0), ok("b", sent=0.0, ttft=1.0)]
    second = [ok("c", sent=0.0, ttft=1.0, session=2), ok("d", sent=0.0, ttft=1.0, session=2)]
    s = summarize(first + second)
    assert s["in_flight"] == {"peak": 2, "mean": approx(2.0)}  # one timeline would say 4
    assert s["wall_time_s"] == approx(2.0)  # 1 s per session, summed
    assert s["throughput"]["requests_per_s"] == approx(4 / 2.0)


def test_cached_share_is_cached_over_prompt_tokens_of_ok_records_that_say():
    # (90 + 0) cached of (100 + 100) prompt tokens; the failed record and the one whose server
    # said nothing are left out.
    records = [
        ok("a", prompt=100, cached_tokens=90),
        ok("b", prompt=100, cached_tokens=0),
        ok("c", prompt=100),
        failed("d"),
    ]
    records[3].cached_tokens, records[3].prompt_tokens = 50, 50
    assert cached_share(records) == approx(90 / 200)
    assert cached_share([ok("e", prompt=100)]) is None
