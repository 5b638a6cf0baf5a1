"""`batchrun.fit(sources)`: an endpoint twin fitted to run and bench directories, as a `Twin`
(written as a twin file when `out` is given). `batchrun fit` calls the same function."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

if TYPE_CHECKING:
    from batchrun.twin.compare import FitComparison
    from batchrun.twin.fit import Observations
    from batchrun.twin.model import TwinModel

PathLike = Union[str, "os.PathLike[str]"]


class Twin:
    """A fitted endpoint: `model` (the TwinModel the built-in endpoint serves), `notes` (what could
    not be fitted or is extrapolated), `comparison` (the twin's TTFT, latency and gaps drawn at
    each level against the measured ones, with intervals), `headline` (that comparison in a
    sentence), `files` (what `fit` wrote). Serve it with `batchrun.serve(like=twin)`."""

    def __init__(self, model: TwinModel, observed: Observations, files: Sequence[Path] = ()) -> None:
        self.model, self.observed, self.files = model, observed, list(files)
        self._comparison: FitComparison | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        return self.model.notes

    @property
    def comparison(self) -> FitComparison:
        if self._comparison is None:
            from batchrun.twin.compare import compare_fit  # lazy: draws from the twin (numpy)

            self._comparison = compare_fit(self.model, self.observed)
        return self._comparison

    @property
    def headline(self) -> str:
        from batchrun.twin.report import headline  # lazy: the report's modules

        return headline(self.comparison)

    def write(self, path: PathLike) -> Path:
        """The twin file (`batchrun serve --like FILE` serves it)."""
        from batchrun.twin.load import write_twin  # lazy: as fit()

        written = Path(path)
        write_twin(self.model, written)
        return written

    def write_report(self, path: PathLike) -> list[Path]:
        """The fit's report page: HTML at `path` and a Markdown copy beside it."""
        from batchrun.twin.report import write_fit_report  # lazy: as headline

        return write_fit_report(self.model, self.comparison, Path(path))

    def __repr__(self) -> str:
        levels = ", ".join(f"{lv.in_flight:g}" for lv in self.model.levels)
        sources = ", ".join(s.name for s in self.model.sources)
        return f"<batchrun.Twin of {sources or 'its sources'}: levels in flight {levels}, {len(self.notes)} notes>"


def fit(
    sources: PathLike | Sequence[PathLike],
    *,
    out: PathLike | None = None,
    report: PathLike | None = None,
    no_report: bool = False,
) -> Twin:
    """Fit a twin of the endpoint that these run and bench directories measured: latency by
    requests in flight and prompt length, output lengths, failures, rate limits and wire quirks.

    `out`: write the twin file there (and, unless `no_report`, its report page: `report`, by
    default the twin file's name with .html, with a Markdown copy); without `out` nothing is
    written. A source that is no run or bench directory, or too few records, raises ConfigError.

        twin = batchrun.fit(["results/prod-run"], out="twin.json")
        with batchrun.serve(like=twin) as url: ...
    """
    from batchrun.twin.load import fit_sources  # lazy: only a fit reads records to fit them

    paths = [Path(sources)] if isinstance(sources, (str, os.PathLike)) else [Path(s) for s in sources]
    model, observed = fit_sources(paths)
    twin = Twin(model, observed)
    if out is not None:
        twin.files.append(twin.write(out))
        if not no_report:
            twin.files += twin.write_report(report if report is not None else Path(out).with_suffix(".html"))
    return twin
