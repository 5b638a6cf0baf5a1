"""The fault matrix: a few hundred requests through the real Pool against an endpoint that fails
in one way, retries on. Every run must end with each row recorded exactly once, the right status
per row, attempts bounded by retries + 1, the endpoint's own counters matching the records, and
nothing left open (tasks, sockets, files)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from faultserver import (
    BROKEN_EVERY,
    FLAKY_EVERY,
    Faulty,
    azure_empty_choices_first,
    done_without_finish_reason,
    error_in_stream,
    fault_plan,
    free_port,
    headers_then_nothing,
    malformed_line,
    no_leaks,
    no_usage_chunk,
    non_json_error,
    non_text_content,
    proxy_html_page,
    status_429_no_header,
    usage_as_text,
    wrong_shape_chunk,
)
from promptfiles import write_prompts
from rawserver import raw_server
from typer.testing import CliRunner

from batchrun.analysis.metrics import summarize
from batchrun.cli import app
from batchrun.endpoint.requests import Job
from batchrun.endpoint.transport import Endpoint, StreamClient, make_session
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.inputs.prompt import Prompt
from batchrun.sim import SimConfig, SimProcess, SimServer, serve_sim
from batchrun.store.records import Record, read_records

N = 300
RETRIES = 3


def job(i: int) -> Job:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": f"question {i}"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 16,
    }
    return Job(
        prompt=Prompt(id=f"r{i}", row=i, line=i + 2, messages=body["messages"]),
        body=json.dumps(body).encode(),
        estimated_tokens=20,
        prompt_tokens_estimate=2,
    )


async def run_pool(
    url: str,
    n: int = N,
    *,
    concurrency: int = 16,
    retries: int = RETRIES,
    timeout_s: float | None = 10.0,
    ttft_timeout_s: float | None = None,
    backoff_base_s: float = 0.01,
    backoff_max_s: float = 0.1,
    during: Callable[[list[Record]], Any] | None = None,
) -> tuple[list[Record], Pool]:
    """n jobs through a Pool with fast backoff; `during(records)` runs beside it."""
    records: list[Record] = []
    cfg = PoolConfig(
        concurrency=concurrency,
        retries=retries,
        backoff_base_s=backoff_base_s,
        backoff_max_s=backoff_max_s,
        rate_limit_backoff_s=backoff_base_s,
        seed=7,
    )
    async with make_session(concurrency) as session:
        client = StreamClient(session, Endpoint(url), timeout_s=timeout_s, ttft_timeout_s=ttft_timeout_s)
        pool = Pool(client, records.append, cfg, t0=time.perf_counter())
        if during is None:
            await pool.run(job(i) for i in range(n))
        else:
            await asyncio.gather(pool.run(job(i) for i in range(n)), during(records))
    assert pool.input_error is None and pool.abort_reason is None
    return records, pool


def check_invariants(records: list[Record], n: int = N, retries: int = RETRIES) -> dict[str, Record]:
    """Each row once; attempts bounded and logged; the status is the last attempt's; only a
    retryable failure was retried; the summary counts what the records say."""
    by_id = {r.id: r for r in records}
    assert len(records) == n and sorted(r.row for r in records) == list(range(n))
    for r in records:
        assert 1 <= r.attempts == len(r.attempt_log) <= retries + 1, r
        assert r.attempt_log[-1].status == r.status
        assert all(a.status != "ok" for a in r.attempt_log[:-1])
        assert all(a.backoff_s is not None for a in r.attempt_log[:-1])
        if r.status == "ok":
            assert r.error is None and r.text
    summary = summarize(records)
    statuses = Counter(r.status for r in records)
    assert {k: summary["counts"][k] for k in statuses} == dict(statuses)
    assert summary["counts"]["total"] == n
    assert summary["by_error_type"] == dict(Counter(r.error_type for r in records if r.status != "ok"))
    return by_id


def attempt_types(records: list[Record]) -> Counter[str | None]:
    return Counter(a.error_type for r in records for a in r.attempt_log)


# --- seeded faults from the built-in endpoint -------------------------------------------------

SIM_FAULTS = {  # kind -> (error_type of a failed attempt, final status when every attempt failed)
    "error_500": ("InternalServerError", "error"),
    "error_502": ("InternalServerError", "error"),
    "error_503": ("InternalServerError", "error"),
    "error_429": ("RateLimitError", "error"),
    "cut": ("IncompleteStream", "error"),
    "malformed": ("MalformedChunk", "error"),
    "stall": ("APITimeoutError", "timeout"),
}


@pytest.mark.parametrize("kind", list(SIM_FAULTS))
async def test_sim_fault_rate_is_retried_and_counted(kind: str) -> None:
    error_type, final_status = SIM_FAULTS[kind]
    # A stall goes silent after the first token, so the whole-request timeout must fire, not
    # the TTFT one. 1 s is ample for a healthy answer even on a loaded machine; 64 workers
    # keep the ~140 stalled attempts to a few seconds in all.
    timeouts = {"timeout_s": 1.0, "ttft_timeout_s": 0.8, "concurrency": 64} if kind == "stall" else {}
    config = SimConfig(fast=True, seed=11, retry_after_s=0.02, stall_s=3600, **{f"{kind}_rate": 0.3})
    async with no_leaks():
        async with serve_sim(config) as sim:
            records, pool = await run_pool(sim.base_url, **timeouts)
            stats = sim.stats()
    by_id = check_invariants(records)
    failed_attempts = [a for r in records for a in r.attempt_log if a.status != "ok"]
    assert failed_attempts, "the seeded rate injected nothing"
    assert {a.error_type for a in failed_attempts} == {error_type}
    assert {a.status for a in failed_attempts} == {final_status}
    # What the server injected is what the client recorded, attempt for attempt.
    assert stats["requests"] == sum(r.attempts for r in records)
    assert stats["faults"][kind] == len(failed_attempts)
    assert sum(stats["faults"].values()) == stats["faults"][kind]
    if kind.startswith("error_"):
        assert stats["responses"] == {"200": pool.stats.ok, kind[len("error_") :]: len(failed_attempts)}
    else:
        assert stats["responses"] == {"200": stats["requests"]}
    # A row fails only when every attempt did.
    for r in by_id.values():
        assert r.status == "ok" or (r.status == final_status and r.attempts == RETRIES + 1)
    assert pool.stats.ok + pool.stats.failed == N and pool.stats.in_flight == 0
    if kind in ("error_429", "error_503"):  # they carry retry-after: it was honoured
        waits = [a for a in failed_attempts if a.backoff_s is not None]
        assert all(a.retry_after_s == 0.02 and 0.02 <= a.backoff_s <= 0.022 for a in waits)
    if kind == "stall":
        assert all("--timeout" in a.error for a in failed_attempts)


async def test_429_storm_with_retry_after_ends_ok_and_honours_every_wait() -> None:
    config = SimConfig(fast=True, seed=5, error_429_rate=0.6, retry_after_s=0.01)
    async with no_leaks():
        async with serve_sim(config) as sim:
            records, _ = await run_pool(sim.base_url, concurrency=32, retries=8)
            stats = sim.stats()
    check_invariants(records, retries=8)
    limited = [a for r in records for a in r.attempt_log if a.http_status == 429]
    assert stats["responses"]["429"] == stats["faults"]["error_429"] == len(limited) > N
    assert all(a.retry_after_s == 0.01 and 0.01 <= a.backoff_s <= 0.011 for a in limited if a.backoff_s)
    assert sum(r.status == "ok" for r in records) >= N - 2  # 0.6 ** 9 per row


# --- faults only a raw server can produce -----------------------------------------------------

RAW_FAULTS = {  # name -> (handler fault, error_type of a failed attempt, status when all attempts failed)
    "429_without_retry_header": (status_429_no_header, "RateLimitError", "error"),
    "headers_then_nothing": (headers_then_nothing, "APITimeoutError", "timeout"),
    "malformed_sse_line": (malformed_line, "MalformedChunk", "error"),
    "chunk_of_the_wrong_shape": (wrong_shape_chunk, "MalformedChunk", "error"),
    "content_that_is_not_text": (non_text_content, "MalformedChunk", "error"),
    "error_event_in_200_stream": (error_in_stream, "StreamError", "error"),
    "non_json_error_body": (non_json_error, "InternalServerError", "error"),
    "proxy_html_error_page": (proxy_html_page, "InternalServerError", "error"),
}


@pytest.mark.parametrize("name", list(RAW_FAULTS))
async def test_raw_fault_is_retried_and_isolated(name: str) -> None:
    fault, error_type, final_status = RAW_FAULTS[name]
    handler = Faulty(fault)
    timeouts = {"ttft_timeout_s": 1.0, "timeout_s": 10.0} if name == "headers_then_nothing" else {}
    async with no_leaks():
        async with raw_server(handler.handle) as url:
            records, _ = await run_pool(url, n=200, concurrency=64 if timeouts else 16, **timeouts)
    by_id = check_invariants(records, n=200)
    assert sum(handler.seen.values()) == sum(r.attempts for r in records)
    for i in range(200):
        r = by_id[f"r{i}"]
        failures = [a for a in r.attempt_log if a.status != "ok"]
        assert len(failures) == sum(fault_plan(i, k) for k in range(r.attempts))
        assert all(a.error_type == error_type and a.status == final_status for a in failures)
        if i % BROKEN_EVERY == 0:
            assert (r.status, r.attempts) == (final_status, RETRIES + 1)
        else:
            assert r.status == "ok" and r.text == f"answer {i} done"
            assert r.attempts == (2 if i % FLAKY_EVERY == 0 else 1)
    failed = by_id["r0"]
    if name == "429_without_retry_header":  # a 429's own backoff: base x 3^attempt, +10% jitter
        for k, a in enumerate(failed.attempt_log[:-1]):
            assert a.retry_after_s is None and 0.01 * 3**k <= a.backoff_s <= 0.011 * 3**k
    if name == "headers_then_nothing":
        assert "--ttft-timeout" in failed.error
    if name == "non_json_error_body":
        assert failed.error == "HTTP 500: upstream connect error or disconnect/reset before headers"
    if name == "proxy_html_error_page":
        # The page's visible text, not its markup or comments.
        assert failed.error == "HTTP 502: 502 Bad Gateway 502 Bad Gateway nginx"


BENIGN = {
    "azure_empty_choices_first_chunk": azure_empty_choices_first,
    "no_usage_chunk": no_usage_chunk,
    "done_without_finish_reason": done_without_finish_reason,
    "usage_numbers_as_text": usage_as_text,
}


@pytest.mark.parametrize("name", list(BENIGN))
async def test_benign_oddity_is_a_success(name: str) -> None:
    handler = Faulty(BENIGN[name])
    async with no_leaks():
        async with raw_server(handler.handle) as url:
            records, _ = await run_pool(url, n=200)
    by_id = check_invariants(records, n=200)
    assert all(r.status == "ok" and r.attempts == 1 for r in records)
    for i in range(200):
        r = by_id[f"r{i}"]
        assert r.text == f"answer {i} done" and r.output_chunks == 2
        odd = fault_plan(i, 0)
        if name in ("no_usage_chunk", "usage_numbers_as_text"):
            assert r.tokens_estimated is odd and r.completion_tokens == 2
        if name == "done_without_finish_reason":
            assert r.finish_reason == (None if odd else "stop")
        if name == "azure_empty_choices_first_chunk":
            assert r.finish_reason == "stop" and r.prompt_tokens == 3


# --- the endpoint itself goes away ------------------------------------------------------------


async def test_endpoint_killed_and_restarted_on_the_same_port_mid_run() -> None:
    """In-flight streams are cut and new connections refused while it is down; retries with
    backoff carry every row through once it is back."""
    config = SimConfig(fixed_ttft_s=0.005, fixed_itl_s=0.002, output_tokens=5)
    port = free_port()
    restarts: list[SimServer] = []

    async def kill_and_restart(records: list[Record]) -> None:
        while len(records) < 100:
            await asyncio.sleep(0.005)
        await first.stop()
        await asyncio.sleep(0.3)  # down: connections are refused
        second = SimServer(config)
        await second.start("127.0.0.1", port)
        restarts.append(second)

    async with no_leaks():
        first = SimServer(config)
        await first.start("127.0.0.1", port)
        try:
            # Backoff from 0.05 s doubling: 7 retries wait at least 3 s, ten times the outage.
            records, _ = await run_pool(
                first.base_url, retries=7, backoff_base_s=0.05, backoff_max_s=2.0, during=kill_and_restart
            )
        finally:
            await first.stop()
            for server in restarts:
                await server.stop()
    check_invariants(records, retries=7)
    assert [r for r in records if r.status != "ok"] == []
    hit = [r for r in records if r.attempts > 1]
    assert hit, "the outage touched no request"
    outage_types = {a.error_type for r in hit for a in r.attempt_log[:-1]}
    assert outage_types <= {"APIConnectionError", "IncompleteStream"} and "APIConnectionError" in outage_types
    # Every ok attempt reached a server; refused connects never did. (A request written on a
    # keep-alive connection the dying server had just aborted may or may not have been read.)
    refused = sum(1 for r in records for a in r.attempt_log if (a.error or "").startswith("cannot connect"))
    assert refused > 0
    total = first.stats()["requests"] + restarts[0].stats()["requests"]
    assert len(records) <= total <= sum(r.attempts for r in records) - refused


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_endpoint_killed_mid_run_rows_fail_cleanly_and_resume_completes(tmp_path: Path) -> None:
    """The CLI with no retries: the endpoint's process is SIGKILLed mid-run; every row still
    gets a record (ok, or a clean connection error), and --resume against the restarted
    endpoint completes exactly the rows that failed."""
    n = 400
    write_prompts(tmp_path / "p.csv", n)
    records_path = tmp_path / "o" / "records.jsonl"
    port = free_port()
    config = SimConfig(fixed_ttft_s=0.01, fixed_itl_s=0.005, output_tokens=4)
    sim = SimProcess(config, port=port)
    sim.start()

    def kill_when_started() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if records_path.exists() and records_path.read_bytes().count(b"\n") >= 60:
                break
            time.sleep(0.01)
        assert sim.pid is not None
        os.kill(sim.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    try:
        first = invoke("run", "p.csv", "--base-url", sim.base_url, "--out", "o", "-q", "-c", "8", "--retries", "0")
    finally:
        killer.join()
        sim.stop()
    assert first.exit_code == 0, first.output
    written = list(read_records(records_path))
    assert sorted(r.row for r in written) == list(range(n))
    ok_before = {r.id for r in written if r.status == "ok"}
    failed = [r for r in written if r.status != "ok"]
    assert ok_before and failed
    assert {r.error_type for r in failed} <= {"APIConnectionError", "IncompleteStream"}
    assert all(r.attempts == 1 for r in written)
    with SimProcess(config, port=port) as again:
        second = invoke("run", "--resume", "o", "--base-url", again.base_url, "-q", "-c", "8")
        assert again.stats()["requests"] == len(failed)
    assert second.exit_code == 0, second.output
    with open(tmp_path / "o" / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(n)]
    assert all(r["status"] == "ok" for r in rows)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["summary"]["counts"]["ok"] == n


def test_connection_refused_from_the_start_is_a_fast_clear_error(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 50)
    port = free_port()  # nothing listens there
    start = time.monotonic()
    result = invoke("run", "p.csv", "--base-url", f"http://127.0.0.1:{port}/v1", "--out", "o", "-q")
    elapsed = time.monotonic() - start
    assert result.exit_code == 2
    assert f"cannot connect to http://127.0.0.1:{port}/v1" in result.output
    assert "is the server running?" in result.output and "Traceback" not in result.output
    assert elapsed < 10  # one refused connect, no retry storm (usually ~0.1 s)
    assert not (tmp_path / "o" / "records.jsonl").exists()


async def test_endpoint_gone_after_preflight_fails_every_row_with_bounded_attempts() -> None:
    """Nothing listens: each row fails with a connection error after exactly retries + 1
    quick attempts (no storm: the backoff sits between them)."""
    port = free_port()
    start = time.perf_counter()
    async with no_leaks():
        records, pool = await run_pool(f"http://127.0.0.1:{port}/v1", n=200, retries=2)
    check_invariants(records, n=200, retries=2)
    assert all(r.status == "error" and r.error_type == "APIConnectionError" and r.attempts == 3 for r in records)
    assert all(is_retryable_log(r) for r in records)
    assert pool.stats.failed == 200
    assert time.perf_counter() - start < 30


def is_retryable_log(record: Record) -> bool:
    return all(a.backoff_s is not None and 0 < a.backoff_s <= 0.1 for a in record.attempt_log[:-1])


async def test_a_thousand_requests_to_a_very_slow_server_all_time_out_in_bounded_time() -> None:
    config = SimConfig(fixed_ttft_s=3600, fixed_itl_s=1, output_tokens=2)
    start = time.perf_counter()
    async with no_leaks():
        async with serve_sim(config) as sim:
            records, pool = await run_pool(sim.base_url, n=1000, concurrency=1000, retries=1, timeout_s=0.5)
            stats = sim.stats()
    elapsed = time.perf_counter() - start
    check_invariants(records, n=1000, retries=1)
    assert all(r.status == "timeout" and r.error_type == "APITimeoutError" and r.attempts == 2 for r in records)
    assert pool.stats.peak_in_flight == 1000
    # Some attempts time out before the busy server has even read them: at most, never more.
    assert 0 < stats["requests"] <= 2000
    assert elapsed < 60  # 2 x 0.5 s of waiting; a safety bound only


# --- the leak check itself --------------------------------------------------------------------


async def test_the_leak_check_catches_a_pending_task_and_an_open_socket() -> None:
    import socket

    with pytest.raises(AssertionError, match="tasks left pending"):
        async with no_leaks():
            task = asyncio.create_task(asyncio.sleep(10))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(AssertionError, match="file descriptors left open"):
        async with no_leaks():
            sock = socket.socket()
    sock.close()
