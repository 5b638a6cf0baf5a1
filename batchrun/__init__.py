"""batchrun: bulk-query and benchmark any OpenAI-compatible chat endpoint.

The Python face (the command line `batchrun` calls the same functions):

    import batchrun
    run = batchrun.run("prompts.csv", model="gpt-4o-mini", concurrency=32)   # or a DataFrame, a list
    run.frame        # pandas DataFrame: the input's columns + answer, status, tokens, timings
    run.summary      # the figures of summary.json
    run = await batchrun.arun(df, ...)                                        # in a running loop

Every name is loaded on first use, `__version__` too, so `import batchrun` stays cheap: the
command line's entry point imports it before its Ctrl-C handler is in place, and start-up counts it
on every call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrun.api.run import Run, Summary, arun, run
    from batchrun.errors import (
        BatchrunError,
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
    "BatchrunError": "batchrun.errors",
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
    "BatchrunError",
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
