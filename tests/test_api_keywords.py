"""The Python face's keywords (batchrun/api/keywords.py): generated from the option declarations,
the same names and defaults as the command line, and Python values giving the config the text
form gives."""

from __future__ import annotations

import inspect
import json
from pathlib import Path, PurePath
from typing import Any, Mapping, Optional, Union

import pydantic
import pytest

from batchrun import options
from batchrun.api import keywords
from batchrun.bench.sweep import BenchConfig
from batchrun.cli import app
from batchrun.config import RunConfig

COMMANDS = ("run", "bench")


def _cli_params(command: str) -> dict[str, object]:
    """Name -> default of the typer command the CLI registered for `command`."""
    info = next(c for c in app.registered_commands if c.name == command)
    assert info.callback is not None
    params = inspect.signature(info.callback).parameters
    return {name: p.default for name, p in params.items() if name != "ctx"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_cli_option_is_a_keyword_with_its_name_and_default(command: str) -> None:
    signature = keywords.signature(command)
    cli = _cli_params(command)
    assert cli, "the CLI command has options"
    for name, default in cli.items():
        assert name in signature.parameters, f"--{name} has no keyword"
        assert signature.parameters[name].default == default, name


def test_python_only_options_are_keywords_too() -> None:
    """api_key is never on argv (ps would show it), but a Python caller passes it."""
    params = keywords.signature("run").parameters
    assert "api_key" in params and "api_key" not in _cli_params("run")
    assert params["api_key"].kind is inspect.Parameter.KEYWORD_ONLY


def test_bench_keywords_have_the_bench_defaults() -> None:
    params = keywords.signature("bench").parameters
    assert (params["max_tokens"].default, params["timeout"].default, params["retries"].default) == (32, 120.0, 0)
    run = keywords.signature("run").parameters
    assert (run["max_tokens"].default, run["timeout"].default, run["retries"].default) == (None, 600.0, 3)


def test_arguments_come_first_and_a_face_may_name_them() -> None:
    plain = list(keywords.signature("run").parameters.values())
    assert plain[0].name == "input" and plain[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    prompts = inspect.Parameter("prompts", inspect.Parameter.POSITIONAL_ONLY, default=None)
    named = keywords.signature("run", [prompts]).parameters
    assert list(named)[0] == "prompts" and "input" not in named


def test_takes_sets_the_signature_help_shows() -> None:
    @keywords.takes("run")
    def fake(*args: object, **options: object) -> int:
        return 0

    shown = inspect.signature(fake)
    assert "max_tokens" in shown.parameters and shown.return_annotation in (int, "int")
    assert "max_tokens: Optional[int] = None" in str(shown) or "max_tokens: int | None = None" in str(shown)


def test_an_unknown_keyword_is_a_type_error_with_the_closest_name() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'max_token'; did you mean 'max_tokens'"):
        keywords.given("run", {"max_token": 5})
    with pytest.raises(TypeError, match=r"'zzzz'$"):
        keywords.given("run", {"zzzz": 5})


def test_only_what_was_given_is_given() -> None:
    """Left-out options and None for a None default are absent: a resumed run keeps its own."""
    assert keywords.given("run", {"model": None, "max_tokens": 8}) == {"max_tokens": 8}
    assert keywords.given("run", {}) == {}


class Answer(pydantic.BaseModel):
    label: str
    score: float


def test_python_values_make_the_config_the_text_form_makes(tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(Answer.model_json_schema()), encoding="utf-8")
    as_text = RunConfig.from_options(
        "run",
        input=str(tmp_path / "p.csv"),
        concurrency="8",
        deadline="1h",
        slice="10s",
        json_schema=schema_file,
        extra_body='{"top_p": 0.5}',
        slo="ttft=500ms,e2e=10s",
        rpm="600",
        out=str(tmp_path / "out"),
        base_url=["http://127.0.0.1:9/v1"],
    )
    as_python = RunConfig.from_options(
        "run",
        **keywords.given(
            "run",
            {
                "input": tmp_path / "p.csv",
                "concurrency": 8,
                "deadline": 3600,
                "slice": 10.0,
                "json_schema": Answer,
                "extra_body": {"top_p": 0.5},
                "slo": {"ttft": 0.5, "e2e": 10.0},
                "rpm": 600,
                "out": PurePath(tmp_path / "out"),
                "base_url": "http://127.0.0.1:9/v1",
            },
        ),
    )
    assert as_python == as_text
    assert as_python.request.json_schema == Answer.model_json_schema()


def test_bench_levels_as_a_list() -> None:
    config = BenchConfig.from_options(
        **keywords.given("bench", {"synthetic": "n=4", "concurrency": [1, 4, 16], "rate": {2.0, 1.0}})
    )
    assert config.concurrencies == (1, 4, 16)
    assert config.rates == (1.0, 2.0)


def test_a_class_that_is_no_model_is_refused() -> None:
    with pytest.raises(TypeError, match="pydantic model class, got the class int"):
        keywords.given("run", {"json_schema": int})


def test_the_declared_options_are_the_only_list() -> None:
    """The keywords are the declarations, in the declared order (nothing kept by hand here)."""
    assert [p for p in keywords.signature("run").parameters] == [o.name for o in options.of("run")]


def test_the_typed_dicts_are_the_declarations() -> None:
    """batchrun/api/typed.py (what type checkers read) is generated; regenerate it when this fails:
    python -m batchrun.api.keywords > batchrun/api/typed.py"""
    from batchrun.api import typed

    assert Path(typed.__file__).read_text(encoding="utf-8") == keywords.typed_source()
    keyword_names = [n for n, p in keywords.signature("run").parameters.items() if p.kind is p.KEYWORD_ONLY]
    assert list(typed.RunOptions.__annotations__) == keyword_names


def test_a_type_is_written_as_source() -> None:
    imports: dict[str, set[str]] = {"typing": set()}
    assert keywords._render(Optional[list[str]], imports) == "list[str] | None"
    assert keywords._render(Union[str, Path, Mapping[str, Any], tuple[int, ...]], imports) == (
        "str | Path | Mapping[str, Any] | tuple[int, ...]"
    )
    assert imports == {"typing": {"Any"}, "pathlib": {"Path"}, "collections.abc": {"Mapping"}}
