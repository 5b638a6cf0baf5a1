"""Workload columns read beside the prompts: session_id / turn / think_s (sessions) and
timestamp / delay_s (trace replay). The prompt reader ignores them; this reads only them, from
the same file, row for row, so a row's Prompt and its workload values share `row`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

from batchrun.inputs.readers import Where, open_source, resolve_format

SESSION_COLUMNS = ("session_id", "turn", "think_s")
TRACE_COLUMNS = ("timestamp", "delay_s", "input_length", "output_length", "hash_ids")
WORKLOAD_COLUMNS = SESSION_COLUMNS + TRACE_COLUMNS
_WANTED = {*WORKLOAD_COLUMNS, "prompt", "messages"}


def file_columns(path: Path, fmt: str | None) -> set[str]:
    """The workload columns the file has (CSV / Parquet header, or the first JSONL object),
    plus 'prompt' / 'messages' when present."""
    fmt = resolve_format(path, fmt)
    where = Where(str(path), "row" if fmt == "parquet" else "line")
    with open_source(path, fmt, where) as source:
        if source.columns is not None:
            return set(source.columns) & _WANTED
        for raw in source.rows():
            if raw.data is not None:
                return set(raw.data) & _WANTED
    return set()


def side_values(path: Path, fmt: str | None, names: tuple[str, ...]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(row, line, {name: value}) for every data row, values as written (None when missing)."""
    fmt = resolve_format(path, fmt)
    where = Where(str(path), "row" if fmt == "parquet" else "line")
    with open_source(path, fmt, where) as source:
        for raw in source.rows(list(names)):
            data = raw.data or {}
            yield raw.row, raw.line, {n: _clean(data.get(n)) for n in names}


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def as_number(value: Any, name: str, where: str, line: int) -> float:
    """A finite, non-negative number from a cell, or a ValueError worded for the user."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} line {line}: column {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{where} line {line}: column {name!r} must be a finite number >= 0, got {value!r}")
    return number
