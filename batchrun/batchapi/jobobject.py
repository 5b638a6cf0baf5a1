"""A provider's Batch object -> what the ledger keeps about a job, every field checked (pure).

The object comes from a provider batchrun does not control. A figure that is not a count
(negative, not a number, more than the job's own requests), a time that is not a time, or an id
that is not an id is left out and named as a problem -- never repeated as given, so a 300-digit
number or an echoed key is not printed. Error messages are redacted. A status batchrun does not
know is kept (when it reads as a name) for the poll loop to warn about; one that does not read as
a name becomes UNREADABLE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from batchrun.redact import mask, redact

KNOWN_STATUSES = (
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
)
UNREADABLE = "unreadable"
COUNTS = ("total", "completed", "failed")
ENDED = ("completed_at", "expired_at", "cancelled_at", "failed_at")
EARLIEST_S, LATEST_S = 946_684_800, 7_258_118_400  # 2000-01-01 .. 2200-01-01 (unix s)
_MAX_MESSAGE = 500
_STATUS = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ID = re.compile(r"[\x21-\x7e]{1,256}")  # printable, no spaces


@dataclass(slots=True)
class JobView:
    """The checked fields of one Batch object, and what was wrong with the rest."""

    batch_id: str | None = None
    status: str = UNREADABLE
    request_counts: dict[str, int] = field(default_factory=dict)
    created_at: int | None = None
    ended_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # e.g. "request_counts.completed is negative"


def plain(batch: Any) -> dict[str, Any]:
    """The openai SDK's Batch (built without validation: any JSON the provider sent) as plain data."""
    if isinstance(batch, dict):
        return batch
    to_dict = getattr(batch, "to_dict", None)
    data = to_dict(warnings=False) if callable(to_dict) else None
    return data if isinstance(data, dict) else {}


def read_job(obj: Any, requests: int, secrets: tuple[str, ...] = ()) -> JobView:
    """`obj` (a Batch object as plain data) checked against a job of `requests` requests."""
    obj = plain(obj)
    view = JobView()
    view.batch_id = _ident(obj.get("id"), "id", view, secrets)
    view.status = _status(obj.get("status"), view, secrets)
    view.request_counts = read_counts(obj.get("request_counts"), requests, view.problems)
    view.created_at = _time(obj.get("created_at"), "created_at", view)
    ended = [_time(obj.get(name), name, view) for name in ENDED]
    view.ended_at = next((t for t in ended if t is not None), None)
    view.output_file_id = _ident(obj.get("output_file_id"), "output_file_id", view, secrets)
    view.error_file_id = _ident(obj.get("error_file_id"), "error_file_id", view, secrets)
    view.errors = _errors(obj.get("errors"), view, secrets)
    return view


def _describe(value: Any) -> str:
    """What is wrong with a value, in words that do not repeat it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"not a number ({type(value).__name__})"
    return "negative" if value < 0 else "a decimal number" if isinstance(value, float) else "too large"


def read_counts(value: Any, requests: int, problems: list[str]) -> dict[str, int]:
    """request_counts: each of total / completed / failed kept when it is a count of at most the
    job's `requests`; what is wrong with the others is added to `problems`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append("request_counts is not an object")
        return {}
    counts = {}
    for name in COUNTS:
        figure = value.get(name)
        if figure is None:
            continue
        if isinstance(figure, int) and not isinstance(figure, bool) and 0 <= figure <= requests:
            counts[name] = figure
        else:
            why = (
                _describe(figure)
                if not isinstance(figure, int) or isinstance(figure, bool) or figure < 0
                else f"more than the job's {requests:,} requests"
            )
            problems.append(f"request_counts.{name} is {why}")
    return counts


def _time(value: Any, name: str, view: JobView) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and EARLIEST_S <= value <= LATEST_S:
        return int(value)
    view.problems.append(f"{name} is not a time (unix seconds between 2000 and 2200)")
    return None


def _ident(value: Any, name: str, view: JobView, secrets: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and _ID.fullmatch(value):
        return mask(value, secrets)
    view.problems.append(f"{name} is not an id")
    return None


def _status(value: Any, view: JobView, secrets: tuple[str, ...]) -> str:
    if value is None:
        view.problems.append("status is missing")
        return UNREADABLE
    if isinstance(value, str) and _STATUS.fullmatch(value) and mask(value, secrets) == value:
        return value
    view.problems.append("status is not a status name")
    return UNREADABLE


def _errors(value: Any, view: JobView, secrets: tuple[str, ...]) -> list[dict[str, Any]]:
    """`errors.data`, each error's code, message (redacted, cut), param and line checked."""
    if value is None:
        return []
    data = value.get("data") if isinstance(value, dict) else None
    if data is None and isinstance(value, dict):
        return []
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        view.problems.append("errors is not a list of errors")
        return []
    return [_error(e, secrets) for e in data]


def _error(error: dict[str, Any], secrets: tuple[str, ...]) -> dict[str, Any]:
    code, message, param, line = (error.get(k) for k in ("code", "message", "param", "line"))
    return {
        "code": mask(code, secrets)[:64] if isinstance(code, str) else None,
        "message": redact(message, secrets)[:_MAX_MESSAGE] if isinstance(message, str) else None,
        "param": mask(param, secrets)[:200] if isinstance(param, str) else None,
        "line": line if isinstance(line, int) and not isinstance(line, bool) and 0 < line < 2**63 else None,
    }
