"""Records -> results, summary and reports: the end of every run, and `batchrun report`.

One recipe (report/summary.run_summary) makes a run's summary from its records and the facts
around them, whether the run just ended (in one process, with workers, through the Batch API, or
resumed) or `batchrun report` reads its directory back; so `batchrun report` writes the files the
run wrote. The order is what makes a run crash-safe: every record is in records.jsonl (flushed)
before anything here runs, and everything here is rebuilt from that file.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun.analysis.columns import Columns, ColumnsBuilder
from batchrun.analysis.cost import project_cost, resolve_price, run_cost
from batchrun.analysis.distribution import GapSample
from batchrun.config import RunConfig
from batchrun.endpoint.requests import DEFAULT_OUTPUT_TOKENS
from batchrun.endpoint.resolve import sim_config
from batchrun.errors import ConfigError
from batchrun.inputs.scan import count_rows
from batchrun.report.summary import (
    SAMPLE_ROWS,
    RunFacts,
    load_bench,
    load_run,
    read_summary,
    run_summary,
    slim_records,
    write_reports,
)
from batchrun.report.workloads import write_extras
from batchrun.sim.config import public as public_sim
from batchrun.store.outputs import write_results
from batchrun.store.records import OK, RECORDS
from batchrun.store.sessions import add_wall_time

# What `batchrun report` keeps of a summary.json as it was written: what was measured, and with
# which batchrun (the rest it rebuilds).
KEPT = ("batchrun_version", "input", "builtin_endpoint", "interrupted")


@dataclass
class RunOutcome:
    """How a run ended, and what it wrote."""

    out_dir: Path
    summary: dict[str, Any]
    interrupted: bool = False
    aborted: str | None = None
    input_error: Exception | None = None
    failed: int = 0
    files: list[Path] = field(default_factory=list)
    endpoint: dict[str, Any] = field(default_factory=dict)  # endpoint_info of this session
    refused: str | None = None  # the endpoint refused the run (key, model): what it said
    internal_errors: int = 0  # rows that met a bug of batchrun's (see internal-errors.log)
    max_cost: dict[str, Any] | None = None  # --max-cost: the budget, the spend, and why it stopped sending


def finish_run(
    outcome: RunOutcome,
    config: RunConfig,
    lag: list[float] | None,
    wall: float,
    started_wall: float,
    findings: dict[str, Any] | None = None,
) -> None:
    """results.csv (or .parquet), summary.json, report.md, report.html and the extras, from
    records.jsonl; `outcome.summary` and `outcome.files` are filled in."""
    out = outcome.out_dir
    gc.collect()  # the run's cyclic garbage (collected rarely while sending) is free for what follows
    gaps = GapSample()
    lean = ColumnsBuilder(keep=SAMPLE_ROWS, gaps=gaps)  # the summary's figures, one record at a time
    outcome.files.append(
        write_results(
            out / RECORDS,
            out,
            config.output.output_format,
            id_column=config.input.id_column,
            csv_formulas=config.output.csv_formulas,
            each=lean.add,
        )
    )
    wall_total = add_wall_time(out, wall)
    records = lean.finish()
    if config.endpoint.endpoint == "embeddings":
        from batchrun.store.vectors import consolidate  # lazy: pyarrow and numpy (~0.3 s) for vectors only

        outcome.files.append(consolidate(out, (r.id for r in slim_records(out / RECORDS) if r.status == OK)))
    facts = RunFacts(
        wall_time_s=wall_total,
        slo=config.limits.slo,
        loop_lag_s=lag,
        findings=findings or {},
        ended=_ended(outcome, config, records, wall, started_wall),
    )
    public = config.public_dict()
    outcome.summary = run_summary(out, records, facts, config=public, gaps=gaps)
    builtin = sim_config(config)
    extra = {"builtin_endpoint": public_sim(builtin)} if builtin is not None else None
    outcome.files.extend(_write(out, outcome.summary, records, public, outcome.endpoint, extra).values())


def _ended(
    outcome: RunOutcome, config: RunConfig, records: Columns, wall: float, started_wall: float
) -> dict[str, Any]:
    """How the run ended (with the pilot's --limit, and for a run that did not finish, how many
    input rows it never reached) and the cost of what was sent, when a price is known."""
    run: dict[str, Any] = {
        "interrupted": outcome.interrupted,
        "aborted": outcome.aborted,
        "input_error": str(outcome.input_error) if outcome.input_error else None,
        "refused": outcome.refused,
        "internal_errors": outcome.internal_errors,
        "session_wall_time_s": wall,
        "started_at": started_wall,
        "limit": config.control.limit,
    }
    if outcome.max_cost is not None:
        run["max_cost"] = outcome.max_cost
    stopped = bool(outcome.interrupted or outcome.aborted or outcome.refused)
    # Only a pilot or a run that stopped counts its input: a finished run has a record per row.
    rows = _input_rows(config) if stopped or config.control.limit else None
    if stopped and rows is not None:
        total = min(rows, config.control.limit) if config.control.limit else rows
        run["unread"] = max(0, total - len(records))
    try:
        price = resolve_price(config.endpoint.model, config.output.price_in, config.output.price_out)
    except ConfigError:
        price = None
    cost = run_cost(records, price)
    if cost is not None and rows is not None and rows > len(records):
        cap = config.request.max_tokens or DEFAULT_OUTPUT_TOKENS
        cost["projection"] = project_cost(records, price, rows, cap)
    return {"run": run, "cost": cost}


def _input_rows(config: RunConfig) -> int | None:
    """Rows in the whole input file (not only a pilot's --limit); None without a file."""
    if config.input.path is None:
        return None
    return count_rows(config.input.path, config.input.fmt)


def _write(
    run_dir: Path,
    summary: dict[str, Any],
    records: Columns,
    config: dict[str, Any] | None,
    endpoint: dict[str, Any] | None,
    extra: dict[str, Any] | None,
) -> dict[str, Path]:
    return {
        **write_reports(run_dir, summary, records, config=config, endpoint=endpoint, extra=extra),
        **write_extras(run_dir, summary),
    }


def rebuild_reports(run_dir: Path | str) -> dict[str, Path]:
    """`batchrun report RUN_DIR`: rebuild every report of a run or a bench from its files, as the
    run wrote them (results.csv, written from the same records, is left as it is)."""
    run_dir = Path(run_dir)
    stored = read_summary(run_dir)
    kept = {k: v for k, v in stored.items() if k in KEPT}  # in the order the run wrote them
    if (run_dir / "bench.json").exists():
        bench = load_bench(run_dir)
        return write_reports(
            run_dir,
            stored.get("summary"),
            [],
            bench=bench,
            config=bench["config"],
            endpoint=stored.get("endpoint"),
            extra=kept,
        )
    run = load_run(run_dir, lean=True)
    assert isinstance(run.records, Columns)
    return _write(run_dir, run.summary, run.records, run.config, run.endpoint, kept)
