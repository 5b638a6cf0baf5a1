"""Prompt files for tests: one writer, so every test's input has the same shape."""

from __future__ import annotations

import csv
from pathlib import Path


def write_prompts(path: Path, prompts: int | list[str]) -> Path:
    """A CSV with columns id (q0, q1, ...) and prompt: the given prompts, or n numbered questions."""
    texts = [f"question {i}" for i in range(prompts)] if isinstance(prompts, int) else prompts
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt"])
        writer.writerows([f"q{i}", text] for i, text in enumerate(texts))
    return path
