"""A report as plain blocks, and its two renderings: self-contained HTML and Markdown.

report/summary.py and report/bench.py build the blocks once from a summary; the renderers only format them, so the
Markdown and the HTML always say the same thing. Every string in a block may come from the
model, the prompts file or an error message: the HTML renderer escapes all of it with
`html.escape`, and no link is ever built from data.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Sequence, Union


@dataclass(frozen=True, slots=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    warning: bool = False


@dataclass(frozen=True, slots=True)
class Image:
    svg: str  # one <svg> element from plots.py: every text in it escaped by report/svg.py
    alt: str


Block = Union[Table, Text, Image]


@dataclass(slots=True)
class Section:
    title: str
    blocks: Sequence[Block] = field(default_factory=list)


@dataclass(slots=True)
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
     padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem}h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td{font-variant-numeric:tabular-nums;white-space:pre-wrap;word-break:break-word}
.warning{background:#fff4e5;border-left:4px solid #f0a020;padding:.4rem .8rem}
.plot{display:inline-block;vertical-align:top;max-width:100%;box-sizing:border-box;margin:.5rem 0;padding-right:.75rem}
.plot svg{display:block;max-width:100%;height:auto}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_block(block: Block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{_esc(h)}</th>" for h in block.headers)
        body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Text):
        cls = ' class="warning"' if block.warning else ""
        return f"<p{cls}>{_esc(block.text)}</p>"
    return f'<div class="plot" role="img" aria-label="{_esc(block.alt)}">{checked_svg(block.svg)}</div>'


# The elements and attributes report/svg.py writes, and nothing else: no script, no foreignObject,
# no href, no on* handler, no style. The plots escape their text; this check makes that a rule the
# page enforces rather than a promise (a plot that broke it fails loudly, it is never inlined).
_SVG_TAGS = frozenset({"svg", "g", "path", "rect", "circle", "text", "title"})
_SVG_ATTRS = frozenset(
    {
        "xmlns",
        "class",
        "role",
        "font-family",
        "font-size",
        "font-weight",
        "width",
        "height",
        "viewBox",
        "x",
        "y",
        "d",
        "fill",
        "stroke",
        "stroke-width",
        "stroke-dasharray",
        "cx",
        "cy",
        "r",
        "text-anchor",
        "transform",
        "data-name",
    }
)


def checked_svg(markup: str) -> str:
    """`markup` if it is one well-formed <svg> made only of the allowed elements and attributes."""
    root = ET.fromstring(markup)
    for el in root.iter():
        tag = el.tag.rpartition("}")[2]
        bad = [a for a in el.attrib if a not in _SVG_ATTRS]
        if tag not in _SVG_TAGS or bad or (el is root and tag != "svg"):
            raise ValueError(f"plot markup has a disallowed element or attribute: <{tag}> {bad}")
    return markup


def render_html(doc: Document) -> str:
    """One self-contained page: inline CSS, inline images, no scripts, no external requests."""
    parts = [f"<h1>{_esc(doc.title)}</h1>"]
    for section in doc.sections:
        parts.append(f"<h2>{_esc(section.title)}</h2>")
        parts.extend(_html_block(b) for b in section.blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # CSP: even if something slipped through escaping, the page may run no script
        # and load nothing from the network.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>{_esc(doc.title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


# ---------------------------------------------------------------- Markdown

# A '<' that cannot open a tag (not followed by a letter, '/', '!' or '?') is plain text to every
# HTML parser, so `<=` and `(<30)` stay readable.
_HARMLESS_LT = re.compile(r"&lt;(?![A-Za-z/!?])")


def _md_cell(text: object) -> str:
    # Many Markdown viewers pass raw HTML through, so model output is HTML-escaped here too;
    # pipes and newlines would break the table row.
    escaped = _HARMLESS_LT.sub("<", html.escape(str(text), quote=False))
    return escaped.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_block(block: Block) -> str:
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md_cell(h) for h in block.headers) + " |", "|" + "---|" * len(block.headers)]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Text):
        text = _md_cell(block.text)
        return f"> **Warning:** {text}" if block.warning else text
    return f"*Figure: {_md_cell(block.alt)} (see report.html)*"


def render_markdown(doc: Document) -> str:
    parts = [f"# {_md_cell(doc.title)}"]
    for section in doc.sections:
        parts.append(f"## {_md_cell(section.title)}")
        parts.extend(_md_block(b) for b in section.blocks)
    return "\n\n".join(parts) + "\n"
