"""kinds.py: every endpoint kind, from a row to its Record through its own parts in the table,
against the built-in endpoint on a real socket (the batch kind: through its file lines)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from batchrun.config import ENDPOINTS
from batchrun.endpoint.attempt import AttemptResult
from batchrun.endpoint.kinds import KIND_NAMES, kind
from batchrun.endpoint.requests import Job, RequestDefaults, estimate_prompt_tokens
from batchrun.endpoint.transport import Endpoint, make_session
from batchrun.inputs.prompt import Prompt
from batchrun.store.records import OK, Attempt

ROW = Prompt(id="r1", row=0, line=2, messages=[{"role": "user", "content": "say something short"}])
DEFAULTS = RequestDefaults(model="batchrun-sim", max_tokens=8)


def test_every_endpoint_a_run_may_name_has_a_kind_and_an_unknown_one_is_named() -> None:
    assert set(ENDPOINTS) <= set(KIND_NAMES) and "batch" in KIND_NAMES
    with pytest.raises(ValueError, match="no endpoint kind 'responses'"):
        kind("responses")
    with pytest.raises(ValueError, match="not sent one by one"):
        kind("batch").client_for(None, Endpoint("http://127.0.0.1:1/v1"))  # type: ignore[arg-type]


@pytest.mark.parametrize("name,says", [("chat", "messages"), ("completions", "prompt")])
async def test_a_row_kind_sends_parses_and_records_through_its_table_entry(sim: Any, name: str, says: str) -> None:
    row = kind(name)
    body = row.build_body(ROW, DEFAULTS)
    assert says in body and body["stream"] is True
    job = Job(
        prompt=ROW,
        body=json.dumps(body).encode(),
        estimated_tokens=20,
        prompt_tokens_estimate=estimate_prompt_tokens(body),
    )
    t0 = time.perf_counter()
    async with make_session(1) as session:
        client = row.client_for(session, Endpoint(sim.base_url), timeout_s=10.0)
        assert isinstance(client, row.client) and client.parse is row.parse
        result = await client.send(job.body)
    record = row.to_record(
        job, result, [Attempt(status=result.status, sent_s=result.sent - t0, duration_s=1.0)], t0, time.time(), 0.0
    )
    assert (record.id, record.status, record.attempts) == ("r1", OK, 1), record.error
    assert record.text and record.completion_tokens and record.ttft_s is not None
    assert sim.stats()["by_endpoint"] == {name: 1}


async def test_the_embeddings_kind_sends_a_batch_and_records_each_input(sim: Any) -> None:
    emb = kind("embeddings")
    texts = ["one", "a longer text"]
    body = emb.build_body(texts, "batchrun-sim", {})
    async with make_session(1) as session:
        client = emb.client_for(session, Endpoint(sim.base_url), timeout_s=10.0)
        result = await client.embed(json.dumps(body).encode(), len(texts))
    assert result.status == OK and result.vectors is not None and result.vectors.shape[0] == 2
    rows = [ROW, Prompt(id="r2", row=1, line=3, messages=[{"role": "user", "content": texts[1]}])]
    records = emb.to_record(rows, texts, result, [], result.sent, 0.0, 0.0)
    assert [(r.id, r.status, r.tokens_estimated) for r in records] == [("r1", OK, True), ("r2", OK, True)]
    assert sum(r.prompt_tokens for r in records) == result.prompt_tokens


def test_the_batch_kind_writes_a_line_without_stream_fields_and_reads_a_result_line() -> None:
    from batchrun.endpoint.batch import JobInfo, request_line

    batch = kind("batch")
    body = batch.build_body(kind("chat").build_body(ROW, DEFAULTS))
    assert "stream" not in body and "stream_options" not in body
    assert json.loads(request_line("r1", body))["url"] == batch.path == "/v1/chat/completions"
    answer = {
        "custom_id": "r1",
        "response": {
            "status_code": 200,
            "request_id": "req_1",
            "body": {
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            },
        },
    }
    job = JobInfo(batch_id="batch_1", status="completed", created_at=1, ended_at=2)
    record = batch.parse(json.dumps(answer).encode(), "r1", 0, job)
    assert (record.status, record.text, record.completion_tokens) == (OK, "hi", 1)
    assert batch.to_record(answer, 0, job).text == "hi"


def test_a_kind_client_reads_its_stream_with_its_own_parser() -> None:
    """completions reads `choices[0].text`; chat finds no answer in the same bytes (an ended, empty one)."""
    line = b'data: {"choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    for name, text in (("completions", "hi"), ("chat", "")):
        result = AttemptResult(sent=0.0)
        stream = kind(name).parse(result)
        stream.feed(line, 0.1)
        stream.finish(0.2)
        assert (result.status, result.text) == (OK, text), name
