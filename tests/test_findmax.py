"""bench/findmax.py: the search on scripted probes, the verdict on literal records, and
`bench --find-max` end to end against the built-in endpoint with a sharp knee."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.bench.findmax import FindMaxResult, Probe, format_find_max, judge, probe_requests, search
from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess
from batchrun.store.records import Record


def scripted(max_ok: int, asked: list[int]):
    async def probe(c: int) -> Probe:
        asked.append(c)
        return Probe(c, 100, 100, float(c), None, None, None, None, meets=c <= max_ok, close_call=False)

    return probe


@pytest.mark.parametrize("max_ok, expected, bracket", [(13, 13, 14), (16, 16, 17), (1, 1, 2), (100, 100, 101)])
async def test_doubling_then_bisection_finds_the_highest_passing_level(
    max_ok: int, expected: int, bracket: int
) -> None:
    asked: list[int] = []
    found = await search(scripted(max_ok, asked), start=1, ceiling=1024, resolution=0.0)
    assert (found.best, found.first_failing) == (expected, bracket)
    doublings = [c for c in asked if c & (c - 1) == 0]
    assert asked[: len(doublings)] == doublings  # doubling first
    assert len(asked) <= 2 * (max_ok.bit_length() + 1)  # then bisection: logarithmic


async def test_resolution_stops_the_bisection_early() -> None:
    asked: list[int] = []
    found = await search(scripted(300, asked), start=1, ceiling=1024, resolution=0.1)
    assert found.first_failing is not None and found.best is not None
    assert found.first_failing - found.best <= max(1, int(found.best * 0.1)) and found.best <= 300


async def test_nothing_passes_and_the_ceiling_passes() -> None:
    assert (await search(scripted(0, []), start=2)).best is None
    found = await search(scripted(10_000, []), start=1, ceiling=64)
    assert (found.best, found.first_failing) == (64, None)


def ok(ttft: float, latency: float) -> Record:
    return Record(id="x", row=0, status="ok", ttft_s=ttft, latency_s=latency)


def test_judge_uses_the_sweeps_p99_rule() -> None:
    records = [ok(0.1, 1.0)] * 98 + [ok(0.3, 1.0), ok(0.9, 5.0)]
    verdict = judge(8, records, wall_s=10.0, slo={"ttft": 0.5})
    # p99 of 100 ascending values: between the 99th (0.3) and 100th (0.9): 0.3 + 0.6 * 0.01.
    assert verdict.ttft_p99_s == pytest.approx(0.306) and verdict.meets and verdict.requests_per_s == 10.0
    assert not judge(8, records, wall_s=10.0, slo={"ttft": 0.3}).meets
    failed = [Record(id="e", row=0, status="error")] * 3
    assert not judge(8, failed, wall_s=1.0, slo={"ttft": 0.5}).meets  # nothing ok: not met


def test_a_probe_with_failures_misses_however_fast_its_successes() -> None:
    # 55 fast successes, 45 failures: p99 TTFT 0.1 s is well within the SLO, 45% failed is not.
    records = [ok(0.1, 1.0)] * 55 + [Record(id="e", row=0, status="error")] * 45
    probe = judge(4, records, wall_s=10.0, slo={"ttft": 0.5})
    assert not probe.meets and probe.why == "45/100 failed (45%), over the 1% allowed"
    assert judge(4, records, wall_s=10.0, slo={"ttft": 0.5}, max_failure_share=0.5).meets
    assert "misses (45/100 failed (45%), over the 1% allowed)" in format_find_max(
        FindMaxResult(None, 4, [probe]), {"ttft": 0.5}
    )


def test_a_p99_interval_is_the_order_statistic_one_and_the_bound_inside_it_is_a_close_call() -> None:
    values = [i / 1000 for i in range(1, 1001)]  # 0.001 .. 1.000
    close = judge(1, [ok(t, 1.0) for t in values], wall_s=1.0, slo={"ttft": 0.99})
    # stats.quantile_ci of 1,000 values at p99: ranks 983 and 997, each tail of Binomial(1000, 0.99)
    # outside them <= 2.5%
    assert close.ttft_p99_ci == (0.983, 0.997) and close.close_call  # p99 0.990: the bound is inside


def test_a_probe_too_small_for_a_p99_interval_claims_none() -> None:
    # 120 requests: the largest value lies below the true p99 with probability 0.99^120 = 30%, so an
    # interval ending there would be a 70% interval called 95% (simulated: 69% at 120, 61% at 100).
    records = [ok(0.1 + i / 1000, 0.5 + i / 1000) for i in range(120)]
    probe = judge(8, records, wall_s=10.0, slo={"ttft": 0.3, "e2e": 0.6})
    assert probe.ttft_p99_ci is None and probe.latency_p99_ci is None
    assert not probe.close_call and not probe.meets  # p99 latency 0.618 s > 0.6 s, no doubt claimed


def test_probe_size() -> None:
    assert probe_requests(64, 1) == 100 and probe_requests(64, 64) == 256 and probe_requests(500, 8) == 500


def test_find_max_end_to_end(tmp_path: Path) -> None:
    # Four decoding slots, no jitter: TTFT 60 ms up to 4 in flight; past it a request waits for a
    # slot (+72 ms). The SLO sits 30-40 ms from both, so a loaded machine's overhead cannot move the answer.
    config = SimConfig(
        ttft_s=0.06, itl_s=0.003, output_tokens=4, max_concurrency=4, jitter=0.0, prefill_s_per_token=0.0
    )
    prompts = write_prompts(tmp_path / "p.csv", 10)
    with SimProcess(config) as sim:
        result = CliRunner().invoke(
            app,
            [
                "bench",
                str(prompts),
                "--base-url",
                sim.base_url,
                "--find-max",
                "--slo",
                "ttft=90ms",
                "--out",
                "fm",
                "-n",
                "40",
                "-c",
                "2",
            ],
            catch_exceptions=False,
        )
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "fm" / "find_max.json").read_text())
    assert found["best_concurrency"] == 4 and found["first_failing_concurrency"] == 5
    assert "Highest load meeting the SLO (ttft<=90 ms): concurrency 4" in result.output
    assert (tmp_path / "fm" / "report.html").exists()
    assert (
        "Warm-up: 10 prompts sent once before measuring (2 at a time, max_tokens 1), not measured; each run "
        "also opened its connections with one unmeasured wave" in (tmp_path / "fm" / "report.md").read_text()
    )


def test_find_max_needs_an_slo(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", 1)
    result = CliRunner().invoke(app, ["bench", str(prompts), "--find-max"])
    assert result.exit_code == 2 and "--find-max needs --slo" in result.output


# A built-in endpoint of 2 slots, ~12 ms a request, no jitter: a find-max ends in a few probes.
TINY_SIM = [
    a
    for opt in (
        "ttft_s=0.01",
        "itl_s=0.001",
        "output_tokens=2",
        "max_concurrency=2",
        "jitter=0",
        "prefill_s_per_token=0",
    )
    for a in ("--builtin-option", opt)
]


def test_a_find_max_given_no_prompts_measures_the_bundled_sample_and_says_so(tmp_path: Path) -> None:
    args = ["bench", "--find-max", "--slo", "ttft=15ms", "-c", "2", "--out", "fm", "-q", *TINY_SIM]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "no prompts given: benching the built-in sample of 44 prompts" in result.stderr


def test_find_max_reports_carry_the_simulated_banner_and_the_endpoint(tmp_path: Path) -> None:
    """A find-max against the built-in endpoint says so as a run report does: the SIMULATED banner
    in report.md and report.html, and summary.json's endpoint block (it was null)."""
    prompts = write_prompts(tmp_path / "p.csv", 4)
    result = CliRunner().invoke(
        app,
        ["bench", str(prompts), "--find-max", "--slo", "ttft=15ms", "-c", "2", "--out", "fm", "-q", *TINY_SIM],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "fm"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["endpoint"] == {"kind": "builtin", "base_url": None, "model": "batchrun-sim"}
    assert summary["builtin_endpoint"]["max_concurrency"] == 2  # the settings it measured
    assert summary["config"]["slo"] == {"ttft": 0.015}
    for name in ("report.md", "report.html"):
        assert "SIMULATED ENDPOINT" in (out / name).read_text(), name
    # The reports lead with find-max's own answer, the console's first line; a rebuild keeps it.
    answer = result.stdout.splitlines()[0]
    assert answer.startswith(("Highest load meeting the SLO (ttft<=15 ms): concurrency ", "No concurrency met the SLO"))
    assert (out / "report.md").read_text().split("\n\n")[1:3] == ["## Answer", answer]
    assert CliRunner().invoke(app, ["report", "fm", "-q"]).exit_code == 0
    assert (out / "report.md").read_text().split("\n\n")[1:3] == ["## Answer", answer]
