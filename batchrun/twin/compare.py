"""Measured vs twin, per level and per run: the figures the fit's report states. Pure.

Per level: TTFT, latency and chunk gaps (ITL) of the level's measured requests beside the same
figures drawn from the twin at the level's in-flight count (twin/predict.py), each measured
percentile with its distribution-free 95% interval, so a difference inside it is noise. Per run:
measured throughput (requests that got an outcome / send span) beside the twin's at the run's
time-averaged requests in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from batchrun.analysis.distribution import Distribution
from batchrun.analysis.stats import quantile_ci
from batchrun.twin.fit import MIN_LEVEL, Observations, Observed, group_levels
from batchrun.twin.model import Level, TwinModel
from batchrun.twin.predict import DRAWS, Draws, answered_share, draw_level, throughput

FIGURES = ("ttft_s", "latency_s", "itl_s")
NAMES = {"ttft_s": "TTFT", "latency_s": "latency", "itl_s": "ITL"}


@dataclass(frozen=True)
class Figure:
    key: str  # ttft_s, latency_s or itl_s
    measured: Distribution
    twin: Distribution
    ci: dict[int, tuple[float, float] | None]  # measured p50 / p90: 95% interval (None: too few values)

    def change(self, q: int) -> float | None:
        """(twin - measured) / measured at percentile q (50 or 90)."""
        m, t = getattr(self.measured, f"p{q}"), getattr(self.twin, f"p{q}")
        return None if m is None or t is None or m == 0 else (t - m) / m

    def within_noise(self, q: int) -> bool | None:
        ci, t = self.ci.get(q), getattr(self.twin, f"p{q}")
        return None if ci is None or t is None else ci[0] <= t <= ci[1]


@dataclass(frozen=True)
class LevelComparison:
    level: Level
    figures: tuple[Figure, ...]
    measured: Draws  # the level's measured values (for the CDF plots)
    twin: Draws


@dataclass(frozen=True)
class RunComparison:
    name: str
    in_flight: float  # time-averaged requests in flight
    completed: int
    measured_rps: float | None
    twin_rps: float | None


@dataclass(frozen=True)
class FitComparison:
    levels: tuple[LevelComparison, ...]
    runs: tuple[RunComparison, ...]

    def largest(
        self, keys: Sequence[str] = ("ttft_s", "latency_s")
    ) -> tuple[LevelComparison, Figure, int, float] | None:
        """The largest |change| among these figures' p50 and p90 over every level."""
        found = [
            (lv, f, q, c)
            for lv in self.levels
            for f in lv.figures
            if f.key in keys
            for q in (50, 90)
            if (c := f.change(q)) is not None
        ]
        return max(found, key=lambda item: abs(item[3]), default=None)


def level_members(obs: Observations) -> list[list[Observed]]:
    """The measured requests of each level, in the fit's order (the same grouping as the fit)."""
    return [[obs.ok[i] for i in members] for members in group_levels([o.in_flight for o in obs.ok], MIN_LEVEL)]


def measured_draws(members: Sequence[Observed]) -> Draws:
    out = Draws()
    for o in members:
        r = o.record
        out.ttft_s.append(r.ttft_s)  # type: ignore[arg-type]
        out.latency_s.append(r.latency_s)  # type: ignore[arg-type]
        out.itl_s += r.itl_s
    return out


def figure(key: str, measured: Sequence[float], twin: Sequence[float]) -> Figure:
    xs = sorted(measured)
    return Figure(key, Distribution.of(xs), Distribution.of(twin), {q: quantile_ci(xs, q) for q in (50, 90)})


def compare_fit(twin: TwinModel, obs: Observations, draws: int = DRAWS, seed: int = 0) -> FitComparison:
    levels = []
    for i, (level, members) in enumerate(zip(twin.levels, level_members(obs))):
        got = draw_level(twin, members, level.in_flight, draws, seed + i)
        seen = measured_draws(members)
        figures = tuple(figure(k, getattr(seen, k), getattr(got, k)) for k in FIGURES)
        levels.append(LevelComparison(level, figures, seen, got))
    runs = []
    answered = answered_share(twin)
    for i, run in enumerate(obs.runs):
        like = [o for o in obs.ok if o.run == i]
        twin_rps = None
        if like and run.mean_in_flight:
            got = draw_level(twin, like, run.mean_in_flight, draws // 2, seed + 1000 + i)
            twin_rps = throughput(run.mean_in_flight, got.latency_s, answered)
        measured = run.completed / run.span_s if run.span_s else None
        runs.append(RunComparison(run.name, run.mean_in_flight or 0.0, run.completed, measured, twin_rps))
    return FitComparison(tuple(levels), tuple(runs))
