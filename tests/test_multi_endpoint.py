"""Several endpoints: balancing and health (pure, with a scripted clock), and a run over two
built-in endpoints, one of them failing, with figures per endpoint."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.endpoint.client import CONNECTION_ERROR, AttemptResult
from batchrun.endpoint.multi import COOLDOWN_S, FAIL_LIMIT, Member, MultiClient
from batchrun.engine.limits import RateLimits
from batchrun.sim import SimConfig, SimProcess
from promptfiles import write_prompts


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
    assert {rr.pick().label for _ in range(4)} == {"e0", "e2"}          # e1 rests
    clock.now += COOLDOWN_S
    assert "e1" in {rr.pick().label for _ in range(3)}                  # and comes back


def test_run_over_two_endpoints_fails_over_and_reports_each(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 12)
    with SimProcess(SimConfig(fast=True)) as good, SimProcess(SimConfig(fast=True, error_500_rate=1.0)) as bad:
        result = CliRunner().invoke(app, ["run", "p.csv", "--base-url", good.base_url, "--base-url", bad.base_url,
                                          "--retries", "2", "-c", "1", "--out", "o", "-q"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        bad_500 = bad.stats()["responses"].get("500", 0)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["counts"]["ok"] == 12                                # every failed try went on to the good one
    assert bad_500 == FAIL_LIMIT                                        # then the bad one rested
    by = summary["by_endpoint"]
    assert list(by) == [good.base_url] and by[good.base_url]["counts"]["ok"] == 12


def test_endpoint_labels_carry_no_password_or_key() -> None:
    from batchrun.config import RunConfig
    from batchrun.endpoint.multi import public_url

    url = "http://bob:hunter2@127.0.0.1:8000/v1?api_key=sk-abcdef0123456789"
    assert public_url(url) == "http://***:***@127.0.0.1:8000/v1?api_key=***"   # as Endpoint.display_url shows it
    config = RunConfig(synthetic="prompt_tokens=5,output_tokens=5", base_url="http://a/v1", extra_base_urls=[url])
    assert "hunter2" not in str(config.public_dict()) and "sk-abcdef" not in str(config.public_dict())
