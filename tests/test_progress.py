"""Progress a person can read: the total, percent and ETA; a plain line when stderr is a file."""

from __future__ import annotations

import asyncio
import io
import sys
import threading

from batchrun.engine.pool import PoolStats
from batchrun.hooks import Total
from batchrun.progress import progress_line, show_progress
from batchrun.report.format import fmt_eta


def test_progress_line_has_percent_eta_counts_and_tokens() -> None:
    stats = PoolStats(done=100, ok=98, failed=2, retrying=1, resumed=20, output_tokens=3000)
    # 120 of 480 rows done = 25%; 100 rows in 10 s this session = 10 rows/s -> 360 left = 36 s.
    line = progress_line(stats, 480, elapsed_s=10.0)
    assert line == "batchrun: 120/480 rows (25%), ok 98, failed 2, retrying 1, 300 tok/s, ETA 36s"
    assert progress_line(stats, None, 10.0).startswith("batchrun: 120 rows, ok 98")


def test_eta_format() -> None:
    assert (fmt_eta(42), fmt_eta(185), fmt_eta(3725)) == ("42s", "3m 05s", "1h 02m")


async def test_not_a_terminal_gets_plain_lines(monkeypatch) -> None:
    err = io.StringIO()                       # isatty() is False, as for a log file
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


async def test_a_terminal_gets_a_bar_with_total_percent_and_counts(monkeypatch) -> None:
    import os
    import pty

    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))   # a 160-column terminal
    term = os.fdopen(slave, "w", buffering=1)
    chunks: list[bytes] = []

    def drain() -> None:            # keep the pty's buffer empty, so the bar's writes never block
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
    stats, total = PoolStats(resumed=10), Total()
    task = asyncio.create_task(show_progress(stats, total=total, clock=lambda: 1.0, interval_s=0.01))
    total.rows, stats.done, stats.ok, stats.failed = 40, 10, 9, 1
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    term.close()                    # the reader then sees end of file (EIO) and stops
    reader.join(timeout=5)
    os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    assert "20/40" in shown and "50%" in shown and "ok=9 failed=1" in shown and "\r" in shown
