"""Batch API mode: request lines and their split, records from output / error lines, the auto
rule, and whole runs through the CLI against the built-in endpoint's /v1/batches."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

import openai
import orjson
import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.batchapi.lines import Limits, Splitter, index_lines, oversize_reason, read_ids
from batchrun.batchapi.mode import AUTO_ONLINE_MAX_ROWS, auto_choice
from batchrun.cli import app
from batchrun.endpoint.batch import JobInfo, batch_body, missing_record, record_from_line, request_line
from batchrun.endpoint.requests import RequestDefaults, build_body
from batchrun.inputs.prompt import Prompt
from batchrun.sim import SimConfig, SimProcess
from batchrun.store.records import CANCELLED, ERROR, OK, TIMEOUT

JOB = JobInfo(batch_id="batch_1", status="completed", created_at=100, ended_at=160)


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs poll every 50 ms at first (0.5 s in real use), so a test waits for the
    sim's short jobs, not for the poll interval."""
    from batchrun.batchapi import flow

    monkeypatch.setattr(flow, "POLL_FIRST_S", 0.05)


# ---------------------------------------------------------------- request lines


def test_a_batch_body_is_the_online_body_without_streaming() -> None:
    prompt = Prompt(id="a", row=0, line=2, messages=[{"role": "user", "content": "hi"}], params={"temperature": 0.5})
    online = build_body(prompt, RequestDefaults(model="m", max_tokens=7, extra_body={"top_p": 0.9}))
    batch = batch_body(online)
    assert online["stream"] is True and online["stream_options"] == {"include_usage": True}
    assert batch == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 7,
        "top_p": 0.9,
        "temperature": 0.5,
    }
    assert json.loads(request_line("a", batch)) == {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": batch,
    }
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    batch_line = build_body(Prompt(id="c", row=0, line=1, body=body), RequestDefaults(model="m"))
    assert batch_body(batch_line) == {"model": "x", "messages": [{"role": "user", "content": "hi"}]}


def test_split_by_request_count_bytes_and_model(tmp_path: Path) -> None:
    splitter = Splitter(tmp_path, lambda i: f"{i + 1:04d}", Limits(max_requests=3, max_bytes=100))
    line = b"x" * 30 + b"\n"  # 31 bytes: three fit in 100
    for i in range(7):
        splitter.add(line, f"a{i}", i, "m1")
    splitter.add(line, "b0", 7, "m2")
    splitter.add(b"y" * 90 + b"\n", "a7", 8, "m1")  # does not fit beside a6: a new file
    chunks = splitter.close()
    assert [(c.model, c.requests) for c in chunks] == [("m1", 3), ("m1", 3), ("m1", 1), ("m2", 1), ("m1", 1)]
    assert all(c.bytes <= 100 for c in chunks)
    assert list(read_ids(chunks[2].ids_path)) == [("a6", 6)]
    assert chunks[1].input_path.read_bytes() == line * 3
    assert (
        oversize_reason(101, Limits(max_bytes=100)) is not None and oversize_reason(100, Limits(max_bytes=100)) is None
    )


def test_index_lines_names_each_line_by_its_custom_id(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    lines = [
        b'{"custom_id": "a", "response": null}\n',
        b"not json\n",
        b"[1, 2]\n",
        b'{"custom_id": "b"}\n',
        b"\n",
        b'{"custom_id": "c", "response": {"status_co\n',
        b'{"custom_id": 7}\n',
    ]
    path.write_bytes(b"".join(lines))
    found = [(cid, spot.offset, spot.number) for cid, spot in index_lines(path)]
    offsets = [sum(map(len, lines[:i])) for i in range(len(lines))]
    # A line cut short is named by the custom_id at its start; blank lines are passed over.
    assert found == [
        ("a", 0, 1),
        (None, offsets[1], 2),
        (None, offsets[2], 3),
        ("b", offsets[3], 4),
        ("c", offsets[5], 6),
        (None, offsets[6], 7),
    ]


def kept(data: bytes, max_bytes: int, secrets: tuple[str, ...] = (), piece: int = 7) -> list[bytes]:
    """`data` through KeptLines in pieces of `piece` bytes, as the kept file's lines."""
    from batchrun.batchapi.lines import KeptLines

    lines = KeptLines(max_bytes, secrets)
    out = b"".join(lines.feed(data[i : i + piece]) for i in range(0, len(data), piece)) + lines.close()
    return out.splitlines()


def test_kept_lines_bound_each_line_and_note_the_oversize_ones() -> None:
    small = b'{"custom_id":"a","response":null}'
    big = b'{"id":"batch_req_1","custom_id":"b","response":{"body":"' + b"x" * 500 + b'"}}'
    lines = kept(small + b"\n" + big + b"\n" + small, max_bytes=100)
    assert lines[0] == small and lines[2] == small  # the last line had no newline
    assert orjson.loads(lines[1]) == {"custom_id": "b", "batchrun_too_large": {"bytes": len(big), "limit": 100}}
    assert kept(big, max_bytes=len(big)) == [big]  # the bound itself is allowed
    nameless = kept(b"y" * 300 + b"\n", max_bytes=10)
    assert orjson.loads(nameless[0])["custom_id"] is None


def test_kept_lines_mask_the_secrets_also_when_escaped_in_json() -> None:
    secret = "hrd-SECRET/xyz+9"
    escaped = b'{"custom_id":"a","text":"key \\u0068rd-SECRET\\/xyz+9 and ' + secret.encode() + b'"}'
    [line] = kept(escaped + b"\n", max_bytes=1000, secrets=(secret,))
    assert orjson.loads(line) == {"custom_id": "a", "text": "key *** and ***"}
    [garbage] = kept(b"<html>" + secret.encode() + b" Bearer tok123</html>\n", max_bytes=1000, secrets=(secret,))
    assert garbage.startswith(b"<html>*** Bearer ***")  # not JSON: masked as text, patterns too
    [note] = kept(b'{"custom_id":"' + secret.encode() + b'","x":"' + b"z" * 200 + b'"}\n', 50, (secret,))
    assert orjson.loads(note)["custom_id"] == "***"


def test_the_result_index_keeps_a_few_places_of_lines_that_repeat_or_name_no_row(tmp_path: Path) -> None:
    from batchrun.batchapi.results import ResultIndex

    kept = tmp_path / "batch" / "0001.output.jsonl"
    kept.parent.mkdir()
    kept.write_bytes(b'{"custom_id":"a"}\n' + b"garbage\n" * 10 + b'{"custom_id":"b"}\n' * 5 + b'{"custom_id":"z"}\n')
    index = ResultIndex(tmp_path)
    index.add(kept, {"a", "b"})
    assert list(index.found) == ["a"] and [s.number for s in index.twice["b"]] == [12, 13, 14]
    assert index.unmatched_count == 11 and len(index.unmatched) == 5
    assert index.unmatched_note() == (
        "11 result line(s) named no row of this job: batch/0001.output.jsonl line 2, "
        "batch/0001.output.jsonl line 3, batch/0001.output.jsonl line 4, "
        "batch/0001.output.jsonl line 5, batch/0001.output.jsonl line 6 and 6 more"
    )


# ---------------------------------------------------------------- records


def ok_line(cid: str, **message: Any) -> dict[str, Any]:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi there", **message}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }
    return {
        "id": "batch_req_1",
        "custom_id": cid,
        "response": {"status_code": 200, "request_id": "req_1", "body": body},
        "error": None,
    }


def test_an_output_line_is_an_ok_record_with_no_invented_timing() -> None:
    record = record_from_line(ok_line("a"), 4, JOB)
    assert (record.id, record.row, record.status, record.text, record.finish_reason) == ("a", 4, OK, "hi there", "stop")
    assert (record.prompt_tokens, record.completion_tokens, record.model, record.request_id) == (9, 2, "m", "req_1")
    assert (record.batch_id, record.batch_created_at, record.batch_completed_at) == ("batch_1", 100, 160)
    assert record.ttft_s is record.latency_s is record.total_s is record.queue_wait_s is None
    assert record.sent_s is None and record.itl_s == [] and record.output_tokens_per_s is None


def test_tool_calls_come_out_as_online_mode_records_them() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    record = record_from_line(ok_line("a", content=None, tool_calls=[call]), 0, JOB, tools)
    assert record.status == OK and record.text == ""
    assert record.tool_calls[0]["name"] == "f" and record.tool_calls[0]["parsed_arguments"] == {"x": 1}
    assert record.tool_calls[0]["valid"] is True


def test_error_lines_become_failed_records() -> None:
    http = {
        "custom_id": "b",
        "response": {"status_code": 429, "request_id": "req_2", "body": {"error": {"message": "slow down"}}},
        "error": None,
    }
    record = record_from_line(http, 1, JOB)
    assert (record.status, record.http_status, record.error_type, record.error) == (
        ERROR,
        429,
        "RateLimitError",
        "slow down",
    )
    expired = {"custom_id": "c", "response": None, "error": {"code": "batch_expired", "message": "too late"}}
    record = record_from_line(expired, 2, JOB)
    assert (record.status, record.error_type, record.error) == (TIMEOUT, "batch_expired", "too late")
    unended = ok_line("d", content="")
    unended["response"]["body"]["choices"][0]["finish_reason"] = None
    assert record_from_line(unended, 3, JOB).error_type == "EmptyResponse"


def test_a_text_answer_to_a_forced_tool_call_is_flagged() -> None:
    forced = {"type": "function", "function": {"name": "f"}}
    assert record_from_line(ok_line("a"), 0, JOB, None, tool_choice=forced).tool_choice_ignored is True
    assert record_from_line(ok_line("b"), 1, JOB, None, tool_choice="required").tool_choice_ignored is True
    assert record_from_line(ok_line("c"), 2, JOB, None, tool_choice="auto").tool_choice_ignored is False
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert (
        record_from_line(
            ok_line("d", content=None, tool_calls=[call]), 3, JOB, None, tool_choice=forced
        ).tool_choice_ignored
        is False
    )


def test_an_empty_answer_the_server_ended_is_ok_and_marked_empty() -> None:
    record = record_from_line(ok_line("d", content=""), 3, JOB)
    assert (record.status, record.text, record.empty, record.finish_reason) == (OK, "", True, "stop")
    assert record_from_line(ok_line("e"), 4, JOB).empty is False


def broken(path: str, value: Any) -> dict[str, Any]:
    """ok_line("a") with the field at `path` (dots; choices means choices[0]) set to `value`."""
    line = ok_line("a")
    target: Any = line
    names = path.split(".")
    for name in names[:-1]:
        target = target[name][0] if name == "choices" else target[name]
    target[names[-1]] = value
    return line


WRONG_SHAPES = [
    ("response.status_code", "abc"),
    ("response.status_code", True),
    ("response.status_code", 9999),
    ("response", "str"),
    ("response.body", [1]),
    ("response.body.usage", "lots"),
    ("response.body.usage.prompt_tokens", -5),
    ("response.body.usage.completion_tokens", "2"),
    ("response.body.usage.completion_tokens", 2**60),
    ("response.body.usage.prompt_tokens", 1.5),
    ("response.body.choices", {}),
    ("response.body.choices.message", "str"),
    ("response.body.choices.message.content", 42),
    ("response.body.choices.message.tool_calls", ["x"]),
    ("response.body.choices.message.tool_calls", "x"),
    ("response.body.choices.finish_reason", 3),
    ("response.body.model", {"a": 1}),
    ("response.request_id", 5),
    ("response.body.choices.message.content", [{"type": "image_url", "image_url": {}}]),
    ("response.body.choices.message.content", [{"type": "text", "text": 1}]),
    ("response.body.choices.message.content", [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}]),
]


@pytest.mark.parametrize("path, value", WRONG_SHAPES, ids=[f"{p}={v!r}"[:60] for p, v in WRONG_SHAPES])
def test_a_line_of_the_wrong_shape_is_that_rows_malformed_line_error(path: str, value: Any) -> None:
    """Regression: such a line raised in collect (ValueError / AttributeError / KeyError /
    TypeError) and lost the job; now it costs its own row, named by file and line."""
    record = record_from_line(broken(path, value), 4, JOB, where="batch/0001.output.jsonl line 7")
    assert (record.id, record.row, record.status, record.error_type) == ("a", 4, ERROR, "MalformedBatchLine")
    assert record.error.startswith("batch/0001.output.jsonl line 7: ") and "--resume" in record.error
    assert record.text == "" and record.tool_calls is None and record.prompt_tokens is None
    assert repr(value) not in record.error or isinstance(value, (int, bool))  # types are named, values are not


@pytest.mark.parametrize(
    "line",
    [
        [1, 2],
        "text",
        None,
        {"custom_id": "a", "response": None, "error": None},
        {"custom_id": "a", "response": None, "error": "boom"},
        {"custom_id": "a", "response": None, "error": {"code": 5, "message": "x"}},
    ],
)
def test_a_line_that_is_not_a_result_is_malformed_too(line: Any) -> None:
    record = record_from_line(line, 0, JOB, cid="a")
    assert (record.id, record.status, record.error_type) == ("a", ERROR, "MalformedBatchLine")


def test_raw_lines_not_json_or_noted_too_large() -> None:
    from batchrun.endpoint.batch import record_from_raw

    cut = record_from_raw(b'{"custom_id":"a","response":{"status_co\n', "a", 0, JOB, where="f line 2")
    assert (cut.error_type, cut.status) == ("MalformedBatchLine", ERROR) and "cannot be read as JSON" in cut.error
    note = b'{"custom_id":"a","batchrun_too_large":{"bytes":157286400,"limit":1048576}}\n'
    big = record_from_raw(note, "a", 0, JOB, where="f line 3")
    assert (big.error_type, big.status) == ("ResponseTooLarge", ERROR)
    assert "157,286,400 bytes, over --max-response-bytes 1,048,576" in big.error and big.text == ""
    fine = record_from_raw(orjson.dumps(ok_line("a")), "a", 0, JOB)
    assert (fine.status, fine.text) == (OK, "hi there")


def test_content_parts_are_joined_as_the_api_defines_them() -> None:
    """Regression: list content was recorded ok with a list as its text, then crashed the summary."""
    parts = [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]
    record = record_from_line(ok_line("a", content=parts), 0, JOB)
    assert (record.status, record.text) == (OK, "hi there")
    refusal = record_from_line(ok_line("a", content=[{"type": "refusal", "refusal": "I cannot"}]), 0, JOB)
    assert (refusal.status, refusal.error_type) == (ERROR, "EmptyResponse") and "refused: I cannot" in refusal.error
    assert refusal.text == ""
    field = record_from_line(ok_line("a", content=None, refusal="not this"), 0, JOB)
    assert field.error_type == "EmptyResponse" and "refused: not this" in field.error
    no_parts = record_from_line(ok_line("a", content=[]), 0, JOB)  # no parts, but ended (finish_reason)
    assert (no_parts.status, no_parts.text, no_parts.empty) == (OK, "", True)


def test_provider_text_in_a_failed_line_is_redacted_before_it_is_cut() -> None:
    secret = "hrd-SECRET-batch-77aa"
    body = {"error": {"message": "x" * 490 + f" key {secret} Authorization: Bearer {secret}"}}
    line = {"custom_id": "a", "response": {"status_code": 401, "body": body}}
    record = record_from_line(line, 0, JOB, secrets=(secret,))
    assert record.http_status == 401 and secret[:6] not in record.error and len(record.error) <= 500
    plain = {"custom_id": "a", "response": {"status_code": 500, "body": f"upstream: Bearer {secret}"}}
    assert secret not in record_from_line(plain, 0, JOB, secrets=(secret,)).error
    code = {"custom_id": "a", "response": None, "error": {"code": f"bad {secret}", "message": secret}}
    coded = record_from_line(code, 0, JOB, secrets=(secret,))
    assert (coded.error_type, coded.error) == ("BatchLineError", "***")  # a code that is not a name is no type


@pytest.mark.parametrize(
    "status, expected",
    [
        ("expired", (TIMEOUT, "batch_expired")),
        ("cancelled", (CANCELLED, "batch_cancelled")),
        ("failed", (ERROR, "batch_failed")),
        ("completed", (ERROR, "BatchResultMissing")),
    ],
)
def test_a_row_without_a_line_fails_by_how_its_job_ended(status: str, expected: tuple[str, str]) -> None:
    job = JobInfo("batch_1", status, 100, 200, errors=("line 3: duplicate custom_id",))
    record = missing_record("z", 9, job)
    assert (record.status, record.error_type) == expected and record.batch_id == "batch_1"
    if status == "failed":
        assert "duplicate custom_id" in record.error


# ---------------------------------------------------------------- --mode auto


def test_the_auto_rule() -> None:
    small, big = AUTO_ONLINE_MAX_ROWS, AUTO_ONLINE_MAX_ROWS + 1
    assert auto_choice(small, None, False, True)[0] == "online"
    assert auto_choice(big, None, False, True)[0] == "batch"
    assert auto_choice(big, None, False, None)[0] == "batch"
    assert auto_choice(big, 3600.0, False, True)[0] == "online"
    assert auto_choice(big, 48 * 3600.0, False, True)[0] == "batch"
    assert auto_choice(big, None, True, True)[0] == "online"
    assert auto_choice(big, None, False, False)[0] == "online"


# ---------------------------------------------------------------- whole runs


@pytest.fixture(scope="module")
def batch_sim() -> Iterator[SimProcess]:
    with SimProcess(SimConfig(fast=True, batch_delay_s=0.1, seed=5)) as server:
        yield server


def results(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def jobs_at(sim: SimProcess) -> list[Any]:
    with openai.OpenAI(base_url=sim.base_url, api_key="x") as client:
        return list(client.batches.list(limit=100))


def test_a_batch_run_writes_the_same_files_as_an_online_run(batch_sim: SimProcess, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", 5)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(prompts),
            "--mode",
            "batch",
            "--base-url",
            batch_sim.base_url,
            "--out",
            str(out),
            "--max-tokens",
            "4",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in results(out)] == [f"q{i}" for i in range(5)]
    assert {r["status"] for r in results(out)} == {"ok"} and all(r["ttft_s"] == "" for r in results(out))
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["counts"]["ok"] == 5 and summary["ttft_s"]["count"] == 0
    assert summary["tokens"]["completion"] == 20
    assert summary["batch"]["jobs"] == 1 and summary["batch"]["requests"] == 5
    run = json.loads((out / "run.json").read_text())
    [job] = run["batch"]["jobs"]
    assert job["collected"] and job["status"] == "completed" and job["requests"] == 5
    assert (out / "report.html").exists() and (out / "report.md").exists()


def test_resume_resubmits_only_the_failed_rows(batch_sim: SimProcess, tmp_path: Path) -> None:
    texts = ["fine", "fails once [[sim:error=500x1]]", "fine too", "also fails once [[sim:error=503x1]]"]
    prompts = write_prompts(tmp_path / "p.csv", texts)
    out = tmp_path / "run"
    before = {j.id for j in jobs_at(batch_sim)}
    args = ["run", str(prompts), "--mode", "batch", "--base-url", batch_sim.base_url, "--out", str(out), "-q"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert [r["status"] for r in results(out)] == ["ok", "error", "ok", "error"]
    assert [r["http_status"] for r in results(out)] == ["200", "500", "200", "503"]

    again = CliRunner().invoke(app, ["run", "--resume", str(out), "--base-url", batch_sim.base_url, "-q"])
    assert again.exit_code == 0, again.output
    assert [r["status"] for r in results(out)] == ["ok"] * 4
    new_jobs = [j for j in jobs_at(batch_sim) if j.id not in before]
    assert sorted(j.request_counts.total for j in new_jobs) == [2, 4]  # the second job: the 2 failed rows only
    ledger = json.loads((out / "run.json").read_text())["batch"]["jobs"]
    assert [j["requests"] for j in ledger] == [4, 2] and all(j["collected"] for j in ledger)


def test_online_resume_of_a_run_with_open_jobs_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(
        json.dumps(
            {
                "config": {"input": str(write_prompts(tmp_path / "p.csv", 2)), "mode": "batch"},
                "batch": {"token": "t", "jobs": [{"name": "0001", "collected": False, "file_id": "file-1"}]},
            }
        )
    )
    result = CliRunner().invoke(app, ["run", "--resume", str(out), "--mode", "online"])
    assert result.exit_code == 2
    assert "not yet collected" in result.output and "--mode batch" in result.output


def test_a_deadline_cancels_open_jobs_and_records_their_rows_cancelled(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", 3)
    out = tmp_path / "run"
    with SimProcess(SimConfig(fast=True, batch_delay_s=5.0)) as slow:
        result = CliRunner().invoke(
            app,
            [
                "run",
                str(prompts),
                "--mode",
                "batch",
                "--base-url",
                slow.base_url,
                "--out",
                str(out),
                "--deadline",
                "0.2s",
                "-q",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "cancelling 1 open job" in result.output
    rows = results(out)
    assert [r["status"] for r in rows] == ["cancelled"] * 3 and {r["error_type"] for r in rows} == {"batch_cancelled"}
    [job] = json.loads((out / "run.json").read_text())["batch"]["jobs"]
    assert job["status"] == "cancelled" and job["collected"]


def test_auto_sends_a_small_job_online_and_a_large_one_through_the_batch_api(
    batch_sim: SimProcess, tmp_path: Path
) -> None:
    small = CliRunner().invoke(
        app,
        [
            "run",
            str(write_prompts(tmp_path / "s.csv", 3)),
            "--mode",
            "auto",
            "--base-url",
            batch_sim.base_url,
            "--out",
            str(tmp_path / "s"),
            "-q",
        ],
    )
    assert small.exit_code == 0, small.output
    assert "--mode auto: online (3 rows to send" in small.output
    assert all(r["ttft_s"] != "" and r["batch_id"] == "" for r in results(tmp_path / "s"))

    rows = AUTO_ONLINE_MAX_ROWS + 1
    large = CliRunner().invoke(
        app,
        [
            "run",
            str(write_prompts(tmp_path / "l.csv", rows)),
            "--mode",
            "auto",
            "--base-url",
            batch_sim.base_url,
            "--out",
            str(tmp_path / "l"),
            "-q",
            "--max-tokens",
            "2",
        ],
    )
    assert large.exit_code == 0, large.output
    assert "--mode auto: batch" in large.output
    out = results(tmp_path / "l")
    assert len(out) == rows and {r["status"] for r in out} == {"ok"} and len({r["batch_id"] for r in out}) == 1


async def test_an_endpoint_without_a_batch_api_is_a_clear_error_and_auto_goes_online(tmp_path: Path) -> None:
    from aiohttp import web
    from rawserver import raw_server

    from batchrun.batchapi.api import BatchApiError
    from batchrun.config import RunConfig
    from batchrun.pipeline import execute_run

    async def never(request: web.Request) -> web.StreamResponse:
        raise AssertionError("no chat request expected")

    prompts = write_prompts(tmp_path / "p.csv", 2)
    async with raw_server(never) as url:
        config = RunConfig.of(path=prompts, base_url=url, mode="batch", out=tmp_path / "run", quiet=True)
        with pytest.raises(BatchApiError) as err:
            await execute_run(config)
        assert "has no Batch API; use --mode online" in str(err.value) and "NotFoundError" in str(err.value)
        from batchrun.batchapi.mode import has_batch_api

        assert await has_batch_api(url, None) is False


def test_the_key_is_used_for_the_batch_api_and_written_nowhere(tmp_path: Path) -> None:
    key = "hrd-SECRET-batch-5c0ffee9d1e2"
    prompts = write_prompts(tmp_path / "p.csv", ["question 0", "[[sim:error=401]] question 1"])
    with SimProcess(SimConfig(fast=True, batch_delay_s=0.2, api_key=key)) as keyed:
        result = CliRunner().invoke(
            app,
            ["run", str(prompts), "--mode", "batch", "--base-url", keyed.base_url, "--out", str(tmp_path / "o")],
            env={"OPENAI_API_KEY": key},
        )
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in results(tmp_path / "o")] == ["ok", "error"]
    assert key not in result.output
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), f"the key is in {path}"


def test_bad_rows_fail_before_anything_is_submitted_or_are_skipped(batch_sim: SimProcess, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", ["fine", "", "also fine"])
    before = len(jobs_at(batch_sim))
    args = ["run", str(prompts), "--mode", "batch", "--base-url", batch_sim.base_url, "-q"]
    failed = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "f")])
    assert failed.exit_code == 2 and "line 3" in failed.output and "--on-bad-row skip" in failed.output
    assert len(jobs_at(batch_sim)) == before
    skipped = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "s"), "--on-bad-row", "skip"])
    assert skipped.exit_code == 0, skipped.output
    assert [r["status"] for r in results(tmp_path / "s")] == ["ok", "skipped", "ok"]
    [job] = json.loads((tmp_path / "s" / "run.json").read_text())["batch"]["jobs"]
    assert job["requests"] == 2


def test_a_job_refused_at_the_enqueued_token_limit_is_sent_again_when_another_ends(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from batchrun.batchapi import flow

    monkeypatch.setattr(flow, "LIMITS", Limits(max_requests=3))  # 6 rows: two jobs of 3
    prompts = write_prompts(tmp_path / "p.csv", 6)  # ~3 prompt tokens a row
    out = tmp_path / "run"
    with SimProcess(SimConfig(fast=True, batch_delay_s=0.2, batch_token_limit=10)) as limited:
        result = CliRunner().invoke(
            app, ["run", str(prompts), "--mode", "batch", "--base-url", limited.base_url, "--out", str(out), "-q"]
        )
        assert result.exit_code == 0, result.output
        at_provider = jobs_at(limited)
    assert "refused: Enqueued token limit reached" in result.output
    assert [r["status"] for r in results(out)] == ["ok"] * 6
    first, second = json.loads((out / "run.json").read_text())["batch"]["jobs"]
    assert first["refused"] == [] and len(second["refused"]) == 1 and second["status"] == "completed"
    assert sorted(b.status for b in at_provider) == ["completed", "completed", "failed"]
    assert next(b for b in at_provider if b.status == "failed").errors.data[0].code == "token_limit_exceeded"


def test_collecting_opens_each_downloaded_file_once(batch_sim: SimProcess, tmp_path: Path) -> None:
    """Regression: a 50,000-row job ran out of file handles (one per row) while collecting."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    prompts = write_prompts(tmp_path / "p.csv", 400)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        result = CliRunner().invoke(
            app,
            [
                "run",
                str(prompts),
                "--mode",
                "batch",
                "--base-url",
                batch_sim.base_url,
                "--out",
                str(tmp_path / "o"),
                "-q",
                "--max-tokens",
                "2",
            ],
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert result.exit_code == 0, result.output
    assert len(results(tmp_path / "o")) == 400
