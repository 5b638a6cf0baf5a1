"""The analyst's run end to end: dry run, a --limit pilot extended by --resume, structured
answers in their own columns, row settings announced, cost shown, interrupted runs told honestly."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess
from batchrun.sim.config import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TEMPLATE = "Label the sentiment of this {product} review: {review}"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def records_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_the_readme_walkthrough_dry_run_pilot_then_the_whole_file(fast_sim, tmp_path) -> None:
    base = [
        "run",
        str(SAMPLES / "reviews.csv"),
        "--template",
        TEMPLATE,
        "--id-column",
        "review_id",
        "--json-schema",
        str(SAMPLES / "label.json"),
        "--base-url",
        fast_sim.base_url,
    ]
    dry = invoke(*base, "--dry-run", "--model", "gpt-4o-mini", "--max-tokens", "50", "--rpm", "20")
    assert dry.exit_code == 0, dry.output
    assert "nothing was sent" in dry.output and "rows              40 (40 to send, 0 bad)" in dry.output
    assert dry.output.count("[user] Label the sentiment") == 3
    assert "output tokens     at most 2,000" in dry.output  # 40 x max_tokens 50
    assert "list price of gpt-4o-mini" in dry.output and "at least 2m 00s" in dry.output  # 40 rows at 20 rpm
    assert not (tmp_path / "results").exists()

    pilot = invoke(*base, "--limit", "20", "--out", "labels", "-q", "--price-in", "0.15", "--price-out", "0.6")
    assert pilot.exit_code == 0, pilot.output
    assert len(records_of(tmp_path / "labels")) == 20
    assert "cost        $0.0" in pilot.output  # the cost of what was sent
    # The whole file's cost from the pilot's measured tokens: 40 rows x the mean cost of an ok row.
    assert "projected   $0.0" in pilot.output and "for 40 rows (95% $" in pilot.output
    assert "from 20 ok rows); ceiling $" in pilot.output
    projection = json.loads((tmp_path / "labels" / "summary.json").read_text())["summary"]["cost"]["projection"]
    per_row = [
        (r["prompt_tokens"] * 0.15 + r["completion_tokens"] * 0.6) / 1e6 for r in records_of(tmp_path / "labels")
    ]
    assert projection["n"] == 20 and projection["rows"] == 40
    assert projection["usd"] == pytest.approx(40 * sum(per_row) / 20)
    assert projection["low"] <= projection["usd"] <= projection["high"]

    rest = invoke("run", "--resume", "labels", "--dry-run")  # what the rest would cost
    assert rest.exit_code == 0 and "(20 to send, 0 bad, 20 already done)" in rest.output
    full = invoke("run", "--resume", "labels", "--base-url", fast_sim.base_url, "-q")
    assert full.exit_code == 0, full.output
    assert len(records_of(tmp_path / "labels")) == 40  # 20 more, none twice
    df = pd.read_csv(tmp_path / "labels" / "results.csv", dtype={"review_id": str})
    original = pd.read_csv(SAMPLES / "reviews.csv", dtype={"review_id": str})
    assert list(df.columns[:4]) == list(original.columns) and "label" in df.columns
    assert df["review_id"].tolist() == original["review_id"].tolist()  # "001", in input order
    assert set(df["label"]) <= {"positive", "negative", "neutral"} and (df["status"] == "ok").all()
    request = records_of(tmp_path / "labels")[0]["request"]
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["strict"] is True
    summary = json.loads((tmp_path / "labels" / "summary.json").read_text())["summary"]
    assert summary["cost"]["price"]["source"] == "--price-in/--price-out"  # kept over the resume
    assert "projection" not in summary["cost"]  # the whole file was sent: nothing left to project
    assert summary["cost"]["usd"] == pytest.approx(
        (summary["cost"]["prompt_tokens"] * 0.15 + summary["cost"]["completion_tokens"] * 0.6) / 1e6
    )


def test_dry_run_lists_every_bad_row_and_exits_2(tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,fine\nb,\nc,ok\nd,\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--dry-run")
    assert result.exit_code == 2
    assert "p.csv line 3" in result.output and "p.csv line 5" in result.output
    assert "(2 to send, 2 bad)" in result.output and "no list price" in result.output


def test_an_invalid_answer_is_its_own_status_and_is_retried(tmp_path) -> None:
    (tmp_path / "p.csv").write_text("prompt\n" + "".join(f"review {i}\n" for i in range(10)), encoding="utf-8")
    with SimProcess(SimConfig(fast=True, invalid_json_rate=0.4)) as sim:  # seeded: the same rolls every run
        result = invoke(
            "run",
            "p.csv",
            "--base-url",
            sim.base_url,
            "--out",
            "o",
            "-q",
            "--json-schema",
            str(SAMPLES / "label.json"),
            "--retries",
            "1",
        )
    assert result.exit_code == 0, result.output
    assert "1 invalid output" in result.output
    records = records_of(tmp_path / "o")
    logs = {r["id"]: [a["status"] for a in r["attempt_log"]] for r in records}
    assert sum(log == ["invalid_output", "ok"] for log in logs.values()) >= 1  # retried, then fine
    bad = [r for r in records if r["status"] == "invalid_output"]
    assert len(bad) == 1 and logs[bad[0]["id"]] == ["invalid_output", "invalid_output"]  # --retries 1 spent
    assert bad[0]["error_type"] == "InvalidOutput" and "not valid JSON" in bad[0]["error"]
    assert bad[0]["parsed"] is None
    assert all(r["parsed"]["label"] in ("positive", "negative", "neutral") for r in records if r["status"] == "ok")
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["counts"]["invalid_output"] == 1 and summary["success_rate"] == pytest.approx(0.9)


def test_json_mode_parses_without_a_schema(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("prompt\nhello\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--json")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "o" / "results.csv", newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert row["status"] == "ok" and row["answer"] and json.loads(row["text"])["answer"] == row["answer"]


def test_a_bad_schema_file_is_a_usage_error(tmp_path) -> None:
    (tmp_path / "p.csv").write_text("prompt\nhello\n", encoding="utf-8")
    (tmp_path / "s.json").write_text('{"type": "objekt"}', encoding="utf-8")
    result = invoke("run", "p.csv", "--json-schema", "s.json")
    assert result.exit_code == 2 and "not a valid JSON Schema" in result.output


def test_row_setting_columns_are_announced_and_can_be_ignored(fast_sim, tmp_path) -> None:
    # A product catalogue's `model` column is data, not the model to ask.
    (tmp_path / "p.csv").write_text("model,prompt\nX100,describe it\nX200,describe it\nX100,again\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--dry-run")
    assert "column 'model' (2 distinct values) sets model per row" in result.output
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "a", "-q")
    assert "input columns 'model' (2 distinct values) set those request fields per row" in result.output
    assert {r["request"]["model"] for r in records_of(tmp_path / "a")} == {"X100", "X200"}
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "b", "-q", "--no-row-settings")
    assert result.exit_code == 0 and "--no-row-settings" in result.output
    assert {r["request"]["model"] for r in records_of(tmp_path / "b")} == {DEFAULT_MODEL}  # the endpoint's
    with open(tmp_path / "b" / "results.csv", newline="", encoding="utf-8") as f:
        assert [row["model"] for row in csv.DictReader(f)] == ["X100", "X200", "X100"]  # the data, kept


def test_an_interrupted_run_reports_sent_cancelled_and_never_sent(tmp_path) -> None:
    (tmp_path / "p.csv").write_text("prompt\n" + "".join(f"row {i}\n" for i in range(200)), encoding="utf-8")
    with SimProcess(SimConfig(fixed_ttft_s=0.05, fixed_itl_s=0.02, output_tokens=10)) as sim:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from batchrun.cli import main; main()",
                "run",
                "p.csv",
                "--base-url",
                sim.base_url,
                "--out",
                "o",
                "-q",
                "-c",
                "4",
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            path = tmp_path / "o" / "records.jsonl"
            if path.exists() and len(path.read_bytes().splitlines()) >= 8:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    c = summary["counts"]
    assert c["cancelled"] >= 1 and c["sent"] == c["ok"] + c["error"] + c["timeout"] + c["cancelled"] - c["never_sent"]
    assert summary["success_rate"] == 1.0  # cancelled rows are not failures
    assert summary["run"]["unread"] == 200 - c["total"]
    report = (tmp_path / "o" / "report.md").read_text()
    assert "This run did not finish: interrupted" in report and "never sent" in report
    assert "This run did not finish: interrupted" in (tmp_path / "o" / "report.html").read_text()


def test_dry_run_counts_with_a_tokenizer_when_one_is_installed(tmp_path, monkeypatch) -> None:
    import types

    class Encoding:  # stands in for tiktoken's: one token per word
        def encode(self, text: str) -> list[int]:
            return list(range(len(text.split())))

    monkeypatch.setitem(sys.modules, "tiktoken", types.SimpleNamespace(get_encoding=lambda name: Encoding()))
    (tmp_path / "p.csv").write_text("prompt\none two three\nfour five\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--dry-run", "--model", "gpt-4o", "--max-tokens", "10")
    assert result.exit_code == 0, result.output
    assert "prompt tokens     ~13 (estimated: tiktoken o200k_base" in result.output  # (3 + 4) + (2 + 4)
    # 13 x $2.50 + 20 x $10.00 per 1M tokens
    assert f"at most ${(13 * 2.5 + 20 * 10) / 1e6:.4f}" in result.output


def test_a_bad_row_past_the_pilot_does_not_stop_it(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,one\nb,two\nc,\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in records_of(tmp_path / "o")] == ["a", "b"]


def test_a_pilot_with_skip_skips_bad_rows_and_still_sends_n_good_ones(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,one\nb,\nc,three\nd,\ne,five\nf,six\ng,\n", encoding="utf-8")
    args = ["run", "p.csv", "--base-url", fast_sim.base_url, "-q", "--limit", "3", "--on-bad-row", "skip"]
    result = invoke(*args, "--out", "o")
    assert result.exit_code == 0, result.output
    statuses = [(r["id"], r["status"]) for r in records_of(tmp_path / "o")]
    assert sorted(statuses) == [("a", "ok"), ("b", "skipped"), ("c", "ok"), ("d", "skipped"), ("e", "ok")]
    skipped = {r["id"]: r["error"] for r in records_of(tmp_path / "o") if r["status"] == "skipped"}
    assert "p.csv line 3, column 'prompt'" in skipped["b"] and "p.csv line 5" in skipped["d"]
    # --on-bad-row fail: the pilot stops at the first bad row, as a full run does
    failed = invoke(*args[:-2], "--out", "f")
    assert failed.exit_code == 2 and "p.csv line 3" in failed.output


def test_a_dry_run_with_skip_lists_what_it_would_skip_and_exits_0(tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,fine\nb,\nc,ok\nd,\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--dry-run", "--on-bad-row", "skip")
    assert result.exit_code == 0, result.output
    assert "(2 to send, 2 bad to skip)" in result.output
    assert "skipped row       p.csv line 3, column 'prompt'" in result.output
    assert "skipped row       p.csv line 5, column 'prompt'" in result.output
    pilot = invoke("run", "p.csv", "--dry-run", "--on-bad-row", "skip", "--limit", "1")
    assert pilot.exit_code == 0 and "(1 to send, 0 bad" in pilot.output  # row a, then reading stops
    pilot = invoke("run", "p.csv", "--dry-run", "--on-bad-row", "skip", "--limit", "2")
    assert pilot.exit_code == 0 and "(2 to send, 1 bad to skip)" in pilot.output


class Figures:
    """A hooks.Progress that keeps what a row bar is drawn from at every poll and at the end:
    (rows done this session, the bar's total, rows done earlier)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int | None, int]] = []

    async def rows(self, stats, total, clock) -> None:
        try:
            while True:
                self.seen.append((stats.done, total.rows, stats.resumed))
                await asyncio.sleep(0.005)
        finally:
            self.seen.append((stats.done, total.rows, stats.resumed))

    def jobs(self, jobs):
        raise AssertionError("not a batch run")

    async def level(self, state) -> None:
        raise AssertionError("not a bench")


def _run_with(figures: Figures, **given):
    from batchrun.config import RunConfig
    from batchrun.hooks import Hooks
    from batchrun.pipeline import execute_run

    return asyncio.run(execute_run(RunConfig.from_options("run", **given), Hooks(progress=figures)))


def test_after_a_resume_progress_counts_the_rows_left_from_0(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\n" + "".join(f"r{i},row {i}\n" for i in range(40)), encoding="utf-8")
    pilot = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--limit", "15")
    assert pilot.exit_code == 0, pilot.output
    figures = Figures()
    outcome = _run_with(figures, resume=tmp_path / "o", base_url=fast_sim.base_url)
    assert outcome.failed == 0 and len(records_of(tmp_path / "o")) == 40
    assert figures.seen[-1] == (25, 25, 15)  # 25 of the 25 left; the 15 done earlier beside them
    assert {total for _, total, _ in figures.seen if total is not None} == {25}  # never 40, never 15 + x
    assert all(done <= 25 for done, _, _ in figures.seen)


def test_the_command_lines_last_progress_line_after_a_resume(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\n" + "".join(f"r{i},row {i}\n" for i in range(12)), encoding="utf-8")
    assert invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--limit", "5").exit_code == 0
    result = invoke("run", "--resume", "o", "--base-url", fast_sim.base_url)  # stderr is no terminal: plain lines
    assert result.exit_code == 0, result.output
    last = [line for line in result.output.splitlines() if " rows" in line and line.startswith("batchrun: ")][-1]
    assert last.startswith("batchrun: 7/7 rows (100%), ok 7, failed 0") and last.endswith(", 5 done earlier")


def test_a_pilots_progress_total_takes_in_the_bad_rows_it_skipped(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,one\nb,\nc,three\nd,\ne,five\nf,six\n", encoding="utf-8")
    figures = Figures()
    path, out = tmp_path / "p.csv", tmp_path / "o"
    _run_with(figures, input=path, base_url=fast_sim.base_url, out=out, limit=3, on_bad_row="skip")
    assert figures.seen[-1] == (5, 5, 0)  # a, c, e sent; b, d recorded as skipped


def test_an_answer_cut_at_max_tokens_is_not_retried(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("prompt\nhello\n", encoding="utf-8")
    result = invoke(
        "run",
        "p.csv",
        "--base-url",
        fast_sim.base_url,
        "--out",
        "o",
        "-q",
        "--json",
        "--max-tokens",
        "2",
        "--retries",
        "3",
    )
    assert result.exit_code == 0, result.output
    record = records_of(tmp_path / "o")[0]
    assert (record["status"], record["error_type"], record["attempts"]) == ("invalid_output", "TruncatedOutput", 1)
    assert "raise --max-tokens" in record["error"]
