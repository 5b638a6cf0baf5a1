"""The --slice table (slices.md) and plot (slices.svg) written beside a run's reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from batchrun.report.svg import PALETTE, Chart, Key, finite, linear_axis, stack


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


HEADERS = [
    "window (s)",
    "requests",
    "ok",
    "failed",
    "req/s",
    "output tok/s",
    "TTFT p50 / p99 (ms)",
    "latency p50 / p99 (ms)",
]


def slice_rows(slices: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            f"{w['start_s']:g}–{w['start_s'] + w['length_s']:.3g}",
            str(w["requests"]),
            str(w["ok"]),
            str(w["failed"]),
            _num(w["requests_per_s"]),
            _num(w["output_tokens_per_s"]),
            f"{_ms(w['ttft_s']['p50'])} / {_ms(w['ttft_s']['p99'])}",
            f"{_ms(w['latency_s']['p50'])} / {_ms(w['latency_s']['p99'])}",
        ]
        for w in slices
    ]


def slices_markdown(slices: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in slice_rows(slices)]
    return "\n".join(lines) + "\n"


def slices_svg(slices: Sequence[dict[str, Any]], *, standalone: bool = False) -> str:
    """Requests/s per window above TTFT and latency p50/p99 per window (ms), as one SVG document."""
    mid = [w["start_s"] + w["length_s"] / 2 for w in slices]
    ends = [w["start_s"] for w in slices] + [w["start_s"] + w["length_s"] for w in slices]
    x_axis = linear_axis(min(ends, default=0.0), max(ends, default=1.0), zero=False)
    rate = [w["requests_per_s"] or 0.0 for w in slices]
    top = Chart(
        "Per time window",
        "seconds since start (window middle)",
        "requests/s",
        x_axis,
        linear_axis(0, max(finite(rate), default=1.0), headroom=0.08),
        640,
        250,
    )
    top.line(list(zip(mid, rate)), Key("requests/s", PALETTE[0], marker=True))
    ms = {
        f"{label} {q}": [None if w[key][q] is None else w[key][q] * 1000 for w in slices]
        for key, label in (("ttft_s", "TTFT"), ("latency_s", "latency"))
        for q in ("p50", "p99")
    }
    keys = [Key(name, PALETTE[i + 1], marker=True) for i, name in enumerate(ms)]
    every = [v for values in ms.values() for v in finite(values)]
    bottom = Chart(
        "TTFT and latency per window",
        "seconds since start (window middle)",
        "ms",
        x_axis,
        linear_axis(0, max(every, default=1.0), headroom=0.08),
        640,
        280,
        legend=keys,
    )
    for key, values in zip(keys, ms.values()):
        bottom.line(list(zip(mid, values)), key)
    return stack([top, bottom], standalone=standalone)


def write_slices(out: Path, slices: Sequence[dict[str, Any]]) -> list[Path]:
    md = out / "slices.md"
    md.write_text(
        "# Per time window\n\nA request counts in the window its final attempt ended in.\n\n" + slices_markdown(slices),
        encoding="utf-8",
    )
    svg = out / "slices.svg"
    svg.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n' + slices_svg(slices, standalone=True) + "\n", encoding="utf-8"
    )
    return [md, svg]
