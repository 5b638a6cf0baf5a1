"""Ends the processes of a local Ray cluster whose driver died without `ray.shutdown()`.

Why: `ray.init()` on a machine with no cluster starts one as the driver's children. Ray makes the
GCS and the raylet die with the driver, but the raylet's own children, the DashboardAgent and the
RuntimeEnvAgent (~180 MB together), notice the raylet's death and then wait about a minute on the
dead GCS before they exit, ignoring SIGTERM meanwhile. After a SIGKILLed driver they outlive it.

How: the driver starts `python -m batchrun.engine.ray_watchdog PSUTIL_DIR ROOT_PID...` (the
cluster's processes it started, `ROOT_PID`s) with a pipe from itself as stdin, in a session of
its own, so that a Ctrl-C to the driver's process group does not end the watchdog first. The
watchdog keeps the roots and all their descendants in view (every POLL_S) while the pipe is open;
the pipe ends when the driver exits, by any path, SIGKILL included; then it SIGKILLs every one
still running and exits. It holds psutil.Process objects, which know their start time, so a pid
the system has given to another program since is never signalled. A process started in the last
POLL_S before the driver died is not seen: only a worker the raylet starts can be one, and
workers end themselves within seconds of the raylet (the agents are what waits on the GCS).

psutil comes with Ray (in its `thirdparty_files`); the driver passes the directory it is in.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from typing import Any, BinaryIO, Iterable

POLL_S = 0.5  # how often the roots' descendants are looked up while the driver lives


def start(roots: list[int]) -> subprocess.Popen[bytes] | None:
    """The watchdog over `roots` (pids); None where there is nothing to watch or no way to
    (Windows: Ray ends a dead driver's processes there with a job object)."""
    if not roots or sys.platform == "win32":
        return None
    import psutil  # importable once ray is: Ray puts its thirdparty_files on sys.path

    where = os.path.dirname(os.path.dirname(psutil.__file__))
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun.engine.ray_watchdog", where, *map(str, roots)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(watchdog: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """After a normal shutdown: close the pipe (the watchdog ends what is left) and reap it."""
    if watchdog is None:
        return
    assert watchdog.stdin is not None
    watchdog.stdin.close()
    try:
        watchdog.wait(timeout_s)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def children_of(pid: int) -> set[int]:
    """The direct children of `pid` now (psutil: call after `import ray`); none known without psutil."""
    try:
        import psutil  # optional: there once Ray is (its thirdparty_files)
    except ImportError:  # a Ray packaged without its psutil: no watchdog, as before it
        return set()
    try:
        return {child.pid for child in psutil.Process(pid).children()}
    except psutil.Error:
        return set()


def watch(roots: list[int], pipe: BinaryIO, poll_s: float = POLL_S) -> int:
    """Track `roots` and their descendants until `pipe` ends, then SIGKILL those still running;
    returns how many were killed."""
    import psutil  # optional: there once Ray is (its thirdparty_files)

    procs: dict[int, Any] = {}
    for pid in roots:
        with contextlib.suppress(psutil.Error):
            procs[pid] = psutil.Process(pid)
    while True:  # look first: what exists now is seen
        for root in running(procs.values()):
            with contextlib.suppress(psutil.Error):  # it ended meanwhile
                for child in root.children(recursive=True):
                    if not running([procs[child.pid]] if child.pid in procs else []):
                        procs[child.pid] = child
        if _ended(pipe, poll_s):
            break
    killed = 0
    for proc in running(procs.values()):
        with contextlib.suppress(psutil.Error):
            proc.kill()
            killed += 1
    return killed


def running(procs: Iterable[Any]) -> list[Any]:
    """Those of `procs` (psutil.Process) still running as themselves: a pid given to another
    program since is not theirs, and a zombie is dead."""
    import psutil  # optional: there once Ray is (its thirdparty_files)

    alive = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive


def _ended(pipe: BinaryIO, timeout_s: float) -> bool:
    """True once the driver's end of the pipe is closed (it never writes: readable means EOF)."""
    readable, _, _ = select.select([pipe], [], [], timeout_s)
    return bool(readable) and not os.read(pipe.fileno(), 4096)


def main(argv: list[str]) -> None:
    sys.path.insert(0, argv[0])
    watch([int(pid) for pid in argv[1:]], sys.stdin.buffer)


if __name__ == "__main__":
    main(sys.argv[1:])
