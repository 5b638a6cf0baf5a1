"""The stop rules (--max-errors, --max-error-rate, an endpoint that refuses the run) are one
StopRule: the same finished requests stop a run of rows, a run of worker processes and an
embeddings run alike, with the same reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from batchrun.cli import app
from promptfiles import write_prompts

N = 40
# How each caller of the rule is reached from the command line; each sends one input per request.
CALLERS = {
    "pool": ["-c", "1"],
    "workers": ["-c", "2", "--workers", "2"],
    "embeddings": ["-c", "1", "--endpoint", "embeddings", "--batch-size", "1"],
}


def run(caller: str, base_url: str, tmp_path: Path, prompt: str, *options: str) -> tuple[Any, Counter[str]]:
    write_prompts(tmp_path / "p.csv", [f"{prompt} {i}" for i in range(N)])
    result = CliRunner().invoke(app, ["run", "p.csv", "--base-url", base_url, "-q", "--retries", "0",
                                      "--out", "o", *CALLERS[caller], *options], catch_exceptions=False)
    lines = (tmp_path / "o" / "records.jsonl").read_text().splitlines()
    statuses = Counter(json.loads(line)["status"] for line in lines)
    return result, statuses


@pytest.mark.parametrize("caller", CALLERS)
def test_the_first_five_requests_failing_with_one_4xx_stop_every_caller(fast_sim: Any, tmp_path: Path,
                                                                        caller: str) -> None:
    """A 400 on every request (a parameter the endpoint rejects): every row would get it, so the
    run stops after the first five and says why, whichever caller counts them."""
    result, statuses = run(caller, fast_sim.base_url, tmp_path, "[[sim:error=400]]")
    assert result.exit_code == 2, result.output
    assert ("the endpoint refused the run: the first 5 requests all failed with HTTP 400; "
            "the last said: HTTP 400") in result.output
    assert set(statuses) <= {"error", "cancelled"} and sum(statuses.values()) < N
    if caller != "workers":         # one request at a time: the fifth answer stopped it (a sixth may be cancelled)
        assert statuses["error"] == 5


@pytest.mark.parametrize("caller", CALLERS)
def test_max_errors_stops_every_caller_with_the_commonest_error(fast_sim: Any, tmp_path: Path, caller: str) -> None:
    result, statuses = run(caller, fast_sim.base_url, tmp_path, "[[sim:error=500]]", "--max-errors", "3")
    assert result.exit_code == 1, result.output
    unit = "inputs" if caller == "embeddings" else "requests"
    assert (f"stopped early: 3 {unit} failed (--max-errors 3); the commonest error (3 of 3): "
            "InternalServerError: HTTP 500") in result.output
    assert set(statuses) <= {"error", "cancelled"} and sum(statuses.values()) < N
    if caller != "workers":
        assert statuses["error"] == 3
