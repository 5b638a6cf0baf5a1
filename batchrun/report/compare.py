"""A Comparison -> text, Markdown, JSON, JUnit XML or GitHub annotations (pure: strings out)."""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from batchrun.analysis.compare import (
    Change, Comparison, changes_as_dicts, interval_text, tolerance_text, value_text, _sentence,
)

FORMATS = ("text", "md", "json", "junit", "github")
_HEAD = ["figure", "baseline", "current", "change", "95% interval", "tolerance", "n (base/cur)", "verdict"]


def _row(c: Change) -> list[str]:
    if c.change is None:
        change = "-"
    elif c.unit == "ratio":
        change = f"{c.change * 100:+.1f} pt"
    elif c.change_pct is not None:
        change = f"{c.change_pct:+.1f}%"
    else:
        change = ("+" if c.change >= 0 else "-") + value_text(abs(c.change), c.unit)
    n = "-" if c.n_baseline is None else f"{c.n_baseline}/{c.n_current}"
    verdict = c.status + (f" (~{c.more_requests} more a side)" if c.status == "inconclusive" and c.more_requests
                          else "")
    return [c.name, value_text(c.baseline, c.unit), value_text(c.current, c.unit), change,
            interval_text(c), tolerance_text(c), n, verdict]


def _verdict_lines(cmp: Comparison, fail_on_inconclusive: bool) -> list[str]:
    lines = []
    if cmp.regressions:
        lines += ["regressed:"] + [f"  - {r}" for r in cmp.regressions]
    if cmp.inconclusive:
        lines += [f"inconclusive{' (fails with --fail-on-inconclusive)' if fail_on_inconclusive else ''}:"]
        lines += [f"  - {r}" for r in cmp.inconclusive]
    if not cmp.regressions:
        lines.append("no figure regressed past its tolerance")
    return lines


def _context(cmp: Comparison) -> list[str]:
    lines = [f"baseline: {cmp.baseline_label}", f"current:  {cmp.current_label}"]
    method = ("95% intervals of the relative change from the requests (pooled over repeats)" if cmp.statistical
              else "point comparison (no intervals)")
    lines.append(f"method:   {method}")
    lines += [f"config changed (allowed): {d}" for d in cmp.differences]
    lines += [f"note: {n}" for n in cmp.notes]
    return lines


def format_text(cmp: Comparison, fail_on_inconclusive: bool = False) -> str:
    rows = [_HEAD] + [_row(c) for c in cmp.changes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD))]
    table = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(_context(cmp) + [""] + table + [""] + _verdict_lines(cmp, fail_on_inconclusive)) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(cmp: Comparison, fail_on_inconclusive: bool = False) -> str:
    lines = ["### batchrun compare", ""] + [f"- {_md_cell(line)}" for line in _context(cmp)] + [""]
    lines += ["| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in _row(c)) + " |" for c in cmp.changes]
    verdict = [v.replace("  - ", "- ") for v in _verdict_lines(cmp, fail_on_inconclusive)]
    return "\n".join(lines + [""] + verdict) + "\n"


def format_json(cmp: Comparison, fail_on_inconclusive: bool = False) -> str:
    doc: dict[str, Any] = {
        "passed": cmp.passed and not (fail_on_inconclusive and cmp.inconclusive),
        "statistical": cmp.statistical, "baseline": cmp.baseline_label, "current": cmp.current_label,
        "figures": changes_as_dicts(cmp), "regressions": cmp.regressions, "inconclusive": cmp.inconclusive,
        "config_differences": cmp.differences, "notes": cmp.notes}
    return json.dumps(doc, indent=2, default=str) + "\n"


def format_junit(cmp: Comparison, fail_on_inconclusive: bool = False) -> str:
    """One test case per figure: regressed fails; inconclusive fails under the strict gate, else is skipped."""
    failures = sum(1 for c in cmp.changes if c.status == "regressed" or
                   (c.status == "missing" and c.tolerance is not None) or
                   (fail_on_inconclusive and c.status == "inconclusive"))
    skipped = sum(1 for c in cmp.changes if c.status == "inconclusive" and not fail_on_inconclusive)
    cases = []
    for c in cmp.changes:
        attrs = f'classname="batchrun.compare" name={quoteattr(c.name)}'
        message = _sentence(c) if c.status in ("regressed", "inconclusive", "missing") else ""
        failed = c.status == "regressed" or (c.status == "missing" and c.tolerance is not None) or \
            (fail_on_inconclusive and c.status == "inconclusive")
        if failed:
            body = f"<failure message={quoteattr(message)}>{escape(message)}</failure>"
        elif c.status == "inconclusive":
            body = f"<skipped message={quoteattr(message)}/>"
        else:
            body = f"<system-out>{escape(' '.join(_row(c)))}</system-out>"
        cases.append(f"    <testcase {attrs}>{body}</testcase>")
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            f'<testsuite name="batchrun compare" tests="{len(cmp.changes)}" failures="{failures}" '
            f'skipped="{skipped}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def _gh_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def format_github(cmp: Comparison, fail_on_inconclusive: bool = False) -> str:
    """GitHub Actions workflow commands: an error per regression, a warning per inconclusive figure."""
    lines = [f"::error title=batchrun compare: regression::{_gh_escape(r)}" for r in cmp.regressions]
    level = "error" if fail_on_inconclusive else "warning"
    lines += [f"::{level} title=batchrun compare: inconclusive::{_gh_escape(r)}" for r in cmp.inconclusive]
    lines += [f"::warning title=batchrun compare: configuration changed::{_gh_escape(d)}" for d in cmp.differences]
    if not cmp.regressions:
        lines.append("::notice title=batchrun compare::no figure regressed past its tolerance")
    return "\n".join(lines) + "\n"


_FORMATTERS = {"text": format_text, "md": format_markdown, "json": format_json, "junit": format_junit,
               "github": format_github}


def format_comparison(cmp: Comparison, fmt: str = "text", fail_on_inconclusive: bool = False) -> str:
    """The comparison in one of FORMATS."""
    if fmt not in _FORMATTERS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return _FORMATTERS[fmt](cmp, fail_on_inconclusive)
