"""The --slice table (slices.md) and plot (slices.png) written beside a run's reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


HEADERS = ["window (s)", "requests", "ok", "failed", "req/s", "output tok/s", "TTFT p50 / p99 (ms)",
           "latency p50 / p99 (ms)"]


def slice_rows(slices: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[f"{w['start_s']:g}–{w['start_s'] + w['length_s']:.3g}", str(w["requests"]), str(w["ok"]), str(w["failed"]),
             _num(w["requests_per_s"]), _num(w["output_tokens_per_s"]),
             f"{_ms(w['ttft_s']['p50'])} / {_ms(w['ttft_s']['p99'])}",
             f"{_ms(w['latency_s']['p50'])} / {_ms(w['latency_s']['p99'])}"] for w in slices]


def slices_markdown(slices: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in slice_rows(slices)]
    return "\n".join(lines) + "\n"


def slices_png_b64(slices: Sequence[dict[str, Any]]) -> str:
    import base64
    import io

    buf = io.BytesIO()
    slices_figure(slices).savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def slices_figure(slices: Sequence[dict[str, Any]]) -> Figure:
    fig = Figure(figsize=(6.4, 5.0))
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    mid = [w["start_s"] + w["length_s"] / 2 for w in slices]
    top.plot(mid, [w["requests_per_s"] or 0 for w in slices], marker="o", label="requests/s")
    top.set_ylabel("requests/s")
    top.set_title("Per time window")
    top.grid(True, alpha=0.3)
    for key, label in (("ttft_s", "TTFT"), ("latency_s", "latency")):
        for q in ("p50", "p99"):
            bottom.plot(mid, [(w[key][q] or float("nan")) * 1000 for w in slices], marker=".", label=f"{label} {q}")
    bottom.set_xlabel("seconds since start (window middle)")
    bottom.set_ylabel("ms")
    bottom.grid(True, alpha=0.3)
    bottom.legend(fontsize="small")
    return fig


def write_slices(out: Path, slices: Sequence[dict[str, Any]]) -> list[Path]:
    md = out / "slices.md"
    md.write_text("# Per time window\n\nA request counts in the window its final attempt ended in.\n\n"
                  + slices_markdown(slices), encoding="utf-8")
    png = out / "slices.png"
    slices_figure(slices).savefig(png, dpi=100, bbox_inches="tight")
    return [md, png]
