"""Batch API mode with the data-team features of online mode: both modes' cost in --dry-run, a
batch run's cost at the batch price, --limit, input columns and --json-schema answers in results."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest
from typer.testing import CliRunner

from batchrun.analysis.cost import Price, batch_price, run_cost
from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess
from batchrun.store.records import OK, Record

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
TEMPLATE = "Label the sentiment of this {product} review: {review}"


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    from batchrun.batchapi import flow

    monkeypatch.setattr(flow, "POLL_FIRST_S", 0.05)


@pytest.fixture(scope="module")
def batches() -> Iterator[SimProcess]:
    with SimProcess(SimConfig(fast=True, batch_delay_s=0.1)) as sim:
        yield sim


def usd_on(line: str, output: str) -> float:
    found = re.search(re.escape(line) + r" +at most \$([0-9.,]+)", output)
    assert found, output
    return float(found.group(1).replace(",", ""))


def test_dry_run_shows_the_online_and_the_batch_cost() -> None:
    dry = CliRunner().invoke(
        app,
        [
            "run",
            str(SAMPLES / "reviews.csv"),
            "--template",
            TEMPLATE,
            "--dry-run",
            "--model",
            "gpt-4o-mini",
            "--max-tokens",
            "50",
        ],
    )
    assert dry.exit_code == 0, dry.output
    online, batch = usd_on("cost", dry.output), usd_on("cost, batch mode", dry.output)
    assert batch == pytest.approx(online / 2, rel=0.01)
    assert "Batch API: 0.5 of it" in dry.output and "answers within 24 h" in dry.output


def test_batch_rows_are_costed_at_the_batch_price() -> None:
    price = Price(1.0, 4.0, "test")
    online = Record(id="a", row=0, status=OK, sent_s=0.0, prompt_tokens=1_000_000, completion_tokens=0)
    batched = Record(id="b", row=1, status=OK, prompt_tokens=1_000_000, completion_tokens=1_000_000)
    batched.batch_id = "batch_1"
    never_ran = Record(id="c", row=2, status="timeout")
    never_ran.batch_id = "batch_1"
    cost = run_cost([online, batched, never_ran], price)
    assert cost["usd"] == pytest.approx(1.0 + (1.0 + 4.0) / 2)
    assert cost["batch"]["usd"] == pytest.approx(2.5) and cost["records_without_usage"] == 0
    assert batch_price(price).input_per_m == 0.5


def test_a_batch_run_keeps_input_columns_checks_json_schema_answers_and_honours_limit(
    batches: SimProcess, tmp_path: Path
) -> None:
    out = tmp_path / "labels"
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(SAMPLES / "reviews.csv"),
            "--template",
            TEMPLATE,
            "--id-column",
            "review_id",
            "--json-schema",
            str(SAMPLES / "label.json"),
            "--base-url",
            batches.base_url,
            "--mode",
            "batch",
            "--limit",
            "6",
            "--out",
            str(out),
            "-q",
            "--price-in",
            "0.15",
            "--price-out",
            "0.6",
        ],
    )
    assert result.exit_code == 0, result.output
    [job] = json.loads((out / "run.json").read_text())["batch"]["jobs"]
    assert job["requests"] == 6
    df = pd.read_csv(out / "results.csv", dtype={"review_id": str})
    original = pd.read_csv(SAMPLES / "reviews.csv", dtype={"review_id": str}).head(6)
    assert df["review_id"].tolist() == original["review_id"].tolist()
    assert list(df.columns[:4]) == list(original.columns) and (df["status"] == "ok").all()
    assert set(df["label"]) <= {"positive", "negative", "neutral"}
    record = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert record["request"]["response_format"]["type"] == "json_schema"  # the body as sent, as online keeps it
    assert "stream" not in record["request"]
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["cost"]["batch"]["usd"] == pytest.approx(summary["cost"]["usd"])
    assert summary["cost"]["batch"]["price"]["input_per_1m"] == pytest.approx(0.075)
