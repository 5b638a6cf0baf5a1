"""batchrun.run / batchrun.arun, the Python face, through real boundaries: the built-in endpoint on
loopback (in a child process, or in the test's own event loop), plain scripts in subprocesses,
and the command line (CliRunner) for resuming across the two faces."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

import batchrun
from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess
from batchrun.store.outputs import neutralize

SCRIPT_ENV = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """A fast built-in endpoint in a child process: `run()` starts its own event loop."""
    with SimProcess(SimConfig(fast=True, seed=3)) as sim:
        yield sim.base_url


def _people(n: int = 5) -> pd.DataFrame:
    """Prompts with extra columns of several dtypes and an index of the caller's own."""
    return pd.DataFrame(
        {
            "prompt": [f"Say something about person {i}" for i in range(n)],
            "age": pd.Series(range(20, 20 + n), dtype="int64"),
            "score": [i / 4 for i in range(n)],
            "team": pd.Categorical(["red", "blue"] * (n // 2) + ["red"] * (n % 2)),
            "joined": pd.to_datetime([f"2024-01-{i + 1:02d}" for i in range(n)]),
            "status": ["member"] * n,  # the answer's `status` must not overwrite it
        },
        index=pd.Index([100 + 10 * i for i in range(n)], name="person"),
    )


def _cell(value: Any) -> str:
    """A frame cell as results.csv writes it (numbers as Python does, formulas escaped)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "true" if value else "false"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return repr(float(value))
    if type(value).__name__.startswith("int"):
        return str(int(value))
    return neutralize(str(value))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- the snippet, as a user runs it


SNIPPET = """
    import asyncio, json, sys
    import pandas as pd
    import pydantic
    import batchrun

    class Answer(pydantic.BaseModel):
        label: str
        confidence: float

    df = pd.DataFrame({"prompt": ["Is water wet?", "Is fire cold?", "Is ice hot?"], "n": [1, 2, 3]})
    OPTIONS = dict(model="gpt-4o-mini", concurrency=32, json_schema=Answer, quiet=True,
                   builtin_option=["fast=true"])

    def show(run):
        frame = run.frame
        print(json.dumps({
            "columns": list(frame.columns), "rows": len(frame), "ok": run.ok, "failed": run.failed,
            "labels": [type(v).__name__ for v in frame["label"]], "n": frame["n"].tolist(),
            "counts": run.summary.counts.to_dict(), "simulated": run.simulated, "out": str(run.out_dir),
            "repr": repr(run),
        }))
"""


def _script(body: str, tmp_path: Path) -> dict[str, Any]:
    code = textwrap.dedent(SNIPPET) + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=SCRIPT_ENV, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == "", done.stderr  # quiet=True: not a line
    shown: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return shown


def _check_snippet(shown: dict[str, Any]) -> None:
    assert shown["rows"] == 3 and shown["ok"] == 3 and shown["failed"] == 0
    assert shown["columns"][:2] == ["prompt", "n"] and {"label", "confidence", "status", "text"} <= set(
        shown["columns"]
    )
    assert shown["labels"] == ["str", "str", "str"] and shown["n"] == [1, 2, 3]
    assert shown["counts"]["ok"] == 3 and shown["simulated"] is True
    assert shown["repr"].startswith("<batchrun.Run 3 rows: 3 ok, 0 failed;") and shown["out"] in shown["repr"]


def test_the_snippet_in_a_plain_script(tmp_path: Path) -> None:
    _check_snippet(_script("show(batchrun.run(df, **OPTIONS))", tmp_path))


def test_the_snippet_inside_asyncio_run_through_arun(tmp_path: Path) -> None:
    body = """
        async def main():
            try:
                batchrun.run(df, **OPTIONS)
            except batchrun.InsideEventLoop as exc:
                assert "await batchrun.arun(" in str(exc), exc
            else:
                raise AssertionError("run() inside a running loop did not refuse")
            show(await batchrun.arun(df, **OPTIONS))

        asyncio.run(main())
    """
    _check_snippet(_script(body, tmp_path))


async def test_run_inside_a_running_loop_points_to_arun() -> None:
    with pytest.raises(batchrun.InsideEventLoop, match=r"await batchrun\.arun\(\.\.\.\)"):
        batchrun.run(["hello"])
    assert not Path("results").exists()  # refused before anything was written


# ---------------------------------------------------------------- DataFrame, list and file in; DataFrame out


def test_a_dataframe_comes_back_with_its_columns_dtypes_and_index(sim_url: str) -> None:
    people = _people()
    run = batchrun.run(people, base_url=sim_url, out="o", quiet=True, max_tokens=8)
    frame = run.frame
    assert list(frame.columns[:6]) == list(people.columns)
    pd.testing.assert_frame_equal(frame[people.columns], people)  # values, dtypes (category, datetime) and index
    assert frame["result_status"].tolist() == ["ok"] * 5 and frame["status"].tolist() == ["member"] * 5
    assert frame["completion_tokens"].dtype == "Int64" and frame["ttft_s"].dtype == "float64"
    assert (run.ok, run.failed, run.out_dir) == (5, 0, Path("o"))
    assert people.equals(_people())  # the caller's frame is not changed
    assert (Path("o") / "input.parquet").exists() and Path("o/results.csv") in run.files


def test_the_answers_in_the_frame_are_the_results_files(sim_url: str) -> None:
    run = batchrun.run(_people(4), base_url=sim_url, out="o", quiet=True, max_tokens=8)
    results = _csv_rows(Path("o/results.csv"))
    frame = run.frame.reset_index(drop=True)
    for name in ("id", "result_status", "text", "completion_tokens", "ttft_s", "latency_s"):
        assert [_cell(v) for v in frame[name]] == [r[name] for r in results], name


def test_a_file_input_frame_equals_results_csv_row_for_row(sim_url: str, tmp_path: Path) -> None:
    with open(tmp_path / "p.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt", "code", "note"])
        writer.writerows([["a", "first", "007", "=1+1"], ["b", "second", "12", ""], ["c", "third", "x", "-done"]])
    run = batchrun.run(tmp_path / "p.csv", base_url=sim_url, out="o", quiet=True, max_tokens=8)
    results = _csv_rows(Path("o/results.csv"))
    frame = run.frame
    assert list(frame.columns) == list(results[0])
    assert len(frame) == len(results) == 3
    for (_, row), written in zip(frame.iterrows(), results):
        assert {k: _cell(v) for k, v in row.items()} == written
    assert frame["code"].tolist() == ["007", "12", "x"]  # text stays text, as in the file
    assert frame["note"].tolist()[0] == "=1+1"  # the frame is not a spreadsheet: no escaping


def test_a_list_of_strings_or_dicts(sim_url: str) -> None:
    run = batchrun.run(["one", "two", "three"], base_url=sim_url, out="a", quiet=True, max_tokens=4)
    assert run.frame["prompt"].tolist() == ["one", "two", "three"] and run.ok == 3
    rows = [{"id": "x1", "prompt": "first", "topic": "cats"}, {"id": "x2", "prompt": "second", "topic": "dogs"}]
    run = batchrun.run(rows, base_url=sim_url, out="b", quiet=True, max_tokens=4)
    frame = run.frame
    assert frame["id"].tolist() == ["x1", "x2"] and frame["topic"].tolist() == ["cats", "dogs"]
    assert [json.loads(line) for line in Path("b/input.jsonl").read_text().splitlines()] == rows


def test_rows_not_sent_have_no_answer(sim_url: str) -> None:
    run = batchrun.run(_people(5), base_url=sim_url, out="o", quiet=True, limit=2, max_tokens=4)
    assert run.frame["result_status"].tolist()[:2] == ["ok", "ok"]
    assert run.frame["result_status"].isna().tolist() == [False, False, True, True, True]
    assert run.frame["completion_tokens"].isna().sum() == 3


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        (pd.DataFrame({"prompt": []}), "the DataFrame has no rows"),
        ([], "the list of prompts is empty"),
        (["fine", 3], r"prompts\[1\] is a int"),
        (pd.DataFrame({"prompt": ["a"], "mixed": [object()]}), "cannot store the DataFrame's rows as Parquet"),
    ],
)
def test_bad_python_rows_are_input_errors(prompts: Any, message: str) -> None:
    with pytest.raises(batchrun.InputError, match=message):
        batchrun.run(prompts, out="o", quiet=True)
    assert not Path("o").exists()


def test_prompts_of_another_type_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="prompts must be a path"):
        batchrun.run(42, quiet=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="give the prompts once"):
        batchrun.run(["a"], input="p.csv")


def test_a_used_directory_is_refused_before_the_rows_are_written(sim_url: str) -> None:
    batchrun.run(["a"], base_url=sim_url, out="o", quiet=True, max_tokens=4)
    before = Path("o/input.jsonl").read_bytes()
    with pytest.raises(batchrun.OutputError, match="is not empty"):
        batchrun.run(["b", "c"], base_url=sim_url, out="o", quiet=True)
    assert Path("o/input.jsonl").read_bytes() == before


def test_an_unknown_keyword_names_the_closest() -> None:
    with pytest.raises(
        TypeError, match=r"run\(\) got an unexpected keyword argument 'max_token'; did you mean 'max_tokens'"
    ):
        batchrun.run(["a"], max_token=5)
    assert not Path("results").exists()


# ---------------------------------------------------------------- resume, both ways


def test_a_python_run_resumed_from_the_command_line(sim_url: str) -> None:
    first = batchrun.run(_people(5), base_url=sim_url, out="o", quiet=True, limit=2, max_tokens=4)
    assert first.ok == 2
    result = CliRunner().invoke(app, ["run", "--resume", "o", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [r["result_status"] for r in _csv_rows(Path("o/results.csv"))] == ["ok"] * 5
    again = batchrun.run(resume="o", quiet=True)  # nothing left: the frame read back, dtypes kept
    assert again.ok == 5
    pd.testing.assert_frame_equal(again.frame[_people().columns], _people(5).reset_index(drop=True))


def test_a_command_line_run_resumed_from_python(sim_url: str) -> None:
    write_prompts(Path("p.csv"), 6)
    result = CliRunner().invoke(
        app, ["run", "p.csv", "--base-url", sim_url, "--out", "o", "-q", "--limit", "2"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    run = batchrun.run(resume="o", quiet=True)
    assert run.ok == 6 and run.frame["id"].tolist() == [f"q{i}" for i in range(6)]
    assert run.frame["status"].tolist() == ["ok"] * 6


def test_resuming_with_other_rows_is_refused_and_keeps_the_first(sim_url: str) -> None:
    batchrun.run(["a", "b", "c"], base_url=sim_url, out="o", quiet=True, limit=1, max_tokens=4)
    before = Path("o/input.jsonl").read_bytes()
    with pytest.raises(batchrun.ConfigError, match="these rows differ"):
        batchrun.run(["x", "y"], resume="o", quiet=True)
    assert Path("o/input.jsonl").read_bytes() == before
    run = batchrun.run(["a", "b", "c"], resume="o", quiet=True)  # the same rows again: fine
    assert run.ok == 3


# ---------------------------------------------------------------- how a run ends


def test_a_refused_model_raises_endpoint_refused_after_the_files_are_written(tmp_path: Path) -> None:
    with SimProcess(SimConfig(fast=True, enforce_models=True)) as sim:
        with pytest.raises(batchrun.EndpointRefused, match="refused") as caught:
            batchrun.run(["a", "b"], base_url=sim.base_url, model="no-such-model", out="o", quiet=True)
    assert caught.value.out_dir == "o" and caught.value.exit_code == 2
    assert Path("o/summary.json").exists() and Path("o/results.csv").exists()


def test_failed_requests_are_rows_not_exceptions() -> None:
    with SimProcess(SimConfig(fast=True, error_500_rate=1.0, seed=1)) as sim:
        run = batchrun.run(["a", "b", "c"], base_url=sim.base_url, out="o", quiet=True, retries=0)
    assert run.failed == 3 and run.ok == 0
    assert run.frame["status"].tolist() == ["error"] * 3


async def test_cancelling_arun_writes_the_files_then_ends_cancelled(make_sim: Any) -> None:
    sim = await make_sim(fixed_ttft_s=0.01, fixed_itl_s=0.01, output_tokens=3)
    write_prompts(Path("p.csv"), 400)
    task = asyncio.create_task(batchrun.arun("p.csv", base_url=sim.base_url, out="o", quiet=True, concurrency=2))
    records = Path("o/records.jsonl")
    for _ in range(2000):  # until rows are being recorded (bounded: 20 s)
        if records.exists() and records.stat().st_size > 0:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    summary = json.loads(Path("o/summary.json").read_text())
    assert summary["summary"]["run"]["interrupted"] is True
    done = len(_csv_rows(Path("o/results.csv")))
    assert 0 < done < 400
    run = await batchrun.arun(resume="o", quiet=True)  # and it resumes where it stopped
    assert run.ok == 400


CTRL_C_SCRIPT = """
import sys, batchrun
try:
    batchrun.run("p.csv", out="o", quiet=True, concurrency=2,
                 builtin_option=["fixed_ttft_s=0.01", "fixed_itl_s=0.01", "output_tokens=3"])
except KeyboardInterrupt as exc:
    print("KeyboardInterrupt:", exc)
    sys.exit(7)
"""


def _ctrl_c(tmp_path: Path, presses: int) -> bytes:
    """A script's run of 2,000 rows, Ctrl-C pressed `presses` times once rows are being recorded:
    what it printed (it exits 7 on KeyboardInterrupt)."""
    write_prompts(tmp_path / "p.csv", 2000)
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT],
        cwd=tmp_path,
        env=SCRIPT_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    records = tmp_path / "o" / "records.jsonl"
    deadline = time.monotonic() + 60
    while not (records.exists() and records.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    for _ in range(presses):
        child.send_signal(signal.SIGINT)
        time.sleep(0.05)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 7, err.decode()[-2000:]
    return out


def test_ctrl_c_in_a_script_raises_keyboard_interrupt_after_the_files(tmp_path: Path) -> None:
    assert b"resume=" in _ctrl_c(tmp_path, 1)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["summary"]["run"]["interrupted"] is True and (tmp_path / "o" / "results.csv").exists()


def test_ctrl_c_twice_stops_at_once_with_whole_records_and_no_lock(tmp_path: Path) -> None:
    """Wherever the second press lands (still sending, or writing the files), a KeyboardInterrupt."""
    assert _ctrl_c(tmp_path, 2).startswith(b"KeyboardInterrupt")
    lines = (tmp_path / "o" / "records.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["id"] for line in lines)  # whole lines only
    assert not (tmp_path / "o" / ".batchrun.lock").exists()
    fast = ["--builtin-option", "fixed_ttft_s=0.001", "--builtin-option", "fixed_itl_s=0.001"]  # not resumed
    result = CliRunner().invoke(
        app, ["run", "--resume", str(tmp_path / "o"), "-q", "-c", "64", *fast], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output  # and the CLI finishes it


# ---------------------------------------------------------------- what it says


def test_quiet_says_nothing_and_the_logger_hears_it(
    sim_url: str, capfd: pytest.CaptureFixture[str], caplog: Any
) -> None:
    caplog.set_level("INFO", logger="batchrun")
    batchrun.run(["a"], out="o", quiet=True, builtin_option=["fast=true"])
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert any("built-in simulated endpoint" in r.getMessage() for r in caplog.records)


def test_the_simulated_endpoint_is_said_on_stderr_unless_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    run = batchrun.run(["a"], out="o", builtin_option=["fast=true"])
    err = capfd.readouterr().err
    assert "batchrun: " in err and "built-in simulated endpoint" in err
    assert run.simulated and run.endpoint["kind"] == "builtin"


def test_summary_reads_like_the_file(sim_url: str) -> None:
    run = batchrun.run(["a", "b"], base_url=sim_url, out="o", quiet=True, max_tokens=4)
    written = json.loads(Path("o/summary.json").read_text())
    assert run.summary.to_dict() == written
    assert run.summary.counts.ok == written["summary"]["counts"]["ok"] == 2
    assert run.summary.latency_s.p50 == written["summary"]["latency_s"]["p50"]
    assert run.summary.config.max_tokens == 4 and run.summary.endpoint.to_dict() == written["endpoint"]
    with pytest.raises(AttributeError, match="has no 'nope'"):
        run.summary.nope  # noqa: B018


def test_a_bad_row_mid_run_raises_after_the_rows_before_are_recorded(sim_url: str) -> None:
    rows = [{"prompt": "fine"}, {"prompt": "also fine"}, {"prompt": ""}, {"prompt": "never read"}]
    with pytest.raises(batchrun.InputError) as caught:
        batchrun.run(rows, base_url=sim_url, out="o", quiet=True, concurrency=1, max_tokens=4)
    assert caught.value.out_dir == "o" and "input.jsonl" in str(caught.value)
    statuses = [r["status"] for r in _csv_rows(Path("o/results.csv"))]
    assert statuses[:2] == ["ok", "ok"]


def test_progress_is_shown_unless_quiet(sim_url: str, capfd: pytest.CaptureFixture[str]) -> None:
    batchrun.run(["a", "b"], base_url=sim_url, out="o", max_tokens=4)
    err = capfd.readouterr().err
    assert "batchrun: 2/2 rows (100%), ok 2, failed 0" in err  # stderr is no terminal here: plain lines


def test_dry_run_is_refused_before_anything_is_written() -> None:
    with pytest.raises(batchrun.ConfigError, match="batchrun run --dry-run"):
        batchrun.run(["a"], out="o", dry_run=True)
    assert not Path("o").exists()


def test_a_bad_option_is_refused_before_the_rows_are_written() -> None:
    with pytest.raises(batchrun.ConfigError, match="--concurrency"):
        batchrun.run(["a"], out="o", concurrency="lots")
    assert not Path("o").exists()


def test_a_run_stopped_at_its_budget_is_returned_with_its_rows() -> None:
    with SimProcess(SimConfig(fast=True, output_tokens=50)) as sim:
        run = batchrun.run(
            [f"Name a colour ({i})" for i in range(20)],
            base_url=sim.base_url,
            out="o",
            quiet=True,
            concurrency=4,
            price_in=0,
            price_out=1000,
            max_tokens=50,
            max_cost=0.33,
        )
    assert run.max_cost is not None and run.max_cost["reached"] and run.ok == 6
    assert "stopped at the budget" in repr(run)
    assert run.frame["status"].tolist() == ["ok"] * 6  # the rows not sent are not recorded
