"""Fewer garbage-collector pauses while the client measures, so that a pause rarely lands
between a chunk's arrival and its timestamp (what a run, a bench level and the sync baseline
all do around their sending)."""

from __future__ import annotations

import contextlib
import gc
from typing import AsyncIterator


@contextlib.asynccontextmanager
async def quiet_gc() -> AsyncIterator[None]:
    """The objects alive at the start (modules, config) are frozen out of collection and
    collections run less often while the body runs."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
