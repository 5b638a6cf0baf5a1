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

Typing, twice from the same declarations: at run time each face function carries the
`__signature__` built here (what help(), Jupyter and inspect show), and for type checkers its
`**options` are `Unpack[RunOptions]`, a TypedDict generated into batchrun/api/typed.py by
`python -m batchrun.api.keywords` (tests/test_api_keywords.py fails when that file is stale), so
mypy or an editor flags a misspelled keyword or a wrong type at the call. A keyword's type there is
what the option's parser is annotated to take; an option parsed by a lambda (the durations) takes
`Any`. A misspelled keyword is also caught at call time, with a suggestion (`given`).
Environment variables (`BATCHRUN_*`) are the command line's: a Python call takes its keywords and the
declared defaults only (`OPENAI_API_KEY` / `OPENAI_BASE_URL` choose the endpoint for both faces).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import types
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
    if positional is None:
        lead = [parameter(o, inspect.Parameter.POSITIONAL_OR_KEYWORD) for o in declared(command) if o.argument]
    else:
        lead = list(positional)
    return inspect.Signature([*lead, *_keywords(command)], return_annotation=returns)


@functools.lru_cache(maxsize=None)
def _keywords(command: str) -> tuple[inspect.Parameter, ...]:
    """The keyword-only parameters of `command`, made once (run and arun share them; the command
    line imports both when it runs)."""
    return tuple(parameter(o) for o in declared(command) if not o.argument)


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


# ---------------------------------------------------------------- the TypedDicts for type checkers

# Command -> the TypedDict of its keywords in batchrun/api/typed.py.
TYPED = {"run": "RunOptions"}
TYPED_HEADER = '''"""The keywords of the Python face's functions as TypedDicts, for type checkers (`**options:
Unpack[RunOptions]`). Generated from batchrun/options.py by `python -m batchrun.api.keywords`: do not edit.
"""
'''


def typed_source() -> str:
    """The text of batchrun/api/typed.py: one TypedDict (total=False) per command in TYPED."""
    imports: dict[str, set[str]] = {"typing": {"TypedDict"}}
    classes = []
    for command, name in TYPED.items():
        lines = [f"class {name}(TypedDict, total=False):", f'    """The keywords of `{command}` (all optional)."""', ""]
        for option in declared(command):
            if not option.argument:
                lines.append(f"    {option.name}: {_render(annotation(option), imports)}")
        classes.append("\n".join(lines))
    head = [f"from {module} import {', '.join(sorted(names))}" for module, names in sorted(imports.items())]
    return (
        TYPED_HEADER
        + "\nfrom __future__ import annotations\n\n"
        + "\n".join(head)
        + "\n\n\n"
        + "\n\n\n".join(classes)
        + "\n"
    )


def _render(hint: Any, imports: dict[str, set[str]]) -> str:
    """A type as source text (`str | Path | None`), noting the imports it needs."""
    if hint is Any:
        imports["typing"].add("Any")
        return "Any"
    if hint is None or hint is type(None):
        return "None"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_render(a, imports) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _render(a, imports) for a in args)
        return f"{_render(origin, imports)}[{inner}]"
    if isinstance(hint, type):
        if hint.__module__ != "builtins":
            imports.setdefault(hint.__module__, set()).add(hint.__name__)
        return hint.__name__
    raise TypeError(f"cannot write {hint!r} as a type")


if __name__ == "__main__":
    sys.stdout.write(typed_source())
