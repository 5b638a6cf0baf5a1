"""analysis/columns.py and the lean paths built on it: the run's summary from Columns read off
records.jsonl must give the figures the per-record path gives; both checked against values
worked out by hand in comments. Also the lean results index (store/outputs.latest_offsets)."""

from __future__ import annotations

import json
from array import array
from pathlib import Path

import pytest

from batchrun.analysis.columns import Columns
from batchrun.analysis.distribution import GapSample
from batchrun.analysis.metrics import summarize
from batchrun.report.summary import read_columns
from batchrun.store.outputs import _last_of_each_key, index_records, latest_dicts, latest_offsets
from batchrun.store.records import Record, RecordSink

approx = pytest.approx


def run_records() -> list[Record]:
    """Six rows, one of each outcome; times in seconds from the run's start."""
    return [
        Record(
            id="a",
            row=0,
            sent_s=0.0,
            end_s=0.3,
            ttft_s=0.1,
            latency_s=0.3,
            total_s=0.3,
            itl_s=[0.1, 0.1],
            completion_tokens=3,
            prompt_tokens=5,
            finish_reason="stop",
            text="first answer",
        ),
        Record(
            id="b",
            row=1,
            sent_s=0.1,
            end_s=0.5,
            ttft_s=0.2,
            latency_s=0.4,
            total_s=0.4,
            itl_s=[0.2],
            completion_tokens=2,
            prompt_tokens=5,
            finish_reason="stop",
            queue_wait_s=0.05,
        ),
        Record(id="c", row=2, status="error", error_type="APIError", error="boom", sent_s=0.2, end_s=1.0, attempts=2),
        Record(id="d", row=3, status="timeout", sent_s=0.5, end_s=1.5, attempts=1),
        Record(id="e", row=4, status="cancelled"),  # never sent: no attempt, no send time
        Record(id="f", row=5, status="skipped", error="column 'text' is empty"),
    ]


def check_hand_figures(s: dict) -> None:
    c = s["counts"]
    # sent: a, b (send time), c, d (attempted); e was cancelled in the queue; f skipped
    assert (c["total"], c["ok"], c["error"], c["timeout"], c["cancelled"], c["skipped"]) == (6, 2, 1, 1, 1, 1)
    assert (c["attempted"], c["sent"], c["never_sent"], c["finished"]) == (5, 4, 1, 4)
    assert s["success_rate"] == 0.5  # 2 ok of 4 finished
    # every finished-or-cancelled non-ok row; no error type: its status
    assert s["by_error_type"] == {"APIError": 1, "timeout": 1, "cancelled": 1}
    assert s["by_finish_reason"] == {"stop": 2}
    assert (s["ttft_s"]["count"], s["ttft_s"]["mean"]) == (2, approx(0.15))
    assert (s["latency_s"]["min"], s["latency_s"]["max"]) == (0.3, 0.4)
    # TPOT: a (0.3 - 0.1) / (3 - 1) = 0.1; b (0.4 - 0.2) / (2 - 1) = 0.2
    assert s["tpot_s"]["count"] == 2 and s["tpot_s"]["mean"] == approx(0.15)
    assert (s["itl_s"]["count"], s["itl_s"]["p50"], s["itl_s"]["max"]) == (3, 0.1, 0.2)  # gaps 0.1, 0.1, 0.2
    assert s["queue_wait_s"]["count"] == 4 and s["queue_wait_s"]["max"] == 0.05
    assert s["wall_time_s"] == 1.5  # first send 0.0 .. last end 1.5
    # in flight: a, b, c from 0.2 to 0.3 -> peak 3; mean = (0.3 + 0.4 + 0.8 + 1.0) / 1.5
    assert s["in_flight"]["peak"] == 3 and s["in_flight"]["mean"] == approx(2.5 / 1.5)
    assert s["tokens"] == {"prompt": 10, "completion": 5, "estimated_records": 0}
    assert s["throughput"]["requests_per_s"] == approx(2 / 1.5)
    assert s["goodput"] == {"slo": {"e2e": 0.35}, "requests": 1, "requests_per_s": approx(1 / 1.5)}


def write(path: Path, records: list[Record]) -> Path:
    with RecordSink(path) as sink:
        sink.write_many(records)
    return path


def test_records_and_columns_read_from_disk_give_the_same_hand_computed_figures(tmp_path: Path) -> None:
    records = run_records()
    by_records = summarize(records, slo={"e2e": 0.35})
    check_hand_figures(by_records)
    gaps = GapSample()
    cols = read_columns(write(tmp_path / "records.jsonl", records), gaps)
    by_columns = summarize(cols, slo={"e2e": 0.35}, itl_sample=gaps)
    check_hand_figures(by_columns)
    assert by_columns.pop("itl_s").pop("population") == 3
    by_records.pop("itl_s")
    assert by_columns == by_records


def test_columns_keep_only_the_first_rows_whole_and_none_of_the_input(tmp_path: Path) -> None:
    records = [
        Record(id=f"r{i}", row=i, text=f"answer {i}", input={"prompt": "x" * 100}, request={"messages": []})
        for i in range(30)
    ]
    cols = read_columns(write(tmp_path / "records.jsonl", records))
    assert len(cols) == 30 and [r.id for r in cols.sample] == [f"r{i}" for i in range(20)]
    assert cols.sample[0].text == "answer 0" and cols.sample[0].input is None and cols.sample[0].request is None


def test_a_column_no_record_has_costs_nothing_and_reads_as_none() -> None:
    cols = Columns.of(run_records())
    assert not cols.has("scheduled_s") and not cols.has("batch_id") and cols.has("ttft_s")
    views = list(cols)
    assert views[0].scheduled_s is None and views[0].batch_id is None and views[0].ttft_s == 0.1
    assert views[4].sent_s is None and views[4].prompt_tokens is None and views[4].status == "cancelled"
    with pytest.raises(AttributeError):
        _ = views[0].text  # not a column: a view never pretends to have it


def test_select_keeps_the_chosen_records() -> None:
    cols = Columns.of(run_records())
    ok_only = cols.select([s == "ok" for s in cols.labels("status")])
    assert len(ok_only) == 2 and summarize(ok_only)["counts"]["ok"] == 2


# ---------------------------------------------------------------- the lean results index


def messy_file(path: Path) -> Path:
    records = [
        Record(id="r0", row=0),
        Record(id="r1", row=1, status="error"),
        Record(id="#row-2", row=2, status="skipped", synthetic_id=True),
        Record(id="r3", row=3, status="skipped"),
        Record(id="r1", row=1),  # resumed: r1 again, ok now
        Record(id="r2", row=2),  # row 2 fixed, sent under its own id
        Record(id="r4", row=4, status="skipped"),
    ]
    write(path, records)
    with open(path, "ab") as f:
        f.write(b'{"id": "torn", "row": 9, "sta')  # a killed run's last line
    return path


def test_latest_offsets_follow_the_index_rule(tmp_path: Path) -> None:
    path = messy_file(tmp_path / "records.jsonl")
    seen = []
    lean = [(d["id"], d["status"]) for d in latest_dicts(path, latest_offsets(path, seen.append))]
    index = index_records(path)
    assert lean == [("r0", "ok"), ("r1", "ok"), ("r2", "ok"), ("r3", "skipped"), ("r4", "skipped")]
    assert len(seen) == 7  # the ghost of row 2 is gone
    # --resume's index holds exactly the results' records: one rule for both
    assert list(index.items()) == [
        (d["id"], (d["row"], offset, d["status"])) for offset, d in zip(latest_offsets(path), latest_dicts(path))
    ]
    assert isinstance(latest_offsets(path), array)


def test_ids_whose_hashes_collide_are_still_told_apart(tmp_path: Path) -> None:
    path = messy_file(tmp_path / "records.jsonl")
    offsets = array("q", [0])
    with open(path, "rb") as f:
        for line in f.readlines()[:-2]:  # the 6 whole lines before r4 and the torn one
            offsets.append(offsets[-1] + len(line))
    offsets = offsets[:6]
    same = array("q", [42] * 6)  # every id hashes alike: all compared whole
    kept = sorted(_last_of_each_key(path, same, offsets))
    assert kept == [0, 2, 3, 4, 5]  # r1's first line (1) gave way to its later one (4)


# ---------------------------------------------------------------- a real run, then `batchrun report`


def test_report_rebuilds_the_summary_a_run_wrote_from_its_columns(fast_sim, tmp_path: Path, monkeypatch) -> None:
    import json

    from promptfiles import write_prompts
    from typer.testing import CliRunner

    from batchrun.cli import app

    monkeypatch.chdir(tmp_path)
    write_prompts(tmp_path / "p.csv", 30)
    run = CliRunner().invoke(
        app, ["run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--slo", "e2e=10s", "--slice", "1s"]
    )
    assert run.exit_code == 0, run.output
    written = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    rebuilt = CliRunner().invoke(app, ["report", "o"])
    assert rebuilt.exit_code == 0, rebuilt.output
    again = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert again == written and again["counts"]["ok"] == 30 and again["itl_s"]["population"] > 0
    md = (tmp_path / "o" / "report.md").read_text()
    assert "| q0 | 0 | ok |" in md and "| q19 | 19 | ok |" in md and "| q20 |" not in md


def test_records_written_before_the_flags_existed_read_as_none_set(tmp_path: Path) -> None:
    """An older run's records have no reconnects / empty / tool_choice_ignored: 0 and false."""
    old = Record(
        id="a", row=0, sent_s=0.0, end_s=0.3, ttft_s=0.1, latency_s=0.3, attempts=1, finish_reason="stop", text="x"
    ).to_dict()
    for name in ("reconnects", "empty", "tool_choice_ignored"):
        del old[name]
    record = Record.from_dict(old)
    assert (record.reconnects, record.empty, record.tool_choice_ignored) == (0, False, False)
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(old) + "\n")
    summary = summarize(read_columns(path), itl_sample=GapSample())
    assert (summary["reconnects"], summary["reconnect_share"], summary["empty"], summary["tool_choice_ignored"]) == (
        0,
        0.0,
        0,
        0,
    )
