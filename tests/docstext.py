"""The user documentation (README.md and docs/*.md) as text, for tests that check what it says."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def docs_text() -> str:
    """README.md and every page under docs/, joined: where an option or a command is documented."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


def doc_page(name: str) -> str:
    """One page of docs/, e.g. `doc_page("workloads.md")`."""
    return (ROOT / "docs" / name).read_text(encoding="utf-8")
