"""A finished job's output and error files -> one record per row of the job, in input order (the
file half of collecting; endpoint/batch.py turns one line into one record).

Every row gets exactly one record whatever the files hold: its line's, a MalformedBatchLine when
its custom_id is on more than one line, or a missing record (why depends on how the job ended)
when no line names it. A line that names no row of the job (no custom_id, or another one) cannot
be any row's; it is counted and named in the missing rows' records.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from batchrun.batchapi.lines import Spot, index_lines, read_entries, read_requests
from batchrun.endpoint.batch import JobInfo, malformed_record, missing_record, record_from_raw
from batchrun.store.records import Record

_NAMED = 5  # lines that named no row, named in the records of rows without a line


@dataclass(slots=True)
class ResultIndex:
    """Where each custom_id of a job is answered in its kept files."""

    out: Path  # the run directory: files are named relative to it
    found: dict[str, Spot] = field(default_factory=dict)
    twice: dict[str, list[Spot]] = field(default_factory=dict)  # custom_ids on more than one line (first 3)
    unmatched: list[Spot] = field(default_factory=list)  # lines that name no row of the job (first 5)
    unmatched_count: int = 0

    def add(self, path: Path, ids: set[str]) -> None:
        """Index one kept file of the job whose custom_ids are `ids`. A hostile file may repeat a
        line millions of times: only the first few places of each kind are kept."""
        for cid, spot in index_lines(path):
            if cid is None or cid not in ids:
                self.unmatched_count += 1
                if len(self.unmatched) < _NAMED:
                    self.unmatched.append(spot)
            elif cid in self.twice:
                if len(self.twice[cid]) < 3:
                    self.twice[cid].append(spot)
            elif cid in self.found:
                self.twice[cid] = [self.found.pop(cid), spot]
            else:
                self.found[cid] = spot

    def where(self, spot: Spot) -> str:
        """e.g. "batch/0001.output.jsonl line 7"."""
        return f"{_relative(spot.path, self.out)} line {spot.number}"

    def unmatched_note(self) -> str:
        """The lines that named no row, for the records of rows without a line (at most five named)."""
        if not self.unmatched_count:
            return ""
        named = ", ".join(self.where(s) for s in self.unmatched)
        more = f" and {self.unmatched_count - len(self.unmatched)} more" if self.unmatched_count > _NAMED else ""
        return f"{self.unmatched_count} result line(s) named no row of this job: {named}{more}"


def job_records(
    index: ResultIndex, ids_path: Path, input_path: Path, info: JobInfo, secrets: tuple[str, ...]
) -> Iterator[tuple[Record, dict[str, Any]]]:
    """(record, what the row's record carries from the input) for every row of the job, in input
    order; the kept files are each opened once (a 50,000-row job must not open 50,000 handles)."""
    note = index.unmatched_note()
    with contextlib.ExitStack() as files:
        handles = {p: files.enter_context(open(p, "rb")) for p in {s.path for s in index.found.values()}}
        for (cid, row, extra), request in zip(read_entries(ids_path), read_requests(input_path)):
            if cid in index.twice:
                record = malformed_record(
                    cid,
                    row,
                    info,
                    " and ".join(index.where(s) for s in index.twice[cid]),
                    "the custom_id is on more than one line: which is the row's answer cannot be told",
                )
            elif cid in index.found:
                spot = index.found[cid]
                handles[spot.path].seek(spot.offset)
                record = record_from_raw(
                    handles[spot.path].readline(),
                    cid,
                    row,
                    info,
                    _tools(request),
                    where=index.where(spot),
                    secrets=secrets,
                    tool_choice=_body(request).get("tool_choice"),
                )
            else:
                record = missing_record(cid, row, info, note)
            yield record, extra


def _body(request: Any) -> dict[str, Any]:
    """The request line's body as sent ({} when the line has none)."""
    body = request.get("body") if isinstance(request, dict) else None
    return body if isinstance(body, dict) else {}


def _tools(request: Any) -> list[dict[str, Any]] | None:
    tools = _body(request).get("tools")
    return tools if isinstance(tools, list) else None


def _relative(path: Path, out: Path) -> str:
    try:
        return str(path.relative_to(out))
    except ValueError:
        return str(path)
