"""The fit's report page: what the twin holds, and the measured distributions beside what it
serves (TTFT, latency, ITL per level, throughput per run), plotted, with the differences stated."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from batchrun.analysis.stats import wilson
from batchrun.errors import OutputError
from batchrun.report import plots
from batchrun.report.format import fmt_num, fmt_pct, fmt_s
from batchrun.report.html import Document, Image, Section, Table, Text, render_html, render_markdown
from batchrun.twin.compare import NAMES, Figure, FitComparison, LevelComparison
from batchrun.twin.model import TwinModel, at

MAX_CDF_LEVELS = 6  # levels drawn as CDFs (spread over the range); every level is in the tables


def fit_document(twin: TwinModel, comp: FitComparison) -> Document:
    title = f"Endpoint twin of {twin.model or 'an endpoint'}"
    return Document(title, [_headline(comp), _fitted(twin), _levels(comp), _throughput(comp), _cdfs(comp)])


def write_fit_report(twin: TwinModel, comp: FitComparison, html_path: Path) -> list[Path]:
    """The page as HTML at `html_path` and as Markdown beside it (.md)."""
    doc = fit_document(twin, comp)
    md_path = html_path.with_suffix(".md")
    try:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(doc), encoding="utf-8")
        md_path.write_text(render_markdown(doc), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {html_path}: {exc.strerror} (choose another --report)") from None
    return [html_path, md_path]


def headline(comp: FitComparison) -> str:
    """One sentence: the largest p50/p90 TTFT or latency difference, and whether noise explains it."""
    largest = comp.largest()
    if largest is None:
        return "No level has both measured and twin values to compare."
    level, fig, q, change = largest
    noise = fig.within_noise(q)
    said = (
        "inside the measured value's 95% interval: the data cannot tell them apart"
        if noise
        else "outside the measured value's 95% interval"
        if noise is False
        else "too few requests for an interval"
    )
    return (
        f"Across {len(comp.levels)} level(s), the twin's p50/p90 TTFT and latency are within "
        f"{abs(change) * 100:.1f}% of the measured; the largest difference is {NAMES[fig.key]} p{q} at "
        f"{level.level.in_flight:g} in flight: {_val(fig, q, 'measured')} measured, {_val(fig, q, 'twin')} twin "
        f"({change * 100:+.1f}%, {said})."
    )


def _val(fig: Figure, q: int, side: str) -> str:
    return fmt_s(getattr(getattr(fig, side), f"p{q}"))


def _headline(comp: FitComparison) -> Section:
    blocks: list = [Text(headline(comp))]
    blocks += [Text(line) for line in level_sentences(comp)]
    return Section("Measured vs twin, in short", blocks)


def level_sentences(comp: FitComparison) -> list[str]:
    """Per level, its p50/p90 TTFT and latency differences in words and numbers."""
    out = []
    for lv in comp.levels:
        parts = []
        for fig in lv.figures:
            if fig.key == "itl_s":
                continue
            for q in (50, 90):
                change = fig.change(q)
                if change is not None:
                    parts.append(
                        f"{NAMES[fig.key]} p{q} {_val(fig, q, 'measured')} vs {_val(fig, q, 'twin')} "
                        f"({change * 100:+.1f}%{'' if fig.within_noise(q) is not False else ', beyond noise'})"
                    )
        out.append(
            f"In flight {lv.level.in_flight:g} (n={lv.level.n} measured, {len(lv.twin.ttft_s)} drawn): "
            + "; ".join(parts)
            + "."
        )
    return out


def _fitted(twin: TwinModel) -> Section:
    p, o, w, lim = twin.prompt, twin.output, twin.wire, twin.rate_limits
    rows = [
        ["sources", ", ".join(f"{s.name} ({s.records} records)" for s in twin.sources)],
        ["model", twin.model or "-"],
        [
            "prefill",
            f"{p.prefill_s_per_token * 1000:.4g} ms / 1k prompt tokens (n={p.prefill_n})"
            if p.prefill_n
            else "not fitted",
        ],
        ["prompt tokens", f"reference {p.ref_tokens:g}; {p.chars_per_token:.3g} characters per token (n={p.chars_n})"],
        ["output", f"{o.n} answers: {o.length_n} cut by max_tokens (cap {o.cap}), {o.stop_n} stopped by themselves"],
        ["wire", f"usage {w.usage} (n={w.usage_n}); {w.tokens_per_chunk:.3g} token(s) per chunk (n={w.chunk_n})"],
        ["rate limits", f"{lim.headers} headers, rpm {lim.rpm}, tpm {lim.tpm}" if lim.headers else "none seen"],
    ]
    blocks: list = [Table(["part", "fitted"], rows), _levels_table(twin), _failures_table(twin)]
    blocks += [Text(note, warning=True) for note in twin.notes]
    return Section("What the twin holds", blocks)


def _levels_table(twin: TwinModel) -> Table:
    def q(table: Sequence[float] | None, u: float) -> str:
        return "-" if table is None else fmt_s(at(twin.grid, table, u))

    return Table(
        [
            "in flight",
            "n",
            "TTFT p50",
            "TTFT p90",
            "mean gap p50",
            "gap requests",
            "TTFT / gap rank corr.",
            "client lag p50 / p90 (n)",
        ],
        [
            [
                f"{lv.in_flight:.3g}",
                str(lv.n),
                q(lv.ttft_s, 0.5),
                q(lv.ttft_s, 0.9),
                q(lv.gap_mean_s, 0.5),
                str(lv.gap_requests),
                f"{lv.ttft_gap_rho:+.2f}",
                f"{q(lv.lag_s, 0.5)} / {q(lv.lag_s, 0.9)} ({lv.lag_n})" if lv.lag_s else "-",
            ]
            for lv in twin.levels
        ],
    )


def _failures_table(twin: TwinModel) -> Table:
    f = twin.failures
    rows = [
        [
            k.kind,
            str(k.count),
            fmt_pct(f.share(k)),
            "{} - {}".format(*map(fmt_pct, wilson(k.count, f.attempts))),
            "yes" if k.served else "no",
        ]
        for k in f.kinds
    ]
    return Table(
        [f"failure (of {f.attempts} attempts)", "count", "share", "95% interval", "served"],
        rows or [["none", "0", "0.0%", "-", "-"]],
    )


def _levels(comp: FitComparison) -> Section:
    rows = []
    for lv in comp.levels:
        for fig in lv.figures:
            rows.append(
                [f"{lv.level.in_flight:g}", NAMES[fig.key], str(fig.measured.count), str(fig.twin.count)]
                + [cell for q in (50, 90) for cell in _cells(fig, q)]
            )
    headers = [
        "in flight",
        "figure",
        "n measured",
        "n twin",
        "p50 measured (95% interval)",
        "p50 twin",
        "p50 diff",
        "p90 measured (95% interval)",
        "p90 twin",
        "p90 diff",
    ]
    blocks: list = [Table(headers, rows)]
    if len(comp.levels) > 1:
        keys = [lv.level.in_flight for lv in comp.levels]
        for key in ("ttft_s", "latency_s"):
            lines = {
                f"{side} p{q}": [getattr(getattr(_fig(lv, key), side), f"p{q}") for lv in comp.levels]
                for q in (50, 90)
                for side in ("measured", "twin")
            }
            blocks.append(
                Image(
                    plots.percentiles_vs_concurrency(
                        keys,
                        lines,
                        title=f"{NAMES[key]} vs requests in flight",
                        xlabel="requests in flight at send (log 2)",
                    ),
                    f"{NAMES[key]} p50 and p90 by requests in flight, measured and twin",
                )
            )
    return Section("Per level", blocks)


def _fig(lv: LevelComparison, key: str) -> Figure:
    return next(f for f in lv.figures if f.key == key)


def _cells(fig: Figure, q: int) -> list[str]:
    ci = fig.ci.get(q)
    measured = _val(fig, q, "measured") + (
        f" ({fmt_s(ci[0])} - {fmt_s(ci[1])})" if ci else " (too few for an interval)"
    )
    change = fig.change(q)
    return [measured, _val(fig, q, "twin"), "-" if change is None else f"{change * 100:+.1f}%"]


def _throughput(comp: FitComparison) -> Section:
    rows = [
        [
            r.name,
            f"{r.in_flight:.1f}",
            str(r.completed),
            fmt_num(r.measured_rps),
            fmt_num(r.twin_rps),
            "-" if not (r.measured_rps and r.twin_rps) else f"{(r.twin_rps / r.measured_rps - 1) * 100:+.1f}%",
        ]
        for r in comp.runs
    ]
    blocks: list = [
        Text(
            "Twin throughput at a run's mean requests in flight x: x / (share answered x mean twin "
            "latency), Little's law with failures taken as instant."
        ),
        Table(["run", "mean in flight", "requests", "measured req/s", "twin req/s", "diff"], rows),
    ]
    shown = [r for r in comp.runs if r.in_flight > 0]
    if len(shown) > 1:
        keys = [round(r.in_flight, 1) for r in shown]
        blocks.append(
            Image(
                plots.percentiles_vs_concurrency(
                    keys,
                    {"measured": [r.measured_rps for r in shown], "twin": [r.twin_rps for r in shown]},
                    title="Throughput vs requests in flight",
                    ylabel="requests / s",
                    xlabel="mean requests in flight (log 2)",
                ),
                "throughput by requests in flight, measured and twin",
            )
        )
    return Section("Throughput", blocks)


def _cdfs(comp: FitComparison) -> Section:
    levels = comp.levels
    if len(levels) > MAX_CDF_LEVELS:
        step = (len(levels) - 1) / (MAX_CDF_LEVELS - 1)
        levels = tuple(levels[round(i * step)] for i in range(MAX_CDF_LEVELS))
    blocks: list = []
    for lv in levels:
        for key in ("ttft_s", "latency_s", "itl_s"):
            blocks.append(
                Image(
                    plots.cdf(
                        {"measured": getattr(lv.measured, key), "twin": getattr(lv.twin, key)},
                        title=f"{NAMES[key]} at {lv.level.in_flight:g} in flight",
                        xlabel="seconds",
                    ),
                    f"{NAMES[key]} CDF at {lv.level.in_flight:g} in flight, measured and twin",
                )
            )
    return Section("Distributions", blocks)
