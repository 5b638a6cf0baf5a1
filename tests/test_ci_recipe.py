"""The CI recipe's GitHub Actions workflows (docs/examples/*.yml): they parse, every `batchrun`
command in them exists with those options (parsed by the real CLI), they install this project and
never `batchrun` from the package index, and docs/ci-gate.md shows them as they are."""

from __future__ import annotations

import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import pytest
import typer.main
import yaml
from packaging.requirements import InvalidRequirement, Requirement   # pytest's own dependency

from batchrun.cli import app
from docstext import ROOT, doc_page

WORKFLOWS = sorted((ROOT / "docs" / "examples").glob("*.yml"))
# tomllib is 3.11+; the project line is the first `name = ` of pyproject.toml
PROJECT = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M).group(1)
# The one placeholder a reader replaces: where their copy of batchrun's repository lives.
SOURCE = re.compile(r"^git\+https://github\.com/OWNER/batchrun(\.git)?@[\w.\-/]+$")


def shell_commands(script: str) -> Iterator[str]:
    """The simple commands of a shell script: continuation lines joined, comments dropped, split
    at `&&`, `||` and `;` (enough for the recipe's scripts, which the test would otherwise miss)."""
    joined = re.sub(r"\\\n\s*", " ", script)
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            yield from (part.strip() for part in re.split(r"&&|\|\||;", line) if part.strip())


def run_scripts(workflow: dict[str, Any]) -> Iterator[str]:
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                yield step["run"]


def words(command: str) -> list[str]:
    """The command's words, a GitHub expression (`${{ ... }}`) standing in as one word."""
    return shlex.split(re.sub(r"\$\{\{[^}]*\}\}", "EXPR", command))


def check_batchrun(argv: list[str]) -> str:
    """Parse `batchrun SUB ARGS...` with the real CLI (no callback runs); the subcommand's name.
    An unknown command or option, a missing argument or a bad value raises click's UsageError
    (typer's own copy of click: exit code 2)."""
    assert argv[0] == "batchrun" and len(argv) > 1, argv
    group: Any = typer.main.get_command(app)
    command = group.commands.get(argv[1])
    assert command is not None, f"no command `batchrun {argv[1]}` (commands: {', '.join(group.commands)})"
    with command.make_context(f"batchrun {argv[1]}", argv[2:]):
        pass
    return argv[1]


def check_install(args: list[str]) -> None:
    """pip install's arguments: batchrun from its repository under this project's name (pip then
    checks the name), or a checkout of it (a relative path ending in batchrun, e.g. a submodule)."""
    targets = [w for w in args if not w.startswith("-")]
    assert targets, args
    for target in targets:
        path = PurePosixPath(target)
        if not path.is_absolute() and "@" not in target and ":" not in target and len(path.parts) > 1:
            assert path.name == "batchrun", f"{target!r}: a checkout of batchrun, e.g. tools/batchrun"
            continue
        try:
            req = Requirement(target)
        except InvalidRequirement as exc:
            raise AssertionError(f"{target!r} is not a requirement pip reads: {exc}") from exc
        assert req.name == PROJECT and req.url and SOURCE.match(req.url), \
            f"{target!r}: install batchrun as '{PROJECT} @ git+https://github.com/OWNER/batchrun@<tag>'; " \
            "a bare 'batchrun' is an unrelated project on the package index"


def test_there_are_workflows_to_check():
    assert {p.name for p in WORKFLOWS} >= {"perf.yml", "perf-artifact.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_a_workflow_runs_real_batchrun_commands_and_installs_this_project(path: Path):
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))          # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers and workflow["jobs"]
    used, installs = [], 0
    for script in run_scripts(workflow):
        for command in shell_commands(script):
            argv = words(command)
            if argv[0] == "batchrun":
                used.append(check_batchrun(argv))
            elif "install" in argv and argv[0] in ("pip", "pip3", "python", "python3", "uv"):
                check_install(argv[argv.index("install") + 1:])
                installs += 1
    assert installs == 1 and used == ["bench", "compare"], (installs, used)


@pytest.mark.parametrize("command", [
    "batchrun bench perf/prompts.csv -c 8 --no-such-option",
    "batchrun compare perf/baseline",                           # one side missing
    "batchrun comprae a b",
    "batchrun bench perf/prompts.csv --requests many",
])
def test_the_check_refuses_what_the_cli_would(command: str):
    with pytest.raises(Exception) as refused:
        check_batchrun(words(command))
    assert isinstance(refused.value, AssertionError) or getattr(refused.value, "exit_code", None) == 2, refused.value


def test_a_checkout_or_this_projects_repository_is_accepted():
    check_install(["-e", "tools/batchrun"])
    check_install([f"{PROJECT} @ git+https://github.com/OWNER/batchrun@v0.1.0"])


@pytest.mark.parametrize("line", [
    "pip install batchrun",
    "pip install -e tools/other",
    "pip install 'batchrun[ray]'",
    "pip install batchrun-llm",             # not published by this project: whoever takes the name
    'pip install "batchrun @ git+https://github.com/OWNER/batchrun@v0.1.0"',
    'pip install "batchrun-llm @ git+https://github.com/someone/else@v1"',
])
def test_an_install_from_the_package_index_or_elsewhere_is_refused(line: str):
    with pytest.raises(AssertionError):
        check_install(words(line)[2:])


def test_the_docs_show_each_workflow_as_it_is():
    page = doc_page("ci-gate.md")
    blocks = re.findall(r"```yaml\n(.*?)```", page, flags=re.S)
    for path in WORKFLOWS:
        assert path.read_text(encoding="utf-8") in blocks, f"docs/ci-gate.md does not show {path.name} as it is"
        assert f"examples/{path.name}" in page


def test_the_recipes_shell_commands_parse():
    """The page's other `batchrun` lines (making a baseline locally, comparing) parse too."""
    page = doc_page("ci-gate.md")
    recipe = page[page.index("## CI recipe"):]
    commands = [c for block in re.findall(r"```bash\n(.*?)```", recipe, flags=re.S)
                for c in shell_commands(block) if c.startswith("batchrun ")]
    assert commands
    for command in commands:
        check_batchrun(words(command))
