"""Console lines and a report.md section for the workload figures (embeddings, synthetic
lengths, sessions, schedule lag); every figure with its sample size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from batchrun.analysis.columns import Columns
from batchrun.analysis.workloads import synthetic_figures, workload_summary
from batchrun.inputs.synthetic import requested_lengths
from batchrun.report.html import Image, Section, Table, Text
from batchrun.report.slices import HEADERS, slice_rows, slices_svg, write_slices
from batchrun.store.records import Record

SIDE_FILES = {"synthetic": "synthetic.json", "turns": "turns.json"}


def _d(dist: Mapping[str, Any], scale: float = 1.0, unit: str = "") -> str:
    if not dist or not dist.get("count"):
        return "no data"
    return (
        f"mean {dist['mean'] * scale:.1f}{unit}, p50 {dist['p50'] * scale:.1f}{unit}, "
        f"p99 {dist['p99'] * scale:.1f}{unit} (n={dist['count']})"
    )


def workload_lines(summary: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    emb = summary.get("embeddings")
    if emb:
        rate = emb["inputs_per_s"]
        tok = emb["prompt_tokens_per_s"]
        lines.append(
            f"embeddings  {emb['inputs']} inputs in {emb['batches']} batches: "
            f"{rate or 0:.1f} inputs/s, {tok or 0:.0f} tokens/s; batch latency {_d(emb['batch_latency_s'], 1000, ' ms')}"
        )
    syn = summary.get("synthetic")
    if syn:
        for key in ("prompt_tokens", "output_tokens"):
            lines.append(f"{key:<14}requested {_d(syn['requested'][key])}; realised (usage) {_d(syn['realised'][key])}")
        lines.append(f"              sizing: {syn['sizing']['source']}")
    for turn in summary.get("turns") or []:
        lines.append(
            f"turn {turn['turn']:<7}TTFT {_d(turn['ttft_s'], 1000, ' ms')}; latency {_d(turn['latency_s'], 1000, ' ms')}"
        )
    for name, e in (summary.get("by_endpoint") or {}).items():
        rate = e["throughput"]["requests_per_s"]
        lines.append(
            f"endpoint    {name}: {e['counts']['ok']} ok of {e['counts']['attempted']}, "
            f"{rate or 0:.2f} req/s; latency {_d(e['latency_s'], 1000, ' ms')}"
        )
    lag = summary.get("schedule_lag_s")
    if lag and lag.get("count"):
        lines.append(f"schedule    lag (actual - scheduled send) {_d(lag, 1000, ' ms')}")
    return lines


def append_markdown(out: Path, summary: Mapping[str, Any]) -> None:
    lines = workload_lines(summary)
    if not lines:
        return
    with open(out / "report.md", "a", encoding="utf-8") as f:
        f.write("\n## Workload\n\n```\n" + "\n".join(lines) + "\n```\n")


def load_side(out: Path) -> dict[str, Any]:
    """What a workload left beside the records for the summary (synthetic.json, turns.json)."""
    side: dict[str, Any] = {}
    for key, name in SIDE_FILES.items():
        path = out / name
        if path.exists():
            side[key] = json.loads(path.read_text(encoding="utf-8"))
    return side


def workload_sections(
    out: Path,
    config: Mapping[str, Any],
    records: Sequence[Record] | Columns,
    wall_time_s: float | None,
    stream: Callable[[], Iterable[Record]] | None = None,
) -> dict[str, Any]:
    """The summary's workload sections for a run directory (the run itself, or `batchrun report`).
    With Columns, `stream` reads the records again one at a time for the sections that need ids."""
    side = load_side(out)
    records = records if isinstance(records, Columns) else list(records)
    return workload_summary(config, records, wall_time_s, side.get("synthetic"), side.get("turns"), stream)


def workload_doc(summary: Mapping[str, Any]) -> list[Any]:
    """Report sections (Markdown and HTML) for the workload figures and the --slice windows."""
    sections = []
    lines = workload_lines(summary)
    if lines:
        sections.append(Section("Workload", [Text(line.strip()) for line in lines]))
    if summary.get("slices"):
        sections.append(
            Section(
                "Per time window (a request counts in the window it ended in)",
                [
                    Table(HEADERS, slice_rows(summary["slices"])),
                    Image(slices_svg(summary["slices"]), "requests/s, TTFT and latency per time window"),
                ],
            )
        )
    return sections


def write_extras(out: Path, summary: Mapping[str, Any]) -> dict[str, Path]:
    """slices.md / slices.svg with --slice (report.md and report.html carry the rest)."""
    if not summary.get("slices"):
        return {}
    md, svg = write_slices(out, summary["slices"])
    return {"slices_md": md, "slices_svg": svg}


def bench_headline_workloads(
    headline: dict[str, Any] | None, runs: Sequence[Mapping[str, Any]], spec: str | None, info: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """A synthetic bench's headline run, with its requested and realised lengths."""
    if headline is None or spec is None or info is None:
        return headline
    run = next((r for r in runs if r["name"] == headline.get("bench_run")), None)
    if run is None:
        return headline
    records = list(run["records"])
    ids = [r.id for r in records if r.id.startswith("syn-")]
    return {**headline, "synthetic": synthetic_figures(records, info, requested_lengths(spec, ids), ids)}
