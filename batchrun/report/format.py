"""Formatting helpers shared by the run and bench reports: durations, numbers, shares, settings."""

from __future__ import annotations

import json
from typing import Any, Mapping

from batchrun.report.html import Table


def fmt_s(value: float | None) -> str:
    """A duration for people: ms below one second, s above; '-' when unknown."""
    if value is None:
        return "-"
    if abs(value) < 1:
        return f"{value * 1000:.1f} ms" if abs(value) < 0.01 else f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def fmt_num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def slo_text(slo: Mapping[str, float]) -> str:
    return ", ".join(f"{k}<={fmt_s(v)}" for k, v in slo.items())


def config_table(config: Mapping[str, Any]) -> Table:
    return Table(["option", "value"], [[k, json.dumps(v, ensure_ascii=False, default=str)] for k, v in config.items()])


def fmt_eta(seconds: float) -> str:
    """1h 02m, 3m 05s, 42s."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
