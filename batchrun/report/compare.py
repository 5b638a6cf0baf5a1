"""A Comparison -> text, Markdown, JSON, JUnit XML or GitHub annotations (pure: strings out).

What a gate prints (`console_output`): the text format nothing when the gate passes and the whole
comparison when it fails (or when asked); GitHub annotations an error per failed figure and at
most one warning for every undecided figure together; Markdown, JSON and JUnit are documents that
someone asked for, so they are always whole.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from batchrun.analysis.compare import (
    Change,
    Comparison,
    change_text,
    changes_as_dicts,
    failed,
    failure_text,
    interval_text,
    needs_text,
    tolerance_text,
    undecided_text,
    value_text,
)

FORMATS = ("text", "md", "json", "junit", "github")
_HEAD = ["figure", "baseline", "current", "change", "95% interval", "tolerance", "n (base/cur)", "verdict"]


def gate_failed(cmp: Comparison, fail_on_inconclusive: bool = False) -> bool:
    """The gate's answer: a figure failed, or (strict) a figure is undecided."""
    return not cmp.passed or (fail_on_inconclusive and bool(cmp.inconclusive))


def _row(c: Change) -> list[str]:
    n = "-" if c.n_baseline is None else f"{c.n_baseline}/{c.n_current}"
    needs = needs_text(c) if c.status == "inconclusive" else None
    verdict = f"{c.status} ({needs})" if needs else c.status
    return [
        c.name,
        value_text(c.baseline, c.unit),
        value_text(c.current, c.unit),
        change_text(c),
        interval_text(c),
        tolerance_text(c),
        n,
        verdict,
    ]


def _headline(cmp: Comparison, fail_on_inconclusive: bool) -> str:
    """The answer first: passed, or which figures failed."""
    if not cmp.passed:
        return "batchrun compare: failed: " + ", ".join(c.name for c in cmp.changes if failed(c))
    if fail_on_inconclusive and cmp.inconclusive:
        undecided = ", ".join(c.name for c in cmp.changes if c.status == "inconclusive")
        return f"batchrun compare: failed: undecided with --fail-on-inconclusive: {undecided}"
    return "batchrun compare: passed: no figure regressed past its tolerance"


def _verdict_lines(cmp: Comparison, fail_on_inconclusive: bool) -> list[str]:
    lines = ["regressed:"] + [f"  - {r}" for r in cmp.regressions] if cmp.regressions else []
    undecided = cmp.inconclusive_line()
    if undecided:
        lines.append(undecided + (" (fails with --fail-on-inconclusive)" if fail_on_inconclusive else ""))
    return lines


def _context(cmp: Comparison) -> list[str]:
    lines = [f"baseline: {cmp.baseline_label}", f"current:  {cmp.current_label}"]
    method = (
        "95% intervals of the relative change from the requests (pooled over repeats)"
        if cmp.statistical
        else "point comparison (no intervals but the failure share's)"
    )
    lines.append(f"method:   {method}")
    lines += [f"config changed (allowed): {d}" for d in cmp.differences]
    lines += [f"note: {n}" for n in cmp.notes]
    return lines


def _table(cmp: Comparison) -> list[str]:
    rows = [_HEAD] + [_row(c) for c in cmp.changes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _overview(cmp: Comparison, fail_on_inconclusive: bool) -> list[str]:
    return [_headline(cmp, fail_on_inconclusive)] + _context(cmp) + [""] + _table(cmp)


def format_text(cmp: Comparison, fail_on_inconclusive: bool = False) -> str:
    """The whole comparison: the answer, both sides, the table, what failed and what is undecided."""
    verdict = _verdict_lines(cmp, fail_on_inconclusive)
    return "\n".join(_overview(cmp, fail_on_inconclusive) + ([""] + verdict if verdict else [])) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(cmp: Comparison, fail_on_inconclusive: bool = False) -> str:
    lines = ["### batchrun compare", "", f"**{_md_cell(_headline(cmp, fail_on_inconclusive))}**", ""]
    lines += [f"- {_md_cell(line)}" for line in _context(cmp)] + [""]
    lines += ["| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in _row(c)) + " |" for c in cmp.changes]
    # Blank lines apart: a line right after a list would continue its last item.
    verdict = [_md_cell(v.replace("  - ", "- ")) for v in _verdict_lines(cmp, fail_on_inconclusive)]
    if cmp.regressions and cmp.inconclusive:
        verdict.insert(-1, "")
    return "\n".join(lines + ([""] + verdict if verdict else [])) + "\n"


def format_json(cmp: Comparison, fail_on_inconclusive: bool = False) -> str:
    doc: dict[str, Any] = {
        "passed": not gate_failed(cmp, fail_on_inconclusive),
        "statistical": cmp.statistical,
        "baseline": cmp.baseline_label,
        "current": cmp.current_label,
        "figures": changes_as_dicts(cmp),
        "regressions": cmp.regressions,
        "inconclusive": cmp.inconclusive,
        "config_differences": cmp.differences,
        "notes": cmp.notes,
    }
    return json.dumps(doc, indent=2, default=str) + "\n"


def format_junit(cmp: Comparison, fail_on_inconclusive: bool = False) -> str:
    """One test case per figure: a failed figure fails; inconclusive fails under the strict gate, else is skipped."""
    cases, failures, skipped = [], 0, 0
    for c in cmp.changes:
        attrs = f'classname="batchrun.compare" name={quoteattr(c.name)}'
        undecided = c.status == "inconclusive"
        if failed(c) or (fail_on_inconclusive and undecided):
            message = failure_text(c) if failed(c) else undecided_text(c)
            body, failures = f"<failure message={quoteattr(message)}>{escape(message)}</failure>", failures + 1
        elif undecided:
            body, skipped = f"<skipped message={quoteattr(undecided_text(c))}/>", skipped + 1
        else:
            body = f"<system-out>{escape(' '.join(_row(c)))}</system-out>"
        cases.append(f"    <testcase {attrs}>{body}</testcase>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name="batchrun compare" tests="{len(cmp.changes)}" failures="{failures}" '
        f'skipped="{skipped}">\n' + "\n".join(cases) + "\n</testsuite>\n"
    )


def _gh_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def format_github(cmp: Comparison, fail_on_inconclusive: bool = False, *, table: bool = False) -> str:
    """GitHub Actions workflow commands: an error per failed figure, one warning (an error under the
    strict gate) for every undecided figure together, one for allowed configuration changes. `table`
    puts the answer, both sides and the table first, as plain log lines."""
    lines = _overview(cmp, fail_on_inconclusive) + [""] if table else []
    lines += [f"::error title=batchrun compare: regression::{_gh_escape(r)}" for r in cmp.regressions]
    if cmp.inconclusive:
        level = "error" if fail_on_inconclusive else "warning"
        lines.append(f"::{level} title=batchrun compare: inconclusive::{_gh_escape('; '.join(cmp.inconclusive))}")
    if cmp.differences:
        lines.append(
            "::warning title=batchrun compare: configuration changed (allowed)::"
            + _gh_escape("; ".join(cmp.differences))
        )
    return "".join(line + "\n" for line in lines)


_FORMATTERS = {
    "text": format_text,
    "md": format_markdown,
    "json": format_json,
    "junit": format_junit,
    "github": format_github,
}


def format_comparison(cmp: Comparison, fmt: str = "text", fail_on_inconclusive: bool = False) -> str:
    """The comparison in one of FORMATS, whole."""
    if fmt not in _FORMATTERS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return _FORMATTERS[fmt](cmp, fail_on_inconclusive)


def console_output(
    cmp: Comparison, fmt: str = "text", fail_on_inconclusive: bool = False, verbose: bool = False
) -> str:
    """What `batchrun compare` prints: silent text on a pass (unless `verbose`), everything on a
    failure; annotations alone on a pass in the github format; the documents always whole."""
    show_all = verbose or gate_failed(cmp, fail_on_inconclusive)
    if fmt == "text":
        return format_text(cmp, fail_on_inconclusive) if show_all else ""
    if fmt == "github":
        return format_github(cmp, fail_on_inconclusive, table=show_all)
    return format_comparison(cmp, fmt, fail_on_inconclusive)
