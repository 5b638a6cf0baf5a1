"""The few figures of each record that the summary and reports read, one compact array per figure.

A million-row run's summary cannot hold a million Record objects (each carries its input row,
its request and its answer: kilobytes). `Columns` keeps, per record and in input order, only
what `summarize` and the report need: 8 bytes per time, 4 per count, a small code per label.
Plain `array.array`s, not numpy: the summary's arithmetic (sorted lists, `math.fsum`) is then
exactly the per-record arithmetic it replaces, and a one-row run pays no numpy import.

A figure that no record has (a Batch API time, a tool round, a planned send) costs nothing:
its column is only made when the first record that has it arrives.

Build one from records (`Columns.of(records)`) or from their JSON dicts as they are read
(`ColumnsBuilder.add(data)`); both go through the same `_add`, so they cannot disagree.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from batchrun.store.records import OK, Record

NAN = math.nan
# What no summary figure and no sample row reads: not kept even for the sample's first records.
_UNREAD = ("input", "request", "parsed", "attempt_log", "itl_s")

# name -> (array typecode, value stored for None / missing)
_RECORD_FLOATS = (  # read from the record as they are
    "ttft_s",
    "ttfo_s",
    "latency_s",
    "total_s",
    "queue_wait_s",
    "sent_s",
    "end_s",
    "scheduled_s",
    "batch_created_at",
    "batch_completed_at",
)
_FLOATS = (*_RECORD_FLOATS, "first_round_ttft_s", "final_round_ttft_s")  # the last two from its tool rounds
_INTS = ("prompt_tokens", "completion_tokens", "rounds")  # -1: None (counts are never negative)
_SMALL = (
    "attempts",
    "session",
    "tool_calls",
    "invalid_arguments",
    "tokens_estimated",
    "reconnects",
    "empty",
    "tool_choice_ignored",
)
_FLAGS = ("tokens_estimated", "empty", "tool_choice_ignored")  # 0 / 1 in the columns, bool in a view
_LABELS = ("status", "error_type", "finish_reason", "endpoint", "batch_id")  # -1: None
COLUMNS = (*_FLOATS, *_INTS, *_SMALL, *_LABELS)
# 4-byte ints ("i"): token counts, attempts and label codes stay far below 2**31.
_TYPE = {
    **{n: ("d", NAN) for n in _FLOATS},
    **{n: ("i", -1) for n in _INTS},
    **{n: ("i", 0) for n in _SMALL},
    **{n: ("i", -1) for n in _LABELS},
}
_TYPE["session"] = ("i", 1)


class _Column:
    """An array that stays unmade while every value is the default (most columns of most runs)."""

    __slots__ = ("code", "default", "values", "n")

    def __init__(self, code: str, default: Any) -> None:
        self.code, self.default, self.n = code, default, 0
        self.values: array[Any] | None = None

    def append(self, value: Any) -> None:
        if self.values is None:
            if value is self.default or value == self.default:
                self.n += 1
                return
            self.values = array(self.code, [self.default]) * self.n
        self.values.append(value)

    def finish(self) -> array[Any] | None:
        return self.values


class Labels:
    """Text labels as small codes: `names[code]`, codes in first-seen order."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str | None) -> int:
        if name is None:
            return -1
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self.names)
            self.names.append(name)
        return code


class ColumnsBuilder:
    """Takes records one at a time (as dicts or Records) and keeps only their columns; the first
    `keep` records are kept whole (slimmed) for the report's sample table."""

    def __init__(self, keep: int = 20, gaps: Any = None) -> None:
        self._gaps = gaps  # a GapSample: ok records' ITL gaps go there
        self._columns = {name: _Column(*_TYPE[name]) for name in COLUMNS}
        self._labels = {name: Labels() for name in _LABELS}
        self._tool_results: dict[int, list[str]] = {}
        self._keep = keep
        self.sample: list[Record] = []
        self.n = 0

    def add(self, data: Mapping[str, Any]) -> None:
        """One record as its JSON dict (records.jsonl's line)."""
        self._add(data.get)
        if self._gaps is not None and data.get("status") == OK:
            self._gaps.add(data.get("itl_s") or ())
        if len(self.sample) < self._keep:
            self.sample.append(Record.from_dict({k: v for k, v in data.items() if k not in _UNREAD}))

    def add_record(self, record: Record) -> None:
        self._add(lambda name: getattr(record, name, None))
        if self._gaps is not None and record.status == OK:
            self._gaps.add(record.itl_s)
        if len(self.sample) < self._keep:
            self.sample.append(record)

    def _add(self, get: Callable[[str], Any]) -> None:
        col, labels = self._columns, self._labels
        for name in _RECORD_FLOATS:
            value = get(name)
            col[name].append(NAN if value is None else float(value))
        for name in ("prompt_tokens", "completion_tokens"):
            value = get(name)
            col[name].append(-1 if value is None else int(value))
        col["attempts"].append(int(get("attempts") or 0))
        col["session"].append(int(get("session") or 1))
        col["reconnects"].append(int(get("reconnects") or 0))
        for name in _FLAGS:
            col[name].append(1 if get(name) else 0)
        for name in _LABELS:
            value = get(name)
            col[name].append(labels[name].code(None if value is None else str(value)))
        self._add_tools(get("tool_calls"), get("rounds"))
        self.n += 1

    def _add_tools(self, calls: list[dict[str, Any]] | None, rounds: list[dict[str, Any]] | None) -> None:
        col = self._columns
        col["tool_calls"].append(len(calls or []))
        col["invalid_arguments"].append(sum(1 for c in calls or [] if c.get("valid") is False))
        col["rounds"].append(-1 if rounds is None else len(rounds))
        first = rounds[0].get("ttft_s") if rounds else None
        final = rounds[-1].get("ttft_s") if rounds else None
        col["first_round_ttft_s"].append(NAN if first is None else float(first))
        col["final_round_ttft_s"].append(NAN if final is None else float(final))
        results = [t["status"] for rnd in rounds or [] for t in rnd.get("tool_results") or []]
        if results:
            self._tool_results[self.n] = results

    def finish(self) -> "Columns":
        arrays = {name: c.finish() for name, c in self._columns.items()}
        return Columns(self.n, arrays, self._labels, self._tool_results, self.sample)


class Columns:
    """Per-record figures of a run in input order; iterating gives one light `RecordView` per
    record (made on the fly, so a loop over a million of them holds one at a time)."""

    def __init__(
        self,
        n: int,
        arrays: Mapping[str, Any],
        labels: Mapping[str, Labels],
        tool_results: Mapping[int, list[str]] | None = None,
        sample: Sequence[Record] = (),
    ) -> None:
        self.n, self._arrays, self._labels = n, dict(arrays), dict(labels)
        self.tool_results = dict(tool_results or {})
        self.sample = list(sample)  # the first records, whole: the report's sample table

    @classmethod
    def of(cls, records: Iterable[Record], keep: int = 20) -> "Columns":
        builder = ColumnsBuilder(keep)
        for record in records:
            builder.add_record(record)
        return builder.finish()

    def __len__(self) -> int:
        return self.n

    def has(self, name: str) -> bool:
        """True when some record has a value other than the default in column `name`."""
        return self._arrays[name] is not None

    def column(self, name: str) -> Sequence[Any]:
        """The column's values (NaN / -1 stand for None; see _TYPE)."""
        values = self._arrays[name]
        if values is not None:
            return values
        code, default = _TYPE[name]
        return array(code, [default]) * self.n

    def labels(self, name: str) -> list[str | None]:
        """A label column as its texts (None where the record had none)."""
        names = self._labels[name].names
        return [names[c] if c >= 0 else None for c in self.column(name)]

    def labels_table(self, name: str) -> list[str]:
        """A label column's texts by code."""
        return self._labels[name].names

    def label_code(self, name: str, text: str) -> int:
        """The code of `text` in a label column, -2 when no record has it (matches no code)."""
        codes = self._labels[name]._codes
        return codes.get(text, -2)

    def select(self, mask: Sequence[int]) -> "Columns":
        """The records where `mask` is true, as Columns of their own (labels keep their codes)."""
        arrays = {
            name: None if values is None else array(values.typecode, (v for v, m in zip(values, mask) if m))
            for name, values in self._arrays.items()
        }
        kept = [i for i, m in enumerate(mask) if m]
        where = {old: new for new, old in enumerate(kept)}
        tools = {where[i]: t for i, t in self.tool_results.items() if i in where}
        return Columns(len(kept), arrays, self._labels, tools)

    def __iter__(self) -> Iterator["RecordView"]:
        names = [n for n in COLUMNS if n in _FLOATS or n in _INTS or n in _SMALL or n in _LABELS]
        cols = [self.column(n) for n in names]
        label_names = {n: self._labels[n].names for n in _LABELS}
        for values in zip(*cols):
            yield RecordView(names, values, label_names)


class RecordView:
    """One record's columns under a Record's attribute names (None where the record had none).
    Only the columns exist: reading any other Record field raises AttributeError, loudly."""

    def __init__(self, names: Sequence[str], values: Sequence[Any], labels: Mapping[str, list[str]]) -> None:
        d = self.__dict__
        for name, value in zip(names, values):
            if name in labels:
                d[name] = labels[name][value] if value >= 0 else None
            elif name in _FLOATS:
                d[name] = None if value != value else value
            elif name in _INTS:
                d[name] = None if value < 0 else value
            else:
                d[name] = value
        for name in _FLAGS:
            d[name] = bool(d[name])
        for name in ("batch_created_at", "batch_completed_at"):
            if d[name] is not None:
                d[name] = int(d[name])

    def __getattr__(self, name: str) -> Any:
        # Called only for a name that is not a column: it still raises. It tells the type checker
        # that a view's columns (set in __init__) are read as attributes, as a Record's are.
        raise AttributeError(f"a record view has no column {name!r}")


# ------------------------------------------------------------------ helpers over columns


def present(values: Sequence[float], mask: Sequence[int] | None = None) -> list[float]:
    """The values that are not NaN (not None), where `mask` is true."""
    return list(iter_present(values, mask))


def iter_present(values: Sequence[float], mask: Sequence[int] | None = None) -> Iterator[float]:
    """present() one at a time (Distribution.of then holds one list of them, not two)."""
    if mask is None:
        return (v for v in values if v == v)
    return (v for v, m in zip(values, mask) if m and v == v)
