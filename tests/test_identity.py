"""An input file that changes while a run reads it is an error naming the file (exit 2), never a
silent "success 100%": the reader compares the file at the end of reading with the file as reading
began, and the run compares it again when the sending is over (rows appended after the reader's
end were never read)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from promptfiles import write_prompts
from test_workers import Run, results, slow_sim  # noqa: F401 (a fixture)
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.errors import InputChanged
from batchrun.inputs.identity import changed_while_read, input_identity
from batchrun.inputs.rows import read_prompts
from batchrun.sim import SimConfig, SimProcess


def _jsonl(path: Path, start: int, n: int, mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"id": f"r{i}", "prompt": f"question {i} " + "x" * 40}) + "\n")


@pytest.mark.parametrize("change", ["append", "truncate", "same size"])
def test_the_reader_notices_a_change_made_while_it_reads(tmp_path: Path, change: str) -> None:
    """5,000 rows (~350 KB, far past the reader's buffer): 10 read, the file changed, the rest read."""
    path = tmp_path / "p.jsonl"
    _jsonl(path, 0, 5000)
    rows = read_prompts(path)
    first = [next(rows).id for _ in range(10)]
    if change == "append":
        _jsonl(path, 5000, 20, "a")
    elif change == "truncate":
        os.truncate(path, 100 * 1000)
    else:  # rewritten in place, same length: the last MiB differs
        data = path.read_bytes()
        path.write_bytes(data[:-200] + data[-200:].replace(b"x", b"y"))
    with pytest.raises(InputChanged, match=f"{path}: changed while the run read it"):
        for _ in rows:
            pass
    assert first == [f"r{i}" for i in range(10)]


def test_an_unchanged_file_reads_to_the_end_without_a_word(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    _jsonl(path, 0, 3000)
    assert sum(1 for _ in read_prompts(path)) == 3000
    assert changed_while_read(path, input_identity(path), path.stat().st_size) is None


def test_a_file_appended_to_and_cut_during_a_run_exits_2_naming_it_then_resumes(
    slow_sim: SimProcess, tmp_path: Path
) -> None:
    """While the run sends, 40 rows are appended and the file is then cut back to 20 of them: 20
    rows that are in the file now were never read. The run ends with exit 2 naming the file (not
    'success 100%'), the summary says why, and --resume --input-changed ok sends the 20."""
    n = 1000
    write_prompts(tmp_path / "p.csv", n)
    before = (tmp_path / "p.csv").read_bytes()
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
    run.wait_for_records(tmp_path / "o" / "records.jsonl", 100)
    added = "".join(f"q{i},question {i}\n" for i in range(n, n + 40)).encode()
    (tmp_path / "p.csv").write_bytes(before + added)
    time.sleep(0.05)
    with open(tmp_path / "p.csv", "r+b") as f:  # cut in place, as `truncate` or a log rotation does
        f.truncate(len(before) + len(added) // 2)
    code = run.finish()
    said = "".join(run.lines)
    assert code == 2, said[-3000:]
    assert "p.csv: changed" in said and "--input-changed ok" in said and "Traceback" not in said
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert "p.csv: changed" in summary["run"]["input_error"]
    resumed = CliRunner().invoke(
        app,
        [
            "run",
            "--resume",
            "o",
            "--base-url",
            slow_sim.base_url,
            "-q",
            "--input-changed",
            "ok",
            "--retries",
            "6",
            "--max-retry-wait",
            "0.05",
        ],
        catch_exceptions=False,
    )
    assert resumed.exit_code == 0, resumed.output
    rows = results(tmp_path / "o")
    assert {r["id"] for r in rows if r["status"] == "ok"} == {f"q{i}" for i in range(n + 20)}


def test_rows_appended_after_the_reader_reached_the_end_are_not_lost_silently(tmp_path: Path) -> None:
    """30 rows at -c 16 are all read at once (the queue holds twice the concurrency), so the reader
    saw an unchanged file; rows appended while the requests are still out are caught when the
    sending is over."""
    write_prompts(tmp_path / "p.csv", 30)
    with SimProcess(SimConfig(fixed_ttft_s=1.0, fixed_itl_s=0.01, output_tokens=2)) as sim:
        run = Run(["run", "p.csv", "--base-url", sim.base_url, "--out", "o", "-q", "-c", "16"], tmp_path)
        run.wait_for_records(tmp_path / "o" / "records.jsonl", 1)  # the first wave is back: all 30 were read
        with open(tmp_path / "p.csv", "a", encoding="utf-8") as f:
            f.writelines(f"q{i},question {i}\n" for i in range(30, 40))
        code = run.finish()
        said = "".join(run.lines)
        assert code == 2 and "p.csv: changed during the run, after it was read (size" in said, said[-3000:]
        resumed = CliRunner().invoke(
            app,
            ["run", "--resume", "o", "--base-url", sim.base_url, "-q", "--input-changed", "ok"],
            catch_exceptions=False,
        )
    assert resumed.exit_code == 0, resumed.output
    assert sorted(r["id"] for r in results(tmp_path / "o") if r["status"] == "ok") == sorted(f"q{i}" for i in range(40))
