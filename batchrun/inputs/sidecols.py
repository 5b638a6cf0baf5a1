"""Workload columns read beside the prompts: session_id / turn / think_s (sessions) and
timestamp / delay_s (trace replay). The prompt reader ignores them; this reads only them, from
the same file, row for row, so a row's Prompt and its workload values share `row`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

from batchrun.inputs.readers import Where, non_finite, open_source, resolve_format

SESSION_COLUMNS = ("session_id", "turn", "think_s")
TRACE_COLUMNS = ("timestamp", "delay_s", "input_length", "output_length", "hash_ids")
WORKLOAD_COLUMNS = SESSION_COLUMNS + TRACE_COLUMNS
_WANTED = {*WORKLOAD_COLUMNS, "prompt", "messages"}
NUMBER_COLUMNS = frozenset({"turn", "think_s", "timestamp", "delay_s", "input_length", "output_length"})


def file_columns(path: Path, fmt: str | None) -> set[str]:
    """The workload columns the file has (CSV / Parquet header, or the first JSONL object),
    plus 'prompt' / 'messages' when present."""
    fmt = resolve_format(path, fmt)
    with open_source(path, fmt, Where.of(path, fmt)) as source:
        if source.columns is not None:
            return set(source.columns) & _WANTED
        for raw in source.rows():
            if raw.data is not None:
                return set(raw.data) & _WANTED
    return set()


def side_values(path: Path, fmt: str | None, names: tuple[str, ...]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(row, line, {name: value}) for every data row, values as written (None when missing; NaN
    in a number column stays NaN, so `as_number` refuses it instead of taking it for a blank)."""
    fmt = resolve_format(path, fmt)
    with open_source(path, fmt, Where.of(path, fmt)) as source:
        for raw in source.rows(list(names)):
            data = raw.data or {}
            yield raw.row, raw.line, {n: _clean(data.get(n), keep_nan=n in NUMBER_COLUMNS) for n in names}


def cell_where(path: Path, fmt: str | None) -> Where:
    """Where to point errors about the values `side_values` yields."""
    return Where.of(path, resolve_format(path, fmt))


def _clean(value: Any, *, keep_nan: bool) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value) and not keep_nan:
        return None  # an id or session_id: pandas' missing value
    return value


def as_number(value: Any, name: str, where: Where, line: int) -> float:
    """A finite, non-negative number from a cell, or an InputError naming file, line and column."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise where.error(f"must be a number, got {value!r}", line=line, column=name) from None
    if not math.isfinite(number):
        raise where.error(f"{non_finite(number)}: write a finite number >= 0", line=line, column=name)
    if number < 0:
        raise where.error(f"must be a number >= 0, got {value!r}", line=line, column=name)
    return number
