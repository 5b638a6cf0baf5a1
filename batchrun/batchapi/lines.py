"""Prompts -> Batch API request lines, split into files within the API's limits (pure but for the
files it writes).

A line's body is exactly what online mode sends (`endpoint.requests.build_body`, through
`runner.jobs`) minus the two
fields that make a request stream: the Batch API answers every request with one whole
`chat.completion` (usage included), and rejects `stream: true`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator


ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS = 50_000                 # OpenAI: requests per input file
MAX_BYTES = 200 * 1024 * 1024         # OpenAI: bytes per input file
STREAM_FIELDS = ("stream", "stream_options")


def batch_body(online: dict[str, Any]) -> dict[str, Any]:
    """An online request body (`build_body`'s, as `runner.jobs` made it) without its streaming fields."""
    body = dict(online)
    for name in STREAM_FIELDS:
        body.pop(name, None)
    return body


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    """One line of a Batch API input file, newline included."""
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


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

    def add(self, line: bytes, custom_id: str, row: int, extra: dict[str, Any] | None = None) -> None:
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

    def add(self, line: bytes, custom_id: str, row: int, model: str | None,
            extra: dict[str, Any] | None = None) -> None:
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
        return (f"its Batch API request line is {size:,} bytes, over the {limits.max_bytes:,}-byte file "
                "limit (send it with --mode online)")
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


def index_lines(path: Path) -> Iterator[tuple[str, int]]:
    """(custom_id, byte offset) of every readable line of an output or error file; a line that
    is not a JSON object with a custom_id is passed over (its row then counts as missing)."""
    offset = 0
    with open(path, "rb") as f:
        for line in f:
            try:
                cid = json.loads(line).get("custom_id")
            except (ValueError, AttributeError):
                cid = None
            if isinstance(cid, str):
                yield cid, offset
            offset += len(line)
