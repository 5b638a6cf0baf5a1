"""`run --workers N`: worker processes behind one coordinator give the same rows as one process,
hold --rpm across processes, and leave every row exactly once after a killed worker, a SIGKILL of
the whole run, or Ctrl-C (then --resume)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.config import RunConfig
from batchrun.engine.channel import CREDIT, DONE, END, JOBS, READY, START, StreamChannel, encode
from batchrun.engine.coordinator import shares
from batchrun.engine.pool import PoolConfig
from batchrun.engine.workers import WorkerSpec, job_wire, serve
from batchrun.engine.workers_plan import AUTO_MIN_CONCURRENCY, worker_count
from batchrun.errors import ConfigError
from batchrun.inputs.prompt import Prompt
from batchrun.sim import SimConfig, SimProcess

FAULTS = dict(error_500_rate=0.02, error_502_rate=0.02, cut_rate=0.02, malformed_rate=0.02)


@pytest.fixture(scope="module")
def slow_sim() -> Iterator[SimProcess]:
    # A few ms per request: a run of thousands of rows lasts seconds, so kills land mid-run.
    with SimProcess(SimConfig(fixed_ttft_s=0.004, fixed_itl_s=0.002, output_tokens=4, seed=7, **FAULTS)) as server:
        yield server


@pytest.fixture(scope="module")
def headers_sim() -> Iterator[SimProcess]:
    """Fast, announcing rate limits (OpenAI's headers) far above what a test sends."""
    with SimProcess(SimConfig(fast=True, rpm=600_000, tpm=60_000_000)) as server:
        yield server


def results(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def records(out: Path) -> list[dict[str, Any]]:
    """Every whole line of records.jsonl (a kill may leave one torn last line)."""
    found = []
    for line in (out / "records.jsonl").read_bytes().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            pass
    return found


def assert_same_rows(one: Path, two: Path) -> None:
    """Two runs of the same prompts gave the same rows, and each record got its row's columns and
    request back (a worker never sees them: the coordinator puts them back)."""
    same = ("id", "row", "status", "text", "finish_reason", "prompt_tokens", "completion_tokens", "attempts", "prompt")
    assert [{k: r[k] for k in same} for r in results(one)] == [{k: r[k] for k in same} for r in results(two)]
    one_rec = {r["id"]: r for r in records(one)}
    for r in records(two):
        assert r["input"] == one_rec[r["id"]]["input"] and r["request"] == one_rec[r["id"]]["request"]


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, catch_exceptions=False)


class Run:
    """`python -m batchrun run ...` in its own process group, its stderr collected in a thread."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        base = {**os.environ, "PYTHONUNBUFFERED": "1"}
        base.pop("OPENAI_API_KEY", None)
        env = {**base, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchrun", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def worker_pids(self, timeout_s: float = 60) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            for line in list(self.lines):
                if "worker processes (" in line:
                    return [int(p) for p in re.findall(r"pid (\d+)", line)]
            time.sleep(0.01)
        raise AssertionError(f"no worker pids announced: {''.join(self.lines)[-2000:]}")

    def wait_for_records(self, path: Path, n: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            if path.exists() and path.read_bytes().count(b"\n") >= n:
                return
            time.sleep(0.005)
        raise AssertionError(f"the run ended or stalled before {n} records: {''.join(self.lines)[-2000:]}")

    def finish(self, timeout_s: float = 120) -> int:
        code = self.proc.wait(timeout_s)
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


def assert_each_row_once(out: Path, n: int) -> None:
    """results.csv has every row once, in order, all ok; records.jsonl has one ok record per row."""
    rows = results(out)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(n)]
    assert Counter(r["status"] for r in rows) == {"ok": n}
    ok = Counter(r["id"] for r in records(out) if r["status"] == "ok")
    assert set(ok) == {f"q{i}" for i in range(n)} and set(ok.values()) == {1}, "a row was recorded ok twice"


# --- plan: how many workers, which share of the concurrency ---
def test_concurrency_is_split_evenly_and_never_into_empty_shares() -> None:
    assert shares(16, 2) == [8, 8]
    assert shares(17, 2) == [9, 8]
    assert shares(3, 4) == [1, 1, 1]
    assert shares(1024, 3) == [342, 341, 341]


def test_auto_uses_cores_minus_one_only_at_high_concurrency(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 1)
    high = RunConfig.of(path=tmp_path / "p.csv", concurrency=AUTO_MIN_CONCURRENCY, workers_auto=True)
    low = RunConfig.of(path=tmp_path / "p.csv", concurrency=AUTO_MIN_CONCURRENCY - 1, workers_auto=True)
    assert worker_count(high, "rows", cores=8) == 7
    assert worker_count(high, "rows", cores=2) == 1
    assert worker_count(low, "rows", cores=8) == 1
    assert worker_count(high, "sessions", cores=8) == 1  # auto never refuses: one process
    with pytest.raises(ConfigError, match="sessions"):
        worker_count(RunConfig.of(path=tmp_path / "p.csv", workers=2), "sessions")


def test_workers_with_options_that_run_in_one_process_is_a_usage_error(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 3)
    for extra in (["-c", "auto"], ["--endpoint", "embeddings"], ["--workers", "0"], ["--workers", "two"]):
        result = invoke(["run", "p.csv", "--workers", "2", "--base-url", "http://127.0.0.1:9/v1", *extra])
        assert result.exit_code == 2, result.output
        assert "--workers" in result.output


# --- the channel ---
async def test_a_frame_cut_short_is_never_delivered() -> None:
    ours, theirs = socket.socketpair()
    channel = await StreamChannel.over(ours)
    whole, cut = encode("batch", {"records": [1, 2]}), encode("batch", {"records": [3]})
    theirs.sendall(whole + cut[:-3])
    theirs.close()
    assert await channel.recv() == ("batch", {"records": [1, 2]})
    assert await channel.recv() is None
    await channel.close()


async def test_the_worker_loop_over_a_channel_paced_by_credits(sim: Any, tmp_path: Path) -> None:
    """The worker as the coordinator (or a Ray driver) sees it: START, JOBS, END in; READY, BATCHes
    asking one credit per request (metered) and carrying the records, DONE out."""
    from batchrun.plan import jobs

    ours, theirs = socket.socketpair()
    coordinator, worker_side = await StreamChannel.over(ours), await StreamChannel.over(theirs)
    worker = asyncio.create_task(serve(worker_side))
    pool = {k: v for k, v in dataclasses.asdict(PoolConfig(concurrency=3)).items() if k != "adaptive"}
    spec = WorkerSpec(
        base_url=sim.base_url,
        api_key=None,
        basic_auth=None,
        embedded=True,
        endpoint_kind="chat",
        timeout=30.0,
        ttft_timeout=None,
        max_response_bytes=1 << 20,
        pool=pool,
        t0=time.perf_counter(),
        metered=True,
    )
    await coordinator.send(START, spec.to_dict())
    assert (await coordinator.recv())[0] == READY
    config = RunConfig.of(path=write_prompts(tmp_path / "p.csv", 1), model="batchrun-sim")
    todo = list(
        jobs(
            config,
            iter(
                Prompt(id=f"r{i}", row=i, line=i + 2, messages=[{"role": "user", "content": "hi"}]) for i in range(10)
            ),
            set(),
        )
    )
    await coordinator.send(JOBS, [job_wire(job) for job in todo])
    await coordinator.send(END)
    got, credits = [], 0
    while (message := await coordinator.recv())[0] != DONE:
        batch = message[1]
        got += batch["records"]
        if batch["want"]:
            credits += len(batch["want"])
            await coordinator.send(CREDIT, len(batch["want"]))
    await worker
    await coordinator.close()
    await worker_side.close()
    assert sorted(r["id"] for r in got) == sorted(f"r{i}" for i in range(10)), (
        credits,
        [(r["id"], r["status"]) for r in got],
    )
    assert {r["status"] for r in got} == {"ok"} and credits == 10
    assert all(r["input"] is None and r["request"] is None for r in got)  # they stay with the coordinator


# --- runs ---
def test_two_workers_give_the_rows_one_process_gives(headers_sim: SimProcess, tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 200)
    base = ["run", "p.csv", "--base-url", headers_sim.base_url, "-q", "-c", "24"]
    assert invoke([*base, "--out", "one"]).exit_code == 0
    two = invoke([*base, "--out", "two", "--workers", "2"])
    assert two.exit_code == 0, two.output
    assert "2 worker processes" in two.output
    assert_same_rows(tmp_path / "one", tmp_path / "two")
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["summary"]["counts"]["ok"] == 200


def test_rpm_holds_across_two_workers(headers_sim: SimProcess, tmp_path: Path) -> None:
    """--rpm 2400: 40 requests/s with a one-second burst of 40, for the whole run, not per worker.
    Send times come from one clock (CLOCK_MONOTONIC, shared by the processes); two workers pacing
    on their own would put up to 80 in a second and finish in half the time. The TPM limit the
    endpoint's headers announce is learned once for the run and paced by too (--tpm auto)."""
    n, per_s = 80, 40
    write_prompts(tmp_path / "p.csv", n)
    result = invoke(
        [
            "run",
            "p.csv",
            "--base-url",
            headers_sim.base_url,
            "-q",
            "-c",
            "16",
            "--workers",
            "2",
            "--rpm",
            str(per_s * 60),
            "--out",
            "o",
        ]
    )
    assert result.exit_code == 0, result.output
    limits = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]["rate_limits"]
    assert limits["provider"]["requests_per_min"] == 600_000 and limits["attempts"] == n
    assert limits["paced"] == {"rpm": per_s * 60, "tpm": 60_000_000}
    sent = sorted(a["sent_s"] for r in records(tmp_path / "o") for a in r["attempt_log"])
    assert len(sent) == n
    busiest = max(sum(1 for t in sent[i:] if t < start + 1.0) for i, start in enumerate(sent))
    assert busiest <= 2 * per_s + 1  # burst + one second's refill, with one for the window's edge
    # Lower bound only (a slow machine can only make it longer): n - burst requests at per_s a second.
    assert sent[-1] - sent[0] >= (n - per_s) / per_s * 0.95


def test_max_errors_counts_over_all_workers_and_stops_them_all(headers_sim: SimProcess, tmp_path: Path) -> None:
    """The run's fate is the coordinator's: 10 failures in total (not per worker) stop both workers."""
    n = 400
    write_prompts(tmp_path / "p.csv", [f"q {i} [[sim:error=500]]" for i in range(n)])
    result = invoke(
        [
            "run",
            "p.csv",
            "--base-url",
            headers_sim.base_url,
            "-q",
            "-c",
            "8",
            "--workers",
            "2",
            "--retries",
            "0",
            "--max-errors",
            "10",
            "--out",
            "o",
        ]
    )
    assert result.exit_code == 1, result.output
    assert "--max-errors 10" in result.output
    statuses = Counter(r["status"] for r in records(tmp_path / "o"))
    assert statuses["error"] >= 10 and set(statuses) <= {"error", "cancelled"}
    assert sum(statuses.values()) < n / 2  # stopped early: most rows left for --resume


def test_a_killed_worker_leaves_every_row_once_with_faults(slow_sim: SimProcess, tmp_path: Path) -> None:
    """2,000 rows with 8% injected faults (retried); one worker SIGKILLed mid-run: the coordinator
    sends its unfinished rows again, and the run ends with every row recorded ok exactly once.
    (bench/bench_workers.py --exact runs the same over 20,000 rows.)"""
    n = 2000
    write_prompts(tmp_path / "p.csv", n)
    run = Run(
        [
            "run",
            "p.csv",
            "--base-url",
            slow_sim.base_url,
            "--out",
            "o",
            "-q",
            "-c",
            "32",
            "--workers",
            "2",
            "--max-retry-wait",
            "0.05",
            "--retries",
            "6",
        ],
        tmp_path,
    )
    victim = run.worker_pids()[0]
    run.wait_for_records(tmp_path / "o" / "records.jsonl", n // 4)
    os.kill(victim, signal.SIGKILL)
    assert run.finish() == 0, "".join(run.lines)[-3000:]
    assert any("ended unexpectedly" in line for line in run.lines)
    assert_each_row_once(tmp_path / "o", n)
    assert Counter(r["id"] for r in records(tmp_path / "o")).most_common(1)[0][1] == 1  # one record per row


def test_ctrl_c_then_sigkill_of_the_whole_run_each_leave_it_resumable_exactly_once(
    slow_sim: SimProcess, tmp_path: Path
) -> None:
    """Ctrl-C (to the run's process group, as a terminal sends it): exit 130, summary marked
    interrupted. A resume, SIGKILLed with its workers mid-run. A last resume: every row ok once."""
    n = 1000
    write_prompts(tmp_path / "p.csv", n)
    out = tmp_path / "o"
    flags = [
        "--base-url",
        slow_sim.base_url,
        "-q",
        "-c",
        "32",
        "--workers",
        "2",
        "--max-retry-wait",
        "0.05",
        "--retries",
        "6",
    ]
    run = Run(["run", "p.csv", "--out", "o", *flags], tmp_path)
    pids = run.worker_pids()
    run.wait_for_records(out / "records.jsonl", n // 3)
    os.killpg(run.proc.pid, signal.SIGINT)
    assert run.finish() == 130, "".join(run.lines)[-3000:]
    _assert_gone(pids)
    assert json.loads((out / "summary.json").read_text())["summary"]["run"]["interrupted"] is True
    ok_first = {r["id"] for r in records(out) if r["status"] == "ok"}
    assert 0 < len(ok_first) < n

    run = Run(["run", "--resume", "o", *flags], tmp_path)
    pids = run.worker_pids()
    run.wait_for_records(out / "records.jsonl", 2 * n // 3)
    os.killpg(run.proc.pid, signal.SIGKILL)  # the run's group; its workers see their socket close
    assert run.finish() == -signal.SIGKILL
    _assert_gone(pids)
    ok_second = {r["id"] for r in records(out) if r["status"] == "ok"}
    assert ok_first < ok_second and len(ok_second) < n

    resumed = invoke(["run", "--resume", "o", *flags])
    assert resumed.exit_code == 0, resumed.output
    assert_each_row_once(out, n)


def _assert_gone(pids: list[int], timeout_s: float = 10) -> None:
    """No worker outlives its run (a dead coordinator's workers see their channel close)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"workers still running: {alive}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
