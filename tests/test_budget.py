"""--max-cost: engine/budget.py by hand, then whole runs against the built-in endpoint, whose token
counts are exact (every answer 50 tokens), stopped at the budget and resumed with a higher one."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from batchrun.analysis.cost import Price, RunningCost
from batchrun.cli import app
from batchrun.endpoint.requests import Job
from batchrun.engine.budget import SEND, STOP, WAIT, Budget
from batchrun.inputs.prompt import Prompt
from batchrun.pipeline import _carry
from batchrun.sim import SimConfig, SimProcess
from batchrun.store.outputs import done_ids
from batchrun.store.records import Record

PRICE = Price(1.0, 2.0, "flags")  # USD per 1M prompt / output tokens


def job(row: int) -> Job:
    # Estimated at 1,000 prompt tokens and max_tokens 500: expected (1000 x $1 + 500 x $2) / 1M = $0.002.
    return Job(Prompt(id=str(row), row=row, line=row + 2), b"{}", estimated_tokens=1500, prompt_tokens_estimate=1000)


def answered(row: int, prompt: int, completion: int) -> Record:
    return Record(id=str(row), row=row, sent_s=0.0, prompt_tokens=prompt, completion_tokens=completion)


def test_a_budget_sends_waits_for_what_is_in_flight_then_stops_by_hand() -> None:
    budget = Budget(0.005, PRICE)
    assert budget.judge(job(0)) == SEND and budget.judge(job(1)) == SEND  # $0.004 reserved
    assert budget.in_flight_usd == pytest.approx(0.004)
    assert budget.judge(job(2)) == WAIT  # $0.006 > $0.005, but what is in flight may cost less
    # Row 0 measured 2,000 prompt tokens (twice its estimate) and 100 output tokens: $0.0022 spent.
    budget.settle(answered(0, 2000, 100))
    assert budget.spent_usd == pytest.approx(0.0022)
    # Row 2 is now expected at 1,000 x 2 prompt tokens and the mean 100 output tokens: $0.0022;
    # $0.0022 spent + $0.002 in flight + $0.0022 > $0.005: wait again.
    assert budget.expected(job(2)) == pytest.approx(0.0022)
    assert budget.judge(job(2)) == WAIT
    budget.settle(answered(1, 2000, 100))  # $0.0044 spent, nothing in flight
    assert budget.judge(job(2)) == STOP  # $0.0044 + $0.0022 > $0.005
    assert budget.reached == "$0.004400 spent, and the next request would cost ~$0.002200"
    assert budget.judge(job(3)) == STOP  # and every later row
    assert budget.spent_usd <= budget.max_usd


def test_an_earlier_sessions_spend_and_answers_count() -> None:
    budget = Budget(0.01, PRICE)
    earlier = [answered(0, 1000, 300), Record(id="1", row=1, status="skipped")]  # $0.0016; skipped: $0
    budget.carry(earlier)
    assert budget.spent_usd == pytest.approx(0.0016)
    assert budget.expected(job(2)) == pytest.approx(0.0016)  # 1,000 prompt + the mean 300 output tokens


def test_a_resume_charges_every_earlier_record_also_a_row_sent_twice(tmp_path) -> None:
    lines = [
        {"id": "0", "row": 0, "status": "error", "sent_s": 0.0, "prompt_tokens": 1000, "completion_tokens": 0},
        {"id": "0", "row": 0, "status": "ok", "sent_s": 5.0, "prompt_tokens": 1000, "completion_tokens": 500},
        {"id": "1", "row": 1, "status": "skipped"},
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    budget, running = Budget(1.0, PRICE), RunningCost(PRICE)
    assert done_ids(path, _carry(budget, running)) == {"0"}
    # Both sends of row 0 were billed: $0.001 + $0.002.
    assert budget.spent_usd == pytest.approx(0.003) == running.spent_usd
    assert running.n == 1 and budget.expected(job(2)) == pytest.approx(0.002)  # the ok row's 500 tokens


def test_a_sent_request_without_usage_is_charged_what_it_was_expected_to_cost() -> None:
    budget = Budget(0.01, PRICE)
    assert budget.judge(job(0)) == SEND
    budget.settle(Record(id="0", row=0, sent_s=0.0, status="error"))
    assert budget.spent_usd == pytest.approx(0.002) and budget.in_flight_usd == 0


# ---------------------------------------------------------------- whole runs

ROWS = 20
# Prompt tokens free, output tokens $1,000 per 1M: each answer (50 tokens, max_tokens 50) costs
# exactly $0.05, and is expected to from the first request on.
PRICED = ("--price-in", "0", "--price-out", "1000", "--max-tokens", "50")


@pytest.fixture(scope="module")
def sim50() -> Iterator[SimProcess]:
    with SimProcess(SimConfig(fast=True, output_tokens=50)) as sim:
        yield sim


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def prompts(path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt"])
        writer.writerows([i, f"Name a colour ({i})"] for i in range(ROWS))
    return path


def records_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())["summary"]


@pytest.mark.parametrize("scale", [("-c", "4"), ("--workers", "2", "-c", "4")], ids=["pool", "workers"])
def test_a_run_stops_at_its_budget_and_a_resume_with_a_higher_one_goes_on(sim50, tmp_path, scale) -> None:
    base = ["run", str(prompts(tmp_path / "p.csv")), "--base-url", sim50.base_url, "-q", *PRICED, *scale]
    first = invoke(*base, "--out", "o", "--max-cost", "0.33")
    assert first.exit_code == 1, first.output
    # 6 answers ($0.30) went out; a 7th would make $0.35 > $0.33. The rest is neither sent nor recorded.
    assert len(records_of(tmp_path / "o")) == 6
    assert {r["status"] for r in records_of(tmp_path / "o")} == {"ok"}
    assert "stopped at the budget: spent $0.3000 of --max-cost $0.3300" in first.output
    assert "continue with: batchrun run --resume o --max-cost USD, a budget above $0.3000" in first.output
    summary = summary_of(tmp_path / "o")
    assert summary["run"]["max_cost"]["spent_usd"] == pytest.approx(0.30) == summary["cost"]["usd"]
    assert summary["run"]["unread"] == 14
    projection = summary["cost"]["projection"]  # the whole file at the measured $0.05 a row
    assert (projection["usd"], projection["low"], projection["high"]) == pytest.approx((1.0, 1.0, 1.0))

    more = invoke("run", "--resume", "o", "--base-url", sim50.base_url, "-q", *scale, "--max-cost", "0.62")
    assert more.exit_code == 1, more.output
    assert len(records_of(tmp_path / "o")) == 12  # $0.30 carried + 6 x $0.05 = $0.60; a 13th: $0.65
    assert "spent $0.6000 of --max-cost $0.6200" in more.output

    kept = invoke("run", "--resume", "o", "--base-url", sim50.base_url, "-q", *scale)  # the budget is kept
    assert kept.exit_code == 1 and len(records_of(tmp_path / "o")) == 12, kept.output

    rest = invoke("run", "--resume", "o", "--base-url", sim50.base_url, "-q", *scale, "--max-cost", "5")
    assert rest.exit_code == 0, rest.output
    records = records_of(tmp_path / "o")
    assert sorted(int(r["id"]) for r in records) == list(range(ROWS))  # every row once
    assert summary_of(tmp_path / "o")["cost"]["usd"] == pytest.approx(1.0)


def test_max_cost_without_a_price_is_refused_naming_the_price_options(sim50, tmp_path) -> None:
    result = invoke("run", str(prompts(tmp_path / "p.csv")), "--base-url", sim50.base_url, "--max-cost", "1")
    assert result.exit_code == 2
    assert "--max-cost needs a price for model" in result.output
    assert "give --price-in and --price-out" in result.output
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("records.jsonl"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--mode", "batch"), "--max-cost cannot stop a Batch API run"),
        (("--endpoint", "embeddings"), "--max-cost does not apply to --endpoint embeddings"),
        (("--max-cost", "0"), "--max-cost is a budget in USD, more than 0"),
    ],
)
def test_max_cost_where_it_cannot_apply_is_a_usage_error(tmp_path, extra, message) -> None:
    args = ["run", str(prompts(tmp_path / "p.csv")), *PRICED, "--max-cost", "1", *extra]
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_max_cost_with_sessions_is_a_usage_error(tmp_path) -> None:
    sessions = Path(__file__).parent.parent / "samples" / "sessions.csv"
    result = invoke("run", str(sessions), *PRICED, "--max-cost", "1")
    assert result.exit_code == 2 and "--max-cost does not apply to multi-turn sessions" in result.output


def test_the_dry_run_weighs_the_budget_against_the_ceiling(tmp_path) -> None:
    args = ["run", str(prompts(tmp_path / "p.csv")), "--dry-run", *PRICED]
    # The ceiling: 20 rows x 50 output tokens (max_tokens) x $1,000 per 1M = $1.00; prompts are free.
    assert "cost              at most $1.00" in invoke(*args).output
    low = invoke(*args, "--max-cost", "0.25")
    assert low.exit_code == 0 and "budget            --max-cost $0.2500 is 25% of the ceiling" in low.output
    assert "the run will not stop for it" in invoke(*args, "--max-cost", "1").output
    unpriced = invoke("run", str(tmp_path / "p.csv"), "--dry-run", "--max-cost", "1")
    assert "--max-cost $1.00 needs a price" in unpriced.output
