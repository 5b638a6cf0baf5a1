"""Which endpoint answers a run, and runs the endpoint refuses: the CLI against real servers."""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import wireservers as ws
from aiohttp import web
from docstext import docs_text
from faultserver import free_port, ok_pieces, row_of
from promptfiles import write_prompts
from rawserver import raw_server, sse
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.endpoint.resolve import OPENAI_BASE_URL, open_endpoint
from batchrun.store.records import read_records


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


async def in_thread(*args: str, env: dict[str, str] | None = None):
    """The CLI runs its own event loop: run it in a thread while this loop serves."""
    return await asyncio.to_thread(invoke, *args, env=env)


def records(out: Path) -> dict[str, object]:
    return {r.id: r for r in read_records(out / "records.jsonl")}


def latest(out: Path) -> dict[str, object]:
    return records(out)


class FirstTimeFails:
    """Rows whose number is even fail (HTTP 500) the first time they are asked, then answer."""

    def __init__(self) -> None:
        self.seen: Counter[int] = Counter()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        i = row_of(await request.read())
        self.seen[i] += 1
        if i % 2 == 0 and self.seen[i] == 1:
            return web.json_response({"error": {"message": "try again"}}, status=500)
        return await sse(request, ok_pieces(i))


# ---------------------------------------------------------------- resume keeps the endpoint


async def test_resume_uses_the_runs_own_endpoint_and_records_each_session(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", [f"question {i}" for i in range(1, 11)])
    server = FirstTimeFails()
    async with raw_server(server.handle) as url:
        first = await in_thread("run", "p.csv", "--base-url", url, "--out", "o", "--retries", "0", "-q")
        assert first.exit_code == 0, first.output
        assert sum(r.status == "ok" for r in records(tmp_path / "o").values()) == 5
        # No --base-url now, and OPENAI_BASE_URL / OPENAI_API_KEY point elsewhere: the run's own endpoint answers.
        elsewhere = {"OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1", "OPENAI_API_KEY": "other-key-0000"}
        again = await in_thread("run", "--resume", "o", "-q", env=elsewhere)
    assert again.exit_code == 0, again.output
    by_id = latest(tmp_path / "o")
    assert all(r.status == "ok" and r.text == f"answer {int(r.id[1:]) + 1} done" for r in by_id.values())
    assert all(server.seen[i] == (2 if i % 2 == 0 else 1) for i in range(1, 11))  # resent rows came here
    assert {r.session for r in by_id.values()} == {1, 2}
    assert all(r.session == (2 if (int(r.id[1:]) + 1) % 2 == 0 else 1) for r in by_id.values())
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert [s["n"] for s in run["sessions"]] == [1, 2]
    assert all(s["endpoint"] == {"kind": "remote", "base_url": url, "model": "raw-model"} for s in run["sessions"])
    assert all(s["started_at"].endswith("+00:00") and s["batchrun_version"] for s in run["sessions"])
    assert run["config"]["base_url"] == url
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["endpoint"] == {"kind": "remote", "base_url": url, "model": "raw-model"}


def test_a_builtin_run_resumes_on_the_builtin_endpoint_even_with_a_key_set(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 3)
    first = invoke("run", "p.csv", "--out", "o", "-q", "--max-tokens", "4")
    assert first.exit_code == 0, first.output
    (tmp_path / "o" / "records.jsonl").write_text("")  # as if nothing had finished
    again = invoke("run", "--resume", "o", "-q", env={"OPENAI_API_KEY": "k-123456789"})
    assert again.exit_code == 0, again.output
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert [s["endpoint"]["kind"] for s in run["sessions"]] == ["builtin", "builtin"]
    assert {r.session for r in records(tmp_path / "o").values()} == {2}


async def test_resume_with_an_explicit_base_url_switches_and_says_so(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 2)
    first = await in_thread("run", "p.csv", "--out", "o", "-q", "--max-tokens", "4")
    assert first.exit_code == 0
    (tmp_path / "o" / "records.jsonl").write_text("")
    async with raw_server(_ok) as url:
        again = await in_thread("run", "--resume", "o", "--base-url", url, "--model", "raw-model", "-q")
    assert again.exit_code == 0, again.output
    assert "differs from session 1" in again.output
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert [s["endpoint"]["kind"] for s in run["sessions"]] == ["builtin", "remote"]


async def _ok(request: web.Request) -> web.StreamResponse:
    return await sse(request, ok_pieces(row_of(await request.read())))


# ---------------------------------------------------------------- which endpoint by default


async def test_a_key_alone_means_openai() -> None:
    said: list[str] = []
    async with open_endpoint(None, "k-123456789", announce=said.append) as endpoint:
        assert endpoint.base_url == OPENAI_BASE_URL and not endpoint.embedded
    assert OPENAI_BASE_URL in said[0]


def test_builtin_by_name_and_a_simulated_run_says_so_everywhere(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 2)
    result = invoke(
        "run",
        "p.csv",
        "--base-url",
        "builtin",
        "--out",
        "o",
        "-q",
        "--max-tokens",
        "4",
        env={"OPENAI_API_KEY": "k-123456789"},
    )
    assert result.exit_code == 0, result.output
    assert "--base-url builtin: using the built-in simulated endpoint" in result.output
    assert "these results come from the built-in simulated endpoint" in result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["endpoint"] == {"kind": "builtin", "base_url": None, "model": "batchrun-sim"}
    for report in ("report.md", "report.html"):
        assert "SIMULATED ENDPOINT" in (tmp_path / "o" / report).read_text()
    assert invoke("report", "o").exit_code == 0  # a rebuild keeps the banner
    assert "SIMULATED ENDPOINT" in (tmp_path / "o" / "report.html").read_text()


def test_a_simulated_bench_says_so(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 2)
    result = invoke("bench", "p.csv", "--out", "b", "-c", "1", "-n", "2", "--no-sync", "--max-tokens", "4")
    assert result.exit_code == 0, result.output
    assert "simulated endpoint" in result.output
    for path in [tmp_path / "b" / "summary.json", *(tmp_path / "b" / "runs").glob("*/summary.json")]:
        assert json.loads(path.read_text())["endpoint"]["kind"] == "builtin", path
    assert "SIMULATED ENDPOINT" in (tmp_path / "b" / "report.md").read_text()


# ---------------------------------------------------------------- preflight


async def test_several_models_and_no_model_stops_before_sending(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 2)
    sent: list[int] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        sent.append(1)
        return await _ok(request)

    async with raw_server(chat, models=ws.several_models) as url:
        result = await in_thread("run", "p.csv", "--base-url", url, "--out", "o")
    assert result.exit_code == 2 and "serves 3 models" in result.output
    assert "gpt-4o, gpt-4o-mini, o3" in result.output and not sent


async def test_no_models_route_is_said_not_passed_silently(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 2)
    async with raw_server(_ok, models=ws.no_models_route) as url:
        result = await in_thread("run", "p.csv", "--base-url", url, "--model", "m", "--out", "o", "-q")
    assert result.exit_code == 0, result.output
    assert "/models answered HTTP 404" in result.output and "not checked before sending" in result.output


async def test_the_preflight_honours_timeout(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 1)
    async with raw_server(_ok, models=ws.slow_models(20.0)) as url:
        result = await in_thread("run", "p.csv", "--base-url", url, "--out", "o", "--timeout", "0.3")
    assert result.exit_code == 2 and "within 0.3s (--timeout)" in result.output


# ---------------------------------------------------------------- refusals stop the run


class Counting:
    def __init__(self, handler) -> None:
        self.handler, self.calls = handler, 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        return await self.handler(request)


@pytest.mark.parametrize(
    "handler, status, says",
    [
        (ws.REFUSED_KEY, "HTTP 401", "Incorrect API key provided"),
        (ws.NO_SUCH_MODEL, "HTTP 404", "The model `gpt-9` does not exist"),
        (
            ws.error(400, "Unsupported parameter: 'max_tokens'"),
            "first 5 requests all failed with HTTP 400",
            "Unsupported parameter",
        ),
    ],
    ids=["401-on-chat", "404-model", "same-400"],
)
async def test_a_refused_run_stops_at_once_exit_2_and_resumes(tmp_path: Path, handler, status, says) -> None:
    write_prompts(tmp_path / "p.csv", 200)
    refusing = Counting(handler)
    async with raw_server(refusing.handle) as url:
        result = await in_thread("run", "p.csv", "--base-url", url, "--out", "o", "-c", "2", "-q")
    assert result.exit_code == 2, result.output
    assert status in result.output and says in result.output and "--resume o" in result.output
    assert refusing.calls <= 8  # stopped, not 200 rows sent
    assert not any(r.status == "ok" for r in records(tmp_path / "o").values())
    async with raw_server(_ok) as url:  # fixed: the rest is resumable
        again = await in_thread("run", "--resume", "o", "--base-url", url, "-q")
    assert again.exit_code == 0, again.output
    by_id = latest(tmp_path / "o")
    assert len(by_id) == 200 and all(r.status == "ok" for r in by_id.values())


# ---------------------------------------------------------------- options that cannot work


@pytest.mark.parametrize(
    "args, says",
    [
        (["--rpm", "nan"], "--rpm must be a finite number"),
        (["--tpm", "inf"], "--tpm must be a finite number"),
        (["--temperature", "nan"], "--temperature must be a finite number"),
        (["--timeout", "inf"], "--timeout must be a finite number"),
        (["--extra-body", '{"top_p": NaN}'], "--extra-body: NaN is not a number JSON allows"),
        (["--max-retry-wait", "0"], "--max-retry-wait must be positive"),
    ],
)
def test_nan_and_infinite_options_are_refused(tmp_path: Path, args: list[str], says: str) -> None:
    write_prompts(tmp_path / "p.csv", 1)
    result = invoke("run", "p.csv", "--out", "o", *args)
    assert result.exit_code == 2 and says in result.output, result.output
    assert "Traceback" not in result.output


def test_a_nan_in_a_batch_api_body_is_a_bad_row_not_invalid_json(tmp_path: Path) -> None:
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": float("nan")},
    }
    (tmp_path / "p.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")  # writes NaN
    result = invoke("run", "p.jsonl", "--out", "o", "-q")
    assert result.exit_code == 2 and "cannot be sent as JSON" in result.output, result.output


def test_an_rpm_that_makes_the_run_take_days_is_warned_about(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 1)  # one row: its header line is not a second one
    result = invoke("run", "p.csv", "--out", "o", "-q", "--rpm", "0.0001", "--max-tokens", "4")
    assert result.exit_code == 0, result.output
    assert "warning: at --rpm 0.0001, about 1 row takes about 6.9 days" in result.output


def _limit_files(soft: int, hard: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def test_concurrency_above_the_open_file_limit(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 3)
    run = [sys.executable, "-m", "batchrun", "run", "p.csv", "-q", "--max-tokens", "4"]
    stuck = subprocess.run(
        [*run, "--out", "a", "-c", "2000"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_files(256, 256),
        check=False,
    )
    assert stuck.returncode == 2 and "ulimit -n 2064" in stuck.stderr and "Traceback" not in stuck.stderr
    raised = subprocess.run(
        [*run, "--out", "b", "-c", "600"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_files(256, 4096),
        check=False,
    )
    assert raised.returncode == 0, raised.stderr
    assert "raised the open-file limit from 256 to 664" in raised.stderr


# ---------------------------------------------------------------- our own bugs surface


def test_an_internal_error_is_logged_warned_and_exits_non_zero(tmp_path: Path, monkeypatch) -> None:
    from batchrun.engine import pool

    real = pool.Pool._attempt

    async def buggy(self, body: bytes, row):
        if b"question 1" in body:
            raise ZeroDivisionError("a bug of ours")
        return await real(self, body, row)

    monkeypatch.setattr(pool.Pool, "_attempt", buggy)
    write_prompts(tmp_path / "p.csv", 3)
    result = invoke("run", "p.csv", "--out", "o", "-q", "--max-tokens", "4")
    assert result.exit_code == 1 and "internal error" in result.output and "internal-errors.log" in result.output
    log = (tmp_path / "o" / "internal-errors.log").read_text()
    assert "ZeroDivisionError: a bug of ours" in log and "Traceback" in log
    by_id = latest(tmp_path / "o")
    assert by_id["q1"].error_type == "InternalError" and by_id["q0"].status == "ok"
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert any("internal error" in w for w in summary["summary"]["warnings"])


def test_records_with_fields_this_version_does_not_know_are_kept(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 3)
    assert invoke("run", "p.csv", "--out", "o", "-q", "--max-tokens", "4").exit_code == 0
    path = tmp_path / "o" / "records.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line["from_the_future"] = {"x": 1}
        for attempt in line["attempt_log"]:
            attempt["server_timing_ms"] = 12
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert invoke("report", "o").exit_code == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["summary"]["counts"]["ok"] == 3


async def test_a_refused_bench_stops_with_exit_2(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 4)
    refusing = Counting(ws.REFUSED_KEY)
    async with raw_server(refusing.handle) as url:
        result = await in_thread(
            "bench", "p.csv", "--base-url", url, "--out", "b", "-c", "1,2,4", "-n", "40", "--no-sync"
        )
    assert result.exit_code == 2 and "HTTP 401" in result.output and "Incorrect API key" in result.output
    assert refusing.calls <= 3  # the first level stopped it


def test_pacing_warnings() -> None:
    from batchrun.engine.capacity import pacing_warnings

    [small] = pacing_warnings(rows=None, charge_tokens=1000, rpm=None, tpm=100)
    assert "--tpm 100 is smaller than one request's token charge (~1000 tokens" in small and "10.0 min" in small
    [slow] = pacing_warnings(rows=100_000, charge_tokens=50, rpm=60, tpm=None)
    assert slow.startswith("at --rpm 60, about 100000 rows take about 1.2 days")
    assert pacing_warnings(rows=1000, charge_tokens=50, rpm=600, tpm=1_000_000) == []


async def test_a_run_through_a_litellm_gateway_records_real_usage_on_every_row(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 40)
    async with raw_server(ws.litellm_usage) as url:
        result = await in_thread("run", "p.csv", "--base-url", url, "--out", "o", "-q", "-c", "8")
    assert result.exit_code == 0, result.output
    by_id = records(tmp_path / "o")
    assert len(by_id) == 40
    assert all(
        r.status == "ok" and not r.tokens_estimated and (r.prompt_tokens, r.completion_tokens) == (11, 3)
        for r in by_id.values()
    )
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["tokens"] == {"prompt": 440, "completion": 120, "estimated_records": 0}
    assert not any("estimated" in w for w in summary["warnings"])


@pytest.mark.parametrize("command", ["run", "bench"])
def test_the_new_options_are_in_help_and_docs(command: str) -> None:
    docs = docs_text()
    help_text = " ".join(invoke(command, "--help", env={"COLUMNS": "200"}).output.split())
    for option in ("--max-retry-wait", "--max-response-bytes"):
        assert option in help_text and f"`{option}" in docs
    assert "'builtin' for the built-in simulated endpoint" in help_text and "`--base-url builtin`" in docs


@pytest.mark.parametrize(
    "url, says",
    [
        ("http://u:pw-HIDDEN-9@host:abc/v1", "is not a valid URL"),
        ("ftp://u:pw-HIDDEN-9@host/v1", "must start with http:// or https://"),
    ],
)
def test_a_bad_base_url_is_refused_without_showing_its_password(tmp_path: Path, url: str, says: str) -> None:
    write_prompts(tmp_path / "p.csv", 1)
    result = invoke("run", "p.csv", "--base-url", url, "--out", "o")
    assert result.exit_code == 2 and says in result.output and "***:***@host" in result.output
    assert "pw-HIDDEN-9" not in result.output and "Traceback" not in result.output


async def test_a_reasoning_model_reports_time_to_first_answer_beside_ttft(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 4)
    async with raw_server(ws.reasoning_then_answer) as url:
        result = await in_thread("run", "p.csv", "--base-url", url, "--out", "o", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["ttfo_s"]["count"] == 4 and summary["ttfo_s"]["p50"] > summary["ttft_s"]["p50"]
    assert "TTFO (first answer)" in (tmp_path / "o" / "report.md").read_text()
    assert all(r.reasoning_text == "Let me think." and r.text == "Yes." for r in records(tmp_path / "o").values())
