"""Baseline comparison: two summaries -> per-figure change and the regressions past tolerance.

A tolerance bounds how far a figure may move in its *bad* direction: `latency_p99=10%` lets
p99 latency rise at most 10%; `throughput=-5%` lets throughput fall at most 5%. Without '%'
the bound is absolute in the figure's unit (`errors=3`, `success_rate=-0.01`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from batchrun.errors import ConfigError
from batchrun.report.format import fmt_num, fmt_s
from batchrun.report.summary import load_run


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    higher_is_better: bool
    unit: str                                    # "s", "req/s", "tok/s", "ratio", "count"
    get: Callable[[Mapping[str, Any]], Any]


def _dist(key: str, stat: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda s: (s.get(key) or {}).get(stat)


def _errors(s: Mapping[str, Any]) -> Any:
    counts = s.get("counts") or {}
    return counts["attempted"] - counts["ok"] if "attempted" in counts and "ok" in counts else None


FIGURES: dict[str, Figure] = {f.name: f for f in (
    Figure("throughput", True, "req/s", lambda s: (s.get("throughput") or {}).get("requests_per_s")),
    Figure("output_throughput", True, "tok/s", lambda s: (s.get("throughput") or {}).get("output_tokens_per_s")),
    Figure("latency_p50", False, "s", _dist("latency_s", "p50")),
    Figure("latency_p90", False, "s", _dist("latency_s", "p90")),
    Figure("latency_p99", False, "s", _dist("latency_s", "p99")),
    Figure("ttft_p50", False, "s", _dist("ttft_s", "p50")),
    Figure("ttft_p99", False, "s", _dist("ttft_s", "p99")),
    Figure("tpot_p50", False, "s", _dist("tpot_s", "p50")),
    Figure("itl_p50", False, "s", _dist("itl_s", "p50")),
    Figure("success_rate", True, "ratio", lambda s: s.get("success_rate")),
    Figure("errors", False, "count", _errors),
    Figure("goodput", True, "req/s", lambda s: (s.get("goodput") or {}).get("requests_per_s")),
)}
# Shown even when absent on both sides; goodput only exists when an SLO was given.
HEADLINE = tuple(name for name in FIGURES if name != "goodput")


@dataclass(frozen=True, slots=True)
class Tolerance:
    limit: float          # how far the figure may move in its bad direction (>= 0)
    relative: bool        # True: percent of the baseline value; False: the figure's own unit

    def __str__(self) -> str:
        return f"{self.limit:g}%" if self.relative else f"{self.limit:g}"


_TOL_ITEM = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*$")


def figure_name(name: str) -> str:
    """Canonical figure name; 'p99_latency' is accepted for 'latency_p99'. ValueError if unknown."""
    key = name.strip().lower()
    m = re.match(r"^(p\d+)_(\w+)$", key)
    if key not in FIGURES and m:
        key = f"{m.group(2)}_{m.group(1)}"
    if key not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; valid names: {', '.join(FIGURES)}")
    return key


def parse_tolerances(text: str) -> dict[str, Tolerance]:
    """'latency_p99=10%,throughput=-5%,errors=3' -> {figure name: Tolerance}."""
    tolerances: dict[str, Tolerance] = {}
    for item in filter(str.strip, text.split(",")):
        m = _TOL_ITEM.match(item)
        if not m:
            raise ValueError(f"bad tolerance {item.strip()!r}: write FIGURE=N% (e.g. latency_p99=10%, "
                             "throughput=-5%) or FIGURE=N for an absolute bound")
        name, sign, number, pct = figure_name(m.group(1)), m.group(2), float(m.group(3)), m.group(4)
        fig = FIGURES[name]
        if number and fig.higher_is_better and sign != "-":
            raise ValueError(f"{name} is higher-is-better: a tolerance says how far it may fall, "
                             f"so write it negative, e.g. {name}=-{m.group(3)}{pct}")
        if number and not fig.higher_is_better and sign == "-":
            raise ValueError(f"{name} is lower-is-better: a tolerance says how far it may rise, "
                             f"so write it positive, e.g. {name}={m.group(3)}{pct}")
        if name in tolerances:
            raise ValueError(f"tolerance for {name} is given twice")
        tolerances[name] = Tolerance(number, relative=pct == "%")
    return tolerances


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    unit: str
    higher_is_better: bool
    baseline: float | None
    current: float | None
    change: float | None          # current - baseline
    change_pct: float | None      # 100 * change / |baseline|; None when baseline is 0 or missing
    tolerance: Tolerance | None
    status: str                   # better / same / worse / regressed / missing


@dataclass(slots=True)
class Comparison:
    changes: list[Change] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)   # one sentence per failed figure

    @property
    def passed(self) -> bool:
        return not self.regressions


def _past(worse: float, bound: float) -> bool:
    # isclose: 1.0 -> 1.1 with a 10% tolerance is within it despite float rounding
    return worse > bound and not math.isclose(worse, bound, rel_tol=1e-9, abs_tol=1e-12)


def _judge(fig: Figure, base: float, cur: float, tol: Tolerance | None) -> str:
    worse = (base - cur) if fig.higher_is_better else (cur - base)
    if tol is not None:
        bound = tol.limit / 100 * abs(base) if tol.relative else tol.limit
        if _past(worse, bound):
            return "regressed"
    return "worse" if worse > 0 else "better" if worse < 0 else "same"


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    return fmt_s(v) if unit == "s" else fmt_num(v * 100, 1, "%") if unit == "ratio" else \
        str(int(v)) if unit == "count" else fmt_num(v, 2)


def _sentence(c: Change) -> str:
    if c.status == "missing":
        side = "baseline" if c.baseline is None else "current"
        return f"{c.name}: missing in the {side} run (the tolerance {c.tolerance} names it)"
    verb = "fell" if c.change < 0 else "rose"
    pct = f" {abs(c.change_pct):.1f}%" if c.change_pct is not None else ""
    sign = "-" if c.higher_is_better else "+"
    return (f"{c.name} {verb}{pct} ({_value(c.baseline, c.unit)} -> {_value(c.current, c.unit)}), "
            f"past the tolerance {sign}{c.tolerance}")


def _change(fig: Figure, baseline: Mapping[str, Any], current: Mapping[str, Any],
            tol: Tolerance | None) -> Change:
    base, cur = fig.get(baseline), fig.get(current)
    if base is None or cur is None:
        return Change(fig.name, fig.unit, fig.higher_is_better, base, cur, None, None, tol, "missing")
    delta = cur - base
    pct = 100 * delta / abs(base) if base else (0.0 if delta == 0 else None)
    return Change(fig.name, fig.unit, fig.higher_is_better, base, cur, delta, pct, tol,
                  _judge(fig, base, cur, tol))


def load_summary(source: Mapping[str, Any] | Path | str) -> dict[str, Any]:
    """A summary dict from a summary dict, a summary.json document, a summary.json file or a run dir.

    A run dir's summary.json is used when present (a committed baseline may have nothing else);
    otherwise the summary is computed from its records.jsonl.
    """
    if isinstance(source, Mapping):
        doc, where = dict(source), "the given summary"
    else:
        path = Path(source)
        if path.is_dir() and not (path / "summary.json").exists():
            return load_run(path).summary
        where = str(path / "summary.json" if path.is_dir() else path)
        try:
            doc = json.loads(Path(where).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {where}: {exc} (pass a run directory or its summary.json)") from exc
    if "schema_version" not in doc:
        return doc  # a bare summary dict
    if doc.get("summary") is None:
        raise ConfigError(f"{where} is a bench with no headline summary: compare one of its runs, "
                          "e.g. RUN_DIR/runs/<name>")
    return doc["summary"]


def compare(baseline: Mapping[str, Any] | Path | str, current: Mapping[str, Any] | Path | str,
            tolerances: Mapping[str, Tolerance] | str | None = None) -> Comparison:
    """Every headline figure, baseline vs current; regressions are figures past their tolerance."""
    tols = parse_tolerances(tolerances) if isinstance(tolerances, str) else \
        {figure_name(k): v for k, v in (tolerances or {}).items()}
    base, cur = load_summary(baseline), load_summary(current)
    names = [n for n in FIGURES if n in HEADLINE or n in tols
             or FIGURES[n].get(base) is not None or FIGURES[n].get(cur) is not None]
    result = Comparison()
    for name in names:
        change = _change(FIGURES[name], base, cur, tols.get(name))
        result.changes.append(change)
        if change.status == "regressed" or (change.status == "missing" and change.tolerance is not None):
            result.regressions.append(_sentence(change))
    return result


def format_comparison(cmp: Comparison, fmt: str = "text") -> str:
    """The comparison as an aligned text table ('text') or a Markdown table ('md')."""
    if fmt not in ("text", "md"):
        raise ValueError(f"unknown format {fmt!r}; use 'text' or 'md'")
    head = ["figure", "baseline", "current", "change", "change %", "tolerance", "status"]
    rows = [[c.name, _value(c.baseline, c.unit), _value(c.current, c.unit),
             "-" if c.change is None else ("+" if c.change >= 0 else "-") + _value(abs(c.change), c.unit),
             "-" if c.change_pct is None else f"{c.change_pct:+.1f}%",
             "-" if c.tolerance is None else ("-" if c.higher_is_better else "+") + str(c.tolerance),
             c.status] for c in cmp.changes]
    verdict = (["regressions:"] + [f"  - {r}" for r in cmp.regressions]) if cmp.regressions \
        else ["no figure regressed past its tolerance"]
    if fmt == "md":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines + [""] + [v.replace("  - ", "- ") for v in verdict]) + "\n"
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    return "\n".join(lines + [""] + verdict) + "\n"
