"""Trace replay: rows with a `timestamp` column (milliseconds, the Mooncake / AIPerf trace
convention; any origin) or a `delay_s` column (seconds after the previous row) are sent
open-loop at their planned times divided by --speedup, whatever the answers' pace. The pool
records each request's planned send (`scheduled_s`); the summary's schedule lag is the actual
send minus the planned one. Rows are sent in order of planned time.

A Mooncake-style trace has no text: `input_length`, `output_length` and `hash_ids` (each id a
block of 512 tokens; equal ids, equal text) become prompts sized like --synthetic ones.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

from batchrun.inputs.prompt import Prompt
from batchrun.inputs.readers import Where
from batchrun.inputs.sidecols import as_number, cell_where, side_values
from batchrun.inputs.synthetic import Sizer


def trace_offsets(path: Path, fmt: str | None, speedup: float) -> dict[int, float]:
    """Row -> planned send offset in seconds from the first row's, already divided by speedup."""
    values = list(side_values(path, fmt, ("timestamp", "delay_s")))
    if not values:
        return {}
    column = "timestamp" if values[0][2]["timestamp"] is not None else "delay_s"
    where = cell_where(path, fmt)
    raw: dict[int, float] = {}
    clock = 0.0
    for row, line, cells in values:
        cell = cells[column]
        if cell is None:
            raise where.error(
                f"every row of a trace needs a {column!r} value (the first row has one)", line=line, column=column
            )
        number = as_number(cell, column, where, line)
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


# ---------------------------------------------------------------- traces without text (Mooncake)

HASH_BLOCK_TOKENS = 512  # Mooncake's block: one hash id stands for 512 prompt tokens


def is_length_trace(columns: set[str]) -> bool:
    """Rows that give lengths (input_length, output_length, maybe hash_ids) instead of text."""
    return {"input_length", "output_length"} <= columns and not columns & {"prompt", "messages"}


def length_trace_prompts(path: Path, fmt: str | None, sizer: Sizer) -> Iterator[Prompt]:
    """One Prompt per row: the text of its hash_ids' blocks (the same id, the same text, so shared
    ids are a shared prefix a server can cache), then unique words, sized to input_length tokens;
    max_tokens = output_length, with ignore_eos."""
    where = cell_where(path, fmt)
    blocks: dict[int, str] = {}
    for row, line, cells in side_values(path, fmt, ("id", "input_length", "output_length", "hash_ids")):
        tokens = int(as_number(cells["input_length"], "input_length", where, line))
        output = int(as_number(cells["output_length"], "output_length", where, line))
        ids = _hash_ids(cells["hash_ids"], where, line)
        parts = []
        for h in ids:
            if h not in blocks:
                if len(blocks) > 100_000:
                    blocks.clear()  # bounded memory; a block's text is recomputed the same
                blocks[h] = sizer.text(random.Random(f"block-{h}"), HASH_BLOCK_TOKENS, with_overhead=False)
            parts.append(blocks[h])
        text = sizer.fit(parts, max(1, tokens), random.Random(f"row-{row}"))
        row_id = str(cells["id"]) if cells["id"] is not None else str(row)
        yield Prompt(
            id=row_id,
            row=row,
            line=line,
            messages=[{"role": "user", "content": text}],
            params={"max_tokens": max(1, output), "ignore_eos": True},
        )


def _hash_ids(value: Any, where: Where, line: int) -> list[int]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise where.error("must be a JSON list of integers", line=line, column="hash_ids") from None
    if hasattr(value, "tolist"):
        value = value.tolist()  # a Parquet list column
    if not isinstance(value, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in value):
        raise where.error(f"must be a list of integers, got {value!r}", line=line, column="hash_ids")
    return value
