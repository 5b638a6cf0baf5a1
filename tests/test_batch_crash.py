"""A batch run SIGKILLed between submit and collect resumes onto its own job: no second upload
or job, and every row exactly once; a step whose id never reached run.json is found at the
provider instead of being done again."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs poll every 50 ms at first (0.5 s in real use), so a test waits for the
    sim's short jobs, not for the poll interval."""
    from batchrun.batchapi import flow

    monkeypatch.setattr(flow, "POLL_FIRST_S", 0.05)


N = 30


@pytest.fixture(scope="module")
def slow_batches() -> Iterator[SimProcess]:
    # Jobs take 1 s: long enough to kill the client while its job is open.
    with SimProcess(SimConfig(fast=True, batch_delay_s=1.0)) as server:
        yield server


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_once_submitted(proc: subprocess.Popen[str], out: Path, timeout_s: float = 30.0) -> dict[str, Any]:
    """SIGKILL the run as soon as run.json names its job; return that ledger entry."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            jobs = json.loads((out / "run.json").read_text())["batch"]["jobs"]
        except (OSError, ValueError, KeyError, TypeError):
            jobs = []
        if jobs and jobs[0].get("batch_id"):
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
            assert not jobs[0]["collected"], "the run finished before it could be killed"
            return jobs[0]
        if proc.poll() is not None:
            pytest.fail(f"the run ended before submitting: {proc.communicate()[1]}")
        time.sleep(0.02)
    proc.kill()
    proc.communicate()
    pytest.fail("no job id in run.json in time")


def first_job_id(out: Path) -> str | None:
    try:
        return json.loads((out / "run.json").read_text())["batch"]["jobs"][0].get("batch_id")
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def batches_at(sim: SimProcess) -> list[Any]:
    with openai.OpenAI(base_url=sim.base_url, api_key="x") as client:
        return list(client.batches.list(limit=100))


def files_at(sim: SimProcess) -> list[Any]:
    with openai.OpenAI(base_url=sim.base_url, api_key="x") as client:
        return [f for f in client.files.list(purpose="batch")]


def assert_every_row_once(out: Path) -> None:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(N)]
    assert {r["status"] for r in rows} == {"ok"}
    ids = [json.loads(line)["id"] for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(f"q{i}" for i in range(N)), "a row was recorded twice or not at all"


def test_sigkill_between_submit_and_collect_then_resume(slow_batches: SimProcess, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", N)
    out = tmp_path / "run"
    before = {b.id for b in batches_at(slow_batches)}
    proc = start(
        ["run", str(prompts), "--mode", "batch", "--base-url", slow_batches.base_url, "--out", str(out), "-q"], tmp_path
    )
    job = kill_once_submitted(proc, out)
    assert [b.id for b in batches_at(slow_batches) if b.id not in before] == [job["batch_id"]]

    refused = CliRunner().invoke(app, ["run", "--resume", str(out), "--mode", "online"])
    assert refused.exit_code == 2 and "not yet collected" in refused.output

    resumed = CliRunner().invoke(app, ["run", "--resume", str(out), "--base-url", slow_batches.base_url, "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert [b.id for b in batches_at(slow_batches) if b.id not in before] == [job["batch_id"]]
    assert_every_row_once(out)
    [entry] = json.loads((out / "run.json").read_text())["batch"]["jobs"]
    assert entry["collected"] and entry["batch_id"] == job["batch_id"]


def test_sigkill_on_the_built_in_endpoint_resumes_from_its_saved_jobs(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", N)
    out = tmp_path / "run"
    proc = start(["run", str(prompts), "--mode", "batch", "--out", str(out), "-q"], tmp_path)
    job = kill_once_submitted(proc, out)
    resumed = CliRunner().invoke(app, ["run", "--resume", str(out), "-q"])
    assert resumed.exit_code == 0, resumed.output
    saved_jobs = list((out / "sim-batches" / "batches").glob("*.json"))
    assert [p.stem for p in saved_jobs] == [job["batch_id"]]
    assert_every_row_once(out)


def test_ids_lost_to_a_kill_are_found_at_the_provider(slow_batches: SimProcess, tmp_path: Path) -> None:
    """Killed after the upload / the create but before their ids were saved: found, not redone."""
    prompts = write_prompts(tmp_path / "p.csv", N)
    out = tmp_path / "run"
    args = ["run", str(prompts), "--mode", "batch", "--base-url", slow_batches.base_url, "--out", str(out), "-q"]
    assert CliRunner().invoke(app, args).exit_code == 0
    run = json.loads((out / "run.json").read_text())
    job = dict(run["batch"]["jobs"][0])
    # The state of a run killed inside the create request: file uploaded, job created, neither id saved.
    run["batch"]["jobs"][0].update(file_id=None, batch_id=None, status=None, collected=False)
    (out / "run.json").write_text(json.dumps(run))
    (out / "records.jsonl").write_bytes(b"")
    files_before, batches_before = len(files_at(slow_batches)), len(batches_at(slow_batches))

    resumed = CliRunner().invoke(app, ["run", "--resume", str(out), "--base-url", slow_batches.base_url, "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert len(files_at(slow_batches)) == files_before and len(batches_at(slow_batches)) == batches_before
    [entry] = json.loads((out / "run.json").read_text())["batch"]["jobs"]
    assert (entry["batch_id"], entry["file_id"]) == (job["batch_id"], job["file_id"])
    assert_every_row_once(out)


def test_batch_status_and_cancel_from_another_terminal_while_a_run_waits(tmp_path: Path) -> None:
    import asyncio
    import threading

    from batchrun.config import RunConfig
    from batchrun.pipeline import execute_run

    prompts = write_prompts(tmp_path / "p.csv", 4)
    out = tmp_path / "run"
    with SimProcess(SimConfig(fast=True, batch_delay_s=30.0)) as slow:
        config = RunConfig.of(path=prompts, base_url=slow.base_url, mode="batch", out=out, quiet=True)
        outcome: list[Any] = []
        waiting = threading.Thread(target=lambda: outcome.append(asyncio.run(execute_run(config))))
        waiting.start()
        try:
            deadline = time.monotonic() + 30
            while not first_job_id(out) and time.monotonic() < deadline:
                time.sleep(0.05)
            shown = CliRunner().invoke(app, ["batch", "status", str(out), "--base-url", slow.base_url])
            assert shown.exit_code == 0, shown.output
            assert "0001  batch_" in shown.output and "collect with: batchrun run --resume" in shown.output
            stopped = CliRunner().invoke(app, ["batch", "cancel", str(out), "--base-url", slow.base_url])
            assert stopped.exit_code == 0, stopped.output
            assert "1 job(s) asked to cancel" in stopped.output
        finally:
            waiting.join(timeout=60)
    assert outcome and not outcome[0].interrupted
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["cancelled"] * 4
