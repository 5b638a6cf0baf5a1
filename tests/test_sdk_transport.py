"""endpoint/sdk_transport.py: the openai SDK's clients (bench's sync baseline, the Batch API) re-send
at once what met a dead pooled connection, against tests/dropserver.py's llama-like server."""

from __future__ import annotations

from dropserver import DropServer, chat_job

from batchrun.batchapi.api import BatchApi
from batchrun.bench.sync import run_sync
from batchrun.endpoint.attempt import CONNECTION_ERROR
from batchrun.endpoint.transport import Endpoint
from batchrun.store.records import ERROR, OK


def test_the_sync_baseline_resends_a_request_the_server_dropped_on_a_reused_connection() -> None:
    with DropServer("llama") as server:
        records = run_sync(Endpoint(server.base_url), [chat_job(i) for i in range(6)], timeout_s=30)
    assert [(r.status, r.attempts) for r in records] == [(OK, 1)] * 6
    assert all(r.text == " w0 w1 w2" and r.completion_tokens == 3 for r in records)
    # A kept connection is reused and dropped; the re-send's own connection is not kept.
    assert [r.reconnects for r in records] == [0, 1] * 3
    assert server.dropped == 3 and sum(server.answered.values()) == 6


def test_the_sync_baseline_does_not_resend_when_the_new_connection_fails_too() -> None:
    with DropServer("answer_once") as server:
        first, second = run_sync(Endpoint(server.base_url), [chat_job(0), chat_job(1)], timeout_s=30)
    assert (first.status, first.reconnects) == (OK, 0)
    assert (second.status, second.error_type, second.reconnects) == (ERROR, CONNECTION_ERROR, 1)
    assert server.dropped == 2  # the reused connection, then the one re-send


async def test_batch_api_calls_are_resent_at_once_not_retried() -> None:
    """max_retries=0: without the transport's re-send the second call would raise."""
    with DropServer("llama") as server:
        async with BatchApi(Endpoint(server.base_url), max_retries=0) as api:
            found = [await api.find_batch("file-x", since=0.0) for _ in range(4)]
            reconnects = api.reconnects
    assert found == [None] * 4
    assert reconnects == server.dropped == 2
