"""Pure figures for the workloads beyond one chat request per row: embeddings batches, synthetic
token lengths (requested vs realised), multi-turn sessions and trace-replay schedule lag.
Records in, JSON-ready dicts out; no clock, no printing."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping

from batchrun.analysis.columns import Columns
from batchrun.analysis.distribution import Distribution
from batchrun.analysis.metrics import schedule_figures, summarize
from batchrun.analysis.slices import time_slices
from batchrun.analysis.timeline import per_s, sent_timed
from batchrun.inputs.synthetic import requested_lengths
from batchrun.store.records import OK, Record


def embedding_figures(records: Iterable[Record], wall_time_s: float | None) -> dict[str, Any]:
    """inputs/s and prompt tokens/s over the run's wall time; batches are told apart by request id.

    batch_latency_s: one value per successful batch (send -> whole response read). One pass, one
    record at a time: `records` may be a stream read from disk."""
    inputs = tokens = 0
    batches: dict[str, float] = {}
    for r in records:
        if r.status != OK:
            continue
        inputs += 1
        tokens += r.prompt_tokens or 0
        if r.latency_s is not None:
            batches.setdefault(r.request_id or f"{r.sent_s}", r.latency_s)
    return {
        "inputs": inputs,
        "batches": len(batches),
        "inputs_per_s": per_s(inputs, wall_time_s),
        "prompt_tokens": tokens,
        "prompt_tokens_per_s": per_s(tokens, wall_time_s),
        "inputs_per_batch": inputs / len(batches) if batches else None,
        "batch_latency_s": Distribution.of(batches.values()).to_dict(),
    }


def length_figures(records: Iterable[Record], requested: Mapping[str, Any]) -> dict[str, Any]:
    """Requested prompt/output lengths beside the realised ones (from usage) of ok records."""
    ok = [r for r in records if r.status == OK]
    return {
        "requested": dict(requested),
        "prompt_tokens": Distribution.of(r.prompt_tokens for r in ok if r.prompt_tokens is not None).to_dict(),
        "output_tokens": Distribution.of(r.completion_tokens for r in ok if r.completion_tokens is not None).to_dict(),
        "usage_records": sum(1 for r in ok if not r.tokens_estimated),
    }


def turn_figures(records: Iterable[Record], turn_of: Mapping[str, int]) -> list[dict[str, Any]]:
    """TTFT and latency per turn number (1-based), over ok records whose id is in `turn_of`."""
    by_turn: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        if r.status == OK and r.id in turn_of:
            by_turn[turn_of[r.id]].append(r)
    return [
        {
            "turn": t,
            "count": len(rs),
            "prompt_tokens": Distribution.of(r.prompt_tokens for r in rs if r.prompt_tokens is not None).to_dict(),
            "ttft_s": Distribution.of(r.ttft_s for r in rs if r.ttft_s is not None).to_dict(),
            "latency_s": Distribution.of(r.latency_s for r in rs if r.latency_s is not None).to_dict(),
        }
        for t, rs in sorted(by_turn.items())
    ]


def schedule_lag(records: Iterable[Record] | Columns) -> dict[str, Any]:
    """Actual send minus scheduled send (s), for records that had a schedule (open-loop runs): the
    run summary's schedule.send_lag_s, under the name the workload sections have always used."""
    cols = records if isinstance(records, Columns) else Columns.of(records, keep=0)
    schedule = schedule_figures(cols, sent_timed(cols))
    return schedule["send_lag_s"] if schedule else Distribution().to_dict()


def synthetic_figures(
    records: list[Record], info: Mapping[str, Any], requested: Mapping[str, list[int]], ids: list[str]
) -> dict[str, Any]:
    """Requested lengths (what the spec drew for these rows) beside realised ones (usage), and
    the per-row difference realised - requested for output tokens (0 when the server held it)."""
    by_id = {r.id: r for r in records}
    diffs_out, diffs_prompt = [], []
    for i, id_ in enumerate(ids):
        r = by_id.get(id_)
        if r is None or r.status != OK or r.tokens_estimated:
            continue
        if r.completion_tokens is not None:
            diffs_out.append(r.completion_tokens - requested["output_tokens"][i])
        if r.prompt_tokens is not None:
            diffs_prompt.append(r.prompt_tokens - requested["prompt_tokens"][i])
    realised = length_figures(records, {})
    return {
        "spec": info.get("spec"),
        "settings": {k: v for k, v in info.items() if k not in ("spec", "sizing")},
        "sizing": info.get("sizing"),
        "usage_records": realised["usage_records"],
        "realised": {"prompt_tokens": realised["prompt_tokens"], "output_tokens": realised["output_tokens"]},
        "requested": {
            "prompt_tokens": Distribution.of(requested["prompt_tokens"]).to_dict(),
            "output_tokens": Distribution.of(requested["output_tokens"]).to_dict(),
        },
        "prompt_tokens_error": Distribution.of(diffs_prompt).to_dict(),
        "output_tokens_error": Distribution.of(diffs_out).to_dict(),
    }


def workload_summary(
    config: Mapping[str, Any],
    records: list[Record] | Columns,
    wall_time_s: float | None,
    synthetic_info: Mapping[str, Any] | None = None,
    turn_of: Mapping[str, int] | None = None,
    stream: Callable[[], Iterable[Record]] | None = None,
) -> dict[str, Any]:
    """The extra summary sections a run's config calls for (empty for a plain chat run).

    `records`: Records, or a run's Columns; then `stream` gives the (slimmed) records again, one
    at a time, for the sections that need what columns do not keep (ids, request ids)."""
    cols = records if isinstance(records, Columns) else Columns.of(records, keep=0)
    again: Callable[[], Iterable[Record]]
    if stream is not None:
        again = stream
    elif isinstance(records, Columns):
        again = lambda: iter(())  # no records to read again: those sections are empty
    else:
        listed = records
        again = lambda: iter(listed)
    out: dict[str, Any] = {}
    if config.get("endpoint") == "embeddings":
        out["embeddings"] = embedding_figures(again(), wall_time_s)
    if config.get("synthetic") and synthetic_info is not None:
        records_list = list(again())
        ids = [r.id for r in records_list if r.id.startswith("syn-")]
        out["synthetic"] = synthetic_figures(
            records_list, synthetic_info, requested_lengths(config["synthetic"], ids), ids
        )
    if cols.has("endpoint"):
        out["by_endpoint"] = endpoint_figures(cols, wall_time_s)
    if turn_of:
        out["turns"] = turn_figures(again(), turn_of)
    if cols.has("scheduled_s"):
        out["schedule_lag_s"] = schedule_lag(cols)
    width = config.get("slice", config.get("slice_s"))  # run.json before the keys were option names: slice_s
    if width:
        out["slices"] = time_slices(cols, width)
    return out


def endpoint_figures(records: list[Record] | Columns, wall_time_s: float | None) -> dict[str, dict[str, Any]]:
    """Per endpoint (the one that answered each record's final attempt): counts, success rate,
    throughput over the run's wall time, and the latency / TTFT distributions."""
    cols = records if isinstance(records, Columns) else Columns.of(records, keep=0)
    codes = cols.column("endpoint")
    out = {}
    for name in sorted(n for n in cols.labels_table("endpoint") if n):
        code = cols.label_code("endpoint", name)
        s = summarize(cols.select([c == code for c in codes]), wall_time_s=wall_time_s or None)
        out[name] = {k: s[k] for k in ("counts", "success_rate", "throughput", "latency_s", "ttft_s", "tokens")}
    return out
