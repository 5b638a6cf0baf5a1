"""Prices and cost arithmetic, against hand-computed values."""

from __future__ import annotations

import pytest

from batchrun.analysis.cost import (
    PRICES_AS_OF,
    Price,
    RunningCost,
    estimate_cost,
    format_usd,
    price_for,
    project_cost,
    projection_text,
    resolve_price,
    run_cost,
)
from batchrun.errors import ConfigError
from batchrun.store.records import Record


def test_list_prices_are_dated_and_snapshots_take_their_familys_price() -> None:
    price = price_for("gpt-4o-mini-2024-07-18")
    assert (price.input_per_m, price.output_per_m) == (0.15, 0.60)
    assert PRICES_AS_OF in price.source and "gpt-4o-mini" in price.source
    assert price_for("gpt-4o").input_per_m == 2.50  # not gpt-4o-mini's
    assert price_for("openai/gpt-4.1-nano").output_per_m == 0.40
    assert price_for("llama-3-8b") is None and price_for(None) is None


def test_estimate_cost_by_hand() -> None:
    # 120,000 prompt tokens at $0.15/M = $0.018; 40,000 output tokens at $0.60/M = $0.024.
    assert estimate_cost(120_000, 40_000, Price(0.15, 0.60, "t")) == pytest.approx(0.042)
    assert estimate_cost(0, 0, Price(5, 5, "t")) == 0


def test_flags_override_the_table_and_an_unknown_model_needs_both() -> None:
    assert resolve_price("gpt-4o", 1.0, 2.0) == Price(1.0, 2.0, "--price-in/--price-out")
    half = resolve_price("gpt-4o", 1.0, None)
    assert (half.input_per_m, half.output_per_m) == (1.0, 10.0) and "gpt-4o" in half.source
    with pytest.raises(ConfigError, match="give both --price-in and --price-out"):
        resolve_price("my-local-model", 1.0, None)
    assert resolve_price("my-local-model", None, None) is None


def test_batch_price_is_a_scaled_price() -> None:
    batch = Price(2.0, 8.0, "list").scaled(0.5, "Batch API")
    assert (batch.input_per_m, batch.output_per_m, batch.source) == (1.0, 4.0, "list, Batch API")


def test_run_cost_counts_usage_of_everything_sent() -> None:
    records = [
        Record(id="a", row=0, sent_s=0.0, prompt_tokens=1000, completion_tokens=500),
        Record(id="b", row=1, status="error", sent_s=0.1, prompt_tokens=1000, completion_tokens=10),
        Record(id="c", row=2, status="error", sent_s=0.2),  # no usage: counted apart
        Record(id="d", row=3, status="skipped"),
    ]  # never sent
    cost = run_cost(records, Price(1.0, 2.0, "flags"))
    # (2000 x $1 + 510 x $2) / 1M = $0.00302
    assert cost["usd"] == pytest.approx(0.00302)
    assert (cost["records_with_usage"], cost["records_without_usage"]) == (2, 1)
    assert run_cost(records, None) is None


def test_format_usd() -> None:
    assert format_usd(0.00302) == "$0.003020" and format_usd(0.0302) == "$0.0302"
    assert format_usd(1234.5) == "$1,234.50" and format_usd(0.0) == "$0.000000"


def test_projection_by_hand() -> None:
    price = Price(1.0, 2.0, "flags")
    records = [
        Record(id="a", row=0, sent_s=0.0, prompt_tokens=1000, completion_tokens=500),  # $0.002
        Record(id="b", row=1, sent_s=0.0, prompt_tokens=2000, completion_tokens=1000),  # $0.004
        Record(id="c", row=2, sent_s=0.0, prompt_tokens=3000, completion_tokens=1500),  # $0.006
        Record(id="d", row=3, status="error", sent_s=0.0, prompt_tokens=9000, completion_tokens=9000),  # not ok
        Record(id="e", row=4, sent_s=0.0),  # ok without usage: not a sample
    ]
    p = project_cost(records, price, rows=100, output_cap=256)
    # Per ok row: mean $0.004, s = $0.002, s / sqrt(3) = $0.00115470, t(2) = 4.302653: half width
    # $0.00496828; x 100 rows: $0.40, low -$0.0968 -> $0, high $0.896828.
    assert (p["rows"], p["n"], p["level"]) == (100, 3, 0.95)
    assert (p["usd"], p["low"], p["high"]) == pytest.approx((0.40, 0.0, 0.896828), abs=1e-6)
    assert (p["mean_prompt_tokens"], p["mean_completion_tokens"]) == (2000, 1000)
    # Ceiling: 100 rows x (2000 prompt tokens x $1 + 256 output tokens x $2) / 1M = $0.2512.
    assert p["ceiling_usd"] == pytest.approx(0.2512)
    assert projection_text(p) == (
        "$0.4000 for 100 rows (95% $0.000000-$0.8968, from 3 ok rows); ceiling $0.2512 (max_tokens 256 per answer)"
    )


def test_projection_prices_batch_rows_at_the_batch_price_and_needs_two_rows() -> None:
    price = Price(1.0, 2.0, "flags")
    batch = [Record(id=str(i), row=i, batch_id="b1", prompt_tokens=1000, completion_tokens=500) for i in range(2)]
    p = project_cost(batch, price, rows=10, output_cap=100)
    # Half of (1000 x $1 + 500 x $2) / 1M = $0.001 a row, no spread: exactly $0.01 for 10 rows.
    assert (p["usd"], p["low"], p["high"]) == pytest.approx((0.01, 0.01, 0.01))
    assert project_cost(batch[:1], price, rows=10, output_cap=100) is None
    assert project_cost(batch, None, rows=10, output_cap=100) is None


def test_the_running_cost_projects_as_the_summary_does() -> None:
    records = [
        Record(id="a", row=0, sent_s=0.0, prompt_tokens=1000, completion_tokens=500),
        Record(id="b", row=1, sent_s=0.0, prompt_tokens=2000, completion_tokens=1000),
        Record(id="c", row=2, sent_s=0.0, prompt_tokens=3000, completion_tokens=1500),
        Record(id="d", row=3, status="error", sent_s=0.0, prompt_tokens=500, completion_tokens=0),  # billed
        Record(id="e", row=4, status="skipped"),
    ]
    running = RunningCost(Price(1.0, 2.0, "flags"))
    for record in records:
        running.add(record)
    assert running.spent_usd == pytest.approx(run_cost(records, Price(1.0, 2.0, "flags"))["usd"]) == 0.0125
    summary = project_cost(records, Price(1.0, 2.0, "flags"), rows=100, output_cap=256)
    assert tuple(running.projection(100)) == pytest.approx((summary["usd"], summary["low"], summary["high"]))
    assert running.n == 3 and RunningCost(Price(1.0, 2.0, "flags")).projection(100) is None
