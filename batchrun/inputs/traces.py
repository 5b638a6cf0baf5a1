"""Trace replay: rows with a `timestamp` column (milliseconds, the Mooncake / AIPerf trace
convention; any origin) or a `delay_s` column (seconds after the previous row) are sent
open-loop at their planned times divided by --speedup, whatever the answers' pace. The pool
records each request's planned send (`scheduled_s`); the summary's schedule lag is the actual
send minus the planned one. Rows are sent in order of planned time.
"""

from __future__ import annotations

from pathlib import Path

from batchrun.errors import InputError
from batchrun.inputs.sidecols import as_number, side_values


def trace_offsets(path: Path, fmt: str | None, speedup: float) -> dict[int, float]:
    """Row -> planned send offset in seconds from the first row's, already divided by speedup."""
    values = list(side_values(path, fmt, ("timestamp", "delay_s")))
    if not values:
        return {}
    column = "timestamp" if values[0][2]["timestamp"] is not None else "delay_s"
    raw: dict[int, float] = {}
    clock = 0.0
    for row, line, cells in values:
        cell = cells[column]
        if cell is None:
            raise InputError(f"every row of a trace needs a {column!r} value (the first row has one)",
                             path=str(path), line=line, column=column)
        try:
            number = as_number(cell, column, str(path), line)
        except ValueError as exc:
            raise InputError(str(exc), path=str(path), line=line, column=column) from None
        if column == "timestamp":
            raw[row] = number / 1000.0
        else:
            clock += number
            raw[row] = clock
    origin = min(raw.values())
    return {row: (t - origin) / speedup for row, t in raw.items()}


def rebase(offsets: list[float]) -> list[float]:
    """Offsets shifted so the earliest is 0 (a resumed trace starts at once, keeping its gaps)."""
    if not offsets:
        return offsets
    origin = min(offsets)
    return [t - origin for t in offsets]
