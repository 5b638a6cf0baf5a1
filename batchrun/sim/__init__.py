"""The built-in OpenAI-compatible endpoint: a real HTTP server with a latency model, rate limits
and seeded faults, for testing and benchmarking clients without a GPU or an API key.

    async with serve_sim(SimConfig(fast=True)) as sim:      # in the current event loop
        client = AsyncOpenAI(base_url=sim.base_url, api_key="x")

    with SimProcess(SimConfig()) as sim:                     # in a child process (its own core)
        ...; sim.stats()
"""

from __future__ import annotations

from batchrun.sim.config import DEFAULT_MODEL, SimConfig
from batchrun.sim.process import SimProcess
from batchrun.sim.server import SimServer, serve_sim

__all__ = ["DEFAULT_MODEL", "SimConfig", "SimProcess", "SimServer", "serve_sim"]
