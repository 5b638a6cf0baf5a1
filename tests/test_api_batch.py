"""batchrun.batch_status() / batch_cancel(): a batch-mode run's jobs from Python, against the
built-in endpoint's Batch API on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

import batchrun
from batchrun.cli import app
from batchrun.errors import ConfigError


def batch_run(prompts: Path, out: Path, url: str) -> None:
    result = CliRunner().invoke(
        app, ["run", str(prompts), "--mode", "batch", "--base-url", url, "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output


def test_status_of_a_finished_batch_run_as_jobs_and_as_the_clis_lines(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", 3)
    with batchrun.serve(fast=True, batch_delay=0.1) as url:
        batch_run(prompts, tmp_path / "o", url)
        shown = batchrun.batch_status(tmp_path / "o", base_url=url)
        cli = CliRunner().invoke(app, ["batch", "status", str(tmp_path / "o"), "--base-url", url])
    [job] = shown.jobs
    assert (job.status, job.requests, job.collected, job.request_counts["completed"]) == ("completed", 3, True, 3)
    assert shown.lines[0].startswith(f"0001  {job.batch_id}") and "3 ok, 0 failed of 3" in shown.lines[0]
    assert cli.exit_code == 0 and cli.stdout == str(shown) + "\n"


def test_inside_a_running_loop_it_runs_in_a_thread_of_its_own(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", 2)
    with batchrun.serve(fast=True, batch_delay=0.1) as url:
        batch_run(prompts, tmp_path / "o", url)

        async def main() -> Any:
            return batchrun.batch_status(tmp_path / "o", base_url=url)

        assert [j.status for j in asyncio.run(main()).jobs] == ["completed"]


def test_cancel_stops_the_open_jobs_of_a_run_that_waits(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", 4)
    out = tmp_path / "run"
    with batchrun.serve(fast=True, batch_delay=30.0) as url:
        waiting = threading.Thread(
            target=lambda: batchrun.run(prompts, mode="batch", base_url=url, out=out, quiet=True)
        )
        waiting.start()
        try:
            deadline = time.monotonic() + 30
            while not _job_id(out) and time.monotonic() < deadline:
                time.sleep(0.05)
            stopped = batchrun.batch_cancel(out, base_url=url)
        finally:
            waiting.join(timeout=60)
    assert [j.status for j in stopped.jobs] in (["cancelling"], ["cancelled"])
    assert stopped.lines[-1].startswith("1 job(s) asked to cancel")


def _job_id(out: Path) -> str | None:
    try:
        jobs = json.loads((out / "run.json").read_text())["batch"]["jobs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return jobs[0].get("batch_id") if jobs else None


def test_a_directory_without_jobs_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no Batch API jobs"):
        batchrun.batch_status(tmp_path)
