"""twin/model.py: the draws a twin serves, and its JSON form (values worked out by hand)."""

from __future__ import annotations

import json

import pytest

from batchrun.twin.model import GRID, Failure, Failures, Level, Output, TwinError, TwinModel, at


def flat(value: float) -> tuple[float, ...]:
    return (value,) * len(GRID)


def linear(lo: float, hi: float) -> tuple[float, ...]:
    """A uniform distribution on [lo, hi]: its quantile at p is lo + p (hi - lo)."""
    return tuple(lo + g * (hi - lo) for g in GRID)


def model(**kw: object) -> TwinModel:
    levels = kw.pop("levels", (Level(1.0, 50, linear(0.1, 0.2), 50, flat(0.01), 100, flat(1.0)),))
    return TwinModel(levels=levels, **kw)  # type: ignore[arg-type]


def test_table_reads_linearly_between_grid_points() -> None:
    table = linear(0.0, 1.0)
    assert at(GRID, table, 0.5) == pytest.approx(0.5)
    assert at(GRID, table, 0.013) == pytest.approx(0.013)  # between the 1% and 2.5% points
    assert at(GRID, table, 1.0) == 1.0 and at(GRID, table, 0.0) == 0.0


def test_levels_interpolate_hold_and_extrapolate() -> None:
    twin = model(levels=(Level(2.0, 40, flat(0.1)), Level(6.0, 40, flat(0.3))))
    assert twin.ttft_s(1, 0.5, 0) == pytest.approx(0.1)  # below the lowest level: held
    assert twin.ttft_s(3, 0.5, 0) == pytest.approx(0.15)  # a quarter of the way from 2 to 6
    assert twin.ttft_s(10, 0.5, 0) == pytest.approx(0.5)  # +0.05 s per request past 6
    falling = model(levels=(Level(2.0, 40, flat(0.3)), Level(6.0, 40, flat(0.1))))
    assert falling.ttft_s(10, 0.5, 0) == pytest.approx(0.1)  # a falling slope is held flat


def test_gaps_without_gap_tables_are_zero() -> None:
    twin = model(levels=(Level(1.0, 40, flat(0.1)),))
    assert twin.gap_s(1, 0.5, 0.5) == 0.0 and twin.ratio_mean(1, [0.2]) == 1.0


def test_failure_draw_over_cumulative_shares_skips_unserved_kinds() -> None:
    failures = Failures(
        attempts=100, kinds=(Failure("http_500", 5), Failure("APIConnectionError", 50, served=False), Failure("cut", 3))
    )
    twin = model(failures=failures)
    assert [k.kind if (k := twin.failure(u)) else None for u in (0.0, 0.049, 0.05, 0.079, 0.08)] == [
        "http_500",
        "http_500",
        "cut",
        "cut",
        None,
    ]


def test_stop_lengths_after_the_cut_share() -> None:
    twin = model(output=Output(n=100, length_n=20, cap=64, stop_n=80, stop_tokens=linear(10, 20)))
    assert twin.output_tokens(0.19) is None
    assert twin.output_tokens(0.6) == 15  # (0.6 - 0.2) / 0.8 = 0.5 of the stop table
    assert twin.answer_tokens(0.1, None) == 64 and twin.answer_tokens(0.1, 32) == 33


def test_json_keeps_six_digits_and_reads_back_the_same_model() -> None:
    twin = model(model="m", notes=("a note",), failures=Failures(10, (Failure("http_503", 1),), 1.5))
    data = json.loads(json.dumps(twin.to_dict()))
    back = TwinModel.from_dict(data)
    assert back.levels[0].ttft_s == pytest.approx(twin.levels[0].ttft_s, rel=1e-6)
    assert (back.model, back.notes, back.failures) == (twin.model, twin.notes, twin.failures)
    assert TwinModel.from_dict(back.to_dict()) == back  # the file's form is a fixed point
    assert data["failures"]["kinds"][0]["share"] == 0.1


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.update(schema="other/9"), "schema: expected 'batchrun.twin/1'"),
        (lambda d: d.pop("levels"), "levels: missing"),
        (lambda d: d["levels"][0]["ttft_s"].pop(), r"levels\[0\].ttft_s: expected 43 finite"),
        (lambda d: d["levels"][0].update(ttft_s=list(reversed(d["levels"][0]["ttft_s"]))), "ascending"),
        (lambda d: d["levels"][0].update(n="many"), r"levels\[0\].n: expected a whole number"),
        (lambda d: d["levels"][0].update(speed=1), r"levels\[0\].speed: unknown field"),
        (lambda d: d["wire"].update(usage="sideways"), "wire.usage: expected one of"),
        (
            lambda d: d["failures"]["kinds"].append({"kind": "APIConnectionError", "count": 1, "served": True}),
            "cannot be served",
        ),
        (
            lambda d: d["failures"]["kinds"].append({"kind": "http_500", "count": 20, "served": True}),
            "add up to more than 1",
        ),
        (lambda d: d.update(levels=[]), "at least one level"),
    ],
)
def test_a_broken_twin_is_refused_naming_the_field(change, message: str) -> None:
    data = model(failures=Failures(10, ())).to_dict()
    change(data)
    with pytest.raises(TwinError, match=message):
        TwinModel.from_dict(data)


def test_mean_gap_rank_follows_the_ttft_rank_by_the_levels_rank_correlation() -> None:
    def with_rho(rho: float) -> TwinModel:
        return model(levels=(Level(1.0, 50, linear(0.1, 0.2), 50, flat(0.01), 100, flat(1.0), ttft_gap_rho=rho),))

    assert with_rho(0.0).mean_gap_rank(1, 0.9, 0.3) == 0.3  # independent: its own draw
    assert with_rho(1.0).mean_gap_rank(1, 0.9, 0.3) == pytest.approx(0.9)  # r = 2 sin(pi/6) = 1
    assert with_rho(-1.0).mean_gap_rank(1, 0.9, 0.3) == pytest.approx(0.1)
    # rho 0.5: r = 2 sin(pi/12) = 0.51764; z = 0.51764 x 1.28155 (the normal's 90%) + 0 = 0.66338;
    # Phi(0.66338) = 0.74645
    assert with_rho(0.5).mean_gap_rank(1, 0.9, 0.5) == pytest.approx(0.74645, abs=1e-5)


def test_rank_correlation_and_client_lag_interpolate_between_levels() -> None:
    twin = model(
        levels=(
            Level(1.0, 40, flat(0.1), ttft_gap_rho=-0.4, lag_s=flat(0.001), lag_n=100),
            Level(3.0, 40, flat(0.3), ttft_gap_rho=0.2, lag_s=flat(0.003), lag_n=100),
        )
    )
    assert twin._rho(2.0) == pytest.approx(-0.1) and twin._rho(0.5) == -0.4 and twin._rho(9.0) == 0.2
    assert twin.client_lag_s(2.0, 0.5) == pytest.approx(0.002)
    assert twin.client_lag_s(9.0, 0.5) == pytest.approx(0.003)  # never extrapolated
    assert model().client_lag_s(1.0, 0.5) == 0.0  # no lag kept: nothing


def test_a_rank_correlation_outside_minus_one_to_one_is_refused() -> None:
    with pytest.raises(TwinError, match=r"levels\[0\].ttft_gap_rho"):
        model(levels=(Level(1.0, 40, flat(0.1), ttft_gap_rho=1.5),))
