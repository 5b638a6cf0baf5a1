"""SimProcess: the sim in a child process, so it gets a core of its own and does not share the
client's event loop (a server on the client's loop would add its own work to every measured gap).

A fresh interpreter (`python -m batchrun.sim._child`), not multiprocessing: no fork of a process
that runs an event loop, and no re-import of the parent's __main__ as spawn would do.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from batchrun.errors import BatchrunError
from batchrun.sim.config import SimAddress, SimConfig

START_TIMEOUT_S = 10.0  # generous: a cold interpreter on a loaded CI machine; ~0.2 s is usual


class SimProcessError(BatchrunError):
    """The child process could not start the sim."""


class SimProcess(SimAddress):
    """`with SimProcess(cfg) as sim:` or `async with`; `.base_url`, `.stats()`, `.pid`."""

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimConfig()
        self.host, self.port = host, port
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # so the child imports this very batchrun
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "batchrun.sim._child", self.config.to_json(), self.host, str(self.port)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            ready = _read_line(self._proc, START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        info = json.loads(ready)
        self.port, self.pid = info["port"], info["pid"]

    def stop(self) -> None:
        """Close the child's stdin (it stops cleanly on EOF), then terminate / kill if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for step in (_close_stdin, subprocess.Popen.terminate, subprocess.Popen.kill):
            if proc.poll() is not None:
                break
            step(proc)
            try:
                proc.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                continue
        proc.wait()  # reaped: no zombie
        _close_stdin(proc)
        if proc.stdout is not None:
            proc.stdout.close()

    def stats(self) -> dict[str, Any]:
        """The child's counters, from GET /sim/stats."""
        with urllib.request.urlopen(f"{self.url}/sim/stats", timeout=10) as resp:
            return json.loads(resp.read())

    def __enter__(self) -> SimProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> SimProcess:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


def _close_stdin(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's readiness line; a thread does the blocking read so this also works on Windows."""
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(
        target=lambda: lines.put(proc.stdout.readline()),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise SimProcessError(f"the sim did not start within {timeout:.0f} s") from None
    if not line:
        raise SimProcessError(
            f"the sim process exited with code {proc.wait()} before it was ready (its error is printed above)"
        )
    return line.decode()
