"""Embedding vectors on disk: Parquet parts written as batches finish, then one embeddings.parquet
with exactly one row per input id.

Exactly once, across crashes and --resume: a part is written (temp file, fsync, rename) before
the records of its rows go to records.jsonl, so a row recorded `ok` always has its vector on
disk; a row whose vector was written but whose record was lost is simply sent again, and
`consolidate` keeps only the last vector per id among ids recorded ok.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batchrun.errors import OutputError
from batchrun.store.records import Record

PARTS_DIR = "vectors"
EMBEDDINGS_FILE = "embeddings.parquet"
EMPTY_SCHEMA = pa.schema([("id", pa.string()), ("row", pa.int64()), ("embedding", pa.list_(pa.float32()))])


class VectorSink:
    """Buffers (id, row, vector) and the rows' records; `flush` writes one part, then the records."""

    def __init__(self, out: Path, write_records: Callable[[list[Record]], None], flush_rows: int = 4096) -> None:
        self.dir = out / PARTS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.write_records, self.flush_rows = write_records, flush_rows
        existing = [int(p.stem.split("-")[1]) for p in self.dir.glob("part-*.parquet")]
        self._next = max(existing, default=0) + 1
        self._ids: list[str] = []
        self._rows: list[int] = []
        self._vectors: list[np.ndarray] = []
        self._records: list[Record] = []

    async def add(self, records: list[Record], vectors: np.ndarray) -> None:
        """Buffer one batch; past flush_rows, write a part in a thread (the event loop keeps
        timing other requests meanwhile), then the records of its rows."""
        self._ids.extend(r.id for r in records)
        self._rows.extend(r.row for r in records)
        self._vectors.append(vectors)
        self._records.extend(records)
        if len(self._ids) >= self.flush_rows:
            path, table, done = self._take()
            await asyncio.to_thread(_write_atomic, path, table)
            self._emit(done)

    def flush(self) -> None:
        """Write what is buffered now (end of run, also after a cancellation)."""
        if self._ids:
            path, table, done = self._take()
            _write_atomic(path, table)
            self._emit(done)

    def _take(self) -> tuple[Path, pa.Table, list[Record]]:
        path = self.dir / f"part-{self._next:06d}.parquet"
        self._next += 1
        table = _table(self._ids, self._rows, np.concatenate(self._vectors))
        done = self._records
        self._ids, self._rows, self._vectors, self._records = [], [], [], []
        return path, table, done

    def _emit(self, records: list[Record]) -> None:
        self.write_records(records)


def _table(ids: list[str], rows: list[int], matrix: np.ndarray) -> pa.Table:
    dim = matrix.shape[1] if matrix.ndim == 2 else 0
    flat = pa.array(matrix.astype(np.float32, copy=False).reshape(-1), type=pa.float32())
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "row": pa.array(rows, pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )


def _write_atomic(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror} (is the disk full?)") from exc


def consolidate(out: Path, ok_ids: Iterable[str]) -> Path:
    """embeddings.parquet: one row (id, row, embedding) per id in `ok_ids`, its last vector, in
    the order parts were written. Streams part by part, so memory holds one part at a time."""
    wanted = set(ok_ids)
    parts = sorted((out / PARTS_DIR).glob("part-*.parquet"))
    last: dict[str, tuple[int, int]] = {}
    for p_i, part in enumerate(parts):
        for r_i, id_ in enumerate(pq.read_table(part, columns=["id"]).column("id").to_pylist()):
            if id_ in wanted:
                last[id_] = (p_i, r_i)
    keep: dict[int, list[int]] = {}
    for p_i, r_i in last.values():
        keep.setdefault(p_i, []).append(r_i)
    target = out / EMBEDDINGS_FILE
    tmp = target.with_name(target.name + ".tmp")
    writer: pq.ParquetWriter | None = None
    try:
        for p_i, part in enumerate(parts):
            if p_i not in keep:
                continue
            table = pq.read_table(part).take(sorted(keep[p_i]))
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            elif table.schema != writer.schema:
                raise OutputError(
                    f"{part}: vectors of another length than earlier parts; "
                    "rerun into a new --out with one fixed 'dimensions'"
                )
            writer.write_table(table)
        if writer is None:  # no vector at all (every batch failed): an empty file, same columns
            writer = pq.ParquetWriter(tmp, EMPTY_SCHEMA)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, target)
    return target
