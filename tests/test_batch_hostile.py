"""Batch API mode against a hostile provider (the built-in sim's fault options): result lines of
every wrong shape, oversize lines, garbage request_counts, a status batchrun does not know, and
a crash at any point of collecting. Every row is recorded exactly once, the results and summary
are written, and --resume finishes what is left."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess
from batchrun.sim.directives import BATCH_LINE_KINDS
from batchrun.store.records import Record, read_records


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs poll every 50 ms at first (0.5 s in real use), so a test waits for the
    sim's short jobs, not for the poll interval."""
    from batchrun.batchapi import flow

    monkeypatch.setattr(flow, "POLL_FIRST_S", 0.05)


@pytest.fixture(scope="module")
def hostile() -> Iterator[SimProcess]:
    with SimProcess(SimConfig(fast=True, batch_delay_s=0.1, seed=3)) as server:
        yield server


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["run", *args])


def results(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def records(out: Path) -> list[Record]:
    """Every whole record (a torn last line of a killed run is passed over, as resume does)."""
    return list(read_records(out / "records.jsonl"))


def ledger(out: Path) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = json.loads((out / "run.json").read_text())["batch"]["jobs"]
    return jobs


# The row each kind of broken line becomes: (status, error_type).
MALFORMED = ("error", "MalformedBatchLine")
EXPECTED = {
    "status_code": MALFORMED,
    "usage": MALFORMED,
    "choices": MALFORMED,
    "message": MALFORMED,
    "tool_calls": MALFORMED,
    "content_number": MALFORMED,
    "bad_part": MALFORMED,
    "not_json": MALFORMED,
    "duplicate": MALFORMED,
    "no_response": MALFORMED,
    "content_parts": ("ok", ""),
    "refusal_part": ("error", "EmptyResponse"),
    "garbage": ("error", "BatchResultMissing"),
    "no_custom_id": ("error", "BatchResultMissing"),
    "unknown_custom_id": ("error", "BatchResultMissing"),
    "line_array": ("error", "BatchResultMissing"),
}


def hostile_prompts(tmp_path: Path, suffix: str = "") -> Path:
    """One row per kind of broken line, between good rows."""
    texts = ["fine 0"] + [f"[[sim:batch_line={kind}{suffix}]] question {i}" for i, kind in enumerate(BATCH_LINE_KINDS)]
    return write_prompts(tmp_path / "p.csv", texts + ["fine 1"])


def test_every_kind_of_broken_line_costs_only_its_own_row_and_resume_finishes(
    hostile: SimProcess, tmp_path: Path
) -> None:
    """Regression: one line of the wrong shape raised in collect: 4 of 5 rows never recorded, no
    results.csv or summary.json, the job never collected, and every --resume crashed the same way."""
    assert set(EXPECTED) == set(BATCH_LINE_KINDS)
    out = tmp_path / "run"
    first = run(
        str(hostile_prompts(tmp_path, "x1")), "--mode", "batch", "--base-url", hostile.base_url, "--out", str(out), "-q"
    )
    assert first.exit_code == 0, first.output
    rows = results(out)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(len(BATCH_LINE_KINDS) + 2)]
    assert sorted(r.id for r in records(out)) == sorted(r["id"] for r in rows)  # each row once
    by_kind = dict(zip(BATCH_LINE_KINDS, rows[1:-1]))
    assert {k: (r["status"], r["error_type"]) for k, r in by_kind.items()} == EXPECTED
    assert rows[0]["status"] == rows[-1]["status"] == "ok"
    assert by_kind["content_parts"]["text"] and not by_kind["content_parts"]["text"].startswith("[")
    assert "batch/0001.output.jsonl line " in by_kind["status_code"]["error"]
    assert "more than one line" in by_kind["duplicate"]["error"]
    assert "4 result line(s) named no row of this job" in by_kind["garbage"]["error"]
    assert "refused" in by_kind["refusal_part"]["error"]
    assert (out / "summary.json").exists() and (out / "report.md").exists()
    assert all(job["collected"] for job in ledger(out))
    assert "naming no row of it" in first.output

    again = run("--resume", str(out), "--base-url", hostile.base_url, "-q")
    assert again.exit_code == 0, again.output
    assert [r["status"] for r in results(out)] == ["ok"] * len(rows)  # x1: the broken lines were once
    assert [j["requests"] for j in ledger(out)] == [len(rows), len(rows) - 3]  # content_parts and the fine rows: ok


def test_a_crash_at_any_point_of_collecting_resumes_to_every_row_once(hostile: SimProcess, tmp_path: Path) -> None:
    """The states a SIGKILL leaves while a job is collected -- nothing written yet, some records
    flushed, a torn last line, all records but not yet marked collected, a half-downloaded file --
    each resumed: every row of the job recorded exactly once, results written, the job collected."""
    done = tmp_path / "done"
    assert (
        run(
            str(hostile_prompts(tmp_path)), "--mode", "batch", "--base-url", hostile.base_url, "--out", str(done), "-q"
        ).exit_code
        == 0
    )
    lines = (done / "records.jsonl").read_bytes().splitlines(keepends=True)
    expected = {r["id"]: (r["status"], r["error_type"]) for r in results(done)}
    for cut, torn in [(0, b""), (5, b""), (5, lines[5][:40]), (len(lines), b"")]:
        out = tmp_path / f"cut{cut}{'torn' if torn else ''}"
        shutil.copytree(done, out)
        (out / "records.jsonl").write_bytes(b"".join(lines[:cut]) + torn)
        (out / "results.csv").unlink()
        (out / "batch" / "0001.output.jsonl.part").write_bytes(b'{"custom_id":"q1","resp')
        run_json = json.loads((out / "run.json").read_text())
        run_json["batch"]["jobs"][0]["collected"] = False
        (out / "run.json").write_text(json.dumps(run_json))

        resumed = run("--resume", str(out), "--base-url", hostile.base_url, "-q")
        assert resumed.exit_code == 0, resumed.output
        ids = [r.id for r in records(out)]
        assert sorted(ids) == sorted(expected), f"cut at {cut}: a row recorded twice or not at all"
        assert {r["id"]: (r["status"], r["error_type"]) for r in results(out)} == expected
        assert [j["collected"] for j in ledger(out)] == [True]


def test_an_oversize_result_line_is_that_rows_error_and_never_read_whole(hostile: SimProcess, tmp_path: Path) -> None:
    """Regression: batch mode ignored --max-response-bytes; a 150 MB answer was recorded ok and
    landed in records.jsonl and results.csv. (The memory bound is measured in
    bench/bench_batch_lines.py.)"""
    prompts = write_prompts(tmp_path / "p.csv", ["fine", "[[sim:batch_bytes=300000]] huge", "fine too"])
    out = tmp_path / "run"
    result = run(
        str(prompts),
        "--mode",
        "batch",
        "--base-url",
        hostile.base_url,
        "--out",
        str(out),
        "-q",
        "--max-response-bytes",
        "65536",
    )
    assert result.exit_code == 0, result.output
    rows = results(out)
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[1]["error_type"] == "ResponseTooLarge" and "over --max-response-bytes 65,536" in rows[1]["error"]
    assert rows[1]["text"] == ""
    padding = b"x" * 1000
    for name in ("records.jsonl", "results.csv", "batch/0001.output.jsonl"):
        assert padding not in (out / name).read_bytes(), name
    assert (out / "batch" / "0001.output.jsonl").stat().st_size < 65536


@pytest.mark.parametrize(
    "counts", [{"total": 3, "completed": -5, "failed": None}, {"total": "three", "completed": 10**300, "failed": 2.5}]
)
@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "progress-bar"])
def test_garbage_request_counts_are_ignored_with_one_warning(
    tmp_path: Path, counts: dict[str, Any], quiet: bool
) -> None:
    """Regression: "-5 completed, None failed" was printed with --quiet, and without it the
    progress bar crashed batch mode (TypeError in batchapi/progress.py, no summary)."""
    prompts = write_prompts(tmp_path / "p.csv", 3)
    out = tmp_path / "run"
    with SimProcess(SimConfig(fast=True, batch_delay_s=0.3, batch_patch={"request_counts": counts})) as sim:
        result = run(
            str(prompts), "--mode", "batch", "--base-url", sim.base_url, "--out", str(out), *(["-q"] if quiet else [])
        )
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in results(out)] == ["ok"] * 3 and (out / "summary.json").exists()
    # The raw figures are never printed as counts (a throughput such as "322.5 tok/s" may well
    # contain "2.5", so whole words are compared, not substrings).
    words = set(re.split(r"[\s,:;()\[\]]+", result.output))
    for raw in ("-5", "None", "three", "2.5"):
        assert raw not in words, raw
    assert not [w for w in words if w.isdigit() and len(w) >= 10], "10**300 (or its start) was printed"
    warnings = [line for line in result.output.splitlines() if "request_counts" in line]
    assert warnings and len(warnings) == len(set(warnings))  # each problem once, however many polls
    assert "completed, ? failed" in result.output or "? completed" in result.output
    assert ledger(out)[0]["request_counts"] in ({"total": 3}, {})


def test_a_status_batchrun_does_not_know_is_warned_once_and_bounded_by_batch_wait(tmp_path: Path) -> None:
    """Regression: a job in an unknown status (e.g. `paused_forever`) was polled forever, silently."""
    prompts = write_prompts(tmp_path / "p.csv", 3)
    out, state = tmp_path / "run", str(tmp_path / "provider")
    paused = SimConfig(fast=True, batch_delay_s=0.1, batch_state_dir=state, batch_patch={"status": "paused_forever"})
    with SimProcess(paused) as sim:
        port = sim.port
        stuck = run(
            str(prompts), "--mode", "batch", "--base-url", sim.base_url, "--out", str(out), "--batch-wait", "1s"
        )
    assert stuck.exit_code == 1, stuck.output
    assert stuck.output.count("status 'paused_forever' is one batchrun does not know") == 1
    assert "stopped early: waited 1 s for the Batch API jobs (--batch-wait) and 1 are still open" in stuck.output
    assert f"batchrun batch status {out}" in stuck.output and f"--resume {out}" in stuck.output
    [job] = ledger(out)
    assert not job["collected"] and job["status"] == "paused_forever"
    assert (out / "summary.json").exists()

    # The provider un-pauses (the same jobs, on the same address): --resume collects the job.
    with SimProcess(SimConfig(fast=True, batch_delay_s=0.1, batch_state_dir=state), port=port) as sim:
        resumed = run("--resume", str(out), "--base-url", sim.base_url, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert [r["status"] for r in results(out)] == ["ok"] * 3
    assert [j["collected"] for j in ledger(out)] == [True]


def test_a_result_file_that_cannot_be_downloaded_leaves_its_job_open_and_the_run_written(tmp_path: Path) -> None:
    """The provider names an output file it does not have: the job stays open for --resume, and
    the run still writes its results and summary (it used to end in an error, writing neither)."""
    prompts = write_prompts(tmp_path / "p.csv", 3)
    out = tmp_path / "run"
    with SimProcess(SimConfig(fast=True, batch_delay_s=0.1, batch_patch={"output_file_id": "file-gone"})) as sim:
        result = run(str(prompts), "--mode", "batch", "--base-url", sim.base_url, "--out", str(out), "-q")
    assert result.exit_code == 1, result.output
    assert "download of file-gone" in result.output and "NotFoundError" in result.output
    assert "stopped early: the results of 1 ended job(s) could not be downloaded" in result.output
    assert [j["collected"] for j in ledger(out)] == [False]
    assert (out / "summary.json").exists() and (out / "results.csv").exists()


@pytest.mark.parametrize(
    "value, message",
    [("0", "--batch-wait must be a positive duration"), ("soon", "--batch-wait: cannot read 'soon' as a duration")],
)
def test_a_batch_wait_that_is_no_duration_is_a_usage_error(tmp_path: Path, value: str, message: str) -> None:
    result = run(str(write_prompts(tmp_path / "p.csv", 2)), "--mode", "batch", "--batch-wait", value)
    assert result.exit_code == 2 and message in result.output
