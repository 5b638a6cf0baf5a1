"""`batchrun.compare(baseline, current)`: the CI gate as a verdict object, the same one
`batchrun compare` prints and exits by."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union

from batchrun.errors import ConfigError

if TYPE_CHECKING:
    import pandas

    from batchrun.analysis.compare import Change, Comparison

# A side: a run or bench directory, its summary.json, a summary dict, or what batchrun.run /
# batchrun.bench returned (anything with an `out_dir`).
Side = Union[str, "os.PathLike[str]", Mapping[str, Any], Any]
Tolerances = Union[str, Mapping[str, Union[str, float]], None]


@dataclass(frozen=True)
class Verdict:
    """Each headline figure's change, baseline -> current, with its 95% interval and verdict.

    `failed` is what `batchrun compare` exits 1 for: a figure regressed past its tolerance (or,
    with fail_on_inconclusive, could not be decided); `passed` is its opposite. `regressions` and
    `undecided` are the figures behind it; `changes` every figure (`.low`/`.high`: the interval of
    the change, in percent of the baseline unless `.absolute`); `str(verdict)` the CLI's text."""

    comparison: Comparison
    fail_on_inconclusive: bool = False

    @property
    def failed(self) -> bool:
        from batchrun.report.compare import gate_failed  # lazy: as compare()

        return gate_failed(self.comparison, self.fail_on_inconclusive)

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def changes(self) -> list[Change]:
        return list(self.comparison.changes)

    @property
    def regressions(self) -> list[Change]:
        """The figures that fail the gate: regressed, or missing while a tolerance names them."""
        from batchrun.analysis.compare import failed  # lazy: as compare()

        return [c for c in self.comparison.changes if failed(c)]

    @property
    def undecided(self) -> list[Change]:
        """The figures whose interval straddles the tolerance: too few requests to say."""
        return [c for c in self.comparison.changes if c.status == "inconclusive"]

    @property
    def messages(self) -> list[str]:
        """One sentence per failed figure, then the undecided ones in one line (as the CLI says them)."""
        line = self.comparison.inconclusive_line()
        return [*self.comparison.regressions, *([line] if line else [])]

    @property
    def notes(self) -> list[str]:
        """What the comparison could not do (no records: point values), and allowed config differences."""
        return [*self.comparison.notes, *self.comparison.differences]

    @property
    def frame(self) -> pandas.DataFrame:
        """One row per figure: baseline, current, change, change_pct, the interval (ci_low, ci_high,
        ci_unit), tolerance, n_baseline, n_current, status."""
        import pandas  # lazy: pandas costs ~0.3 s

        from batchrun.analysis.compare import changes_as_dicts  # lazy: as compare()

        rows = []
        for row in changes_as_dicts(self.comparison):
            interval = row.pop("interval") or {}
            rows.append(
                {**row, "ci_low": interval.get("low"), "ci_high": interval.get("high"), "ci_unit": interval.get("unit")}
            )
        return pandas.DataFrame(rows)

    def format(self, fmt: str = "text") -> str:
        """The whole comparison as text, md (a pull-request comment), json, junit or github."""
        from batchrun.report.compare import FORMATS, format_comparison  # lazy: as compare()

        if fmt not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return format_comparison(self.comparison, fmt, self.fail_on_inconclusive)

    def __str__(self) -> str:
        return self.format("text")

    def __repr__(self) -> str:
        answer = "failed" if self.failed else "passed"
        counts = (
            f"{len(self.comparison.changes)} figures, {len(self.regressions)} failed, {len(self.undecided)} undecided"
        )
        return f"<batchrun.Verdict {answer}: {counts}>"


def compare(
    baseline: Side,
    current: Side,
    *,
    max_regression: Tolerances = None,
    fail_on_inconclusive: bool = False,
    allow_config_change: bool = False,
) -> Verdict:
    """Baseline vs current, each headline figure with a 95% interval of its change and a verdict.

    `baseline` and `current`: run or bench directories (with records: intervals), summary.json
    files, summary dicts, or the results of `batchrun.run` / `batchrun.bench`. `max_regression`
    adds to or replaces the default tolerances: "latency_p99=10%,throughput=-5%" or
    {"latency_p99": "10%", "errors": 3}. Sides measured differently (model, endpoint, max_tokens,
    concurrency, input) raise CompareRefused unless `allow_config_change`.

        verdict = batchrun.compare("results/base", "results/new")
        assert verdict.passed, str(verdict)
    """
    from batchrun.analysis.compare import compare as compare_sides  # lazy: numpy and the stats

    return Verdict(
        compare_sides(
            _side(baseline),
            _side(current),
            tolerances(max_regression),
            defaults=True,
            allow_config_change=allow_config_change,
        ),
        fail_on_inconclusive,
    )


def tolerances(given: Tolerances) -> Any:
    """`max_regression` as the comparison takes it; a ConfigError says which item is wrong."""
    from batchrun.analysis.compare import parse_tolerances  # lazy: as compare()

    if not given:
        return None
    text = given if isinstance(given, str) else ",".join(f"{k}={v}" for k, v in given.items())
    try:
        return parse_tolerances(text)
    except ValueError as exc:
        raise ConfigError(f"--max-regression: {exc}") from exc


def _side(side: Side) -> Mapping[str, Any] | Path:
    if isinstance(side, Mapping):
        return side
    if isinstance(side, (str, os.PathLike)):
        return Path(side)
    out_dir = getattr(side, "out_dir", None)
    if isinstance(out_dir, (str, os.PathLike)):
        return Path(out_dir)
    raise TypeError(
        f"compare() takes a run or bench directory, a summary.json, a summary dict or a batchrun result, "
        f"got {type(side).__name__}"
    )
