"""Shared fixtures: the built-in simulated endpoint on a real loopback socket."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest

from batchrun.sim import SimConfig, SimProcess, SimServer, serve_sim

MakeSim = Callable[..., Awaitable[SimServer]]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test runs in its own empty directory (no stray .env; results/ lands there) with no
    endpoint or key from the developer's environment, so no test can reach a real provider."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    """A fast-mode sim (zero delays) in the test's event loop; `.base_url` ends in /v1."""
    async with serve_sim(SimConfig(fast=True)) as server:
        yield server


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    """Factory: `await make_sim(fast=True, rpm=10)` starts a sim with those SimConfig fields;
    every sim it started is stopped when the test ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def factory(**config: Any) -> SimServer:
            return await stack.enter_async_context(serve_sim(SimConfig(**config)))

        yield factory


@pytest.fixture(scope="module")
def fast_sim() -> Iterator[SimProcess]:
    """A fast-mode sim in a child process, one per test module (for CLI runs, which start their
    own event loop): `.base_url` ends in /v1."""
    with SimProcess(SimConfig(fast=True)) as sim:
        yield sim
