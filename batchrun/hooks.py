"""What a face hands the pipeline below it: where its messages go, how progress is shown, and how
Ctrl-C stops a run. Nothing below the faces prints or installs a signal handler: it calls these.

    notify(message)               one line for the user ("resuming ...", "warning: ...")
    progress.rows(stats, total)   a run's live progress, until cancelled
    progress.jobs(jobs)           a bar over Batch API jobs (update() after each poll, close())
    progress.level(state)         one bench run's progress, until cancelled
    interrupts(stop, close_now)   around sending: Ctrl-C calls stop() (the run ends gracefully) and,
                                  pressed again, close_now() before the face exits

The command line prints "batchrun: ..." to stderr, draws tqdm bars and installs signal handlers;
a Python caller gets log lines (the "batchrun" logger) and, by default, nothing else.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator, NamedTuple, Protocol, Sequence

Notify = Callable[[str], None]
Interrupts = Callable[[Callable[[], None], "Callable[[], None] | None"], ContextManager[None]]

LOG = logging.getLogger("batchrun")


def log(message: str) -> None:
    """The default `notify`: the "batchrun" logger, which a face shows or not."""
    LOG.info(message)


class Total:
    """A run's row total, filled in by a background count while the run goes (None until then)."""

    def __init__(self, rows: int | None = None) -> None:
        self.rows = rows


class LevelProgress(NamedTuple):
    """Where one bench run stands."""

    label: str  # which run, e.g. "async c=16 (run 4/5)"
    done: int  # requests finished
    total: str  # requests it will measure: "100", "~90" (a time share), "100+" (sized by spread)
    ok: int
    failed: int
    eta_s: float | None  # seconds it has left; None: not known yet


class JobsBar(Protocol):
    def update(self) -> None: ...

    def close(self) -> None: ...


class Progress(Protocol):
    async def rows(self, stats: Any, total: Total, clock: Callable[[], float]) -> None:
        """Show a run's progress (its PoolStats, the row total as it becomes known) until cancelled."""

    def jobs(self, jobs: Sequence[Any]) -> JobsBar:
        """A bar over Batch API jobs (JobEntry objects, updated in place by each poll)."""

    async def level(self, state: Callable[[], LevelProgress]) -> None:
        """One bench run's progress (`state()` says where it stands) until cancelled."""


@contextlib.contextmanager
def no_interrupts(stop: Callable[[], None], close_now: Callable[[], None] | None) -> Iterator[None]:
    """Signals left as they are: a caller that wants Ctrl-C to stop a run gracefully installs its own."""
    yield


@dataclass(frozen=True)
class Hooks:
    notify: Notify = log
    progress: Progress | None = None  # None: no progress shown (--quiet, a library caller)
    interrupts: Interrupts = no_interrupts
