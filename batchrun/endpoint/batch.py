"""The batch kind: a chat request written as a line of a Batch API input file, answered by a line
of the job's output or error file. Request lines from online bodies, and result lines -> Records
(pure: no I/O, no clock); batchapi/ splits, uploads, polls and downloads the files.

A line's body is exactly what online mode sends (requests.build_body) minus the two fields that
make a request stream: the Batch API answers every request with one whole `chat.completion`
(usage included), and rejects `stream: true`.

A batch record carries what the API gives: text, tool calls, finish reason, token usage, the
request id and the job's id and times. It has no per-request timing -- the Batch API does not
say when a request ran -- so ttft / latency / total / queue wait stay None rather than being
invented, and the run's timing figures count only online records.

A line is read defensively: any field of the wrong type or shape (a status code that is not a
number, usage that is not an object, content that is neither text nor content parts, ...) makes
the row's record a MalformedBatchLine error naming the file and line, never an exception, so one
bad line costs one row (sent again by --resume), not the job. Messages quote no value from the
line, only its types; provider messages (error bodies) are redacted before they are cut.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from batchrun.endpoint.attempt import EMPTY_RESPONSE, RESPONSE_TOO_LARGE, status_error_type
from batchrun.endpoint.kinds import Kind
from batchrun.endpoint.toolcalls import ToolCallAssembler, check_calls, forces_tool_call
from batchrun.redact import redact
from batchrun.store.records import CANCELLED, ERROR, OK, TIMEOUT, Record

PATH: Final = "/v1/chat/completions"  # the url of every request line, and the job's endpoint
STREAM_FIELDS = ("stream", "stream_options")
TOO_LARGE = "batchrun_too_large"  # the key of the note that stands in for an oversize result line

EXPIRED = "batch_expired"
MISSING = "BatchResultMissing"
MALFORMED = "MalformedBatchLine"
LINE_ERROR = "BatchLineError"
_MAX_MESSAGE = 500
MAX_TOKENS_FIGURE = 2**53  # a token count above this is not a count (and not exact as a float)
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


def batch_body(online: dict[str, Any]) -> dict[str, Any]:
    """An online request body (`build_body`'s) without its streaming fields."""
    body = dict(online)
    for name in STREAM_FIELDS:
        body.pop(name, None)
    return body


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    """One line of a Batch API input file, newline included."""
    line = {"custom_id": custom_id, "method": "POST", "url": PATH, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What every record of one job carries about the job."""

    batch_id: str
    status: str  # the job's final status
    created_at: int | None  # unix s
    ended_at: int | None  # unix s: completed / expired / cancelled / failed at
    errors: tuple[str, ...] = ()  # a failed job's validation messages (redacted)


class _Malformed(ValueError):
    """A line of the wrong shape; the message says which field and how (never its value)."""


def _base(cid: str, row: int, job: JobInfo) -> Record:
    record = Record(id=cid, row=row, attempts=1, queue_wait_s=None)
    record.batch_id, record.batch_created_at, record.batch_completed_at = job.batch_id, job.created_at, job.ended_at
    return record


def record_from_raw(
    raw: bytes,
    cid: str,
    row: int,
    job: JobInfo,
    tools: list[dict[str, Any]] | None = None,
    *,
    where: str = "a result line",
    secrets: tuple[str, ...] = (),
    tool_choice: Any = None,
) -> Record:
    """One line of a kept output or error file (lines.KeptLines: bounded, secrets masked) as the
    record of row `row`, whose custom_id is `cid`; `where` names the line ("batch/0001.output.jsonl
    line 7") in the record's error; `tools` and `tool_choice` are the request's, to check its tool
    calls and whether it forced one."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return malformed_record(cid, row, job, where, f"it cannot be read as JSON ({exc.args[0]})")
    if isinstance(line, dict) and isinstance(line.get(TOO_LARGE), dict):
        return _too_large(_base(cid, row, job), line[TOO_LARGE], where)
    return record_from_line(line, row, job, tools, where=where, secrets=secrets, cid=cid, tool_choice=tool_choice)


def record_from_line(
    line: Any,
    row: int,
    job: JobInfo,
    tools: list[dict[str, Any]] | None = None,
    *,
    where: str = "a result line",
    secrets: tuple[str, ...] = (),
    cid: str | None = None,
    tool_choice: Any = None,
) -> Record:
    """One parsed output- or error-file line as the record of its row."""
    if cid is None:
        cid = str(line.get("custom_id")) if isinstance(line, dict) else "?"
    try:
        record = _read_line(_base(cid, row, job), line, tools, secrets)
    except _Malformed as exc:
        return malformed_record(cid, row, job, where, str(exc))
    record.tool_choice_ignored = record.status == OK and not record.tool_calls and forces_tool_call(tool_choice)
    return record


def malformed_record(cid: str, row: int, job: JobInfo, where: str, what: str) -> Record:
    """The record of a row whose result line has the wrong shape: a failure, so --resume sends it again."""
    return _fail(_base(cid, row, job), ERROR, MALFORMED, f"{where}: {what}; the row is sent again by --resume")


def _read_line(record: Record, line: Any, tools: list[dict[str, Any]] | None, secrets: tuple[str, ...]) -> Record:
    line = _object(line, "the line")
    response = line.get("response")
    if response is None:
        if line.get("error") is None:
            raise _Malformed("the line has neither a response nor an error")
        return _line_error(record, _object(line["error"], "error"), secrets)
    response = _object(response, "response")
    status = _integer(response.get("status_code"), "response.status_code", 100, 599)
    if status is None:
        raise _Malformed("response.status_code is missing")
    record.http_status = status
    record.request_id = _text(response.get("request_id"), "response.request_id")
    body = response.get("body")
    if status != 200:
        return _fail(record, ERROR, status_error_type(status), _error_message(body, secrets))
    return _completion(record, _object(body, "response.body"), tools, secrets)


def _completion(
    record: Record, body: dict[str, Any], tools: list[dict[str, Any]] | None, secrets: tuple[str, ...]
) -> Record:
    record.model = _text(body.get("model"), "model")
    if body.get("usage") is not None:
        usage = _object(body["usage"], "usage")
        record.prompt_tokens = _integer(usage.get("prompt_tokens"), "usage.prompt_tokens", 0, MAX_TOKENS_FIGURE)
        record.completion_tokens = _integer(
            usage.get("completion_tokens"), "usage.completion_tokens", 0, MAX_TOKENS_FIGURE
        )
    choices = [] if body.get("choices") is None else _list(body["choices"], "choices")
    if not choices:
        return _fail(record, ERROR, EMPTY_RESPONSE, "the completion has no choices")
    choice = _object(choices[0], "choices[0]")
    message = {} if choice.get("message") is None else _object(choice["message"], "choices[0].message")
    record.finish_reason = _text(choice.get("finish_reason"), "choices[0].finish_reason")
    record.text, refusal = _content(message.get("content"))
    refusal = refusal or _text(message.get("refusal"), "message.refusal")
    if message.get("tool_calls") is not None:
        record.tool_calls = check_calls(_tool_calls(message["tool_calls"]), tools) or None
    if not record.text and not record.tool_calls:
        if refusal:
            return _fail(record, ERROR, EMPTY_RESPONSE, f"the model refused: {redact(refusal, secrets)}")
        if record.finish_reason is None:  # as online: only an answer nobody ended is a failure
            return _fail(
                record, ERROR, EMPTY_RESPONSE, "the completion has neither content, a tool call nor a finish_reason"
            )
        record.empty = True
    record.status = OK
    return record


def _content(content: Any) -> tuple[str, str | None]:
    """(text, refusal) of a message's content: a string, or a list of content parts.

    The Chat Completions API defines list content for an assistant message as "An array of content
    parts with a defined type. Can be one or more of type `text`, or exactly one of type `refusal`"
    -- {"type": "text", "text": ...} and {"type": "refusal", "refusal": ...} (OpenAI API reference,
    Chat Completions > Create chat completion > messages > Assistant message > content;
    ChatCompletionRequestAssistantMessage in openai/openai-openapi). The answer is the text parts
    joined in order with nothing between them. A refusal part is no answer: it is what a response
    keeps in `message.refusal`, and the row fails as a refusal does. Anything else is malformed."""
    if content is None or isinstance(content, str):
        return content or "", None
    parts = _list(content, "message.content")
    texts, refusals = [], []
    for i, part in enumerate(parts):
        kind = _object(part, f"message.content[{i}]").get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            refusals.append(part["refusal"])
        else:
            raise _Malformed(f"message.content[{i}] is neither a text part nor a refusal part")
    if refusals and (texts or len(refusals) > 1):
        raise _Malformed("message.content mixes parts the API allows only apart (text parts, or exactly one refusal)")
    return "".join(texts), (refusals[0] if refusals else None)


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    """message.tool_calls, each checked, assembled as online mode assembles streamed ones."""
    deltas = []
    for i, call in enumerate(_list(calls, "message.tool_calls")):
        where = f"message.tool_calls[{i}]"
        call = _object(call, where)
        function = _object(call.get("function"), f"{where}.function")
        deltas.append(
            {
                "index": i,
                "id": _text(call.get("id"), f"{where}.id"),
                "type": _text(call.get("type"), f"{where}.type"),
                "function": {
                    "name": _text(function.get("name"), f"{where}.function.name"),
                    "arguments": _text(function.get("arguments"), f"{where}.function.arguments"),
                },
            }
        )
    assembler = ToolCallAssembler()
    assembler.add(deltas)
    return assembler.calls()


def _line_error(record: Record, error: dict[str, Any], secrets: tuple[str, ...]) -> Record:
    """An error-file line without a response (e.g. batch_expired): its code is the error type."""
    code = _text(error.get("code"), "error.code")
    code = code if code is not None and _CODE.fullmatch(code) else LINE_ERROR  # a type, not free text
    message = _text(error.get("message"), "error.message") or "the error file gave no message"
    return _fail(record, TIMEOUT if code == EXPIRED else ERROR, code, redact(message, secrets))


def _error_message(body: Any, secrets: tuple[str, ...]) -> str:
    """A failed request's message: the body's error.message, else the body itself (redacted whole,
    then cut: a secret past the cut must not leave its first characters behind)."""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = body if isinstance(body, str) else orjson.dumps(body).decode()
    return redact(message, secrets)


def _too_large(record: Record, note: dict[str, Any], where: str) -> Record:
    size, limit = note.get("bytes"), note.get("limit")
    return _fail(
        record,
        ERROR,
        RESPONSE_TOO_LARGE,
        f"{where}: the result line is {size:,} bytes, over --max-response-bytes {limit:,}; it was not read "
        "(raise --max-response-bytes and --resume to send the row again)"
        if isinstance(size, int) and isinstance(limit, int)
        else f"{where}: the result line was too large",
    )


def _fail(record: Record, status: str, error_type: str, message: str) -> Record:
    record.status, record.error_type, record.error = status, error_type, message[:_MAX_MESSAGE]
    return record


# ---------------------------------------------------------------- shapes


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "true/false",
        int: "an integer",
        float: "a decimal number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"{name} is {_kind(value)}, not an object")
    return value


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Malformed(f"{name} is {_kind(value)}, not a list")
    return value


def _text(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _Malformed(f"{name} is {_kind(value)}, not text")
    return value


def _integer(value: Any, name: str, low: int, high: int) -> int | None:
    """An integer field within [low, high], or None when absent."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"{name} is {_kind(value)}, not an integer")
    if not low <= value <= high:
        raise _Malformed(f"{name} is out of range (not within {low:,}..{high:,})")
    return value


def missing_record(cid: str, row: int, job: JobInfo, unmatched: str = "") -> Record:
    """The record of a row the job's files did not mention: why depends on how the job ended.
    Every one is a failure, so --resume sends the row again. `unmatched`: lines of the job's files
    that named no row (the row's line may be among them)."""
    record = _base(cid, row, job)
    if job.status == "expired":
        return _fail(record, TIMEOUT, EXPIRED, "the job expired before this request ran")
    if job.status == "cancelled":
        return _fail(record, CANCELLED, "batch_cancelled", "the job was cancelled before this request ran")
    if job.status == "failed":
        why = "; ".join(job.errors[:3]) or "no reason given"
        return _fail(record, ERROR, "batch_failed", f"the job failed validation: {why}")
    note = f" ({unmatched})" if unmatched else ""
    return _fail(record, ERROR, MISSING, f"the job ended {job.status} without a line for this custom_id{note}")


KIND = Kind("batch", PATH, batch_body, record_from_raw, record_from_line)
