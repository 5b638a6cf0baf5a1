"""What a reader yields: one Prompt per good input row, one BadRow per skipped row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Prompt:
    """One input row, ready to become a request body.

    `messages` is the chat conversation; `params` holds per-row request fields
    (model, max_tokens, temperature, tools, ...) that override run-wide options;
    `body` is set instead for OpenAI Batch API lines and is sent as is.
    """

    id: str  # row id: --id-column, Batch API custom_id, else str(row)
    row: int  # 0-based position among the file's data rows (input order)
    line: int  # 1-based line in the file where the row starts
    messages: list[dict[str, Any]] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    data: dict[str, Any] | None = None  # the row's own columns as read, given back in results


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that could not become a Prompt; with --on-bad-row skip it is recorded, never dropped."""

    id: str
    row: int
    line: int
    reason: str  # the same text an InputError would show
    data: dict[str, Any] | None = None  # the row's columns when it could be parsed at all
    synthetic_id: bool = False  # `id` was made up (the row's own id was missing or taken)
