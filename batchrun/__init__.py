"""batchrun: bulk-query and benchmark any OpenAI-compatible chat endpoint.

The Python face (the command line `batchrun` calls the same functions):

    import batchrun
    run = batchrun.run("prompts.csv", model="gpt-4o-mini", concurrency=32)   # or a DataFrame, a list
    run.frame        # pandas DataFrame: the input's columns + answer, status, tokens, timings
    run.summary      # the figures of summary.json
    run = await batchrun.arun(df, ...)                                        # in a running loop
    b = batchrun.bench("prompts.csv", concurrency=[1, 4, 16]); b.frame; b.recommendation
    verdict = batchrun.compare("results/base", "results/new"); verdict.failed
    with batchrun.serve(ttft=0.05) as url: ...                                # the built-in endpoint
    twin = batchrun.fit(["results/prod"], out="twin.json")                    # an endpoint's twin
    batchrun.report("results/run")                                            # rebuild its reports

Every name is loaded on first use, `__version__` too, so `import batchrun` stays cheap: the
command line's entry point imports it before its Ctrl-C handler is in place, and start-up counts it
on every call.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrun.api.batch import BatchJobs, batch_cancel, batch_status
    from batchrun.api.bench import Bench, FindMax, abench, bench
    from batchrun.api.compare import Verdict, compare
    from batchrun.api.fit import Twin, fit
    from batchrun.api.report import report
    from batchrun.api.run import Run, Summary, arun, run
    from batchrun.api.serve import Served, serve
    from batchrun.errors import (
        BatchrunError,
        CompareRefused,
        ConfigError,
        EndpointRefused,
        InputChanged,
        InputError,
        InsideEventLoop,
        OutputError,
        RunAborted,
    )
    from batchrun.version import __version__

# Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "__version__": "batchrun.version",
    "run": "batchrun.api.run",
    "arun": "batchrun.api.run",
    "Run": "batchrun.api.run",
    "Summary": "batchrun.api.run",
    "bench": "batchrun.api.bench",
    "abench": "batchrun.api.bench",
    "Bench": "batchrun.api.bench",
    "FindMax": "batchrun.api.bench",
    "compare": "batchrun.api.compare",
    "Verdict": "batchrun.api.compare",
    "serve": "batchrun.api.serve",
    "Served": "batchrun.api.serve",
    "fit": "batchrun.api.fit",
    "Twin": "batchrun.api.fit",
    "report": "batchrun.api.report",
    "batch_status": "batchrun.api.batch",
    "batch_cancel": "batchrun.api.batch",
    "BatchJobs": "batchrun.api.batch",
    "BatchrunError": "batchrun.errors",
    "CompareRefused": "batchrun.errors",
    "ConfigError": "batchrun.errors",
    "EndpointRefused": "batchrun.errors",
    "InputChanged": "batchrun.errors",
    "InputError": "batchrun.errors",
    "InsideEventLoop": "batchrun.errors",
    "OutputError": "batchrun.errors",
    "RunAborted": "batchrun.errors",
}

__all__ = [
    "run",
    "arun",
    "Run",
    "Summary",
    "bench",
    "abench",
    "Bench",
    "FindMax",
    "compare",
    "Verdict",
    "serve",
    "Served",
    "fit",
    "Twin",
    "report",
    "batch_status",
    "batch_cancel",
    "BatchJobs",
    "BatchrunError",
    "CompareRefused",
    "ConfigError",
    "EndpointRefused",
    "InputChanged",
    "InputError",
    "InsideEventLoop",
    "OutputError",
    "RunAborted",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'batchrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


# `batchrun.bench` and `batchrun.report` name both a face function and a subpackage (bench/,
# report/). Each is the subpackage, made callable: `batchrun.bench(...)` calls the face's function,
# and `from batchrun.bench.sweep import ...` and dotted paths keep working. The package's own class
# holds them as properties, so that whichever comes first, `import batchrun.bench.sweep` (the
# import system then sets the attribute) or `batchrun.bench` (the property imports the package),
# the name is the callable package, and `import batchrun` imports neither.


class _CallablePackage(types.ModuleType):
    """A subpackage that, called, is the face's function of its name."""

    def _face(self) -> Any:
        name = self.__name__.rsplit(".", 1)[-1]
        return getattr(importlib.import_module(_LAZY[name]), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._face()(*args, **kwargs)

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]  # Jupyter's `batchrun.bench?`: the call's
        package = self.__dict__.get("__doc__") or ""
        return f"{self._face().__doc__}\n\nThe package {self.__name__}: {package}"

    @property
    def __signature__(self) -> Any:  # what help() and Jupyter show for the call
        import inspect  # lazy: typer loads it for the command line anyway; a script may never ask

        return inspect.signature(self._face())


def _callable(name: str, package: types.ModuleType | None = None) -> types.ModuleType:
    package = package if package is not None else importlib.import_module(f"batchrun.{name}")
    package.__class__ = _CallablePackage
    return package


def _both(name: str) -> property:
    def get(_: types.ModuleType) -> types.ModuleType:
        return _callable(name)

    def set_by_the_import_system(_: types.ModuleType, package: types.ModuleType) -> None:
        _callable(name, package)

    return property(get, set_by_the_import_system)


class _Package(types.ModuleType):
    bench = _both("bench")
    report = _both("report")


sys.modules[__name__].__class__ = _Package
