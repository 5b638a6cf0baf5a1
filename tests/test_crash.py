"""Crash safety: a run SIGKILLed again and again still ends with every row exactly once and no
finished row lost; an output directory that cannot be written, or a disk that fills up, stops
the run with a clear error instead of a traceback or a silent loss."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess
from batchrun.store.outputs import index_records

N = 2500
KILLS = 4


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    # A few ms per request: a run of thousands of rows lasts seconds, so kills land mid-run.
    with SimProcess(SimConfig(fixed_ttft_s=0.004, fixed_itl_s=0.002, output_tokens=4)) as server:
        yield server


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def parse_records(path: Path, torn_allowed: set[int]) -> list[dict]:
    """Every line of records.jsonl parses, except torn tails a kill left (by byte offset)."""
    records, offset = [], 0
    with open(path, "rb") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                assert offset in torn_allowed, f"unparseable line at byte {offset}: {line[:80]!r}"
            offset += len(line)
    return records


def test_repeated_sigkill_and_resume_ends_with_every_row_once(sim: SimProcess, tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", N)
    out, records_path = tmp_path / "o", tmp_path / "o" / "records.jsonl"
    rng = random.Random(20261123)
    torn: set[int] = set()
    ok_so_far: set[str] = set()
    sends_of_ok: dict[str, int] = {}
    args = ["run", "p.csv", "--base-url", sim.base_url, "--out", "o", "-q", "-c", "16"]
    for kill in range(KILLS):
        before = line_count(records_path)
        target = before + rng.randint(150, 450)  # seeded kill points, counted in records written
        proc = start(
            args if kill == 0 else ["run", "--resume", "o", "--base-url", sim.base_url, "-q", "-c", "16"], tmp_path
        )
        deadline = time.monotonic() + 60
        while line_count(records_path) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, f"run {kill} ended before its kill point: {proc.communicate()[1][-2000:]}"
        proc.kill()
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        data = records_path.read_bytes()
        if data and not data.endswith(b"\n"):
            torn.add(data.rindex(b"\n") + 1 if b"\n" in data else 0)
        records = parse_records(records_path, torn)
        json.loads((out / "run.json").read_text(encoding="utf-8"))  # readable after every kill
        latest = {r["id"]: r["status"] for r in records}
        ok_now = {rid for rid, status in latest.items() if status == "ok"}
        assert ok_so_far <= ok_now, f"ok rows lost: {sorted(ok_so_far - ok_now)[:5]}"
        sends = _sends(records)
        assert all(sends[rid] == sends_of_ok[rid] for rid in ok_so_far), "an ok row was sent again"
        ok_so_far = ok_now
        sends_of_ok = {rid: sends[rid] for rid in ok_now}
        assert len(ok_now) < N
    final = CliRunner().invoke(
        app, ["run", "--resume", "o", "--base-url", sim.base_url, "-q", "-c", "16"], catch_exceptions=False
    )
    assert final.exit_code == 0, final.output
    records = parse_records(records_path, torn)
    sends = _sends(records)
    assert all(sends[rid] == sends_of_ok[rid] for rid in ok_so_far)
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(N)]
    assert all(r["status"] == "ok" for r in rows)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["summary"]["counts"]["ok"] == N and summary["summary"]["counts"]["total"] == N
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not list(out.glob("*.tmp"))


def _sends(records: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["id"]] = counts.get(r["id"], 0) + 1
    return counts


def test_a_torn_run_json_is_a_clear_error_on_resume(sim: SimProcess, tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 5)
    first = CliRunner().invoke(app, ["run", "p.csv", "--base-url", sim.base_url, "--out", "o", "-q"])
    assert first.exit_code == 0, first.output
    (tmp_path / "o" / "run.json").write_text('{"wall_time_s": 0.1, "conf', encoding="utf-8")
    again = CliRunner().invoke(app, ["run", "--resume", "o", "--base-url", sim.base_url, "-q"])
    assert again.exit_code == 2, again.output
    assert "cannot read o/run.json" in again.output and "Traceback" not in again.output


# --- outputs that cannot be written ------------------------------------------------------------


def _chmod_blocks_writes(path: Path) -> bool:
    path.mkdir()
    path.chmod(0o500)
    try:
        (path / "probe").write_text("x")
    except PermissionError:
        return True
    (path / "probe").unlink()
    return False


@pytest.mark.parametrize("where", ["under_a_regular_file", "in_proc", "read_only_directory"])
def test_unwritable_output_directory_fails_before_anything_is_sent(tmp_path: Path, where: str) -> None:
    write_prompts(tmp_path / "p.csv", 5)
    if where == "under_a_regular_file":
        (tmp_path / "a_file").write_text("not a directory")
        out = tmp_path / "a_file" / "o"
    elif where == "in_proc":
        out = Path("/proc/batchrun-cannot-write-here/o")
    else:
        out = tmp_path / "ro"
        if not _chmod_blocks_writes(out):
            out.chmod(0o700)
            pytest.skip("running as root: chmod 0o500 does not stop writes (the other cases cover this)")
    with SimProcess(SimConfig(fast=True)) as server:
        result = CliRunner().invoke(app, ["run", "p.csv", "--base-url", server.base_url, "--out", str(out), "-q"])
        stats = server.stats()
    if where == "read_only_directory":
        out.chmod(0o700)
    assert result.exit_code == 2, result.output
    assert f"cannot write to {out}" in result.output and "choose another --out" in result.output
    assert "Traceback" not in result.output
    assert stats["requests"] == 0 and stats["responses"] == {}  # not even the /models check


# --- a disk that fills up ---------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs; skipped where mounting is not permitted (not root, or a container)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("rows", [400, 12], ids=["fills-during-the-run", "fills-writing-the-reports"])
def test_full_disk_stops_with_a_clear_output_error(tiny_disk: Path, tmp_path: Path, rows: int) -> None:
    write_prompts(tmp_path / "p.csv", rows)
    out = tiny_disk / "o"
    with SimProcess(SimConfig(fast=True)) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "batchrun", "run", "p.csv", "--base-url", server.base_url, "--out", str(out), "-q"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "No space left on device" in proc.stderr and "batchrun: error: cannot write" in proc.stderr
    # Nothing lost silently: every ok record on disk is whole, and a resume elsewhere would send
    # only the rest. No half-written temp file is left taking space.
    ok = {rid: status for rid, (_, _, status) in index_records(out / "records.jsonl").items()}
    assert all(status in ("ok", "cancelled") for status in ok.values())
    assert not list(out.glob("*.tmp"))
    if rows == 12:
        assert len(ok) == 12 and set(ok.values()) == {"ok"}
