"""Final outputs of a run: results.csv / results.parquet in input order, read back from records.jsonl.

records.jsonl may hold several records for one id (a resumed run appends a new one for
each row it sends again); the last one wins. Only an index (id -> row, byte offset) is
kept in memory, so a million-row run does not hold a million records at once.
"""

from __future__ import annotations

import csv
import json

import orjson
from pathlib import Path
from typing import Any, Iterator

from batchrun.errors import OutputError
from batchrun.store.records import OK, Record

RESULT_COLUMNS = [
    "id", "row", "status", "text", "finish_reason", "error_type", "error", "http_status",
    "attempts", "prompt_tokens", "completion_tokens", "tokens_estimated", "ttft_s", "latency_s",
    "total_s", "queue_wait_s", "output_tokens_per_s", "request_id", "model", "tool_calls",
]


def index_records(path: Path) -> dict[str, tuple[int, int, str]]:
    """id -> (row, byte offset of its latest record, status); torn or blank lines are ignored."""
    index: dict[str, tuple[int, int, str]] = {}
    if not path.exists():
        return index
    with open(path, "rb") as f:
        offset = 0
        for line in f:
            try:
                data = orjson.loads(line)
                index[data["id"]] = (int(data["row"]), offset, data["status"])
            except (ValueError, KeyError, TypeError):
                pass            # a torn last line from a killed run
            offset += len(line)
    return index


def done_ids(path: Path) -> set[str]:
    """Ids whose latest record is ok: a resumed run does not send them again."""
    return {rid for rid, (_, _, status) in index_records(path).items() if status == OK}


def iter_latest(path: Path, index: dict[str, tuple[int, int, str]] | None = None) -> Iterator[Record]:
    """The latest record of every id, in input (row) order."""
    index = index_records(path) if index is None else index
    with open(path, "rb") as f:
        for _, offset, _ in sorted(index.values()):
            f.seek(offset)
            yield Record.from_dict(orjson.loads(f.readline()))


def _row(record: Record) -> list[Any]:
    values = {name: getattr(record, name) for name in RESULT_COLUMNS if name != "tool_calls"}
    values["tool_calls"] = json.dumps(record.tool_calls, ensure_ascii=False) if record.tool_calls else ""
    return [values[name] for name in RESULT_COLUMNS]


def write_results(records_path: Path, out_dir: Path, fmt: str = "csv") -> Path:
    """Write results.<fmt> with exactly one row per input row, in input order."""
    target = out_dir / f"results.{fmt}"
    tmp = target.with_suffix(target.suffix + ".tmp")
    try:
        if fmt == "parquet":
            _write_parquet(records_path, tmp)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(RESULT_COLUMNS)
                for record in iter_latest(records_path):
                    writer.writerow(_row(record))
        tmp.replace(target)       # atomic: a crash never leaves a half-written results file
    except OSError as exc:
        tmp.unlink(missing_ok=True)     # a half-written temp file only takes space from a full disk
        raise OutputError(f"cannot write {target}: {exc.strerror}") from exc
    return target


def _write_parquet(records_path: Path, target: Path, batch: int = 10_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: pq.ParquetWriter | None = None
    rows: list[list[Any]] = []

    def flush() -> None:
        nonlocal writer
        table = pa.table({name: [r[i] for r in rows] for i, name in enumerate(RESULT_COLUMNS)},
                         schema=_schema(pa))
        writer = writer or pq.ParquetWriter(target, table.schema)
        writer.write_table(table)
        rows.clear()

    try:
        for record in iter_latest(records_path):
            rows.append(_row(record))
            if len(rows) >= batch:
                flush()
        if rows or writer is None:
            flush()
    finally:
        if writer is not None:
            writer.close()


def _schema(pa: Any) -> Any:
    types = {"row": pa.int64(), "http_status": pa.int64(), "attempts": pa.int64(),
             "prompt_tokens": pa.int64(), "completion_tokens": pa.int64(),
             "tokens_estimated": pa.bool_(), "ttft_s": pa.float64(), "latency_s": pa.float64(),
             "total_s": pa.float64(), "queue_wait_s": pa.float64(), "output_tokens_per_s": pa.float64()}
    return pa.schema([(name, types.get(name, pa.string())) for name in RESULT_COLUMNS])
