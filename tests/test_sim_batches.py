"""The built-in endpoint's /v1/files and /v1/batches, driven by the real openai SDK over loopback,
plus the pure job timeline and the store on a scripted clock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai
import pytest

from batchrun.sim import SimConfig
from batchrun.sim.batches import BatchStore, answer_line, phase, processed_share
from batchrun.sim.files import FileStore
from batchrun.sim.host import AttemptCounter
from batchrun.sim.multipart import MultipartError, parse_multipart
from batchrun.sim.wire import ApiError


def line(cid: str, text: str = "hello", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": cid,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "batchrun-sim", "messages": [{"role": "user", "content": text}], "max_tokens": 5, **body},
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


# ---------------------------------------------------------------- the SDK, unchanged


async def test_openai_sdk_files_and_batches_work_against_the_built_in_endpoint(make_sim: Any) -> None:
    sim = await make_sim(fast=True, batch_delay_s=0.2, seed=3)
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
    try:
        data = jsonl([line("a"), line("b", "fail me [[sim:error=400]]"), line("c")])
        uploaded = await client.files.create(file=("in.jsonl", data), purpose="batch")
        assert (uploaded.object, uploaded.bytes, uploaded.filename, uploaded.purpose) == (
            "file",
            len(data),
            "in.jsonl",
            "batch",
        )
        assert (await client.files.retrieve(uploaded.id)).id == uploaded.id
        assert (await client.files.content(uploaded.id)).content == data
        assert uploaded.id in [f.id async for f in client.files.list(purpose="batch")]

        batch = await client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"run": "t"}
        )
        assert batch.status == "validating" and batch.request_counts.total == 3 and batch.metadata == {"run": "t"}
        seen = {batch.status}
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            await asyncio.sleep(0.02)
            batch = await client.batches.retrieve(batch.id)
            seen.add(batch.status)
        assert batch.status == "completed" and seen & {"in_progress", "finalizing"}
        assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
        assert batch.completed_at >= batch.created_at and batch.in_progress_at is not None
        assert batch.id in [b.id async for b in client.batches.list()]

        output = [json.loads(x) for x in (await client.files.content(batch.output_file_id)).text.splitlines()]
        errors = [json.loads(x) for x in (await client.files.content(batch.error_file_id)).text.splitlines()]
        assert [o["custom_id"] for o in output] == ["a", "c"]
        ok = output[0]
        assert ok["id"].startswith("batch_req_") and ok["error"] is None
        assert ok["response"]["status_code"] == 200 and ok["response"]["request_id"].startswith("req_")
        body = ok["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        assert body["usage"]["completion_tokens"] == 5 and body["choices"][0]["finish_reason"] == "length"
        assert errors == [
            {
                "id": errors[0]["id"],
                "custom_id": "b",
                "error": None,
                "response": {
                    "status_code": 400,
                    "request_id": errors[0]["response"]["request_id"],
                    "body": {
                        "error": {
                            "message": "Simulated error 400.",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": None,
                        }
                    },
                },
            }
        ]
        meta = await client.files.retrieve(batch.output_file_id)
        assert meta.purpose == "batch_output" and meta.filename == f"{batch.id}_output.jsonl"

        deleted = await client.files.delete(uploaded.id)
        assert deleted.deleted and deleted.id == uploaded.id
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(uploaded.id)
    finally:
        await client.close()


async def test_openai_sdk_cancel_and_errors(make_sim: Any) -> None:
    sim = await make_sim(fast=True, batch_delay_s=30.0, api_key="sk-test-key")
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-test-key", max_retries=0)
    try:
        uploaded = await client.files.create(file=("in.jsonl", jsonl([line("a")])), purpose="batch")
        batch = await client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        cancelled = await client.batches.cancel(batch.id)
        assert cancelled.status == "cancelling" and cancelled.cancelling_at is not None
        with pytest.raises(openai.BadRequestError):
            await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
        with pytest.raises(openai.NotFoundError):
            await client.batches.retrieve("batch_nope")
        with pytest.raises(openai.NotFoundError):
            await client.batches.create(
                input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
            )
    finally:
        await client.close()
    wrong = openai.AsyncOpenAI(base_url=sim.base_url, api_key="wrong-key", max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError):
            await wrong.files.list()
    finally:
        await wrong.close()


# ---------------------------------------------------------------- the pure timeline


@pytest.mark.parametrize(
    "elapsed, expected",
    [
        (0.0, "validating"),
        (0.99, "validating"),
        (1.0, "in_progress"),
        (8.99, "in_progress"),
        (9.0, "finalizing"),
        (10.0, "done"),
    ],
)
def test_phase_of_a_ten_second_job(elapsed: float, expected: str) -> None:
    assert phase(elapsed, 10.0) == expected


def test_processed_share_grows_linearly_while_in_progress() -> None:
    assert [processed_share(t, 10.0) for t in (0.0, 1.0, 3.0, 5.0, 9.0, 12.0)] == [0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    assert processed_share(0.0, 0.0) == 1.0


# ---------------------------------------------------------------- the store on a scripted clock


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store(tmp: Path | None = None, **cfg: Any) -> tuple[BatchStore, FileStore, Clock]:
    clock = Clock()
    config = SimConfig(batch_delay_s=10.0, batch_state_dir=str(tmp) if tmp else None, **cfg)
    files = FileStore(config.batch_state_dir, clock=clock)
    return BatchStore(config, files, AttemptCounter(), clock=clock), files, clock


def create(batches: BatchStore, files: FileStore, lines: list[dict[str, Any]]) -> dict[str, Any]:
    fid = files.add(jsonl(lines), "in.jsonl", "batch")["id"]
    return batches.create({"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"})


def file_lines(files: FileStore, fid: str | None) -> list[dict[str, Any]]:
    return [json.loads(x) for x in files.content(fid).splitlines()] if fid else []


def test_counts_grow_with_time_and_the_files_appear_at_the_end() -> None:
    batches, files, clock = store()
    job = create(batches, files, [line(f"r{i}") for i in range(8)])
    clock.now += 5.0  # half-way through in_progress: 4 of 8 done
    view = batches.view(job["id"])
    assert view["status"] == "in_progress" and view["request_counts"] == {"total": 8, "completed": 4, "failed": 0}
    assert view["output_file_id"] is None
    clock.now += 5.0
    view = batches.view(job["id"])
    assert view["status"] == "completed" and view["completed_at"] == int(clock.now)
    assert [x["custom_id"] for x in file_lines(files, view["output_file_id"])] == [f"r{i}" for i in range(8)]
    assert view["error_file_id"] is None


def test_an_expired_job_ran_half_and_lists_the_rest_as_batch_expired() -> None:
    batches, files, clock = store(batch_expiry_rate=1.0)
    job = create(batches, files, [line(f"r{i}") for i in range(4)])
    clock.now += 10.0
    view = batches.view(job["id"])
    assert view["status"] == "expired" and view["expired_at"] == int(clock.now)
    assert view["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
    assert [x["custom_id"] for x in file_lines(files, view["output_file_id"])] == ["r0", "r1"]
    expired = file_lines(files, view["error_file_id"])
    assert [x["custom_id"] for x in expired] == ["r2", "r3"]
    assert expired[0]["response"] is None and expired[0]["error"]["code"] == "batch_expired"


def test_a_bad_input_file_fails_validation_with_openai_style_errors() -> None:
    batches, files, clock = store()
    job = create(batches, files, [line("same"), line("same")])
    clock.now += 1.0
    view = batches.view(job["id"])
    assert view["status"] == "failed" and view["failed_at"] is not None
    assert view["errors"]["data"][0]["code"] == "duplicate_custom_id" and view["errors"]["data"][0]["line"] == 2
    assert view["output_file_id"] is None and view["error_file_id"] is None


def test_failure_and_request_error_rates() -> None:
    batches, files, clock = store(batch_failure_rate=1.0)
    assert create(batches, files, [line("a")])["status"] == "validating"
    clock.now += 10.0
    assert batches.view(batches.ids()[0])["status"] == "failed"
    batches, files, clock = store(batch_error_rate=1.0)
    job = create(batches, files, [line("a"), line("b")])
    clock.now += 10.0
    view = batches.view(job["id"])
    assert view["request_counts"] == {"total": 2, "completed": 0, "failed": 2}
    assert {x["response"]["status_code"] for x in file_lines(files, view["error_file_id"])} == {500}


def test_a_line_for_a_model_the_sim_does_not_list_is_a_404_when_models_are_enforced() -> None:
    cfg = SimConfig(fast=True, models=("batchrun-sim",), enforce_models=True)
    ok, _ = answer_line(cfg, line("a"), 0, False, 0)
    bad = line("b")
    bad["body"]["model"] = "other"
    refused, out = answer_line(cfg, bad, 0, False, 0)
    response = json.loads(out)["response"]
    assert ok and not refused and response["status_code"] == 404
    assert response["body"]["error"]["code"] == "model_not_found"
    assert answer_line(SimConfig(fast=True), bad, 0, False, 0)[0]  # not enforced: answered


def test_cancel_keeps_what_ran_and_refuses_an_ended_job() -> None:
    batches, files, clock = store()
    job = create(batches, files, [line(f"r{i}") for i in range(8)])
    clock.now += 3.0  # 2 of 8 ran
    assert batches.cancel(job["id"])["status"] == "cancelling"
    clock.now += 1.0
    view = batches.view(job["id"])
    assert view["status"] == "cancelled" and view["request_counts"]["completed"] == 2
    assert [x["custom_id"] for x in file_lines(files, view["output_file_id"])] == ["r0", "r1"]
    with pytest.raises(ApiError) as err:
        batches.cancel(job["id"])
    assert err.value.status == 409
    early = create(batches, files, [line("x")])
    batches.cancel(early["id"])  # still validating: it never ran
    clock.now += 1.0
    view = batches.view(early["id"])
    assert view["status"] == "cancelled" and view["in_progress_at"] is None and view["output_file_id"] is None


def test_jobs_and_files_survive_a_restart_on_the_same_state_dir(tmp_path: Path) -> None:
    batches, files, clock = store(tmp_path)
    job = create(batches, files, [line("a"), line("b")])
    again, files_again, clock_again = store(tmp_path)
    clock_again.now = clock.now + 10.0
    view = again.view(job["id"])
    assert view["status"] == "completed"
    assert [x["custom_id"] for x in file_lines(files_again, view["output_file_id"])] == ["a", "b"]


def test_a_restarted_sim_goes_on_counting_submissions_for_xn_directives(tmp_path: Path) -> None:
    batches, files, clock = store(tmp_path)
    create(batches, files, [line("a", "fails once [[sim:error=500x1]]")])
    again, files_again, clock_again = store(tmp_path)
    clock_again.now = clock.now
    second = create(again, files_again, [line("a", "fails once [[sim:error=500x1]]")])
    clock_again.now += 10.0
    assert again.view(second["id"])["request_counts"] == {"total": 1, "completed": 1, "failed": 0}


# ---------------------------------------------------------------- a hostile provider (batchrun's own tests)


def test_broken_lines_patched_objects_and_echoed_credentials(tmp_path: Path) -> None:
    """The faults batchrun's batch tests stand on: each [[sim:batch_line=K]] breaks its line the
    way it says (kept across a restart, a duplicate too), batch_patch puts fields over the job
    object, and batch_echo_auth quotes the credentials in the job's errors and every line."""
    batches, files, clock = store(
        tmp_path,
        batch_patch={"status": "paused", "request_counts": {"completed": -5}},
        batch_echo_auth=True,
        batch_error_rate=0.0,
    )
    kinds = ["status_code", "usage", "content_parts", "no_custom_id", "duplicate", "not_json"]
    lines = [line(f"r{i}", f"[[sim:batch_line={k}]] hi") for i, k in enumerate(kinds)]
    lines.append(line("bad", "[[sim:error=400]] x"))
    fid = files.add(jsonl(lines), "in.jsonl", "batch")["id"]
    job = batches.create(
        {"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        echo="you sent Authorization: Bearer k-123",
    )
    again, files_again, clock_again = store(tmp_path, batch_echo_auth=True)  # restarted: answers read back
    clock_again.now = clock.now + 10.0
    view = again.view(job["id"])
    assert view["status"] == "completed" and "Bearer k-123" in view["errors"]["data"][0]["message"]
    out = files_again.content(view["output_file_id"]).splitlines()
    assert len(out) == len(kinds) + 1  # the duplicate is two lines
    parsed = [json.loads(x) for x in out[:5]]
    assert parsed[0]["response"]["status_code"] == "abc" and parsed[1]["response"]["body"]["usage"] == "lots"
    content = parsed[2]["response"]["body"]["choices"][0]["message"]["content"]
    assert [p["type"] for p in content] == ["text", "text"] and "Bearer k-123" in "".join(p["text"] for p in content)
    assert "custom_id" not in parsed[3] and parsed[4]["custom_id"] == json.loads(out[5])["custom_id"] == "r4"
    with pytest.raises(ValueError):
        json.loads(out[6])  # not_json: cut short
    assert out[6].startswith(b'{"id":"batch_req_') and b'"custom_id":"r5"' in out[6]
    [error] = file_lines(files_again, view["error_file_id"])
    assert "Bearer k-123" in error["response"]["body"]["error"]["message"]

    patched, files_p, clock_p = store(batch_patch={"status": "paused", "request_counts": {"completed": -5}})
    made = create(patched, files_p, [line("a")])
    clock_p.now += 10.0
    assert (made["status"], patched.view(made["id"])["request_counts"]) == ("paused", {"completed": -5})


def test_a_padded_answer_makes_a_line_of_the_asked_size() -> None:
    ok, data = answer_line(SimConfig(fast=True), line("a", "[[sim:batch_bytes=200000]] hi"), 0, False, 0)
    assert ok and 199_000 <= len(data) <= 201_000  # "about": the envelope is not counted exactly


# ---------------------------------------------------------------- multipart


def test_multipart_fields_and_file() -> None:
    body = (
        b'--XyZ\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--XyZ\r\ncontent-disposition: form-data; name="file"; filename="a.jsonl"\r\n'
        b'content-type: application/octet-stream\r\n\r\n{"x":1}\r\n\r\n--XyZ--\r\n'
    )
    parts = parse_multipart('multipart/form-data; boundary="XyZ"', body)
    assert parts["purpose"].data == b"batch"
    assert (parts["file"].filename, parts["file"].data) == ("a.jsonl", b'{"x":1}\r\n')
    with pytest.raises(MultipartError):
        parse_multipart("application/json", body)
