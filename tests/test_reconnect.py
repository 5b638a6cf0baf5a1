"""A dead pooled connection is not a failed attempt (endpoint/reconnect.py), against a raw server
that closes connections as llama-server does (tests/dropserver.py), through the Pool and through
`batchrun run`; and a connection that dies after response bytes, or a server that drops every
connection, still ends in ordinary, bounded failed attempts."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from dropserver import DropServer, chat_job
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.endpoint.attempt import CONNECTION_ERROR, INCOMPLETE_STREAM
from batchrun.endpoint.embeddings import EmbeddingsClient
from batchrun.endpoint.kinds import kind
from batchrun.endpoint.multi import Member, MultiClient
from batchrun.endpoint.reconnect import closed_before_response, connection_reused, fresh_connection
from batchrun.endpoint.requests import Job
from batchrun.endpoint.transport import Endpoint, StreamClient, make_session
from batchrun.engine.embed import EmbedPool, make_batches
from batchrun.engine.limits import RateLimits
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.inputs.prompt import Prompt
from batchrun.store.records import ERROR, OK, Record, read_records
from batchrun.store.vectors import VectorSink


def test_which_failures_mean_the_server_had_closed_the_connection() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None, None, None)
    assert closed_before_response(aiohttp.ServerDisconnectedError())
    assert closed_before_response(aiohttp.ClientOSError(None, "Can not write request body for http://x"))
    # aiohttp 3.10 raises its own ClientConnectionResetError here; 3.9 the builtin it derives from.
    reset = getattr(aiohttp, "ClientConnectionResetError", ConnectionResetError)
    assert closed_before_response(reset("Cannot write to closing transport"))
    assert closed_before_response(ConnectionResetError(104, "Connection reset by peer"))
    assert closed_before_response(BrokenPipeError(32, "Broken pipe"))
    # Not: a failed connect, a timeout, a body cut after the head, a partial response line.
    assert not closed_before_response(aiohttp.ClientConnectorError(key, OSError(111, "refused")))
    assert not closed_before_response(TimeoutError())
    assert not closed_before_response(aiohttp.ClientPayloadError("cut"))
    partial = aiohttp.http.RawResponseMessage(
        version=aiohttp.http.HttpVersion11,
        code=200,
        reason="OK",
        headers={},
        raw_headers=(),
        should_close=False,
        compression=None,
        upgrade=False,
        chunked=True,
    )
    assert not closed_before_response(aiohttp.ServerDisconnectedError(partial))


async def test_the_connector_tells_a_reused_connection_and_opens_a_new_one_when_asked(sim) -> None:
    url = sim.base_url + "/models"
    seen: list[bool] = []
    async with make_session(1) as session:
        for fresh in (False, False, True, False):
            with fresh_connection() if fresh else _nothing():
                async with session.get(url) as resp:
                    await resp.read()
            seen.append(connection_reused())
    # First: new; second: the pooled one again; third: a new one on request; fourth: pooled again.
    assert seen == [False, True, False, True]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def run_pool(url: str, n: int, *, concurrency: int, retries: int = 2) -> tuple[list[Record], list[float]]:
    """n jobs through a Pool whose backoff sleeps are only noted (nothing waits for real)."""
    records: list[Record] = []
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    async with make_session(concurrency) as session:
        pool = Pool(
            StreamClient(session, Endpoint(url), timeout_s=30),
            records.append,
            PoolConfig(concurrency=concurrency, retries=retries, seed=1),
            t0=time.perf_counter(),
            sleep=sleep,
        )
        await pool.run(chat_job(i) for i in range(n))
    return sorted(records, key=lambda r: r.row), waits


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_a_server_that_closes_every_connection_costs_no_attempt(concurrency: int) -> None:
    with DropServer("llama") as server:
        records, waits = await run_pool(server.base_url, 12, concurrency=concurrency)
    assert [r.status for r in records] == [OK] * 12
    assert all(r.attempts == 1 and len(r.attempt_log) == 1 and r.attempt_log[0].backoff_s is None for r in records)
    assert waits == []  # no backoff at all
    assert all(r.reconnects in (0, 1) for r in records)
    # Every request on a reused connection was dropped by the server and sent again on a new one.
    assert sum(r.reconnects for r in records) == server.dropped > 0
    assert sum(server.answered.values()) == 12  # each row answered once
    if concurrency == 1:
        # One connection at a time: a pooled one is reused and dies, the re-send's own connection
        # is never pooled (so never reused), and the next row opens a new one.
        assert [r.reconnects for r in records] == [0, 1] * 6


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_a_server_that_closes_right_after_each_response_costs_no_attempt(concurrency: int) -> None:
    """llama-server's own timing: the client meets a dead connection when it reuses it before
    reading the FIN (most requests, on loopback), else it opens a new one; never a retry."""
    with DropServer("close_after") as server:
        records, waits = await run_pool(server.base_url, 20, concurrency=concurrency)
    assert all(r.status == OK and r.attempts == 1 for r in records) and waits == []
    assert sum(server.answered.values()) == 20


async def test_the_times_of_a_resent_request_are_the_new_sends() -> None:
    """sent_s is the re-send's, so latency never holds the dead connection; queue wait ends at the first send."""
    with DropServer("llama") as server:
        records, _ = await run_pool(server.base_url, 3, concurrency=1)
    second = records[1]
    assert second.reconnects == 1
    assert second.attempt_log[0].sent_s == second.sent_s
    assert second.sent_s >= second.queue_wait_s  # offsets share the run's clock
    assert second.latency_s == pytest.approx(second.ttft_s + sum(second.itl_s))
    assert second.end_s == pytest.approx(second.sent_s + second.total_s)


async def test_a_connection_cut_after_response_bytes_is_a_failed_attempt_and_retried() -> None:
    with DropServer("cut_first") as server:
        records, waits = await run_pool(server.base_url, 3, concurrency=1)
    assert [r.status for r in records] == [OK] * 3
    assert [r.attempts for r in records] == [2, 2, 2]
    assert [r.attempt_log[0].error_type for r in records] == [INCOMPLETE_STREAM] * 3
    assert len(waits) == 3  # each cut one backed off, as a retry does


async def test_a_fresh_connection_that_fails_ends_the_resends() -> None:
    """The server answers once, then drops everything: the second row's reused connection dies,
    its re-send on a new connection dies too, and that is an ordinary failed attempt; the
    retries go out on new connections and fail as connection errors. Nothing loops."""
    with DropServer("answer_once") as server:
        records, waits = await run_pool(server.base_url, 2, concurrency=1, retries=2)
    first, second = records
    assert (first.status, first.attempts, first.reconnects) == (OK, 1, 0)
    assert (second.status, second.error_type, second.attempts) == (ERROR, CONNECTION_ERROR, 3)
    assert second.reconnects == 1  # one re-send, on the first attempt only
    assert server.dropped == 1 + 3  # the reused send, then three new connections
    assert len(waits) == 2


async def test_a_server_that_drops_every_connection_fails_in_bounded_tries() -> None:
    with DropServer("drop_all") as server:
        records, waits = await run_pool(server.base_url, 3, concurrency=2, retries=1)
    assert all(r.status == ERROR and r.error_type == CONNECTION_ERROR and r.attempts == 2 for r in records)
    assert all(r.reconnects == 0 for r in records)  # new connections only: nothing to re-send
    assert server.dropped == 3 * 2 and len(waits) == 3


async def test_the_completions_client_resends_too() -> None:
    def text_job(i: int) -> Job:
        body = {"model": "drop-model", "prompt": f"question {i}", "stream": True}
        return Job(
            prompt=Prompt(id=f"q{i}", row=i, line=i + 2, messages=[]),
            body=json.dumps(body).encode(),
            estimated_tokens=10,
            prompt_tokens_estimate=2,
        )

    records: list[Record] = []
    with DropServer("llama") as server:
        async with make_session(1) as session:
            pool = Pool(
                kind("completions").client_for(session, Endpoint(server.base_url)),
                records.append,
                PoolConfig(concurrency=1, retries=2),
                t0=time.perf_counter(),
            )
            await pool.run(text_job(i) for i in range(4))
    records.sort(key=lambda r: r.row)
    assert [(r.status, r.attempts, r.text) for r in records] == [(OK, 1, " w0 w1 w2")] * 4
    assert [r.reconnects for r in records] == [0, 1, 0, 1] and server.dropped == 2


async def test_the_embeddings_pool_resends_and_counts_each_resend_once(tmp_path: Path) -> None:
    """Batches of two inputs: a batch's re-send is on its first row only, so the sum is true."""
    texts = [
        Prompt(id=f"q{i}", row=i, line=i + 2, messages=[{"role": "user", "content": f"text {i}"}]) for i in range(8)
    ]
    records: list[Record] = []
    with DropServer("llama") as server:
        async with make_session(1) as session:
            client = EmbeddingsClient(session, Endpoint(server.base_url))
            pool = EmbedPool(
                client,
                records.append,
                VectorSink(tmp_path, records.extend),
                PoolConfig(concurrency=1),
                t0=time.perf_counter(),
            )
            await pool.run(make_batches(texts, 2, "drop-model", {}))
    records.sort(key=lambda r: r.row)
    assert [(r.status, r.attempts) for r in records] == [(OK, 1)] * 8
    assert [r.reconnects for r in records] == [0, 0, 1, 0, 0, 0, 1, 0]
    assert server.dropped == 2


async def test_the_multi_endpoint_client_resends_and_keeps_both_endpoints_healthy() -> None:
    records: list[Record] = []
    with DropServer("llama") as a, DropServer("llama") as b:
        async with make_session(2) as session:
            members = [Member(StreamClient(session, Endpoint(s.base_url)), s.base_url, RateLimits()) for s in (a, b)]
            client = MultiClient(members)
            pool = Pool(client, records.append, PoolConfig(concurrency=2, retries=2), t0=time.perf_counter())  # type: ignore[arg-type]
            await pool.run(chat_job(i) for i in range(12))
            await client.aclose()
    assert all(r.status == OK and r.attempts == 1 for r in records) and len(records) == 12
    assert sum(r.reconnects for r in records) == a.dropped + b.dropped > 0
    assert all(m.down_until == 0.0 and m.failures == 0 for m in members)  # a re-send is no failure


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("options", [["-c", "1"], ["-c", "4"], ["-c", "2", "--workers", "2"]])
def test_batchrun_run_against_a_llama_like_server(tmp_path: Path, options: list[str]) -> None:
    """Also with worker processes: their records carry the count back to the summary."""
    write_prompts(tmp_path / "p.csv", 16)
    with DropServer("llama") as server:
        result = invoke(
            "run", str(tmp_path / "p.csv"), "--base-url", server.base_url, "--out", str(tmp_path / "o"), *options
        )
    assert result.exit_code == 0, result.output
    records = list(read_records(tmp_path / "o" / "records.jsonl"))
    assert len(records) == 16 and all(r.status == OK and r.attempts == 1 for r in records)
    assert all(a.backoff_s is None for r in records for a in r.attempt_log)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["reconnects"] == sum(r.reconnects for r in records) == server.dropped > 0
    assert summary["reconnect_share"] == pytest.approx(summary["reconnects"] / (16 + summary["reconnects"]))
    assert summary["success_rate"] == 1.0
    assert f"{summary['reconnects']} request(s) met a pooled connection" in result.output
    assert "pooled connections" in " ".join(summary["warnings"])  # a notable share: warned
    report = (tmp_path / "o" / "report.md").read_text()
    assert f"{summary['reconnects']} request(s) met a pooled connection" in report


def test_batchrun_bench_against_a_llama_like_server_fails_no_request(tmp_path: Path) -> None:
    """Both sides of a bench: the sync baseline (the openai SDK) and the async levels."""
    write_prompts(tmp_path / "p.csv", 8)
    with DropServer("llama") as server:
        result = invoke(
            "bench",
            str(tmp_path / "p.csv"),
            "--base-url",
            server.base_url,
            "--out",
            str(tmp_path / "b"),
            "-c",
            "1,4",
            "-n",
            "8",
            "-q",
        )
    assert result.exit_code == 0, result.output
    runs = sorted((tmp_path / "b" / "runs").iterdir())
    records = [r for run in runs for r in read_records(run / "records.jsonl")]
    assert {run.name.split("-")[0] for run in runs} >= {"sync", "async"}
    assert records and all(r.status == OK and r.attempts == 1 for r in records)
    assert sum(r.reconnects for r in records) > 0
