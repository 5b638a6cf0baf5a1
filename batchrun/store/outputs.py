"""Final outputs of a run: results.csv / results.parquet in input order, read back from records.jsonl.

records.jsonl may hold several records for one id (a resumed run appends a new one for
each row it sends again); the last one wins, by one rule (_latest_lines) for both readers: the
results (byte offsets in an array, 8 bytes a row, so a million-row run does not hold a million
records or a dict of a million ids at once) and --resume (a dict of ids, which it must look up).

A results row is the input row's own columns, under their own names and in their order,
then the answer: `status`, the parsed answer's fields (--json / --json-schema), `text`, ...
An answer column whose name an input column already has gets a `result_` prefix.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from array import array
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import orjson

from batchrun.errors import OutputError
from batchrun.store.records import OK, SKIPPED, Record, record_lines

# Answer columns after the input's own; `id` only when no input column holds the id.
ANSWER_COLUMNS = [
    "id",
    "row",
    "status",
    "text",
    "finish_reason",
    "error_type",
    "error",
    "http_status",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "tokens_estimated",
    "ttft_s",
    "latency_s",
    "total_s",
    "queue_wait_s",
    "output_tokens_per_s",
    "request_id",
    "model",
    "tool_calls",
    "tool_choice_ignored",  # a forced tool call answered with text
    "empty",  # an ok answer the server ended without content (text "")
    "reconnects",  # re-sends after a dead pooled connection (not attempts)
    "batch_id",  # the Batch API job that answered the row (--mode batch), else empty
]
TIMING_COLUMNS = frozenset({"ttft_s", "latency_s", "total_s", "queue_wait_s"})
CSV_FORMULAS = ("escape", "raw")
# OWASP "CSV injection": a spreadsheet runs a cell starting with these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SYNTHETIC = "\x00synthetic-row:"  # index key of a made-up id: no real id can start with NUL


def _key(data: dict[str, Any]) -> str:
    if data.get("synthetic_id"):
        return f"{_SYNTHETIC}{int(data['row'])}"
    return data["id"]


def index_records(path: Path, seen: Callable[[dict[str, Any]], None] | None = None) -> dict[str, tuple[int, int, str]]:
    """id -> (row, byte offset of its latest record, status): the records of latest_offsets,
    keyed for look-ups (what --resume asks: is this id done?). `seen` is shown every parsed record.
    """
    keys: list[str] = []
    statuses: list[str] = []

    def note(key: str, status: str) -> None:
        keys.append(key)
        statuses.append(sys.intern(status))  # a handful of distinct texts, not one object a line

    lines, latest = _latest_lines(path, seen, note)
    return {keys[i]: (lines.rows[i], lines.offsets[i], statuses[i]) for i in latest}


def _parsed_lines(path: Path) -> Iterator[tuple[int, dict[str, Any], str, int, str]]:
    """(byte offset, record, index key, row, status) of every record line of records.jsonl
    (record_lines); a line without an id, row or status is passed over."""
    for offset, data in record_lines(path):
        try:
            key, row, status = _key(data), int(data["row"]), data["status"]
        except (ValueError, KeyError, TypeError):
            continue
        yield offset, data, key, row, status


def done_ids(path: Path, seen: Callable[[dict[str, Any]], None] | None = None) -> set[str]:
    """Ids whose latest record is ok: a resumed run does not send them again. `seen` is shown
    every parsed record on the way (what an earlier session spent, in the same pass)."""
    return {rid for rid, (_, _, status) in index_records(path, seen).items() if status == OK}


def done_answers(path: Path, ids: Iterable[str]) -> dict[str, str]:
    """id -> answer text, for each of `ids` whose latest record is ok (a resumed session replays
    them as history). One scan of the file, then one read per id."""
    index = index_records(path)
    found = {rid: index[rid][1] for rid in ids if rid in index and index[rid][2] == OK}
    answers: dict[str, str] = {}
    with open(path, "rb") as f:
        for rid, offset in found.items():
            f.seek(offset)
            answers[rid] = orjson.loads(f.readline()).get("text") or ""
    return answers


def iter_latest(path: Path) -> Iterator[Record]:
    """The latest record of every id, in input (row) order."""
    return (Record.from_dict(data) for data in latest_dicts(path))


def latest_dicts(path: Path, offsets: Sequence[int] | None = None) -> Iterator[dict[str, Any]]:
    """iter_latest as the records' plain dicts (no Record objects: the results writer's fast path)."""
    offsets = latest_offsets(path) if offsets is None else offsets
    with open(path, "rb") as f:
        for offset in offsets:
            f.seek(offset)
            yield orjson.loads(f.readline())


# ------------------------------------------------------------------ the latest record of each id


def latest_offsets(path: Path, seen: Callable[[dict[str, Any]], None] | None = None) -> array:
    """Byte offsets of the latest record of every id, in input (row) order (_latest_lines)."""
    lines, latest = _latest_lines(path, seen)
    return array("q", map(lines.offsets.__getitem__, latest))


@dataclass
class _Lines:
    """What the latest-record rule needs of each parseable line of records.jsonl: 8-byte numbers,
    no ids, so a million-row run's index costs tens of MB, not hundreds."""

    hashes: array = field(default_factory=lambda: array("q"))
    rows: array = field(default_factory=lambda: array("q"))
    offsets: array = field(default_factory=lambda: array("q"))
    skipped: bytearray = field(default_factory=bytearray)


def _latest_lines(
    path: Path, seen: Callable[[dict[str, Any]], None] | None = None, note: Callable[[str, str], None] | None = None
) -> tuple[_Lines, array]:
    """One pass over records.jsonl: its lines, and the numbers of the lines that hold the latest
    record of each id, in (row, offset) order. `seen` is shown every parsed record, `note` every
    line's index key and status (in line order).

    The last record of an id wins (a resumed run appends a new one for each row it sends again).
    A skipped row is superseded by any later record of the same row (the row was fixed and sent
    on --resume, perhaps under another id), so a fixed row never leaves a ghost behind. Ids are
    told apart by their hash first; ids whose hashes match (a resumed row's records, or a
    collision) are read again and compared whole, so a collision can never merge two ids.
    """
    lines = _Lines()
    hashes, rows, offsets, skipped = lines.hashes.append, lines.rows.append, lines.offsets.append, lines.skipped.append
    for offset, data, key, row, status in _parsed_lines(path):
        hashes(hash(key))
        rows(row)
        offsets(offset)
        skipped(status == SKIPPED)
        if seen is not None:
            seen(data)
        if note is not None:
            note(key, status)
    keep = _last_of_each_key(path, lines.hashes, lines.offsets)
    lines.hashes = array("q")  # done with: the caller keeps rows and offsets only
    return lines, _in_row_order(keep, lines.rows, lines.skipped)


def _packed_sort(keys: Iterable[tuple[int, int]], n: int) -> tuple[list[int], int]:
    """(key, line) pairs, lines < n and keys non-negative, sorted by key then line; each packed
    as key << shift | line (one int per line, not a list of tuples)."""
    shift = max(n, 1).bit_length()
    return sorted((k << shift) | line for k, line in keys), shift


def _runs(packed: list[int], shift: int) -> Iterator[int | list[int]]:
    """The lines of a packed sort in order: a line alone under its key as an int (nearly every
    line: no list made for it), the lines that share a key as one list, in line order."""
    mask, n, i = (1 << shift) - 1, len(packed), 0
    while i < n:
        p, j = packed[i], i + 1
        if j < n and packed[j] >> shift == p >> shift:
            key = p >> shift
            while j < n and packed[j] >> shift == key:
                j += 1
            yield [q & mask for q in packed[i:j]]
        else:
            yield p & mask
        i = j


def _last_of_each_key(path: Path, hashes: array, offsets: array) -> array:
    """The last line of each id (line numbers, in no particular order)."""
    packed, shift = _packed_sort(((h + 2**63, line) for line, h in enumerate(hashes)), len(hashes))
    keep = array("q")
    for run in _runs(packed, shift):
        if isinstance(run, int):
            keep.append(run)
        else:
            keep.extend(_last_by_key(path, run, offsets))
    return keep


def _last_by_key(path: Path, lines: list[int], offsets: array) -> list[int]:
    """Of lines whose ids hash alike, the last line of each id, read again and compared whole."""
    last: dict[str, int] = {}
    with open(path, "rb") as f:
        for line in lines:  # ascending: a later line of an id replaces an earlier one
            f.seek(offsets[line])
            last[_key(orjson.loads(f.readline()))] = line
    return list(last.values())


def _in_row_order(keep: array, rows: array, skipped: bytearray) -> array:
    """The kept lines by (row, line); a skipped record is dropped when a later record of its row
    was kept (the row was fixed and sent on --resume, perhaps under another id)."""
    packed, shift = _packed_sort(((rows[line], line) for line in keep), len(rows))
    out = array("q")
    for run in _runs(packed, shift):  # one input row; lines ascend, as their offsets do
        if isinstance(run, int):
            out.append(run)
        else:
            out.extend(line for line in run if not skipped[line] or line == run[-1])
    return out


# ------------------------------------------------------------------ the columns


@dataclass
class Layout:
    """The results' columns, from one pass over the latest records."""

    input_columns: list[str] = field(default_factory=list)
    parsed_columns: list[str] = field(default_factory=list)
    kinds: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (input|parsed, column) -> kinds seen
    id_in_input: bool = False
    names: dict[str, str] = field(default_factory=dict)  # answer field -> its column name

    def columns(self) -> list[str]:
        return [*self.input_columns, *self.names.values()]


class LayoutPlanner:
    """Learns the results' columns from records shown to it one at a time (as dicts)."""

    def __init__(self, id_column: str | None = None) -> None:
        self.layout = Layout()
        self._input: dict[str, None] = {}
        self._parsed: dict[str, None] = {}
        self._id_holders = (id_column,) if id_column else ("id", "custom_id")

    def __call__(self, data: dict[str, Any]) -> None:
        layout, kinds = self.layout, self.layout.kinds
        for name, value in (data.get("input") or {}).items():
            if name not in self._input:
                self._input[name] = None
            _note_kind(kinds, ("input", name), value)
            if not layout.id_in_input and name in self._id_holders and _text(value) == data.get("id"):
                layout.id_in_input = True
        for name, value in (data.get("parsed") or {}).items():
            if name not in self._parsed:
                self._parsed[name] = None
            _note_kind(kinds, ("parsed", name), value)

    def finish(self) -> Layout:
        """The columns: the union of the input rows' columns in first-seen order (a CSV header's
        order), then the answer columns, the parsed answer's fields after `status`."""
        return _name_columns(self.layout, list(self._input), list(self._parsed))


def _name_columns(layout: Layout, input_columns: list[str], parsed_columns: list[str]) -> Layout:
    layout.input_columns, layout.parsed_columns = input_columns, parsed_columns
    answer = [c for c in ANSWER_COLUMNS if not (c == "id" and layout.id_in_input)]
    status_at = answer.index("status") + 1
    fields: list[str | tuple[str, str]] = [
        *answer[:status_at],
        *(("parsed", p) for p in layout.parsed_columns),
        *answer[status_at:],
    ]
    taken = set(layout.input_columns)
    for f in fields:
        name = f[1] if isinstance(f, tuple) else f
        column = name
        while column in taken:
            column = f"result_{column}"
        taken.add(column)
        layout.names[f if isinstance(f, str) else f"parsed:{name}"] = column
    return layout


def _note_kind(kinds: dict[tuple[str, str], set[str]], key: tuple[str, str], value: Any) -> None:
    kinds.setdefault(key, set()).add(_kind(value))


def _kind(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def _text(value: Any) -> str:
    """A cell's text: strings as they are, JSON for everything else (numbers, lists, objects)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def neutralize(cell: str) -> str:
    """A text cell a spreadsheet would run as a formula gets a leading `'` (OWASP); numbers such
    as -5 or +1.5 are left as they are."""
    if not cell.startswith(_FORMULA_START) or _is_number(cell):
        return cell
    return "'" + cell


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# ------------------------------------------------------------------ one row

_RECORD_DEFAULTS = {f.name: f.default for f in dataclass_fields(Record)}


def _answer_values(data: dict[str, Any]) -> dict[str, Any]:
    values = {name: data.get(name, _RECORD_DEFAULTS.get(name)) for name in ANSWER_COLUMNS if name != "tool_calls"}
    calls = data.get("tool_calls")
    values["tool_calls"] = json.dumps(calls, ensure_ascii=False) if calls else ""
    for name in TIMING_COLUMNS:
        value = values[name]
        if value is not None:
            values[name] = round(value, 6)  # microseconds: more is clock noise
    return values


def _values(data: dict[str, Any], layout: Layout) -> list[Any]:
    """A record's (as a dict) results row in layout order, Python-typed (None for a missing cell)."""
    row = data.get("input") or {}
    answer = _answer_values(data)
    parsed = data.get("parsed") or {}
    out = [row.get(name) for name in layout.input_columns]
    for key in layout.names:
        out.append(parsed.get(key[7:]) if key.startswith("parsed:") else answer[key])
    return out


def _csv_cell(value: Any, escape: bool) -> Any:
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    text = _text(value)
    return neutralize(text) if escape else text


# ------------------------------------------------------------------ the files


def write_results(
    records_path: Path,
    out_dir: Path,
    fmt: str = "csv",
    *,
    id_column: str | None = None,
    csv_formulas: str = "escape",
    each: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Write results.<fmt> with exactly one row per input row, in input order, row by row (never
    every row at once). `each` is shown every latest record (as its dict) in that order, so the
    same pass can feed the summary."""
    target = out_dir / f"results.{fmt}"
    tmp = target.with_suffix(target.suffix + ".tmp")
    layout, records = planned_records(records_path, id_column)
    if each is not None:
        records = _shown(records, each)
    try:
        if fmt == "parquet":
            _write_parquet(records, layout, tmp)
        else:
            _write_csv(records, layout, tmp, escape=csv_formulas != "raw")
        tmp.replace(target)  # atomic: a crash never leaves a half-written results file
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # a half-written temp file only takes space from a full disk
        raise OutputError(f"cannot write {target}: {exc.strerror}") from exc
    return target


def planned_records(records_path: Path, id_column: str | None = None) -> tuple[Layout, Iterator[dict[str, Any]]]:
    """The results' columns and the latest record of each row (as dicts), in input order: one
    pass over records.jsonl to plan, the records read lazily in a second."""
    planner = LayoutPlanner(id_column)
    offsets = latest_offsets(records_path, planner)  # one pass: the index and the columns
    return planner.finish(), latest_dicts(records_path, offsets)


def result_rows(records_path: Path, id_column: str | None = None) -> tuple[Layout, Iterator[list[Any]]]:
    """The results' columns (`layout.columns()`: the input's, then the answer's) and rows,
    Python-typed (None for an empty cell, text never escaped for spreadsheets): what results.csv
    holds, for a caller that keeps values typed."""
    layout, records = planned_records(records_path, id_column)
    return layout, (_values(data, layout) for data in records)


def _shown(records: Iterator[dict[str, Any]], each: Callable[[dict[str, Any]], None]) -> Iterator[dict[str, Any]]:
    for data in records:
        each(data)
        yield data


def _write_csv(records: Iterable[dict[str, Any]], layout: Layout, target: Path, *, escape: bool) -> None:
    with open(target, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(layout.columns())
        for data in records:
            writer.writerow([_csv_cell(v, escape) for v in _values(data, layout)])


def _write_parquet(records: Iterable[dict[str, Any]], layout: Layout, target: Path, batch: int = 10_000) -> None:
    import pyarrow as pa  # lazy: pyarrow (~0.2 s) for --output-format parquet only
    import pyarrow.parquet as pq

    schema = _schema(pa, layout)
    convert = [_arrow_value(t, pa) for t in schema.types]
    writer = pq.ParquetWriter(target, schema)
    rows: list[list[Any]] = []

    def flush() -> None:
        columns = {name: [conv(r[i]) for r in rows] for i, (name, conv) in enumerate(zip(schema.names, convert))}
        writer.write_table(pa.table(columns, schema=schema))
        rows.clear()

    try:
        for data in records:
            rows.append(_values(data, layout))
            if len(rows) >= batch:
                flush()
        if rows:
            flush()
    finally:
        writer.close()


_ANSWER_TYPES = {
    "row": "int64",
    "http_status": "int64",
    "attempts": "int64",
    "prompt_tokens": "int64",
    "completion_tokens": "int64",
    "tokens_estimated": "bool_",
    "ttft_s": "float64",
    "tool_choice_ignored": "bool_",
    "empty": "bool_",
    "reconnects": "int64",
    "latency_s": "float64",
    "total_s": "float64",
    "queue_wait_s": "float64",
    "output_tokens_per_s": "float64",
}


def _schema(pa: Any, layout: Layout) -> Any:
    """Text stays text (a CSV input's `007` is a string column); a JSON / Parquet column whose
    values are all numbers or all booleans keeps that type; anything mixed is text."""
    fields = [(name, _column_type(pa, layout.kinds.get(("input", name), set()))) for name in layout.input_columns]
    for key, column in layout.names.items():
        if key.startswith("parsed:"):
            kind = _column_type(pa, layout.kinds.get(("parsed", key[7:]), set()))
        else:
            kind = getattr(pa, _ANSWER_TYPES.get(key, "string"))()
        fields.append((column, kind))
    return pa.schema(fields)


def _column_type(pa: Any, kinds: set[str]) -> Any:
    kinds = kinds - {"null"}
    if kinds == {"bool"}:
        return pa.bool_()
    if kinds == {"int"}:
        return pa.int64()
    if kinds and kinds <= {"int", "float"}:
        return pa.float64()
    return pa.string()


def _arrow_value(kind: Any, pa: Any) -> Any:
    if pa.types.is_string(kind):
        return lambda v: None if v is None else _text(v)
    if pa.types.is_floating(kind):
        return lambda v: None if v is None else float(v)
    return lambda v: v
