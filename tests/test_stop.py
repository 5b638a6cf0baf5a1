"""The stop rules (--max-errors, --max-error-rate, an endpoint that refuses the run) are one
StopRule: the same finished requests stop a run of rows, a run of worker processes and an
embeddings run alike, with the same reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.engine.stop import StopRule
from batchrun.store.records import Record

N = 200
# How each caller of the rule is reached from the command line; each sends one input per request.
CALLERS = {
    "pool": ["-c", "1"],
    "workers": ["-c", "2", "--workers", "2"],
    "embeddings": ["-c", "1", "--endpoint", "embeddings", "--batch-size", "1"],
}


def run(caller: str, base_url: str, tmp_path: Path, prompt: str, *options: str) -> tuple[Any, Counter[str]]:
    write_prompts(tmp_path / "p.csv", [f"{prompt} {i}" for i in range(N)])
    result = CliRunner().invoke(
        app,
        ["run", "p.csv", "--base-url", base_url, "-q", "--retries", "0", "--out", "o", *CALLERS[caller], *options],
        catch_exceptions=False,
    )
    lines = (tmp_path / "o" / "records.jsonl").read_text().splitlines()
    statuses = Counter(json.loads(line)["status"] for line in lines)
    return result, statuses


@pytest.mark.parametrize("caller", CALLERS)
def test_the_first_five_requests_failing_with_one_4xx_stop_every_caller(
    fast_sim: Any, tmp_path: Path, caller: str
) -> None:
    """A 400 on every request (a parameter the endpoint rejects): every row would get it, so the
    run stops after the first five and says why, whichever caller counts them."""
    result, statuses = run(caller, fast_sim.base_url, tmp_path, "[[sim:error=400]]")
    assert result.exit_code == 2, result.output
    assert (
        "the endpoint refused the run: the first 5 requests all failed with HTTP 400; the last said: HTTP 400"
    ) in result.output
    assert set(statuses) <= {"error", "cancelled"}
    assert sum(statuses.values()) < N / 2  # stopped early: most rows left for --resume
    if caller != "workers":  # one request at a time: the fifth answer stopped it (a sixth may be cancelled)
        assert statuses["error"] == 5


@pytest.mark.parametrize("caller", CALLERS)
def test_max_errors_stops_every_caller_with_the_commonest_error(fast_sim: Any, tmp_path: Path, caller: str) -> None:
    result, statuses = run(caller, fast_sim.base_url, tmp_path, "[[sim:error=500]]", "--max-errors", "3")
    assert result.exit_code == 1, result.output
    unit = "inputs" if caller == "embeddings" else "requests"
    assert (
        f"stopped early: 3 {unit} failed (--max-errors 3); the commonest error (3 of 3): InternalServerError: HTTP 500"
    ) in result.output
    assert set(statuses) <= {"error", "cancelled"} and sum(statuses.values()) < N / 2
    if caller != "workers":
        assert statuses["error"] == 3


# --- the rule itself, on hand-made records ---


def rec(status: str = "error", http: int | None = None, error_type: str | None = None, error: str = "") -> Record:
    return Record(id="r", row=0, status=status, http_status=http, error_type=error_type, error=error)


def feed(rule: StopRule, records: list[Record]) -> list[bool]:
    return [rule.see(r) for r in records]


def test_a_refused_key_model_or_redirect_stops_at_once_whatever_came_before() -> None:
    for status in (401, 403, 404, 301, 302, 303, 307, 308):
        rule = StopRule()
        said = feed(rule, [rec("ok", 200), rec(http=500), rec(http=status, error=f"HTTP {status}: no")])
        assert said == [False, False, True] and rule.refused == f"HTTP {status}: no" and rule.abort_reason is None


def test_the_first_five_failing_with_one_plain_4xx_stop_but_a_retryable_or_mixed_one_does_not() -> None:
    rule = StopRule()
    assert feed(rule, [rec(http=400, error=f"HTTP 400: bad {i}") for i in range(5)]) == [False] * 4 + [True]
    assert rule.refused == "the first 5 requests all failed with HTTP 400; the last said: HTTP 400: bad 4"
    for window in (
        [rec(http=429)] * 5,
        [rec(http=408)] * 5,
        [rec(http=400)] * 4 + [rec(http=422)],
        [rec(http=400)] * 4 + [rec("ok", 200)],
        [rec(http=400)] * 4 + [rec("timeout")],
    ):
        rule = StopRule()
        assert not any(feed(rule, window)) and not any(feed(rule, [rec(http=400)] * 5)) and not rule.decided


def test_only_answered_requests_fill_the_window() -> None:
    """Skipped rows, cancelled requests and invalid answers say nothing about the endpoint."""
    rule = StopRule()
    others = [rec("skipped"), rec("cancelled"), rec("invalid_output", 200)]
    assert not any(feed(rule, [rec(http=400), *others, *[rec(http=400)] * 3]))
    assert rule.see(rec(http=400, error="HTTP 400: x")) and rule.refused is not None


def test_max_errors_names_the_commonest_error_with_its_share() -> None:
    rule = StopRule(max_errors=3)
    said = feed(
        rule,
        [
            rec(http=500, error_type="InternalServerError", error="HTTP 500: a"),
            rec("ok", 200),
            rec("timeout", error_type="APITimeoutError", error="slow"),
            rec(http=500, error_type="InternalServerError", error="HTTP 500: b"),
        ],
    )
    assert said == [False, False, False, True]
    assert rule.abort_reason == (
        "3 requests failed (--max-errors 3); the commonest error (2 of 3): InternalServerError: HTTP 500: b"
    )


def test_max_error_rate_waits_for_twenty_finished_and_is_strictly_above() -> None:
    rule = StopRule(max_error_rate=0.5, unit="inputs")
    assert not any(feed(rule, [rec(http=500, error_type="E")] * 10 + [rec("ok", 200)] * 9))  # 10 of 19
    assert not rule.see(rec("ok", 200))  # 10 of 20: not above
    assert rule.see(rec(http=500, error_type="E", error="boom"))  # 11 of 21
    assert rule.abort_reason == (
        "11 of 21 inputs failed, more than --max-error-rate 0.5; the commonest error (11 of 11): E: boom"
    )


def test_one_request_standing_for_several_inputs_counts_them_all_but_fills_one_window_place() -> None:
    """An embeddings batch: its inputs count against --max-errors, but a 400 on the first batch
    of 32 is one request, not five."""
    rule = StopRule(max_errors=40, unit="inputs")
    assert not rule.see(rec(http=400, error_type="BadRequestError", error="HTTP 400: long"), 32)
    assert not rule.decided and rule.failed == 32
    assert rule.see(rec(http=400, error_type="BadRequestError", error="HTTP 400: long"), 8)
    assert rule.abort_reason is not None and rule.abort_reason.startswith("40 inputs failed (--max-errors 40)")


def test_the_first_reason_is_kept_while_later_records_are_still_counted() -> None:
    rule = StopRule(max_errors=1)
    assert rule.see(rec(http=401, error="HTTP 401: bad key"))  # a refusal and the budget: the refusal
    assert (rule.refused, rule.abort_reason) == ("HTTP 401: bad key", None)
    assert not rule.see(rec(http=500, error_type="E")) and rule.failed == 2
    rule.abort("every worker process ended")
    assert (rule.refused, rule.abort_reason) == ("HTTP 401: bad key", None)
    fresh = StopRule()
    fresh.abort("every worker process ended")
    assert fresh.decided and fresh.abort_reason == "every worker process ended"
