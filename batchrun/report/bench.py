"""The bench half of the reports: per-run rows, repeats with CIs, the recommendation, plots,
and the console table printed at the end of `batchrun bench`."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from batchrun.analysis import stats
from batchrun.analysis.metrics import cached_share, summarize
from batchrun.analysis.recommend import (
    DEFAULT_MAX_FAILURE_SHARE,
    BenchPoint,
    failed_text,
    indistinguishable,
    percent,
    plateau_concurrency,
    recommend,
    throughput_text,
)
from batchrun.analysis.timeline import in_flight_timeline, wall_time
from batchrun.report import plots
from batchrun.report.format import config_table, fmt_num, fmt_pct, fmt_s, slo_text
from batchrun.report.html import Document, Image, Section, Table, Text
from batchrun.store.records import OK

FEW_REQUESTS = 30  # a level with fewer measured requests is marked in every table
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
    return summarize(
        run.get("records") or [], wall_time_s=run.get("wall_time_s"), slo=slo, loop_lag_s=run.get("loop_lag_s")
    )


def _row(run: Mapping[str, Any], s: Mapping[str, Any], sync_rps: float | None) -> dict[str, Any]:
    rps, conc = s["throughput"]["requests_per_s"], run.get("concurrency")
    speedup = rps / sync_rps if rps is not None and sync_rps else None
    n = s["counts"]["attempted"]
    return {
        "name": run["name"],
        "mode": run["mode"],
        "concurrency": conc,
        "repeat": run.get("repeat", 0),
        "n": n,
        "planned": run.get("planned") or None,
        "few": n < FEW_REQUESTS,
        "wall_time_s": s["wall_time_s"],
        "requests_per_s": rps,
        "output_tokens_per_s": s["throughput"]["output_tokens_per_s"],
        "goodput_per_s": (s.get("goodput") or {}).get("requests_per_s"),
        "speedup": speedup,
        "efficiency": speedup / conc if speedup is not None and conc else None,
        **_percentiles(s),
        **_failures(s),
        "success_rate": s["success_rate"],
        "cached_share": cached_share(run.get("records") or []),
        "client_saturated": bool(s["loop_lag"] and s["loop_lag"]["client_saturated"]),
    }


# (name in rows and groups, key in a summary): the per-request figures every level shows at p50 and p99.
_PER_REQUEST = (("latency", "latency_s"), ("ttft", "ttft_s"), ("tpot", "tpot_s"), ("itl", "itl_s"))


def _percentiles(s: Mapping[str, Any]) -> dict[str, Any]:
    """latency_p50_s, latency_p99_s, ttft_..., tpot_..., itl_... of a summary."""
    return {f"{name}_p{q}_s": (s.get(key) or {}).get(f"p{q}") for name, key in _PER_REQUEST for q in (50, 99)}


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
    records = [r for run in runs for r in run.get("records") or [] if r.sent_s is not None and r.total_s is not None]
    wall = sum(map(_wall, runs))
    if len(records) < 2 or not wall:
        return None, None
    ok = [1.0 if r.status == OK else 0.0 for r in records]
    if any(run["mode"] == "rate" for run in runs):
        return stats.poisson_rate_ci(sum(ok), wall) or (None, None)
    iv = stats.little_rate_ci(ok, [r.total_s for r in records], wall)
    return (iv.low, iv.high) if iv else (None, None)


def _rate_side(runs: list[Mapping[str, Any]]) -> tuple[list[float], list[float], float]:
    """Runs pooled as a closed-loop rate's sample: 1 per successful request (0 per failed),
    each request's time in the system, and the summed wall time."""
    records = [r for run in runs for r in run.get("records") or [] if r.sent_s is not None and r.total_s is not None]
    return ([1.0 if r.status == OK else 0.0 for r in records], [r.total_s for r in records], sum(map(_wall, runs)))


def speedup_ci(
    sync: list[Mapping[str, Any]], level: list[Mapping[str, Any]]
) -> tuple[float, float | None, float | None] | None:
    """A level's speedup over the sync baseline and its 95% interval: (ok / wall) of the level's
    runs pooled over (ok / wall) of the sync runs pooled; the interval is a bootstrap of both
    sides' requests with each side's mean in flight held (stats.little_rate_ratio, as `compare`'s
    throughput change), None below 2 requests a side. None when either side has no successful
    request or no wall time."""
    base, cur = _rate_side(sync), _rate_side(level)
    if not (sum(base[0]) and sum(cur[0]) and base[2] and cur[2]):
        return None
    estimate = (sum(cur[0]) / cur[2]) / (sum(base[0]) / base[2])
    change = stats.little_rate_ratio(base, cur)
    return (estimate, None, None) if change is None else (estimate, 1.0 + change.low, 1.0 + change.high)


def _percentile_ci(values: list[float], q: float) -> tuple[float | None, float | None]:
    ci = stats.quantile_ci(sorted(values), q)
    return ci if ci is not None else (None, None)


def _pooled(runs: list[Mapping[str, Any]], slo: Mapping[str, float] | None) -> dict[str, Any]:
    """A level's repeats pooled: every request counts once; percentiles with order-statistic CIs."""
    records = [r for run in runs for r in run.get("records") or []]
    wall = sum(map(_wall, runs))
    s = summarize(records, wall_time_s=wall or None, slo=slo)
    out: dict[str, Any] = {
        "n": s["counts"]["attempted"],
        **_failures(s),
        **_percentiles(s),
        "requests_per_s": s["throughput"]["requests_per_s"],
        "output_tokens_per_s": s["throughput"]["output_tokens_per_s"],
        "goodput_per_s": (s.get("goodput") or {}).get("requests_per_s"),
    }
    out["requests_per_s_ci_low"], out["requests_per_s_ci_high"] = _throughput_ci(runs)
    ok = [r for r in records if r.status == OK]
    for key, attr in (("latency", "latency_s"), ("ttft", "ttft_s")):
        values = [getattr(r, attr) for r in ok if getattr(r, attr) is not None]
        for q in (50, 99):
            name = f"{key}_p{q}_s"
            out[name] = s[attr][f"p{q}"]
            out[name + "_ci_low"], out[name + "_ci_high"] = _percentile_ci(values, q)
    return out


def _groups(
    runs: list[Mapping[str, Any]], rows: list[dict[str, Any]], slo: Mapping[str, float] | None
) -> list[dict[str, Any]]:
    """Repeats of one (mode, concurrency) pooled over their requests, with 95% intervals."""
    keyed: dict[tuple[str, Any], list[int]] = {}
    for i, row in enumerate(rows):
        keyed.setdefault(
            (row["mode"], row["concurrency"] if row["mode"] != "rate" else runs[i].get("rate")), []
        ).append(i)
    groups = []
    for (mode, _level), members in keyed.items():
        group: dict[str, Any] = {
            "mode": mode,
            "concurrency": rows[members[0]]["concurrency"],
            "rate": runs[members[0]].get("rate"),
            "repeats": len(members),
        }
        if any(runs[i].get("records") for i in members):
            group.update(_pooled([runs[i] for i in members], slo))
        else:  # summaries only: means over the repeats, no intervals
            for key in (
                "requests_per_s",
                "output_tokens_per_s",
                "goodput_per_s",
                *(f"{name}_p{q}_s" for name, _ in _PER_REQUEST for q in (50, 99)),
            ):
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
    analysis = {
        "rows": rows,
        "groups": groups,
        "sync_requests_per_s": sync_rps,
        "ideal_base_requests_per_s": c1 if c1 is not None else sync_rps,
        "slo": slo,
        "max_failure_share": max_failure_share,
        "recommended_concurrency": rec.choice,
        "best_concurrency": rec.best,
        "top_concurrency": rec.top,
        "speedup": _speedups(runs, rec.choice, rec.best),
        "recommendation_reasons": {str(k): v for k, v in sorted(rec.reasons.items())},
        "excluded_levels": [c for c in rec.excluded],
        # A level with failures counts only its successes: its curve would bend for that alone.
        "plateau_concurrency": plateau_concurrency(
            [p for p in points if (p.failure_share or 0.0) <= max_failure_share]
        ),
        "warmup": warmup_statement(bench.get("warmup")),
    }
    analysis["recommendation"] = [t.text for t in _recommendation(analysis)]
    analysis["answer"] = find_max_answer(bench["find_max"]) if bench.get("find_max") else answer_lines(analysis)
    return analysis


def _speedups(runs: list[Mapping[str, Any]], *levels: int | None) -> dict[str, Any]:
    """The speedup over sync, with its interval and both sample sizes, of each named level
    (the recommended and the throughput-best one), keyed by concurrency as text."""
    sync = [run for run in runs if run["mode"] == "sync"]
    out: dict[str, Any] = {}
    for c in {c for c in levels if c is not None}:
        level = [run for run in runs if run["mode"] == "async" and run.get("concurrency") == c]
        estimate, low, high = (speedup_ci(sync, level) if sync and level else None) or (None, None, None)
        out[str(c)] = {
            "estimate": estimate,
            "ci_low": low,
            "ci_high": high,
            "n": sum(len(run.get("records") or []) for run in level),
            "sync_n": sum(len(run.get("records") or []) for run in sync),
        }
    return out


def _point(group: Mapping[str, Any]) -> BenchPoint:
    return BenchPoint(
        group["concurrency"],
        group["requests_per_s"],
        group["latency_p99_s"],
        group["ttft_p99_s"],
        group.get("requests_per_s_ci_low"),
        group.get("requests_per_s_ci_high"),
        group["n"],
        group.get("errors") or 0,
    )


def warmup_statement(warmup: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the bench sent before measuring (as recorded in bench.json), with its sentence."""
    if warmup is None:
        return {"pass": None, "text": "Warm-up: not recorded (a bench written before batchrun recorded it)"}
    if not warmup.get("pass"):
        return {
            **warmup,
            "text": "No warm-up (--no-warmup): the first pass may see a cold cache; every request sent was measured",
        }
    n, failed = warmup.get("prompts") or 0, warmup.get("failed") or 0
    cap = warmup.get("max_tokens")
    text = (
        f"Warm-up: {n} prompt{'s' if n != 1 else ''} sent once before measuring "
        f"({warmup.get('concurrency')} at a time, {'whole answers' if cap is None else f'max_tokens {cap}'}), "
        "not measured"
    )
    if failed:
        text += f"; {failed_text(failed, n)}"
        text += ", so the first pass may still see a cold cache" if failed == n else ""
    wave = warmup.get("wave")
    if wave != 0:
        text += (
            "; each run also opened its connections with one unmeasured wave (one request per slot)"
            if wave is None
            else f"; each run also sent {wave} unmeasured request(s) first (--warmup)"
        )
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


def _pcell(key: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda r: fmt_s(r.get(key))


# The runs table's columns: (header, cell of a row, shown on the console too). The console
# leaves out what the run name, the other columns or the reports already say, to stay readable.
_RUN_COLUMNS: tuple[tuple[str, Callable[[Mapping[str, Any]], str], bool], ...] = (
    ("run", lambda r: r["name"], True),
    ("mode", lambda r: r["mode"], False),
    ("c", lambda r: str(r["concurrency"]), True),
    ("n", _n, True),
    ("failed", _failed, True),
    ("wall", lambda r: fmt_s(r["wall_time_s"]), False),
    ("req/s", lambda r: fmt_num(r["requests_per_s"]), True),
    ("goodput/s", lambda r: fmt_num(r.get("goodput_per_s")), True),
    ("out tok/s", lambda r: fmt_num(r.get("output_tokens_per_s"), 0), True),
    ("speedup", lambda r: fmt_num(r["speedup"], 2, "x"), True),
    ("efficiency", lambda r: fmt_pct(r["efficiency"]), False),
    ("p50 lat", _pcell("latency_p50_s"), False),
    ("p99 lat", _pcell("latency_p99_s"), True),
    ("p50 TTFT", _pcell("ttft_p50_s"), True),
    ("p99 TTFT", _pcell("ttft_p99_s"), True),
    ("p50 TPOT", _pcell("tpot_p50_s"), True),
    ("p99 TPOT", _pcell("tpot_p99_s"), True),
    ("p50 ITL", _pcell("itl_p50_s"), True),
    ("p99 ITL", _pcell("itl_p99_s"), True),
    ("cached", lambda r: fmt_pct(r.get("cached_share")), True),
)


def _bench_rows(analysis: Mapping[str, Any], console: bool = False) -> Table:
    """One row per run; goodput only with an SLO, cached only when the server reported it."""
    skip = set() if analysis.get("slo") is not None else {"goodput/s"}
    if not any(r.get("cached_share") is not None for r in analysis["rows"]):
        skip.add("cached")
    columns = [
        (head, cell) for head, cell, on_console in _RUN_COLUMNS if head not in skip and (on_console or not console)
    ]
    return Table([head for head, _ in columns], [[cell(r) for _, cell in columns] for r in analysis["rows"]])


def _ci(mean: float | None, low: float | None, high: float | None, fmt: Any) -> str:
    return fmt(mean) if low is None else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def _level_rows(analysis: Mapping[str, Any]) -> Table:
    def ci(g: Mapping[str, Any], key: str, fmt: Any) -> str:
        return _ci(g.get(key), g.get(key + "_ci_low"), g.get(key + "_ci_high"), fmt)

    return Table(
        [
            "mode",
            "c",
            "repeats",
            "n",
            "failed",
            "req/s [95% CI]",
            "out tok/s",
            "p50 latency [95% CI]",
            "p99 latency [95% CI]",
            "p50 TTFT [95% CI]",
            "p99 TTFT [95% CI]",
            "p50 TPOT",
            "p99 TPOT",
            "p50 ITL",
            "p99 ITL",
        ],
        [
            [
                g["mode"],
                str(g["concurrency"] if g["mode"] != "rate" else f"rate {g['rate']:g}"),
                str(g["repeats"]),
                _n(g),
                _failed(g),
                ci(g, "requests_per_s", fmt_num),
                fmt_num(g.get("output_tokens_per_s"), 0),
                ci(g, "latency_p50_s", fmt_s),
                ci(g, "latency_p99_s", fmt_s),
                ci(g, "ttft_p50_s", fmt_s),
                ci(g, "ttft_p99_s", fmt_s),
                *(fmt_s(g.get(f"{name}_p{q}_s")) for name in ("tpot", "itl") for q in (50, 99)),
            ]
            for g in analysis["groups"]
        ],
    )


def _level(analysis: Mapping[str, Any], concurrency: int | None) -> Mapping[str, Any] | None:
    return next((g for g in analysis["groups"] if g["mode"] == "async" and g["concurrency"] == concurrency), None)


def _recommendation(analysis: Mapping[str, Any]) -> list[Text]:
    """The recommendation as sentences: the level with its figures and n, the throughput-best
    level and why it was not picked (or that it is the same), the rule, why every level lost."""
    rec, best = analysis["recommended_concurrency"], analysis.get("best_concurrency")
    reasons = analysis.get("recommendation_reasons") or {}
    group, top = _level(analysis, rec), _level(analysis, best)
    if group is not None:
        lines = [
            f"Recommended concurrency: {rec} ({throughput_text(_point(group))}; p99 TTFT "
            f"{fmt_s(group['ttft_p99_s'])}, p99 latency {fmt_s(group['latency_p99_s'])})."
        ]
        if best == rec:
            lines[0] += " It is also the level with the most throughput."
    else:
        lines = [
            "No concurrency level can be recommended: every level measured was ruled out (below)."
            if analysis["groups"] and reasons
            else "No concurrency level was measured."
        ]
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
        lines.append(
            f"Goodput at concurrency {rec}: {fmt_num(group['goodput_per_s'])} req/s meet the SLO {slo_text(slo)}."
        )
    lines.append(
        f"Throughput stops growing after concurrency {plateau} (doubling it adds less than 10%)."
        if plateau is not None
        else "Throughput was still growing at the highest concurrency measured."
    )
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
    rule = (
        "Rule: the lowest concurrency whose throughput (successful requests/s) is statistically "
        "indistinguishable from the best (95% intervals), among the levels with at most "
        f"{percent(analysis['max_failure_share'])} failed requests (--max-failure-share)"
    )
    if slo:
        return rule + f" that meet the SLO {slo_text(slo)}."
    return rule + "; without --slo latency does not decide (give --slo to bound it)."


def _bench_plots(analysis: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> list[Image]:
    curve = sorted(
        (g for g in analysis["groups"] if g["mode"] == "async" and g["concurrency"]), key=lambda g: g["concurrency"]
    )
    cs = [g["concurrency"] for g in curve]
    rec = analysis["recommended_concurrency"]
    images = [
        Image(
            plots.throughput_vs_concurrency(
                cs,
                [g["requests_per_s"] for g in curve],
                ideal_base=analysis["ideal_base_requests_per_s"],
                ci=[(g.get("requests_per_s_ci_low"), g.get("requests_per_s_ci_high")) for g in curve],
                sync=analysis["sync_requests_per_s"],
                recommended=rec,
            ),
            "throughput vs concurrency, the sync baseline and the recommended level marked",
        ),
        Image(
            plots.percentiles_vs_concurrency(
                cs,
                {
                    label: [g[key] for g in curve]
                    for label, key in (
                        ("p50 latency", "latency_p50_s"),
                        ("p99 latency", "latency_p99_s"),
                        ("p50 TTFT", "ttft_p50_s"),
                        ("p99 TTFT", "ttft_p99_s"),
                    )
                },
                title="Latency and TTFT vs concurrency",
                recommended=rec,
            ),
            "latency and TTFT vs concurrency, the recommended level marked",
        ),
    ]
    with_records = [run for run in runs if run.get("records")]
    if with_records:
        ttft = {
            run["name"]: [r.ttft_s for r in run["records"] if r.status == OK and r.ttft_s is not None]
            for run in with_records
        }
        steps = {run["name"]: in_flight_timeline(run["records"]) for run in with_records}
        images += [
            Image(plots.cdf(ttft, title="TTFT CDF per run", xlabel="seconds"), "TTFT CDF per run"),
            Image(plots.timeline(steps, title="Requests in flight per run"), "in-flight timeline per run"),
        ]
    return images


def bench_document(
    analysis: Mapping[str, Any], bench: Mapping[str, Any], config: Mapping[str, Any] | None = None
) -> Document:
    """The bench report as blocks: per-run table, levels with CIs, recommendation, plots."""
    warnings = [Text(w, warning=True) for w in bench_warnings(analysis)]
    legend = Text(
        "n = measured requests; failed = of those, the ones that did not succeed; req/s = successful "
        "requests per second of wall time (a failed request takes time but is not counted); "
        "out tok/s = output tokens of the successful requests per second of wall time; "
        "speedup = req/s over the sync baseline's; efficiency = speedup / concurrency; "
        "TPOT = time per output token after the first, per request; ITL = the gaps between "
        "streamed chunks (docs/metrics.md defines each)"
        + (
            "; cached = share of prompt tokens the server served from its prompt cache"
            if any(r.get("cached_share") is not None for r in analysis["rows"])
            else ""
        )
    )
    sections = [
        Section("Answer", [Text(line) for line in analysis["answer"]]),
        Section("Runs", [Text(analysis["warmup"]["text"]), *warnings, _bench_rows(analysis), legend]),
        Section(
            "Levels (repeats pooled; 95% intervals)",
            [
                _level_rows(analysis),
                Text(
                    "Percentile intervals are distribution-free order-statistic intervals over the pooled "
                    "requests (none below the sample size they need: 6 for p50, 368 for p99); the req/s "
                    "interval is a bootstrap of the requests (Little's law, the mean in flight held)."
                ),
            ],
        ),
        Section("Recommendation", [Text(line) for line in analysis["recommendation"]]),
        Section("Plots", _bench_plots(analysis, bench["runs"])),
    ]
    if config:
        sections.append(Section("Configuration", [config_table(config)]))
    return Document("batchrun bench report", sections)


def bench_warnings(analysis: Mapping[str, Any]) -> list[str]:
    """Runs whose figures need a caveat: failed requests, a saturated client, too few requests,
    passes that met different prompt-cache states."""
    out = [
        f"{r['name']}: {failed_text(r['errors'], r['n'])}: its req/s and speedup count only the "
        f"{r['n'] - r['errors']} that succeeded"
        for r in analysis["rows"]
        if r["errors"]
    ]
    out += [
        f"{r['name']}: client saturated, its latency includes client-side queueing"
        for r in analysis["rows"]
        if r["client_saturated"]
    ]
    few = [r["name"] for r in analysis["rows"] if r["few"]]
    if few:
        out.append(
            f"{', '.join(few)}: fewer than {FEW_REQUESTS} measured requests; their percentiles "
            "and rates are too noisy to compare (marked <30)"
        )
    shares = {r["name"]: r["cached_share"] for r in analysis["rows"] if r.get("cached_share") is not None}
    if len(shares) > 1 and max(shares.values()) - min(shares.values()) > CACHE_STATE_GAP:
        listed = ", ".join(f"{name} {fmt_pct(share)}" for name, share in shares.items())
        out.append(
            f"the runs met different prompt-cache states (share of prompt tokens cached: {listed}): "
            "their TTFTs are not comparable"
        )
    return out


def format_bench_table(analysis: Mapping[str, Any]) -> str:
    """The console view of a bench: the answer first, then the warm-up done, the caveats, one
    line per run and the recommendation's reasons."""
    table = _bench_rows(analysis, console=True)
    widths = [max(len(str(cell)) for cell in column) for column in zip(table.headers, *table.rows)]
    lines = [*analysis["answer"], analysis["warmup"]["text"]]
    lines += [f"warning: {w}" for w in bench_warnings(analysis)]
    lines += ["  ".join(str(cell).rjust(w) for cell, w in zip(row, widths)) for row in [table.headers, *table.rows]]
    lines += analysis["recommendation"]
    return "\n".join(line for line in lines if line)


# ---------------------------------------------------------------- the answer, first in every view


def _times(x: float) -> str:
    """11.7x; 1.04x below 2 (where a few percent are the whole story)."""
    return f"{x:.2f}x" if x < 2 else f"{x:.1f}x"


def answer_lines(analysis: Mapping[str, Any]) -> list[str]:
    """The first lines of the console and both reports: the recommended level's speedup over
    sync with its interval and both sample sizes, why it is recommended, and the throughput-best
    level only when it is really better and was ruled out."""
    rec, best = analysis["recommended_concurrency"], analysis.get("best_concurrency")
    group, top = _level(analysis, rec), _level(analysis, best)
    if group is None:
        if top is not None:
            lines = [
                "No concurrency can be recommended: every level measured was ruled out (see the recommendation below)."
            ]
        elif any(g["mode"] == "rate" for g in analysis["groups"]):
            lines = [
                "No concurrency is recommended: an open-loop bench (--rate) measures arrival rates; "
                "see the levels table."
            ]
        else:
            lines = ["No concurrency level was measured."]
    else:
        lines = [_speedup_sentence(analysis, rec, group), f"Recommended c={rec} because {_because(analysis, group)}."]
    if (
        top is not None
        and best is not None
        and best != rec
        and (group is None or not indistinguishable(_point(group), _point(top)))
    ):
        why = (analysis.get("recommendation_reasons") or {}).get(str(best), "unknown")
        figure = _speedup_figure(analysis, best) or throughput_text(_point(top), False)
        lines.append(f"c={best} measured the most, {figure}, n={top['n']}, but was ruled out: {why}.")
    return lines


def _speedup_figure(analysis: Mapping[str, Any], level: int) -> str | None:
    """'11.7x faster than sync (95% interval 10.9x to 12.6x)', or None without a speedup."""
    sp = (analysis.get("speedup") or {}).get(str(level)) or {}
    x = sp.get("estimate")
    if x is None:
        return None
    if sp.get("ci_low") is None:
        return f"{_times(x)} the sync throughput (too few requests for an interval)"
    low, high = sp["ci_low"], sp["ci_high"]
    said = (
        f"{_times(x)} faster than sync"
        if low > 1
        else f"slower than sync: {_times(x)} its throughput"
        if high < 1
        else f"no faster than sync as measured: {_times(x)}"
    )
    return f"{said} (95% interval {_times(low)} to {_times(high)})"


def _speedup_sentence(analysis: Mapping[str, Any], rec: int, group: Mapping[str, Any]) -> str:
    """'async at c=16 is 11.7x faster than sync (95% interval 10.9x to 12.6x); n=52 at c=16,
    n=11 sync.', with the failures of either side beside its n."""
    sync = [r for r in analysis["rows"] if r["mode"] == "sync"]
    level = f"n={group['n']} at c={rec}"
    level += f" ({failed_text(group['errors'], group['n'])})" if group.get("errors") else ""
    if not sync:
        return (
            f"async at c={rec}: {throughput_text(_point(group), False)}; {level}; no sync baseline was "
            "measured (--no-sync), so no speedup."
        )
    sync_n, sync_failed = sum(r["n"] for r in sync), sum(r["errors"] for r in sync)
    figure = _speedup_figure(analysis, rec)
    if figure is None:
        return (
            f"async at c={rec}: {throughput_text(_point(group), False)}; {level}; the sync baseline had no "
            f"successful request ({failed_text(sync_failed, sync_n)}), so no speedup."
        )
    sides = f"{level}, n={sync_n} sync" + (f" ({failed_text(sync_failed, sync_n)})" if sync_failed else "")
    counted = "; req/s counts successful requests only" if group.get("errors") or sync_failed else ""
    return f"async at c={rec} is {figure}; {sides}{counted}."


def _because(analysis: Mapping[str, Any], group: Mapping[str, Any]) -> str:
    """Why the recommended level: the most throughput, or as much as the level with the most
    with fewer requests in flight; among the levels meeting the SLO when one was given."""
    rec, top_c = analysis["recommended_concurrency"], analysis.get("top_concurrency")
    slo = analysis.get("slo")
    among = f" among the levels meeting the SLO {slo_text(slo)}" if slo else ""
    top = _level(analysis, top_c)
    if top is None or top_c == rec:
        others = [g for g in analysis["groups"] if g["mode"] == "async" and g["concurrency"] != rec]
        return (
            f"it has the most throughput{among}: {throughput_text(_point(group), False)}"
            if others
            else "it is the only level measured"
        )
    fewer = f"fewer requests in flight (p99 TTFT {fmt_s(group['ttft_p99_s'])} vs {fmt_s(top['ttft_p99_s'])})"
    return (
        f"its throughput, {throughput_text(_point(group), False)}, is statistically indistinguishable from "
        f"the highest{among}, c={top_c}'s {throughput_text(_point(top), False)}, with {fewer}"
    )


def find_max_answer(found: Mapping[str, Any]) -> list[str]:
    """find-max's answer (find_max.json's best and first failing level, its SLO), as the first
    line of its reports and the last of its console output."""
    rule = slo_text(found.get("slo") or {})
    best, failing = found.get("best_concurrency"), found.get("first_failing_concurrency")
    probes = found.get("probes") or []
    if best is None:
        first = probes[0]["concurrency"] if probes else "the first level"
        return [f"No concurrency met the SLO ({rule}), not even {first}."]
    if failing is None:
        return [f"Highest load meeting the SLO ({rule}): concurrency {best} or more (the ceiling still met it)."]
    return [
        f"Highest load meeting the SLO ({rule}): concurrency {best} (it lies in [{best}, {failing}): {failing} missed)."
    ]
