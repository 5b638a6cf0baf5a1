"""One run per directory: a non-empty --out is refused, a run holds a lock, and a resume checks
that the input is the file the run started with."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.errors import ConfigError, OutputError
from batchrun.store.rundir import (EDGE, HASH_WHOLE_UP_TO, check_empty, check_input, input_identity,
                                   lock_run_dir)


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
    with lock_run_dir(out):                      # flock is per open file: this stands for another process
        result = invoke("run", "--resume", "o", "--base-url", fast_sim.base_url, "-q")
        assert result.exit_code == 2
        assert "in use by another batchrun run" in result.output and f"pid {os.getpid()}" in result.output
        assert len((out / "records.jsonl").read_text().splitlines()) == 2      # nothing written
    with lock_run_dir(out):                      # released when its holder let go
        pass
    with lock_run_dir(out):                      # --overwrite of a running run's directory deletes nothing
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
    assert sent == ["a", "b", "c"]              # b was done: matched by id, not sent again


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
    body[EDGE + 10] = ord("y")                  # the middle: not hashed (size and ends are)
    path.write_bytes(bytes(body))
    assert input_identity(path) == before and before["hashed"] == "first and last MiB"
    body[-1] = ord("y")
    path.write_bytes(bytes(body))
    with pytest.raises(ConfigError, match="changed"):
        check_input(before, input_identity(path), accept_changed=False)
    assert check_input(before, input_identity(path), accept_changed=True) is not None
