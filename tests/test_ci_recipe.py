"""The CI recipe's GitHub Actions workflows (docs/examples/*.yml): they parse, every `batchrun`
command in them exists with those options (parsed by the real CLI), they install this project and
never `batchrun` from the package index, and docs/ci-gate.md shows them as they are. (The page's
own shell examples run in tests/test_docs_examples.py.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import pytest
import yaml
from docstext import ROOT, doc_page, parse_command, script_commands
from packaging.requirements import InvalidRequirement, Requirement  # pytest's own dependency

WORKFLOWS = sorted((ROOT / "docs" / "examples").glob("*.yml"))
# tomllib is 3.11+; the project line is the first `name = ` of pyproject.toml
PROJECT = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M).group(1)
# The one placeholder a reader replaces: where their copy of batchrun's repository lives.
SOURCE = re.compile(r"^git\+https://github\.com/OWNER/batchrun(\.git)?@[\w.\-/]+$")


def run_scripts(workflow: dict[str, Any]) -> Iterator[str]:
    """Each `run:` script, a GitHub expression (`${{ ... }}`) standing in as one word."""
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                yield re.sub(r"\$\{\{[^}]*\}\}", "EXPR", step["run"])


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
        assert req.name == PROJECT and req.url and SOURCE.match(req.url), (
            f"{target!r}: install batchrun as '{PROJECT} @ git+https://github.com/OWNER/batchrun@<tag>'; "
            "a bare 'batchrun' is an unrelated project on the package index"
        )


def test_there_are_workflows_to_check():
    assert {p.name for p in WORKFLOWS} >= {"perf.yml", "perf-artifact.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_a_workflow_runs_real_batchrun_commands_and_installs_this_project(path: Path):
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers and workflow["jobs"]
    used, installs = [], 0
    for script in run_scripts(workflow):
        for argv in script_commands(script):
            if argv[0] == "batchrun":
                used.append(parse_command(argv[1:]).removeprefix("batchrun "))
            elif "install" in argv and argv[0] in ("pip", "pip3", "python", "python3", "uv"):
                check_install(argv[argv.index("install") + 1 :])
                installs += 1
    assert installs == 1 and used == ["bench", "compare"], (installs, used)


def test_a_checkout_or_this_projects_repository_is_accepted():
    check_install(["-e", "tools/batchrun"])
    check_install([f"{PROJECT} @ git+https://github.com/OWNER/batchrun@v0.1.0"])


@pytest.mark.parametrize(
    "line",
    [
        "pip install batchrun",
        "pip install -e tools/other",
        "pip install 'batchrun[ray]'",
        "pip install batchrun-llm",  # not published by this project: whoever takes the name
        'pip install "batchrun @ git+https://github.com/OWNER/batchrun@v0.1.0"',
        'pip install "batchrun-llm @ git+https://github.com/someone/else@v1"',
    ],
)
def test_an_install_from_the_package_index_or_elsewhere_is_refused(line: str):
    with pytest.raises(AssertionError):
        check_install(shlex.split(line)[2:])


def test_the_docs_show_each_workflow_as_it_is():
    page = doc_page("ci-gate.md")
    blocks = re.findall(r"```yaml\n(.*?)```", page, flags=re.S)
    for path in WORKFLOWS:
        assert path.read_text(encoding="utf-8") in blocks, f"docs/ci-gate.md does not show {path.name} as it is"
        assert f"examples/{path.name}" in page
