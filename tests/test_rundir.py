"""One run per directory: a non-empty --out is refused, a run holds a lock, and a resume checks
that the input is the file the run started with."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from promptfiles import write_prompts
from test_workers import Run, slow_sim  # noqa: F401 (a fixture)
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.errors import ConfigError, OutputError
from batchrun.inputs.identity import EDGE, HASH_WHOLE_UP_TO, input_identity
from batchrun.sim import SimProcess
from batchrun.store.rundir import LOCK_FILE, check_empty, check_input, lock_run_dir, new_run_dir


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_a_non_empty_out_is_refused_and_nothing_is_touched(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("prompt\nhello\n", encoding="utf-8")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "results.csv").write_text("the user's own file\n")
    (tmp_path / "o" / "records.jsonl").write_text('{"id": "foreign", "row": 0, "status": "ok"}\n')
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q")
    assert result.exit_code == 2
    assert "not empty" in result.output and "--resume o" in result.output and "--overwrite" in result.output
    assert (tmp_path / "o" / "results.csv").read_text() == "the user's own file\n"


@pytest.fixture(scope="module")
def finished_run(fast_sim, tmp_path_factory) -> Path:
    """One finished run of two rows, made once; tests that change it work on a copy."""
    home = tmp_path_factory.mktemp("finished")
    (home / "p.csv").write_text("id,prompt\na,one\nb,two\n", encoding="utf-8")
    result = invoke("run", str(home / "p.csv"), "--base-url", fast_sim.base_url, "--out", str(home / "o"), "-q")
    assert result.exit_code == 0, result.output
    return home / "o"


def copy_of(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / "o")
    return tmp_path / "o"


def taken_for_the_next_seconds(stem: str, seconds: int = 10) -> list[str]:
    """results/<stem>-<YYYYmmdd-HHMMSS> for now and the next seconds, each holding a file: the
    default name a run starting in that window would take is in use."""
    start = datetime.now()
    taken = [f"{stem}-{start + timedelta(seconds=s):%Y%m%d-%H%M%S}" for s in range(seconds)]
    for name in taken:
        (Path("results") / name).mkdir(parents=True)
        (Path("results") / name / "records.jsonl").write_text("")
    return taken


def test_a_default_out_taken_in_the_same_second_gets_a_new_name(fast_sim, tmp_path) -> None:
    """Two runs of one script started within a second: the second was refused (its default
    results/<stem>-<second> was the first's), and a bench wrote into the first bench's directory."""
    write_prompts(tmp_path / "prompts.csv", 4)
    for command, stem in (("run", "prompts"), ("bench", "bench-prompts")):
        taken = taken_for_the_next_seconds(stem)
        before = {p.name for p in (tmp_path / "results").iterdir()}
        extra = ["-c", "2", "-n", "4", "--no-sync", "--no-warmup"] if command == "bench" else []
        result = invoke(command, "prompts.csv", *extra, "--base-url", fast_sim.base_url, "-q")
        assert result.exit_code == 0, result.output
        written = sorted({p.name for p in (tmp_path / "results").iterdir()} - before)
        assert len(written) == 1 and re.fullmatch(rf"{stem}-\d{{8}}-\d{{6}}-2", written[0]), written
        assert (tmp_path / "results" / written[0] / "summary.json").is_file()
        assert all([p.name for p in (tmp_path / "results" / name).iterdir()] == ["records.jsonl"] for name in taken)


def test_new_run_dir_counts_up_from_the_second_s_name(tmp_path) -> None:
    now = datetime(2026, 11, 24, 10, 15, 0)
    assert new_run_dir("p", now, tmp_path) == tmp_path / "p-20261124-101500"
    (tmp_path / "p-20261124-101500").mkdir()
    (tmp_path / "p-20261124-101500-2").write_text("a file takes the name too")
    assert new_run_dir("p", now, tmp_path) == tmp_path / "p-20261124-101500-3"


def test_overwrite_replaces_the_run_files(fast_sim, finished_run, tmp_path) -> None:
    out = copy_of(finished_run, tmp_path)
    (tmp_path / "p.csv").write_text("prompt\nhello\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--overwrite")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in (out / "records.jsonl").read_text().splitlines()] == ["0"]


def test_overwrite_never_clears_a_directory_batchrun_did_not_write(tmp_path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputError, match="did not write"):
        check_empty(tmp_path, resume=False, overwrite=True)
    assert (tmp_path / "thesis.tex").exists()


def test_a_second_process_on_a_locked_directory_stops_naming_the_holder(fast_sim, finished_run, tmp_path) -> None:
    out = copy_of(finished_run, tmp_path)
    (tmp_path / "q.csv").write_text("prompt\nhello\n", encoding="utf-8")
    with lock_run_dir(out):  # flock is per open file: this stands for another process
        result = invoke("run", "--resume", "o", "--base-url", fast_sim.base_url, "-q")
        assert result.exit_code == 2
        assert "in use by another batchrun run" in result.output and f"pid {os.getpid()}" in result.output
        assert len((out / "records.jsonl").read_text().splitlines()) == 2  # nothing written
    with lock_run_dir(out):  # released when its holder let go
        pass
    with lock_run_dir(out):  # --overwrite of a running run's directory deletes nothing
        result = invoke("run", "q.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--overwrite")
        assert result.exit_code == 2 and "in use" in result.output
        assert len((out / "records.jsonl").read_text().splitlines()) == 2


def test_resume_refuses_a_changed_input_unless_told(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,one\nb,two\n", encoding="utf-8")
    assert invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q").exit_code == 0
    identity = json.loads((tmp_path / "o" / "run.json").read_text())["input_identity"]
    assert identity["size"] == len("id,prompt\na,one\nb,two\n") and identity["hashed"] == "whole file"
    (tmp_path / "p.csv").write_text("id,prompt\nb,two\nc,three\n", encoding="utf-8")
    result = invoke("run", "--resume", "o", "--base-url", fast_sim.base_url, "-q")
    assert result.exit_code == 2 and "changed since the run started" in result.output
    result = invoke("run", "--resume", "o", "--base-url", fast_sim.base_url, "-q", "--input-changed", "ok")
    assert result.exit_code == 0, result.output
    assert "1 id(s) done earlier are not in the input any more" in result.output and ": a" in result.output
    sent = [json.loads(line)["id"] for line in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    assert sent == ["a", "b", "c"]  # b was done: matched by id, not sent again


def test_resume_with_another_file_is_refused(fast_sim, finished_run, tmp_path) -> None:
    copy_of(finished_run, tmp_path)
    (tmp_path / "q.csv").write_text("id,prompt\na,one\nb,two\n", encoding="utf-8")
    result = invoke("run", "q.csv", "--resume", "o", "--base-url", fast_sim.base_url, "-q")
    assert result.exit_code == 2 and "the run read" in result.output


def test_big_files_hash_their_first_and_last_mib(tmp_path) -> None:
    path = tmp_path / "big.csv"
    body = bytearray(b"x" * (HASH_WHOLE_UP_TO + EDGE))
    path.write_bytes(bytes(body))
    before = input_identity(path)
    body[EDGE + 10] = ord("y")  # the middle: not hashed (size and ends are)
    path.write_bytes(bytes(body))
    assert input_identity(path) == before and before["hashed"] == "first and last MiB"
    body[-1] = ord("y")
    path.write_bytes(bytes(body))
    with pytest.raises(ConfigError, match="changed"):
        check_input(before, input_identity(path), accept_changed=False)
    assert check_input(before, input_identity(path), accept_changed=True) is not None


# --- the lock: what it says, its mode, and that it goes away ---------------------------------------

KEY = "hrd-LOCKKEY-5c0ffee5c0ffee5c0ffee"
PASSWORD = "hunter2-7e3b9d"
QUERY_KEY = "qk-9f8e7d6c5b4a39281706"


def _secret_url(base_url: str) -> str:
    return base_url.replace("http://", f"http://bob:{PASSWORD}@") + f"?api_key={QUERY_KEY}"


def _wait_for(check, proc: subprocess.Popen, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} never happened (exit {proc.poll()})")


def _assert_lock_says_no_secret(lock: Path, pid: int) -> None:
    raw = lock.read_bytes()
    for secret in (KEY, PASSWORD, QUERY_KEY, "api_key", "bob:"):
        assert secret.encode() not in raw, raw
    data = json.loads(raw)
    assert set(data) == {"pid", "host", "since", "subcommand", "input", "endpoint"}, data
    assert data["pid"] == pid and data["host"] == socket.gethostname() and data["input"] == "p.csv"
    assert data["subcommand"] == "batchrun run" and re.fullmatch(r"127\.0\.0\.1:\d+", data["endpoint"])
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


@pytest.mark.parametrize("ending", ["normal", "SIGINT", "SIGTERM", "SIGINT twice"])
def test_the_lock_names_no_secret_is_0600_and_is_gone_when_the_run_ends(
    slow_sim: SimProcess, tmp_path: Path, ending: str
) -> None:
    """A base URL with user:password and ?api_key=, a key in the environment: while the run goes,
    the lock holds pid, host, start time, subcommand, input and endpoint host only, mode 0600;
    it is gone after a normal end, after Ctrl-C, after SIGTERM and after a second Ctrl-C (which
    exits at once)."""
    rows = 60 if ending == "normal" else 3000
    write_prompts(tmp_path / "p.csv", rows)
    lock, records_file = tmp_path / "o" / LOCK_FILE, tmp_path / "o" / "records.jsonl"
    run = Run(
        [
            "run",
            "p.csv",
            "--base-url",
            _secret_url(slow_sim.base_url),
            "--out",
            "o",
            "-q",
            "-c",
            "2",
            "--retries",
            "6",
            "--max-retry-wait",
            "0.05",
        ],
        tmp_path,
        env={"OPENAI_API_KEY": KEY},
    )
    _wait_for(lambda: records_file.exists() and records_file.read_bytes().count(b"\n") >= 5, run.proc, "five records")
    if ending != "normal":
        _assert_lock_says_no_secret(lock, run.proc.pid)
        for sig in {
            "SIGINT": [signal.SIGINT],
            "SIGTERM": [signal.SIGTERM],
            "SIGINT twice": [signal.SIGINT, signal.SIGINT],
        }[ending]:  # a second Ctrl-C exits at once
            os.kill(run.proc.pid, sig)
            time.sleep(0.01)
    code = run.finish()
    assert code == (0 if ending == "normal" else 130), "".join(run.lines)[-2000:]
    assert not lock.exists()
    assert "Traceback" not in "".join(run.lines)


def _black_hole() -> socket.socket:
    """A listening socket nobody accepts from: a connect succeeds, a request is never answered."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    return server


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_lock_is_gone_after_a_signal_before_the_first_request(tmp_path: Path, sig: int) -> None:
    """The run holds its lock while it waits on an endpoint that never answers GET /models:
    outside the sending phase too, Ctrl-C and SIGTERM unwind the run (exit 130, one line)."""
    write_prompts(tmp_path / "p.csv", 3)
    with _black_hole() as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/v1"
        run = Run(["run", "p.csv", "--base-url", url, "--out", "o", "-q", "--timeout", "120"], tmp_path)
        lock = tmp_path / "o" / LOCK_FILE
        _wait_for(lock.exists, run.proc, "the lock")
        time.sleep(0.2)  # into the wait for /models
        os.kill(run.proc.pid, sig)
        assert run.finish() == 130, "".join(run.lines)
    assert not lock.exists()
    text = "".join(run.lines)
    assert "Traceback" not in text and text.strip().splitlines()[-1] == "batchrun: interrupted", text


def test_a_lock_left_by_a_sigkilled_run_is_taken_over_with_a_message(slow_sim: SimProcess, tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 400)
    out = tmp_path / "o"
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
            "2",
            "--retries",
            "6",
            "--max-retry-wait",
            "0.05",
        ],
        tmp_path,
    )
    _wait_for(lambda: (out / "records.jsonl").exists(), run.proc, "the first record")
    os.kill(run.proc.pid, signal.SIGKILL)
    run.finish()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == run.proc.pid  # left behind
    result = invoke(
        "run", "--resume", "o", "--base-url", slow_sim.base_url, "-q", "--retries", "6", "--max-retry-wait", "0.05"
    )
    assert result.exit_code == 0, result.output
    assert f"taking over the lock left by a run that did not end cleanly (pid {run.proc.pid} on" in result.output
    assert not (out / LOCK_FILE).exists()


def test_an_old_lock_with_the_command_line_is_replaced_not_shown(tmp_path: Path) -> None:
    """An older batchrun kept the whole command line (URL password included) in a 0644 lock: it
    is taken over without showing that line, and replaced by a new 0600 file."""
    lock = tmp_path / LOCK_FILE
    lock.write_text(
        json.dumps(
            {
                "pid": 4_000_000,
                "host": "elsewhere",
                "since": "2026-01-01 00:00:00 UTC",
                "command": f"batchrun run --base-url http://bob:{PASSWORD}@h/v1",
            }
        )
    )
    lock.chmod(0o644)
    said: list[str] = []
    with lock_run_dir(tmp_path, {"subcommand": "batchrun run"}, said.append):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    [message] = said
    assert PASSWORD not in message and "pid 4000000 on elsewhere" in message
    assert "cannot see elsewhere's processes" in message  # another host: what batchrun trusts


def test_a_second_taker_of_a_held_lock_changes_nothing(tmp_path: Path) -> None:
    with lock_run_dir(tmp_path, {"subcommand": "batchrun run"}):
        before = (tmp_path / LOCK_FILE).read_bytes()
        with pytest.raises(OutputError, match=f"pid {os.getpid()} on .*: batchrun run"):
            with lock_run_dir(tmp_path):
                pass
        assert (tmp_path / LOCK_FILE).read_bytes() == before
    assert not (tmp_path / LOCK_FILE).exists()
