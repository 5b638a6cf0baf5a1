"""batchrun's CLI against real servers: llama-server (marker realserver, in CI) and vLLM on CPU
(marker vllm, on demand). Each test runs the `batchrun` process on loopback and reads what it wrote."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from promptfiles import write_prompts

from batchrun.endpoint.attempt import CONNECTION_ERROR, INCOMPLETE_STREAM
from batchrun.report.bench import CACHE_STATE_GAP

from .rawclient import RawRun, raw_run
from .realruns import CliRun, batchrun, cli_argv, cli_env, prompt_texts
from .servers import Backend, ServerKind

ROWS = 120
MAX_TOKENS = 48
# batchrun's wall time may be this many times the raw client's on the same rows (issue: 14x with retries).
WALL_RATIO_LIMIT = 1.25
MAX_ROUNDS = 8
# A stream cut by the kill, or a connection refused once the server is gone.
CONNECTION_ERRORS = {INCOMPLETE_STREAM, CONNECTION_ERROR}


def _prompts(tmp_path: Path, n: int = ROWS) -> Path:
    return write_prompts(tmp_path / "prompts.csv", prompt_texts(n))


def _run(backend: Backend, out: Path, *args: str | Path) -> CliRun:
    return batchrun(out, "run", *args, "--base-url", backend.url, "--out", out, "-q", "--temperature", "0")


def _assert_all_first_attempt(run: CliRun, n: int) -> None:
    latest = run.latest()
    assert len(latest) == n, run.explain()
    bad = {
        i: (r["status"], r["attempts"], r["error_type"], r["error"])
        for i, r in latest.items()
        if r["status"] != "ok" or r["attempts"] != 1
    }
    assert not bad, f"{len(bad)} rows not ok at the first attempt: {list(bad.items())[:5]}"


def _reconnects(run: CliRun) -> tuple[int, int]:
    """(summary's reconnect count, the sum of the records' own counts)."""
    return run.summary()["reconnects"], sum(r.get("reconnects") or 0 for r in run.records())


def _check_run(run: CliRun) -> None:
    """Every row ok at its first attempt, tokens within max_tokens, reconnects counted consistently."""
    assert run.code == 0, run.explain()
    _assert_all_first_attempt(run, ROWS)
    summary, per_record = _reconnects(run)
    assert summary == per_record
    assert run.summary()["counts"]["ok"] == ROWS
    assert all(r["finish_reason"] in ("stop", "length") for r in run.records())
    assert all(r["completion_tokens"] and r["completion_tokens"] <= MAX_TOKENS for r in run.records())


@pytest.mark.parametrize("concurrency", [1, 4])
def test_run_streams_every_row_at_the_first_attempt(chat: Backend, tmp_path: Path, concurrency: int) -> None:
    prompts = _prompts(tmp_path)

    def run(i: int) -> CliRun:
        done = _run(chat, tmp_path / f"run{i}", prompts, "-c", str(concurrency), "--max-tokens", str(MAX_TOKENS))
        _check_run(done)
        return done

    first = run(0)  # also fills the server's prompt cache, so the timed passes below all find it warm
    if chat.kind == "llama-server" and concurrency == 1:
        # llama-server closes every streamed connection without saying so: at c=1 nearly every request
        # after the first meets the closed socket, and each such re-send is counted.
        assert _reconnects(first)[0] > 0
    if not chat.timing:
        return
    # Interleaved passes, best of each: the machine's other load hits both clients alike, and a pass
    # it slowed does not decide. Three rounds, and up to MAX_ROUNDS while the ratio is over the limit
    # (on the shared 2-core machine single passes of either client varied 1.3-3.6 s).
    bodies = [r["request"] for r in sorted(first.records(), key=lambda r: r["row"])]
    raws: list[RawRun] = []
    runs: list[CliRun] = []
    ratio = float("inf")
    while len(runs) < 3 or (ratio > WALL_RATIO_LIMIT and len(runs) < MAX_ROUNDS):
        raws.append(raw_run(chat.url, bodies, concurrency))
        runs.append(run(len(runs) + 1))
        ratio = min(r.summary()["wall_time_s"] for r in runs) / min(raw.wall_s for raw in raws)
    assert all(raw.ok == ROWS for raw in raws)
    figures = (
        f"c={concurrency}: batchrun/raw wall time {ratio:.2f}x (batchrun "
        f"{[round(r.summary()['wall_time_s'], 2) for r in runs]} s, raw {[round(r.wall_s, 2) for r in raws]} s, "
        f"{ROWS} rows each; reconnects {[_reconnects(r)[0] for r in runs]})"
    )
    print(figures)
    assert ratio <= WALL_RATIO_LIMIT, figures


def test_limit_then_resume_sends_each_row_once(chat: Backend, tmp_path: Path) -> None:
    prompts, out = _prompts(tmp_path, 30), tmp_path / "run"
    first = _run(chat, out, prompts, "-c", "4", "--max-tokens", "8", "--limit", "12")
    assert first.code == 0, first.explain()
    assert len(first.latest()) == 12
    resumed = batchrun(out, "run", "--resume", out, "-q")
    assert resumed.code == 0, resumed.explain()
    records = resumed.records()
    assert sorted(r["id"] for r in records) == sorted(f"q{i}" for i in range(30)), "a row was sent twice or never"
    _assert_all_first_attempt(resumed, 30)
    assert resumed.summary()["counts"]["ok"] == 30


def test_bench_has_no_failed_requests_and_states_its_warmup(chat: Backend, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run = batchrun(
        out,
        "bench",
        _prompts(tmp_path, 40),
        "--base-url",
        chat.url,
        "-c",
        "1,4",
        "-n",
        "40",
        "--max-tokens",
        "16",
        "--out",
        out,
        "-q",
    )
    assert run.code == 0, run.explain()
    bench = json.loads((out / "summary.json").read_text())["bench"]
    rows = bench["rows"]
    assert {(r["mode"], r["concurrency"]) for r in rows} == {("sync", 1), ("async", 1), ("async", 4)}
    for r in rows:
        assert (r["name"], r["n"], r["errors"], r["success_rate"]) == (r["name"], 40, 0, 1.0)
    # Every prompt went once, unmeasured, before the sync baseline, and the report says so.
    warmup = bench["warmup"]
    assert (warmup["pass"], warmup["prompts"], warmup["failed"]) == (True, 40, 0)
    assert warmup["text"] in run.report()
    # llama-server keeps each slot's last prompt, so the share of cached prompt tokens depends on
    # which slot a request lands on: even after the warm-up the sync pass and the async levels meet
    # different shares (measured: 42%, 58-69%, 66-76%). The report must then say so.
    shares = [r["cached_share"] for r in rows]
    if chat.kind == "llama-server":
        assert None not in shares
    differ = None not in shares and max(shares) - min(shares) > CACHE_STATE_GAP
    assert ("different prompt-cache states" in run.report()) == differ, shares


def test_json_schema_answers_validate(chat: Backend, tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "enum": ["yes", "no"]},
            "score": {"type": "integer", "minimum": 0, "maximum": 9},
        },
        "required": ["answer", "score"],
        "additionalProperties": False,
    }
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    # llama-server's grammar allows up to ~22 whitespace tokens between JSON tokens, which a random
    # model uses: 256 tokens always reach the closing brace.
    run = _run(
        chat,
        tmp_path / "run",
        _prompts(tmp_path, 12),
        "-c",
        "4",
        "--max-tokens",
        "256",
        "--json-schema",
        tmp_path / "schema.json",
    )
    assert run.code == 0, run.explain()
    for r in run.records():
        assert r["status"] == "ok", (r["status"], r["error_type"], r["error"], r["text"])
        parsed = json.loads(r["text"])
        assert parsed["answer"] in ("yes", "no") and 0 <= parsed["score"] <= 9
        assert r["request"]["response_format"]["type"] == "json_schema"


def test_completions_endpoint(chat: Backend, tmp_path: Path) -> None:
    run = _run(
        chat, tmp_path / "run", _prompts(tmp_path, 20), "--endpoint", "completions", "-c", "4", "--max-tokens", "12"
    )
    assert run.code == 0, run.explain()
    _assert_all_first_attempt(run, 20)
    for r in run.records():
        assert r["finish_reason"] in ("stop", "length")
        assert 1 <= r["completion_tokens"] <= 12 and r["prompt_tokens"] > 0 and not r["tokens_estimated"]
        assert r["completion_tokens"] == 12 or r["finish_reason"] == "stop"


def test_embeddings_rows_and_estimated_tokens(embed: Backend, tmp_path: Path) -> None:
    run = batchrun(
        tmp_path / "run",
        "run",
        _prompts(tmp_path, 40),
        "--endpoint",
        "embeddings",
        "--batch-size",
        "8",
        "--base-url",
        embed.url,
        "--out",
        tmp_path / "run",
        "-q",
        "-c",
        "2",
    )
    assert run.code == 0, run.explain()
    _assert_all_first_attempt(run, 40)
    import pyarrow.parquet as pq

    table = pq.read_table(run.out / "embeddings.parquet")
    assert table.num_rows == 40
    assert len({len(v) for v in table.column("embedding").to_pylist()}) == 1
    # The server gives one token total per batch of 8; a row's share of it is an estimate and says so.
    assert all(r["tokens_estimated"] for r in run.records())
    assert sum(r["prompt_tokens"] for r in run.records()) > 0


def _first_token_text(chat: Backend, prompt: str) -> str:
    """The greedy first token this model answers `prompt` with (asked with max_tokens 1)."""
    body = {"model": chat.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 1, "temperature": 0}
    req = urllib.request.Request(
        f"{chat.url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return str(json.loads(resp.read())["choices"][0]["message"]["content"] or "")


def _prompt_with_a_word_first(chat: Backend) -> tuple[str, str]:
    """A prompt whose greedy first token is printable text (a lone byte of a UTF-8 sequence shows as
    U+FFFD on llama-server and as nothing on vLLM, and would make a poor stop sequence)."""
    for prompt in prompt_texts(40):
        first = _first_token_text(chat, prompt)
        if first.strip() and first.isprintable() and "\ufffd" not in first:
            return prompt, first
    raise AssertionError("no prompt of 40 starts its answer with a printable token")


def test_empty_answer_ended_by_a_stop_sequence_is_ok(chat: Backend, tmp_path: Path) -> None:
    # A stop sequence that matches the first token: the server ends the answer at once, normally.
    prompt, first = _prompt_with_a_word_first(chat)
    run = _run(
        chat,
        tmp_path / "run",
        write_prompts(tmp_path / "one.csv", [prompt]),
        "--max-tokens",
        "8",
        "--extra-body",
        json.dumps({"stop": [first]}),
    )
    assert run.code == 0, run.explain()
    (r,) = run.records()
    assert (r["status"], r["text"], r["finish_reason"]) == ("ok", "", "stop"), (r["status"], r["error"], r["text"])
    assert r["empty"] and run.summary()["empty"] == 1


def test_server_killed_midrun_then_resume_finishes(server_kind: ServerKind, tmp_path: Path) -> None:
    out, prompts = tmp_path / "run", _prompts(tmp_path, 200)
    with server_kind.new("doomed", *server_kind.chat_args) as server:
        proc = subprocess.Popen(
            cli_argv(
                "run",
                prompts,
                "--base-url",
                server.url,
                "--out",
                out,
                "-q",
                "-c",
                "2",
                "--max-tokens",
                "200",
                "--retries",
                "0",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        try:
            _wait_for_records(out / "records.jsonl", 10)
            server.kill()
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    killed = CliRun(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out)
    failed = [r for r in killed.latest().values() if r["status"] != "ok"]
    assert failed, killed.explain()
    assert {r["error_type"] for r in failed} <= CONNECTION_ERRORS, {(r["error_type"], r["error"]) for r in failed}
    with server_kind.new("revived", *server_kind.chat_args) as again:
        resumed = batchrun(out, "run", "--resume", out, "--base-url", again.url, "-q")
    assert resumed.code == 0, resumed.explain()
    final = resumed.latest()
    assert len(final) == 200 and all(r["status"] == "ok" for r in final.values())


def _wait_for_records(path: Path, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {n} records after {timeout_s:.0f} s")


WEATHER_TOOL = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            # An enum keeps a grammar-forced call short enough to finish within max_tokens on a random model.
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]


@pytest.mark.parametrize("tool_choice", ["required", "get_weather"])
def test_forced_tool_choice(chat: Backend, tmp_path: Path, tool_choice: str) -> None:
    """What each server really does with a forced tool choice, and how batchrun records it."""
    (tmp_path / "tools.json").write_text(json.dumps(WEATHER_TOOL))
    run = _run(
        chat,
        tmp_path / "run",
        _prompts(tmp_path, 6),
        "--max-tokens",
        "64",
        "--tools",
        tmp_path / "tools.json",
        "--tool-choice",
        tool_choice,
    )
    assert run.code == 0, run.explain()
    records = run.records()
    assert all(r["status"] == "ok" for r in records), [(r["status"], r["error"]) for r in records]
    if chat.kind == "llama-server":
        # Its ChatML template knows no tools, so nothing forces a call: every answer is plain text
        # (a named function is even refused as the wrong type and dropped, said only in its log).
        # batchrun flags each row and counts them.
        assert all(not r["tool_calls"] and r["tool_choice_ignored"] for r in records)
        assert run.summary()["tool_choice_ignored"] == len(records)
    else:
        # vLLM (with a tool-call parser) forces the call through its grammar.
        assert all(r["tool_calls"] and not r["tool_choice_ignored"] for r in records)
        calls = [call for r in records for call in r["tool_calls"]]
        assert all(c["name"] == "get_weather" and c["parsed_arguments"]["city"] in ("Paris", "Rome") for c in calls)
        assert run.summary()["tool_choice_ignored"] == 0
