"""The keywords of the Python face, generated from the option declarations (batchrun/options.py).

Every option a command takes on the command line is a keyword of its Python function, with the
same name and default: `signature("run")` is what `inspect.signature(batchrun.run)` (and Jupyter's
`?`, `help()`) show, and `given("run", kwargs)` turns a call's keywords into the `given` dict the
pipeline's `*.from_options` take. Options left out are absent from `given`, exactly as on the
command line: a resumed run keeps its saved value of an option unless the call gives it again.

Python values are taken where the command line takes text: `concurrency=8` (or `[1, 4, 16]` for a
bench's levels), `json_schema=` a dict, a path or a pydantic model class, `extra_body=` a dict,
`slo=` a dict, durations as seconds (`deadline=3600`), paths as `str` or `Path`. The parsers in
batchrun/values.py accept both forms; this module only turns what they cannot know (a model class,
an `os.PathLike`) into what they take.

Typing: the face functions take `**options: Any` and carry the runtime `__signature__` built here,
rather than `Unpack[TypedDict]` with a TypedDict generated from the declarations. The values an
option accepts are unions the declarations do not spell (a parser's own annotation, or a lambda
with none), so a generated TypedDict would be a second, hand-tuned copy of every option's Python
type that has to be regenerated and kept in step, while what a reader sees in a notebook (the
signature) is generated at import time and can never be stale. A misspelled keyword is caught at
call time with a suggestion (`given`), which is what a type checker would have added.
Environment variables (`BATCHRUN_*`) are the command line's: a Python call takes its keywords and the
declared defaults only (`OPENAI_API_KEY` / `OPENAI_BASE_URL` choose the endpoint for both faces).
"""

from __future__ import annotations

import inspect
import os
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

from batchrun import options, values
from batchrun.options import Option

F = TypeVar("F", bound=Callable[..., Any])


def declared(command: str) -> list[Option]:
    """The options `command` takes in Python: every declared one, the command line's arguments
    first (a face may name them otherwise, e.g. `run`'s `prompts` for `input`)."""
    return options.of(command)


def annotation(option: Option) -> Any:
    """What a Python caller may pass for `option`: the parser's own annotation when it has one
    (it says which Python values it takes), else the command line's type with `str` for a path."""
    hinted: Any = None
    if option.parse is not None:
        try:
            hints = typing.get_type_hints(option.parse)
        except (NameError, TypeError):  # a lambda around a parser: no annotations to read
            hints = {}
        hinted = hints.get("value", Any)
        if option.parse is values.json_schema:
            hinted = hinted | type  # a pydantic model class: its model_json_schema()
        return hinted
    base = option.type
    if base is Path:
        return str | Path
    if base == typing.Optional[Path]:
        return str | Path | None
    return base


def parameter(option: Option, kind: inspect._ParameterKind = inspect.Parameter.KEYWORD_ONLY) -> inspect.Parameter:
    default = inspect.Parameter.empty if option.default is ... else option.default
    return inspect.Parameter(option.name, kind, default=default, annotation=annotation(option))


def signature(
    command: str, positional: Iterable[inspect.Parameter] | None = None, returns: Any = inspect.Signature.empty
) -> inspect.Signature:
    """Every option of `command` as a parameter, with the command line's name and default: the
    command's arguments (its positional ones on the command line) positional-or-keyword first,
    unless `positional` gives the face's own, then every other option keyword-only."""
    options_ = declared(command)
    if positional is None:
        lead = [parameter(o, inspect.Parameter.POSITIONAL_OR_KEYWORD) for o in options_ if o.argument]
    else:
        lead = list(positional)
    keywords = [parameter(o) for o in options_ if not o.argument]
    return inspect.Signature([*lead, *keywords], return_annotation=returns)


def takes(command: str, positional: Iterable[inspect.Parameter] | None = None) -> Callable[[F], F]:
    """Give the decorated `fn(*args, **options)` the signature of `command`'s options, so help(),
    inspect.signature() and notebooks list every keyword and its default."""

    def decorate(fn: F) -> F:
        returns = inspect.signature(fn).return_annotation
        fn.__signature__ = signature(command, positional, returns)  # type: ignore[attr-defined]
        return fn

    return decorate


def given(command: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The options a call gave, as `*.from_options` takes them. An unknown keyword is a TypeError
    naming the closest ones ("did you mean 'max_tokens'?"); `None` for an option whose default is
    None is the default (left out, so a resumed run keeps its saved value)."""
    options.check_names(command, kwargs)
    defaults = {o.name: o.default for o in declared(command)}
    return {
        name: python_value(value) for name, value in kwargs.items() if not (value is None and defaults[name] is None)
    }


def python_value(value: Any) -> Any:
    """A Python value as the option parsers take it: a pydantic model class as its JSON Schema, an
    os.PathLike as a Path, a set of levels as a sorted list; anything else as it is."""
    if isinstance(value, type):
        schema = getattr(value, "model_json_schema", None)  # pydantic v2, never imported here
        if callable(schema):
            return schema()
        raise TypeError(f"expected a value or a pydantic model class, got the class {value.__name__}")
    if isinstance(value, os.PathLike) and not isinstance(value, Path):
        return Path(os.fspath(value))
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return value
