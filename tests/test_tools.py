"""tools.py and tool-calling rows in the pool, against the built-in endpoint's streamed tool calls."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from pathlib import Path

import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.endpoint.requests import Job
from batchrun.endpoint.toolcalls import (
    ToolCallAssembler,
    argument_problems,
    body_forces_tool_call,
    check_calls,
    forces_tool_call,
)
from batchrun.endpoint.transport import Endpoint, StreamClient, make_session
from batchrun.engine.pool import Pool, PoolConfig
from batchrun.engine.tools import ToolRunner, load_tool_module, merge_rounds
from batchrun.errors import InputError
from batchrun.inputs.prompt import Prompt
from batchrun.store.records import Record
from batchrun.values import load_tools

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "tools"
TOOLS = load_tools(SAMPLES / "tools.json")


# ---------------------------------------------------------------- pure parts


def test_assembler_joins_split_arguments_and_keeps_parallel_calls_apart() -> None:
    asm = ToolCallAssembler()
    asm.add([{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}])
    asm.add([{"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": '{"x"'}}])
    asm.add([{"index": 0, "function": {"arguments": '{"a": '}}])
    asm.add([{"index": 0, "function": {"arguments": "1}"}}, {"index": 1, "function": {"arguments": ": 2}"}}])
    a, b = asm.calls()
    assert (a["id"], a["name"], a["parsed_arguments"]) == ("call_a", "f", {"a": 1})
    assert (b["id"], b["name"], b["parsed_arguments"]) == ("call_b", "g", {"x": 2})


def test_invalid_json_arguments_are_recorded_not_raised() -> None:
    asm = ToolCallAssembler()
    asm.add([{"index": 0, "id": "c", "function": {"name": "lookup_capital", "arguments": '{"country": "Fr'}}])
    [call] = check_calls(asm.calls(), TOOLS)
    assert call["parsed_arguments"] is None and not call["valid"] and "not valid JSON" in call["problems"][0]


def test_argument_problems_against_the_schema() -> None:
    schema = TOOLS[0]["function"]["parameters"]
    assert argument_problems({"value": 3, "from_unit": "km", "to_unit": "mi"}, schema) == []
    assert argument_problems({"value": "3", "from_unit": "km"}, schema) == [
        "missing required field 'to_unit'",
        "field 'value' should be number, got str",
    ]
    assert argument_problems({"value": True, "from_unit": "yd", "to_unit": "mi"}, schema) == [
        "field 'value' should be number, got bool",
        "field 'from_unit' must be one of ['km', 'mi', 'kg', 'lb'], got 'yd'",
    ]
    assert argument_problems([1, 2], schema) == ["arguments must be a JSON object, not list"]


def test_unknown_tool_name_is_a_problem() -> None:
    [call] = check_calls(
        [{"id": "c", "name": "rm_rf", "arguments": "{}", "parsed_arguments": {}, "arguments_error": None}], TOOLS
    )
    assert not call["valid"] and "did not offer" in call["problems"][0]


async def test_tool_runner_outcomes() -> None:
    def ok(x: int) -> dict:
        return {"double": 2 * x}

    def boom(x: int) -> None:
        raise RuntimeError("tool broke")

    async def hangs(x: int) -> None:
        await asyncio.sleep(30)

    runner = ToolRunner({"ok": ok, "boom": boom, "hangs": hangs}, timeout_s=0.2)
    calls = [
        {"id": f"c{i}", "name": name, "parsed_arguments": {"x": 2}, "valid": True}
        for i, name in enumerate(["ok", "boom", "hangs", "missing"])
    ]
    calls.append({"id": "c4", "name": "ok", "parsed_arguments": None, "valid": False, "problems": ["bad JSON"]})
    out = await runner.run_calls(calls)
    assert [o["status"] for o in out] == ["ok", "error", "timeout", "unknown_tool", "invalid_arguments"]
    assert json.loads(out[0]["content"]) == {"double": 4}
    assert "RuntimeError: tool broke" in out[1]["content"] and [o["tool_call_id"] for o in out] == [
        f"c{i}" for i in range(5)
    ]


async def test_a_hung_sync_tool_holds_no_thread_the_process_waits_for() -> None:
    import threading

    release = threading.Event()

    def hangs(x: int) -> None:
        release.wait(30)

    runner = ToolRunner({"hangs": hangs}, timeout_s=0.1)
    [out] = await runner.run_calls([{"id": "c", "name": "hangs", "parsed_arguments": {"x": 1}, "valid": True}])
    assert out["status"] == "timeout"
    stuck = [t for t in threading.enumerate() if t.name == "batchrun-tool"]
    assert stuck and all(t.daemon for t in stuck)  # exiting the process will not wait for it
    release.set()


def test_load_tool_module_errors(tmp_path) -> None:
    assert set(load_tool_module(SAMPLES / "mytools.py")) == {"convert_units", "lookup_capital"}
    (tmp_path / "broken.py").write_text("import not_a_module_xyz\n")
    with pytest.raises(InputError, match="failed to import"):
        load_tool_module(tmp_path / "broken.py")
    with pytest.raises(InputError, match="does not exist"):
        load_tool_module(tmp_path / "none.py")


def test_merge_rounds_describes_the_whole_row() -> None:
    record = Record(id="r", row=0)
    rounds = [
        {
            "sent_s": 1.0,
            "ttft_s": 0.2,
            "latency_s": 0.5,
            "total_s": 0.6,
            "itl_s": [0.1, 0.2],
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "tool_calls": [{"id": "c", "name": "f"}],
        },
        {
            "sent_s": 2.0,
            "ttft_s": 0.3,
            "latency_s": 0.4,
            "total_s": 0.45,
            "itl_s": [0.1],
            "prompt_tokens": 20,
            "completion_tokens": 2,
            "tool_calls": None,
        },
    ]
    merge_rounds(record, rounds, t0=0.0)
    assert (record.ttft_s, record.sent_s) == (0.2, 1.0)
    assert record.latency_s == pytest.approx(1.4) and record.total_s == pytest.approx(1.45)
    assert record.end_s == pytest.approx(2.45) and record.itl_s == [0.1, 0.2, 0.1]
    assert (record.prompt_tokens, record.completion_tokens) == (30, 5)
    assert record.tool_calls == [{"id": "c", "name": "f", "round": 0}]


# ---------------------------------------------------------------- against the built-in endpoint


def tool_job(i: int, text: str) -> Job:
    body = {
        "model": "batchrun-sim",
        "messages": [{"role": "user", "content": text}],
        "tools": TOOLS,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 24,
    }
    return Job(Prompt(id=f"r{i}", row=i, line=i + 2), json.dumps(body).encode(), 60, 10)


async def run_rows(sim, texts: list[str], runner: ToolRunner | None, rounds: int = 3) -> dict[str, Record]:
    records: list[Record] = []
    async with make_session(8) as session:
        pool = Pool(
            StreamClient(session, Endpoint(sim.base_url)),
            records.append,
            PoolConfig(concurrency=4, retries=0, max_tool_rounds=rounds),
            t0=time.perf_counter(),
            tool_runner=runner,
        )
        await pool.run(tool_job(i, t) for i, t in enumerate(texts))
    return {r.id: r for r in records}


@pytest.fixture
def runner() -> ToolRunner:
    return ToolRunner.from_file(SAMPLES / "mytools.py", timeout_s=0.5)


async def test_streamed_tool_call_is_assembled_from_several_chunks(sim) -> None:
    rows = await run_rows(sim, ["Use lookup_capital for Peru."], None)
    record = rows["r0"]
    assert record.status == "ok" and record.finish_reason == "tool_calls"
    [call] = record.tool_calls
    assert call["name"] == "lookup_capital" and call["parsed_arguments"] == {"country": "Peru"} and call["valid"]
    assert record.output_chunks >= 3  # the arguments arrived split across chunks
    assert record.ttft_s is not None and record.text == ""


async def test_tool_rows_and_plain_rows_mixed(sim, runner) -> None:
    texts = [
        "Use convert_units to turn 10 km into miles.",
        "Just say hi.",
        "Use convert_units for 2 kg and lookup_capital for Canada.",
        "Another plain row.",
    ]
    rows = await run_rows(sim, texts, runner)
    assert all(r.status == "ok" and r.finish_reason in ("stop", "length") and r.text for r in rows.values())
    assert rows["r1"].rounds is None and rows["r3"].rounds is None and not rows["r1"].tool_calls
    one, two = rows["r0"], rows["r2"]
    assert len(one.rounds) == 2 and one.rounds[0]["tool_results"][0]["status"] == "ok"
    assert [c["name"] for c in two.tool_calls] == ["convert_units", "lookup_capital"]
    results = [t["content"] for t in two.rounds[0]["tool_results"]]
    assert any("Ottawa" in c for c in results) and two.rounds[1]["tool_calls"] is None
    assert one.completion_tokens == sum(r["completion_tokens"] for r in one.rounds)


async def test_invalid_arguments_are_sent_back_as_a_tool_error(sim, runner) -> None:
    rows = await run_rows(sim, ["[[sim:bad_args]] Use lookup_capital for France."], runner)
    record = rows["r0"]
    assert record.status == "ok"  # not a transport failure
    first = record.rounds[0]
    assert not first["tool_calls"][0]["valid"]
    assert first["tool_results"][0]["status"] == "invalid_arguments"


async def test_a_tool_that_raises_or_hangs_becomes_its_result(sim, tmp_path) -> None:
    (tmp_path / "bad.py").write_text(
        "import asyncio\n"
        "def lookup_capital(country):\n    raise KeyError(country)\n"
        "async def convert_units(value, from_unit, to_unit):\n    await asyncio.sleep(30)\n"
    )
    runner = ToolRunner.from_file(tmp_path / "bad.py", timeout_s=0.2)
    rows = await run_rows(sim, ["Use lookup_capital for Peru.", "Use convert_units for 5 km."], runner)
    raised, hung = rows["r0"].rounds[0]["tool_results"][0], rows["r1"].rounds[0]["tool_results"][0]
    assert raised["status"] == "error" and "KeyError" in raised["content"]
    assert hung["status"] == "timeout"
    assert rows["r0"].status == rows["r1"].status == "ok"  # the model got the errors and answered


async def test_a_model_that_keeps_calling_tools_stops_at_the_round_limit(sim, runner) -> None:
    rows = await run_rows(sim, ["[[sim:always_tools]] Use lookup_capital for Japan."], runner, rounds=2)
    record = rows["r0"]
    assert record.status == "error" and record.error_type == "ToolRoundLimit"
    assert len(record.rounds) == 3 and "--max-tool-rounds 2" in record.error


# --workers 2: each worker process loads the tool module itself, from the path it is handed.
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["in-process", "two-workers"])
def test_tools_sample_end_to_end_on_the_cli(tmp_path, monkeypatch, workers: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(SAMPLES / "prompts.csv"),
            "--tools",
            str(SAMPLES / "tools.json"),
            "--tool-module",
            str(SAMPLES / "mytools.py"),
            "--out",
            "o",
            "-q",
            "--max-tokens",
            "16",
            *workers,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    with open(tmp_path / "o" / "results.csv", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert all(r["status"] == "ok" for r in rows.values())
    assert "Nairobi" in rows["t5"]["tool_calls"] or "Kenya" in rows["t5"]["tool_calls"]
    assert rows["t4"]["tool_calls"] == ""
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["tool_calls"]["records_with_tool_calls"] == 4


# ---------------------------------------------------------------- a forced tool call answered with text


def test_which_tool_choices_force_a_tool_call() -> None:
    named = {"type": "function", "function": {"name": "convert_units"}}
    assert forces_tool_call("required") and forces_tool_call(named)
    assert forces_tool_call({"type": "custom", "custom": {"name": "grep"}})
    assert forces_tool_call({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": []}})
    assert not forces_tool_call({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}})
    assert not any(forces_tool_call(c) for c in ("auto", "none", None, 3))
    assert body_forces_tool_call(json.dumps({"tools": TOOLS, "tool_choice": named}).encode())
    assert not body_forces_tool_call(json.dumps({"tools": TOOLS, "tool_choice": "auto"}).encode())
    assert not body_forces_tool_call(b'{"messages": []}') and not body_forces_tool_call(b'{"tool_choice": ')


@pytest.mark.parametrize("choice", ["required", "convert_units"])
def test_a_forced_tool_choice_answered_with_text_is_flagged_and_counted(fast_sim, tmp_path: Path, choice: str) -> None:
    """[[sim:no_tools]]: the built-in endpoint answers that row with text, as a server that ignores
    tool_choice would; the row stays ok, flagged in records and results, counted and warned."""
    write_prompts(tmp_path / "p.csv", ["convert 3 km to miles", "[[sim:no_tools]] convert 5 kg to lb", "hello"])
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(tmp_path / "p.csv"),
            "--base-url",
            fast_sim.base_url,
            "--tools",
            str(SAMPLES / "tools.json"),
            "--tool-choice",
            choice,
            "--out",
            str(tmp_path / "o"),
            "--max-tokens",
            "8",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    with open(tmp_path / "o" / "results.csv", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert {k: (r["status"], r["tool_choice_ignored"]) for k, r in rows.items()} == {
        "q0": ("ok", "false"),
        "q1": ("ok", "true"),
        "q2": ("ok", "false"),
    }
    assert rows["q1"]["tool_calls"] == "" and rows["q1"]["text"]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]
    assert summary["tool_choice_ignored"] == 1
    assert "1 of 3 ok answers are text although the request forced a tool call" in result.output


def test_no_tool_choice_or_auto_never_flags_a_text_answer(fast_sim, tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", ["[[sim:no_tools]] convert 5 kg to lb", "hello"])
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(tmp_path / "p.csv"),
            "--base-url",
            fast_sim.base_url,
            "-q",
            "--tools",
            str(SAMPLES / "tools.json"),
            "--tool-choice",
            "auto",
            "--out",
            str(tmp_path / "o"),
            "--max-tokens",
            "8",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["summary"]["tool_choice_ignored"] == 0
