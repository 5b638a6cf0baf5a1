"""The Batch API's files, line by line (pure but for the files it writes and reads).

Request lines (endpoint/batch.py builds each) split into files within the API's limits.

The provider's output and error files -> the copies batchrun keeps and reads (KeptLines): secrets
masked, lines over --max-response-bytes replaced by a note, and an index of their custom_ids.
"""

from __future__ import annotations

import builtins  # a Chunk field is named `bytes`
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import orjson

from batchrun.endpoint.batch import TOO_LARGE
from batchrun.redact import redact, redact_json

MAX_REQUESTS = 50_000  # OpenAI: requests per input file
MAX_BYTES = 200 * 1024 * 1024  # OpenAI: bytes per input file


@dataclass(frozen=True, slots=True)
class Limits:
    max_requests: int = MAX_REQUESTS
    max_bytes: int = MAX_BYTES


@dataclass(slots=True)
class Chunk:
    """One input file being written: its request lines and, beside them, each line's id, row and
    what its record carries from the input (see flow.row_extras)."""

    name: str
    model: str | None
    input_path: Path
    ids_path: Path
    requests: int = 0
    bytes: int = 0
    _lines: BinaryIO | None = field(default=None, repr=False)
    _ids: BinaryIO | None = field(default=None, repr=False)

    def fits(self, size: int, limits: Limits) -> bool:
        return self.requests < limits.max_requests and self.bytes + size <= limits.max_bytes

    def add(self, line: builtins.bytes, custom_id: str, row: int, extra: dict[str, Any] | None = None) -> None:
        if self._lines is None:
            self._lines, self._ids = open(self.input_path, "wb"), open(self.ids_path, "wb")
        self._lines.write(line)
        entry = [custom_id, row, extra] if extra else [custom_id, row]
        self._ids.write(json.dumps(entry, ensure_ascii=False, default=str).encode() + b"\n")  # type: ignore[union-attr]
        self.requests += 1
        self.bytes += len(line)

    def close(self) -> None:
        for f in (self._lines, self._ids):
            if f is not None:
                f.close()


class Splitter:
    """Request lines -> chunks of one model each (OpenAI wants one model per file), every chunk
    within `limits`; a new chunk starts when the next line would not fit."""

    def __init__(self, directory: Path, first_name: Callable[[int], str], limits: Limits = Limits()) -> None:
        self.directory, self.limits, self._name = directory, limits, first_name
        self.chunks: list[Chunk] = []
        self._open: dict[str | None, Chunk] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def add(
        self, line: bytes, custom_id: str, row: int, model: str | None, extra: dict[str, Any] | None = None
    ) -> None:
        chunk = self._open.get(model)
        if chunk is None or not chunk.fits(len(line), self.limits):
            if chunk is not None:
                chunk.close()
            name = self._name(len(self.chunks))
            chunk = Chunk(name, model, self.directory / f"{name}.jsonl", self.directory / f"{name}.ids.jsonl")
            self.chunks.append(chunk)
            self._open[model] = chunk
        chunk.add(line, custom_id, row, extra)

    def close(self) -> list[Chunk]:
        for chunk in self._open.values():
            chunk.close()
        return self.chunks


def oversize_reason(size: int, limits: Limits) -> str | None:
    if size > limits.max_bytes:
        return (
            f"its Batch API request line is {size:,} bytes, over the {limits.max_bytes:,}-byte file "
            "limit (send it with --mode online)"
        )
    return None


def read_ids(path: Path) -> Iterator[tuple[str, int]]:
    """(custom_id, row) of every line of a chunk, in file order."""
    for cid, row, _ in read_entries(path):
        yield cid, row


def read_entries(path: Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(custom_id, row, what the row's record carries besides the answer) per line, in file order."""
    with open(path, "rb") as f:
        for line in f:
            entry = json.loads(line)
            yield entry[0], entry[1], (entry[2] if len(entry) > 2 else {})


def read_requests(path: Path) -> Iterator[dict[str, Any]]:
    """The request lines of a chunk, in file order (beside read_ids, line for line)."""
    with open(path, "rb") as f:
        for line in f:
            yield json.loads(line)


# ---------------------------------------------------------------- the provider's output and error files

HEAD_BYTES = 64 * 1024  # of an oversize line, kept to find its custom_id
_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*("(?:[^"\\]|\\.){0,4096}")')


class KeptLines:
    """A provider's output or error file, in pieces as it downloads -> the copy batchrun keeps and
    reads: every line with the endpoint's secrets masked, and every line longer than `max_bytes`
    replaced by a one-line note {"custom_id": ..., TOO_LARGE: {"bytes": n, "limit": max_bytes}}.
    An oversize line is never held whole: past the bound only its first HEAD_BYTES (to find its
    custom_id) and its length are kept while the rest streams by."""

    def __init__(self, max_bytes: int, secrets: tuple[str, ...] = ()) -> None:
        self.max_bytes, self.secrets = max_bytes, secrets
        self._line = bytearray()
        self._head: bytes | None = None  # set once the line in progress is past the bound
        self._size = 0

    def feed(self, piece: bytes) -> bytes:
        """The kept bytes of every line that `piece` completes."""
        out: list[bytes] = []
        start = 0
        while True:
            end = piece.find(b"\n", start)
            self._take(piece[start:] if end < 0 else piece[start:end])
            if end < 0:
                return b"".join(out)
            out.append(self._end_line())
            start = end + 1

    def close(self) -> bytes:
        """The last line, when the file does not end with a newline."""
        return self._end_line() if self._size else b""

    def _take(self, data: bytes) -> None:
        self._size += len(data)
        if self._head is not None:
            return
        if self._size <= self.max_bytes:
            self._line += data
            return
        self._line += data[:HEAD_BYTES]
        self._head, self._line = bytes(self._line[:HEAD_BYTES]), bytearray()

    def _end_line(self) -> bytes:
        line, head, size = bytes(self._line), self._head, self._size
        self._line, self._head, self._size = bytearray(), None, 0
        if head is not None:
            note = {"custom_id": sniff_custom_id(head), TOO_LARGE: {"bytes": size, "limit": self.max_bytes}}
            return orjson.dumps(redact_json(note, self.secrets)) + b"\n"
        return (masked_line(line, self.secrets) if self.secrets else line) + b"\n"


def masked_line(line: bytes, secrets: tuple[str, ...]) -> bytes:
    """A result line with `secrets` masked in every string of it: parsed, masked and written again
    (a secret may be escaped in JSON: \\u0041, \\/); a line that is not JSON is masked as text."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return redact(line.decode("utf-8", "replace"), secrets).encode()
    return orjson.dumps(redact_json(value, secrets))


def sniff_custom_id(raw: bytes) -> str | None:
    """The custom_id of a line that cannot be parsed (cut short, or too long to read whole), from
    the first `"custom_id": "..."` in its bytes."""
    found = _CUSTOM_ID.search(raw)
    if found is None:
        return None
    try:
        cid = orjson.loads(found.group(1))
    except orjson.JSONDecodeError:
        return None
    return cid if isinstance(cid, str) else None


@dataclass(frozen=True, slots=True)
class Spot:
    """Where a result line is: its kept file, byte offset and 1-based line number."""

    path: Path
    offset: int
    number: int


def index_lines(path: Path) -> Iterator[tuple[str | None, Spot]]:
    """(custom_id, where) of every non-blank line of a kept output or error file. The custom_id is
    None for a line that names none; a line that is not JSON is named by sniff_custom_id."""
    offset = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield _custom_id(line), Spot(path, offset, number)
            offset += len(line)


def _custom_id(line: bytes) -> str | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return sniff_custom_id(line)
    cid = value.get("custom_id") if isinstance(value, dict) else None
    return cid if isinstance(cid, str) else None
