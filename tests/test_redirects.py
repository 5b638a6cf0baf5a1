"""A redirect on a POST is never followed: a client that follows a 301/302 sends a GET, and the
answer to that GET was recorded ok for a prompt it never saw. The row fails, is not retried,
names where the redirect points (host and port only: never the Location's credentials, path or
signed query) and says what to do; the run stops, since every row would get the same."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from pathlib import Path

import pytest
from aiohttp import web
from promptfiles import write_prompts
from rawserver import raw_server
from typer.testing import CliRunner
from wireservers import MOVED_TO, moved_answer, redirect

from batchrun.batchapi.api import BatchApi, BatchApiError
from batchrun.bench.sweep import bench_jobs
from batchrun.bench.sync import run_sync
from batchrun.cli import app
from batchrun.config import RunConfig
from batchrun.endpoint.transport import Endpoint

HIDDEN = ("pa55word", "mover", "SIGNED-TOKEN", "/v2", "sig=")
WHAT_TO_DO = "set --base-url to the final URL"


def _routes(status: int, log: list[str]) -> list[web.RouteDef]:
    """Every POST batchrun sends redirected; the target answers anything, as a moved server might."""
    moved = redirect(status, log)
    return [
        web.post("/v1/completions", moved),
        web.post("/v1/embeddings", moved),
        web.post("/v1/files", moved),
        web.route("*", MOVED_TO, moved_answer(log)),
    ]


def _results(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _assert_names_only_host_and_port(message: str, url: str) -> None:
    host_port = url.split("//")[1].split("/")[0]
    assert f"redirects this request to {host_port}" in message and WHAT_TO_DO in message, message
    for hidden in HIDDEN:
        assert hidden not in message, message


@pytest.mark.parametrize(
    "kind, status",
    [("chat", 301), ("chat", 302), ("chat", 307), ("chat", 308), ("completions", 302), ("embeddings", 301)],
)
async def test_a_redirected_post_fails_once_naming_host_and_port_and_stops_the_run(
    tmp_path: Path, kind: str, status: int
) -> None:
    write_prompts(tmp_path / "p.csv", 4)
    log: list[str] = []
    async with raw_server(redirect(status, log), routes=_routes(status, log)) as url:
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            [
                "run",
                "p.csv",
                "--base-url",
                url,
                "--out",
                "o",
                "-q",
                "-c",
                "1",
                "--endpoint",
                kind,
                "--model",
                "raw-model",
            ],
            catch_exceptions=False,
        )
    assert result.exit_code == 2, result.output  # the endpoint refused the run
    path = "/v1/" + ("chat/completions" if kind == "chat" else kind)
    assert log and set(log) == {f"POST {path}"}  # never followed to MOVED_TO
    records = [json.loads(line) for line in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    assert all(r["attempts"] <= 1 for r in records)  # none retried
    first = _results(tmp_path / "o")[0]
    assert (first["status"], first["http_status"]) == ("error", str(status))
    _assert_names_only_host_and_port(first["error"], url)
    _assert_names_only_host_and_port(result.output, url)


async def test_the_sync_baseline_does_not_follow_a_redirect_either() -> None:
    """`bench --sync`: the openai SDK's httpx client follows redirects unless told not to."""
    log: list[str] = []
    jobs = bench_jobs(RunConfig.of(path=Path(__file__).parents[1] / "samples" / "prompts.csv", model="raw-model"), 1)
    async with raw_server(redirect(302, log), routes=_routes(302, log)) as url:
        [record] = await asyncio.to_thread(run_sync, Endpoint(url), jobs, timeout_s=5.0, t0=time.perf_counter())
    assert log == ["POST /v1/chat/completions"]
    assert (record.status, record.http_status) == ("error", 302)
    _assert_names_only_host_and_port(record.error or "", url)


async def test_a_batch_file_upload_is_not_redirected(tmp_path: Path) -> None:
    log: list[str] = []
    lines = tmp_path / "batch.jsonl"
    lines.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n')
    async with raw_server(redirect(308, log), routes=_routes(308, log)) as url:
        async with BatchApi(Endpoint(url), max_retries=0, timeout_s=5.0) as api:
            with pytest.raises(BatchApiError) as caught:
                await api.upload(lines, "batch.jsonl")
    assert log == ["POST /v1/files"]
    _assert_names_only_host_and_port(str(caught.value), url)
