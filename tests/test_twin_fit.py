"""The fit is a pure function: hand-built records in, parameters whose values are worked out
by hand here (see batchrun/twin/fit.py for the definitions)."""

from __future__ import annotations

import math

import pytest

from batchrun.store.records import ERROR, OK, TIMEOUT, Attempt, Record
from batchrun.twin.fit import (
    MIN_LEVEL,
    RunRecords,
    fit_failures,
    fit_twin,
    fit_wire,
    group_levels,
    in_flight_at,
    observe,
    prefill_slope,
    quantile_table,
)
from batchrun.twin.inflight import loads_at
from batchrun.twin.model import GRID, Failure


def ok(
    i: int,
    sent: float,
    duration: float,
    *,
    ttft: float = 0.1,
    itl: list[float] | None = None,
    prompt: int | None = 100,
    tokens: int = 3,
    chunks: int | None = None,
    finish: str = "stop",
    usage: str | None = "trailing",
    session: int = 1,
    request: dict | None = None,
) -> Record:
    gaps = [0.01, 0.03] if itl is None else itl
    return Record(
        id=str(i),
        row=i,
        status=OK,
        http_status=200,
        sent_s=sent,
        end_s=sent + duration,
        ttft_s=ttft,
        latency_s=ttft + sum(gaps),
        total_s=duration,
        itl_s=gaps,
        prompt_tokens=prompt,
        completion_tokens=tokens,
        output_chunks=len(gaps) + 1 if chunks is None else chunks,
        finish_reason=finish,
        usage_chunk=usage,
        session=session,
        request=request,
        model="m1",
        attempts=1,
        attempt_log=[Attempt(OK, sent, duration, 200)],
    )


def sequential(n: int, start: int = 0, **kw: object) -> list[Record]:
    """n requests one after another (1 s apart, 0.5 s each): each sent with 1 in flight."""
    return [ok(start + i, float(start + i), 0.5, **kw) for i in range(n)]  # type: ignore[arg-type]


def test_in_flight_at_counts_the_spans_holding_the_instant_half_open() -> None:
    # spans [0, 1), [0.5, 2), [1, 1.5)
    starts, ends = [0.0, 0.5, 1.0], [1.0, 1.5, 2.0]
    assert in_flight_at(starts, ends, 0.0) == 1
    assert in_flight_at(starts, ends, 0.5) == 2
    assert in_flight_at(starts, ends, 1.0) == 2  # the first ended at 1.0, the third began
    assert in_flight_at(starts, ends, 1.7) == 1


def test_observe_counts_every_attempt_of_a_run_and_keeps_sessions_apart() -> None:
    retried = ok(1, 0.2, 0.5)
    retried.attempt_log = [Attempt(ERROR, 0.0, 0.1, 500), Attempt(OK, 0.2, 0.5, 200)]
    other = ok(2, 0.0, 1.0)
    resumed = ok(3, 0.25, 0.5, session=2)  # another clock: never counted with session 1
    obs = observe([RunRecords("r", [retried, other, resumed])])
    counts = {o.record.id: o.in_flight for o in obs.ok}
    # "1" at 0.2: itself and "2" (its failed attempt ended at 0.1); "2" at 0.0: itself and that attempt
    assert counts == {"1": 2, "2": 2, "3": 1}
    assert len(obs.attempts) == 4
    assert [t.name for t in obs.runs] == ["r", "r (session 2)"]


def test_group_levels_closes_a_level_at_min_n_and_puts_a_sparse_top_into_the_last() -> None:
    values = [1] * 30 + [2] * 5 + [3] * 40 + [4] * 2
    groups = group_levels(values, 30)
    assert [sorted({values[i] for i in g}) for g in groups] == [[1], [2, 3, 4]]
    assert [len(g) for g in groups] == [30, 47]
    assert [len(g) for g in group_levels([5] * 7, 30)] == [7]  # too few for any level: one level


def test_quantile_table_is_numpy_linear_at_each_grid_point() -> None:
    table = quantile_table([0.0, 1.0, 2.0, 3.0, 4.0])
    assert len(table) == len(GRID)
    assert table[GRID.index(0.5)] == 2.0
    assert table[GRID.index(0.9)] == pytest.approx(3.6)  # rank 0.9 x 4 = 3.6
    assert table[0] == 0.0 and table[-1] == 4.0


def _prefill_records() -> list[Record]:
    # TTFT = 0.1 + 0.001 x prompt tokens, prompts of 100 and 300 tokens alternating
    return [ok(i, float(i), 0.5, prompt=p, ttft=0.1 + 0.001 * p) for i, p in enumerate([100, 300] * 20)]


def test_prefill_slope_from_group_medians() -> None:
    obs = observe([RunRecords("r", _prefill_records())])
    # one level; 40 requests -> min(4, 40 // 10) = 4 groups of 10: medians (100, 0.2), (100, 0.2),
    # (300, 0.4), (300, 0.4); centred on (200, 0.3): slope = 4 x 100 x 0.1 / (4 x 100^2) = 0.001
    slope, used = prefill_slope([obs.ok])
    assert slope == pytest.approx(0.001) and used == 40


def test_prefill_not_fitted_when_every_prompt_has_one_length() -> None:
    obs = observe([RunRecords("r", sequential(40))])
    assert prefill_slope([obs.ok]) == (0.0, 0)


def test_fit_one_level_by_hand() -> None:
    records = _prefill_records()
    twin = fit_twin([RunRecords("r", records)])
    (level,) = twin.levels
    assert level.in_flight == 1.0 and level.n == 40
    # Moved to the reference length 200 (the median prompt): 0.1 + 0.001 x 200 = 0.3 for every request.
    assert set(level.ttft_s) == {0.3}
    assert twin.prompt.ref_tokens == 200 and twin.prompt.prefill_s_per_token == pytest.approx(0.001)
    # Every request's gaps are (0.01, 0.03): mean 0.02, ratios 0.5 and 1.5 (40 of each).
    assert set(level.gap_mean_s) == {0.02} and level.gap_requests == 40 and level.gaps == 80
    assert level.gap_ratio[0] == 0.5 and level.gap_ratio[-1] == 1.5
    assert level.gap_ratio[GRID.index(0.5)] == 1.0  # between rank 39 (0.5) and 40 (1.5)
    assert twin.model == "m1"
    assert any("one level only (in flight 1, n=40)" in note for note in twin.notes)
    assert "TTFT vs prompt length: 1 ms per 1,000 prompt tokens (n=40), around 200 tokens" in twin.notes


def test_ttft_and_gaps_served_at_a_level_reproduce_the_records() -> None:
    twin = fit_twin([RunRecords("r", _prefill_records())])
    assert twin.ttft_s(1, 0.5, 100) == pytest.approx(0.2)  # 0.3 at 200 tokens, 0.1 less at 100
    assert twin.ttft_s(1, 0.5, 300) == pytest.approx(0.4)
    scale = twin.ratio_mean(1, [0.0, 1.0])  # ratios 0.5 and 1.5: mean 1
    assert scale == pytest.approx(1.0)
    assert twin.gap_s(1, 0.3, 0.0, scale) == pytest.approx(0.01)
    assert twin.gap_s(1, 0.3, 1.0, scale) == pytest.approx(0.03)


def test_two_levels_from_two_runs() -> None:
    slow = [ok(i, float(i // 4), 0.5, ttft=0.4) for i in range(40)]  # four sent together: 4 in flight
    twin = fit_twin([RunRecords("one", sequential(40)), RunRecords("four", slow)])
    assert [lv.in_flight for lv in twin.levels] == [1.0, 4.0]
    assert [lv.ttft_s[0] for lv in twin.levels] == [0.1, 0.4]
    assert twin.ttft_s(2.5, 0.5, 100) == pytest.approx(0.25)  # halfway: interpolated
    assert twin.ttft_s(8, 0.5, 100) == pytest.approx(0.4 + 0.1 * 4)  # +0.3 s over 3 in flight, beyond: extrapolated
    assert twin.ttft_s(0.5, 0.5, 100) == pytest.approx(0.1)  # below the lowest: held


def test_output_lengths_and_the_cap() -> None:
    records = sequential(30, tokens=3) + sequential(10, start=30, tokens=5, finish="length")
    twin = fit_twin([RunRecords("r", records)])
    out = twin.output
    assert (out.n, out.length_n, out.cap, out.stop_n) == (40, 10, 5, 30)
    assert set(out.stop_tokens) == {3.0}
    assert twin.answer_tokens(0.1, cap=8) == 9  # rank < 25%: cut by the cap: runs past the request's cap
    assert twin.answer_tokens(0.1, cap=None) == 5  # ... or to the source's cap
    assert twin.answer_tokens(0.6, cap=8) == 3
    assert any("10 of 40 answers (25%) were cut by max_tokens (up to 5)" in n for n in twin.notes)


def test_failures_per_attempt_most_common_first() -> None:
    def attempt(status: str, http: int | None, error_type: str | None = None) -> Attempt:
        return Attempt(status, 0.0, 0.1, http, error_type)

    attempts = (
        [attempt(OK, 200)] * 5
        + [attempt(ERROR, 500, "InternalServerError")] * 2
        + [
            attempt(ERROR, 429, "RateLimitError"),
            attempt(ERROR, 200, "IncompleteStream"),
            attempt(ERROR, None, "APIConnectionError"),
            attempt(TIMEOUT, None, "APITimeoutError"),
        ]
    )
    got = fit_failures(attempts, limiter=False)
    assert got.attempts == 11
    assert got.kinds == (
        Failure("http_500", 2),
        Failure("APIConnectionError", 1, served=False),
        Failure("cut", 1),
        Failure("http_429", 1),
        Failure("timeout", 1),
    )
    assert got.share(got.kinds[0]) == pytest.approx(2 / 11)
    limited = fit_failures(attempts, limiter=True)
    assert Failure("http_429", 1, served=False) in limited.kinds


def test_rate_limits_from_the_summary_leave_429s_to_the_limiter() -> None:
    records = sequential(30)
    records[0].attempt_log.insert(0, Attempt(ERROR, -0.5, 0.01, 429, "RateLimitError"))
    limits = {"source": "openai", "requests_per_min": 500.0, "tokens_per_min": 30000.5}
    twin = fit_twin([RunRecords("r", records, rate_limits=limits)])
    assert (twin.rate_limits.headers, twin.rate_limits.rpm, twin.rate_limits.tpm) == ("openai", 500, 30000)
    assert not twin.fails
    assert any("left to the twin's rate limiter" in n for n in twin.notes)


def test_wire_tokens_per_chunk_and_usage_placement() -> None:
    records = sequential(5, tokens=6, usage="finish") + sequential(2, start=5, tokens=6, usage="trailing")
    wire = fit_wire(records)  # 6 tokens in 3 chunks: 2 per chunk
    assert (wire.tokens_per_chunk, wire.chunk_n, wire.usage, wire.usage_n) == (2, 7, "finish", 7)
    # llama-server holds a byte token back until it completes a character: 32 tokens in 27 and in
    # 28 chunks is 64 / 55 tokens a chunk, so a twin streams 32 tokens in ceil(32 x 55 / 64) = 28
    merged = [ok(0, 0.0, 0.5, tokens=32, chunks=27), ok(1, 1.0, 0.5, tokens=32, chunks=28)]
    assert fit_wire(merged).tokens_per_chunk == pytest.approx(64 / 55)
    assert fit_wire([ok(0, 0.0, 0.5, tokens=3, chunks=5)]).tokens_per_chunk == 1.0  # never under one
    no_usage = sequential(3)
    for r in no_usage:
        r.tokens_estimated, r.usage_chunk = True, None
    assert fit_wire(no_usage).usage == "none"


def test_chars_per_token_from_saved_requests() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 350}]}
    twin = fit_twin([RunRecords("r", sequential(MIN_LEVEL, request=body))])  # 350 characters, 100 tokens
    assert (twin.prompt.chars_per_token, twin.prompt.chars_n) == (3.5, MIN_LEVEL)


def test_nothing_to_fit_is_a_value_error() -> None:
    failed = Record(
        id="1", row=0, status=ERROR, http_status=500, sent_s=0.0, end_s=0.1, attempt_log=[Attempt(ERROR, 0.0, 0.1, 500)]
    )
    with pytest.raises(ValueError, match="no successful request"):
        fit_twin([RunRecords("r", [failed])])


def closed_loop(workers: int, waves: int, service: float = 0.1, turnaround: float = 0.001) -> list[Record]:
    """`workers` clients sending back to back in lockstep: every request takes `service` s and
    each worker sends its next one `turnaround` s after its last ended, worker k 0.2 ms after
    worker k - 1, so in every wave worker k sees itself and the k before it in flight (the rest
    are between requests): 1, 2, 3, ... though the server is hardly ever without all of them."""
    return [
        ok(w * workers + k, w * (service + turnaround) + k * 0.0002, service)
        for w in range(waves)
        for k in range(workers)
    ]


def test_a_closed_loop_is_one_level_though_its_requests_meet_dips() -> None:
    """The count at send is 1, 2, 3 and 4 in every wave (the others are between requests), but
    the server is busy with 4 nearly all the time: the load (its recent average) puts every
    request after the first waves (while the average builds up) at about 4, one level."""
    records = closed_loop(4, 40)
    obs = observe([RunRecords("c4", records)])
    assert sorted(o.in_flight for o in obs.ok if o.record.sent_s > 0.5)[0] > 3.9  # the dips are bridged
    assert sorted({o.record.id: in_flight_at(*_starts_ends(records), o.record.sent_s) for o in obs.ok}.values())[0] == 1
    twin = fit_twin([RunRecords("c4", records)])
    assert [round(lv.in_flight) for lv in twin.levels] == [4] and twin.levels[0].n == 160


def _starts_ends(records: list[Record]) -> tuple[list[float], list[float]]:
    return sorted(r.sent_s for r in records), sorted(r.end_s for r in records)  # type: ignore[type-var]


def test_loads_at_counts_the_arriving_request_and_averages_the_time_before() -> None:
    spans = [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0)]
    # with a tiny window the load is the count: a span ending at t no longer counts, one starting does
    assert loads_at(spans, [0.0, 0.5, 1.0, 1.7], window_s=1e-9) == [1.0, 2.0, 2.0, 1.0]
    # window 1 s: at 1.7 the count is 1; the average was 2 from 0.5 to 1.5 and 1 after it:
    # a(0.5) = 1 - e^-0.5; a(1.5) = 2 + (a(0.5) - 2) e^-1; a(1.7) = 1 + (a(1.5) - 1) e^-0.2
    a05 = 1 - math.exp(-0.5)
    a15 = 2 + (a05 - 2) * math.exp(-1)
    assert loads_at(spans, [1.7], window_s=1.0)[0] == pytest.approx(1 + (a15 - 1) * math.exp(-0.2))


def test_ttft_and_mean_gap_rank_correlation_per_level() -> None:
    # the slower the first token, the faster the rest: TTFT 0.1 + i ms, gaps 50 - i ms
    falling = [ok(i, float(i), 0.5, ttft=0.1 + 0.001 * i, itl=[0.05 - 0.001 * i] * 2) for i in range(40)]
    assert fit_twin([RunRecords("r", falling)]).levels[0].ttft_gap_rho == pytest.approx(-1.0)
    assert fit_twin([RunRecords("r", sequential(40))]).levels[0].ttft_gap_rho == 0.0  # constant: none


def test_the_clients_own_lag_is_taken_out_of_the_ttft_table() -> None:
    lag = tuple(0.002 for _ in GRID)
    twin = fit_twin([RunRecords("r", sequential(40), lag_s=lag, lag_n=200)])
    (level,) = twin.levels
    assert (
        level.ttft_s == pytest.approx(tuple(0.098 for _ in GRID)) and level.lag_n == 200
    )  # 0.1 measured, 2 ms the client's
    assert twin.client_lag_s(1, 0.5) == pytest.approx(0.002)
    assert any(
        n.startswith("client delay: the TTFT tables are net of one copy") and "p50 2 ms" in n for n in twin.notes
    )
    bare = fit_twin([RunRecords("r", sequential(40))])
    assert set(bare.levels[0].ttft_s) == {0.1} and bare.levels[0].lag_s is None
    assert any(n.startswith("client delay: no event-loop lag recorded") for n in bare.notes)


def test_a_saturated_clients_run_is_named_in_the_notes() -> None:
    twin = fit_twin(
        [RunRecords("calm", sequential(30)), RunRecords("busy", sequential(30, start=30), client_saturated=True)]
    )
    assert any(n.startswith("client saturated in busy:") for n in twin.notes)
    assert not any("calm" in n and "saturated" in n for n in twin.notes)
