"""What identifies an input file while a run reads it: size and SHA-256 of its ends, cheap at any
size, so a resume and the end of reading can both tell when the file is not the one the run began on.

    before = input_identity(path)
    ...                                    # read every row
    change = content_change(before, input_identity(path))
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, BinaryIO

HASH_WHOLE_UP_TO = 2 * 1024 * 1024  # bytes: smaller files are hashed whole
EDGE = 1024 * 1024  # bytes hashed at each end of a larger file
_BLOCK = 64 * 1024


def input_identity(path: Path) -> dict[str, Any]:
    """Path, size and SHA-256 of the input (whole up to 2 MiB, else its first and last MiB): at
    most 2 MiB read, whatever the file's size."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= HASH_WHOLE_UP_TO:
            _hash_span(f, size, digest)
            hashed = "whole file"
        else:
            _hash_span(f, EDGE, digest)
            f.seek(size - EDGE)
            _hash_span(f, EDGE, digest)
            hashed = "first and last MiB"
    return {"path": str(path.resolve()), "size": size, "sha256": digest.hexdigest(), "hashed": hashed}


def _hash_span(f: BinaryIO, length: int, digest: Any) -> None:
    """`length` bytes from where `f` stands (fewer at its end), in small blocks: the reader's
    memory stays flat (a run's first row must not cost a MiB)."""
    while length > 0:
        block = f.read(min(length, _BLOCK))
        if not block:
            return
        digest.update(block)
        length -= len(block)


def content_change(before: dict[str, Any], now: dict[str, Any]) -> str | None:
    """How the same file's content differs between two identities, in words; None when it does not."""
    if before.get("size") != now["size"]:
        return f"size {before.get('size')} -> {now['size']} bytes"
    if before.get("sha256") != now["sha256"]:
        return f"same size, other content in the {now['hashed']}"
    return None


def changed_while_read(path: Path, before: dict[str, Any], bytes_read: int | None) -> str | None:
    """At the end of reading: how the file differs from `before` (taken as reading began), or
    from what the reader got (`bytes_read`, None when the reader cannot say); None when unchanged."""
    try:
        now = input_identity(path)
    except OSError as exc:
        return f"it cannot be read any more ({exc.strerror})"
    change = content_change(before, now)
    if change is None and bytes_read is not None and bytes_read != before["size"]:
        change = f"the reader got {bytes_read} of its {before['size']} bytes"
    return change
