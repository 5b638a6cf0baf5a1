"""batchrun: bulk-query and benchmark any OpenAI-compatible chat endpoint.

The Python face. Each name loads its module on first use, so `import batchrun` stays cheap:

    with batchrun.serve(fast=True) as url: ...          the built-in endpoint, stopped on exit
    b = batchrun.bench("prompts.csv", concurrency=[1, 4, 16]); b.frame; b.recommendation
    verdict = batchrun.compare("base/", "new/"); verdict.failed
    twin = batchrun.fit(["run-dir"], out="twin.json")
    batchrun.report("run-dir")                           rebuild a run's reports
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from batchrun.api.bench import Bench, FindMax, abench, bench
    from batchrun.api.compare import Verdict, compare
    from batchrun.api.fit import Twin, fit
    from batchrun.api.report import report
    from batchrun.api.serve import Served, serve

# name -> the module of the face that defines it
_LAZY = {
    "bench": "batchrun.api.bench",
    "abench": "batchrun.api.bench",
    "Bench": "batchrun.api.bench",
    "FindMax": "batchrun.api.bench",
    "compare": "batchrun.api.compare",
    "Verdict": "batchrun.api.compare",
    "fit": "batchrun.api.fit",
    "Twin": "batchrun.api.fit",
    "report": "batchrun.api.report",
    "serve": "batchrun.api.serve",
    "Served": "batchrun.api.serve",
}

__all__ = [
    "Bench",
    "FindMax",
    "Served",
    "Twin",
    "Verdict",
    "__version__",
    "abench",
    "bench",
    "compare",
    "fit",
    "report",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'batchrun' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


class _CallablePackage(types.ModuleType):
    """A subpackage that is also the face's function of its name: `batchrun.bench` is the bench/
    package (`from batchrun.bench.sweep import ...` and dotted paths keep working) and, called,
    `batchrun.api.bench.bench`; likewise `batchrun.report`. Without this, whichever the import
    system bound last would win: the package once anything imported it, the function before."""

    def _face(self) -> Any:
        name = self.__name__.rsplit(".", 1)[-1]
        return getattr(importlib.import_module(_LAZY[name]), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._face()(*args, **kwargs)

    @property
    def __signature__(self) -> Any:  # what help() and Jupyter show for the call
        import inspect  # lazy: typer loads it for the command line anyway; a script may never ask

        return inspect.signature(self._face())


def _callable_package(name: str) -> None:
    # Both packages' __init__ are docstrings only: importing them here costs nothing.
    importlib.import_module(f"batchrun.{name}").__class__ = _CallablePackage


_callable_package("bench")
_callable_package("report")
