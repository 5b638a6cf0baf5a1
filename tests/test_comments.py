"""No comment or docstring in batchrun/, tests/ or bench/ points to an issue number or to a file of
this repository that does not exist: a reader should find what a comment names, and issue numbers
mean nothing outside the tracker that gave them."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("batchrun", "tests", "bench")

# "issue 12", "issue #12", "#12", "(#12)"; not a colour (#7f7f7f, #333333). A bare "#1" reads as an
# issue wherever it stands, so a comment says "the first" instead.
ISSUE = re.compile(r"\bissues?\s+#?\d+\b|(?<![\w#&])#\d{1,4}\b(?![0-9a-fA-F])", re.IGNORECASE)
# A relative path with a directory part: `docs/metrics.md`, `batchrun/engine/pool.py`, `engine/pool.py`.
PATH = re.compile(r"(?<![\w./:-])((?:\.?[A-Za-z_][\w-]*/)+[\w.-]*[\w-])")
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
FILE_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".sh", ".csv", ".jsonl", ".json", ".txt", ".html", ".cfg"}


def _files() -> Iterator[Path]:
    for top in SCANNED:
        yield from sorted((ROOT / top).rglob("*.py"))


def _comments(source: str) -> Iterator[tuple[int, str]]:
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string.lstrip("#")


def _docstrings(source: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None and node.body:
                yield node.body[0].lineno, doc


def _texts(path: Path) -> Iterator[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    yield from _comments(source)
    yield from _docstrings(source)


def _ours(first: str, here: Path) -> bool:
    """A path whose first part names a folder of the repository, of the package, or beside the
    file (so `vLLM's benchmarks/lib/x.py` is another project's path, not ours)."""
    return any((base / first).is_dir() for base in (ROOT, ROOT / "batchrun", here.parent))


def _exists(rel: str, here: Path) -> bool:
    """A file or folder, or a module named by its path (`batchrun/__init__`)."""
    bases = (ROOT, ROOT / "batchrun", here.parent, ROOT / "tests")
    return any((base / rel).exists() or (base / f"{rel}.py").exists() for base in bases)


def missing_paths(text: str, here: Path) -> list[str]:
    """The repository paths `text` names that do not exist (relative to the root, the package or
    the file's folder)."""
    out = []
    for match in PATH.finditer(URL.sub(" ", text)):
        rel = match.group(1).rstrip(".")
        if any(c in rel for c in "<>*{}") or rel.startswith("/"):
            continue
        first = rel.split("/", 1)[0]
        looks_like_file = Path(rel).suffix in FILE_SUFFIXES
        if (looks_like_file or first in SCANNED or first == "docs") and _ours(first, here) and not _exists(rel, here):
            out.append(rel)
    return out


def test_the_path_finder_on_literal_comments() -> None:
    here = ROOT / "batchrun" / "engine" / "pool.py"
    assert missing_paths("see docs/metrics.md, engine/limits.py and batchrun/__init__", here) == []
    assert missing_paths("see docs/nowhere.md, batchrun/gone.py and tests/absent.py", here) == [
        "docs/nowhere.md",
        "batchrun/gone.py",
        "tests/absent.py",
    ]
    # Another project's path, a URL, a placeholder and a run directory's layout are not ours.
    assert missing_paths("vLLM benchmarks/lib/endpoint_request_func.py", here) == []
    assert missing_paths("https://github.com/python/mypy/blob/master/docs/x.md", here) == []
    assert missing_paths("RUN_DIR/runs/<name>/records.jsonl", here) == []


def test_the_issue_finder_on_literal_comments() -> None:
    found = [m.group(0) for t in ("see issue 12", "fixed (#12)", "as #7 said", "Issue #3") for m in ISSUE.finditer(t)]
    assert found == ["issue 12", "#12", "#7", "Issue #3"]
    assert not ISSUE.search("colour #7f7f7f, grey #333333, row 12, the 12th issue")


def test_no_comment_points_to_an_issue_number_or_a_missing_file() -> None:
    problems = []
    for path in _files():
        rel = path.relative_to(ROOT)
        if rel.name == "test_comments.py":
            continue  # its own examples
        for line, text in _texts(path):
            problems += [f"{rel}:{line}: names an issue number ({m.group(0)!r})" for m in ISSUE.finditer(text)]
            problems += [f"{rel}:{line}: names {p}, which does not exist" for p in missing_paths(text, path)]
    assert not problems, "comments and docstrings should not point nowhere:\n" + "\n".join(problems)
