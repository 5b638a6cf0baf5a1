"""twin/predict.py, twin/compare.py and twin/report.py: what the twin is predicted to serve, the
measured-vs-twin figures, and the page that states them."""

from __future__ import annotations

import pytest

from batchrun.report.html import render_html
from batchrun.store.records import OK, Attempt, Record
from batchrun.twin.compare import compare_fit, figure
from batchrun.twin.fit import RunRecords, fit_observations, observe
from batchrun.twin.model import GRID, Failure, Failures, Level, Output, TwinModel, Wire
from batchrun.twin.predict import answered_share, draw_level, throughput
from batchrun.twin.report import fit_document, headline


def flat(v: float) -> tuple[float, ...]:
    return (v,) * len(GRID)


def record(i: int, *, prompt: int = 10, max_tokens: int | None = None) -> Record:
    return Record(
        id=str(i),
        row=i,
        status=OK,
        sent_s=float(i),
        end_s=i + 0.5,
        ttft_s=0.1,
        latency_s=0.14,
        itl_s=[0.02, 0.02],
        prompt_tokens=prompt,
        completion_tokens=3,
        output_chunks=3,
        finish_reason="stop",
        request={"max_tokens": max_tokens} if max_tokens else None,
        attempt_log=[Attempt(OK, float(i), 0.5, 200)],
    )


def test_throughput_is_littles_law_over_answered_requests() -> None:
    assert throughput(4, [0.5, 1.5], 0.8) == pytest.approx(5.0)  # 4 / (0.8 x 1.0)
    assert throughput(4, [], 1.0) is None
    twin = TwinModel(
        levels=(Level(1.0, 30, flat(0.1)),),
        failures=Failures(100, (Failure("http_500", 5), Failure("APIConnectionError", 7, served=False))),
    )
    assert answered_share(twin) == pytest.approx(0.95)


def test_draws_follow_the_twin_and_the_requests_caps() -> None:
    twin = TwinModel(
        levels=(Level(1.0, 30, flat(0.1), 30, flat(0.02), 60, flat(1.0)),),
        output=Output(n=30, stop_n=30, stop_tokens=flat(9.0)),
        wire=Wire(tokens_per_chunk=2),
    )
    obs = observe([RunRecords("r", [record(i, max_tokens=6) for i in range(5)])])
    got = draw_level(twin, obs.ok, 1.0, n=10)
    # 9 natural tokens cut at the request's max_tokens 6 -> 3 chunks of 2 -> 2 gaps of 20 ms each
    assert got.ttft_s == pytest.approx([0.1] * 10) and got.latency_s == pytest.approx([0.14] * 10)
    assert len(got.itl_s) == 20
    assert draw_level(twin, obs.ok, 1.0, n=10, seed=3).latency_s == got.latency_s


def test_predicted_ttft_adds_the_clients_own_delay_back() -> None:
    """The twin serves TTFT net of the client's lag; what a client measures has it again."""
    twin = TwinModel(
        levels=(Level(1.0, 30, flat(0.1), 30, flat(0.02), 60, flat(1.0), lag_s=flat(0.005), lag_n=50),),
        output=Output(n=30, stop_n=30, stop_tokens=flat(3.0)),
    )
    obs = observe([RunRecords("r", [record(i) for i in range(5)])])
    got = draw_level(twin, obs.ok, 1.0, n=10)
    assert got.ttft_s == pytest.approx([0.105] * 10) and got.latency_s == pytest.approx([0.145] * 10)


def test_a_figure_says_its_change_and_whether_noise_explains_it() -> None:
    measured = [0.1 + 0.001 * i for i in range(100)]  # p50 0.1495, p90 0.1891
    fig = figure("ttft_s", measured, [v * 1.2 for v in measured])
    assert fig.change(50) == pytest.approx(0.2)
    assert fig.within_noise(50) is False
    same = figure("ttft_s", measured, measured)
    assert same.change(90) == 0.0 and same.within_noise(90) is True
    assert figure("ttft_s", measured[:3], measured[:3]).within_noise(90) is None  # too few for an interval


def test_compare_and_page_for_a_fitted_twin() -> None:
    runs = [RunRecords("r", [record(i) for i in range(40)])]
    obs = observe(runs)
    twin = fit_observations(obs, runs)
    comp = compare_fit(twin, obs, draws=200)
    (level,) = comp.levels
    assert [f.key for f in level.figures] == ["ttft_s", "latency_s", "itl_s"]
    assert all(f.change(50) == pytest.approx(0.0) for f in level.figures)  # every request alike: exact
    (run,) = comp.runs
    assert run.completed == 40 and run.measured_rps == pytest.approx(40 / 39.5)
    # 1 request in flight half the time (0.5 s of every 1 s; Little: 0.5) over 0.14 s each
    assert run.in_flight == pytest.approx(20 / 39.5) and run.twin_rps == pytest.approx(run.in_flight / 0.14)
    assert "within 0.0% of the measured" in headline(comp)
    page = render_html(fit_document(twin, comp))
    assert "What the twin holds" in page and "one level only (in flight 1, n=40)" in page
    assert page.count('<div class="plot"') == 3  # one level: its three CDFs, no per-level lines
