"""`batchrun run` with learned limits and --concurrency auto, end to end through the CLI against
the built-in endpoint in a child process: what the console, summary.json and the reports say."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from aiohttp import web
from docstext import docs_text
from promptfiles import write_prompts
from rawserver import DONE, chunk, raw_server, sse, usage_chunk
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess


@pytest.fixture(scope="module")
def limited_sim():
    with SimProcess(
        SimConfig(fixed_ttft_s=0.005, fixed_itl_s=0.002, output_tokens=8, rpm=60_000, tpm=5_000_000)
    ) as sim:
        yield sim


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_run_states_the_limits_seen_and_recommends_flags(tmp_path: Path, limited_sim: SimProcess) -> None:
    prompts = write_prompts(tmp_path / "p.csv", 30)
    result = invoke("run", str(prompts), "--base-url", limited_sim.base_url, "--out", "out", "-q", "--max-tokens", "16")
    assert result.exit_code == 0, result.output
    assert "provider (openai headers): 60,000 requests/min, 5,000,000 tokens/min" in result.output
    assert "recommended: --rpm 60000 --tpm 5000000" in result.output
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())["summary"]["rate_limits"]
    assert doc["paced"] == {"rpm": 60_000, "tpm": 5_000_000}  # --rpm auto is the default
    assert doc["rate_limited"] == 0 and doc["attempts"] == 30
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Rate limits and concurrency" in report and "60,000 requests/min" in report


def test_user_flags_win_and_off_turns_learning_off(tmp_path: Path, limited_sim: SimProcess) -> None:
    prompts = write_prompts(tmp_path / "p.csv", 10)
    result = invoke(
        "run", str(prompts), "--base-url", limited_sim.base_url, "--out", "out", "-q", "--rpm", "120000", "--tpm", "off"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())["summary"]["rate_limits"]
    assert doc["paced"] == {"rpm": 120_000, "tpm": None}
    assert "--rpm 120000 is above the provider's announced 60,000 per minute" in result.output


def test_concurrency_auto_is_recorded_plotted_and_recommended(tmp_path: Path, limited_sim: SimProcess) -> None:
    prompts = write_prompts(tmp_path / "p.csv", 80)
    result = invoke(
        "run",
        str(prompts),
        "--base-url",
        limited_sim.base_url,
        "--out",
        "out",
        "-q",
        "--concurrency",
        "auto",
        "--max-tokens",
        "8",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["summary"]
    conc = summary["concurrency"]
    assert conc["auto"] and conc["history"][0][1] == 4 and len(conc["history"]) > 1
    assert conc["settled"] >= 1 and f"recommended -c {conc['settled']}" in result.output
    assert summary["counts"]["ok"] == 80
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Concurrency over time" in html or "concurrency over time" in html
    # `batchrun report` rebuilds from the files and keeps what the pool learned.
    assert invoke("report", str(tmp_path / "out")).exit_code == 0
    again = json.loads((tmp_path / "out" / "summary.json").read_text())["summary"]
    assert again["concurrency"] == conc and again["rate_limits"] == summary["rate_limits"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rpm", "lots"], "--rpm takes a number per minute, 'auto' or 'off'"),
        (["--tpm", "-5"], "--tpm must be a positive number"),
        (["--concurrency", "many"], "--concurrency takes a whole number or 'auto'"),
    ],
)
def test_bad_limit_values_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    prompts = write_prompts(tmp_path / "p.csv", 1)
    result = CliRunner().invoke(app, ["run", str(prompts), *args])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize(
    "command, options",
    [
        ("run", ("--concurrency", "--rpm", "--tpm", "--slo")),
        ("bench", ("--find-max", "--rpm", "--tpm")),
        ("serve", ("--ratelimit-headers",)),
    ],
)
def test_the_new_options_are_in_help_and_docs(command: str, options: tuple[str, ...]) -> None:
    docs = docs_text()
    help_text = " ".join(CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output.split())
    for option in options:
        assert option in help_text and f"`{option}" in docs
    if command == "run":
        assert "or auto:" in help_text and "auto: the limit the provider's rate-limit headers announce" in help_text


ABSURD = {
    "x-ratelimit-limit-requests": "1e300",
    "x-ratelimit-remaining-requests": "1e300",
    "x-ratelimit-limit-tokens": "40000",
    "x-ratelimit-remaining-tokens": "39000",
    "x-ratelimit-reset-tokens": "1e300",
}


async def test_absurd_header_figures_are_ignored_with_one_warning_and_never_printed(tmp_path: Path) -> None:
    """`x-ratelimit-limit-requests: 1e300` gave a 300-digit --rpm advice on the console, in
    summary.json and in both reports. Each absurd figure is now one warning (per header), and the
    sane ones are still used."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return await sse(
            request,
            [chunk("", role="assistant"), chunk("hi"), chunk(finish="stop"), usage_chunk(3, 1), DONE],
            headers=ABSURD,
        )

    write_prompts(tmp_path / "p.csv", 12)
    async with raw_server(handler) as url:
        result = await asyncio.to_thread(invoke, "run", "p.csv", "--base-url", url, "--out", "out", "-c", "3")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    texts = {
        "console": result.output,
        **{name: (out / name).read_text(encoding="utf-8") for name in ("summary.json", "report.md", "report.html")},
    }
    for where, text in texts.items():
        assert not re.search(r"(?<![\w.])\d[\d,]{15,}(?![\w.])", text), where  # no 300-digit figure
    warnings = [line for line in result.output.splitlines() if line.startswith("batchrun: ignored a rate-limit header")]
    assert len(warnings) == 3, warnings  # limit, remaining and reset: once each, 12 responses
    assert "x-ratelimit-limit-requests: 1e+300 is out of range" in warnings[0]
    limits = json.loads(texts["summary.json"])["summary"]["rate_limits"]
    assert limits["recommend"] == {"rpm": None, "tpm": 40_000} and limits["paced"]["rpm"] is None
    assert limits["provider"]["requests_per_min"] is None and limits["provider"]["lowest_requests_left"] is None
    assert "recommended: --tpm 40000" in result.output
