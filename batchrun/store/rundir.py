"""One run per directory: refuse a foreign non-empty --out, lock the directory while a run writes
to it, and remember which input file the run reads so a resume cannot silently switch files.

    with claim_run_dir(out, resume=False, overwrite=False):
        ...   # only this process writes records.jsonl here
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from batchrun.errors import ConfigError, OutputError

LOCK_FILE = ".batchrun.lock"
# What a run writes; --overwrite removes exactly these, never a file of the user's.
RUN_FILES = ("records.jsonl", "run.json", "summary.json", "results.csv", "results.parquet",
             "report.md", "report.html", "internal-errors.log")
_IGNORED = {LOCK_FILE, ".write-test"}
HASH_WHOLE_UP_TO = 2 * 1024 * 1024     # bytes: smaller files are hashed whole
EDGE = 1024 * 1024                     # bytes hashed at each end of a larger file


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
        raise OutputError(f"--out {out} is not empty ({shown}); one directory holds one run: "
                          f"continue it with --resume {out}, replace it with --overwrite, "
                          "or choose a new --out")
    foreign = [name for name in present if name not in RUN_FILES]
    if foreign and "records.jsonl" not in present:
        raise OutputError(f"--out {out} holds files batchrun did not write ({', '.join(foreign[:5])}); "
                          "--overwrite only replaces a run directory: choose a new --out")
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()


def _holder_text() -> str:
    since = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    command = " ".join(["batchrun", *sys.argv[1:]])[:200]
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since, "command": command})


def describe_holder(text: str) -> str:
    """The lock file's content, as words for an error message."""
    try:
        data = json.loads(text)
        return f"pid {data['pid']} on {data['host']}, since {data['since']} ({data['command']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def lock_run_dir(out: Path) -> Iterator[None]:
    """Hold an exclusive flock on OUT/.batchrun.lock; a second process stops at once (exit 2)
    naming the holder. The kernel drops the lock when the process dies, so a crash never
    leaves a stale lock; the file itself stays (removing it would race a waiting process)."""
    path = out / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write to {out}: {exc.strerror} (choose another --out)") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            raise OutputError(f"{out} is in use by another batchrun run: {holder}; wait for it to finish "
                              "(two runs in one directory would send rows twice)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_text().encode(), 0)
        yield
    finally:
        os.close(fd)       # closing releases the flock


@contextlib.contextmanager
def claim_run_dir(out: Path, *, resume: bool, overwrite: bool) -> Iterator[None]:
    """Create OUT and hold its lock for the body. A refused directory is left untouched (no lock
    file either); --overwrite clears only under the lock, so it never deletes a running run's files;
    and a fresh run checks again under the lock, in case another run filled OUT meanwhile."""
    if not overwrite:
        check_empty(out, resume=resume, overwrite=False)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write to {out}: {exc.strerror} (choose another --out)") from exc
    with lock_run_dir(out):
        check_empty(out, resume=resume, overwrite=overwrite)
        yield


# ------------------------------------------------------------------ input identity

def input_identity(path: Path) -> dict[str, Any]:
    """Path, size and SHA-256 of the input (whole up to 2 MiB, else its first and last MiB)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= HASH_WHOLE_UP_TO:
            digest.update(f.read())
            hashed = "whole file"
        else:
            digest.update(f.read(EDGE))
            f.seek(size - EDGE)
            digest.update(f.read(EDGE))
            hashed = "first and last MiB"
    return {"path": str(path.resolve()), "size": size, "sha256": digest.hexdigest(), "hashed": hashed}


def input_difference(saved: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """How the input differs from the one the run started with, or None."""
    if not saved:
        return None           # a run directory from before identities were kept
    if saved.get("path") != now["path"]:
        return f"the run read {saved.get('path')}, this is {now['path']}"
    if saved.get("size") != now["size"] or saved.get("sha256") != now["sha256"]:
        return (f"{now['path']} changed since the run started (size {saved.get('size')} -> {now['size']} "
                "bytes, or its content)")
    return None


def check_input(saved: dict[str, Any] | None, now: dict[str, Any], accept_changed: bool) -> str | None:
    """Refuse a resume on another or changed input unless --input-changed ok; returns the
    difference when it was accepted (to be announced)."""
    difference = input_difference(saved, now)
    if difference is not None and not accept_changed:
        raise ConfigError(f"--resume: {difference}; rows are matched by id, so a changed file can mix two "
                          "inputs in one run. Resume with the original file, start a new --out, or pass "
                          "--input-changed ok to match rows by id (ids no longer in the file are reported)")
    return difference
