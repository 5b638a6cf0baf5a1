"""Batch API mode: the same rows, records and reports as online mode, at the Batch API's price.

    lines.py     request lines (endpoint/batch.py: online mode's bodies, not streamed) split into
                 files, and the provider's files kept line by line
    ledger.py    the jobs of a run, saved in run.json before each step (resume, never twice)
    api.py       files and batches through the openai SDK
    flow.py      one session: plan, upload, create, wait, collect
    mode.py      --mode auto's rule
    commands.py  `batchrun batch status / cancel DIR`

The names below load on first use: `batchrun` imports this package on every start, and the
openai SDK behind flow.py costs half a second.
"""

from __future__ import annotations

from typing import Any

__all__ = ["choose_mode", "run_batch", "sim_config"]
_HOMES = {"choose_mode": "mode", "run_batch": "flow", "sim_config": "flow"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"batchrun.batchapi.{_HOMES[name]}"), name)
