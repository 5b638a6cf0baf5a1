"""batchrun's real CLI as a subprocess against a real server, and what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLI_TIMEOUT_S = 300.0

# Distinct prompts of a few words each: every row is a different request to the server's prompt cache.
_SUBJECTS = (
    "river",
    "city",
    "garden",
    "engine",
    "market",
    "signal",
    "letter",
    "window",
    "island",
    "forest",
    "bridge",
    "stone",
)
_ASKS = (
    "Describe the",
    "Name one use of the",
    "What is near the",
    "Write a line about the",
    "Where is the",
    "Why is the",
    "How old is the",
    "Who built the",
    "When did you see the",
    "Count the",
)


def prompt_texts(n: int) -> list[str]:
    """`n` distinct short prompts (deterministic)."""
    return [f"{_ASKS[i % len(_ASKS)]} {_SUBJECTS[(i // len(_ASKS)) % len(_SUBJECTS)]} number {i}." for i in range(n)]


@dataclass(frozen=True)
class CliRun:
    """One finished `batchrun` process and its run directory."""

    proc: subprocess.CompletedProcess[str]
    out: Path

    @property
    def code(self) -> int:
        return self.proc.returncode

    def records(self) -> list[dict[str, Any]]:
        """Every line of records.jsonl (a resumed row appears once per attempt session)."""
        # Split on newlines only: str.splitlines() also splits at U+2028, U+0085 and the like, which a
        # random model's answer can hold and JSON leaves unescaped.
        lines = (self.out / "records.jsonl").read_bytes().split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last record of each id."""
        return {r["id"]: r for r in self.records()}

    def summary(self) -> dict[str, Any]:
        return json.loads((self.out / "summary.json").read_text())["summary"]

    def report(self) -> str:
        return (self.out / "report.md").read_text()

    def explain(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.proc.stdout[-3000:]}\nstderr:\n{self.proc.stderr[-3000:]}"


def cli_env() -> dict[str, str]:
    """The environment without any endpoint or key of the developer's (the tests name the URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCHRUN_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli_argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "batchrun", *map(str, args)]


def batchrun(out: Path, *args: str | Path, timeout: float = CLI_TIMEOUT_S) -> CliRun:
    """Run `batchrun <args>` to the end; `out` is the run directory the args name."""
    proc = subprocess.run(
        cli_argv(*args), capture_output=True, text=True, timeout=timeout, env=cli_env(), stdin=subprocess.DEVNULL
    )
    return CliRun(proc, out)
