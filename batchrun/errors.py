"""The exceptions that stop batchrun before or during a run.

A failed *request* is never an exception: it is a Record with status "error".
Only a run that cannot start or cannot go on raises, and every message says
what to do next.

    BatchrunError
     +-- InputError      the prompts file is missing, unreadable or has a bad row (exit 2)
     |    +-- InputChanged    it changed while the run read it (exit 2)
     +-- ConfigError     an option or environment value is invalid (exit 2)
     +-- OutputError     the results directory cannot be written (exit 2)
     +-- RunAborted      --max-errors / --max-error-rate stopped the run (exit 1)
"""

from __future__ import annotations


class BatchrunError(Exception):
    """Base class; `str(err)` is the whole user-facing message."""

    exit_code = 2


class InputError(BatchrunError):
    """A problem with the prompts file, naming file, line and column where known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: str | int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path, self.line, self.column, self.hint = path, line, column, hint
        where = path or ""
        if line is not None:
            where += f" line {line}"
        if column is not None:
            where += f", column {column!r}" if isinstance(column, str) else f", column {column}"
        text = f"{where}: {message}" if where else message
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class InputChanged(InputError):
    """The prompts file changed while the run read it: rows may be missing, or sent from two versions."""


class ConfigError(BatchrunError):
    """An invalid option, environment variable or combination of them."""


class OutputError(BatchrunError):
    """The output directory or a file in it cannot be written."""


class RunAborted(BatchrunError):
    """The run was stopped early by --max-errors or --max-error-rate."""

    exit_code = 1
