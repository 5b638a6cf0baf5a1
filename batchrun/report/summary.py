"""Summary -> console table, summary.json, report.md and report.html; reading a run back.

Layouts (docs/metrics.md has the full schema):
    RUN_DIR/records.jsonl, summary.json, report.md, report.html        one run
    RUN_DIR/bench.json, runs/<name>/records.jsonl (+ summary.json)     a bench, plus the same reports
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from batchrun.analysis.columns import Columns, ColumnsBuilder, iter_present, present
from batchrun.analysis.cost import format_usd, projection_text
from batchrun.analysis.distribution import GapSample
from batchrun.analysis.metrics import summarize, summary_warnings
from batchrun.analysis.timeline import session_timelines
from batchrun.errors import ConfigError, OutputError
from batchrun.report import limits, plots
from batchrun.report.format import config_table, fmt_num, fmt_pct, fmt_s, slo_text
from batchrun.report.html import Document, Image, Section, Table, Text, render_html, render_markdown
from batchrun.report.workloads import workload_doc, workload_sections
from batchrun.store.fingerprint import input_identity
from batchrun.store.outputs import iter_latest, latest_dicts
from batchrun.store.records import OK, Record
from batchrun.version import __version__

SCHEMA_VERSION = 1
SAMPLE_ROWS = 20
EXCERPT_CHARS = 120
_RUN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")  # a path component, never "..", "/" or "~"


# ---------------------------------------------------------------- console


def format_summary_table(summary: Mapping[str, Any]) -> str:
    """The ~10 lines printed at the end of a run."""
    c = summary["counts"]
    lines = [
        f"requests    {c['total']} total: {c['ok']} ok, {c['error']} error, {c['timeout']} timeout, "
        f"{c['cancelled']} cancelled, {c['skipped']} skipped"
        + (f", {c['invalid_output']} invalid output" if c.get("invalid_output") else "")
        + f"  (success {fmt_pct(summary['success_rate'])})"
    ]
    timed = [
        (label, summary[key])
        for label, key in (("latency", "latency_s"), ("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("ITL", "itl_s"))
        if summary[key]["count"]
    ]
    if timed:
        lines.append(f"{'':12}{'p50':>10}{'p90':>10}{'p99':>10}{'n':>8}")
    lines += [
        f"{label:12}{fmt_s(d['p50']):>10}{fmt_s(d['p90']):>10}{fmt_s(d['p99']):>10}{d['count']:>8,}"
        for label, d in timed
    ]
    t = summary["throughput"]
    lines.append(
        f"throughput  {fmt_num(t['requests_per_s'])} req/s, {fmt_num(t['output_tokens_per_s'], 1)} "
        f"output tok/s over {fmt_s(summary['wall_time_s'])}"
        + (
            f"; in flight peak {summary['in_flight']['peak']}, mean {fmt_num(summary['in_flight']['mean'], 1)}"
            if summary["in_flight"]["peak"]
            else ""
        )
    )  # a Batch API run has no in-flight figures
    if summary.get("batch"):
        b = summary["batch"]
        lines.append(
            f"batch API   {b['requests']} rows in {b['jobs']} job(s); job turnaround p50 "
            f"{fmt_s(b['turnaround_s']['p50'])}, max {fmt_s(b['turnaround_s']['max'])} "
            "(no per-request timing: the Batch API gives none)"
        )
    if summary["goodput"]:
        g = summary["goodput"]
        lines.append(
            f"goodput     {fmt_num(g['requests_per_s'])} req/s ({g['requests']} requests within {slo_text(g['slo'])})"
        )
    lines += limits.console_lines(summary)
    lines += [f"warning: {w}" for w in summary["warnings"]]
    lines += [f"{label:12}{text}" for label, text in _run_facts(summary)]
    return "\n".join(lines)


def _run_facts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) lines on how the run ended and what it cost, when there is something to say."""
    out = []
    note = interruption_note(summary)
    if note:
        out.append(("stopped", note))
    if summary.get("reconnects"):
        out.append(
            (
                "reconnects",
                f"{summary['reconnects']} request(s) met a pooled connection the server "
                "had closed and were sent again at once on a new one (not retries)",
            )
        )
    cost = summary.get("cost")
    if cost:
        unpriced = (
            f"; {cost['records_without_usage']} sent without usage, not counted"
            if cost["records_without_usage"]
            else ""
        )
        out.append(
            (
                "cost",
                f"{format_usd(cost['usd'])} for {cost['prompt_tokens']} prompt + "
                f"{cost['completion_tokens']} output tokens of {cost['records_with_usage']} requests "
                f"({cost['price']['source']}){unpriced}",
            )
        )
        if cost.get("projection"):
            out.append(("projected", projection_text(cost["projection"])))
    return out


def interruption_note(summary: Mapping[str, Any]) -> str | None:
    """'interrupted: 40 sent, 3 cancelled in flight, 5 never sent' for a run that did not finish."""
    run, c = summary.get("run") or {}, summary["counts"]
    if not (run.get("interrupted") or run.get("aborted") or run.get("refused")):
        return None
    why = (
        "interrupted (Ctrl-C / SIGTERM)"
        if run.get("interrupted")
        else f"stopped early: {run['aborted']}"
        if run.get("aborted")
        else f"the endpoint refused the run: {run['refused']}"
    )
    never = c.get("never_sent", 0)
    text = (
        f"{why}: {c.get('sent', 0)} sent, {c['cancelled'] - never} cancelled in flight, {never} never sent; "
        "the success rate counts finished requests only"
    )
    if run.get("unread") is not None:
        text += f"; {run['unread']} rows were never read"
    return text


# ---------------------------------------------------------------- single-run document

_TIMINGS = (
    ("latency", "latency_s"),
    ("TTFT", "ttft_s"),
    ("E2EL (end of stream)", "e2el_s"),
    ("total time", "total_s"),
    ("ITL", "itl_s"),
    ("TPOT", "tpot_s"),
    ("queue wait", "queue_wait_s"),
)


def _headline(summary: Mapping[str, Any]) -> Table:
    c, t, f = summary["counts"], summary["throughput"], summary["in_flight"]
    failed = c.get("finished", c["attempted"]) - c["ok"]
    rows = [
        [
            "requests",
            f"{c['total']} ({c['ok']} ok, {failed} failed, {c['cancelled']} cancelled, {c['skipped']} skipped)",
        ],
        ["success rate", fmt_pct(summary["success_rate"])],
        ["wall time", f"{fmt_s(summary['wall_time_s'])} ({summary['wall_time_source']})"],
        ["requests / s", fmt_num(t["requests_per_s"])],
        ["output tokens / s", fmt_num(t["output_tokens_per_s"], 1)],
        ["total tokens / s", fmt_num(t["total_tokens_per_s"], 1)],
        ["in flight (peak / mean)", f"{f['peak']} / {fmt_num(f['mean'], 1)}"],
    ]
    if summary["goodput"]:
        g = summary["goodput"]
        within = f"{g['requests']} within {slo_text(g['slo'])}"
        rows.append(["goodput", f"{fmt_num(g['requests_per_s'])} req/s ({within})"])
    rows += [[label, text] for label, text in _run_facts(summary)]
    return Table(["figure", "value"], rows)


def _with_ttfo(summary: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The timing rows, with time to first answer token beside TTFT when the model reasoned first."""
    ttfo, ttft = summary.get("ttfo_s") or {}, summary["ttft_s"]
    if not ttfo.get("count") or ttfo.get("mean") == ttft.get("mean"):
        return _TIMINGS
    return (_TIMINGS[0], _TIMINGS[1], ("TTFO (first answer)", "ttfo_s"), *_TIMINGS[2:])


def _timings(summary: Mapping[str, Any]) -> Table:
    rows = []
    sched = summary.get("schedule") or {}
    timings = [
        *_with_ttfo(summary),
        *(
            (label, key)
            for label, key in (
                ("send lag (open loop)", "send_lag_s"),
                ("TTFT from planned send", "ttft_s"),
                ("latency from planned send", "latency_s"),
            )
            if sched
        ),
    ]
    for label, key in timings:
        d = (sched if label.endswith(("(open loop)", "planned send")) else summary).get(key)
        if d is None:
            continue
        rows.append([label, str(d["count"])] + [fmt_s(d[k]) for k in ("mean", "p50", "p90", "p95", "p99", "max")])
    return Table(["figure", "n", "mean", "p50", "p90", "p95", "p99", "max"], rows)


def _counts_table(title: str, counts: Mapping[str, int]) -> Table:
    return Table([title, "count"], [[str(k), str(v)] for k, v in sorted(counts.items(), key=lambda kv: -kv[1])])


def _excerpt(record: Record) -> str:
    text = record.text if record.status == OK else (record.error or "")
    if record.status == OK and not text and record.tool_calls:
        text = json.dumps(record.tool_calls, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _sample(cols: Columns) -> Table:
    first = sorted(cols.sample, key=lambda r: r.row)[:SAMPLE_ROWS]
    return Table(["id", "row", "status", "text or error"], [[r.id, str(r.row), r.status, _excerpt(r)] for r in first])


# A CDF drawn from more points than this gets this many, evenly spaced in rank (a million-row
# run's curve looks the same; its figure stays small).
CDF_POINTS = 2000


def _run_plots(cols: Columns) -> list[Image]:
    okc = cols.label_code("status", OK)
    ok = bytes(s == okc for s in cols.column("status"))
    ttft, latency = cols.column("ttft_s"), cols.column("latency_s")
    if next(iter_present(ttft, ok), None) is None and next(iter_present(latency, ok), None) is None:
        return []  # nothing succeeded, or only Batch API rows (never timed)
    images, curves = [], {}
    for title, alt, key, column in (
        ("TTFT", "TTFT histogram", "TTFT", ttft),
        ("Latency", "latency histogram", "latency", latency),
    ):
        values = present(column, ok)  # one run-sized list at a time
        images.append(Image(plots.histogram(values, title=title, xlabel="seconds"), alt))
        curves[key] = _thin_sorted(values)
    return [
        *images,
        Image(plots.cdf(curves, title="CDF", xlabel="seconds"), "TTFT and latency CDF"),
        Image(plots.timeline(_session_timelines(cols), title="Requests in flight"), "in-flight timeline"),
    ]


def _thin_sorted(values: list[float], points: int = CDF_POINTS) -> list[float]:
    """The values sorted, or `points` of them evenly spaced in rank (first and last kept)."""
    values.sort()
    if len(values) <= points:
        return values
    step = (len(values) - 1) / (points - 1)
    return [values[round(i * step)] for i in range(points)]


def _session_timelines(cols: Columns) -> dict[str, list[tuple[float, int]]]:
    """One in-flight line per session: a resumed run's sessions each start at 0."""
    lines = session_timelines(cols)
    if len(lines) <= 1:
        return {"run": next(iter(lines.values()), [])}
    return {f"session {n}": steps for n, steps in sorted(lines.items())}


def _warnings(summary: Mapping[str, Any]) -> list[Text]:
    return [Text(w, warning=True) for w in summary["warnings"]]


def _batch_section(batch: Mapping[str, Any] | None) -> Section | None:
    if not batch:
        return None
    t = batch["turnaround_s"]
    return Section(
        "Batch API jobs",
        [
            Text(
                "Rows answered by Batch API jobs have no per-request timing (the API gives none); "
                "a job's turnaround is its completed (or expired / cancelled / failed) time minus its created time."
            ),
            Table(
                ["jobs", "rows", "turnaround n", "p50", "max"],
                [[str(batch["jobs"]), str(batch["requests"]), str(t["count"]), fmt_s(t["p50"]), fmt_s(t["max"])]],
            ),
        ],
    )


def _lag_section(lag: Mapping[str, Any] | None) -> Section | None:
    if not lag:
        return None
    saturated = f"{'yes' if lag['client_saturated'] else 'no'} ({fmt_s(lag['threshold_s'])})"
    return Section(
        "Client event-loop lag",
        [
            Table(
                ["samples", "p50", "p99", "max", "saturated (p99 > threshold)"],
                [[str(lag["count"]), fmt_s(lag["p50_s"]), fmt_s(lag["p99_s"]), fmt_s(lag["max_s"]), saturated]],
            )
        ],
    )


def _tools_section(tools: Mapping[str, Any]) -> Section | None:
    rounds = tools["rounds"]
    if not (tools["records_with_tool_calls"] or rounds["count"]):
        return None
    first, final = tools.get("first_round_ttft_s") or {}, tools.get("final_answer_ttft_s") or {}
    outcomes = ", ".join(f"{k} {v}" for k, v in (tools.get("tool_results") or {}).items()) or "-"
    return Section(
        "Tool calls",
        [
            Table(
                [
                    "records with tool calls",
                    "tool calls",
                    "invalid arguments",
                    "rounds mean",
                    "rounds max",
                    "tool results",
                    "p50 TTFT first round",
                    "p50 TTFT final answer",
                ],
                [
                    [
                        str(tools["records_with_tool_calls"]),
                        str(tools["tool_calls"]),
                        str(tools.get("invalid_arguments", 0)),
                        fmt_num(rounds["mean"]),
                        fmt_num(rounds["max"], 0),
                        outcomes,
                        fmt_s(first.get("p50")),
                        fmt_s(final.get("p50")),
                    ]
                ],
            )
        ],
    )


def run_document(
    summary: Mapping[str, Any], records: Sequence[Record] | Columns, config: Mapping[str, Any] | None = None
) -> Document:
    """The single-run report as blocks (rendered to both Markdown and HTML). `records`: the run's
    Records, or its Columns (what a run of any size passes: see analysis/columns.py)."""
    cols = records if isinstance(records, Columns) else Columns.of(sorted(records, key=lambda r: r.row))
    note = interruption_note(summary)
    stopped = [Text(f"This run did not finish: {note}.", warning=True)] if note else []
    sections = [
        Section("Headline", [*stopped, *_warnings(summary), _headline(summary)]),
        Section(
            "Outcomes",
            [
                _counts_table(
                    "status",
                    {
                        k: v
                        for k, v in summary["counts"].items()
                        if k not in ("total", "attempted", "sent", "finished") and v
                    },
                ),
                _counts_table("error type", summary["by_error_type"]),
                _counts_table("finish reason", summary["by_finish_reason"]),
            ],
        ),
        Section("Timings (ok requests; queue wait: all sent)", [_timings(summary)]),
    ]
    sections += [
        s
        for s in (
            _batch_section(summary.get("batch")),
            _lag_section(summary.get("loop_lag")),
            _tools_section(summary["tool_calls"]),
            limits.limits_section(summary, cols),
        )
        if s
    ]
    sections += workload_doc(summary)
    sections.append(
        Section(
            "Plots",
            _run_plots(cols)
            or [Text("no successful request to plot" if not summary["counts"]["ok"] else "no timed request to plot")],
        )
    )
    sections.append(Section(f"Sample (first {SAMPLE_ROWS} rows)", [_sample(cols)]))
    if config:
        sections.append(Section("Configuration", [config_table(config)]))
    return Document("batchrun report", sections)


# ---------------------------------------------------------------- files


def _write_text(path: Path, text: str) -> None:
    # Write then rename, so a rebuild interrupted half-way never leaves a torn report.
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # a half-written temp file only takes space from a full disk
        raise OutputError(
            f"cannot write {path}: {exc.strerror} (check the directory's permissions and free space)"
        ) from exc


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def _run_meta(run: Mapping[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in ("name", "mode", "concurrency", "repeat", "rate", "wall_time_s")}


SIMULATED = (
    "SIMULATED ENDPOINT: these results come from batchrun's built-in simulated endpoint, "
    "not from a real model; its answers are made up and its timings are a latency model's."
)


def endpoint_banner(endpoint: Mapping[str, Any] | None) -> Section | None:
    """The report's first section when the answers did not come from a real provider."""
    if endpoint and endpoint.get("kind") == "builtin":
        return Section("Endpoint", [Text(SIMULATED, warning=True)])
    return None


def write_reports(
    run_dir: Path | str,
    summary: Mapping[str, Any] | None,
    records: Sequence[Record] | Columns,
    *,
    bench: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    endpoint: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write summary.json, report.md and report.html into run_dir; return their paths by name.

    For a bench pass `bench` ({"runs": [...], "slo": ...}, see docs/metrics.md); `summary` and
    `records` may then be None / [] or describe a headline run, and each run's summary is also
    written to runs/<name>/summary.json so `batchrun compare` can take one run of a bench.
    `config` must not hold secrets: it is written as given. `endpoint` ({"kind": "builtin" |
    "remote", "base_url": redacted URL or None, "model": ...}) says which endpoint answered; a
    simulated one gets a banner in both reports. Every summary.json also names the batchrun
    version and the input file's identity (`extra` may give it, and more top-level keys).
    """
    run_dir = Path(run_dir)
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "bench" if bench else "run",
        "summary": summary,
        "config": config,
        "endpoint": endpoint,
        **_identity(config, extra),
    }
    if bench:
        from batchrun.report.bench import bench_analysis, bench_document, run_summary  # lazy: numpy

        analysis = bench_analysis(bench)
        doc["bench"] = analysis
        for run in bench["runs"]:
            run_doc = {
                "schema_version": SCHEMA_VERSION,
                "kind": "run",
                "run": _run_meta(run),
                "summary": run_summary(run, analysis["slo"]),
                "config": config,
                **{k: v for k, v in doc.items() if k not in ("schema_version", "kind", "summary", "config")},
            }
            _write_text(run_dir / "runs" / _checked_name(run["name"]) / "summary.json", _json(run_doc))
        document = bench_document(analysis, bench, config)
    else:
        if summary is None:
            raise ValueError("write_reports needs a summary for a single run")
        document = run_document(summary, records, config)
    banner = endpoint_banner(endpoint)
    if banner is not None:  # first, or right under a bench's answer (which leads every view)
        document.sections.insert(1 if bench else 0, banner)
    paths = {"summary": run_dir / "summary.json", "markdown": run_dir / "report.md", "html": run_dir / "report.html"}
    _write_text(paths["summary"], _json(doc))
    _write_text(paths["markdown"], render_markdown(document))
    _write_text(paths["html"], render_html(document))
    return paths


def _identity(config: Mapping[str, Any] | None, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"batchrun_version": __version__}
    out.update(extra or {})
    if "input" not in out and config and config.get("input"):
        out["input"] = input_identity(config["input"])
    return out


def write_bench_manifest(
    run_dir: Path | str,
    runs: Iterable[Mapping[str, Any]],
    *,
    slo: Mapping[str, float] | None = None,
    config: Mapping[str, Any] | None = None,
    warmup: Mapping[str, Any] | None = None,
    max_failure_share: float | None = None,
) -> Path:
    """Write bench.json: each run's name, mode, concurrency, repeat, wall time and loop-lag samples;
    the warm-up the bench did before measuring; the failure share a recommended level may have."""
    entries = [{**_run_meta(run), "loop_lag_s": list(run.get("loop_lag_s") or [])} for run in runs]
    for entry in entries:
        _checked_name(entry["name"])
    path = Path(run_dir) / "bench.json"
    _write_text(
        path,
        _json(
            {
                "schema_version": SCHEMA_VERSION,
                "runs": entries,
                "slo": slo,
                "config": config,
                "warmup": warmup,
                "max_failure_share": max_failure_share,
            }
        ),
    )
    return path


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not _RUN_NAME.match(name):
        raise ConfigError(f"bad bench run name {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def _read_json(path: Path) -> Any:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc} (pass a directory written by batchrun)") from exc
    if isinstance(doc, dict) and doc.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
        raise ConfigError(
            f"{path} was written by a newer batchrun (schema {doc['schema_version']}); upgrade batchrun to read it"
        )
    return doc


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run or bench directory's summary.json ({} when it has none)."""
    path = run_dir / "summary.json"
    return _read_json(path) if path.exists() else {}


def _records(path: Path) -> list[Record]:
    return list(iter_latest(path))


@dataclass(slots=True)
class LoadedRun:
    records: list[Record] | Columns  # the latest records; with lean=True their Columns (and first rows)
    summary: dict[str, Any]  # recomputed from the records (stored wall time, SLO and loop lag kept)
    config: dict[str, Any] | None
    endpoint: dict[str, Any] | None = None
    stored: dict[str, Any] | None = None  # summary.json as it was


def read_columns(path: Path, gaps: GapSample | None = None) -> Columns:
    """The latest record of every id (a fixed bad row's ghost dropped) as Columns, read one record
    at a time: what a run's summary and report need, in memory flat in the number of rows."""
    builder = ColumnsBuilder(keep=SAMPLE_ROWS, gaps=gaps)
    for data in latest_dicts(path):
        builder.add(data)
    return builder.finish()


def slim_records(path: Path) -> Iterator[Record]:
    """The latest records again, one at a time, without what no summary reads (the input row,
    the request, attempt logs, ITL gaps, the answer's text): for the rare workload sections
    that need ids."""
    for data in latest_dicts(path):
        for key in ("input", "request", "parsed", "attempt_log", "itl_s", "text", "reasoning_text", "rounds"):
            data.pop(key, None)
        yield Record.from_dict(data)


@dataclass(slots=True)
class RunFacts:
    """What a run's summary holds that its records cannot tell: measured while it ran (its wall
    time, the event loop's lag, what the pool learned about the endpoint), how it ended and what it
    cost. A run gives them live; `batchrun report` and `compare` read them back from summary.json."""

    wall_time_s: float | None = None  # None: the records' own first send to last byte
    slo: Mapping[str, float] | None = None
    loop_lag_s: Sequence[float] | None = None  # lag samples, live
    loop_lag: Mapping[str, Any] | None = None  # their statistics, as stored
    findings: Mapping[str, Any] = field(default_factory=dict)  # rate limits, --concurrency auto
    ended: dict[str, Any] = field(default_factory=dict)  # "run" (how it ended) and "cost"

    @classmethod
    def stored(cls, summary: Mapping[str, Any]) -> RunFacts:
        """The facts a summary.json keeps (raw lag samples are not kept: their statistics are)."""
        return cls(
            wall_time_s=summary.get("wall_time_s") if summary.get("wall_time_source") == "given" else None,
            slo=(summary.get("goodput") or {}).get("slo"),
            loop_lag=summary.get("loop_lag"),
            findings=summary,
            ended={k: summary[k] for k in ("run", "cost") if k in summary},
        )


def run_summary(
    run_dir: Path,
    records: list[Record] | Columns,
    facts: RunFacts,
    *,
    config: Mapping[str, Any],
    gaps: GapSample | None = None,
) -> dict[str, Any]:
    """A run's summary: the figures of its records, its workload sections and the facts around
    them. The one recipe of a run's end, a resumed run's, a Batch API run's and `batchrun report`'s."""
    summary = summarize(
        records, wall_time_s=facts.wall_time_s, slo=facts.slo, loop_lag_s=facts.loop_lag_s, itl_sample=gaps
    )
    if facts.loop_lag:  # raw lag samples are not stored for a single run; keep their statistics
        summary["loop_lag"] = dict(facts.loop_lag)
        summary["warnings"] = summary_warnings(summary)
    stream = (lambda: slim_records(run_dir / "records.jsonl")) if isinstance(records, Columns) else None
    summary.update(workload_sections(run_dir, config, records, summary["wall_time_s"], stream))
    limits.add_findings(summary, facts.findings)
    summary.update(facts.ended)
    return summary


def load_run(run_dir: Path | str, *, lean: bool = False) -> LoadedRun:
    """Read a run directory back, recomputing its summary from records.jsonl without any request.

    lean=True (`batchrun report`): the records are read one at a time into Columns, as a run's
    own summary is made, so a million-row run is rebuilt in memory flat in its rows; ITL figures
    then come from a GapSample, as the run's did. Otherwise every latest Record is kept (what
    `compare` needs: per-request ITL gaps)."""
    run_dir = Path(run_dir)
    path = run_dir / "records.jsonl"
    if not path.exists():
        raise ConfigError(f"{run_dir} has no records.jsonl (pass the --out directory of a batchrun run)")
    stored = read_summary(run_dir)
    gaps = GapSample() if lean else None
    records: list[Record] | Columns = read_columns(path, gaps) if lean else _records(path)
    summary = run_summary(
        run_dir, records, RunFacts.stored(stored.get("summary") or {}), config=stored.get("config") or {}, gaps=gaps
    )
    return LoadedRun(records, summary, stored.get("config"), stored.get("endpoint"), stored)


def load_bench(run_dir: Path | str) -> dict[str, Any]:
    """Read bench.json and every runs/<name>/records.jsonl into the `bench` dict write_reports takes."""
    run_dir = Path(run_dir)
    manifest = _read_json(run_dir / "bench.json")
    runs = []
    for entry in manifest.get("runs") or []:
        if entry.get("mode") not in ("sync", "async", "rate"):
            raise ConfigError(
                f"{run_dir / 'bench.json'}: run {entry.get('name')!r} has mode "
                f"{entry.get('mode')!r}; expected sync, async or rate"
            )
        records_path = run_dir / "runs" / _checked_name(entry.get("name")) / "records.jsonl"
        if not records_path.exists():
            raise ConfigError(f"{records_path} is missing (bench.json lists run {entry['name']!r})")
        runs.append({**entry, "records": _records(records_path)})
    found = run_dir / "find_max.json"  # a find-max: its answer leads the reports
    return {
        "runs": runs,
        "slo": manifest.get("slo"),
        "config": manifest.get("config"),
        "warmup": manifest.get("warmup"),
        "max_failure_share": manifest.get("max_failure_share"),
        "find_max": _read_json(found) if found.exists() else None,
    }
