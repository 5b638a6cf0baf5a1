"""One run per directory: refuse a foreign non-empty --out, lock the directory while a run writes
to it, and remember which input file the run reads so a resume cannot silently switch files.

    with claim_run_dir(out, resume=False, overwrite=False):
        ...   # only this process writes records.jsonl here
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from batchrun.errors import ConfigError, OutputError
from batchrun.inputs.identity import content_change

LOCK_FILE = ".batchrun.lock"
# What a run writes; --overwrite removes exactly these, never a file of the user's.
RUN_FILES = (
    "records.jsonl",
    "run.json",
    "summary.json",
    "results.csv",
    "results.parquet",
    "report.md",
    "report.html",
    "internal-errors.log",
)
# Rows a caller gave as Python values (a DataFrame, a list), written into the run directory before
# the run starts so that it reads a file (and resumes from one): not a sign of an earlier run.
STAGED_INPUTS = ("input.parquet", "input.jsonl")
_IGNORED = {LOCK_FILE, ".write-test", *STAGED_INPUTS}


def new_run_dir(stem: str, now: datetime | None = None, parent: Path = Path("results")) -> Path:
    """The default output directory, results/<stem>-<YYYYmmdd-HHMMSS>: with -2, -3, ... when one of
    that name exists, so two runs started within the same second (a script) never share one."""
    base = f"{stem}-{now or datetime.now():%Y%m%d-%H%M%S}"
    for n in itertools.count(1):
        candidate = parent / (base if n == 1 else f"{base}-{n}")
        if not candidate.exists():
            return candidate
    raise AssertionError("unreachable")


def check_empty(out: Path, *, resume: bool, overwrite: bool) -> None:
    """A fresh run needs a new or empty --out; --overwrite clears batchrun's own files first."""
    if resume or not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a directory (choose another --out)")
    present = sorted(p.name for p in out.iterdir() if p.name not in _IGNORED)
    if not present:
        return
    if not overwrite:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise OutputError(
            f"--out {out} is not empty ({shown}); one directory holds one run: "
            f"continue it with --resume {out}, replace it with --overwrite, "
            "or choose a new --out"
        )
    foreign = [name for name in present if name not in RUN_FILES]
    if foreign and "records.jsonl" not in present:
        raise OutputError(
            f"--out {out} holds files batchrun did not write ({', '.join(foreign[:5])}); "
            "--overwrite only replaces a run directory: choose a new --out"
        )
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()


def _holder_text(about: Mapping[str, str]) -> str:
    """Who holds the lock, for a person: pid, host, start time and what runs (never the argv,
    which may hold a URL password or `?api_key=`)."""
    since = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since, **about})


def describe_holder(text: str) -> str:
    """The lock file's content, as words for a message. Only the fields this version writes are
    shown: an older version's lock kept the whole command line, secrets and all."""
    try:
        data = json.loads(text)
        words = f"pid {int(data['pid'])} on {data['host']} since {data['since']}"
    except (ValueError, KeyError, TypeError):
        return "another process"
    doing = [
        f"{label}{data[key]}"
        for key, label in (("subcommand", ""), ("input", "input "), ("endpoint", "endpoint "))
        if isinstance(data.get(key), str)
    ]
    return words + (f": {', '.join(doing)}" if doing else "")


# Locks this process holds (path -> fd): an exit that skips `finally` (a second Ctrl-C) removes them.
_HELD: dict[Path, int] = {}


def drop_held_locks() -> None:
    """Remove every lock this process holds, now (before an immediate os._exit)."""
    for path, fd in list(_HELD.items()):
        _release(path, fd)


def _release(path: Path, fd: int) -> None:
    # Unlink while still holding the flock, then close: a process waiting on this file finds
    # it gone and starts over on a new one (see _take).
    if _HELD.pop(path, None) is None:
        return
    with contextlib.suppress(OSError):
        if _same_file(fd, path):
            path.unlink()
    os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _open_lock(path: Path) -> tuple[int, bool] | None:
    """(fd, created) for the lock file; None when it vanished between two calls (try again).
    A new file is created 0600 from the start: it names this host and process."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
    except FileExistsError:
        pass
    try:
        return os.open(path, flags), False
    except FileNotFoundError:
        return None


def _take(out: Path, about: Mapping[str, str], say: Callable[[str], None]) -> int:
    """The fd of OUT/.batchrun.lock, created by this process and flock'ed. A lock file that
    nobody holds is a run that ended without removing it (SIGKILL, a crash, a machine that
    stopped): it is replaced, with a message. The flock decides, not the pid: the kernel drops
    it when its process dies, and a file system shared between machines (NFS) shares it too."""
    path = out / LOCK_FILE
    for _ in range(100):
        opened = _open_lock(path)
        if opened is None:
            continue
        fd, created = opened
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            os.close(fd)
            raise OutputError(
                f"{out} is in use by another batchrun run: {holder}; wait for it to finish "
                "(two runs in one directory would send rows twice)"
            ) from None
        if not _same_file(fd, path):  # its holder removed it as we opened it: start over
            os.close(fd)
            continue
        if created:
            os.pwrite(fd, _holder_text(about).encode(), 0)
            return fd
        left = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # replaced by a new file of ours (created 0600) on the next turn
        os.close(fd)
        if left.strip():
            say(_stale_message(out, left))
    raise OutputError(f"cannot lock {path}: it keeps changing under this process (choose another --out)")


def _stale_message(out: Path, text: str) -> str:
    try:
        host = json.loads(text).get("host")
    except (ValueError, AttributeError):
        host = None
    where = (
        ""
        if host in (None, socket.gethostname())
        else (
            f"; batchrun cannot see {host}'s processes and trusts the file system's lock, which NFS shares "
            "between machines: on a file system that does not, make sure that run has ended"
        )
    )
    return (
        f"{out}: taking over the lock left by a run that did not end cleanly ({describe_holder(text)}); "
        f"nobody holds it any more, so that process is gone{where}"
    )


@contextlib.contextmanager
def lock_run_dir(
    out: Path, about: Mapping[str, str] | None = None, say: Callable[[str], None] = lambda _: None
) -> Iterator[None]:
    """Hold an exclusive lock on OUT/.batchrun.lock (mode 0600: pid, host, start time and the
    public `about` fields, e.g. subcommand, input, endpoint host); a second process stops at once
    (exit 2) naming the holder. The file is removed when the body ends, however it ends short of
    SIGKILL; after a SIGKILL the next run takes it over (see _take)."""
    try:
        fd = _take(out, about or {}, say)
    except OSError as exc:
        raise OutputError(f"cannot write to {out}: {exc.strerror} (choose another --out)") from exc
    path = out / LOCK_FILE
    _HELD[path] = fd
    try:
        yield
    finally:
        _release(path, fd)


@contextlib.contextmanager
def claim_run_dir(
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    about: Mapping[str, str] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Iterator[None]:
    """Create OUT and hold its lock for the body. A refused directory is left untouched (no lock
    file either); --overwrite clears only under the lock, so it never deletes a running run's files;
    and a fresh run checks again under the lock, in case another run filled OUT meanwhile."""
    if not overwrite:
        check_empty(out, resume=resume, overwrite=False)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write to {out}: {exc.strerror} (choose another --out)") from exc
    with lock_run_dir(out, about, say):
        check_empty(out, resume=resume, overwrite=overwrite)
        yield


# ------------------------------------------------------------------ input identity


def input_difference(saved: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """How the input differs from the one the run started with, or None."""
    if not saved:
        return None  # a run directory from before identities were kept
    if saved.get("path") != now["path"]:
        return f"the run read {saved.get('path')}, this is {now['path']}"
    change = content_change(saved, now)
    return None if change is None else f"{now['path']} changed since the run started ({change})"


def check_input(saved: dict[str, Any] | None, now: dict[str, Any], accept_changed: bool) -> str | None:
    """Refuse a resume on another or changed input unless --input-changed ok; returns the
    difference when it was accepted (to be announced)."""
    difference = input_difference(saved, now)
    if difference is not None and not accept_changed:
        raise ConfigError(
            f"--resume: {difference}; rows are matched by id, so a changed file can mix two "
            "inputs in one run. Resume with the original file, start a new --out, or pass "
            "--input-changed ok to match rows by id (ids no longer in the file are reported)"
        )
    return difference
