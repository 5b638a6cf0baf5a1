"""The built-in OpenAI-compatible endpoint: a real HTTP server with a latency model, rate limits
and seeded faults, for testing and benchmarking clients without a GPU or an API key.

    async with serve_sim(SimConfig(fast=True)) as sim:      # in the current event loop
        client = AsyncOpenAI(base_url=sim.base_url, api_key="x")

    with SimProcess(SimConfig()) as sim:                     # in a child process (its own core)
        ...; sim.stats()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from batchrun.sim.config import DEFAULT_MODEL, SimConfig

if TYPE_CHECKING:
    from batchrun.sim.process import SimProcess
    from batchrun.sim.server import SimServer, serve_sim

__all__ = ["DEFAULT_MODEL", "SimConfig", "SimProcess", "SimServer", "serve_sim"]

# The server (~0.1 s of imports) loads on first use: `batchrun run` against a configured endpoint
# imports sim.config for the CLI's defaults and never needs the rest.
_LAZY = {"SimProcess": "batchrun.sim.process", "SimServer": "batchrun.sim.server", "serve_sim": "batchrun.sim.server"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'batchrun.sim' has no attribute {name!r}")
