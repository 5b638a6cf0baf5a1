"""The bench half of the reports: per-run rows, repeats with CIs, the recommendation, plots,
and the console table printed at the end of `batchrun bench`."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from batchrun.analysis import stats
from batchrun.analysis.metrics import cached_share, in_flight_timeline, summarize, wall_time
from batchrun.analysis.recommend import (
    DEFAULT_MAX_FAILURE_SHARE, BenchPoint, failed_text, percent, plateau_concurrency, recommend, throughput_text,
)
from batchrun.report import plots
from batchrun.store.records import OK
from batchrun.report.format import config_table, fmt_num, fmt_pct, fmt_s, slo_text
from batchrun.report.html import Document, Image, Section, Table, Text

FEW_REQUESTS = 30       # a level with fewer measured requests is marked in every table
# Two runs whose shares of cached prompt tokens differ by more than this met different cache states.
CACHE_STATE_GAP = 0.10


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
    n = s["counts"]["attempted"]
    return {"name": run["name"], "mode": run["mode"], "concurrency": conc, "repeat": run.get("repeat", 0),
            "n": n, "planned": run.get("planned") or None, "few": n < FEW_REQUESTS,
            "wall_time_s": s["wall_time_s"], "requests_per_s": rps,
            "output_tokens_per_s": s["throughput"]["output_tokens_per_s"],
            "goodput_per_s": (s.get("goodput") or {}).get("requests_per_s"),
            "speedup": speedup, "efficiency": speedup / conc if speedup is not None and conc else None,
            "latency_p50_s": s["latency_s"]["p50"], "latency_p99_s": s["latency_s"]["p99"],
            "ttft_p50_s": s["ttft_s"]["p50"], "ttft_p99_s": s["ttft_s"]["p99"],
            **_failures(s), "success_rate": s["success_rate"],
            "cached_share": cached_share(run.get("records") or []),
            "client_saturated": bool(s["loop_lag"] and s["loop_lag"]["client_saturated"])}


def _failures(s: Mapping[str, Any]) -> dict[str, Any]:
    """errors (sent requests that did not succeed) and their share of the sent."""
    n = s["counts"]["attempted"]
    return {"errors": n - s["counts"][OK], "failure_share": (n - s["counts"][OK]) / n if n else None}


def _wall(run: Mapping[str, Any]) -> float:
    """A run's wall time: as measured, else first send to last byte of its records."""
    return run.get("wall_time_s") or wall_time(run.get("records") or []) or 0.0


def _throughput_ci(runs: list[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """95% interval of pooled throughput: ok / sum(total_s) x L, with L = the measured mean in flight
    (Little's law), requests resampled; open-loop runs: a Poisson count over the run time."""
    records = [r for run in runs for r in run.get("records") or []
               if r.sent_s is not None and r.total_s is not None]
    wall = sum(map(_wall, runs))
    if len(records) < 2 or not wall:
        return None, None
    ok = [1.0 if r.status == OK else 0.0 for r in records]
    if any(run["mode"] == "rate" for run in runs):
        return stats.poisson_rate_ci(sum(ok), wall) or (None, None)
    iv = stats.little_rate_ci(ok, [r.total_s for r in records], wall)
    return (iv.low, iv.high) if iv else (None, None)


def _percentile_ci(values: list[float], q: float) -> tuple[float | None, float | None]:
    ci = stats.quantile_ci(sorted(values), q)
    return ci if ci is not None else (None, None)


def _pooled(runs: list[Mapping[str, Any]], slo: Mapping[str, float] | None) -> dict[str, Any]:
    """A level's repeats pooled: every request counts once; percentiles with order-statistic CIs."""
    records = [r for run in runs for r in run.get("records") or []]
    wall = sum(map(_wall, runs))
    s = summarize(records, wall_time_s=wall or None, slo=slo)
    out: dict[str, Any] = {"n": s["counts"]["attempted"], **_failures(s),
                           "requests_per_s": s["throughput"]["requests_per_s"],
                           "goodput_per_s": (s.get("goodput") or {}).get("requests_per_s")}
    out["requests_per_s_ci_low"], out["requests_per_s_ci_high"] = _throughput_ci(runs)
    ok = [r for r in records if r.status == OK]
    for key, attr in (("latency", "latency_s"), ("ttft", "ttft_s")):
        values = [getattr(r, attr) for r in ok if getattr(r, attr) is not None]
        for q in (50, 99):
            name = f"{key}_p{q}_s"
            out[name] = s[attr][f"p{q}"]
            out[name + "_ci_low"], out[name + "_ci_high"] = _percentile_ci(values, q)
    return out


def _groups(runs: list[Mapping[str, Any]], rows: list[dict[str, Any]],
            slo: Mapping[str, float] | None) -> list[dict[str, Any]]:
    """Repeats of one (mode, concurrency) pooled over their requests, with 95% intervals."""
    keyed: dict[tuple[str, Any], list[int]] = {}
    for i, row in enumerate(rows):
        keyed.setdefault((row["mode"], row["concurrency"] if row["mode"] != "rate" else runs[i].get("rate")),
                         []).append(i)
    groups = []
    for (mode, level), members in keyed.items():
        group: dict[str, Any] = {"mode": mode, "concurrency": rows[members[0]]["concurrency"],
                                 "rate": runs[members[0]].get("rate"), "repeats": len(members)}
        if any(runs[i].get("records") for i in members):
            group.update(_pooled([runs[i] for i in members], slo))
        else:   # summaries only: means over the repeats, no intervals
            for key in ("requests_per_s", "latency_p50_s", "latency_p99_s", "ttft_p50_s", "ttft_p99_s",
                        "goodput_per_s"):
                group[key] = _mean(rows[i][key] for i in members)
            group["n"] = sum(rows[i]["n"] for i in members)
            group["errors"] = sum(rows[i]["errors"] for i in members)
            group["failure_share"] = group["errors"] / group["n"] if group["n"] else None
        group["few"] = group["n"] < FEW_REQUESTS
        for key in ("speedup", "efficiency"):
            group[key] = _mean(rows[i][key] for i in members)
        groups.append(group)
    return groups


def bench_analysis(bench: Mapping[str, Any], slo: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Per-run rows, per-level groups (pooled, with CIs), the recommendation (the level, the
    throughput-best level, why every other level lost, as sentences too), the plateau, and what
    warm-up the bench did."""
    slo = slo if slo is not None else bench.get("slo")
    max_failure_share = bench.get("max_failure_share")
    max_failure_share = DEFAULT_MAX_FAILURE_SHARE if max_failure_share is None else max_failure_share
    runs = bench["runs"]
    summaries = [run_summary(run, slo) for run in runs]
    sync_rps = _mean(s["throughput"]["requests_per_s"] for run, s in zip(runs, summaries) if run["mode"] == "sync")
    rows = [_row(run, s, sync_rps) for run, s in zip(runs, summaries)]
    groups = _groups(runs, rows, slo)
    curve = sorted((g for g in groups if g["mode"] == "async" and g["concurrency"]), key=lambda g: g["concurrency"])
    points = [_point(g) for g in curve]
    c1 = next((g["requests_per_s"] for g in curve if g["concurrency"] == 1), None)
    rec = recommend(points, slo, max_failure_share)
    analysis = {"rows": rows, "groups": groups, "sync_requests_per_s": sync_rps,
                "ideal_base_requests_per_s": c1 if c1 is not None else sync_rps, "slo": slo,
                "max_failure_share": max_failure_share, "recommended_concurrency": rec.choice,
                "best_concurrency": rec.best,
                "recommendation_reasons": {str(k): v for k, v in sorted(rec.reasons.items())},
                "excluded_levels": [c for c in rec.excluded],
                # A level with failures counts only its successes: its curve would bend for that alone.
                "plateau_concurrency": plateau_concurrency(
                    [p for p in points if (p.failure_share or 0.0) <= max_failure_share]),
                "warmup": warmup_statement(bench.get("warmup"))}
    analysis["recommendation"] = [t.text for t in _recommendation(analysis)]
    return analysis


def _point(group: Mapping[str, Any]) -> BenchPoint:
    return BenchPoint(group["concurrency"], group["requests_per_s"], group["latency_p99_s"], group["ttft_p99_s"],
                      group.get("requests_per_s_ci_low"), group.get("requests_per_s_ci_high"),
                      group["n"], group.get("errors") or 0)


def warmup_statement(warmup: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the bench sent before measuring (as recorded in bench.json), with its sentence."""
    if warmup is None:
        return {"pass": None, "text": "Warm-up: not recorded (a bench written before batchrun recorded it)"}
    if not warmup.get("pass"):
        return {**warmup, "text": "No warm-up (--no-warmup): the first pass may see a cold cache; "
                                  "every request sent was measured"}
    n, failed = warmup.get("prompts") or 0, warmup.get("failed") or 0
    cap = warmup.get("max_tokens")
    text = (f"Warm-up: {n} prompt{'s' if n != 1 else ''} sent once before measuring "
            f"({warmup.get('concurrency')} at a time, {'whole answers' if cap is None else f'max_tokens {cap}'}), "
            "not measured")
    if failed:
        text += f"; {failed_text(failed, n)}"
        text += ", so the first pass may still see a cold cache" if failed == n else ""
    wave = warmup.get("wave")
    if wave != 0:
        text += ("; each run also opened its connections with one unmeasured wave (one request per slot)"
                 if wave is None else f"; each run also sent {wave} unmeasured request(s) first (--warmup)")
    return {**warmup, "text": text}


# ---------------------------------------------------------------- bench document

def _n(item: Mapping[str, Any]) -> str:
    """The sample size, marked when it is too small for its figures."""
    text = str(item["n"])
    if item.get("planned") and item["planned"] != item["n"]:
        text += f" of {item['planned']}"
    return text + " (<30)" if item["few"] else text


def _failed(item: Mapping[str, Any]) -> str:
    """The failed-requests cell: '18/40 (45%)', or '0'."""
    failed, n = item.get("errors") or 0, item["n"]
    return f"{failed}/{n} ({percent(failed / n)})" if failed and n else "0"


def _bench_rows(analysis: Mapping[str, Any]) -> Table:
    head = ["run", "mode", "c", "n", "failed", "wall", "req/s", "speedup", "efficiency", "p50 lat", "p99 lat",
            "p50 TTFT", "p99 TTFT"]
    goodput = analysis.get("slo") is not None
    cached = any(r.get("cached_share") is not None for r in analysis["rows"])
    if goodput:
        head.insert(7, "goodput/s")
    if cached:
        head.append("cached")
    rows = []
    for r in analysis["rows"]:
        row = [r["name"], r["mode"], str(r["concurrency"]), _n(r), _failed(r), fmt_s(r["wall_time_s"]),
               fmt_num(r["requests_per_s"]), fmt_num(r["speedup"], 2, "x"), fmt_pct(r["efficiency"]),
               fmt_s(r["latency_p50_s"]), fmt_s(r["latency_p99_s"]), fmt_s(r["ttft_p50_s"]), fmt_s(r["ttft_p99_s"])]
        if goodput:
            row.insert(7, fmt_num(r.get("goodput_per_s")))
        if cached:
            row.append(fmt_pct(r.get("cached_share")))
        rows.append(row)
    return Table(head, rows)


def _ci(mean: float | None, low: float | None, high: float | None, fmt: Any) -> str:
    return fmt(mean) if low is None else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def _level_rows(analysis: Mapping[str, Any]) -> Table:
    def ci(g: Mapping[str, Any], key: str, fmt: Any) -> str:
        return _ci(g.get(key), g.get(key + "_ci_low"), g.get(key + "_ci_high"), fmt)
    return Table(["mode", "c", "repeats", "n", "failed", "req/s [95% CI]", "p50 latency [95% CI]",
                  "p99 latency [95% CI]", "p50 TTFT [95% CI]", "p99 TTFT [95% CI]"],
                 [[g["mode"], str(g["concurrency"] if g["mode"] != "rate" else f"rate {g['rate']:g}"),
                   str(g["repeats"]), _n(g), _failed(g), ci(g, "requests_per_s", fmt_num),
                   ci(g, "latency_p50_s", fmt_s), ci(g, "latency_p99_s", fmt_s), ci(g, "ttft_p50_s", fmt_s),
                   ci(g, "ttft_p99_s", fmt_s)]
                  for g in analysis["groups"]])


def _level(analysis: Mapping[str, Any], concurrency: int | None) -> Mapping[str, Any] | None:
    return next((g for g in analysis["groups"] if g["mode"] == "async" and g["concurrency"] == concurrency), None)


def _recommendation(analysis: Mapping[str, Any]) -> list[Text]:
    """The recommendation as sentences: the level with its figures and n, the throughput-best
    level and why it was not picked (or that it is the same), the rule, why every level lost."""
    rec, best = analysis["recommended_concurrency"], analysis.get("best_concurrency")
    reasons = analysis.get("recommendation_reasons") or {}
    group, top = _level(analysis, rec), _level(analysis, best)
    if group is not None:
        lines = [f"Recommended concurrency: {rec} ({throughput_text(_point(group))}; p99 TTFT "
                 f"{fmt_s(group['ttft_p99_s'])}, p99 latency {fmt_s(group['latency_p99_s'])})."]
        if best == rec:
            lines[0] += " It is also the level with the most throughput."
    else:
        lines = ["No concurrency level can be recommended: every level measured was ruled out (below)."
                 if analysis["groups"] and reasons else "No concurrency level was measured."]
    said = best if top is not None and best != rec else None
    if top is not None and said is not None:
        why = reasons.get(str(best), "unknown")
        lines.append(f"The level with the most throughput, c={best} ({_figure(top, why)}), was not picked: {why}.")
    lines.append(_rule(analysis))
    for level, why in sorted(reasons.items(), key=lambda kv: int(kv[0])):
        other = _level(analysis, int(level))
        if int(level) != said and other is not None:
            lines.append(f"  c={level} ({_figure(other, why)}): {why}")
    slo, plateau = analysis["slo"], analysis["plateau_concurrency"]
    if group is not None and slo and group.get("goodput_per_s") is not None:
        lines.append(f"Goodput at concurrency {rec}: {fmt_num(group['goodput_per_s'])} req/s "
                     f"meet the SLO {slo_text(slo)}.")
    lines.append(f"Throughput stops growing after concurrency {plateau} (doubling it adds less than 10%)."
                 if plateau is not None else "Throughput was still growing at the highest concurrency measured.")
    return [Text(line) for line in lines]


def _figure(group: Mapping[str, Any], why: str) -> str:
    """A level's throughput with n and failures, where the reason that follows does not open
    with those very failures (they are said once)."""
    point = _point(group)
    if point.failed and why.startswith(failed_text(point.failed, point.n or 0)):
        return throughput_text(point, False) + f", n={point.n}"
    return throughput_text(point)


def _rule(analysis: Mapping[str, Any]) -> str:
    slo = analysis["slo"]
    rule = ("Rule: the lowest concurrency whose throughput (successful requests/s) is statistically "
            "indistinguishable from the best (95% intervals), among the levels with at most "
            f"{percent(analysis['max_failure_share'])} failed requests (--max-failure-share)")
    if slo:
        return rule + f" that meet the SLO {slo_text(slo)}."
    return rule + "; without --slo latency does not decide (give --slo to bound it)."


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
    """The bench report as blocks: per-run table, levels with CIs, recommendation, plots."""
    warnings = [Text(w, warning=True) for w in bench_warnings(analysis)]
    legend = Text("n = measured requests; failed = of those, the ones that did not succeed; req/s = successful "
                  "requests per second of wall time (a failed request takes time but is not counted); "
                  "speedup = req/s over the sync baseline's; efficiency = speedup / concurrency"
                  + ("; cached = share of prompt tokens the server served from its prompt cache"
                     if any(r.get("cached_share") is not None for r in analysis["rows"]) else ""))
    sections = [Section("Runs", [Text(analysis["warmup"]["text"]),
                                 *warnings, _bench_rows(analysis), legend]),
                Section("Levels (repeats pooled; 95% intervals)", [_level_rows(analysis), Text(
                    "Percentile intervals are distribution-free order-statistic intervals over the pooled "
                    "requests (none below the sample size they need: 6 for p50, 368 for p99); the req/s "
                    "interval is a bootstrap of the requests (Little's law, the mean in flight held).")]),
                Section("Recommendation", [Text(line) for line in analysis["recommendation"]]),
                Section("Plots", _bench_plots(analysis, bench["runs"]))]
    if config:
        sections.append(Section("Configuration", [config_table(config)]))
    return Document("batchrun bench report", sections)


def bench_warnings(analysis: Mapping[str, Any]) -> list[str]:
    """Runs whose figures need a caveat: failed requests, a saturated client, too few requests,
    passes that met different prompt-cache states."""
    out = [f"{r['name']}: {failed_text(r['errors'], r['n'])}: its req/s and speedup count only the "
           f"{r['n'] - r['errors']} that succeeded" for r in analysis["rows"] if r["errors"]]
    out += [f"{r['name']}: client saturated, its latency includes client-side queueing"
            for r in analysis["rows"] if r["client_saturated"]]
    few = [r["name"] for r in analysis["rows"] if r["few"]]
    if few:
        out.append(f"{', '.join(few)}: fewer than {FEW_REQUESTS} measured requests; their percentiles "
                   "and rates are too noisy to compare (marked <30)")
    shares = {r["name"]: r["cached_share"] for r in analysis["rows"] if r.get("cached_share") is not None}
    if len(shares) > 1 and max(shares.values()) - min(shares.values()) > CACHE_STATE_GAP:
        listed = ", ".join(f"{name} {fmt_pct(share)}" for name, share in shares.items())
        out.append(f"the runs met different prompt-cache states (share of prompt tokens cached: {listed}): "
                   "their TTFTs are not comparable")
    return out


def format_bench_table(analysis: Mapping[str, Any]) -> str:
    """The console view of a bench: the warm-up done, the caveats, one line per run, then the
    recommendation and the speedup."""
    table = _bench_rows(analysis)
    widths = [max(len(str(cell)) for cell in column) for column in zip(table.headers, *table.rows)]
    lines = [analysis["warmup"]["text"]]
    lines += [f"warning: {w}" for w in bench_warnings(analysis)]
    lines += ["  ".join(str(cell).rjust(w) for cell, w in zip(row, widths)) for row in [table.headers, *table.rows]]
    lines += analysis["recommendation"]
    lines.append(_speedup_line(analysis))
    return "\n".join(line for line in lines if line)


def _speedup_line(analysis: Mapping[str, Any]) -> str:
    """The best measured speedup over sync, among async runs with at most the allowed failure
    share, with the failures of either side beside it."""
    limit = analysis["max_failure_share"]
    rows = [r for r in analysis["rows"] if r["mode"] == "async" and r["speedup"] is not None]
    best = max((r for r in rows if (r["failure_share"] or 0.0) <= limit),
               key=lambda r: r["requests_per_s"] or 0, default=None)
    if best is None:
        return (f"No speedup over sync is shown: every async run had more than {percent(limit)} failed requests "
                "(its req/s counts only its successes)." if rows else "")
    text = (f"Best measured speedup over sync: {best['speedup']:.1f}x at concurrency {best['concurrency']} "
            f"(ideal {best['concurrency']}x, efficiency {fmt_pct(best['efficiency'])}")
    text += f"; {failed_text(best['errors'], best['n'])}" if best["errors"] else ""
    sync = [r for r in analysis["rows"] if r["mode"] == "sync" and r["errors"]]
    text += "".join(f"; the sync baseline {r['name']}: {failed_text(r['errors'], r['n'])}" for r in sync)
    return text + ")."
