"""docs/python.md's Python blocks run as written, in order, in one namespace (as a notebook would run
them), against the built-in endpoint, in a fresh interpreter; a block with a top-level `await`
runs as a notebook cell does, in an event loop."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from docstext import doc_page

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)

RUNNER = """
import ast, asyncio, json, sys
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for n, source in enumerate(blocks):
    code = compile(source, f"docs/python.md block {n + 1}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    print(f"block {n + 1} ran", file=sys.stderr)
"""


def python_blocks() -> list[str]:
    return _BLOCK.findall(doc_page("python.md"))


def test_the_python_page_has_its_examples() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 5
    assert any("await batchrun.arun(" in b for b in blocks) and any("resume=" in b for b in blocks)


def test_every_python_block_runs(tmp_path: Path) -> None:
    blocks = python_blocks()
    (tmp_path / "blocks.json").write_text(json.dumps(blocks), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, "blocks.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stderr.count(" ran\n") == len(blocks)
    assert "fix the input:" in done.stdout  # the errors block caught what it shows
