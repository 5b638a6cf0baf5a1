"""Several endpoints: balancing and health (pure, with a scripted clock), and a run over two
built-in endpoints, one of them failing, with figures per endpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.endpoint.attempt import (
    CONNECTION_ERROR,
    EMPTY_RESPONSE,
    INCOMPLETE_STREAM,
    MALFORMED_CHUNK,
    RESPONSE_TOO_LARGE,
    STREAM_ERROR,
    TIMEOUT_ERROR,
    AttemptResult,
)
from batchrun.endpoint.multi import COOLDOWN_S, FAIL_LIMIT, Member, MultiClient
from batchrun.engine.limits import RateLimits
from batchrun.sim import SimConfig, SimProcess


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def members(n: int) -> list[Member]:
    return [Member(client=None, label=f"e{i}", limits=RateLimits()) for i in range(n)]  # type: ignore[arg-type]


def test_round_robin_least_loaded_and_cooldown() -> None:
    clock = Clock()
    rr = MultiClient(members(3), "rr", clock)
    assert [rr.pick().label for _ in range(4)] == ["e0", "e1", "e2", "e0"]
    least = MultiClient(members(3), "least", clock)
    least.members[0].in_flight, least.members[1].in_flight, least.members[2].in_flight = 2, 0, 1
    assert least.pick().label == "e1"
    down = rr.members[1]
    failed = AttemptResult(sent=0.0)
    failed.fail("error", CONNECTION_ERROR, "refused")
    for _ in range(FAIL_LIMIT):
        rr._health(down, failed)
    assert {rr.pick().label for _ in range(4)} == {"e0", "e2"}  # e1 rests
    clock.now += COOLDOWN_S
    assert "e1" in {rr.pick().label for _ in range(3)}  # and comes back


def failed(http_status: int | None, error_type: str, status: str = "error") -> AttemptResult:
    result = AttemptResult(sent=0.0, http_status=http_status)
    return result.fail(status, error_type, "scripted failure")


@pytest.mark.parametrize(
    "result",
    [
        failed(None, CONNECTION_ERROR),
        failed(500, "InternalServerError"),
        failed(503, "InternalServerError"),
        failed(200, MALFORMED_CHUNK),
        failed(200, INCOMPLETE_STREAM),
        failed(200, STREAM_ERROR),
    ],
    ids=lambda r: f"{r.http_status}-{r.error_type}",
)
def test_a_broken_answer_counts_against_health_like_a_5xx(result: AttemptResult) -> None:
    multi = MultiClient(members(2), "rr", Clock())
    for _ in range(FAIL_LIMIT):
        multi._health(multi.members[1], result)
    assert {multi.pick().label for _ in range(4)} == {"e0"}


@pytest.mark.parametrize(
    "result",
    [
        failed(429, "RateLimitError"),
        failed(400, "BadRequestError"),
        failed(200, EMPTY_RESPONSE),
        failed(200, RESPONSE_TOO_LARGE),
        failed(None, TIMEOUT_ERROR, "timeout"),
    ],
    ids=lambda r: f"{r.http_status}-{r.error_type}",
)
def test_failures_that_are_not_the_endpoints_fault_leave_it_healthy(result: AttemptResult) -> None:
    multi = MultiClient(members(2), "rr", Clock())
    for _ in range(FAIL_LIMIT * 2):
        multi._health(multi.members[1], result)
    assert [multi.pick().label for _ in range(2)] == ["e0", "e1"]


@pytest.mark.parametrize("balance", ["rr", "least"])
def test_a_retry_goes_to_a_healthy_endpoint_that_has_not_failed_its_row(balance: str) -> None:
    clock = Clock()
    two = MultiClient(members(2), balance, clock)
    two.members[0].in_flight = 5  # `least` alone would take e1
    assert two.pick().label == ("e0" if balance == "rr" else "e1")
    assert two.pick(avoid=["e1"]).label == "e0"  # even when it is e1's turn / e1 is least loaded
    assert two.pick(avoid=["e0"]).label == "e1"
    three = MultiClient(members(3), balance, clock)
    three.members[2].in_flight = 5
    assert three.pick(avoid=["e0", "e1"]).label == "e2"  # the one that has not failed it yet
    assert three.pick(avoid=["e1", "e2", "e0"]).label != "e0"  # all have: not the last to fail it
    three.members[1].down_until = clock.now + COOLDOWN_S
    assert three.pick(avoid=["e0", "e2"]).label == "e0"  # e1 rests: a healthy one, not the last
    for member in three.members:
        member.down_until = clock.now + COOLDOWN_S
    three.members[0].down_until -= 1  # all rest; e0 failed first but failed this row last
    assert three.pick(avoid=["e0"]).label == "e1"


@pytest.mark.parametrize("balance", ["rr", "least"])
def test_one_malformed_endpoint_loses_no_row_even_with_one_retry(tmp_path: Path, balance: str) -> None:
    """Every answer of `bad` is a 200 whose stream carries a line that is not JSON: each row it
    fails is retried on `good` (and `bad` soon rests), so none is lost even with --retries 1."""
    n = 120
    write_prompts(tmp_path / "p.csv", n)
    timing = {"fixed_ttft_s": 0.005, "fixed_itl_s": 0.002, "output_tokens": 8, "seed": 20}
    with SimProcess(SimConfig(**timing)) as good, SimProcess(SimConfig(**timing, malformed_rate=1.0)) as bad:
        result = CliRunner().invoke(
            app,
            [
                "run",
                "p.csv",
                "--base-url",
                good.base_url,
                "--base-url",
                bad.base_url,
                "--balance",
                balance,
                "--retries",
                "1",
                "--max-retry-wait",
                "0.01",
                "-c",
                "16",
                "--out",
                "o",
                "-q",
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        malformed = bad.stats()["faults"]["malformed"]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert malformed >= 1  # the bad one did fail rows
    assert summary["counts"]["ok"] == n and summary["counts"]["error"] == 0
    assert summary["by_endpoint"][good.base_url]["counts"]["ok"] == n


def test_run_over_two_endpoints_fails_over_and_reports_each(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 12)
    with SimProcess(SimConfig(fast=True)) as good, SimProcess(SimConfig(fast=True, error_500_rate=1.0)) as bad:
        result = CliRunner().invoke(
            app,
            [
                "run",
                "p.csv",
                "--base-url",
                good.base_url,
                "--base-url",
                bad.base_url,
                "--retries",
                "2",
                "-c",
                "1",
                "--out",
                "o",
                "-q",
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        bad_500 = bad.stats()["responses"].get("500", 0)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["counts"]["ok"] == 12  # every failed try went on to the good one
    assert bad_500 == FAIL_LIMIT  # then the bad one rested
    by = summary["by_endpoint"]
    assert list(by) == [good.base_url] and by[good.base_url]["counts"]["ok"] == 12


def test_endpoint_labels_carry_no_password_or_key() -> None:
    from batchrun.config import RunConfig
    from batchrun.redact import public_url

    url = "http://bob:hunter2@127.0.0.1:8000/v1?api_key=sk-abcdef0123456789"
    assert public_url(url) == "http://***:***@127.0.0.1:8000/v1?api_key=***"  # as Endpoint.display_url shows it
    config = RunConfig.of(synthetic="prompt_tokens=5,output_tokens=5", base_url="http://a/v1", extra_base_urls=(url,))
    assert "hunter2" not in str(config.public_dict()) and "sk-abcdef" not in str(config.public_dict())


@pytest.mark.parametrize(
    "scale",
    [
        ["--workers", "2"],
        pytest.param(
            ["--ray"], marks=pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
        ),
    ],
)
def test_workers_and_ray_refuse_several_endpoints_rather_than_route_without_health(
    tmp_path: Path, scale: list[str]
) -> None:
    """Health and retry routing live in the one process's MultiClient: spread over processes, each
    would judge the endpoints alone, so --workers N and --ray refuse a second --base-url (exit 2)."""
    write_prompts(tmp_path / "p.csv", 2)
    result = CliRunner().invoke(
        app,
        ["run", "p.csv", "--base-url", "http://127.0.0.1:9/v1", "--base-url", "http://127.0.0.1:10/v1", *scale, "-q"],
    )
    assert result.exit_code == 2 and "a second --base-url" in result.output, result.output
