"""`batchrun serve --like ...` as its own process, for the twin tests (the default suite's and the
real-server tier's): one starter, so both serve a twin the way a user does."""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
from typing import Iterator, Sequence


@contextlib.contextmanager
def serve_like(*like: str, seed: int = 0, prefix: Sequence[str] = ()) -> Iterator[str]:
    """Yields the twin's base URL, stops it after. `prefix` goes before the command (e.g.
    `taskset -c 0`, to give the twin the core the real server had)."""
    args = [x for item in like for x in ("--like", item)]
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "batchrun", "serve", *args, "--port", "0", "-q", "--seed", str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")},
    )
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            assert sel.select(timeout=60), "the twin did not start within 60 s"
        line = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("http://127.0.0.1:"), proc.communicate()[1]
        yield line
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            stream.close()  # type: ignore[union-attr]
