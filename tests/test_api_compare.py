"""batchrun.compare(): the gate's verdict as an object, on run directories written by real runs
against the built-in endpoint (a slow one and a fast one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

import batchrun
from batchrun.cli import app
from batchrun.errors import ConfigError
from batchrun.options import named


def run_dir(tmp: Path, name: str, fixed_ttft: float) -> Path:
    """A 40-row run against a fixed-latency endpoint: every TTFT is `fixed_ttft` plus the wire."""
    prompts = write_prompts(tmp / "prompts.csv", 40)
    with batchrun.serve(fixed_ttft=fixed_ttft, fixed_itl=0.0, output_tokens=4) as url:
        args = ["run", str(prompts), "--base-url", url, "--out", str(tmp / name), "-c", "8", "--quiet"]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tmp / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("runs")
    return {"fast": run_dir(tmp, "fast", 0.01), "fast2": run_dir(tmp, "fast2", 0.01), "slow": run_dir(tmp, "slow", 0.2)}


def test_a_slower_endpoint_is_a_regression_with_its_interval(runs: dict[str, Path]) -> None:
    verdict = batchrun.compare(runs["fast"], runs["slow"], allow_config_change=True)
    assert verdict.failed and not verdict.passed
    ttft = next(c for c in verdict.regressions if c.name == "ttft_p50")
    assert ttft.status == "regressed" and ttft.n_baseline == ttft.n_current == 40
    assert ttft.low is not None and ttft.low > 10  # the whole interval past the 10% tolerance
    assert any(m.startswith("ttft_p50 rose") for m in verdict.messages)
    frame = verdict.frame
    row = frame.set_index("name").loc["ttft_p50"]
    assert row["status"] == "regressed" and row["ci_low"] == ttft.low and row["ci_unit"] == "percent"
    assert list(frame["name"]) == [c.name for c in verdict.changes]
    assert repr(verdict).startswith("<batchrun.Verdict failed:")


def test_str_is_the_clis_text_and_failed_is_its_exit_code(runs: dict[str, Path]) -> None:
    for base, cur in (("fast", "slow"), ("fast", "fast")):
        verdict = batchrun.compare(str(runs[base]), str(runs[cur]), allow_config_change=True)
        args = ["compare", str(runs[base]), str(runs[cur]), "--allow-config-change", "--verbose"]
        cli = CliRunner().invoke(app, args, catch_exceptions=False)
        assert cli.stdout == str(verdict)
        assert cli.exit_code == (1 if verdict.failed else 0)
    assert batchrun.compare(runs["fast"], runs["fast"]).passed


def test_tolerances_as_text_or_a_dict(runs: dict[str, Path]) -> None:
    loose = {"ttft_p50": "100000%", "ttft_p99": "100000%", "latency_p50": "100000%", "latency_p90": "100000%"}
    loose |= {"latency_p99": "100000%", "tpot_p50": "100000%", "itl_p50": "100000%"}
    loose |= {"throughput": "-100%", "output_throughput": "-100%"}
    verdict = batchrun.compare(runs["fast"], runs["slow"], allow_config_change=True, max_regression=loose)
    assert not verdict.regressions
    as_text = ",".join(f"{k}={v}" for k, v in loose.items())
    again = batchrun.compare(runs["fast"], runs["slow"], allow_config_change=True, max_regression=as_text)
    assert [c.status for c in again.changes] == [c.status for c in verdict.changes]
    with pytest.raises(ConfigError, match="--max-regression: .*latency_p77"):
        batchrun.compare(runs["fast"], runs["slow"], max_regression="latency_p77=5%")


def test_fail_on_inconclusive_fails_an_undecided_gate(runs: dict[str, Path]) -> None:
    two_fast = batchrun.compare(runs["fast"], runs["fast2"], allow_config_change=True)
    assert two_fast.undecided, two_fast.changes  # 40 requests a side: a p99 cannot be decided (it needs 435)
    strict = batchrun.compare(runs["fast"], runs["fast2"], allow_config_change=True, fail_on_inconclusive=True)
    assert strict.failed and (two_fast.failed == bool(two_fast.regressions))


def test_endpoints_that_differ_are_refused_unless_allowed(runs: dict[str, Path]) -> None:
    with pytest.raises(batchrun.CompareRefused, match="measured differently") as refused:
        batchrun.compare(runs["fast"], runs["slow"])
    assert isinstance(refused.value, batchrun.BatchrunError)


def test_sides_may_be_summaries_or_results(runs: dict[str, Path], tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.csv", 40)
    with batchrun.serve(fixed_ttft=0.01, fixed_itl=0.0, output_tokens=4) as url:
        run = batchrun.run(prompts, base_url=url, concurrency=8, quiet=True)  # the Python face's Run
    verdict = batchrun.compare(run, runs["fast"], allow_config_change=True)
    # Which verdict two runs of one fixed-latency endpoint get rests on the machine's load (their
    # throughput intervals are narrow); that the Run is read as its directory does not.
    assert verdict.comparison.baseline_label.startswith(str(run.out_dir)) and verdict.changes[0].n_baseline == 40
    summary: Any = json.loads((runs["fast"] / "summary.json").read_text())
    point = batchrun.compare(summary, summary)
    assert point.passed and any("no records" in n for n in point.notes)
    with pytest.raises(TypeError, match="got int"):
        batchrun.compare(3, runs["fast"])


def test_the_keywords_defaults_are_the_declared_ones() -> None:
    import inspect

    for name, parameter in inspect.signature(batchrun.compare).parameters.items():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            assert parameter.default == named("compare", name).default, name
