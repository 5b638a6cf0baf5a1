"""`batchrun.run` / `batchrun.arun`: a run from Python, and the `Run` they return.

The command line's `run` command goes through the same two steps (`prepare`, then `execute`),
with its console hooks instead of these: one code path for both faces.

Prompts given as Python values are written once into the run directory, so the run reads a file
like any other and can be resumed from either face: a pandas DataFrame as `input.parquet`
(pyarrow is a dependency: the columns keep their types for a later resume), a list of strings or
dicts as `input.jsonl` (one JSON object a line; a string is `{"prompt": ...}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, Union

from batchrun.api import keywords
from batchrun.config import RunConfig
from batchrun.errors import BatchrunError, ConfigError, EndpointRefused, InputError, InsideEventLoop, OutputError
from batchrun.hooks import Hooks
from batchrun.interrupts import loop_handlers
from batchrun.store.rundir import STAGED_INPUTS, check_empty, new_run_dir

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Unpack  # typing's own from Python 3.11

    from batchrun.api.typed import RunOptions
    from batchrun.finish import RunOutcome

LOG = logging.getLogger("batchrun")
LOG.addHandler(logging.NullHandler())  # a library's messages: shown only where the caller configures logging
FRAME_INPUT, LIST_INPUT = STAGED_INPUTS  # a DataFrame's rows, a list's, written into the run directory
# The pipeline's messages a Python caller sees on stderr too (unless quiet); the rest are logged.
MUST_SEE = ("warning", "resuming", "interrupted")

Prompts = Union[str, "os.PathLike[str]", "pd.DataFrame", Sequence[str], Sequence[Mapping[str, Any]], None]

PROMPTS = inspect.Parameter(
    "prompts",
    inspect.Parameter.POSITIONAL_ONLY,
    default=None,
    annotation="str | os.PathLike[str] | pandas.DataFrame | list[str] | list[dict[str, Any]] | None",
)


# ---------------------------------------------------------------- the two faces' common steps


@dataclass(frozen=True)
class Prepared:
    """A run ready to execute: its config, and the caller's DataFrame when it gave one."""

    config: RunConfig
    frame: Any = None  # pandas.DataFrame: its columns, dtypes and index come back in Run.frame


def prepare(prompts: Prompts, given: Mapping[str, Any]) -> Prepared:
    """The config of a run of `prompts` (a path, a DataFrame, a list, or None: the `input` option
    or the resumed run's own) with the options `given`; Python rows are written into the run
    directory first (the directory is chosen here then)."""
    options = dict(given)
    frame, staged = None, None
    if prompts is not None:
        if "input" in options:
            raise TypeError("give the prompts once: as the first argument, not also as input=")
        if isinstance(prompts, (str, os.PathLike)):
            options["input"] = Path(prompts)
        else:
            frame = prompts if _is_frame(prompts) else None
            staged = _Staged.of(prompts, options)
            options.update(staged.options())
    config = RunConfig.from_options("run", **options)  # a bad option is refused before anything is written
    if staged is not None:
        staged.write()
    return Prepared(config, frame)


async def execute(prepared: Prepared, hooks: Hooks) -> Run:
    """Run it to the end (or until stopped) and write every file; how it ended is the Run's."""
    from batchrun.pipeline import execute_run  # lazy: the run path (aiohttp, the engine) only when a run starts

    outcome = await execute_run(prepared.config, hooks)
    return Run(outcome, prepared.frame)


# ---------------------------------------------------------------- the Python face


@keywords.takes("run", [PROMPTS])
def run(prompts: Prompts = None, /, **options: Unpack[RunOptions]) -> Run:
    """Send every prompt to the endpoint and return the finished `Run`.

    Args:
        prompts: a CSV, JSONL or Parquet file (a path), a pandas DataFrame, or a list of prompt
            strings or of dicts (one row each). None with `resume=DIR` continues that run.
        **options: every option of `batchrun run`, by its name (`--max-tokens` is `max_tokens`)
            with the same default; see the [command-line reference](cli.md). Python values are taken where the
            command line takes text: `concurrency=8`, `json_schema=` a dict or a pydantic model
            class, `extra_body=` a dict, durations in seconds, paths as `str` or `Path`.

    Returns:
        The `Run`: `.frame`, `.summary`, `.out_dir`, `.ok`, `.failed`, ...

    Raises:
        TypeError: an unknown keyword (the message names the closest ones).
        ConfigError, InputError, OutputError: a bad option, prompts file or output directory.
        EndpointRefused: the endpoint refused the key, model or URL (rows before are recorded).
        InsideEventLoop: called inside a running event loop (Jupyter): `await batchrun.arun(...)`.
        KeyboardInterrupt: Ctrl-C, after the run's files are written (resume it with `resume=`).

    Failed requests are not exceptions: they are rows with status `error` (`run.failed`).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no running loop: the one case run() is for
        pass
    else:
        raise InsideEventLoop(
            "batchrun.run() blocks, and an event loop is already running here (Jupyter, an async "
            "app): use `await batchrun.arun(...)` with the same arguments"
        )
    given = keywords.given("run", options)
    try:
        finished = asyncio.run(_drive(prompts, given, signals=True))
    except asyncio.CancelledError:  # a second Ctrl-C cancelled the run at once (no other code can)
        raise KeyboardInterrupt("interrupted twice: the run stopped at once; its records are kept") from None
    return _returned(finished)


@keywords.takes("run", [PROMPTS])
async def arun(prompts: Prompts = None, /, **options: Unpack[RunOptions]) -> Run:
    """`run` as a coroutine, for a running event loop (Jupyter: `run = await batchrun.arun(df)`).

    Takes what `run` takes and returns what it returns. Cancelling the task stops the run as
    Ctrl-C does: requests in flight are recorded as cancelled, the files are written, then the
    task ends cancelled (resume it with `resume=run_dir`).
    """
    given = keywords.given("run", options)
    return _returned(await _drive(prompts, given, signals=False))


async def _drive(prompts: Prompts, given: Mapping[str, Any], *, signals: bool) -> Run:
    """Prepare and execute with the Python face's hooks. A cancelled task (Ctrl-C under
    asyncio.run, or a caller's cancel()) stops a sending run gracefully and waits for its files
    before it ends cancelled; a second cancel stops waiting."""
    if given.get("dry_run"):  # refused before Python rows are written anywhere
        raise ConfigError("dry_run is the command line's (`batchrun run --dry-run FILE`); batchrun.run sends")
    prepared = prepare(prompts, given)
    quiet = prepared.config.control.quiet
    interrupts = _Interrupts(signals)
    hooks = Hooks(notify=_notifier(quiet), progress=None if quiet else _progress(), interrupts=interrupts)
    inner = asyncio.ensure_future(execute(prepared, hooks))
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        if inner.done():
            raise
        if interrupts.stop is not None:
            interrupts.stop()  # sending: end as an interrupted run, its files written
        else:
            inner.cancel()  # not sending yet: nothing to keep
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            inner.cancel()
            raise
        raise


def _returned(finished: Run) -> Run:
    """The Run, or the exception a caller must see for how it ended (after its files are written)."""
    outcome = finished.outcome
    where = str(outcome.out_dir)
    if outcome.refused is not None:
        raise EndpointRefused(
            f"the endpoint refused the run: {outcome.refused}; no more rows were sent. Fix the key "
            f"(api_key / OPENAI_API_KEY), model or base_url and continue with resume={where!r}",
            out_dir=where,
        )
    if outcome.input_error is not None:
        error = outcome.input_error
        if isinstance(error, BatchrunError):
            error.out_dir = where
            raise error
        raise InputError(str(error), hint=f"rows before it are recorded in {where}")
    if outcome.interrupted:
        raise KeyboardInterrupt(f"interrupted; the run's files are written: continue with resume={where!r}")
    if outcome.internal_errors:
        _say(
            f"{outcome.internal_errors} row(s) hit an internal error of batchrun (a bug); the tracebacks "
            f"are in {where}/internal-errors.log",
            quiet=False,
        )
    return finished


# ---------------------------------------------------------------- hooks of the Python face


def _say(message: str, *, quiet: bool) -> None:
    LOG.warning(message)
    if not quiet:
        print(f"batchrun: {message}", file=sys.stderr, flush=True)


def _notifier(quiet: bool) -> Callable[[str], None]:
    """Every message to the "batchrun" logger; the few a user must see (the simulated endpoint,
    resume counts, warnings) also to stderr unless quiet."""

    def notify(message: str) -> None:
        if message.startswith(MUST_SEE) or "simulated endpoint" in message:
            _say(message, quiet=quiet)
        else:
            LOG.info(message)

    return notify


def _progress() -> Any:
    from tqdm.auto import tqdm  # lazy: tqdm only when a run shows progress

    from batchrun.progress import ConsoleProgress  # lazy: as tqdm

    widget = "notebook" in tqdm.__module__ or any("notebook" in c.__module__ for c in tqdm.__mro__)
    return ConsoleProgress(tqdm, widget=widget)


class _Interrupts:
    """hooks.interrupts of the Python face. The sending run's `stop` is kept (a cancelled task
    calls it); with `signals` (batchrun.run in the main thread) Ctrl-C stops the run gracefully,
    and a second Ctrl-C closes the records file and cancels the run at once."""

    def __init__(self, signals: bool) -> None:
        self.signals = signals
        self.stop: Callable[[], None] | None = None

    @contextlib.contextmanager
    def __call__(self, stop: Callable[[], None], close_now: Callable[[], None] | None) -> Iterator[None]:
        self.stop = stop
        task = asyncio.current_task()
        pressed = False

        def on_signal() -> None:
            nonlocal pressed
            if pressed:
                if close_now is not None:
                    close_now()
                if task is not None:
                    task.cancel()
                return
            pressed = True
            stop()

        try:
            if self.signals and threading.current_thread() is threading.main_thread():
                with loop_handlers(asyncio.get_running_loop(), on_signal):
                    yield
            else:
                yield
        finally:
            self.stop = None


# ---------------------------------------------------------------- Python rows into the run directory


def _is_frame(value: Any) -> bool:
    """A pandas DataFrame, told without importing pandas."""
    return type(value).__name__ == "DataFrame" and type(value).__module__.startswith("pandas")


@dataclass(frozen=True)
class _Staged:
    """A DataFrame's or list's rows as the file the run reads, and where it goes."""

    data: bytes
    out: Path  # the run directory
    target: Path  # the file in it (absolute: run.json names it, and a resume may start elsewhere)
    resume: bool
    overwrite: bool
    accept_changed: bool  # input_changed="ok"

    @classmethod
    def of(cls, prompts: Any, options: Mapping[str, Any]) -> _Staged:
        if _is_frame(prompts):
            name, data = FRAME_INPUT, _frame_bytes(prompts)
        elif isinstance(prompts, Sequence) and not isinstance(prompts, (str, bytes)):
            name, data = LIST_INPUT, _list_bytes(prompts)
        else:
            raise TypeError(
                "prompts must be a path (str or Path), a pandas DataFrame or a list of strings or dicts, "
                f"not {type(prompts).__name__}"
            )
        resume = options.get("resume")
        out = Path(resume if resume is not None else options.get("out") or new_run_dir("run"))
        return cls(
            data,
            out,
            out.resolve() / name,
            resume is not None,
            bool(options.get("overwrite")),
            options.get("input_changed") == "ok",
        )

    def options(self) -> dict[str, Any]:
        """The options that read the rows: `input`, and `out` for a new run."""
        return {"input": self.target} if self.resume else {"input": self.target, "out": self.out}

    def write(self) -> None:
        """Into a new or empty run directory (or the resumed run's, when the rows are the ones it
        started with); the file is left as it is when it holds these rows already."""
        same = self.target.exists() and self.target.read_bytes() == self.data
        if self.resume:
            if self.target.exists() and not same and not self.accept_changed:
                raise ConfigError(
                    f"resume: these rows differ from the ones the run in {self.out} started with "
                    f"({self.target}); pass the same rows, none (the run's own are used), or "
                    "input_changed='ok' to match rows by id"
                )
        else:
            check_empty(self.out, resume=False, overwrite=self.overwrite)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            if not same:  # unchanged: the input's identity (size, hash) stays the run's
                self.target.write_bytes(self.data)
        except OSError as exc:
            raise OutputError(
                f"cannot write the prompts to {self.target}: {exc.strerror} (choose another out=)"
            ) from exc


def _frame_bytes(frame: Any) -> bytes:
    if len(frame) == 0:
        raise InputError("the DataFrame has no rows")
    if frame.columns.duplicated().any():
        raise InputError("the DataFrame has duplicate column names", hint="rename them")
    named = frame.rename(columns=str) if not all(isinstance(c, str) for c in frame.columns) else frame
    buffer = io.BytesIO()
    try:
        named.to_parquet(buffer, index=False)
    except Exception as exc:  # pyarrow's own errors (ArrowInvalid, ArrowTypeError, ...) share no public base
        raise InputError(
            f"cannot store the DataFrame's rows as Parquet: {exc}",
            hint="give each object column one type (e.g. df[col].astype(str))",
        ) from exc
    return buffer.getvalue()


def _list_bytes(rows: Sequence[Any]) -> bytes:
    if len(rows) == 0:
        raise InputError("the list of prompts is empty")
    lines = []
    for n, row in enumerate(rows):
        if isinstance(row, str):
            row = {"prompt": row}
        elif not isinstance(row, Mapping):
            raise InputError(f"prompts[{n}] is a {type(row).__name__}; give strings or dicts (one row each)")
        try:
            lines.append(json.dumps(dict(row), ensure_ascii=False, default=str))
        except (TypeError, ValueError) as exc:
            raise InputError(f"prompts[{n}] cannot be written as JSON: {exc}") from exc
    return ("\n".join(lines) + "\n").encode("utf-8")


# ---------------------------------------------------------------- the Run


class Summary:
    """summary.json as an object: its sections by attribute (`config`, `endpoint`, `input`, ...) and
    the run's figures (the file's `summary` section: `counts`, `latency_s`, `ttft_s`, `tokens`,
    `throughput`, ...) too, so `run.summary.counts.ok` and `run.summary.latency_s.p50` read as they
    would in the file. `to_dict()` is the file's content; `s["key"]` reads a key as it is."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getattr__(self, name: str) -> Any:
        data: dict[str, Any] = self.__dict__.get("_data", {})
        figures = self._figures()
        if name in data:
            return _wrapped(data[name])
        if name in figures:
            return _wrapped(figures[name])
        raise AttributeError(f"the summary has no {name!r}; it has {', '.join(sorted({*data, *figures}))}")

    def __getitem__(self, key: str) -> Any:
        return _wrapped(self._data[key])

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __dir__(self) -> list[str]:
        return sorted({*self._data, *self._figures(), "to_dict"})

    def _figures(self) -> dict[str, Any]:
        figures = self.__dict__.get("_data", {}).get("summary")
        return figures if isinstance(figures, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        copied: dict[str, Any] = json.loads(json.dumps(self._data))  # a copy the caller may change
        return copied

    def __repr__(self) -> str:
        shown = repr(self._data)
        return f"Summary({shown})" if len(shown) <= 400 else f"Summary(keys: {', '.join(self._data)})"


def _wrapped(value: Any) -> Any:
    return Summary(value) if isinstance(value, dict) else value


class Run:
    """A finished run: what it wrote, and its rows and figures as Python objects.

    Attributes:
        out_dir: the run directory (results, records.jsonl, summary.json, reports).
        files: the files this session wrote.
        ok, failed: rows answered, and rows that failed (status error, timeout, ...).
        endpoint: the endpoint this session used (`kind`, `base_url` with secrets masked, `model`).
        simulated: True when that was the built-in simulated endpoint.
        aborted: why max_errors / max_error_rate stopped the run early, else None.
        max_cost: with `max_cost=`, the budget and the spend (`reached` says why it stopped
            sending, when it did); else None.
        internal_errors: rows that met a bug of batchrun's (internal-errors.log).
    """

    def __init__(self, outcome: RunOutcome, frame: Any = None) -> None:
        self.outcome = outcome
        self.out_dir: Path = outcome.out_dir
        self.files: list[Path] = list(outcome.files)
        self.endpoint: dict[str, Any] = dict(outcome.endpoint)
        self.aborted: str | None = outcome.aborted
        self.max_cost: dict[str, Any] | None = outcome.max_cost
        self.internal_errors: int = outcome.internal_errors
        self._input_frame = frame
        self._summary: Summary | None = None
        self._frame: Any = None

    @property
    def simulated(self) -> bool:
        return self.endpoint.get("kind") == "builtin"

    @property
    def summary(self) -> Summary:
        """The figures of summary.json (read from the file this run wrote)."""
        if self._summary is None:
            self._summary = Summary(json.loads((self.out_dir / "summary.json").read_text(encoding="utf-8")))
        return self._summary

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.summary.to_dict()["summary"]["counts"]
        return counts

    @property
    def ok(self) -> int:
        return self.counts.get("ok", 0)

    @property
    def failed(self) -> int:
        """Rows that were sent and did not end ok (error, timeout, cancelled, invalid output)."""
        return sum(self.counts.get(k, 0) for k in ("error", "timeout", "cancelled", "invalid_output"))

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame, in input order: the input's columns, then the answer's
        (`status`, `text`, parsed JSON fields, tokens, timings, ...; named `result_<name>` where
        an input column has that name). For a DataFrame input, its own columns, dtypes and index,
        with every input row (a row not sent, e.g. past `limit`, has no status); for a file, the
        rows of results.csv, values typed (no spreadsheet escaping)."""
        if self._frame is None:
            self._frame = _build_frame(self)
        return self._frame

    def __repr__(self) -> str:
        counts = self.counts
        wall = self.summary.to_dict()["summary"].get("wall_time_s")
        where = "the built-in simulated endpoint" if self.simulated else (self.endpoint.get("base_url") or "?")
        stopped = f", stopped early: {self.aborted}" if self.aborted else ""
        if self.max_cost and self.max_cost.get("reached"):
            stopped += f", stopped at the budget: {self.max_cost['reached']}"
        wall_text = f"{wall:.1f} s" if isinstance(wall, (int, float)) else "?"
        return (
            f"<batchrun.Run {counts.get('total', 0)} rows: {self.ok} ok, {self.failed} failed{stopped}; "
            f"wall {wall_text}; {where}, model {self.endpoint.get('model')}; {self.out_dir}>"
        )


# Pandas dtypes of the answer columns (nullable: a row not sent, or a field a record lacks, is NA).
_ANSWER_DTYPES = {
    "row": "Int64",
    "http_status": "Int64",
    "attempts": "Int64",
    "prompt_tokens": "Int64",
    "completion_tokens": "Int64",
    "reconnects": "Int64",
    "tokens_estimated": "boolean",
    "tool_choice_ignored": "boolean",
    "empty": "boolean",
    "ttft_s": "float64",
    "latency_s": "float64",
    "total_s": "float64",
    "queue_wait_s": "float64",
    "output_tokens_per_s": "float64",
}


def _build_frame(finished: Run) -> pd.DataFrame:
    import pandas as pd  # lazy: pandas costs ~0.3 s of start-up, and only .frame needs it

    from batchrun.store.outputs import result_rows  # lazy: only .frame reads the records back (orjson)
    from batchrun.store.records import RECORDS  # lazy: as result_rows

    config = finished.summary.to_dict().get("config") or {}
    layout, rows = result_rows(finished.out_dir / RECORDS, config.get("id_column"))
    table = pd.DataFrame(list(rows), columns=layout.columns())
    answers = [layout.names[k] for k in layout.names]
    for field, column in layout.names.items():
        if field in _ANSWER_DTYPES:
            table[column] = table[column].astype(_ANSWER_DTYPES[field])
    source = finished._input_frame
    if source is None:
        staged = finished.out_dir.resolve() / FRAME_INPUT
        saved = config.get("input")
        if saved is not None and Path(saved) == staged and staged.exists():
            source = pd.read_parquet(staged)
    if source is None:
        return table
    return _beside(source, table[answers], table[layout.names["row"]])


def _beside(source: pd.DataFrame, answers: pd.DataFrame, rows: Any) -> pd.DataFrame:
    """The caller's DataFrame (columns, dtypes, index as they are) with the answer columns of
    each input row beside it, matched by row number; a row without a record has none."""
    placed = answers.set_axis(rows.astype("int64").to_numpy()).reindex(range(len(source)))
    out = source.copy()
    for column in placed.columns:
        out[column] = placed[column].array  # by position, its dtype kept (the index may repeat)
    return out
