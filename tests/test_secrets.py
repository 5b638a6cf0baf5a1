"""The API key never reaches a file batchrun writes or a line it prints: in success, in every
failure kind, and against servers that echo the key back."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from faultserver import free_port, row_of
from promptfiles import write_prompts
from rawserver import DONE, chunk, raw_server, sse
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess

# Not sk- shaped on purpose: the generic `sk-…` pattern cannot hide it, only real redaction can.
KEY = "hrd-SECRET-7d1e9b0c4a2f6e38d5b1"


def invoke(*args: str, key: str | None = KEY):
    env = {"OPENAI_API_KEY": key} if key else None
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def output_of(result) -> str:
    return result.output + (result.stderr if result.stderr_bytes is not None else "")


def assert_key_nowhere(root: Path, *printed: str, min_files: int = 0) -> list[Path]:
    """Every file under `root` and every printed text is free of the key."""
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) >= min_files, files
    for path in files:
        assert KEY.encode() not in path.read_bytes(), f"the key is in {path}"
    for text in printed:
        assert KEY not in text, text
    return files


def statuses(out: Path) -> dict[str, str]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return {r["id"]: r["status"] for r in csv.DictReader(f)}


EVERY_FAILURE = [
    "question 0",
    "question 1",
    "[[sim:error=500]] question 2",
    "[[sim:error=502]] question 3",
    "[[sim:error=503]] question 4",
    "[[sim:error=429]] question 5",
    "[[sim:error=422]] question 6",
    "[[sim:error=400]] question 7",
    "[[sim:cut=2]] question 8",
    "[[sim:malformed]] question 9",
    "[[sim:stall=1]] question 10",
]
EXPECTED = {"q0": "ok", "q1": "ok", "q10": "timeout", **{f"q{i}": "error" for i in range(2, 10)}}

SECRETS_FILES = ("records.jsonl", "results.csv", "summary.json", "run.json", "report.md", "report.html")


def test_success_and_every_failure_kind_in_a_real_process(tmp_path: Path) -> None:
    """A real `python -m batchrun run` (progress bar on), then `batchrun report`: the key is
    authenticated with, and found in no file and no output."""
    write_prompts(tmp_path / "p.csv", EVERY_FAILURE)
    with SimProcess(SimConfig(fast=True, api_key=KEY, stall_s=30, retry_after_s=0.01)) as sim:
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "batchrun",
                "run",
                "p.csv",
                "--base-url",
                sim.base_url,
                "--out",
                "o",
                "--retries",
                "1",
                "--timeout",
                "1",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        stats = sim.stats()
    assert proc.returncode == 0, proc.stderr
    assert statuses(tmp_path / "o") == EXPECTED
    assert stats["responses"].get("401", 0) == 0  # the key worked
    rebuilt = invoke("report", "o")
    assert rebuilt.exit_code == 0, rebuilt.output
    files = assert_key_nowhere(tmp_path, proc.stdout, proc.stderr, output_of(rebuilt))
    assert {p.name for p in files} >= set(SECRETS_FILES)


def test_wrong_key_is_rejected_without_showing_it(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", ["question 0"])
    with SimProcess(SimConfig(fast=True, api_key="the-right-key-000000")) as sim:
        result = invoke("run", "p.csv", "--base-url", sim.base_url, "--out", "o")
    assert result.exit_code == 2 and "rejected the API key (HTTP 401: " in result.output
    assert_key_nowhere(tmp_path, output_of(result))


def test_unreachable_endpoint_error_does_not_show_the_key(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", ["question 0"])
    result = invoke("run", "p.csv", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--out", "o")
    assert result.exit_code == 2 and "cannot connect" in result.output
    assert_key_nowhere(tmp_path, output_of(result))


@pytest.mark.parametrize("env_key", [KEY, None], ids=["same-key-in-env", "key-only-in-url"])
def test_key_in_the_base_url_query_is_never_written(tmp_path: Path, env_key: str | None) -> None:
    """Some gateways take the key as `?api_key=`: it lands in run.json, the summary's settings
    and the report unless the URL is redacted everywhere it is shown."""
    write_prompts(tmp_path / "p.csv", ["question 0", "question 1"])
    down = invoke(
        "run", "p.csv", "--base-url", f"http://127.0.0.1:{free_port()}/v1?api_key={KEY}", "--out", "down", key=env_key
    )
    assert down.exit_code == 2 and "api_key=***" in down.output
    with SimProcess(SimConfig(fast=True)) as sim:
        up = invoke(
            "run",
            "p.csv",
            "--base-url",
            f"{sim.base_url}?api_key={KEY}",
            "--out",
            "up",
            "--retries",
            "0",
            "--model",
            "m",
            key=env_key,
        )
    assert up.exit_code == 0, up.output
    assert set(statuses(tmp_path / "up").values()) <= {"ok", "error"}
    files = assert_key_nowhere(tmp_path, output_of(down), output_of(up))
    assert {p.name for p in files} >= set(SECRETS_FILES)


async def echoing_handler(request: web.Request) -> web.StreamResponse:
    """Echoes the Authorization header back, a different way per row."""
    auth = request.headers.get("Authorization", "")
    key = auth.removeprefix("Bearer ")
    i = row_of(await request.read())
    kind = i % 6
    if kind == 0:  # (a 401/403 stops the run: see test_a_refused_key_echoed_back_stops_the_run_masked)
        return web.json_response(
            {"error": {"message": f"invalid header Authorization: {auth}", "type": "invalid_request_error"}}, status=400
        )
    if kind == 1:
        return web.Response(status=500, text=f"upstream said: key={key} auth={auth}")
    if kind == 2:
        return web.Response(
            status=502, content_type="text/html", text=f"<html><body><h1>502</h1><pre>{auth}\n{key}</pre></body></html>"
        )
    if kind == 3:
        body = json.dumps({"error": {"message": f"stream failed for {key}", "code": key}})
        return await sse(request, [chunk("", role="assistant"), chunk("x"), f"data: {body}\n\n".encode()])
    if kind == 4:
        return await sse(request, [chunk("x"), f"data: {{not json {key}\n\n".encode(), DONE])
    return web.json_response({"error": {"message": None, "code": f"{key}"}}, status=422)


async def _serve_echo_and_run(args: list[str]) -> object:
    """The echoing server on this loop; the CLI (which runs its own loop) in a thread."""
    async with raw_server(echoing_handler) as url:
        return await asyncio.to_thread(invoke, *args, "--base-url", url)


async def test_a_server_echoing_the_authorization_header_is_redacted(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", [f"question {i}" for i in range(12)])
    result = await _serve_echo_and_run(["run", "p.csv", "--out", "o", "--retries", "0"])
    assert result.exit_code == 0, result.output
    assert set(statuses(tmp_path / "o").values()) == {"error"}
    with open(tmp_path / "o" / "records.jsonl", encoding="utf-8") as f:
        errors = [json.loads(line)["error"] for line in f]
    assert all("***" in e for e in errors)  # the echo was there, and masked
    assert_key_nowhere(tmp_path, output_of(result), min_files=6)


def test_bench_output_never_holds_the_key(tmp_path: Path) -> None:
    """`bench` (the sync SDK baseline and the async pool) against an authenticated endpoint
    with failing rows."""
    write_prompts(tmp_path / "p.csv", EVERY_FAILURE[:10])
    with SimProcess(SimConfig(fast=True, api_key=KEY, retry_after_s=0.01)) as sim:
        result = invoke(
            "bench", "p.csv", "--base-url", sim.base_url, "--out", "b", "-c", "1,4", "-n", "10", "--max-run-time", "5"
        )
    assert result.exit_code == 0, result.output
    files = assert_key_nowhere(tmp_path, output_of(result))
    assert any(p.name == "records.jsonl" for p in files) and any(p.name == "report.html" for p in files)


async def test_bench_against_a_server_echoing_the_key(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", [f"question {i}" for i in range(6)])
    result = await _serve_echo_and_run(["bench", "p.csv", "--out", "b", "-c", "2", "-n", "6", "--model", "m"])
    assert result.exit_code == 0, result.output
    records = [
        json.loads(line)
        for p in (tmp_path / "b").rglob("records.jsonl")
        for line in p.read_text(encoding="utf-8").splitlines()
    ]
    assert records and all(r["status"] != "ok" for r in records)
    # The SDK words some failures without the body ("Error code: 500"); the rest show the masked echo.
    assert sum("***" in r["error"] for r in records) >= len(records) // 2
    assert_key_nowhere(tmp_path, output_of(result))


# ------------------------------------------------------------ credentials in the URL, Basic auth,
# redaction before truncation, refusals and resume: one scan over every file and printed line.

PASSWORD = "pw-HIDDEN-31f0c9e2b7a4"


def credential_echo(seen: list[str]):
    """Behind Basic auth; echoes what it got, a different way per row, past the 500-char cut too."""
    import base64

    async def handler(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        seen.append(auth)
        decoded = base64.b64decode(auth.removeprefix("Basic ")).decode() if auth.startswith("Basic ") else ""
        i = row_of(await request.read())
        kind = i % 5
        if kind == 0:
            return await sse(request, [chunk("fine"), chunk(finish="stop"), DONE])
        if kind == 1:  # the secret starts at character ~490: a cut at 500 before redaction leaks its start
            return web.Response(status=500, text="x" * 480 + f" key={KEY} pass={PASSWORD} {decoded}")
        if kind == 2:
            return web.Response(
                status=502,
                content_type="text/html",
                text=f"<html><body><h1>502</h1><p>{auth}</p><!-- {KEY} --></body></html>",
            )
        if kind == 3:
            return web.json_response({"error": {"message": f"bad: Authorization: {auth} ({decoded})"}}, status=400)
        body = json.dumps({"error": {"message": f"upstream rejected {decoded} / {PASSWORD}"}})
        return await sse(request, [chunk("x"), f"data: {body}\n\n".encode()])

    return handler


def assert_no_secret(root: Path, *printed: str) -> None:
    for secret in (KEY, PASSWORD, KEY[:12], PASSWORD[:12]):
        for path in (p for p in root.rglob("*") if p.is_file()):
            assert secret.encode() not in path.read_bytes(), f"{secret!r} is in {path}"
        for text in printed:
            assert secret not in text, text


async def test_url_credentials_with_a_key_set_work_and_no_secret_leaks_anywhere(tmp_path: Path) -> None:
    import base64

    write_prompts(tmp_path / "p.csv", [f"question {i}" for i in range(10)])
    seen: list[str] = []
    async with raw_server(credential_echo(seen)) as url:
        with_creds = url.replace("http://", f"http://alice:{PASSWORD}@")
        result = await asyncio.to_thread(
            invoke, "run", "p.csv", "--base-url", with_creds, "--out", "o", "--retries", "0"
        )
        assert result.exit_code == 0, result.output
        token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        assert seen and all(a == f"Basic {token}" for a in seen)  # the URL's credentials were used
        run_json = json.loads((tmp_path / "o" / "run.json").read_text())
        assert run_json["sessions"][0]["endpoint"]["base_url"] == url.replace("http://", "http://***:***@")
        # Resume: the saved URL has no credentials, so they must come from OPENAI_BASE_URL again.
        refused = await asyncio.to_thread(invoke, "run", "--resume", "o")
        assert refused.exit_code == 2 and "credentials are not kept" in refused.output
        resumed = await asyncio.to_thread(
            lambda: CliRunner().invoke(
                app,
                ["run", "--resume", "o", "--retries", "0"],
                catch_exceptions=False,
                env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": with_creds},
            )
        )
        assert resumed.exit_code == 0, resumed.output
    assert len(json.loads((tmp_path / "o" / "run.json").read_text())["sessions"]) == 2
    rebuilt = invoke("report", "o")
    errors = [json.loads(line)["error"] for line in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    assert sum("***" in (e or "") for e in errors) >= 6  # the echoes were there, masked
    assert_no_secret(tmp_path, output_of(result), output_of(refused), output_of(resumed), output_of(rebuilt))


async def test_a_refused_key_echoed_back_stops_the_run_masked(tmp_path: Path) -> None:
    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        auth = request.headers.get("Authorization", "")
        return web.json_response(
            {"error": {"message": "x" * 470 + f" Incorrect API key provided: {auth}", "code": "invalid_api_key"}},
            status=401,
        )

    write_prompts(tmp_path / "p.csv", 30)
    async with raw_server(refuse) as url:
        result = await asyncio.to_thread(invoke, "run", "p.csv", "--base-url", url, "--out", "o", "-c", "2")
    assert result.exit_code == 2 and "HTTP 401: xxx" in result.output and "--resume o" in result.output
    assert_no_secret(tmp_path, output_of(result))


# ------------------------------------------------------------ one redaction pass: a provider that
# quotes every credential it got (the key, the URL's password, a `?api_key=` query value) into
# error bodies, stream error events, answers and headers (online), and into job errors, error-file
# and output lines (batch). Every file of the run directory is scanned.

QUERY_KEY = "qk-HIDDEN-5e4d3c2b1a09f8"
EVERY_SECRET = (KEY, PASSWORD, QUERY_KEY, KEY[:12], PASSWORD[:12], QUERY_KEY[:12])


def assert_no_secret_anywhere(root: Path, *printed: str, min_files: int = 0) -> list[Path]:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) >= min_files, files
    for path in files:
        data = path.read_bytes()
        for secret in EVERY_SECRET:
            assert secret.encode() not in data, f"{secret!r} is in {path}"
    for text in printed:
        for secret in EVERY_SECRET:
            assert secret not in text, text
    return files


def quoted(request: web.Request) -> str:
    """Every credential the request came with, bare and decoded, as a careless provider quotes them."""
    import base64

    auth = request.headers.get("Authorization", "")
    token = auth.split(" ", 1)[-1]
    decoded = base64.b64decode(token).decode() if auth.startswith("Basic ") else token
    return f"Authorization: {auth} = {decoded} at {request.path_qs} (key {request.query.get('api_key')})"


async def quoting_handler(request: web.Request) -> web.StreamResponse:
    said = quoted(request)
    i = row_of(await request.read())
    kind = i % 6
    if kind == 0:
        return web.json_response({"error": {"message": f"bad request: {said}"}}, status=400)
    if kind == 1:
        return web.Response(status=500, text=f"upstream said {said}")
    if kind == 2:
        return web.Response(status=502, content_type="text/html", text=f"<html><pre>{said}</pre></html>")
    if kind == 3:
        body = json.dumps({"error": {"message": f"stream failed: {said}", "code": "x"}})
        return await sse(request, [chunk("", role="assistant"), chunk("x"), f"data: {body}\n\n".encode()])
    if kind == 4:
        return web.json_response({"error": {"message": None, "code": said}}, status=422)
    key = request.query.get("api_key") or ""
    token = request.headers.get("Authorization", "").split(" ", 1)[-1]
    # Rate-limit headers quoting them: an unreadable one is named in the summary (cut to 40 characters).
    headers = {
        "x-request-id": f"req-{key}",
        "x-ratelimit-limit-requests": f"{'n' * 30}{token}",
        "x-ratelimit-remaining-requests": f"{'n' * 30}{key}",
        "x-ratelimit-reset-requests": token,
    }
    return await sse(
        request,
        [chunk("", role="assistant"), chunk(f"the answer, {said}"), chunk(finish="stop"), DONE],
        headers=headers,
    )


@pytest.mark.parametrize("auth", ["key", "url-credentials"])
async def test_online_no_credential_reaches_any_file_of_the_run_dir(tmp_path: Path, auth: str) -> None:
    """Regression: an answer or x-request-id quoting the key was stored as is, and a `?api_key=`
    value quoted without its name (not `api_key=...`) was masked nowhere."""
    write_prompts(tmp_path / "p.csv", [f"question {i}" for i in range(12)])
    async with raw_server(quoting_handler) as url:
        base = f"{url}?api_key={QUERY_KEY}"
        if auth == "url-credentials":
            base = base.replace("http://", f"http://alice:{PASSWORD}@")
        result = await asyncio.to_thread(invoke, "run", "p.csv", "--base-url", base, "--out", "o", "--retries", "0")
    assert result.exit_code == 0, result.output
    assert sorted(statuses(tmp_path / "o").values()).count("ok") == 2
    texts = [json.loads(line)["text"] for line in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    assert sum(t.startswith("the answer, ") and "***" in t for t in texts) == 2  # the answer kept, masked
    rebuilt = invoke("report", "o")
    assert_no_secret_anywhere(tmp_path, output_of(result), output_of(rebuilt), min_files=6)


@pytest.mark.parametrize(
    "auth, faults",
    [("key", {}), ("url-credentials", {"batch_failure_rate": 1.0}), ("url-credentials", {"batch_expiry_rate": 1.0})],
    ids=["key", "failed-job", "expired-job"],
)
def test_batch_no_credential_reaches_any_file_of_the_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: str, faults: dict[str, float]
) -> None:
    """Regression: a job's errors[].message or an error-file message quoting the key was written
    unredacted into records.jsonl, results.csv, run.json, both reports and the saved errors file."""
    from batchrun.batchapi import flow

    monkeypatch.setattr(flow, "POLL_FIRST_S", 0.05)
    write_prompts(
        tmp_path / "p.csv",
        [
            "question 0",
            "[[sim:error=500]] question 1",
            "[[sim:error=400]] question 2",
            "[[sim:batch_line=not_json]] question 3",
            "question 4",
        ],
    )
    config = SimConfig(
        fast=True, batch_delay_s=0.2, batch_echo_auth=True, api_key=KEY if auth == "key" else None, **faults
    )
    with SimProcess(config) as sim:
        base = f"{sim.base_url}?api_key={QUERY_KEY}"
        if auth == "url-credentials":
            base = base.replace("http://", f"http://alice:{PASSWORD}@")
        result = invoke("run", "p.csv", "--mode", "batch", "--base-url", base, "--out", "o")
        status = invoke("batch", "status", "o", "--base-url", base)
    assert result.exit_code == 0, result.output
    assert status.exit_code == 0, status.output
    errors = [json.loads(line)["error"] or "" for line in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    assert sum("***" in e for e in errors) >= 2  # the quotes were there, masked
    run_json = json.loads((tmp_path / "o" / "run.json").read_text())
    assert "***" in run_json["batch"]["jobs"][0]["errors"][0]["message"]
    rebuilt = invoke("report", "o")
    files = assert_no_secret_anywhere(tmp_path, output_of(result), output_of(status), output_of(rebuilt), min_files=8)
    kept = [p for p in files if p.name.endswith((".output.jsonl", ".errors.jsonl"))]
    assert kept or faults.get("batch_failure_rate")  # a failed job has no files
