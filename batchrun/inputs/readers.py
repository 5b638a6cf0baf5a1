"""Row sources for inputs/rows.py: a CSV, JSONL or Parquet file -> raw dicts with their line numbers.

Everything here streams: a source holds one open file and at most one Parquet batch.
Every csv / json / pyarrow / decoding failure becomes an InputError naming file and line.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TypeVar

from batchrun.errors import InputError

FORMAT_ALIASES = {
    "csv": "csv",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "jsonlines": "jsonl",
    "json": "jsonl",
    "parquet": "parquet",
    "pq": "parquet",
}
_PARQUET_BATCH_ROWS = 1024  # rows decoded at a time: bounded memory, few Python round trips
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# CSV text is decoded with this handler: an undecodable byte becomes a lone surrogate (as with
# "surrogateescape") and the counter moves, so rows are only searched for such bytes in a file
# that has one (a clean file costs nothing).
_UNDECODABLE = [0]
_SURROGATE = re.compile("[\udc80-\udcff]")


def _mark_undecodable(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _UNDECODABLE[0] += 1
    return "".join(chr(0xDC00 + b) for b in exc.object[exc.start : exc.end]), exc.end


codecs.register_error("batchrun-undecodable", _mark_undecodable)

# The stdlib default (128 KiB per field) is smaller than a long-context prompt; we raise it
# once for the process (never lower it) so a 100k-token document in one cell is readable.
csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))


@dataclass(frozen=True, slots=True)
class Where:
    """Builds InputErrors for one file: Parquet positions read 'row N', text files 'line N'."""

    path: str
    unit: str = "line"

    @classmethod
    def of(cls, path: Path, fmt: str) -> "Where":
        """Parquet positions are rows, text files' are lines."""
        return cls(str(path), "row" if fmt == "parquet" else "line")

    def error(
        self, message: str, *, line: int | None = None, column: str | int | None = None, hint: str | None = None
    ) -> InputError:
        if self.unit == "line" or line is None:
            return InputError(message, path=self.path, line=line, column=column, hint=hint)
        err = InputError(message, path=f"{self.path} {self.unit} {line}", column=column, hint=hint)
        err.path, err.line = self.path, line
        return err


@dataclass(frozen=True, slots=True)
class RawRow:
    """One data row before it is understood; `data` is None when the row could not be parsed."""

    row: int  # 0-based among data rows
    line: int  # 1-based line where the row starts (Parquet: row + 1)
    data: dict[str, Any] | None
    problem: str | None = None  # why data is None
    column: str | int | None = None  # where in the row the problem is


def resolve_format(path: Path, fmt: str | None) -> str:
    """'csv', 'jsonl' or 'parquet', from `fmt` if given, else from the file extension."""
    if fmt is not None:
        name = FORMAT_ALIASES.get(fmt.lower().lstrip("."))
        if name is None:
            raise InputError(f"unknown format {fmt!r}", hint="use --format csv, jsonl or parquet")
        return name
    name = FORMAT_ALIASES.get(path.suffix.lower().lstrip("."))
    if name is None:
        raise InputError(
            f"cannot tell the format from the extension {path.suffix or '(none)'!r}",
            path=str(path),
            hint="pass --format csv, jsonl or parquet",
        )
    return name


def check_path(path: Path) -> None:
    """Raise an InputError with a next step unless `path` is a non-empty regular file."""
    if path.is_dir():
        raise InputError("is a directory, not a prompts file", path=str(path), hint=_dir_hint(path))
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(
            "no such file", path=str(path), hint=f"check the path; relative paths start in {os.getcwd()}"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
    if size == 0:
        raise InputError(
            "is empty (0 bytes): there are no prompts to send",
            path=str(path),
            hint="add a header line and rows (CSV) or one JSON object per line (JSONL)",
        )


def _dir_hint(path: Path) -> str:
    try:
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower().lstrip(".") in FORMAT_ALIASES)
    except OSError:
        found = []
    return f"pass a file inside it, e.g. {path / found[0]}" if found else "pass the prompts file itself"


def encoding_error(path: Path, where: Where) -> InputError:
    """Find the first byte that is not UTF-8 and say where it is; only called on the error path."""
    offset = 0
    with open(path, "rb") as f:
        # Splitting on b"\n" never cuts a UTF-8 sequence: 0x0A occurs in no multi-byte character.
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return _not_utf8(where, raw, exc, offset, lineno)
            offset += len(raw)
    return where.error("is not valid UTF-8", hint="re-save the file as UTF-8")


def _not_utf8(where: Where, raw: bytes, exc: UnicodeDecodeError, offset: int, lineno: int) -> InputError:
    if offset == 0 and raw.startswith(_UTF16_BOMS):
        return where.error("is UTF-16, not UTF-8", line=1, hint="re-save the file as UTF-8")
    return where.error(
        f"is not UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {offset + exc.start}",
        line=lineno,
        hint='re-save the file as UTF-8, e.g. Excel\'s "CSV UTF-8"',
    )


def _refuse_utf16(path: Path, where: Where) -> None:
    try:
        with open(path, "rb") as f:
            start = f.read(2)
    except OSError:
        return  # _open_text reports it
    if start in _UTF16_BOMS:
        raise where.error("is UTF-16, not UTF-8", line=1, hint="re-save the file as UTF-8")


def open_source(path: Path, fmt: str, where: Where) -> "CsvSource | JsonlSource | ParquetSource":
    """An open source for `fmt`; use it as a context manager so the file is always closed."""
    kinds: dict[str, type[CsvSource | JsonlSource | ParquetSource]]
    kinds = {"csv": CsvSource, "jsonl": JsonlSource, "parquet": ParquetSource}
    kind = kinds[fmt]
    return kind(path, where)


_Source = TypeVar("_Source", bound="_Closing")


class _Closing:
    """Context-manager plumbing shared by the sources."""

    columns: list[str] | None = None  # header, known before any row (None: JSONL, per row)
    text_columns: list[str] | None = None  # columns whose values are text

    def close(self) -> None:
        raise NotImplementedError

    def bytes_read(self) -> int | None:
        """Bytes taken from the file so far (after the last row: its size as the reader saw it);
        None when the reader cannot say."""
        return None

    def __enter__(self: _Source) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_text(path: Path, where: Where, **kwargs: Any) -> Any:
    try:
        return open(path, **kwargs)
    except OSError as exc:
        raise where.error(f"cannot read: {exc.strerror}") from None


class CsvSource(_Closing):
    """A comma-separated file with a header line; quoted fields may span lines."""

    def __init__(self, path: Path, where: Where) -> None:
        self.path, self.where = path, where
        # utf-8-sig drops a leading BOM (Excel writes one); newline="" is what csv needs for
        # quoted newlines and keeps line_num counting physical lines.
        _refuse_utf16(path, where)
        self._errors_at_open = _UNDECODABLE[0]
        self._file = _open_text(path, where, encoding="utf-8-sig", newline="", errors="batchrun-undecodable")
        # strict: a quote left open runs to the end of the file and would swallow every row after it
        # into one prompt; an error naming its line loses nothing.
        self._reader = csv.reader(self._file, strict=True)
        self._records = self._iter_records()
        try:
            self._read_header()
        except BaseException:
            self.close()
            raise

    def _read_header(self) -> None:
        first = next(self._records, None)
        header = [name.strip() for name in first[1]] if first else []
        if first is None or not any(header):
            raise self.where.error(
                "has no header line with column names",
                line=first[0] if first else None,
                hint="make the first line e.g. id,prompt",
            )
        named = [name for name in header if name]
        dupes = sorted({name for name in named if named.count(name) > 1})
        if dupes:
            raise self.where.error(
                f"the header repeats column names {', '.join(map(repr, dupes))}",
                line=first[0],
                hint="give every column a unique name",
            )
        if self._undecodable(header):
            raise encoding_error(self.path, self.where)
        self._header = header
        self.columns = self.text_columns = named

    def _iter_records(self) -> Iterator[tuple[int, list[str]]]:
        while True:
            start = self._reader.line_num + 1
            try:
                fields = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise self.where.error(
                    f"unreadable CSV: {exc}", line=start, hint="check the quoting on and after this line"
                ) from None
            except UnicodeDecodeError:
                raise encoding_error(self.path, self.where) from None
            if fields:  # a blank line is not a row
                yield start, fields

    def rows(self, needed: list[str] | None = None) -> Iterator[RawRow]:
        """Data rows in file order; `needed` is ignored (CSV cannot skip columns cheaply)."""
        row = -1
        for row, (line, fields) in enumerate(self._records):
            yield self._raw(row, line, fields)
        if row < 0:
            raise self.where.error("has a header but no rows", hint="add at least one row under the header")

    def _undecodable(self, fields: list[str]) -> str | None:
        """The first byte that is not UTF-8 in a record's fields, as 0x.., else None."""
        if _UNDECODABLE[0] == self._errors_at_open:
            return None
        for value in fields:
            found = _SURROGATE.search(value)
            if found:
                return f"0x{ord(found.group()) - 0xDC00:02x}"
        return None

    def _raw(self, row: int, line: int, fields: list[str]) -> RawRow:
        byte = self._undecodable(fields)
        if byte is not None:
            return RawRow(
                row, line, None, f'is not UTF-8 (byte {byte}; re-save the file as UTF-8, e.g. Excel\'s "CSV UTF-8")'
            )
        n, want = len(fields), len(self._header)
        if n > want and not any(f.strip() for f in fields[want:]):
            fields, n = fields[:want], want  # trailing empty fields: a spreadsheet's stray commas
        if n != want:
            spans = self._reader.line_num > line
            hint = "an unclosed quote?" if spans else "quote fields that contain commas"
            return RawRow(row, line, None, f"has {n} fields but the header has {want} ({hint})")
        return RawRow(row, line, {name: value for name, value in zip(self._header, fields) if name})

    def close(self) -> None:
        self._file.close()

    def bytes_read(self) -> int | None:
        return self._file.buffer.raw.tell()


class JsonlSource(_Closing):
    """One JSON object per line; blank lines are skipped, line numbers are exact."""

    def __init__(self, path: Path, where: Where) -> None:
        self.path, self.where = path, where
        # Binary, decoded line by line: an encoding error then has an exact line and offset.
        self._file = _open_text(path, where, mode="rb")

    def rows(self, needed: list[str] | None = None) -> Iterator[RawRow]:
        """Data rows in file order; `needed` is ignored."""
        row, offset = 0, 0
        for lineno, raw in enumerate(self._file, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if lineno == 1 and raw.startswith(_UTF16_BOMS):
                    raise _not_utf8(self.where, raw, exc, offset, lineno) from None
                # One undecodable line is one bad row: --on-bad-row decides (its rows before were sent).
                yield RawRow(
                    row,
                    lineno,
                    None,
                    f"is not UTF-8: byte 0x{raw[exc.start]:02x} at byte offset "
                    f"{offset + exc.start} (re-save the file as UTF-8)",
                )
                row, offset = row + 1, offset + len(raw)
                continue
            offset += len(raw)
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            if text.strip():  # parse unstripped: error columns match the editor's
                yield self._parse(row, lineno, text)
                row += 1
        if row == 0:
            raise self.where.error(
                "has only blank lines: no JSON objects", hint='write one object per line, e.g. {"prompt": "Hello"}'
            )

    def _parse(self, row: int, line: int, text: str) -> RawRow:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if row == 0 and text.lstrip().startswith("["):
                raise self._array_error() from None
            return RawRow(row, line, None, f"invalid JSON ({exc.msg})", column=exc.colno)
        except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, absurd nesting
            return RawRow(row, line, None, f"invalid JSON ({exc})")
        if isinstance(value, dict):
            return RawRow(row, line, value)
        if row == 0 and isinstance(value, list):
            raise self._array_error()
        return RawRow(row, line, None, f"expected a JSON object {{...}}, got {json_kind(value)}")

    def _array_error(self) -> InputError:
        return self.where.error(
            "is one JSON array, not JSON Lines (one object per line)",
            line=1,
            hint=f"convert it: jq -c '.[]' {self.path} > prompts.jsonl",
        )

    def close(self) -> None:
        self._file.close()

    def bytes_read(self) -> int | None:
        return self._file.raw.tell()


class ParquetSource(_Closing):
    """A Parquet file read a batch at a time; row N is reported as 'row N+1'."""

    def __init__(self, path: Path, where: Where) -> None:
        import pyarrow as pa  # imported here: pyarrow is slow to import
        import pyarrow.parquet as pq

        self.where, self._errors = where, (pa.ArrowException, OSError, ValueError)
        try:
            self._file = pq.ParquetFile(path)
            schema = self._file.schema_arrow
            num_rows = self._file.metadata.num_rows
        except self._errors as exc:
            raise where.error(
                f"is not a readable Parquet file ({exc})",
                hint="check it was written completely, or pass --format if it is not Parquet",
            ) from None
        self.columns = list(schema.names)
        self.text_columns = [f.name for f in schema if _is_text(pa, f.type)]
        if num_rows == 0:
            self.close()
            raise where.error("has no rows", hint="write at least one row")

    def rows(self, needed: list[str] | None = None) -> Iterator[RawRow]:
        """Data rows in file order, reading only the `needed` columns when given."""
        known = self.columns or []  # set when the file was opened
        columns = [c for c in dict.fromkeys(needed) if c in known] if needed is not None else None
        batches = self._file.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns)
        row = 0
        while True:
            try:
                batch = next(batches, None)
                records = batch.to_pylist() if batch is not None else None
            except self._errors as exc:
                raise self.where.error(
                    f"unreadable Parquet data ({exc})", line=row + 1, hint="check the file was written completely"
                ) from None
            if records is None:
                return
            for data in records:
                yield RawRow(row, row + 1, data)
                row += 1

    def close(self) -> None:
        self._file.close()


def _is_text(pa: Any, kind: Any) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or getattr(pa.types, "is_string_view", lambda _: False)(kind)
    )


def non_finite(value: float) -> str:
    """What is wrong with a NaN or infinite number, for messages."""
    if value != value:
        return "NaN is not a number (pandas writes it for a missing value)"
    return f"{value:g} is an infinite number"


def json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
