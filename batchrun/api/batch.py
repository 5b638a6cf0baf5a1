"""`batchrun.batch_status(run_dir)` / `batchrun.batch_cancel(run_dir)`: look at or stop the Batch
API jobs of a `mode="batch"` run without waiting for them (`batchrun.run(resume=run_dir)`
collects them). `batchrun batch status` / `batch cancel` call the same functions."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, Union

from batchrun.hooks import Notify, log

if TYPE_CHECKING:
    from batchrun.batchapi.ledger import JobEntry

RunDir = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class BatchJobs:
    """The run's jobs after asking the provider: `jobs` (file, id, status, request counts, ...
    as the run directory's ledger keeps them) and `lines` (the command line's text of them)."""

    jobs: list[JobEntry]
    lines: list[str]

    def __str__(self) -> str:
        return "\n".join(self.lines)


def batch_status(run_dir: RunDir, *, base_url: str | None = None, notify: Notify = log) -> BatchJobs:
    """Every job of the run: its file, id, status and request counts (open jobs asked afresh).
    `base_url`: the endpoint the jobs live at (default: the run's own, as a resume uses)."""
    from batchrun.batchapi.commands import status  # lazy: the Batch API's commands alone

    return _jobs(Path(run_dir), lambda: status(Path(run_dir), base_url, notify))


def batch_cancel(run_dir: RunDir, *, base_url: str | None = None, notify: Notify = log) -> BatchJobs:
    """Ask the provider to cancel the run's open jobs; a resume then collects what they finished."""
    from batchrun.batchapi.commands import cancel  # lazy: as batch_status

    return _jobs(Path(run_dir), lambda: cancel(Path(run_dir), base_url, notify))


def _jobs(run_dir: Path, command: Callable[[], Awaitable[list[str]]]) -> BatchJobs:
    from batchrun.batchapi.ledger import Ledger  # lazy: as batch_status

    lines = _blocking(command())
    return BatchJobs(list(Ledger.load(run_dir).jobs), lines)


def _blocking(work: Awaitable[list[str]]) -> list[str]:
    """Run `work` to its end: in this thread, or, where an event loop already runs (Jupyter), in a
    thread of its own (a status call takes a request per open job: the caller's loop waits that long)."""

    async def main() -> list[str]:
        return await work

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        coroutine: Coroutine[Any, Any, list[str]] = main()
        return pool.submit(asyncio.run, coroutine).result()
