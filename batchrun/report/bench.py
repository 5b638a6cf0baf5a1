"""The bench half of the reports: per-run rows, repeats with CIs, the recommendation, plots,
and the console table printed at the end of `batchrun bench`."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from batchrun.report import plots
from batchrun.analysis.metrics import (
    BenchPoint, in_flight_timeline, mean_ci95, plateau_concurrency, recommend_concurrency, summarize,
)
from batchrun.store.records import OK
from batchrun.report.format import config_table, fmt_num, fmt_pct, fmt_s, slo_text
from batchrun.report.html import Document, Image, Section, Table, Text


# ---------------------------------------------------------------- bench analysis

def _mean(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def run_summary(run: Mapping[str, Any], slo: Mapping[str, float] | None = None) -> dict[str, Any]:
    """A bench run's summary: the one given, else computed from its records."""
    if run.get("summary") is not None:
        return dict(run["summary"])
    return summarize(run.get("records") or [], wall_time_s=run.get("wall_time_s"), slo=slo,
                     loop_lag_s=run.get("loop_lag_s"))


def _row(run: Mapping[str, Any], s: Mapping[str, Any], sync_rps: float | None) -> dict[str, Any]:
    rps, conc = s["throughput"]["requests_per_s"], run.get("concurrency")
    speedup = rps / sync_rps if rps is not None and sync_rps else None
    return {"name": run["name"], "mode": run["mode"], "concurrency": conc, "repeat": run.get("repeat", 0),
            "wall_time_s": s["wall_time_s"], "requests_per_s": rps,
            "output_tokens_per_s": s["throughput"]["output_tokens_per_s"],
            "speedup": speedup, "efficiency": speedup / conc if speedup is not None and conc else None,
            "latency_p50_s": s["latency_s"]["p50"], "latency_p99_s": s["latency_s"]["p99"],
            "ttft_p50_s": s["ttft_s"]["p50"], "ttft_p99_s": s["ttft_s"]["p99"],
            "errors": s["counts"]["attempted"] - s["counts"][OK], "success_rate": s["success_rate"],
            "client_saturated": bool(s["loop_lag"] and s["loop_lag"]["client_saturated"])}


def _groups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Repeats of one (mode, concurrency) pooled: means and 95% CIs over the repeats."""
    keyed: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for row in rows:
        keyed.setdefault((row["mode"], row["concurrency"]), []).append(row)
    groups = []
    for (mode, conc), members in keyed.items():
        group: dict[str, Any] = {"mode": mode, "concurrency": conc, "repeats": len(members)}
        for key in ("requests_per_s", "latency_p99_s", "ttft_p99_s"):
            values = [m[key] for m in members if m[key] is not None]
            group[key], group[key + "_ci_low"], group[key + "_ci_high"] = mean_ci95(values)
        for key in ("latency_p50_s", "ttft_p50_s", "speedup", "efficiency"):
            group[key] = _mean(m[key] for m in members)
        groups.append(group)
    return groups


def bench_analysis(bench: Mapping[str, Any], slo: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Per-run rows, per-level groups (with CIs), the recommended and plateau concurrency."""
    slo = slo if slo is not None else bench.get("slo")
    runs = bench["runs"]
    summaries = [run_summary(run, slo) for run in runs]
    sync_rps = _mean(s["throughput"]["requests_per_s"] for run, s in zip(runs, summaries) if run["mode"] == "sync")
    rows = [_row(run, s, sync_rps) for run, s in zip(runs, summaries)]
    groups = _groups(rows)
    curve = sorted((g for g in groups if g["mode"] == "async" and g["concurrency"]), key=lambda g: g["concurrency"])
    points = [BenchPoint(g["concurrency"], g["requests_per_s"], g["latency_p99_s"], g["ttft_p99_s"]) for g in curve]
    c1 = next((g["requests_per_s"] for g in curve if g["concurrency"] == 1), None)
    return {"rows": rows, "groups": groups, "sync_requests_per_s": sync_rps,
            "ideal_base_requests_per_s": c1 if c1 is not None else sync_rps, "slo": slo,
            "recommended_concurrency": recommend_concurrency(points, slo),
            "plateau_concurrency": plateau_concurrency(points)}


# ---------------------------------------------------------------- bench document

def _bench_rows(analysis: Mapping[str, Any]) -> Table:
    head = ["run", "mode", "c", "wall", "req/s", "speedup", "efficiency", "p50 lat", "p99 lat",
            "p50 TTFT", "p99 TTFT", "errors"]
    return Table(head, [[r["name"], r["mode"], str(r["concurrency"]), fmt_s(r["wall_time_s"]),
                         fmt_num(r["requests_per_s"]), fmt_num(r["speedup"], 2, "x"), fmt_pct(r["efficiency"]),
                         fmt_s(r["latency_p50_s"]), fmt_s(r["latency_p99_s"]), fmt_s(r["ttft_p50_s"]),
                         fmt_s(r["ttft_p99_s"]), str(r["errors"])] for r in analysis["rows"]])


def _ci(mean: float | None, low: float | None, high: float | None, fmt: Any) -> str:
    return fmt(mean) if low is None else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def _repeat_rows(analysis: Mapping[str, Any]) -> Table:
    return Table(["mode", "c", "repeats", "req/s mean [95% CI]", "p99 latency mean [95% CI]"],
                 [[g["mode"], str(g["concurrency"]), str(g["repeats"]),
                   _ci(g["requests_per_s"], g["requests_per_s_ci_low"], g["requests_per_s_ci_high"], fmt_num),
                   _ci(g["latency_p99_s"], g["latency_p99_s_ci_low"], g["latency_p99_s_ci_high"], fmt_s)]
                  for g in analysis["groups"]])


def _recommendation(analysis: Mapping[str, Any]) -> list[Text]:
    rule = (f"within the SLO {slo_text(analysis['slo'])}" if analysis["slo"]
            else "with p99 latency and p99 TTFT within 2x their values at the lowest concurrency")
    rec, plateau = analysis["recommended_concurrency"], analysis["plateau_concurrency"]
    return [Text(f"Recommended concurrency: {rec}, the highest-throughput level {rule}." if rec is not None
                 else f"No concurrency level had throughput {rule}."),
            Text(f"Throughput stops growing after concurrency {plateau} (doubling it adds less than 10%)."
                 if plateau is not None else "Throughput was still growing at the highest concurrency measured.")]


def _bench_plots(analysis: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> list[Image]:
    curve = sorted((g for g in analysis["groups"] if g["mode"] == "async" and g["concurrency"]),
                   key=lambda g: g["concurrency"])
    cs = [g["concurrency"] for g in curve]
    images = [Image(plots.throughput_vs_concurrency(
                  cs, [g["requests_per_s"] for g in curve], ideal_base=analysis["ideal_base_requests_per_s"],
                  ci=[(g["requests_per_s_ci_low"], g["requests_per_s_ci_high"]) for g in curve]),
                  "throughput vs concurrency"),
              Image(plots.percentiles_vs_concurrency(cs, {
                  label: [g[key] for g in curve] for label, key in (
                      ("p50 latency", "latency_p50_s"), ("p99 latency", "latency_p99_s"),
                      ("p50 TTFT", "ttft_p50_s"), ("p99 TTFT", "ttft_p99_s"))},
                  title="Latency and TTFT vs concurrency"), "latency and TTFT vs concurrency")]
    with_records = [run for run in runs if run.get("records")]
    if with_records:
        ttft = {run["name"]: [r.ttft_s for r in run["records"] if r.status == OK and r.ttft_s is not None]
                for run in with_records}
        steps = {run["name"]: in_flight_timeline(run["records"]) for run in with_records}
        images += [Image(plots.cdf(ttft, title="TTFT CDF per run", xlabel="seconds"), "TTFT CDF per run"),
                   Image(plots.timeline(steps, title="Requests in flight per run"), "in-flight timeline per run")]
    return images


def bench_document(analysis: Mapping[str, Any], bench: Mapping[str, Any],
                   config: Mapping[str, Any] | None = None) -> Document:
    """The bench report as blocks: per-run table, repeats with CIs, recommendation, plots."""
    warnings = [Text(f"{r['name']}: client saturated, its latency includes client-side queueing", warning=True)
                for r in analysis["rows"] if r["client_saturated"]]
    legend = Text("speedup = req/s over the sync baseline's; efficiency = speedup / concurrency")
    sections = [Section("Runs", [*warnings, _bench_rows(analysis), legend]),
                Section("Recommendation", _recommendation(analysis)),
                Section("Plots", _bench_plots(analysis, bench["runs"]))]
    if any(g["repeats"] > 1 for g in analysis["groups"]):
        sections.insert(1, Section("Repeats (95% CI, Student's t)", [_repeat_rows(analysis)]))
    if config:
        sections.append(Section("Configuration", [config_table(config)]))
    return Document("batchrun bench report", sections)


def format_bench_table(analysis: Mapping[str, Any]) -> str:
    """The console view of a bench: one line per run, then the recommendation and the speedup."""
    table = _bench_rows(analysis)
    widths = [max(len(str(cell)) for cell in column) for column in zip(table.headers, *table.rows)]
    lines = ["  ".join(str(cell).rjust(w) for cell, w in zip(row, widths)) for row in [table.headers, *table.rows]]
    lines += [t.text for t in _recommendation(analysis)]
    best = max((r for r in analysis["rows"] if r["mode"] == "async" and r["speedup"] is not None),
               key=lambda r: r["requests_per_s"] or 0, default=None)
    if best is not None:
        lines.append(f"Best measured speedup over sync: {best['speedup']:.1f}x at concurrency "
                     f"{best['concurrency']} (ideal {best['concurrency']}x, efficiency {fmt_pct(best['efficiency'])}).")
    return "\n".join(lines)
