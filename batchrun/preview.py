"""`batchrun run FILE --dry-run`: read the whole file (streamed), list every bad row, show three
rendered prompts, estimate tokens, cost and the time the rate limits imply. Sends nothing and
starts no endpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from batchrun.analysis.cost import Price, batch_price, estimate_cost, format_usd, resolve_price
from batchrun.config import RunConfig
from batchrun.endpoint.requests import estimate_prompt_tokens, estimate_request_tokens
from batchrun.inputs.prompt import BadRow
from batchrun.inputs.scan import setting_columns
from batchrun.plan import jobs, limited, open_rows
from batchrun.report.format import fmt_eta
from batchrun.store.outputs import done_ids

SHOWN_PROMPTS = 3
SHOWN_BAD_ROWS = 50
TOKEN_METHOD = "UTF-8 bytes / 4 + 4 per message; no tokenizer installed"
TOKENS_PER_MESSAGE = 4


def tokenizer() -> tuple[Any, str] | None:
    """tiktoken's o200k_base encoding when tiktoken is installed and has it (it may need to
    download it once); None otherwise, and the estimate falls back to UTF-8 bytes / 4."""
    try:
        import tiktoken  # optional, and slow to import: a dry run alone tries it

        return tiktoken.get_encoding("o200k_base"), "tiktoken o200k_base + 4 per message"
    except Exception:  # noqa: BLE001 - not installed, or no network to fetch the encoding
        return None


def count_prompt_tokens(body: dict[str, Any], encoding: Any) -> int:
    """Prompt tokens of a body with a real tokenizer: every message's text + 4 per message."""
    total = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        total += len(encoding.encode(content or "")) + TOKENS_PER_MESSAGE
    return max(1, total)


@dataclass
class Preview:
    """What a run of `config` would send."""

    rows: int = 0  # rows read (sendable + bad + already done)
    done: int = 0  # --resume: rows already ok, not sent again
    sendable: int = 0
    bad: list[str] = field(default_factory=list)  # the first SHOWN_BAD_ROWS reasons
    bad_count: int = 0
    prompts: list[list[dict[str, Any]]] = field(default_factory=list)  # the first rendered conversations
    prompt_tokens: int = 0  # estimated
    output_tokens: int = 0  # upper bound: each request's max_tokens (or the default charge)
    price: Price | None = None
    token_method: str = TOKEN_METHOD
    row_settings: dict[str, int] = field(default_factory=dict)  # setting column -> distinct values

    @property
    def cost_usd(self) -> float | None:
        return None if self.price is None else estimate_cost(self.prompt_tokens, self.output_tokens, self.price)


def dry_run(config: RunConfig) -> Preview:
    """Read every row as a run would, send nothing."""
    preview = Preview(price=resolve_price(config.endpoint.model, config.output.price_in, config.output.price_out))
    preview.row_settings = setting_columns(config.input.path, config.input.fmt) if config.input.path else {}
    counter = tokenizer()
    if counter is not None:
        preview.token_method = counter[1]
    reading = config.replace(on_bad_row="skip")  # every bad row, not only the first
    done = done_ids(config.control.resume / "records.jsonl") if config.control.resume else set()
    preview.done = preview.rows = len(done)
    for item in jobs(reading, limited(open_rows(reading), config.control.limit), done):
        preview.rows += 1
        if isinstance(item, BadRow):
            preview.bad_count += 1
            if len(preview.bad) < SHOWN_BAD_ROWS:
                preview.bad.append(item.reason)
            continue
        body = json.loads(item.body)
        preview.sendable += 1
        estimate = estimate_prompt_tokens(body)
        preview.output_tokens += estimate_request_tokens(body, config.request.max_tokens) - estimate
        preview.prompt_tokens += count_prompt_tokens(body, counter[0]) if counter else estimate
        if len(preview.prompts) < SHOWN_PROMPTS:
            preview.prompts.append(body.get("messages") or [])
    return preview


def limits_time_s(preview: Preview, rpm: float | None, tpm: float | None) -> float | None:
    """Seconds the rate limits alone impose: the slower of rows / RPM and tokens / TPM (tokens
    as charged: prompt estimate + output bound). None without limits."""
    times = []
    if rpm:
        times.append(preview.sendable / rpm * 60)
    if tpm:
        times.append((preview.prompt_tokens + preview.output_tokens) / tpm * 60)
    return max(times) if times else None


def format_preview(preview: Preview, config: RunConfig) -> str:
    skip = config.input.on_bad_row == "skip"
    lines = [
        f"dry run of {config.input.path}: nothing was sent",
        f"rows              {preview.rows} ({preview.sendable} to send, {preview.bad_count} bad"
        + (" to skip" if skip and preview.bad_count else "")
        + (f", {preview.done} already done" if preview.done else "")
        + ")"
        + (f", up to the first {config.control.limit} good ones (--limit)" if config.control.limit else ""),
    ]
    label = "skipped row       " if skip else "bad row           "
    lines.extend(label + reason for reason in preview.bad)
    if preview.bad_count > len(preview.bad):
        lines.append(f"{label}... and {preview.bad_count - len(preview.bad)} more")
    if preview.bad_count and not skip:
        lines.append("                  a run stops at the first bad row: fix them, or --on-bad-row skip skips them")
    for name, distinct in preview.row_settings.items():
        lines.append(
            f"row setting       column '{name}' ({distinct} distinct values) sets {name} per row"
            + (" (ignored: --no-row-settings)" if not config.input.row_settings else "")
        )
    for i, messages in enumerate(preview.prompts, 1):
        lines.append(f"prompt {i}          " + " | ".join(_message_text(m) for m in messages))
    lines.append(f"prompt tokens     ~{preview.prompt_tokens:,} (estimated: {preview.token_method})")
    lines.append(
        f"output tokens     at most {preview.output_tokens:,} (each request's max_tokens"
        + ("" if config.request.max_tokens else "; none given, so 256 per request")
        + ")"
    )
    lines.append("cost              " + _cost_text(preview, config.endpoint.model))
    if preview.price is not None:
        lines.append("cost, batch mode  " + _batch_cost_text(preview, config.endpoint.model))
    if config.control.max_cost is not None:
        lines.append("budget            " + _budget_text(preview, config.control.max_cost))
    seconds = limits_time_s(preview, config.limits.rpm, config.limits.tpm)
    lines.append(
        "time              "
        + (
            f"at least {fmt_eta(seconds)} at the --rpm / --tpm limits"
            if seconds is not None
            else "no fixed --rpm / --tpm (auto paces by the provider's own limits): depends on the endpoint"
        )
    )
    return "\n".join(lines)


def _message_text(message: dict[str, Any], width: int = 160) -> str:
    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    text = " ".join(str(text).split())
    return f"[{message.get('role')}] " + (text if len(text) <= width else text[: width - 1] + "…")


def _batch_cost_text(preview: Preview, model: str | None) -> str:
    """The same rows through the Batch API (--mode batch): its price; answers within 24 h."""
    price = batch_price(preview.price, model)
    assert price is not None
    usd = estimate_cost(preview.prompt_tokens, preview.output_tokens, price)
    return (
        f"at most {format_usd(usd)} with --mode batch (prompt ${price.input_per_m:g} + output "
        f"${price.output_per_m:g} per 1M tokens: {price.source}; answers within 24 h)"
    )


def _budget_text(preview: Preview, max_cost: float) -> str:
    """--max-cost against the ceiling: whether it can stop the run, and where a pilot tells more."""
    if preview.cost_usd is None:
        return f"--max-cost {format_usd(max_cost)} needs a price: the run is refused without --price-in and --price-out"
    if preview.cost_usd <= max_cost:
        return f"--max-cost {format_usd(max_cost)} covers even the ceiling: the run will not stop for it"
    return (
        f"--max-cost {format_usd(max_cost)} is {max_cost / preview.cost_usd:.0%} of the ceiling: the run stops "
        "(resumable) when the measured spend reaches it; a --limit pilot projects what the whole run costs"
    )


def _cost_text(preview: Preview, model: str | None) -> str:
    if preview.price is None:
        which = f"for {model}" if model else "without --model"
        return f"unknown: no list price {which}; pass --price-in and --price-out (USD per 1M tokens)"
    p = preview.price
    return (
        f"at most {format_usd(preview.cost_usd or 0.0)} (prompt ${p.input_per_m:g} + output "
        f"${p.output_per_m:g} per 1M tokens: {p.source}; output counted at its max_tokens bound)"
    )
