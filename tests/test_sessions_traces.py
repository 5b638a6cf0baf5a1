"""Multi-turn sessions and trace replay end to end on the built-in endpoint."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.inputs.traces import rebase, trace_offsets
from batchrun.sim import SimConfig, SimServer
from batchrun.sim.http import Connection, Request
from batchrun.store.outputs import done_ids
from batchrun.store.records import read_records


def invoke(*args: str, base_url: str):
    return CliRunner().invoke(app, [*args, "--base-url", base_url], catch_exceptions=False)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def records(out: Path) -> list:
    return list(read_records(out / "records.jsonl"))


def test_session_turns_go_in_order_with_the_history(fast_sim, tmp_path: Path) -> None:
    rows = [[f"a{t}", "A", t, f"alpha turn {t}"] for t in (3, 1, 2)] + [["b1", "B", 1, "beta only turn"]]
    write_csv(tmp_path / "s.csv", ["id", "session_id", "turn", "prompt"], rows)
    result = invoke("run", "s.csv", "--max-tokens", "4", "--out", "o", "-q", base_url=fast_sim.base_url)
    assert result.exit_code == 0, result.output
    by_id = {r.id: r for r in records(tmp_path / "o")}
    assert by_id["a1"].end_s <= by_id["a2"].sent_s and by_id["a2"].end_s <= by_id["a3"].sent_s
    # Each turn carries the previous turns and answers: the prompt grows by them (sim: ceil(chars / 4)).
    a1, a2 = by_id["a1"], by_id["a2"]
    expected = -(-(len("alpha turn 1") + len(a1.text) + len("alpha turn 2")) // 4)
    assert a2.prompt_tokens == expected and by_id["a3"].prompt_tokens > expected
    turns = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]["turns"]
    assert [(t["turn"], t["count"]) for t in turns] == [(1, 2), (2, 1), (3, 1)]


def test_a_skipped_session_row_keeps_its_input_and_its_made_up_id_flag(fast_sim, tmp_path: Path) -> None:
    rows = [["a1", "A", 1, "alpha"], ["a1", "B", 1, "beta"]]
    write_csv(tmp_path / "s.csv", ["id", "session_id", "turn", "prompt"], rows)
    result = invoke(
        "run", "s.csv", "--max-tokens", "4", "--on-bad-row", "skip", "--out", "o", "-q", base_url=fast_sim.base_url
    )
    assert result.exit_code == 0, result.output
    skipped = {r.id: r for r in records(tmp_path / "o")}["a1#duplicate-row-1"]
    assert skipped.status == "skipped" and skipped.synthetic_id
    assert skipped.input == {"id": "a1", "session_id": "B", "turn": "1", "prompt": "beta"}


def test_a_failed_turn_aborts_its_session_and_resume_carries_it_on_from_that_turn(fast_sim, tmp_path: Path) -> None:
    rows = [
        ["x1", "X", 1, "first"],
        ["x2", "X", 2, "[[sim:error=400x1]] second"],
        ["x3", "X", 3, "third"],
        ["y1", "Y", 1, "other session"],
    ]
    write_csv(tmp_path / "s.csv", ["id", "session_id", "turn", "prompt"], rows)
    first = invoke("run", "s.csv", "--max-tokens", "3", "--out", "o", "-q", base_url=fast_sim.base_url)
    assert first.exit_code == 0, first.output
    status = {r.id: (r.status, r.error_type) for r in records(tmp_path / "o")}
    assert status["x2"][0] == "error" and status["x3"] == ("error", "SessionAborted") and status["y1"][0] == "ok"
    x1 = {r.id: r for r in records(tmp_path / "o")}["x1"]
    sent_before = len(records(tmp_path / "o"))
    second = invoke("run", "--resume", "o", "-q", base_url=fast_sim.base_url)
    assert second.exit_code == 0, second.output
    again = {r.id: r for r in records(tmp_path / "o")[sent_before:]}
    assert sorted(again) == ["x2", "x3"]  # x1 was ok: not sent again, nor y1's session
    assert all(r.status == "ok" for r in again.values())
    # x2 carries x1's recorded answer as history: the sim counts the characters of every message.
    assert again["x2"].prompt_tokens == -(-(len("first") + len(x1.text) + len(rows[1][3])) // 4)


class TurnCountingSim(SimServer):
    """The built-in endpoint, also counting chat requests by their last message's text (one per
    turn in the test's input), so a test sees how often each turn reached the server."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.sent: Counter[str] = Counter()

    def handle(self, conn: Connection, req: Request) -> None:
        if req.method == "POST" and req.path.endswith("/chat/completions"):
            self.sent[json.loads(req.body)["messages"][-1]["content"]] += 1
        super().handle(conn, req)


async def run_until(args: list[str], cwd: Path, records: Path, lines: int | None) -> None:
    """`batchrun *args` in a child process; SIGKILLed once records.jsonl has `lines` lines (None:
    left to finish). The sim runs on this loop, so the waits here are asyncio's."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "batchrun",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    try:
        while lines is not None and proc.returncode is None and time.monotonic() < deadline:
            if records.exists() and records.read_bytes().count(b"\n") >= lines:
                proc.kill()
                break
            await asyncio.sleep(0.005)
        _, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    expected = 0 if lines is None else -9
    assert proc.returncode == expected, f"rc {proc.returncode} (wanted {expected}): {err.decode()[-2000:]}"


async def test_a_killed_sessions_run_resumes_without_sending_an_ok_turn_again(tmp_path: Path) -> None:
    """30 sessions of 2 to 6 turns (so sessions end at different times and a kill finds some half
    done), SIGKILLed twice at different points (counted in records written), resumed each time: no
    turn whose latest record was ok when a run started reaches the server in that run (its
    recorded answer is the next turn's history), and the last run ends every turn ok. Turns in
    flight at a kill (never recorded) are sent again, as they must be."""
    text = {f"s{s}-t{t}": f"session {s} turn {t}" for s in range(30) for t in range(1, 2 + s % 5 + 1)}
    write_csv(
        tmp_path / "s.csv",
        ["id", "session_id", "turn", "prompt"],
        [[rid, rid.split("-")[0], rid.split("-t")[1], prompt] for rid, prompt in text.items()],
    )
    records_path = tmp_path / "o" / "records.jsonl"
    server = TurnCountingSim(SimConfig(fixed_ttft_s=0.1, fixed_itl_s=0.005, output_tokens=4))
    await server.start()
    try:
        base = ["--base-url", server.base_url, "-q", "-c", "6", "--max-tokens", "4"]
        runs = [
            (["run", "s.csv", "--out", "o", *base], 23),
            (["run", "--resume", "o", *base], 57),
            (["run", "--resume", "o", *base], None),
        ]
        for args, kill_at in runs:
            ok_before = done_ids(records_path)
            server.sent.clear()
            await run_until(args, tmp_path, records_path, kill_at)
            sent_again = sorted(rid for rid in ok_before if server.sent[text[rid]])
            assert sent_again == [], f"turns recorded ok before this run and sent again: {sent_again}"
            assert all(n == 1 for n in server.sent.values()), server.sent.most_common(3)
            assert kill_at is None or len(ok_before) < len(done_ids(records_path)) < len(text)
    finally:
        await server.stop()
    assert done_ids(records_path) == set(text)


def test_generated_sessions_with_think_time(fast_sim, tmp_path: Path) -> None:
    spec = "prompt_tokens=40,output_tokens=3,sessions=3,turns=3,think_s=0.05"
    result = invoke("run", "--synthetic", spec, "--out", "o", "-q", base_url=fast_sim.base_url)
    assert result.exit_code == 0, result.output
    recs = sorted(records(tmp_path / "o"), key=lambda r: r.row)
    assert len(recs) == 9 and all(r.status == "ok" for r in recs)
    for s in range(3):
        turns = recs[3 * s : 3 * s + 3]
        assert turns[0].prompt_tokens == 40 and turns[2].prompt_tokens > turns[1].prompt_tokens > 40
        assert turns[1].sent_s - turns[0].end_s >= 0.05  # the think time


def test_trace_offsets_from_timestamps_and_delays(tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv", ["prompt", "timestamp"], [["a", 5000], ["b", 5500], ["c", 7000]])
    assert trace_offsets(tmp_path / "t.csv", None, 2.0) == {0: 0.0, 1: 0.25, 2: 1.0}
    write_csv(tmp_path / "d.csv", ["prompt", "delay_s"], [["a", 1], ["b", 0.5], ["c", 2]])
    assert trace_offsets(tmp_path / "d.csv", None, 1.0) == {0: 0.0, 1: 0.5, 2: 2.5}
    assert rebase([3.0, 4.5]) == [0.0, 1.5]


def test_trace_replay_keeps_the_schedule_and_reports_the_lag(fast_sim, tmp_path: Path) -> None:
    write_csv(
        tmp_path / "t.csv", ["id", "timestamp", "prompt"], [[f"r{i}", 1000 * i, f"row {i}"] for i in (3, 0, 2, 1)]
    )  # out of order on purpose
    result = invoke(
        "run", "t.csv", "--speedup", "10", "--max-tokens", "2", "--out", "o", "-q", base_url=fast_sim.base_url
    )
    assert result.exit_code == 0, result.output
    by_id = {r.id: r for r in records(tmp_path / "o")}
    assert [by_id[f"r{i}"].scheduled_s for i in range(4)] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert all(r.sent_s >= r.scheduled_s for r in by_id.values())
    lag = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]["schedule_lag_s"]
    assert lag["count"] == 4 and lag["min"] >= 0


def test_speedup_without_a_trace_is_a_usage_error(fast_sim, tmp_path: Path) -> None:
    write_csv(tmp_path / "p.csv", ["prompt"], [["a"]])
    result = invoke("run", "p.csv", "--speedup", "2", "-q", "--out", "o", base_url=fast_sim.base_url)
    assert result.exit_code == 2 and "timestamp or delay_s" in result.output


def test_a_bad_trace_cell_is_an_input_error(fast_sim, tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv", ["prompt", "delay_s"], [["a", 1], ["b", "soon"]])
    result = invoke("run", "t.csv", "-q", "--out", "o", base_url=fast_sim.base_url)
    assert result.exit_code == 2 and "t.csv line 3" in result.output and "delay_s" in result.output


def test_mooncake_style_trace_of_lengths_and_hash_ids(fast_sim, tmp_path: Path) -> None:
    rows = [(0, 600, 8, [1, 2]), (500, 700, 4, [1, 2, 3]), (1000, 300, 6, [4]), (1200, 1100, 5, [1, 2, 3, 5])]
    (tmp_path / "trace.jsonl").write_text(
        "".join(
            json.dumps({"timestamp": t, "input_length": i, "output_length": o, "hash_ids": h}) + "\n"
            for t, i, o, h in rows
        )
    )
    before = fast_sim.stats()["prefix_cache_hit_tokens"]
    result = invoke("run", "trace.jsonl", "--speedup", "10", "-c", "1", "--out", "o", "-q", base_url=fast_sim.base_url)
    assert result.exit_code == 0, result.output
    by_row = {r.row: r for r in records(tmp_path / "o")}
    assert [(by_row[k].prompt_tokens, by_row[k].completion_tokens) for k in range(4)] == [(i, o) for _, i, o, _ in rows]
    assert [by_row[k].scheduled_s for k in range(4)] == pytest.approx([0.0, 0.05, 0.1, 0.12])
    # Rows 1 and 3 begin with row 0's blocks 1 and 2 (the first 600 tokens of them): served from the cache.
    assert fast_sim.stats()["prefix_cache_hit_tokens"] - before >= 2 * 576


def test_a_sessions_resume_with_a_changed_file_names_only_the_ids_really_gone(fast_sim, tmp_path: Path) -> None:
    header = ["id", "session_id", "turn", "prompt"]
    kept = [["a1", "A", 1, "alpha one"], ["a2", "A", 2, "alpha two"]]
    write_csv(tmp_path / "s.csv", header, [*kept, ["b1", "B", 1, "beta one"], ["b2", "B", 2, "beta two"]])
    first = invoke("run", "s.csv", "--max-tokens", "3", "--out", "o", "-q", base_url=fast_sim.base_url)
    assert first.exit_code == 0, first.output
    write_csv(tmp_path / "s.csv", header, [*kept, ["c1", "C", 1, "gamma one"]])  # B gone, C new
    resumed = invoke("run", "--resume", "o", "-q", "--input-changed", "ok", base_url=fast_sim.base_url)
    assert resumed.exit_code == 0, resumed.output
    assert "2 id(s) done earlier are not in the input any more (kept in the results): b1, b2" in resumed.output
    assert sorted(r.id for r in records(tmp_path / "o")) == ["a1", "a2", "b1", "b2", "c1"]  # c1 alone sent
