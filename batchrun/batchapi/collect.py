"""Batch API output / error lines -> Records (pure: no I/O, no clock).

A batch record carries what the API gives: text, tool calls, finish reason, token usage, the
request id and the job's id and times. It has no per-request timing -- the Batch API does not
say when a request ran -- so ttft / latency / total / queue wait stay None rather than being
invented, and the run's timing figures count only online records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchrun.endpoint.client import EMPTY_RESPONSE, status_error_type
from batchrun.engine.tools import ToolCallAssembler, check_calls
from batchrun.store.records import CANCELLED, ERROR, OK, TIMEOUT, Record

EXPIRED = "batch_expired"
MISSING = "BatchResultMissing"
_MAX_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What every record of one job carries about the job."""

    batch_id: str
    status: str                       # the job's final status
    created_at: int | None            # unix s
    ended_at: int | None              # unix s: completed / expired / cancelled / failed at
    errors: tuple[str, ...] = ()      # a failed job's validation messages


def _base(cid: str, row: int, job: JobInfo) -> Record:
    record = Record(id=cid, row=row, attempts=1, queue_wait_s=None)  # type: ignore[arg-type]
    record.batch_id, record.batch_created_at, record.batch_completed_at = job.batch_id, job.created_at, job.ended_at
    return record


def record_from_line(line: dict[str, Any], row: int, job: JobInfo,
                     tools: list[dict[str, Any]] | None = None) -> Record:
    """One output- or error-file line as the record of its row."""
    record = _base(str(line.get("custom_id")), row, job)
    response = line.get("response")
    if not isinstance(response, dict):
        return _line_error(record, line.get("error"))
    record.http_status = response.get("status_code")
    record.request_id = response.get("request_id")
    body = response.get("body") if isinstance(response.get("body"), dict) else {}
    if record.http_status != 200:
        return _fail(record, ERROR, status_error_type(int(record.http_status or 0)), _error_message(body))
    return _completion(record, body, tools)


def _completion(record: Record, body: dict[str, Any], tools: list[dict[str, Any]] | None) -> Record:
    record.model = body.get("model")
    usage = body.get("usage") or {}
    record.prompt_tokens, record.completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    record.finish_reason = choice.get("finish_reason")
    record.text = message.get("content") or ""
    if message.get("tool_calls"):
        assembler = ToolCallAssembler()
        assembler.add([{"index": i, **call} for i, call in enumerate(message["tool_calls"])])
        record.tool_calls = check_calls(assembler.calls(), tools)
    if not record.text and not record.tool_calls:
        if record.finish_reason is None:       # as online: only an answer nobody ended is a failure
            return _fail(record, ERROR, EMPTY_RESPONSE, "the completion has neither content, a tool call "
                         "nor a finish_reason")
        record.empty = True
    record.status = OK
    return record


def _line_error(record: Record, error: Any) -> Record:
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "BatchLineError")
    status = TIMEOUT if code == EXPIRED else ERROR
    return _fail(record, status, code, str(error.get("message") or "the error file gave no message"))


def _error_message(body: dict[str, Any]) -> str:
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or body)[:_MAX_MESSAGE]


def _fail(record: Record, status: str, error_type: str, message: str) -> Record:
    record.status, record.error_type, record.error = status, error_type, message[:_MAX_MESSAGE]
    return record


def missing_record(cid: str, row: int, job: JobInfo) -> Record:
    """The record of a row the job's files did not mention: why depends on how the job ended.
    Every one is a failure, so --resume sends the row again."""
    record = _base(cid, row, job)
    if job.status == "expired":
        return _fail(record, TIMEOUT, EXPIRED, "the job expired before this request ran")
    if job.status == "cancelled":
        return _fail(record, CANCELLED, "batch_cancelled", "the job was cancelled before this request ran")
    if job.status == "failed":
        why = "; ".join(job.errors[:3]) or "no reason given"
        return _fail(record, ERROR, "batch_failed", f"the job failed validation: {why}")
    return _fail(record, ERROR, MISSING, f"the job ended {job.status} without a line for this custom_id")
