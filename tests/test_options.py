"""options.py: each option declared once, and what is generated from the declarations (the typer
commands, their --help, the config's defaults, run.json's keys, docs/cli.md) agrees with them."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from batchrun import __version__, options
from batchrun.bench.sweep import BenchConfig
from batchrun.cli import app
from batchrun.config import DEFAULTS, FIELD_GROUP, RunConfig
from batchrun.sim.cli import SERVE_OPTIONS, SERVE_PANELS
from batchrun.sim.config import SimConfig

ROOT = Path(__file__).resolve().parent.parent
OLD_RUN = Path(__file__).parent / "oldruns" / "main-2026-12"
COMMANDS = {
    "run": [],
    "bench": [],
    "report": ["x"],
    "compare": ["a", "b"],
    "serve": [],
    "batch status": ["x"],
    "batch cancel": ["x"],
}


def _declared(command: str) -> list[options.Option]:
    if command == "serve":
        return options.of("serve", SERVE_OPTIONS, SERVE_PANELS)
    return options.of(command)


def _click_command(command: str) -> Any:
    cmd = typer.main.get_command(app)
    for word in command.split():
        cmd = cmd.commands[word]
    return cmd


def _received(command: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the command's function receives when every option is left out (a clean environment)."""
    for name in [n for n in os.environ if n.startswith(("BATCHRUN_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    cmd = _click_command(command)
    ctx = cmd.make_context(command, list(COMMANDS[command]))
    return ctx.params


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_receives_the_declared_default_of_every_option_left_out(command, monkeypatch) -> None:
    received = _received(command, monkeypatch)
    declared = [o for o in _declared(command) if o.cli and not o.argument]
    assert declared and {o.name for o in declared} <= set(received)
    for option in declared:
        value = received[option.name]
        if value == () and option.default is None:  # click's "none given" for a repeatable option
            value = None
        assert value == option.default, option.name


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_shows_each_default_as_declared(command) -> None:
    """--help, read at a width where no line wraps: each option's '[default: X]' is its declaration's."""
    args = [*command.split(), "--help"]
    text = CliRunner().invoke(app, args, env={"TERMINAL_WIDTH": "1000", "COLUMNS": "1000"}).output
    shown = {}
    for line in text.splitlines():
        flag = re.search(r"│\s+(--[a-z0-9-]+)", line)
        default = re.search(r"\[default: ([^\]]+)\]", line)
        if flag and default:
            shown[flag.group(1)] = default.group(1)
    declared = {o.flag: o for o in _declared(command) if o.cli and not o.argument}
    for flag, value in shown.items():
        option = declared[flag]
        if option.type is bool:
            expected = option.name.replace("_", "-") if option.default else f"no-{option.name.replace('_', '-')}"
            assert value in (expected, str(option.default)), flag
        else:
            assert value == str(option.default), flag
    missing = [f for f, o in declared.items() if o.default not in (None, False, ...) and f not in shown]
    assert not missing


def test_no_command_takes_two_options_of_one_name() -> None:
    for command in COMMANDS:
        names = [o.name for o in _declared(command)]
        assert len(names) == len(set(names)), command


def test_the_config_defaults_are_the_declared_ones_parsed() -> None:
    config = RunConfig.of(path=Path("p.csv"))
    flat = config.flat()
    not_options = {"path", "ray", "seed"}  # the given input; --ray's address and seed come from no one option
    assert {k: v for k, v in flat.items() if k not in not_options} == {
        k: v for k, v in DEFAULTS.items() if k not in not_options
    }
    assert flat["concurrency"] == 16 and flat["learn_rpm"] is True and flat["timeout"] == 600.0
    assert set(FIELD_GROUP) == set(flat)


def test_bench_takes_its_own_defaults() -> None:
    bench = BenchConfig.from_options(input=Path("p.csv"))
    run = bench.run
    assert (run.request.max_tokens, run.limits.timeout, run.limits.retries) == (32, 120.0, 0)
    assert run.input.on_bad_row == "skip" and bench.concurrencies == (1, 4, 16, 64)
    assert bench.time_budget_s == 36.0  # the quick default bench, with none of -c, --rate, -n
    given = BenchConfig.from_options(input=Path("p.csv"), concurrency="2,8")
    assert given.concurrencies == (2, 8) and given.time_budget_s is None
    assert bench.max_failure_share == options.named("bench", "max_failure_share").default == 0.01
    with pytest.raises(Exception, match="--no-warmup sends nothing unmeasured"):
        BenchConfig.from_options(input=Path("p.csv"), no_warmup=True, warmup=3)


def test_serve_defaults_are_simconfig_defaults() -> None:
    from batchrun.sim.cli import sim_config

    assert sim_config({}) == SimConfig()
    assert sim_config({"ttft": 0.5, "fault_500": 0.1, "model": ["a", "b"]}) == SimConfig(
        ttft_s=0.5, error_500_rate=0.1, models=("a", "b")
    )


def test_options_given_from_python_take_values_or_text() -> None:
    config = RunConfig.from_options(
        input="p.csv",
        concurrency="auto",
        rpm=600,
        slo={"ttft": 0.5},
        extra_body={"top_p": 0.9},
        base_url=["http://a/v1", "http://b/v1"],
    )
    assert config.input.path == Path("p.csv")
    assert (config.limits.concurrency, config.limits.concurrency_auto) == (256, True)
    assert (config.limits.rpm, config.limits.learn_rpm) == (600.0, False)
    assert config.limits.slo == {"ttft": 0.5} and config.request.extra_body == {"top_p": 0.9}
    assert (config.endpoint.base_url, config.endpoint.extra_base_urls) == ("http://a/v1", ("http://b/v1",))


def test_an_unknown_keyword_is_a_type_error_naming_the_closest_option() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'concurency'; did you mean 'concurrency'\?"):
        RunConfig.from_options(input="p.csv", concurency=4)
    with pytest.raises(TypeError, match="'find_max'"):
        RunConfig.from_options(input="p.csv", find_max=True)  # a bench option, not a run one


def test_the_public_dict_is_keyed_by_option_name_and_reads_back() -> None:
    config = RunConfig.from_options(
        input="p.csv",
        format="jsonl",
        json=True,
        slice="10s",
        deadline="2h",
        builtin_option=["seed=3"],
        api_key="sk-secret-0123456789",
    )
    public = config.public_dict()
    assert public["input"] == "p.csv" and public["format"] == "jsonl" and public["json"] is True
    assert public["slice"] == 10.0 and public["deadline"] == 7200.0 and public["builtin_option"] == ["seed=3"]
    assert "sk-secret" not in json.dumps(public) and public["api_key_set"] is True
    assert not {"path", "fmt", "json_mode", "slice_s", "deadline_s", "builtin_options"} & set(public)
    back = RunConfig.from_public_dict(public, api_key="sk-secret-0123456789")
    assert back == config


def test_a_run_json_written_before_the_grouping_reads_back() -> None:
    saved = json.loads((OLD_RUN / "run.json").read_text())["config"]
    config = RunConfig.from_public_dict(saved)
    assert config.input.path == Path("prompts.csv") and config.input.system == "Be brief."
    assert config.request.max_tokens == 8 and config.output.slice_s == 5.0
    assert config.endpoint.builtin_options == ("seed=3",) and config.control.limit == 2


def test_an_old_run_dir_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run directory written by batchrun before its options were declared once (a pilot of 2
    of 3 rows, --system, --max-tokens 8, --slice 5s): --resume sends the third row with the saved
    settings."""
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    shutil.move(run / "prompts.csv", tmp_path / "prompts.csv")
    saved = json.loads((run / "run.json").read_text())
    saved["input_identity"]["path"] = str((tmp_path / "prompts.csv").resolve())
    (run / "run.json").write_text(json.dumps(saved))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "--resume", "run", "-q"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    third = [r for r in records if r["id"] == "r3"]
    assert len(records) == 3 and third[0]["status"] == "ok"
    assert third[0]["request"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert third[0]["request"]["max_tokens"] == 8
    summary = json.loads((run / "summary.json").read_text())
    assert summary["summary"]["counts"]["ok"] == 3


@pytest.mark.parametrize("command", ["run", "bench", "report", "compare", "serve", "batch status"])
def test_h_is_help_on_every_command(command) -> None:
    result = CliRunner().invoke(app, [*command.split(), "-h"])
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag) -> None:
    result = CliRunner().invoke(app, [flag])
    assert result.exit_code == 0 and result.output.strip() == f"batchrun {__version__}"


def test_run_help_is_grouped_into_panels_in_order() -> None:
    text = CliRunner().invoke(app, ["run", "--help"], env={"TERMINAL_WIDTH": "200", "COLUMNS": "200"}).output
    panels = re.findall(r"╭─ ([A-Za-z -]+?) ─", text)
    assert panels == [
        "Arguments",
        "Options",
        "Input",
        "Endpoint",
        "Request",
        "Limits and retries",
        "Output",
        "Run control",
        "Tools",
        "Scale-out",
    ]


def test_the_cli_reference_is_generated_from_the_command_line() -> None:
    from batchrun.clidoc import markdown

    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == markdown(), (
        "docs/cli.md is stale: python -m batchrun.clidoc > docs/cli.md"
    )


def test_numbers_given_as_text_are_read_as_their_option_takes_them(monkeypatch) -> None:
    for name in [n for n in os.environ if n.startswith("BATCHRUN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BATCHRUN_MAX_TOKENS", "64")
    monkeypatch.setenv("BATCHRUN_RETRIES", "1")
    from batchrun.config import env_options

    given = env_options("run")
    assert given == {"max_tokens": "64", "retries": "1"}
    config = RunConfig.from_options(input="p.csv", **given)
    assert (config.request.max_tokens, config.limits.retries) == (64, 1)
    with pytest.raises(Exception, match="--timeout takes a number, got 'soon'"):
        RunConfig.from_options(input="p.csv", timeout="soon")
