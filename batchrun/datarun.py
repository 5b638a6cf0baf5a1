"""The data-team parts of a run, kept out of runner.py: the input's identity on --resume, the
row-setting announcement, --limit, what a record keeps of its request, the answer check for
--json / --json-schema, the progress total, and the run facts (cost, unread rows) in the summary.
Messages go through `say`, the runner's one line on stderr."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from batchrun.analysis.cost import resolve_price, run_cost
from batchrun.config import RunConfig
from batchrun.endpoint.answers import AnswerCheck, strict_problems
from batchrun.errors import ConfigError, InputChanged
from batchrun.inputs.identity import changed_while_read, input_identity
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.inputs.scan import count_rows, setting_columns
from batchrun.progress import Total
from batchrun.store.records import Record
from batchrun.store.rundir import check_input
from batchrun.store.sessions import write_json

Say = Callable[[str], None]


def saved_request(body: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps of a body: all of it but the streaming plumbing batchrun adds."""
    return {k: v for k, v in body.items() if k not in ("stream", "stream_options")}


def limited(rows: Iterator[Prompt | BadRow], limit: int | None) -> Iterator[Prompt | BadRow]:
    """--limit N: the file's first N rows (a pilot). Reading stops at row N-1: row N is never
    read, so a bad row past the pilot cannot stop it."""
    if limit is None:
        return rows
    return _first_rows(rows, limit)


def _first_rows(rows: Iterator[Prompt | BadRow], limit: int) -> Iterator[Prompt | BadRow]:
    for item in rows:
        if item.row >= limit:
            return
        yield item
        if item.row >= limit - 1:
            return


def _saved_run(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def save_input_identity(run_json: Path, identity: dict[str, Any] | None) -> None:
    """Keep the input's identity in run.json (start_session keeps keys it does not own)."""
    data = _saved_run(run_json)
    data["input_identity"] = identity
    write_json(run_json, data)


def checked_input(config: RunConfig, run_json: Path, say: Say) -> dict[str, Any] | None:
    """The input's identity; on --resume, refused when it is not the file the run started with."""
    if config.input.path is None:
        return None
    identity = input_identity(config.input.path)
    if config.control.resume is not None:
        saved = _saved_run(run_json).get("input_identity")
        difference = check_input(saved, identity, config.control.input_changed == "ok")
        if difference:
            say(f"--input-changed ok: {difference}; rows are matched by id")
    return identity


def changed_during_run(config: RunConfig, identity: dict[str, Any] | None) -> InputChanged | None:
    """After a run that read its whole input: the file is still the one it began on. Rows added
    after the reader reached its end were never read (and the summary would say 100%)."""
    if config.input.path is None or identity is None:
        return None
    change = changed_while_read(config.input.path, identity, None)
    if change is None:
        return None
    return InputChanged(f"changed during the run, after it was read ({change}): rows it has now may not be "
                        "in this run, rows it lost may be", path=str(config.input.path))


def announce_row_settings(config: RunConfig, say: Say) -> None:
    """Input columns named like request settings override the flags: say so once, up front."""
    if config.input.path is None:
        return
    found = setting_columns(config.input.path, config.input.fmt)
    if not found:
        return
    listed = ", ".join(f"'{name}' ({n} distinct value{'s' if n != 1 else ''})" for name, n in found.items())
    if config.input.row_settings:
        say(f"input columns {listed} set those request fields per row, over the flags "
            "(--no-row-settings ignores them)")
    else:
        say(f"--no-row-settings: input columns {listed} are kept as data, not sent as request fields")


def report_vanished(done: set[str], seen: set[str] | None, say: Say) -> None:
    """--input-changed ok: ids the run had finished that the new file no longer has."""
    if seen is None:
        return
    vanished = sorted(done - seen)
    if vanished:
        say(f"{len(vanished)} id(s) done earlier are not in the input any more (kept in the results): "
            + ", ".join(vanished[:10]) + (" ..." if len(vanished) > 10 else ""))


def announce_schema(config: RunConfig, say: Say) -> None:
    """--json-schema: warn up front when OpenAI's strict mode would refuse the schema."""
    problems = strict_problems(config.request.json_schema) if config.request.json_schema is not None else []
    if problems:
        say("warning: OpenAI's strict structured outputs would reject this schema ("
            + "; ".join(problems[:3]) + "); servers that accept it still get it")


def output_check(config: RunConfig) -> AnswerCheck | None:
    if config.request.json_schema is None and not config.request.json_mode:
        return None
    return AnswerCheck(config.request.json_schema)


async def count_total(config: RunConfig, total: Total) -> None:
    """The progress total, counted in a thread so the first rows go out at once."""
    if config.input.path is None:
        return
    total.rows = config.control.limit             # a pilot's total at once; corrected if the file is shorter
    rows = await asyncio.to_thread(count_rows, config.input.path, config.input.fmt)
    if rows is not None:
        total.rows = min(rows, config.control.limit) if config.control.limit is not None else rows


def add_run_facts(summary: dict[str, Any], config: RunConfig, records: list[Record]) -> None:
    """The cost of what was sent (when a price is known), the pilot's --limit, and for a run that
    did not finish, how many input rows it never reached."""
    try:
        price = resolve_price(config.endpoint.model, config.output.price_in, config.output.price_out)
    except ConfigError:
        price = None
    summary["cost"] = run_cost(records, price)
    run = summary["run"]
    run["limit"] = config.control.limit
    if (run["interrupted"] or run["aborted"] or run.get("refused")) and config.input.path is not None:
        total = count_rows(config.input.path, config.input.fmt)      # only now: a finished run needs no count
        if total is not None:
            total = min(total, config.control.limit) if config.control.limit else total
            run["unread"] = max(0, total - len(records))
