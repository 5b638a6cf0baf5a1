"""Cheap passes over an input file: how many rows it has (for the progress total) and which
per-row setting columns (model, max_tokens, temperature, ...) it carries (for the announcement)."""

from __future__ import annotations

from pathlib import Path

from batchrun.errors import InputError
from batchrun.inputs.readers import Where, open_source, resolve_format
from batchrun.inputs.rows import PARAMS


def count_rows(path: Path, fmt: str | None = None) -> int | None:
    """Data rows: Parquet from its metadata; CSV by physical lines whose quotes are balanced
    (a quoted newline does not end a row; blank lines and the header are not rows); JSONL by
    non-blank lines. None when the file cannot be read (the reader reports that itself)."""
    try:
        kind = resolve_format(path, fmt)
        if kind == "parquet":
            import pyarrow.parquet as pq  # lazy: pyarrow (~0.2 s) for a Parquet input only

            return int(pq.ParquetFile(path).metadata.num_rows)
        with open(path, "rb") as f:
            return _count_csv(f) if kind == "csv" else sum(1 for line in f if line.strip())
    except (OSError, InputError, ValueError, ImportError):
        return None
    except Exception:  # noqa: BLE001 - e.g. a pyarrow error: no total, the run goes on
        return None


def _count_csv(lines: object) -> int:
    records, open_quote, blank = 0, False, True
    for line in lines:  # type: ignore[attr-defined]
        if line.count(b'"') % 2:
            open_quote = not open_quote
        blank = blank and not line.strip()
        if not open_quote:
            records += not blank
            blank = True
    records += not blank  # a last record without its newline, mid-quote
    return max(0, records - 1)  # minus the header


def setting_columns(path: Path, fmt: str | None = None) -> dict[str, int]:
    """Per-row setting columns in the file -> how many distinct values each has. Columns come from
    the header (JSONL: the first object); only when there are any is the file read through."""
    try:
        return _setting_columns(path, resolve_format(path, fmt))
    except InputError:
        return {}  # the run's own reader reports what is wrong with the file


def _setting_columns(path: Path, kind: str) -> dict[str, int]:
    where = Where.of(path, kind)
    with open_source(path, kind, where) as source:
        columns = source.columns
        rows = source.rows(list(PARAMS)) if columns is None or any(c in PARAMS for c in columns) else iter(())
        values: dict[str, set[str]] = {}
        for raw in rows:
            if raw.data is None:
                continue
            if columns is None:  # JSONL: the first object names the columns
                columns = list(raw.data)
                if not any(c in PARAMS for c in columns):
                    break
            for name in PARAMS:
                value = raw.data.get(name)
                if name in columns and value not in (None, ""):
                    values.setdefault(name, set()).add(str(value).strip())
    return {name: len(values.get(name, ())) for name in PARAMS if columns and name in columns}
