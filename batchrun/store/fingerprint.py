"""What identifies a run's input: file name, size and SHA-256, so `compare` can tell when two
runs measured different prompts."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def input_identity(path: str | Path | None) -> dict[str, Any] | None:
    """{"name", "bytes", "sha256"} of the input file; None when there is none or it is unreadable."""
    if path is None:
        return None
    p = Path(path)
    digest = hashlib.sha256()
    try:
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        size = p.stat().st_size
    except OSError:
        return None
    return {"name": p.name, "bytes": size, "sha256": digest.hexdigest()}
