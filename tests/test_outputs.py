"""results.csv / results.parquet: the user's columns back, text kept as text, spreadsheet-safe
cells, one row per input row (no ghost of a fixed bad row)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.store.outputs import index_records, neutralize, write_results
from batchrun.store.records import Record, RecordSink


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def rows_of(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write_records(path: Path, records: list[Record]) -> Path:
    with RecordSink(path) as sink:
        for record in records:
            sink.write(record)
    return path


def test_results_keep_every_input_column_in_order_and_the_id_column_name(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text(
        "review_id,product,prompt,stars\n007,kettle,Is it good?,5\n008,lamp,Is it bad?,1\n", encoding="utf-8"
    )
    result = invoke(
        "run",
        "p.csv",
        "--id-column",
        "review_id",
        "--base-url",
        fast_sim.base_url,
        "--out",
        "o",
        "-q",
        "--max-tokens",
        "4",
        "--system",
        "Be brief.",
    )
    assert result.exit_code == 0, result.output
    header, *rows = rows_of(tmp_path / "o" / "results.csv")
    assert header[:4] == ["review_id", "product", "prompt", "stars"]
    assert header[4:7] == ["row", "status", "text"] and "id" not in header  # the id keeps its own name
    assert [r[:4] for r in rows] == [["007", "kettle", "Is it good?", "5"], ["008", "lamp", "Is it bad?", "1"]]
    # records.jsonl keeps the input row and the request as sent
    lines = (tmp_path / "o" / "records.jsonl").read_text().splitlines()
    record = next(r for r in map(json.loads, lines) if r["id"] == "007")  # records are in completion order
    assert record["input"] == {"review_id": "007", "product": "kettle", "prompt": "Is it good?", "stars": "5"}
    assert record["request"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Is it good?"},
    ]
    assert record["request"]["max_tokens"] == 4 and "stream" not in record["request"]


def test_parquet_keeps_csv_text_as_text(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt,zip\n007,hello,01234\n010,again,99999\n", encoding="utf-8")
    result = invoke(
        "run",
        "p.csv",
        "--base-url",
        fast_sim.base_url,
        "--out",
        "o",
        "-q",
        "--output-format",
        "parquet",
        "--max-tokens",
        "4",
        "--no-save-request",
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "records.jsonl").read_text().splitlines()[0])["request"] is None
    table = pq.read_table(tmp_path / "o" / "results.parquet")
    assert table.column("id").to_pylist() == ["007", "010"]
    assert table.column("zip").to_pylist() == ["01234", "99999"]
    assert str(table.schema.field("zip").type) == "string"
    assert str(table.schema.field("latency_s").type) == "double"


def test_jsonl_numbers_stay_numbers_in_parquet_and_mixed_columns_become_text(tmp_path) -> None:
    records = [
        Record(id="0", row=0, input={"prompt": "a", "n": 1, "mixed": 1, "tags": ["x"]}),
        Record(id="1", row=1, input={"prompt": "b", "n": 2, "mixed": "two", "tags": []}),
    ]
    path = write_results(write_records(tmp_path / "records.jsonl", records), tmp_path, "parquet")
    table = pq.read_table(path)
    assert table.column("n").to_pylist() == [1, 2]
    assert table.column("mixed").to_pylist() == ["1", "two"]
    assert table.column("tags").to_pylist() == ['["x"]', "[]"]


def test_an_answer_column_an_input_column_already_has_gets_a_prefix(tmp_path) -> None:
    records = [Record(id="0", row=0, text="answer", input={"text": "the review", "status": "vip"})]
    write_results(write_records(tmp_path / "records.jsonl", records), tmp_path)
    header, row = rows_of(tmp_path / "results.csv")
    assert header[:2] == ["text", "status"]
    assert row[header.index("text")] == "the review" and row[header.index("result_text")] == "answer"
    assert row[header.index("result_status")] == "ok"


@pytest.mark.parametrize(
    "cell, safe",
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-5", "-5"),
        ("+1.5", "+1.5"),
        ("-1e3", "-1e3"),
        ("plain", "plain"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_formula_cells_are_neutralised_numbers_are_not(cell: str, safe: str) -> None:
    assert neutralize(cell) == safe


def test_csv_formulas_escaped_by_default_and_raw_on_request(tmp_path) -> None:
    records = [Record(id="0", row=0, text='=HYPERLINK("http://x")', input={"note": "@SUM(1)", "n": "-3"})]
    records_path = write_records(tmp_path / "records.jsonl", records)
    write_results(records_path, tmp_path)
    header, row = rows_of(tmp_path / "results.csv")
    assert row[header.index("note")] == "'@SUM(1)" and row[header.index("n")] == "-3"
    assert row[header.index("text")] == '\'=HYPERLINK("http://x")'
    write_results(records_path, tmp_path, csv_formulas="raw")
    header, row = rows_of(tmp_path / "results.csv")
    assert row[header.index("note")] == "@SUM(1)" and row[header.index("text")].startswith("=")


def test_csv_timings_are_rounded_to_microseconds(tmp_path) -> None:
    records = [Record(id="0", row=0, ttft_s=0.123456789, latency_s=1.0000004, total_s=2.5, queue_wait_s=1e-9)]
    write_results(write_records(tmp_path / "records.jsonl", records), tmp_path)
    header, row = rows_of(tmp_path / "results.csv")
    values = {name: row[header.index(name)] for name in ("ttft_s", "latency_s", "total_s", "queue_wait_s")}
    assert values == {"ttft_s": "0.123457", "latency_s": "1.0", "total_s": "2.5", "queue_wait_s": "0.0"}


def test_a_fixed_bad_row_leaves_no_ghost(fast_sim, tmp_path) -> None:
    (tmp_path / "p.csv").write_text("id,prompt\na,hello\n,no id\nc,third\n", encoding="utf-8")
    result = invoke("run", "p.csv", "--base-url", fast_sim.base_url, "--out", "o", "-q", "--on-bad-row", "skip")
    assert result.exit_code == 0, result.output
    (tmp_path / "p.csv").write_text("id,prompt\na,hello\nb,now with an id\nc,third\n", encoding="utf-8")
    result = invoke("run", "--resume", "o", "--base-url", fast_sim.base_url, "-q", "--input-changed", "ok")
    assert result.exit_code == 0, result.output
    header, *rows = rows_of(tmp_path / "o" / "results.csv")
    status = header.index("status")
    assert [(r[0], r[status]) for r in rows] == [("a", "ok"), ("b", "ok"), ("c", "ok")]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["counts"]["total"] == 3 and summary["counts"]["skipped"] == 0


def test_a_made_up_id_never_collides_with_a_real_one(tmp_path) -> None:
    # Row 1's own id is literally "#row-2"; row 2 has no id, so it is skipped under a made-up id.
    records = [
        Record(id="#row-2", row=1, input={"id": "#row-2"}),
        Record(id="#row-2", row=2, status="skipped", synthetic_id=True, input={"id": ""}),
    ]
    index = index_records(write_records(tmp_path / "records.jsonl", records))
    assert sorted(row for row, _, _ in index.values()) == [1, 2]


def test_an_input_row_with_a_huge_integer_is_recorded_and_given_back(tmp_path) -> None:
    big = 123456789012345678901234567890  # valid JSON, past orjson's 64 bits
    records = [Record(id="0", row=0, input={"prompt": "x", "n": big})]
    write_results(write_records(tmp_path / "records.jsonl", records), tmp_path)
    header, row = rows_of(tmp_path / "results.csv")
    assert row[header.index("n")] == str(big)


def test_a_parquet_inputs_every_column_comes_back_with_its_type(fast_sim, tmp_path) -> None:
    import datetime

    import pyarrow as pa

    pq.write_table(
        pa.table(
            {
                "id": ["007", "008"],
                "prompt": ["a", "b"],
                "n": [1, 2],
                "when": [datetime.date(2024, 1, 31), None],
                "unused": [1.5, None],
            }
        ),
        tmp_path / "in.parquet",
    )
    result = invoke(
        "run",
        "in.parquet",
        "--base-url",
        fast_sim.base_url,
        "--out",
        "o",
        "-q",
        "--output-format",
        "parquet",
        "--max-tokens",
        "3",
    )
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "o" / "results.parquet")
    assert table.column_names[:5] == ["id", "prompt", "n", "when", "unused"]
    assert table.select(["id", "n", "when", "unused"]).to_pylist() == [
        {"id": "007", "n": 1, "when": "2024-01-31", "unused": 1.5},
        {"id": "008", "n": 2, "when": None, "unused": None},
    ]
