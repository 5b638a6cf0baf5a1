"""batchrun.fit() and batchrun.report(): a twin fitted to a real run against the built-in
endpoint, served again with batchrun.serve(like=...); a run's reports rebuilt from its files."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

import batchrun
from batchrun.api.fit import Twin
from batchrun.cli import app
from batchrun.errors import ConfigError
from batchrun.twin.load import read_twin

KNOWN = {"ttft": 0.03, "itl": 0.004, "max_concurrency": 8, "output_tokens_mean": 12.0, "fresh_jitter": True}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 160-row run at 8 in flight against an endpoint with known settings."""
    tmp = tmp_path_factory.mktemp("fit")
    prompts = write_prompts(tmp / "p.csv", 160)
    with batchrun.serve(seed=3, **KNOWN) as url:
        args = ["run", str(prompts), "--base-url", url, "--out", str(tmp / "source"), "-c", "8", "-q"]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tmp / "source"


def test_fit_returns_the_twin_and_writes_nothing_without_out(source: Path, tmp_path: Path) -> None:
    twin = batchrun.fit(source)
    assert isinstance(twin, Twin) and twin.files == [] and list(tmp_path.iterdir()) == []
    assert [s.name for s in twin.model.sources] == [str(source)] and twin.model.levels
    assert twin.headline.startswith("Across ") and twin.comparison.levels
    assert repr(twin).startswith(f"<batchrun.Twin of {source}: levels in flight ")


def test_with_out_it_writes_the_twin_file_and_its_report(source: Path, tmp_path: Path) -> None:
    twin = batchrun.fit([str(source)], out=tmp_path / "twin.json")
    assert twin.files == [tmp_path / "twin.json", tmp_path / "twin.html", tmp_path / "twin.md"]
    assert read_twin(tmp_path / "twin.json") == twin.model
    bare = batchrun.fit(source, out=tmp_path / "bare.json", no_report=True)
    assert bare.files == [tmp_path / "bare.json"]


def test_the_cli_prints_what_the_python_face_fitted(source: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["fit", str(source), "--out", str(tmp_path / "t.json")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    twin = batchrun.fit(source)
    expected = [f"  wrote {tmp_path / name}" for name in ("t.json", "t.html", "t.md")] + [twin.headline]
    assert result.stdout.splitlines() == expected + [f"note: {note}" for note in twin.notes]


def test_a_twin_is_served_from_the_object_or_its_file(source: Path, tmp_path: Path) -> None:
    twin = batchrun.fit(source, out=tmp_path / "twin.json", no_report=True)
    for like in (twin, tmp_path / "twin.json", [str(source)]):
        served = batchrun.serve(like=like)
        with served as url:
            with urllib.request.urlopen(f"{url}/models", timeout=30) as response:
                assert json.loads(response.read())["data"][0]["id"] == (twin.model.model or "batchrun-sim")
            assert served.config.twin == twin.model


def test_bad_sources_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="missing: no such file or directory"):
        batchrun.fit("missing")


def test_report_rebuilds_a_runs_reports_from_its_files(source: Path) -> None:
    (source / "report.md").unlink()
    before = json.loads((source / "summary.json").read_text())
    written = batchrun.report(source)
    assert {source / "report.md", source / "report.html", source / "summary.json"} <= set(written.values())
    assert (source / "report.md").exists() and json.loads((source / "summary.json").read_text()) == before
    with pytest.raises(ConfigError):
        batchrun.report(source / "runs")
