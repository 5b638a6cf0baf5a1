"""Live progress: a tqdm bar over a run's rows (a plain line now and then when stderr is no terminal),
and one over Batch API jobs. The command line hands them to the pipeline (`ConsoleProgress`, a
hooks.Progress); the Python face hands `ConsoleProgress(tqdm.auto.tqdm, widget=...)`, which in
Jupyter draws a widget whatever stderr is. Nothing below the faces draws."""

from __future__ import annotations

import asyncio
import statistics
import sys
from typing import Callable, Sequence

from tqdm import tqdm

from batchrun.batchapi.ledger import JobEntry
from batchrun.batchapi.progress import done_requests, status_line
from batchrun.engine.pool import PoolStats
from batchrun.hooks import LevelProgress, Total
from batchrun.report.format import fmt_eta


async def show_progress(
    stats: PoolStats,
    *,
    total: Total | int | None,
    clock: Callable[[], float],
    interval_s: float = 0.5,
    plain_interval_s: float = 5.0,
    bar_class: type[tqdm] = tqdm,
    widget: bool = False,
) -> None:
    """Progress on stderr until cancelled: a tqdm bar (percent and ETA once the total is known)
    on a terminal or as a notebook `widget`; one plain line every `plain_interval_s` when stderr
    is a log file or a pipe.

    The bar counts this session's rows: after --resume it starts at 0 of the rows left to send
    (the rows done earlier are named beside it, not counted in)."""
    known = total if isinstance(total, Total) else Total(total)
    if not (widget or sys.stderr.isatty()):
        await _plain_progress(stats, known, clock, plain_interval_s)
        return
    bar = bar_class(
        total=known.rows,
        unit="row",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=interval_s,
        desc=f"{stats.resumed} done earlier; left" if stats.resumed else None,
    )
    start = clock()
    try:
        while True:
            await asyncio.sleep(interval_s)
            _refresh(bar, stats, known, clock() - start)
    finally:
        _refresh(bar, stats, known, clock() - start)
        bar.close()


async def _plain_progress(stats: PoolStats, total: Total, clock: Callable[[], float], interval_s: float) -> None:
    start = clock()
    try:
        while True:
            await asyncio.sleep(interval_s)
            print(progress_line(stats, total.rows, clock() - start), file=sys.stderr, flush=True)
    finally:
        print(progress_line(stats, total.rows, clock() - start), file=sys.stderr, flush=True)


def progress_line(stats: PoolStats, total: int | None, elapsed_s: float) -> str:
    """'batchrun: 120/500 rows (24%), ok 118, failed 2, retrying 0, 310 tok/s, ETA 1m 20s'.

    Every figure is this session's: after --resume, `total` is the rows left to send and the
    rows done earlier are named at the end ('..., 300 done earlier').
    """
    done = stats.done
    of = f"/{total} rows ({100 * done / total:.0f}%)" if total else " rows"
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    tokens = stats.output_tokens / elapsed_s if elapsed_s > 0 else 0.0
    eta = f", ETA {fmt_eta((total - done) / rate)}" if total and rate > 0 and done < total else ""
    earlier = f", {stats.resumed} done earlier" if stats.resumed else ""
    return (
        f"batchrun: {done}{of}, ok {stats.ok}, failed {stats.failed}, retrying {stats.retrying}, "
        f"{tokens:.0f} tok/s{eta}{earlier}{_cost(stats, total)}"
    )


def _cost(stats: PoolStats, total: int | None) -> str:
    """', $0.12 spent, ~$4.10 for 10,000 rows (...)' with a price: the whole file's projection
    (the rows left to send and those done earlier), as the summary's; '' without a price."""
    if stats.cost is None:
        return ""
    return ", " + stats.cost.text(total + stats.resumed if total is not None else None)


def _refresh(bar: tqdm, stats: PoolStats, total: Total, elapsed_s: float) -> None:
    if total.rows is not None and bar.total != total.rows:
        bar.total = total.rows
    bar.n = stats.done
    ttft = statistics.median(stats.recent_ttft_s) if stats.recent_ttft_s else None
    tokens = stats.output_tokens / elapsed_s if elapsed_s > 0 else 0.0
    bar.set_postfix_str(
        f"ok={stats.ok} failed={stats.failed} retrying={stats.retrying} "
        f"in-flight={stats.in_flight} {tokens:.0f} tok/s"
        + (f" ttft_p50={ttft * 1000:.0f}ms" if ttft is not None else "")
        + _cost(stats, total.rows),
        refresh=False,
    )
    bar.refresh()


def level_progress_line(p: LevelProgress) -> str:
    """'batchrun: async c=16 (run 4/5): 48/~90 requests, ok 48, failed 0, ETA 4s'."""
    eta = f", ETA {fmt_eta(p.eta_s)}" if p.eta_s is not None else ""
    return f"batchrun: {p.label}: {p.done}/{p.total} requests, ok {p.ok}, failed {p.failed}{eta}"


async def show_level_progress(
    state: Callable[[], LevelProgress],
    *,
    interval_s: float = 0.5,
    plain_interval_s: float = 5.0,
    bar_class: type[tqdm] = tqdm,
    widget: bool = False,
) -> None:
    """A bench run's progress on stderr until cancelled: one line redrawn in place on a terminal
    or in a notebook `widget`; a plain line every `plain_interval_s` and a last one when stderr is
    a log file or a pipe."""
    if not (widget or sys.stderr.isatty()):
        await _plain_level_progress(state, plain_interval_s)
        return
    bar = bar_class(file=sys.stderr, bar_format="{desc}", dynamic_ncols=True, leave=True)
    try:
        while True:
            bar.set_description_str(level_progress_line(state()))
            await asyncio.sleep(interval_s)
    finally:
        bar.set_description_str(level_progress_line(state()))
        bar.close()


async def _plain_level_progress(state: Callable[[], LevelProgress], interval_s: float) -> None:
    try:
        while True:
            await asyncio.sleep(interval_s)
            print(level_progress_line(state()), file=sys.stderr, flush=True)
    finally:
        print(level_progress_line(state()), file=sys.stderr, flush=True)


class JobsProgress:
    """A bar over Batch API jobs: requests done of all requests, and the jobs in each status.
    Call update() after each poll round; close() at the end."""

    def __init__(self, jobs: Sequence[JobEntry], bar_class: type[tqdm] = tqdm) -> None:
        self.jobs = list(jobs)
        self.bar = bar_class(
            total=sum(j.requests for j in self.jobs),
            unit="req",
            file=sys.stderr,
            dynamic_ncols=True,
            desc=f"{len(self.jobs)} batch job(s)",
            mininterval=0 if sys.stderr.isatty() else 10.0,
        )

    def update(self) -> None:
        self.bar.n = done_requests(self.jobs)
        self.bar.set_postfix_str(status_line(self.jobs), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.update()
        self.bar.close()


class ConsoleProgress:
    """The faces' hooks.Progress: tqdm bars on stderr (`bar_class`: tqdm's own, or tqdm.auto's,
    which is a widget in Jupyter; `widget`: draw the bar even where stderr is no terminal)."""

    def __init__(self, bar_class: type[tqdm] = tqdm, widget: bool = False) -> None:
        self.bar_class, self.widget = bar_class, widget

    async def rows(self, stats: PoolStats, total: Total, clock: Callable[[], float]) -> None:
        await show_progress(stats, total=total, clock=clock, bar_class=self.bar_class, widget=self.widget)

    def jobs(self, jobs: Sequence[JobEntry]) -> JobsProgress:
        return JobsProgress(jobs, self.bar_class)

    async def level(self, state: Callable[[], LevelProgress]) -> None:
        await show_level_progress(state, bar_class=self.bar_class, widget=self.widget)
