"""What a run sends, beyond one chat request per row: which workload the config and the input
call for, its items (and schedule), and the pool that runs them.

    rows        one request per row (chat or completions): engine/pool.py
    embeddings  rows in batches per /embeddings request: engine/embed.py
    sessions    session_id / turn columns, or --synthetic ...,sessions=S: engine/sessions.py
    trace       a timestamp or delay_s column: open-loop at the trace's times / --speedup
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from batchrun.config import RunConfig
from batchrun.endpoint.calibrate import calibrate, synthetic_rows
from batchrun.endpoint.kinds import kind
from batchrun.endpoint.multi import multi_client
from batchrun.endpoint.transport import Endpoint
from batchrun.engine.limits import RateLimits
from batchrun.engine.pool import Pool
from batchrun.engine.sessions import SessionPool
from batchrun.errors import ConfigError
from batchrun.hooks import Total
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.inputs.sessions import file_sessions, generated_sessions, pending, turn_numbers, with_answers
from batchrun.inputs.sidecols import file_columns
from batchrun.inputs.synthetic import parse_spec
from batchrun.inputs.traces import is_length_trace, length_trace_prompts, rebase, trace_offsets
from batchrun.store.outputs import done_answers
from batchrun.store.records import RECORDS

if TYPE_CHECKING:
    import aiohttp

TURNS_FILE = "turns.json"  # the names report/workloads.py reads back (SIDE_FILES)
SYNTHETIC_FILE = "synthetic.json"


@dataclass
class Workload:
    kind: str  # rows / embeddings / sessions / trace
    items: Iterator[Any]
    schedule: Iterator[float] | None = None  # planned send offsets, one per item (trace)
    more_endpoints: list[Any] = field(default_factory=list)  # --base-url given more than once


@dataclass
class Reading:
    """What a run met in its input, counted as its rows are read (whatever the workload makes of
    them): this session's row total for progress, and the ids the file has for --input-changed ok."""

    read: int = 0  # rows read, sendable and bad
    done: int = 0  # of which done in an earlier session: not sent, not recorded again
    ended: bool = False  # the input (or --limit) ran out: `left` is exact
    seen: set[str] | None = None  # every id read; None: not kept
    total: Total | None = None  # set to `left` once reading ends (the progress bar's total)

    @property
    def left(self) -> int:
        """Rows this session records: those read minus those done earlier."""
        return self.read - self.done


def tally(rows: Iterator[Prompt | BadRow], skip: set[str], reading: Reading) -> Iterator[Prompt | BadRow]:
    """`rows` passed on as they are, counted into `reading`."""
    for item in rows:
        reading.read += 1
        reading.done += item.id in skip
        if reading.seen is not None:
            reading.seen.add(item.id)
        yield item
    reading.ended = True
    if reading.total is not None:
        reading.total.rows = reading.left


def kind_of(config: RunConfig) -> str:
    """Decided before anything is sent; a wrong combination is a ConfigError."""
    kind = _kind(config)
    if config.input.speedup != 1.0 and kind != "trace":
        raise ConfigError("--speedup replays a trace: the input needs a timestamp or delay_s column")
    return kind


def _kind(config: RunConfig) -> str:
    if config.endpoint.endpoint == "embeddings":
        return "embeddings"
    if config.input.synthetic is not None:
        return "sessions" if parse_spec(config.input.synthetic).sessions else "rows"
    columns = file_columns(config.input.path, config.input.fmt) if config.input.path is not None else set()
    if {"session_id", "turn"} <= columns:
        return "sessions"
    if columns & {"timestamp", "delay_s"}:
        if config.tools.tool_module is not None:
            raise ConfigError("trace replay and --tool-module cannot be combined")
        return "trace"
    return "rows"


def length_trace(config: RunConfig) -> bool:
    """A trace of lengths without text (Mooncake): its prompts are generated, not read."""
    source = config.input
    if source.path is None or source.synthetic is not None or source.prompt_column or source.template:
        return False
    return is_length_trace(file_columns(source.path, source.fmt))


async def prepare(
    config: RunConfig,
    endpoint: Endpoint,
    rows: Iterator[Prompt | BadRow],
    out: Path,
    skip: set[str],
    make_jobs: Callable[..., Iterator[Any]],
    say: Callable[[str], None],
    reading: Reading | None = None,
) -> Workload:
    """The run's items; `make_jobs(config, rows, skip)` is the plan's Prompt -> Job step (plan.jobs).
    `reading` counts the rows as every workload reads them (generated ones included)."""
    kind = kind_of(config)
    if length_trace(config):
        assert config.input.path is not None
        sizer = await calibrate(config, endpoint, say)
        rows = length_trace_prompts(config.input.path, config.input.fmt, sizer)
    if config.input.synthetic is not None:
        rows, info = await synthetic_rows(config, endpoint, 100, say)
        _write(out / SYNTHETIC_FILE, info)
    if reading is not None:
        rows = tally(rows, skip, reading)
    if kind == "embeddings":
        from batchrun.engine.embed import embed_items  # lazy: embeddings' vectors load pyarrow and numpy

        return Workload(kind, embed_items(config, rows, skip))
    if kind == "sessions":
        return Workload(kind, iter(_sessions(config, rows, skip, out, say)))
    if kind == "trace":
        return _trace(config, rows, skip, make_jobs)
    return Workload(kind, make_jobs(config, rows, skip))


def _sessions(
    config: RunConfig, rows: Iterator[Prompt | BadRow], skip: set[str], out: Path, say: Callable[[str], None]
) -> list[Any]:
    bad: list[BadRow] = []
    if config.input.synthetic is not None:
        spec = parse_spec(config.input.synthetic)
        sessions = generated_sessions(rows, spec.sessions or 0, spec.turns, spec.think_s)  # type: ignore[arg-type]
    else:
        assert config.input.path is not None
        sessions, bad = file_sessions(config.input.path, config.input.fmt, rows)
    _write(out / TURNS_FILE, turn_numbers(sessions))
    todo = pending(sessions, skip)
    answered = [t.prompt.id for s in todo for t in s.turns if t.prompt.id in skip]
    if answered:
        todo = with_answers(todo, done_answers(out / RECORDS, answered))
    if skip and len(todo) < len(sessions):
        say(
            f"{len(sessions) - len(todo)} sessions already done are not sent again; {len(todo)} unfinished "
            f"ones carry on, their {len(answered)} turns already ok replayed as history, not sent"
        )
    return [b for b in bad if b.id not in skip] + todo


def _trace(
    config: RunConfig, rows: Iterator[Prompt | BadRow], skip: set[str], make_jobs: Callable[..., Iterator[Any]]
) -> Workload:
    assert config.input.path is not None
    offsets = trace_offsets(config.input.path, config.input.fmt, config.input.speedup)
    items = list(make_jobs(config, rows, skip))
    items.sort(key=lambda item: offsets[_row(item)])
    planned = rebase([offsets[_row(item)] for item in items])
    return Workload("trace", iter(items), iter(planned))


def _row(item: Any) -> int:
    return item.row if isinstance(item, BadRow) else item.prompt.row


def make_pool(
    workload: Workload,
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    write: Callable[[Any], None],
    config: RunConfig,
    pool_config: Any,
    out: Path,
    t0: float,
    clock: Callable[[], float],
    tool_runner: Any,
    make_job: Callable[[Prompt], Any],
    write_many: Callable[[list[Any]], None] | None = None,
    **pool_kw: Any,
) -> Any:
    """The pool for the workload; `pool_kw` (output_check, warn, ...) go to Pool as they are."""
    if workload.kind == "embeddings":
        from batchrun.engine.embed import embed_pool  # lazy: embeddings' vectors load pyarrow and numpy

        return embed_pool(session, endpoint, write, config, pool_config, out, t0, clock, write_many)
    limits = config.limits
    clients = [
        kind(config.endpoint.endpoint).client_for(
            session,
            e,
            timeout_s=limits.timeout,
            ttft_timeout_s=limits.ttft_timeout,
            clock=clock,
            max_response_bytes=limits.max_response_bytes,
        )
        for e in [endpoint, *workload.more_endpoints]
    ]
    client: Any = clients[0]
    if len(clients) > 1:
        client = multi_client(clients, config, lambda: RateLimits(limits.rpm, limits.tpm))
    if workload.kind == "sessions":
        return SessionPool(client, write, pool_config, t0=t0, clock=clock, make_job=make_job, **pool_kw)
    return Pool(client, write, pool_config, t0=t0, clock=clock, tool_runner=tool_runner, **pool_kw)


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
