"""What a run costs: list prices per 1M tokens, and pure cost arithmetic.

    price = resolve_price("gpt-4o-mini", price_in=None, price_out=None)   # the table's list price
    estimate_cost(120_000, 40_000, price)                                  # -> USD

The table is a convenience, dated, and goes stale: --price-in / --price-out (USD per 1M
tokens) override it, and every figure says which price it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, NamedTuple

from batchrun.analysis.columns import Columns
from batchrun.analysis.interval import LEVEL, Interval, mean_interval, t_interval
from batchrun.errors import ConfigError
from batchrun.store.records import OK, Record

PRICES_AS_OF = "2025-08-07"
# model -> (USD per 1M input tokens, USD per 1M output tokens), OpenAI's standard-tier list prices
# on PRICES_AS_OF (no cached-input or Batch API discounts).
LIST_PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens, and where the numbers came from (shown beside every cost)."""

    input_per_m: float
    output_per_m: float
    source: str

    def scaled(self, factor: float, why: str) -> "Price":
        """E.g. the Batch API's half price: `price.scaled(0.5, "Batch API, half price")`."""
        return replace(
            self,
            input_per_m=self.input_per_m * factor,
            output_per_m=self.output_per_m * factor,
            source=f"{self.source}, {why}",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"input_per_1m": self.input_per_m, "output_per_1m": self.output_per_m, "source": self.source}


# The Batch API's price as a share of the list price: half for every model in LIST_PRICES on
# PRICES_AS_OF; a model priced otherwise would be listed in BATCH_SHARES.
BATCH_SHARE = 0.5
BATCH_SHARES: dict[str, float] = {}


def batch_price(price: Price | None, model: str | None = None) -> Price | None:
    """What a request costs through the Batch API (--mode batch): half the online price, unless
    BATCH_SHARES says otherwise for the model."""
    if price is None:
        return None
    share = BATCH_SHARES.get((model or "").split("/")[-1].lower(), BATCH_SHARE)
    return price.scaled(share, f"Batch API: {share:g} of it")


def price_for(model: str | None) -> Price | None:
    """The table's list price of `model`; a dated snapshot (gpt-4o-mini-2024-07-18) takes its
    family's price (the longest table name it starts with). None when the model is unknown."""
    if not model:
        return None
    name = model.split("/")[-1].lower()  # "openai/gpt-4o" as gateways spell it
    if name not in LIST_PRICES:
        family = [m for m in LIST_PRICES if name.startswith(m + "-")]
        if not family:
            return None
        name = max(family, key=len)
    price_in, price_out = LIST_PRICES[name]
    return Price(price_in, price_out, f"list price of {name} as of {PRICES_AS_OF}")


def resolve_price(model: str | None, price_in: float | None, price_out: float | None) -> Price | None:
    """--price-in / --price-out where given, else the table's; None when no price is known."""
    listed = price_for(model)
    if price_in is None and price_out is None:
        return listed
    if listed is None and (price_in is None or price_out is None):
        raise ConfigError(
            f"give both --price-in and --price-out: there is no list price for "
            f"{model or 'an unnamed model'} to fill in the other"
        )
    if price_in is not None and price_out is not None:
        return Price(price_in, price_out, "--price-in/--price-out")
    assert listed is not None
    if price_in is not None:
        return Price(price_in, listed.output_per_m, f"--price-in; output: {listed.source}")
    return Price(listed.input_per_m, price_out or 0.0, f"--price-out; input: {listed.source}")


def estimate_cost(prompt_tokens: float, output_tokens: float, price: Price) -> float:
    """USD: prompt_tokens x input price + output_tokens x output price, prices per 1M tokens."""
    return (prompt_tokens * price.input_per_m + output_tokens * price.output_per_m) / 1_000_000


def run_cost(records: Iterable[Record] | Columns, price: Price | None) -> dict[str, Any] | None:
    """The cost of what was sent, from each record's usage (any status: a failed request that
    reported usage was billed). Records without usage are counted, not guessed."""
    if price is None:
        return None
    tokens = {False: [0, 0], True: [0, 0]}  # online / Batch API rows: [prompt, completion]
    with_usage = without = estimated = 0
    for record in records:
        batch = record.batch_id is not None
        if record.sent_s is None and not batch:
            continue  # never sent: skipped, or cancelled in the queue
        if record.prompt_tokens is None and record.completion_tokens is None:
            if not batch:  # a Batch API row without usage never ran: not billed
                without += 1
            continue
        with_usage += 1
        estimated += record.tokens_estimated
        tokens[batch][0] += record.prompt_tokens or 0
        tokens[batch][1] += record.completion_tokens or 0
    half = batch_price(price)
    assert half is not None
    cost = {
        "usd": estimate_cost(tokens[False][0], tokens[False][1], price)
        + estimate_cost(tokens[True][0], tokens[True][1], half),
        "prompt_tokens": tokens[False][0] + tokens[True][0],
        "completion_tokens": tokens[False][1] + tokens[True][1],
        "records_with_usage": with_usage,
        "records_without_usage": without,
        "records_estimated": estimated,
        "price": price.to_dict(),
    }
    if any(tokens[True]):  # rows answered by Batch API jobs, at the batch price
        cost["batch"] = {
            "prompt_tokens": tokens[True][0],
            "completion_tokens": tokens[True][1],
            "usd": estimate_cost(tokens[True][0], tokens[True][1], half),
            "price": half.to_dict(),
        }
    return cost


def project_cost(
    records: Iterable[Record] | Columns,
    price: Price | None,
    rows: int,
    output_cap: int,
    level: float = LEVEL,
) -> dict[str, Any] | None:
    """What `rows` input rows would cost at the measured cost per ok row, with a t interval.

    Each ok row that reported usage costs c_i = (prompt_i x price_in + completion_i x price_out)
    / 1M (a row a Batch API job answered, at the batch price); the projection is rows x mean(c),
    its interval rows x the mean's Student's t interval (low end at least 0), from n such rows.
    The ceiling is rows x the cost of a row with the mean prompt tokens and `output_cap` output
    tokens (max_tokens: what the dry run charges). None without a price or with fewer than 2 rows.
    """
    if price is None:
        return None
    half = batch_price(price)
    assert half is not None
    per_row: list[float] = []
    prompt: list[int] = []
    completion: list[int] = []
    for record in records:
        if record.status != OK or record.prompt_tokens is None or record.completion_tokens is None:
            continue
        prompt.append(record.prompt_tokens)
        completion.append(record.completion_tokens)
        per_row.append(
            estimate_cost(record.prompt_tokens, record.completion_tokens, half if record.batch_id else price)
        )
    interval = mean_interval(per_row, level)
    if interval is None:
        return None
    mean_prompt = math.fsum(prompt) / len(prompt)
    return {
        "rows": rows,
        "n": len(per_row),
        "level": level,
        "usd": rows * interval.estimate,
        "low": rows * max(0.0, interval.low),
        "high": rows * interval.high,
        "per_row_usd": interval.estimate,
        "mean_prompt_tokens": mean_prompt,
        "mean_completion_tokens": math.fsum(completion) / len(completion),
        "ceiling_usd": rows * estimate_cost(mean_prompt, output_cap, price),
        "ceiling_output_tokens": output_cap,
    }


def projection_text(projection: dict[str, Any]) -> str:
    """'$4.12 for 10,000 rows (95% $3.90-$4.35, from 50 ok rows); ceiling $9.80 (max_tokens ...)'."""
    p = projection
    return (
        f"{format_usd(p['usd'])} for {p['rows']:,} rows "
        f"({p['level']:.0%} {format_usd(p['low'])}-{format_usd(p['high'])}, from {p['n']:,} ok rows); "
        f"ceiling {format_usd(p['ceiling_usd'])} (max_tokens {p['ceiling_output_tokens']:,} per answer)"
    )


class Usage(NamedTuple):
    """What the cost figures read of a record, when a whole Record would cost more to build than
    the figures (a resumed run's earlier records, read in one pass)."""

    id: str
    status: str
    sent_s: float | None
    batch_id: str | None
    prompt_tokens: int | None
    completion_tokens: int | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Usage":
        """From a record's JSON object, as records.jsonl holds it."""
        get = data.get
        return cls(
            str(get("id")),
            get("status", ""),
            get("sent_s"),
            get("batch_id"),
            get("prompt_tokens"),
            get("completion_tokens"),
        )


class RunningCost:
    """A run's cost as its records arrive, for the live progress: what was sent so far (as
    run_cost counts it) and the projection of `rows` rows (as project_cost, without the
    ceiling), kept with Welford's running mean and variance of the cost per ok row."""

    def __init__(self, price: Price) -> None:
        self.price = price
        self.spent_usd = 0.0
        self.n = 0  # ok rows with usage
        self._mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the running mean

    def add(self, record: Record | Usage) -> None:
        if record.sent_s is None or record.prompt_tokens is None or record.completion_tokens is None:
            return  # never sent, or no usage: run_cost does not count it either
        cost = estimate_cost(record.prompt_tokens, record.completion_tokens, self.price)
        self.spent_usd += cost
        if record.status == OK:
            self.n += 1
            delta = cost - self._mean
            self._mean += delta / self.n
            self._m2 += delta * (cost - self._mean)

    def projection(self, rows: int, level: float = LEVEL) -> Interval | None:
        """`rows` x the mean cost per ok row, with its t interval; None below 2 ok rows."""
        if self.n < 2:
            return None
        interval = t_interval(self.n, self._mean, math.sqrt(self._m2 / (self.n - 1)), level)
        assert interval is not None
        return Interval(rows * interval.estimate, rows * max(0.0, interval.low), rows * interval.high)

    def text(self, rows: int | None) -> str:
        """'$0.12 spent, ~$4.10 for 10,000 rows (95% $3.90-$4.35, n=50)' for a progress line."""
        spent = f"{format_usd(self.spent_usd)} spent"
        projected = self.projection(rows) if rows else None
        if projected is None or not rows:
            return spent
        return (
            f"{spent}, ~{format_usd(projected.estimate)} for {rows:,} rows "
            f"({LEVEL:.0%} {format_usd(projected.low)}-{format_usd(projected.high)}, n={self.n:,})"
        )


def format_usd(usd: float) -> str:
    """$0.000040 below a cent (a pilot of a few rows), $0.0123 below a dollar, $12.34 above."""
    if not math.isfinite(usd):
        return "n/a"
    if usd < 0.01:
        return f"${usd:.6f}"
    return f"${usd:.4f}" if usd < 1 else f"${usd:,.2f}"
