"""`batchrun.serve(...)`: the built-in endpoint for a test or a notebook, stopped on exit.

The server runs in a child process (sim/process.py), so it neither shares the caller's event loop
(it would add its own work to every gap the caller measures) nor needs one: `with` works in a plain
script and `async with` inside a running loop.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

from batchrun.api import keywords
from batchrun.errors import ConfigError
from batchrun.hooks import Notify, log
from batchrun.options import of as options_of
from batchrun.options import with_defaults
from batchrun.sim.cli import SERVE_OPTIONS, SERVE_PANELS, sim_config
from batchrun.sim.config import SimConfig

if TYPE_CHECKING:
    from batchrun.sim.process import SimProcess
    from batchrun.twin.model import TwinModel

LOOPBACK = "127.0.0.1"
# What `like=` takes: a twin file, run or bench directories to fit now, or a fitted twin.
Like = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]], "TwinModel", Any]


class Served:
    """The built-in endpoint, started on entering and stopped on leaving (also on an exception).

    `with batchrun.serve(...) as url:` (or `async with`) gives its base URL, ending in /v1; the
    object itself has `.base_url` and `.stats()` (the server's counters) while it runs."""

    def __init__(self, config: SimConfig, host: str = LOOPBACK, port: int = 0) -> None:
        self.config, self.host, self.port = config, host, port
        self._process: SimProcess | None = None

    @property
    def base_url(self) -> str:
        """The endpoint's base URL (http://127.0.0.1:PORT/v1); only while it runs."""
        return self._running().base_url

    def stats(self) -> dict[str, Any]:
        """The server's counters (requests, tokens, faults injected): GET /sim/stats."""
        return self._running().stats()

    def __enter__(self) -> str:
        from batchrun.sim.process import SimProcess  # lazy: the child process only when serving

        if self._process is not None:
            raise RuntimeError("this endpoint is already running; call batchrun.serve() again for another")
        process = SimProcess(self.config, self.host, self.port)
        process.start()
        self._process = process
        return process.base_url

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop()

    async def __aenter__(self) -> str:
        import asyncio  # lazy: only an async caller needs it

        return await asyncio.to_thread(self.__enter__)  # the child's start is a blocking read

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        import asyncio  # lazy: as __aenter__

        await asyncio.to_thread(self.__exit__, kind, error, trace)

    def __repr__(self) -> str:
        where = self._process.base_url if self._process is not None else "not running"
        return f"<batchrun.Served {where}>"

    def _running(self) -> SimProcess:
        if self._process is None:
            raise RuntimeError("the endpoint runs only inside `with batchrun.serve(...)`")
        return self._process


def serve(*, like: Like = None, host: str = LOOPBACK, port: int = 0, **options: Any) -> Served:
    """The built-in OpenAI-compatible endpoint on a free loopback port, for tests and notebooks.

    Every option of `batchrun serve` is a keyword with the same name and default (`ttft=0.05`,
    `fast=True`, `rpm=60`, `fault_500=0.1`, `model=["a", "b"]`, ...), except that `port` defaults
    to 0 (a free port). `like` serves a twin: a twin file from `batchrun.fit`, run or bench
    directories to fit now, or a fitted twin. A bad option raises ConfigError, an unknown keyword
    TypeError.

        with batchrun.serve(ttft=0.05) as url:
            run = batchrun.run(["hello"], base_url=url)

        async with batchrun.serve(fast=True) as url:     # inside a running event loop
            ...

    As a pytest fixture, one endpoint for a module's tests:

        @pytest.fixture(scope="module")
        def endpoint_url():
            with batchrun.serve(fast=True, seed=1) as url:
                yield url
    """
    given = {**options, "host": host, "port": port}
    if like is not None:
        given["like"] = like
    return Served(serve_config(given), host, port)


def _signature() -> inspect.Signature:
    """serve's keywords as help() and notebooks show them: every serve option, `port` 0."""
    parameters = []
    for option in options_of("serve", SERVE_OPTIONS, SERVE_PANELS):
        parameter = keywords.parameter(option)
        if option.name == "port":
            parameter = parameter.replace(default=0)
        elif option.name == "like":
            parameter = parameter.replace(annotation="str | os.PathLike[str] | list[str] | Twin | None")
        parameters.append(parameter)
    return inspect.Signature(parameters, return_annotation=Served)


serve.__signature__ = _signature()  # type: ignore[attr-defined]


def serve_config(given: Mapping[str, Any], notify: Notify = log) -> SimConfig:
    """The SimConfig that serve's options describe (those left out keep their defaults); with
    `like`, the twin's, its notes (what it could not fit) sent to `notify`."""
    with_defaults("serve", given, SERVE_OPTIONS)  # a TypeError naming an unknown keyword
    if given.get("like") is None:
        return sim_config(dict(given))
    twin = _twin(given["like"])
    for note in twin.notes:
        notify(f"note: {note}")
    from batchrun.twin.load import sim_config as twin_sim_config  # lazy: a twin only when served

    changes: dict[str, Any] = {"api_key": given.get("api_key")}
    if given.get("model"):
        changes["models"] = (given["model"],) if isinstance(given["model"], str) else tuple(given["model"])
    return twin_sim_config(twin, seed=given.get("seed", 0), **changes)


def _twin(like: Like) -> TwinModel:
    """A fitted twin as given, or read (a twin file) or fitted (run / bench directories) now."""
    from batchrun.api.fit import Twin  # lazy: a twin's fit loads the store and the analysis
    from batchrun.twin.load import load
    from batchrun.twin.model import TwinModel

    if isinstance(like, TwinModel):
        return like
    if isinstance(like, Twin):
        return like.model
    if isinstance(like, (str, os.PathLike)):
        return load([Path(like)])
    if isinstance(like, Sequence):
        return load([Path(p) for p in like])
    raise ConfigError(f"like= takes a twin file, run or bench directories or a fitted twin, got {type(like).__name__}")
