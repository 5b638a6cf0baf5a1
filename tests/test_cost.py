"""Prices and cost arithmetic, against hand-computed values."""

from __future__ import annotations

import pytest

from batchrun.analysis.cost import PRICES_AS_OF, Price, estimate_cost, format_usd, price_for, resolve_price, run_cost
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
