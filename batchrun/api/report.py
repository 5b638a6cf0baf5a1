"""`batchrun.report(run_dir)`: rebuild a run's or a bench's reports from its files, sending nothing.
`batchrun report` calls the same function."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union


def report(run_dir: Union[str, "os.PathLike[str]"]) -> dict[str, Path]:
    """Rewrite summary.json, report.md and report.html (and what else the run wrote from its
    summary) of a run or bench directory from its records; returns each file written by name.
    A directory that is no run's or bench's raises ConfigError."""
    from batchrun.finish import rebuild_reports  # lazy: reading records back is report's alone

    return rebuild_reports(Path(run_dir))
