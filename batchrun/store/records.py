"""The Record: one finished request, and the JSONL file that holds them.

Every duration is seconds from a monotonic clock; `queued_at` is a wall-clock
label only. `sent_s` / `end_s` are offsets from the run's start on the same
monotonic clock, so records of one run can be laid on one timeline.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import orjson

from batchrun.errors import OutputError
from batchrun.redact import redact, redact_json

# Outcomes. `skipped` is a bad input row (its reason in `error`); no request was sent.
# `invalid_output`: --json / --json-schema, and the answer was not valid JSON or broke the schema.
OK, ERROR, TIMEOUT, CANCELLED, SKIPPED = "ok", "error", "timeout", "cancelled", "skipped"
INVALID_OUTPUT = "invalid_output"
STATUSES = (OK, ERROR, TIMEOUT, CANCELLED, SKIPPED, INVALID_OUTPUT)
RECORDS = "records.jsonl"  # a run directory's records, one JSON line per finished request


@dataclass(slots=True)
class Attempt:
    """One HTTP attempt of a request; a Record keeps all of them."""

    status: str  # ok / error / timeout / cancelled
    sent_s: float  # offset from run start when the attempt was sent
    duration_s: float  # send -> end of this attempt
    http_status: int | None = None
    error_type: str | None = None
    error: str | None = None
    retry_after_s: float | None = None  # what the server asked for (retry-after-ms / retry-after)
    backoff_s: float | None = None  # how long we actually waited before the next attempt


@dataclass(slots=True)
class Record:
    id: str
    row: int  # 0-based input row (input order)
    status: str = OK
    error_type: str | None = None  # e.g. RateLimitError, APITimeoutError, StreamError
    error: str | None = None  # message, redacted: never a key or auth header
    http_status: int | None = None
    attempts: int = 0
    attempt_log: list[Attempt] = field(default_factory=list)
    request_id: str | None = None  # server's x-request-id
    model: str | None = None
    finish_reason: str | None = None
    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool = False  # True when the server sent no usage and we estimated
    cached_tokens: int | None = None  # prompt tokens the server took from its prompt cache (usage), None: not said
    usage_chunk: str | None = None  # the stream chunk usage came on: trailing (its own chunk, after the
    # finish), finish (the finish_reason chunk), content (an output chunk)
    # --- Batch API rows (--mode batch): no per-request timing exists, so the times below stay None ---
    batch_id: str | None = None  # the job that answered the row
    batch_created_at: int | None = None  # the job's created_at (unix s, from the provider)
    batch_completed_at: int | None = None  # when the job ended: completed / expired / cancelled / failed at
    # --- times (final attempt unless said otherwise) ---
    queued_at: float = 0.0  # wall clock (unix s) when the row entered the queue; label only
    scheduled_s: float | None = None  # open-loop runs: planned send offset from run start
    queue_wait_s: float | None = 0.0  # queued -> first attempt sent (waiting for a slot / rate limit); None: Batch API
    sent_s: float | None = None  # final attempt sent, offset from run start
    end_s: float | None = None  # final attempt finished, offset from run start
    ttft_s: float | None = None  # send -> first output chunk (content or tool-call delta)
    latency_s: float | None = None  # send -> last output chunk  (== ttft_s + sum(itl_s))
    total_s: float | None = None  # send -> end of response (incl. trailing finish/usage chunks)
    itl_s: list[float] = field(default_factory=list)  # gap between each pair of consecutive output chunks
    output_chunks: int = 0  # chunks that carried output (content or tool-call delta)
    output_tokens_per_s: float | None = None  # completion_tokens / latency_s
    rounds: list[dict[str, Any]] | None = None  # tool-calling rounds, when the row ran tools
    endpoint: str | None = None  # the endpoint that answered, when the run used several
    session: int = 1  # which session of the run (first run 1, each --resume +1) wrote it
    ttfo_s: float | None = None  # send -> first answer chunk (content or tool call; not reasoning)
    reasoning_text: str = ""  # reasoning deltas (`reasoning_content` / `reasoning`), apart from `text`
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens
    other_choices: list[str] | None = None  # with n > 1: the texts of choices 1.. (`text` is choice 0)
    # --- the row and what was asked ---
    input: dict[str, Any] | None = None  # the input row's own columns, given back in results
    request: dict[str, Any] | None = None  # the body as sent (messages, model, ...); None with --no-save-request
    parsed: dict[str, Any] | None = None  # --json / --json-schema: the answer parsed as a JSON object
    synthetic_id: bool = False  # a skipped row whose own id was missing or taken: `id` is made up
    # Sends that met a pooled connection the server had already closed, before any response byte,
    # and went out again at once on another: not attempts (no backoff, not in attempt_log); the
    # times above are the re-send's. Embeddings: a batch's re-sends count on its first row only.
    reconnects: int = 0
    # ok, but the server ended the answer (a finish_reason) without any content or tool call:
    # `text` is "" (a stop sequence matched the first token, max_tokens spent on reasoning).
    empty: bool = False
    # ok, but the request forced a tool call (tool_choice "required" or a named function) and the
    # answer came as text: the server ignored tool_choice.
    tool_choice_ignored: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; by hand, since dataclasses.asdict deep-copies every list (slow per record)."""
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["attempt_log"] = [{name: getattr(a, name) for name in _ATTEMPT_FIELDS} for a in self.attempt_log]
        return data

    def to_json(self) -> bytes:
        """One JSON line's bytes (UTF-8, no newline)."""
        data = self.to_dict()
        try:
            return orjson.dumps(data, default=str)  # Parquet dates, decimals: their text
        except TypeError:  # orjson stops at 64-bit integers; a JSONL input row may hold a bigger one
            return orjson.dumps(_big_ints_as_text(data), default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        """A record from its JSON; fields this version does not know (written by a newer
        batchrun) are ignored, in the record and in each attempt, never a reason to drop it."""
        kwargs = {k: v for k, v in data.items() if k in _RECORD_NAMES}
        kwargs["attempt_log"] = [
            Attempt(**{k: v for k, v in a.items() if k in _ATTEMPT_NAMES}) for a in kwargs.get("attempt_log") or []
        ]
        return cls(**kwargs)


_RECORD_FIELDS = tuple(f.name for f in fields(Record))
_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))
_RECORD_NAMES, _ATTEMPT_NAMES = frozenset(_RECORD_FIELDS), frozenset(_ATTEMPT_FIELDS)

# What a provider wrote into a record (answers, ids, codes), and its messages. Every other field
# is ours (figures, the row, the request as sent); test_records checks that each field is in one
# of the two lists, so a new field cannot slip past `redact_record` unnoticed.
PROVIDER_VALUES = (
    "error_type",
    "request_id",
    "model",
    "finish_reason",
    "text",
    "tool_calls",
    "reasoning_text",
    "other_choices",
    "rounds",
    "parsed",
)
PROVIDER_MESSAGES = ("error", "attempt_log")


def redact_record(record: Record, secrets: tuple[str, ...]) -> Record:
    """The record (changed in place) with the endpoint's `secrets` masked in everything the provider
    wrote into it: the answer exactly (`mask`), messages also by pattern (`redact`). No secrets
    (a keyless endpoint): nothing to mask, and messages were redacted where they were made."""
    if not secrets:
        return record
    if record.error:
        record.error = redact(record.error, secrets)
    for attempt in record.attempt_log:
        if attempt.error:
            attempt.error = redact(attempt.error, secrets)
    for name in PROVIDER_VALUES:
        value = getattr(record, name)
        if value:
            setattr(record, name, redact_json(value, secrets))
    return record


def _big_ints_as_text(value: Any) -> Any:
    """Integers past 64 bits as their digits (JSON readers, orjson too, would turn them to floats)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {k: _big_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_big_ints_as_text(v) for v in value]
    return value


FLUSH_EVERY_S = 0.1  # the writer thread flushes what has come in at least this often
_WAKE_BYTES = 1 << 20  # ... and at once when this much is waiting (memory stays bounded)


class RecordSink:
    """Appends one JSON line per record, written and flushed by a writer thread, off the caller's
    event loop: `write` only queues the line's bytes. The thread flushes at least every
    `flush_every_s` (100 ms) and on close, so a SIGKILL loses only records that finished in the
    last flush window (and those still in flight); they are not in the file, so a resume sends
    them again, once. A write error (a full disk) is raised as OutputError by the next `write`,
    `write_many`, `flush` or `close`, in the caller's thread."""

    def __init__(self, path: Path, flush_every_s: float | None = None, secrets: tuple[str, ...] = ()) -> None:
        self.path, self.secrets = path, secrets
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "ab", buffering=0)  # unbuffered: one os write per flush window
            self._repair_torn_tail()
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror} (choose another --out)") from exc
        self._every = FLUSH_EVERY_S if flush_every_s is None else flush_every_s
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._wake = threading.Condition(threading.Lock())
        self._io = threading.Lock()  # one writer of the file at a time
        self._error: OutputError | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"records-writer:{path.name}", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)  # an exit that skipped close() still flushes

    def _repair_torn_tail(self) -> None:
        # A killed run can leave a last line without its newline; start ours on a fresh line.
        if self._file.tell() > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write(b"\n")

    def write(self, record: Record) -> None:
        """Queue one record, its provider text redacted first (`redact_record`: in place, so a
        caller that keeps the record keeps the redacted one)."""
        self._put(redact_record(record, self.secrets).to_json() + b"\n")

    def write_many(self, records: list[Record]) -> None:
        """Several records in one write (a batch whose rows finished together)."""
        self._put(b"".join(redact_record(r, self.secrets).to_json() + b"\n" for r in records))

    def _put(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._file.closed:
            raise OutputError(f"cannot write {self.path}: the records file is closed")
        with self._wake:
            self._pending.append(data)
            self._pending_bytes += len(data)
            if len(self._pending) == 1 or self._pending_bytes >= _WAKE_BYTES:
                self._wake.notify()  # a window starts (the writer sleeps while there is nothing)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()  # idle: no wake-ups while nothing is written
                if not self._closing and self._pending_bytes < _WAKE_BYTES:
                    self._wake.wait(self._every)  # gather the window's records
                closing = self._closing
            self._drain()
            if closing or self._error is not None:
                return

    def _drain(self) -> None:
        """Write and flush everything queued so far (in the order it was queued)."""
        with self._io:
            with self._wake:
                chunks, self._pending, self._pending_bytes = self._pending, [], 0
            if not chunks or self._error is not None or self._file.closed:
                return
            try:
                _write_all(self._file, b"".join(chunks))  # one system call (one GIL hand-off), usually
            except OSError as exc:
                self._error = OutputError(f"cannot write {self.path}: {exc.strerror} (is the disk full?)")
                self._error.__cause__ = exc

    def flush(self) -> None:
        """Write and flush what is queued now, in the caller's thread (blocking)."""
        self._drain()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._file.closed:
            return
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
        atexit.unregister(self._at_exit)
        try:
            self._drain()  # what came in while the thread stopped
            if self._error is not None:
                raise self._error
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:  # the disk filled up: the same clear error as write(), not a traceback
            raise OutputError(f"cannot write {self.path}: {exc.strerror} (is the disk full?)") from exc
        finally:
            with contextlib.suppress(OSError):
                self._file.close()  # releases the file even when its last flush failed

    def _at_exit(self) -> None:
        with contextlib.suppress(OutputError):
            self.close()

    def __enter__(self) -> "RecordSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(file: Any, data: bytes) -> None:
    """Write every byte to an unbuffered file (a raw write may take fewer than asked)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(28, "No space left on device")
        view = view[written:]


def record_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(byte offset, JSON object) of every line of a records file that parses as one, in file
    order: the one reader of records.jsonl. A torn or blank line (a killed run's last line) is
    passed over; no file, no lines."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        offset = 0
        for line in f:
            try:
                data = orjson.loads(line)  # orjson: ~3x json.loads on a record line
            except ValueError:
                data = None
            if isinstance(data, dict):
                yield offset, data
            offset += len(line)


def read_records(path: Path) -> Iterator[Record]:
    """Every parseable record in file order; a torn (unparseable) line is skipped."""
    for _, data in record_lines(path):
        try:
            record = Record.from_dict(data)
        except (ValueError, TypeError):
            continue  # a line that is JSON but no record (no id or row)
        yield record
