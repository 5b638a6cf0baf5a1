"""Multi-turn sessions and trace replay end to end on the built-in endpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.inputs.traces import rebase, trace_offsets
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
    result = invoke("run", "s.csv", "--max-tokens", "4", "--on-bad-row", "skip", "--out", "o", "-q",
                    base_url=fast_sim.base_url)
    assert result.exit_code == 0, result.output
    skipped = {r.id: r for r in records(tmp_path / "o")}["a1#duplicate-row-1"]
    assert skipped.status == "skipped" and skipped.synthetic_id
    assert skipped.input == {"id": "a1", "session_id": "B", "turn": "1", "prompt": "beta"}


def test_a_failed_turn_aborts_its_session_and_resume_reruns_it_whole(fast_sim, tmp_path: Path) -> None:
    rows = [["x1", "X", 1, "first"], ["x2", "X", 2, "[[sim:error=400x1]] second"], ["x3", "X", 3, "third"],
            ["y1", "Y", 1, "other session"]]
    write_csv(tmp_path / "s.csv", ["id", "session_id", "turn", "prompt"], rows)
    first = invoke("run", "s.csv", "--max-tokens", "3", "--out", "o", "-q", base_url=fast_sim.base_url)
    assert first.exit_code == 0, first.output
    status = {r.id: (r.status, r.error_type) for r in records(tmp_path / "o")}
    assert status["x2"][0] == "error" and status["x3"] == ("error", "SessionAborted") and status["y1"][0] == "ok"
    sent_before = len(records(tmp_path / "o"))
    second = invoke("run", "--resume", "o", "-q", base_url=fast_sim.base_url)
    assert second.exit_code == 0, second.output
    again = records(tmp_path / "o")[sent_before:]
    assert sorted(r.id for r in again) == ["x1", "x2", "x3"]           # the whole session, not y1
    assert all(r.status == "ok" for r in again)


def test_generated_sessions_with_think_time(fast_sim, tmp_path: Path) -> None:
    spec = "prompt_tokens=40,output_tokens=3,sessions=3,turns=3,think_s=0.05"
    result = invoke("run", "--synthetic", spec, "--out", "o", "-q", base_url=fast_sim.base_url)
    assert result.exit_code == 0, result.output
    recs = sorted(records(tmp_path / "o"), key=lambda r: r.row)
    assert len(recs) == 9 and all(r.status == "ok" for r in recs)
    for s in range(3):
        turns = recs[3 * s: 3 * s + 3]
        assert turns[0].prompt_tokens == 40 and turns[2].prompt_tokens > turns[1].prompt_tokens > 40
        assert turns[1].sent_s - turns[0].end_s >= 0.05                  # the think time


def test_trace_offsets_from_timestamps_and_delays(tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv", ["prompt", "timestamp"], [["a", 5000], ["b", 5500], ["c", 7000]])
    assert trace_offsets(tmp_path / "t.csv", None, 2.0) == {0: 0.0, 1: 0.25, 2: 1.0}
    write_csv(tmp_path / "d.csv", ["prompt", "delay_s"], [["a", 1], ["b", 0.5], ["c", 2]])
    assert trace_offsets(tmp_path / "d.csv", None, 1.0) == {0: 0.0, 1: 0.5, 2: 2.5}
    assert rebase([3.0, 4.5]) == [0.0, 1.5]


def test_trace_replay_keeps_the_schedule_and_reports_the_lag(fast_sim, tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv", ["id", "timestamp", "prompt"],
              [[f"r{i}", 1000 * i, f"row {i}"] for i in (3, 0, 2, 1)])    # out of order on purpose
    result = invoke("run", "t.csv", "--speedup", "10", "--max-tokens", "2", "--out", "o", "-q",
                    base_url=fast_sim.base_url)
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
    (tmp_path / "trace.jsonl").write_text("".join(
        json.dumps({"timestamp": t, "input_length": i, "output_length": o, "hash_ids": h}) + "\n"
        for t, i, o, h in rows))
    before = fast_sim.stats()["prefix_cache_hit_tokens"]
    result = invoke("run", "trace.jsonl", "--speedup", "10", "-c", "1", "--out", "o", "-q", base_url=fast_sim.base_url)
    assert result.exit_code == 0, result.output
    by_row = {r.row: r for r in records(tmp_path / "o")}
    assert [(by_row[k].prompt_tokens, by_row[k].completion_tokens) for k in range(4)] == [(i, o) for _, i, o, _ in rows]
    assert [by_row[k].scheduled_s for k in range(4)] == pytest.approx([0.0, 0.05, 0.1, 0.12])
    # Rows 1 and 3 begin with row 0's blocks 1 and 2 (the first 600 tokens of them): served from the cache.
    assert fast_sim.stats()["prefix_cache_hit_tokens"] - before >= 2 * 576
