"""The keywords of the Python face's functions as TypedDicts, for type checkers (`**options:
Unpack[RunOptions]`). Generated from batchrun/options.py by `python -m batchrun.api.keywords`: do not edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict


class RunOptions(TypedDict, total=False):
    """The keywords of `run` (all optional)."""

    prompt_column: str | None
    id_column: str | None
    template: str | None
    system: str | None
    format: str | None
    on_bad_row: str
    row_settings: bool
    synthetic: str | None
    speedup: float
    base_url: str | list[str] | tuple[str, ...] | None
    api_key: str | None
    model: str | None
    endpoint: str
    balance: str
    builtin_option: str | list[str] | tuple[str, ...] | None
    max_tokens: int | None
    temperature: float | None
    extra_body: str | Mapping[str, Any] | None
    json: bool
    json_schema: str | Path | dict[str, Any] | None | type
    batch_size: int
    concurrency: str | int
    rpm: str | float | None
    tpm: str | float | None
    timeout: float
    ttft_timeout: float | None
    retries: int
    max_retry_wait: float
    max_response_bytes: int
    slo: str | Mapping[str, float] | None
    out: str | Path | None
    output_format: str
    csv_formulas: str
    save_request: bool
    slice: Any
    price_in: float | None
    price_out: float | None
    resume: str | Path | None
    limit: int | None
    dry_run: bool
    mode: str | None
    deadline: Any
    batch_wait: Any
    quiet: bool
    fail_on_error: bool
    max_errors: int | None
    max_error_rate: float | None
    max_cost: float | None
    overwrite: bool
    input_changed: str | None
    tools: str | Path | list[dict[str, Any]] | dict[str, Any] | None
    tool_choice: Any
    parallel_tool_calls: bool | None
    tool_module: str | Path | None
    max_tool_rounds: int
    tool_timeout: float
    workers: str | int
    ray: bool
    ray_address: str | None
    ray_cpus: float
