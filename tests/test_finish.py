"""finish.py: a run's end and `batchrun report` are one recipe, so the report a run wrote and the
one `batchrun report` rebuilds from its directory are the same bytes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess

WRITTEN = ("summary.json", "report.md", "report.html", "slices.md", "slices.svg")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _rebuilt_equals_written(out: Path, tmp_path: Path) -> None:
    kept = tmp_path / "as-written"
    shutil.copytree(out, kept)
    result = invoke("report", str(out), "-q")
    assert result.exit_code == 0, result.output
    for name in WRITTEN:
        if (kept / name).exists():
            assert (out / name).read_bytes() == (kept / name).read_bytes(), name


@pytest.fixture(scope="module")
def failing_sim():
    """A fifth of the requests answer 500: a summary with errors, retries and warnings."""
    with SimProcess(SimConfig(fast=True, error_500_rate=0.2, seed=3)) as sim:
        yield sim


def test_report_rebuilds_the_files_a_run_wrote(failing_sim: SimProcess, tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 40)
    result = invoke(
        "run",
        "p.csv",
        "--base-url",
        failing_sim.base_url,
        "--out",
        "o",
        "-q",
        "--retries",
        "0",
        "--slice",
        "1s",
        "--slo",
        "ttft=1s",
        "--price-in",
        "1",
        "--price-out",
        "2",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["counts"]["error"] > 0 and summary["slices"] and summary["cost"] and summary["goodput"]
    _rebuilt_equals_written(tmp_path / "o", tmp_path)


def test_report_rebuilds_the_files_of_a_resumed_and_interrupted_run(fast_sim: SimProcess, tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 30)
    assert invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--limit", "10").exit_code == 0
    result = invoke("run", "--resume", "o", "--base-url", fast_sim.base_url, "-q", "--max-errors", "1")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]["counts"]["ok"] == 30
    _rebuilt_equals_written(tmp_path / "o", tmp_path)


def test_report_rebuilds_the_files_of_a_batch_api_run(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 12)
    result = invoke("run", "p.csv", "--mode", "batch", "--out", "o", "-q", "--builtin-option", "batch_delay_s=0.2")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["batch"]["requests"] == 12
    _rebuilt_equals_written(tmp_path / "o", tmp_path)


def test_report_rebuilds_the_files_of_a_run_with_workers(fast_sim: SimProcess, tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 40)
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--workers", "2")
    assert result.exit_code == 0, result.output
    _rebuilt_equals_written(tmp_path / "o", tmp_path)
