"""batchrun's curated face: every name of __all__ resolves (loaded on first use), nothing else
pretends to, and the signatures a notebook shows list every option."""

from __future__ import annotations

import inspect

import pytest

import batchrun
from batchrun import options
from batchrun.errors import BatchrunError


def test_every_public_name_resolves() -> None:
    for name in batchrun.__all__:
        assert getattr(batchrun, name) is not None, name
    assert dir(batchrun) == sorted(batchrun.__all__)
    assert set(batchrun.__all__) == set(batchrun._LAZY)  # __all__ is a literal list for type checkers
    assert batchrun.__version__ == batchrun.version.__version__


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'runn'"):
        batchrun.runn  # noqa: B018


def test_the_exceptions_are_batchrun_errors() -> None:
    for name in ("ConfigError", "InputError", "InputChanged", "OutputError", "EndpointRefused", "InsideEventLoop"):
        assert issubclass(getattr(batchrun, name), BatchrunError), name
    assert issubclass(batchrun.InsideEventLoop, RuntimeError)


@pytest.mark.parametrize("face", ["run", "arun"])
def test_help_shows_every_option_with_its_default(face: str) -> None:
    params = inspect.signature(getattr(batchrun, face)).parameters
    assert list(params)[0] == "prompts" and params["prompts"].kind is inspect.Parameter.POSITIONAL_ONLY
    declared = {o.name: o.default for o in options.of("run") if not o.argument}
    assert {n: p.default for n, p in params.items() if n != "prompts"} == declared
    assert inspect.iscoroutinefunction(batchrun.arun) and not inspect.iscoroutinefunction(batchrun.run)
