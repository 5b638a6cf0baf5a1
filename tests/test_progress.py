"""Progress a person can read: the total, percent and ETA; a plain line when stderr is a file."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from typing import Awaitable, Callable

from batchrun.analysis.cost import Price, RunningCost
from batchrun.engine.pool import PoolStats
from batchrun.hooks import LevelProgress, Total
from batchrun.progress import level_progress_line, progress_line, show_level_progress, show_progress
from batchrun.report.format import fmt_eta
from batchrun.store.records import Record


def test_progress_line_has_percent_eta_counts_and_tokens() -> None:
    stats = PoolStats(done=100, ok=98, failed=2, retrying=1, output_tokens=3000)
    # 100 of 400 rows done = 25%; 100 rows in 10 s = 10 rows/s -> 300 left = 30 s.
    line = progress_line(stats, 400, elapsed_s=10.0)
    assert line == "batchrun: 100/400 rows (25%), ok 98, failed 2, retrying 1, 300 tok/s, ETA 30s"
    assert progress_line(stats, None, 10.0).startswith("batchrun: 100 rows, ok 98")


def test_after_a_resume_the_line_counts_this_sessions_rows_and_names_the_earlier_ones() -> None:
    # 20 rows done earlier, 400 left: the count, percent and ETA are of the 400 alone.
    stats = PoolStats(done=100, ok=98, failed=2, retrying=1, resumed=20, output_tokens=3000)
    line = progress_line(stats, 400, elapsed_s=10.0)
    assert line == "batchrun: 100/400 rows (25%), ok 98, failed 2, retrying 1, 300 tok/s, ETA 30s, 20 done earlier"


def test_progress_line_shows_the_spend_and_the_projected_cost_with_a_price() -> None:
    stats = PoolStats(cost=RunningCost(Price(1.0, 2.0, "flags")))
    for i, (prompt, completion) in enumerate([(1000, 500), (2000, 1000), (3000, 1500)]):
        record = Record(id=str(i), row=i, sent_s=0.0, prompt_tokens=prompt, completion_tokens=completion)
        stats.count(record)
    # $0.002 + $0.004 + $0.006 spent; 100 rows at the mean $0.004 (t interval as in test_cost).
    assert progress_line(stats, 100, 10.0).endswith(
        ", $0.0120 spent, ~$0.4000 for 100 rows (95% $0.000000-$0.8968, n=3)"
    )
    assert progress_line(stats, None, 10.0).endswith(", $0.0120 spent")
    stats.resumed = 20  # after --resume the total is the rows left; the projection is the whole file's
    assert ", 20 done earlier, $0.0120 spent, ~$0.4000 for 100 rows" in progress_line(stats, 80, 10.0)


def test_a_bench_runs_progress_line() -> None:
    line = level_progress_line(LevelProgress("async c=16 (run 4/5)", 48, "~90", 47, 1, 4.2))
    assert line == "batchrun: async c=16 (run 4/5): 48/~90 requests, ok 47, failed 1, ETA 4s"
    assert level_progress_line(LevelProgress("sync (run 1/5)", 0, "10+", 0, 0, None)).endswith(
        "0/10+ requests, ok 0, failed 0"
    )


async def test_a_bench_run_not_on_a_terminal_gets_plain_lines_and_a_last_one(monkeypatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    state = [LevelProgress("async c=4 (run 3/5)", 2, "~20", 2, 0, 3.0)]
    task = asyncio.create_task(show_level_progress(lambda: state[0], plain_interval_s=0.01))
    await asyncio.sleep(0.05)
    state[0] = LevelProgress("async c=4 (run 3/5)", 20, "20", 19, 1, 0.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lines = err.getvalue().splitlines()
    assert len(lines) >= 2 and "\r" not in err.getvalue()
    assert lines[-1] == "batchrun: async c=4 (run 3/5): 20/20 requests, ok 19, failed 1, ETA 0s"


def test_eta_format() -> None:
    assert (fmt_eta(42), fmt_eta(185), fmt_eta(3725)) == ("42s", "3m 05s", "1h 02m")


async def test_not_a_terminal_gets_plain_lines(monkeypatch) -> None:
    err = io.StringIO()  # isatty() is False, as for a log file
    monkeypatch.setattr(sys, "stderr", err)
    stats, total = PoolStats(), Total()
    task = asyncio.create_task(show_progress(stats, total=total, clock=lambda: 1.0, plain_interval_s=0.01))
    total.rows, stats.done, stats.ok = 10, 5, 5
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lines = err.getvalue().splitlines()
    assert lines and all(line.startswith("batchrun: ") for line in lines) and "\r" not in err.getvalue()
    assert "5/10 rows (50%)" in lines[-1]


async def _on_a_terminal(monkeypatch, show: Callable[[], Awaitable[None]], change: Callable[[], None]) -> str:
    """Run the progress display `show` with stderr a 160-column pseudo-terminal, call `change`,
    stop it, and return what the terminal received."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # a 160-column terminal
    term = os.fdopen(slave, "w", buffering=1)
    chunks: list[bytes] = []

    def drain() -> None:  # keep the pty's buffer empty, so the bar's writes never block
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    monkeypatch.setattr(sys, "stderr", term)
    task = asyncio.create_task(show())
    change()
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    term.close()  # the reader then sees end of file (EIO) and stops
    reader.join(timeout=5)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


async def test_a_terminal_gets_a_bar_with_total_percent_and_counts(monkeypatch) -> None:
    stats, total = PoolStats(resumed=10), Total()

    def change() -> None:
        total.rows, stats.done, stats.ok, stats.failed = 40, 10, 9, 1

    shown = await _on_a_terminal(
        monkeypatch, lambda: show_progress(stats, total=total, clock=lambda: 1.0, interval_s=0.01), change
    )
    # 10 rows done earlier are named, not counted: 10 of the 40 left is 25%
    assert "10/40" in shown and "25%" in shown and "ok=9 failed=1" in shown and "\r" in shown
    assert "10 done earlier" in shown


async def test_a_bench_run_on_a_terminal_is_one_line_redrawn(monkeypatch) -> None:
    state = [LevelProgress("async c=16 (run 4/5)", 0, "16+", 0, 0, None)]

    def change() -> None:
        state[0] = LevelProgress("async c=16 (run 4/5)", 48, "~90", 47, 1, 4.0)

    shown = await _on_a_terminal(monkeypatch, lambda: show_level_progress(lambda: state[0], interval_s=0.01), change)
    assert "async c=16 (run 4/5): 48/~90 requests, ok 47, failed 1, ETA 4s" in shown and "\r" in shown
