"""compare.py on crafted summaries: regression, improvement, within tolerance, missing, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchrun.analysis.compare import (
    FIGURES,
    CompareRefused,
    Tolerance,
    compare,
    figure_name,
    parse_tolerances,
)
from batchrun.analysis.metrics import summarize
from batchrun.errors import ConfigError
from batchrun.report.compare import format_comparison
from batchrun.report.summary import write_reports
from batchrun.store.records import Record, RecordSink

approx = pytest.approx


def dist(p50: float | None, p90: float | None = None, p99: float | None = None) -> dict:
    return {"count": 0 if p50 is None else 10, "p50": p50, "p90": p90, "p99": p99}


def crafted(
    *,
    rps: float = 10.0,
    tok: float = 500.0,
    lat: tuple = (1.0, 1.5, 2.0),
    ttft: tuple = (0.2, 0.5),
    tpot: float | None = 0.02,
    itl: float | None = 0.02,
    ok: int = 98,
    attempted: int = 100,
) -> dict:
    """The part of a summary dict that compare reads, with round numbers."""
    return {
        "counts": {"ok": ok, "attempted": attempted},
        "success_rate": ok / attempted,
        "throughput": {"requests_per_s": rps, "output_tokens_per_s": tok},
        "latency_s": dist(*lat),
        "ttft_s": dist(ttft[0], None, ttft[1]),
        "tpot_s": dist(tpot),
        "itl_s": dist(itl),
        "goodput": None,
    }


def change(cmp, name):
    return next(c for c in cmp.changes if c.name == name)


# ---------------------------------------------------------------- tolerances


def test_parse_tolerances():
    tols = parse_tolerances("p99_latency=10%, ttft_p50=10%,throughput=-5%,errors=3,failure_share=2pt")
    assert tols == {
        "latency_p99": Tolerance(10, True),
        "ttft_p50": Tolerance(10, True),
        "throughput": Tolerance(5, True),
        "errors": Tolerance(3, False),
        "failure_share": Tolerance(0.02, False),
    }
    # a share's bound in points or as a fraction; success_rate=-N (the name before) is failure_share=N
    assert (
        parse_tolerances("failure_share=0.02")
        == parse_tolerances("success_rate=-2pt")
        == {"failure_share": Tolerance(0.02, False)}
    )
    assert parse_tolerances("latency_p50=0%,throughput=0%") == {
        "latency_p50": Tolerance(0, True),
        "throughput": Tolerance(0, True),
    }
    assert parse_tolerances("") == {}


@pytest.mark.parametrize(
    "text, match",
    [
        ("latency=10%", "unknown figure 'latency'; valid names: throughput, output_throughput, latency_p50"),
        ("throughput=5%", "higher-is-better.*throughput=-5%"),
        ("latency_p99=-10%", "lower-is-better.*latency_p99=10%"),
        ("latency_p99", "write FIGURE=N%"),
        ("latency_p99=ten%", "write FIGURE=N%"),
        ("latency_p99=10%,p99_latency=20%", "given twice"),
        ("latency_p99=2pt", "not a share.*latency_p99=2%"),
        ("failure_share=-1pt", "lower-is-better.*failure_share=1pt"),
        ("success_rate=0.05", "success_rate is higher-is-better.*success_rate=-0.05"),
        ("failure_share=2", "would allow 200 points.*failure_share=2pt"),
    ],
)
def test_bad_tolerances_are_refused_clearly(text, match):
    with pytest.raises(ValueError, match=match):
        parse_tolerances(text)


def test_figure_names_accept_percentile_first_spelling():
    assert figure_name("P90_Latency") == "latency_p90"
    assert set(FIGURES) >= {
        "throughput",
        "output_throughput",
        "latency_p50",
        "latency_p90",
        "latency_p99",
        "ttft_p50",
        "ttft_p99",
        "tpot_p50",
        "itl_p50",
        "failure_share",
        "errors",
    }
    assert figure_name("success_rate") == "failure_share"


# ---------------------------------------------------------------- verdicts


def test_regression_past_tolerance_is_named():
    cmp = compare(crafted(), crafted(lat=(1.0, 1.5, 2.5)), "latency_p99=10%")
    c = change(cmp, "latency_p99")
    assert (c.change, c.change_pct, c.status) == (approx(0.5), approx(25.0), "regressed")
    assert cmp.regressions == [
        "latency_p99 rose 25.0% (2.00 s -> 2.50 s), no interval (point values), past the tolerance +10% (n=10/10)"
    ]
    assert not cmp.statistical and "point comparison" in cmp.notes[-1]
    assert not cmp.passed


def test_throughput_fall_past_negative_tolerance():
    cmp = compare(crafted(rps=10.0), crafted(rps=9.4), "throughput=-5%")
    assert change(cmp, "throughput").status == "regressed"
    assert cmp.regressions == [
        "throughput fell 6.0% (10.00 -> 9.40), no interval (point values), past the tolerance -5% (n=100/100)"
    ]
    assert compare(crafted(rps=10.0), crafted(rps=9.6), "throughput=-5%").passed


def test_improvement_passes():
    cmp = compare(crafted(), crafted(rps=12.0, lat=(0.8, 1.2, 1.6)), "latency_p99=10%,throughput=-5%")
    assert change(cmp, "latency_p99").status == "improved" and change(cmp, "throughput").status == "improved"
    assert change(cmp, "throughput").change_pct == approx(20.0)
    assert cmp.passed and cmp.regressions == []


def test_exactly_at_tolerance_is_within():
    # 2.0 -> 2.2 is +10% up to float rounding: not past the tolerance, so unchanged (never "worse")
    cmp = compare(crafted(), crafted(lat=(1.0, 1.5, 2.2)), "latency_p99=10%")
    assert change(cmp, "latency_p99").status == "unchanged" and cmp.passed


def test_a_figure_without_a_tolerance_is_shown_but_not_gated():
    cmp = compare(crafted(), crafted(ttft=(0.4, 0.5)))
    assert change(cmp, "ttft_p50").status == "not gated" and change(cmp, "ttft_p50").change_pct == approx(100)
    assert cmp.passed
    # The CLI starts from the default tolerances (docs/ci-gate.md), so a bare `compare A B` gates.
    assert not compare(crafted(), crafted(ttft=(0.4, 0.5)), defaults=True).passed


def test_missing_figure_fails_only_when_a_tolerance_names_it():
    current = crafted(tpot=None)  # e.g. every answer was a single token
    c = change(compare(crafted(), current), "tpot_p50")
    assert (c.status, c.baseline, c.current) == ("missing", 0.02, None)
    assert compare(crafted(), current).passed
    cmp = compare(crafted(), current, "tpot_p50=10%")
    assert cmp.regressions == ["tpot_p50: missing in the current run (the tolerance +10% names it; n=10/0)"]


def test_absolute_tolerance_and_zero_baseline():
    base = crafted(ok=100, attempted=100)  # 0 errors
    assert compare(base, crafted(ok=98), "errors=3").passed  # +2 <= 3
    assert not compare(base, crafted(ok=95), "errors=3").passed  # +5 > 3
    cmp = compare(base, crafted(ok=99), "errors=0%")  # any rise from 0 is past a %
    assert change(cmp, "errors").change_pct is None and not cmp.passed
    assert not compare(base, crafted(ok=90), "failure_share=1pt").passed  # 0 -> 10 failed of 100


def test_goodput_is_compared_only_when_present():
    names = [c.name for c in compare(crafted(), crafted()).changes]
    assert "goodput" not in names
    with_goodput = {**crafted(), "goodput": {"requests_per_s": 8.0}}
    cmp = compare(with_goodput, {**crafted(), "goodput": {"requests_per_s": 6.0}}, "goodput=-10%")
    assert change(cmp, "goodput").status == "regressed"


def test_format_comparison_text_and_markdown():
    cmp = compare(crafted(), crafted(lat=(1.0, 1.5, 2.5)), "latency_p99=10%")
    text = format_comparison(cmp)
    assert "latency_p99" in text and "+25.0%" in text and "regressed:" in text
    head = next(line for line in text.splitlines() if line.startswith("figure"))
    assert head.split() == [
        "figure",
        "baseline",
        "current",
        "change",
        "95%",
        "interval",
        "tolerance",
        "n",
        "(base/cur)",
        "verdict",
    ]
    md = format_comparison(cmp, "md")
    assert "| latency_p99 | 2.00 s | 2.50 s | +25.0% | - | +10% | 10/10 | regressed |" in md
    assert "**batchrun compare: failed: latency_p99**" in md
    assert "no figure regressed" in format_comparison(compare(crafted(), crafted()), "md")
    with pytest.raises(ValueError, match="unknown format"):
        format_comparison(cmp, "html")


def test_signs_and_units_of_tolerances():
    cmp = compare(crafted(ok=100), crafted(rps=9.0, ok=90), "throughput=-5%,failure_share=1pt,latency_p99=0.1")
    md = format_comparison(cmp, "md")
    assert "| throughput | 10.00 | 9.00 | -10.0% | - | -5% | 100/100 | regressed |" in md
    # summaries alone: the failure share still has its interval, from the counts (worked out in
    # test_failure_share_is_judged_by_newcombes_interval_of_the_rise)
    assert "| failure_share | 0.0% | 10.0% | +10.0 pt | [+4.2 pt, +17.4 pt] | +1 pt | 100/100 | regressed |" in md
    assert "| latency_p99 | 2.00 s | 2.00 s | +0.0% | - | +100 ms | 10/10 | unchanged |" in md


# ---------------------------------------------------------------- loading


def _ok(id: str, latency: float) -> Record:
    return Record(
        id=id,
        row=0,
        sent_s=0.0,
        end_s=latency,
        ttft_s=0.1,
        latency_s=latency,
        total_s=latency,
        itl_s=[latency - 0.1],
        completion_tokens=2,
        prompt_tokens=1,
    )


def test_compare_run_directories(tmp_path: Path):
    base, cur = tmp_path / "base", tmp_path / "cur"
    base_records = [_ok("a", 1.0)]
    write_reports(base, summarize(base_records), base_records)  # summary.json only
    with RecordSink(cur / "records.jsonl") as sink:  # records only
        sink.write(_ok("a", 1.5))
    cmp = compare(base, cur, "latency_p50=10%")
    assert change(cmp, "latency_p50").change_pct == approx(50.0) and not cmp.passed
    assert not cmp.statistical  # one request a side, and the baseline has no records
    assert compare(base / "summary.json", json.loads((base / "summary.json").read_text())).passed


def test_a_bench_without_headline_must_name_a_run(tmp_path: Path):
    (tmp_path / "summary.json").write_text(json.dumps({"schema_version": 1, "kind": "bench", "summary": None}))
    with pytest.raises(CompareRefused, match="runs/<name>"):
        compare(tmp_path, tmp_path)


def test_unreadable_source(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        compare(tmp_path / "nope.json", tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="no records.jsonl"):
        compare(tmp_path, tmp_path)


# ---------------------------------------------------------------- distributions, not points

from simruns import simulated_run  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from batchrun.analysis.compare import side_of_records  # noqa: E402
from batchrun.cli import app  # noqa: E402


def test_identical_configurations_rarely_raise_a_false_alarm():
    """40 pairs of runs drawn from one noisy distribution (100 requests each): the point
    comparison flagged a regression in about a fifth of them; the interval verdicts at the default
    tolerances in at most 5%."""
    alarms = point_alarms = 0
    for i in range(40):
        a, b = simulated_run(2 * i, jitter=0.5), simulated_run(2 * i + 1, jitter=0.5)
        alarms += not compare(side_of_records(a), side_of_records(b), defaults=True).passed
        point_alarms += not compare(summarize(a), summarize(b), "latency_p99=10%,ttft_p50=10%,throughput=-5%").passed
    assert alarms <= 2
    assert point_alarms >= 8  # what the old gate did with the docs' former example tolerances


def test_a_real_20_percent_ttft_regression_is_detected():
    hits = 0
    for i in range(40):
        base, slow = simulated_run(i, n=200), simulated_run(500 + i, n=200, ttft_s=0.30)
        cmp = compare(side_of_records(base), side_of_records(slow), defaults=True, figures=["ttft_p50"])
        hits += cmp.changes[0].status == "regressed"
    assert hits >= 38  # >= 95%


def _sized_run(seed: int, **model) -> list:
    """A simulated run grown as bench sizes a level given with -c (by its spread): 100 requests,
    then 25 more while compare's p50 interval against an identical run would be wider than ±4%,
    at most 400."""
    from batchrun.bench.sizing import TARGET_HALF_WIDTH, level_half_width
    from batchrun.bench.sweep import MAX_FACTOR, MIN_REQUESTS

    n = MIN_REQUESTS
    while n < MAX_FACTOR * MIN_REQUESTS and level_half_width(simulated_run(seed, n=n, **model)) > TARGET_HALF_WIDTH:
        n += MIN_REQUESTS // 4
    return simulated_run(seed, n=n, **model)


def test_the_default_sample_size_detects_a_20_percent_regression():
    """With the built-in endpoint's bench noise (jitter 0.2): 100 requests a side caught a 20%
    TTFT regression in fewer than 95% of pairs; the sizing by spread catches it in >= 95%, and
    sizes by spread (a quiet endpoint stops at 100)."""
    hits = at_100 = 0
    sizes = []
    for i in range(40):
        base, slow = _sized_run(i, jitter=0.2), _sized_run(500 + i, jitter=0.2, ttft_s=0.30)
        sizes += [len(base), len(slow)]
        hits += (
            change(
                compare(side_of_records(base), side_of_records(slow), defaults=True, figures=["ttft_p50"]), "ttft_p50"
            ).status
            == "regressed"
        )
        small = compare(side_of_records(base[:100]), side_of_records(slow[:100]), defaults=True, figures=["ttft_p50"])
        at_100 += change(small, "ttft_p50").status == "regressed"
    assert hits >= 38 and at_100 < 38
    assert 125 <= min(sizes) and max(sizes) <= 300
    assert len(_sized_run(1, jitter=0.02)) == 100


def test_verdicts_and_how_many_more_requests_would_settle_it():
    base = side_of_records(simulated_run(1, n=40))
    slightly = side_of_records(simulated_run(2, n=40, ttft_s=0.275))  # +10%: right at the tolerance
    c = change(compare(base, slightly, defaults=True), "ttft_p50")
    assert c.status == "inconclusive" and c.method == "Hodges-Lehmann" and (c.n_baseline, c.n_current) == (40, 40)
    assert c.low < 10 < c.high and c.more_requests is None or c.more_requests > 0
    p99 = change(compare(base, slightly, defaults=True), "latency_p99")
    assert p99.status == "inconclusive" and p99.more_requests == 435 - 40  # no p99 interval below 435 a side
    faster = side_of_records(simulated_run(3, n=200, ttft_s=0.15))
    assert (
        change(compare(side_of_records(simulated_run(4, n=200)), faster, defaults=True), "ttft_p50").status
        == "improved"
    )
    same = compare(side_of_records(simulated_run(5, n=200)), side_of_records(simulated_run(6, n=200)), defaults=True)
    assert change(same, "ttft_p50").status == "unchanged" and change(same, "throughput").status == "unchanged"


def _write_run(path: Path, records: list, *, reports: bool = False, **config) -> Path:
    """A run directory: records.jsonl and summary.json (report.md / .html only when asked: plots are slow)."""
    from batchrun import __version__
    from batchrun.store.fingerprint import input_identity

    with RecordSink(path / "records.jsonl") as sink:
        for r in records:
            sink.write(r)
    cfg = {"model": "m", "max_tokens": 32, "concurrency": 8, "input": None, **config}
    if reports:
        write_reports(path, summarize(records), records, config=cfg)
    else:
        (path / "summary.json").write_text(
            json.dumps(
                {
                    "schema_version": 1,
                    "kind": "run",
                    "summary": summarize(records),
                    "config": cfg,
                    "batchrun_version": __version__,
                    "input": input_identity(cfg["input"]),
                }
            )
        )
    return path


def invoke(*args: str, **env: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env=env or None)


def test_cli_compares_run_directories_with_intervals(tmp_path: Path):
    a = _write_run(tmp_path / "a", simulated_run(1, n=200))
    b = _write_run(tmp_path / "b", simulated_run(2, n=200, ttft_s=0.30))
    result = invoke("compare", str(a), str(b))
    assert result.exit_code == 1
    assert "ttft_p50 rose" in result.output and "95% interval" in result.output
    assert "200/200" in result.output  # every row shows n
    c = _write_run(tmp_path / "c", simulated_run(3, n=200))
    same = invoke("compare", str(a), str(c))
    assert same.exit_code == 0 and same.output == ""  # silent on a pass
    verbose = invoke("compare", str(a), str(c), "--verbose")
    assert verbose.exit_code == 0 and "batchrun compare: passed: no figure regressed" in verbose.output
    assert "| " not in verbose.output and "200/200" in verbose.output  # the whole table


def test_cli_output_formats_and_the_step_summary(tmp_path: Path):
    import xml.etree.ElementTree as ET

    a = _write_run(tmp_path / "a", simulated_run(1, n=60))
    b = _write_run(tmp_path / "b", simulated_run(2, n=60, ttft_s=0.40))
    doc = json.loads(invoke("compare", str(a), str(b), "--format", "json").stdout)
    ttft = next(f for f in doc["figures"] if f["name"] == "ttft_p50")
    assert not doc["passed"] and ttft["status"] == "regressed" and ttft["interval"]["low"] > 10
    suite = ET.fromstring(invoke("compare", str(a), str(b), "--format", "junit").stdout)
    assert int(suite.get("failures")) >= 1 and suite.find("testcase[@name='ttft_p50']/failure") is not None
    gh = invoke("compare", str(a), str(b), "--format", "github").stdout
    assert any(line.startswith("::error title=batchrun compare: regression::ttft_p50 rose") for line in gh.splitlines())
    summary_file = tmp_path / "step.md"
    invoke("compare", str(a), str(b), "-q", GITHUB_STEP_SUMMARY=str(summary_file))
    assert "| ttft_p50 |" in summary_file.read_text()


def test_fail_on_inconclusive(tmp_path: Path):
    a = _write_run(tmp_path / "a", simulated_run(1, n=40))
    b = _write_run(tmp_path / "b", simulated_run(2, n=40))
    assert invoke("compare", str(a), str(b)).exit_code == 0  # p99 cannot be decided from 40
    strict = invoke("compare", str(a), str(b), "--fail-on-inconclusive")
    assert strict.exit_code == 1 and "batchrun compare: failed: undecided with --fail-on-inconclusive" in strict.output
    assert "latency_p99 " in strict.output and "(n=40/40, needs 435 a side)" in strict.output


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "content, match",
    [
        ("{}", "empty"),
        ('{"schema_version": 99, "kind": "run", "summary": {}}', "schema version 99"),
        ('{"schema_version": 1, "kind": "run", "summary": {"counts": {}}}', "not a batchrun summary"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_what_cannot_be_compared_is_refused_with_exit_2(tmp_path: Path, content, match):
    good = _write_run(tmp_path / "good", simulated_run(1, n=20))
    (tmp_path / "bad.json").write_text(content)
    for args in (["bad.json", str(good)], [str(good), "bad.json"]):
        result = invoke("compare", *args)
        assert result.exit_code == 2 and match in result.output, result.output
        assert "Traceback" not in result.output


def test_configuration_differences_are_refused_unless_allowed(tmp_path: Path):
    a = _write_run(tmp_path / "a", simulated_run(1, n=50), max_tokens=32)
    b = _write_run(tmp_path / "b", simulated_run(2, n=50), max_tokens=None)
    refused = invoke("compare", str(a), str(b))
    assert refused.exit_code == 2 and "max_tokens: 32 -> unknown/none" in refused.output
    assert "--allow-config-change" in refused.output
    allowed = invoke("compare", str(a), str(b), "--allow-config-change", "-v")
    assert allowed.exit_code == 0 and "config changed (allowed): max_tokens" in allowed.output
    gh = invoke("compare", str(a), str(b), "--allow-config-change", "--format", "github").output
    assert "::warning title=batchrun compare: configuration changed (allowed)::max_tokens: 32 -> unknown/none" in gh


def test_simulated_against_real_is_a_difference_and_an_unknown_endpoint_is_said(tmp_path: Path):
    records = simulated_run(1, n=20)
    sim = {
        "schema_version": 1,
        "kind": "run",
        "summary": summarize(records),
        "config": {"model": "m"},
        "endpoint": {"kind": "builtin", "base_url": None, "model": "m"},
    }
    real = {**sim, "endpoint": {"kind": "remote", "base_url": "https://x/v1", "model": "m"}}
    unknown = {k: v for k, v in sim.items() if k != "endpoint"}
    with pytest.raises(CompareRefused, match="builtin -> remote"):
        compare(sim, real, allow_config_change=False)
    with pytest.raises(CompareRefused, match="unknown on the current side"):
        compare(sim, unknown, allow_config_change=False)
    assert "simulated or real is unknown on both sides" in " ".join(compare(unknown, unknown).notes)


def test_summaries_name_the_batchrun_version_and_input(tmp_path: Path):
    from batchrun import __version__

    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt\nhi\n")
    _write_run(tmp_path / "a", simulated_run(1, n=5), input=str(prompts), reports=True)
    doc = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert doc["batchrun_version"] == __version__
    assert doc["input"]["name"] == "p.csv" and len(doc["input"]["sha256"]) == 64
    prompts.write_text("prompt\nbye\n")
    _write_run(tmp_path / "b", simulated_run(1, n=5), input=str(prompts))
    with pytest.raises(CompareRefused, match="input"):
        compare(tmp_path / "a", tmp_path / "b", allow_config_change=False)
    other = {**doc, "batchrun_version": "0.0.1"}
    with pytest.raises(CompareRefused, match="batchrun version: 0.0.1"):
        compare(other, doc, allow_config_change=False)


# ---------------------------------------------------------------- the failure share


def with_failures(records: list, k: int) -> list:
    """The first k records turned into failed requests (HTTP 500), the rest as they were."""
    import dataclasses

    return [
        dataclasses.replace(
            r,
            status="error",
            error_type="http_500",
            error="HTTP 500",
            ttft_s=None,
            latency_s=None,
            itl_s=None,
            completion_tokens=None,
        )
        if i < k
        else r
        for i, r in enumerate(records)
    ]


def counts(failed: int, n: int, cancelled: int = 0) -> dict:
    return crafted(ok=n - failed - cancelled, attempted=n) | {
        "counts": {"ok": n - failed - cancelled, "attempted": n, "cancelled": cancelled, "finished": n - cancelled}
    }


# Wilson's 95% interval of k/n (z = 1.95996): centre (p + z²/2n) / (1 + z²/n), half-width
# z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n). For 0 of 200 it is [0, z²/(n + z²)] = [0, 0.018845];
# for 8 of 200, p = 0.04: centre 0.048669, half 0.028263, so [0.020406, 0.076932]; for 7 of 200,
# [0.017056, 0.070471]. Newcombe's interval of the rise p2 - p1 (baseline 0 of 200, p1 = 0, l1 = 0):
#   low  = (p2 - p1) - sqrt((p2 - l2)² + (u1 - p1)²)     high = (p2 - p1) + sqrt((u2 - p2)² + (p1 - l1)²)
#   8 of 200: 0.04  - sqrt(0.019594² + 0.018845²) = 0.012814;  0.04 + 0.036932 = 0.076932
#   7 of 200: 0.035 - sqrt(0.017944² + 0.018845²) = 0.008978;  0.035 + 0.035471 = 0.070471
#   0 of 200: -0.018845 .. +0.018845
@pytest.mark.parametrize(
    "failed, low, high, status",
    [
        (8, 0.012814, 0.076932, "regressed"),  # the whole interval is past +1 pt
        (7, 0.008978, 0.070471, "inconclusive"),  # the rise (3.5 pt) is past +1 pt, its low end is not
        (2, -0.010193, 0.035722, "unchanged"),  # a rise of 1 pt is within +1 pt
        (0, -0.018845, 0.018845, "unchanged"),  # no failure on either side
    ],
)
def test_failure_share_is_judged_by_newcombes_interval_of_the_rise(failed, low, high, status):
    by_counts = change(compare(counts(0, 200), counts(failed, 200), defaults=True), "failure_share")
    assert (by_counts.low, by_counts.high) == (approx(low, abs=1e-6), approx(high, abs=1e-6))
    assert (by_counts.status, by_counts.tolerance, by_counts.absolute) == (status, Tolerance(0.01, False), True)
    assert (by_counts.n_baseline, by_counts.n_current, by_counts.current) == (200, 200, approx(failed / 200))
    # the same verdict from the records of a run
    records = with_failures(simulated_run(2, n=200), failed)
    by_records = change(
        compare(side_of_records(simulated_run(1, n=200)), side_of_records(records), defaults=True), "failure_share"
    )
    assert (by_records.status, by_records.low, by_records.high) == (status, by_counts.low, by_counts.high)


def test_a_rise_in_failures_fails_the_gate_by_default(tmp_path: Path):
    """Before, success_rate=-0.05 had to be passed wholly (20 failed of 200 where none had): 8 passed."""
    a = _write_run(tmp_path / "a", simulated_run(1, n=200))
    b = _write_run(tmp_path / "b", with_failures(simulated_run(2, n=200), 8))
    result = invoke("compare", str(a), str(b))
    assert result.exit_code == 1
    assert result.output.startswith("batchrun compare: failed: failure_share\n")
    assert (
        "failure_share rose 4.0 pt (0.0% -> 4.0%), 95% interval [+1.3 pt, +7.7 pt], past the tolerance "
        "+1 pt (n=200/200)"
    ) in result.output
    # a looser bound is one option away; the old spelling still works
    assert invoke("compare", str(a), str(b), "--max-regression", "failure_share=5pt").exit_code == 0
    assert invoke("compare", str(a), str(b), "--max-regression", "success_rate=-0.05").exit_code == 0


def test_cancelled_requests_are_not_failures():
    # an interrupted run: 20 cancelled of 200, 0 failed -> failure share 0 of 180
    c = change(compare(counts(0, 200), counts(0, 200, cancelled=20), defaults=True), "failure_share")
    assert (c.current, c.n_current, c.status) == (0.0, 180, "unchanged")


# ---------------------------------------------------------------- what the gate prints


def _gh_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("::")]


def test_a_run_compared_with_itself_is_silent_and_warns_at_most_once(tmp_path: Path):
    """200 requests a side: p99 latency and TTFT cannot be decided (435 needed), every other figure
    is unchanged. Text prints nothing; GitHub gets one warning with both figures and their n."""
    import xml.etree.ElementTree as ET

    a = _write_run(tmp_path / "a", simulated_run(1, n=200))
    text = invoke("compare", str(a), str(a))
    assert (text.exit_code, text.output) == (0, "")
    gh = invoke("compare", str(a), str(a), "--format", "github")
    assert gh.exit_code == 0 and gh.output.splitlines() == _gh_lines(gh.output)  # nothing but annotations
    assert _gh_lines(gh.output) == [
        "::warning title=batchrun compare: inconclusive::"
        "latency_p99 +0.0%25 no interval, tolerance +20%25 (n=200/200, needs 435 a side); "
        "ttft_p99 +0.0%25 no interval, tolerance +20%25 (n=200/200, needs 435 a side)"
    ]
    # the documents say the same: json lists the two, junit skips the two with the same words
    doc = json.loads(invoke("compare", str(a), str(a), "--format", "json").stdout)
    assert (
        doc["passed"]
        and doc["regressions"] == []
        and [i.split()[0] for i in doc["inconclusive"]] == ["latency_p99", "ttft_p99"]
    )
    suite = ET.fromstring(invoke("compare", str(a), str(a), "--format", "junit").stdout)
    assert (suite.get("failures"), suite.get("skipped")) == ("0", "2")
    assert [s.get("message") for s in suite.iter("skipped")] == doc["inconclusive"]
    md = invoke("compare", str(a), str(a), "--format", "md").stdout
    assert "**batchrun compare: passed: no figure regressed past its tolerance**" in md
    assert "\ninconclusive: " + "; ".join(doc["inconclusive"]) + "\n" in md


def test_two_runs_of_one_configuration_warn_at_most_once():
    from batchrun.report.compare import console_output

    passes = 0
    for i in range(10):
        same = compare(
            side_of_records(simulated_run(2 * i, n=100, jitter=0.5)),
            side_of_records(simulated_run(2 * i + 1, n=100, jitter=0.5)),
            defaults=True,
        )
        if same.passed:
            passes += 1
            assert console_output(same, "text") == ""
            assert len(_gh_lines(console_output(same, "github"))) <= 1
            assert console_output(same, "text", verbose=True).startswith("batchrun compare: passed")
    assert passes >= 9


def test_a_regression_says_figure_change_interval_tolerance_and_n_in_every_format(tmp_path: Path):
    import re
    import xml.etree.ElementTree as ET

    a = _write_run(tmp_path / "a", simulated_run(1, n=200))
    b = _write_run(tmp_path / "b", simulated_run(2, n=200, ttft_s=0.30))
    sentence = compare(a, b, defaults=True).regressions[0]
    assert re.fullmatch(
        r"ttft_p50 rose \d+\.\d% \(\d+ ms -> \d+ ms\), 95% interval \[\+\d+\.\d%, \+\d+\.\d%\], "
        r"past the tolerance \+10% \(n=200/200\)",
        sentence,
    ), sentence
    text = invoke("compare", str(a), str(b))
    assert text.exit_code == 1 and f"  - {sentence}\n" in text.output
    assert "batchrun: regression" not in text.output  # said once, not again on stderr
    quiet = invoke("compare", str(a), str(b), "-q")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (1, "", f"batchrun: regression: {sentence}\n")
    md = invoke("compare", str(a), str(b), "--format", "md").stdout
    assert f"\n- {sentence}\n" in md and re.search(r"\| ttft_p50 \| .* \| \+10% \| 200/200 \| regressed \|", md)
    jsoned = invoke("compare", str(a), str(b), "--format", "json")
    doc = json.loads(jsoned.stdout)
    row = next(f for f in doc["figures"] if f["name"] == "ttft_p50")
    assert doc["regressions"] == [sentence] and not doc["passed"]
    assert (row["tolerance"], row["n_baseline"], row["n_current"], row["interval"]["unit"]) == (
        "+10%",
        200,
        200,
        "percent",
    )
    assert f"batchrun: regression: {sentence}" in jsoned.stderr  # a document on stdout: stderr says it
    suite = ET.fromstring(invoke("compare", str(a), str(b), "--format", "junit").stdout)
    assert suite.find("testcase[@name='ttft_p50']/failure").get("message") == sentence
    gh = invoke("compare", str(a), str(b), "--format", "github").output
    assert "::error title=batchrun compare: regression::" + sentence.replace("%", "%25") in gh.splitlines()
    assert "batchrun compare: failed: ttft_p50" in gh  # and the table, as plain log lines
