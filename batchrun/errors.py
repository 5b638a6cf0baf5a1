"""The exceptions that stop batchrun before or during a run.

A failed *request* is never an exception: it is a Record with status "error".
Only a run that cannot start or cannot go on raises, and every message says
what to do next.

    BatchrunError
     +-- InputError      the prompts file is missing, unreadable or has a bad row (exit 2)
     |    +-- InputChanged    it changed while the run read it (exit 2)
     +-- ConfigError     an option or environment value is invalid (exit 2)
     +-- OutputError     the results directory cannot be written (exit 2)
     +-- EndpointRefused the endpoint refused the key, model or URL: no more rows sent (exit 2)
     +-- InsideEventLoop batchrun.run() called where an event loop runs: await batchrun.arun()
     +-- RunAborted      --max-errors / --max-error-rate stopped the run (exit 1)

An error raised after a run started and wrote its files carries that run's directory in
`out_dir` (continue it with `batchrun run --resume DIR` or `batchrun.run(resume=DIR)`).
"""

from __future__ import annotations


class BatchrunError(Exception):
    """Base class; `str(err)` is the whole user-facing message."""

    exit_code = 2
    out_dir: str | None = None  # the run directory whose files were written before it stopped


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


class EndpointRefused(BatchrunError):
    """The endpoint refused the run (401, 403 or 404: the key, the model or the URL; or its first
    answers were all one non-retryable 4xx). No more rows were sent; those before are recorded."""

    def __init__(self, message: str, *, out_dir: str | None = None) -> None:
        super().__init__(message)
        self.out_dir = out_dir


class InsideEventLoop(BatchrunError, RuntimeError):
    """A blocking call (batchrun.run) where an event loop already runs (Jupyter, an async app):
    the message says which coroutine to await instead."""


class RunAborted(BatchrunError):
    """The run was stopped early by --max-errors or --max-error-rate."""

    exit_code = 1
