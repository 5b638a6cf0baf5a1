"""`batchrun run` end to end: the CLI through CliRunner and real subprocesses, against the
built-in endpoint in a child process on a loopback port."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess
from batchrun.store.outputs import index_records
from batchrun.store.records import read_records

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
KEY = "sk-batchrun-test-KEY-0123456789abcdef"


@pytest.fixture(scope="module")
def slow_sim():
    """Fixed 20 ms TTFT and 10 ms gaps: a run of a few hundred rows takes seconds, not ms."""
    with SimProcess(SimConfig(fixed_ttft_s=0.02, fixed_itl_s=0.01, output_tokens=20)) as sim:
        yield sim


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def result_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_readme_first_command_runs_samples_on_the_embedded_default(tmp_path) -> None:
    result = invoke("run", str(SAMPLES / "prompts.csv"), "--out", "out", "-q", "--max-tokens", "8")
    assert result.exit_code == 0, result.output
    assert "built-in simulated endpoint" in result.output
    rows = result_rows(tmp_path / "out")
    with open(SAMPLES / "prompts.csv", newline="", encoding="utf-8") as f:
        expected = [r["id"] for r in csv.DictReader(f)]
    assert [r["id"] for r in rows] == expected and all(r["status"] == "ok" for r in rows)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["summary"]["counts"]["ok"] == len(expected)
    assert (tmp_path / "out" / "report.html").exists()


@pytest.mark.parametrize("sample", ["prompts.jsonl", "batch_api.jsonl"])
def test_other_sample_formats(fast_sim, tmp_path, sample) -> None:
    result = invoke("run", str(SAMPLES / sample), "--base-url", fast_sim.base_url, "--out", "o", "-q")
    assert result.exit_code == 0, result.output
    assert all(r["status"] == "ok" and r["text"] for r in result_rows(tmp_path / "o"))


def test_parquet_in_and_out(fast_sim, tmp_path) -> None:
    import pandas as pd

    pd.DataFrame({"prompt": [f"p {i}" for i in range(12)]}).to_parquet(tmp_path / "in.parquet")
    result = invoke(
        "run", "in.parquet", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--output-format", "parquet"
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "o" / "results.parquet")
    assert list(table["row"]) == list(range(12)) and set(table["status"]) == {"ok"}


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.csv"], "missing.csv: no such file"),
        (["amb.csv"], "pass --prompt-column"),
        (["amb.csv", "--template", "{a.__class__}"], "only plain {column} names"),
    ],
)
def test_bad_file_or_template_stops_before_anything_starts(tmp_path, args, message) -> None:
    (tmp_path / "amb.csv").write_text("a,b\nx,y\n", encoding="utf-8")
    result = invoke("run", *args)  # no base URL: the embedded endpoint would start
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert "built-in simulated endpoint" not in result.output and not (tmp_path / "results").exists()


def test_bad_row_stops_with_file_and_line_and_resume_finishes(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,first\nb,\nc,third\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q")
    assert result.exit_code == 2
    assert "p.csv line 3" in result.output and "--on-bad-row skip" in result.output
    (tmp_path / "p.csv").write_text("id,prompt\na,first\nb,second\nc,third\n", encoding="utf-8")
    result = invoke("run", "--resume", "o", "--base-url", fast_sim.base_url, "-q")
    assert result.exit_code == 2 and "--input-changed ok" in result.output  # the file changed: say so
    result = invoke("run", "--resume", "o", "--base-url", fast_sim.base_url, "-q", "--input-changed", "ok")
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["status"]) for r in result_rows(tmp_path / "o")] == [("a", "ok"), ("b", "ok"), ("c", "ok")]


def test_skip_mode_records_bad_rows(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,first\nb,\nc,third\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--on-bad-row", "skip")
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in result_rows(tmp_path / "o")}
    assert rows["b"]["status"] == "skipped" and "line 3" in rows["b"]["error"]
    assert rows["a"]["status"] == rows["c"]["status"] == "ok"


def test_unreachable_endpoint_fails_fast_without_sending(tmp_path) -> None:
    write_prompts(tmp_path / "p.csv", 3)
    result = invoke("run", "p.csv", "--base-url", "http://127.0.0.1:9/v1", "--out", "o", "-q")
    assert result.exit_code == 2 and "cannot connect" in result.output
    assert not (tmp_path / "o" / "records.jsonl").exists()


def test_fail_on_error_exit_code(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("prompt\nfine\n[[sim:error=400]] broken\n", encoding="utf-8")
    args = ["run", "p.csv", "--base-url", fast_sim.base_url, "-q"]
    assert invoke(*args, "--out", "a").exit_code == 0
    assert invoke(*args, "--out", "b", "--fail-on-error").exit_code == 1


def test_api_key_never_written_or_printed(tmp_path) -> None:
    (tmp_path / "p.csv").write_text("prompt\nhello\n[[sim:error=500]] boom\n[[sim:cut=2]] cut\n", encoding="utf-8")
    with SimProcess(SimConfig(fast=True, api_key=KEY)) as sim:
        result = invoke(
            "run", "p.csv", "--base-url", sim.base_url, "--out", "o", "--retries", "0", env={"OPENAI_API_KEY": KEY}
        )
        assert result.exit_code == 0, result.output
        bad = invoke("run", "p.csv", "--base-url", sim.base_url, "--out", "w", env={"OPENAI_API_KEY": KEY + "-wrong"})
    assert bad.exit_code == 2 and "rejected the API key" in bad.output
    statuses = sorted(r["status"] for r in result_rows(tmp_path / "o"))
    assert statuses == ["error", "error", "ok"]
    written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 6  # records, results, summary, reports, run.json
    for text in [result.output, bad.output, *written]:
        assert KEY not in text


def run_subprocess(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_records(path: Path, at_least: int, proc: subprocess.Popen, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= at_least:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} records after {limit_s}s")


def assert_each_row_once(out: Path, n: int) -> None:
    rows = result_rows(out)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(n)]
    assert all(r["status"] == "ok" for r in rows)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_run_resumes_to_each_row_exactly_once(slow_sim, tmp_path, sig) -> None:
    n = 300
    write_prompts(tmp_path / "p.csv", n)
    out = tmp_path / "o"
    proc = run_subprocess(["run", "p.csv", "--base-url", slow_sim.base_url, "--out", "o", "-q", "-c", "8"], tmp_path)
    wait_for_records(out / "records.jsonl", 40, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["summary"]["run"]["interrupted"] is True
        assert_valid_jsonl(out / "records.jsonl")
    written = list(read_records(out / "records.jsonl"))
    done_before = {r.id for r in written if r.status == "ok"}
    assert len(done_before) >= 40
    result = invoke("run", "--resume", str(out), "--base-url", slow_sim.base_url, "-q", "-c", "32")
    assert result.exit_code == 0, result.output
    assert_each_row_once(out, n)
    sent_again = {r.id for r in list(read_records(out / "records.jsonl"))[len(written) :]}
    assert not sent_again & done_before  # rows already ok were not sent again
    assert len(sent_again) == n - len(done_before)  # every other row was
    assert len(index_records(out / "records.jsonl")) == n


def assert_valid_jsonl(path: Path) -> None:
    for line in path.read_text(encoding="utf-8").splitlines():
        json.loads(line)


def test_dotenv_and_batchrun_env_defaults_flags_win(fast_sim, tmp_path, monkeypatch) -> None:
    (tmp_path / ".env").write_text(f"OPENAI_BASE_URL={fast_sim.base_url}\nBATCHRUN_CONCURRENCY=3\n")
    write_prompts(tmp_path / "p.csv", 5)
    for name in ("OPENAI_BASE_URL", "BATCHRUN_CONCURRENCY"):
        # Recorded as unset, so the values load_dotenv puts in os.environ are removed afterwards.
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    from batchrun.cli import main

    with pytest.raises(SystemExit) as exit_info:  # main() reads .env, as the console script does
        main(["run", "p.csv", "--out", "a", "-q"])
    assert exit_info.value.code == 0
    config = json.loads((tmp_path / "a" / "run.json").read_text())["config"]
    assert config["base_url"] == fast_sim.base_url and config["concurrency"] == 3
    with pytest.raises(SystemExit):
        main(["run", "p.csv", "--out", "b", "-q", "-c", "2"])
    assert json.loads((tmp_path / "b" / "run.json").read_text())["config"]["concurrency"] == 2


def test_a_bad_row_without_an_id_never_hides_another_row(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,hello\n,bad\n1,hello again\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--on-bad-row", "skip")
    assert result.exit_code == 0, result.output
    rows = result_rows(tmp_path / "o")
    # The id column is the input's own: the bad row shows its (empty) id, never a made-up one.
    assert [(r["id"], r["row"], r["status"]) for r in rows] == [
        ("a", "0", "ok"),
        ("", "1", "skipped"),
        ("1", "2", "ok"),
    ]


def test_a_row_that_cannot_be_sent_as_json_is_a_bad_row(fast_sim, tmp_path) -> None:
    import datetime

    import pandas as pd

    messages = [
        [{"role": "user", "content": "hi", "sent": datetime.datetime(2026, 1, 1)}],
        [{"role": "user", "content": "fine", "sent": None}],
    ]
    pd.DataFrame({"id": ["x", "y"], "messages": messages}).to_parquet(tmp_path / "m.parquet")
    result = invoke("run", "m.parquet", "--base-url", fast_sim.base_url, "--out", "o", "-q")
    assert result.exit_code == 2 and "cannot be sent as JSON" in result.output and "Traceback" not in result.output
    result = invoke("run", "m.parquet", "--base-url", fast_sim.base_url, "--out", "s", "-q", "--on-bad-row", "skip")
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in result_rows(tmp_path / "s")] == ["skipped", "ok"]


def test_run_wall_time_is_first_send_to_last_byte(slow_sim, tmp_path) -> None:
    """Client setup (the session, the SDK's headers) happens before the first send: not counted."""
    result = invoke("run", str(SAMPLES / "prompts.csv"), "--base-url", slow_sim.base_url, "--out", "w", "-q", "-c", "4")
    assert result.exit_code == 0, result.output
    records = [json.loads(l) for l in (tmp_path / "w" / "records.jsonl").read_text().splitlines()]
    span = max(r["end_s"] for r in records) - min(r["sent_s"] for r in records)
    assert json.loads((tmp_path / "w" / "summary.json").read_text())["summary"]["wall_time_s"] == pytest.approx(span)


def test_builtin_options_configure_the_built_in_endpoint(tmp_path) -> None:
    args = [
        "run",
        str(SAMPLES / "prompts.csv"),
        "-q",
        "--max-tokens",
        "4",
        "--builtin-option",
        "fixed_ttft_s=0.002",
        "--builtin-option",
        "fixed_itl_s=0",
        "--builtin-option",
        "seed=11",
    ]
    assert invoke(*args, "--out", "b").exit_code == 0
    doc = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert doc["builtin_endpoint"]["seed"] == 11 and doc["builtin_endpoint"]["fixed_ttft_s"] == 0.002
    bad = invoke(*args, "--base-url", "http://127.0.0.1:9/v1", "--out", "c")
    assert bad.exit_code == 2 and "--builtin-option configures the built-in endpoint" in bad.output


def test_a_resume_on_the_built_in_endpoint_keeps_its_builtin_options(tmp_path) -> None:
    """The built-in endpoint a run was started on is the one its resume talks to: the same
    --builtin-option settings, not the defaults, unless given again."""
    pilot = ["run", str(SAMPLES / "prompts.csv"), "-q", "--out", "r", "--limit", "3"]
    assert invoke(*pilot, "--builtin-option", "output_tokens=3", "--builtin-option", "seed=5").exit_code == 0
    assert invoke("run", "--resume", "r", "-q", "--limit", "6").exit_code == 0
    tokens = {r.id: r.completion_tokens for r in read_records(tmp_path / "r" / "records.jsonl")}
    assert len(tokens) == 6 and set(tokens.values()) == {3}, tokens
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["builtin_endpoint"]["seed"] == 5
    # Given again, the new settings win for the rows sent now.
    assert invoke("run", "--resume", "r", "-q", "--limit", "8", "--builtin-option", "output_tokens=2").exit_code == 0
    tokens = {r.id: r.completion_tokens for r in read_records(tmp_path / "r" / "records.jsonl")}
    assert len(tokens) == 8 and sorted(tokens.values()) == [2, 2] + [3] * 6, tokens
