"""Streamed tool calls: `delta.tool_calls` fragments assembled by index into complete calls."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from batchrun.errors import InputError


class ToolCallAssembler:
    """Collects `delta.tool_calls` pieces; several parallel calls are kept apart by `index`.
    Name and argument fragments are kept as lists and joined once at the end: `+=` on a string
    would copy the whole so far for every fragment, quadratic in their number."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, deltas: list[dict[str, Any]]) -> None:
        for position, delta in enumerate(deltas):
            index = delta.get("index", position)
            call = self._calls.get(index)
            if call is None:
                call = self._calls[index] = {"index": index, "id": None, "type": "function",
                                             "name": [], "arguments": []}
            if delta.get("id"):
                call["id"] = delta["id"]
            if delta.get("type"):
                call["type"] = delta["type"]
            function = delta.get("function") or {}
            if function.get("name"):
                call["name"].append(function["name"])
            if function.get("arguments"):
                call["arguments"].append(function["arguments"])

    def calls(self) -> list[dict[str, Any]]:
        """The finished calls in index order, each with its arguments parsed where they are JSON."""
        return [_with_parsed_arguments({**call, "name": "".join(call["name"]), "arguments": "".join(call["arguments"])})
                for _, call in sorted(self._calls.items())]


def _with_parsed_arguments(call: dict[str, Any]) -> dict[str, Any]:
    out = dict(call)
    try:
        out["parsed_arguments"] = json.loads(call["arguments"]) if call["arguments"] else {}
        out["arguments_error"] = None
    except ValueError as exc:
        out["parsed_arguments"] = None
        out["arguments_error"] = f"arguments are not valid JSON: {exc}"
    return out


# ---------------------------------------------------------------- argument checks

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,), "null": (type(None),),
}


def argument_problems(arguments: Any, schema: dict[str, Any] | None) -> list[str]:
    """What is wrong with parsed arguments against a tool's `parameters` schema: required
    fields, top-level property types and enums (enough to catch a model's usual mistakes)."""
    if not isinstance(arguments, dict):
        return [f"arguments must be a JSON object, not {type(arguments).__name__}"]
    if not schema:
        return []
    problems = [f"missing required field {name!r}" for name in schema.get("required", [])
                if name not in arguments]
    for name, value in arguments.items():
        spec = (schema.get("properties") or {}).get(name)
        if not isinstance(spec, dict):
            continue
        wanted = spec.get("type")
        kinds = [wanted] if isinstance(wanted, str) else list(wanted or [])
        types = tuple(t for k in kinds for t in _JSON_TYPES.get(k, ()))
        # bool is an int in Python, never in JSON Schema
        if types and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            problems.append(f"field {name!r} should be {'/'.join(kinds)}, got {type(value).__name__}")
        elif "enum" in spec and value not in spec["enum"]:
            problems.append(f"field {name!r} must be one of {spec['enum']}, got {value!r}")
    return problems


def check_calls(calls: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Annotate each assembled call with `valid` and the problems of its arguments."""
    schemas = {t.get("function", {}).get("name"): t.get("function", {}).get("parameters")
               for t in tools or [] if isinstance(t, dict)}
    for call in calls:
        if call.get("arguments_error"):
            call["problems"] = [call["arguments_error"]]
        elif call["name"] not in schemas:
            call["problems"] = [f"the model called {call['name']!r}, which the request did not offer"]
        else:
            call["problems"] = argument_problems(call["parsed_arguments"], schemas[call["name"]])
        call["valid"] = not call["problems"]
    return calls


# ---------------------------------------------------------------- running the user's tools

def forces_tool_call(choice: Any) -> bool:
    """Whether a tool_choice obliges the model to call a tool: "required", a named function or
    custom tool, or allowed_tools in "required" mode (pure)."""
    if choice == "required":
        return True
    if not isinstance(choice, dict):
        return False
    if choice.get("type") == "allowed_tools":
        return (choice.get("allowed_tools") or {}).get("mode") == "required"
    return choice.get("type") in ("function", "custom")


def body_forces_tool_call(body: bytes) -> bool:
    """forces_tool_call of a request body's tool_choice; the body is parsed only when it names one."""
    if b'"tool_choice"' not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and forces_tool_call(data.get("tool_choice"))


class ToolRunner:
    """Runs the model's tool calls with the user's own functions (`--tool-module`).

    This executes the user's code in-process, and the arguments come from the model:
    treat them as untrusted input. Sync functions run in a worker thread so they never
    block the event loop; a call that exceeds `timeout_s` is reported as timed out (a sync
    function's thread cannot be killed and finishes in the background).
    """

    def __init__(self, functions: dict[str, Callable[..., Any]], timeout_s: float = 30.0) -> None:
        self.functions, self.timeout_s = functions, timeout_s

    @classmethod
    def from_file(cls, path: Path, timeout_s: float = 30.0) -> "ToolRunner":
        return cls(load_tool_module(path), timeout_s)

    async def run_calls(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One tool message per call (in call order), the calls running concurrently."""
        return list(await asyncio.gather(*(self._run(call) for call in calls)))

    async def _run(self, call: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        outcome = {"tool_call_id": call["id"], "name": call["name"]}
        function = self.functions.get(call["name"])
        if function is None:
            status, content = "unknown_tool", {"error": f"no function named {call['name']!r} in the tool module"}
        elif not call.get("valid", True):
            status, content = "invalid_arguments", {"error": "; ".join(call["problems"])}
        else:
            status, content = await self._invoke(function, call["parsed_arguments"])
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False, default=str)
        return {**outcome, "status": status, "content": text, "duration_s": time.perf_counter() - start}

    async def _invoke(self, function: Callable[..., Any], arguments: dict[str, Any]) -> tuple[str, Any]:
        try:
            if inspect.iscoroutinefunction(function):
                value = await asyncio.wait_for(function(**arguments), self.timeout_s)
            else:
                value = await asyncio.wait_for(_in_daemon_thread(function, arguments), self.timeout_s)
        except TimeoutError:
            return "timeout", {"error": f"the tool did not finish within {self.timeout_s:g}s"}
        except Exception as exc:  # noqa: BLE001 - the user's tool failing is a result, never a crash
            return "error", {"error": f"{type(exc).__name__}: {exc}"}
        return "ok", value


def _in_daemon_thread(function: Callable[..., Any], arguments: dict[str, Any]) -> "asyncio.Future[Any]":
    """Run a sync tool in a thread of its own. A daemon thread, not the loop's executor: a tool
    that hangs past its timeout must neither hold a pool thread that later calls need nor keep
    the process from exiting when the run is done."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(value)

    def target() -> None:
        try:
            value, error = function(**arguments), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:
            pass                      # the loop is gone: the run ended while this tool hung

    threading.Thread(target=target, name="batchrun-tool", daemon=True).start()
    return future


def load_tool_module(path: Path) -> dict[str, Callable[..., Any]]:
    """The public functions of a Python file, by name."""
    if not path.is_file():
        raise InputError("the tool module does not exist", path=str(path))
    spec = importlib.util.spec_from_file_location(f"batchrun_tools_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise InputError("cannot load this file as a Python module", path=str(path))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module is an input error
        raise InputError(f"the tool module failed to import: {type(exc).__name__}: {exc}", path=str(path)) from exc
    functions = {name: obj for name, obj in vars(module).items()
                 if callable(obj) and not name.startswith("_") and inspect.isfunction(obj)
                 and obj.__module__ == module.__name__}
    if not functions:
        raise InputError("the tool module defines no public functions", path=str(path))
    return functions


# ---------------------------------------------------------------- rounds in the record

def assistant_message(text: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant turn that asked for `calls`, as the next request must repeat it."""
    return {"role": "assistant", "content": text or None,
            "tool_calls": [{"id": c["id"], "type": c.get("type") or "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]}


def round_entry(result: Any, attempts: list[Any], t0: float) -> dict[str, Any]:
    """One model call of a tool-calling row, as kept in `Record.rounds`."""
    return {"status": result.status, "error_type": result.error_type, "attempts": len(attempts),
            "sent_s": result.sent - t0, "ttft_s": result.ttft_s, "latency_s": result.latency_s,
            "total_s": result.total_s, "itl_s": list(result.itl_s), "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens, "finish_reason": result.finish_reason,
            "text": result.text, "tool_calls": result.tool_calls, "tool_results": None}


def merge_rounds(record: Any, rounds: list[dict[str, Any]], t0: float) -> None:
    """Make a multi-round record describe the whole row.

    text and finish_reason: the final answer's. Tokens: summed over rounds. ttft_s: the first
    round's. sent_s / latency_s / total_s: from the first round's send to the final round's
    last output chunk / end, so they include tool execution and follow-up requests. itl_s:
    every round's gaps, never the gap across a tool execution (so, unlike a single request,
    latency_s - ttft_s > sum(itl_s) here). tool_calls: every call of every round, with its round.
    """
    record.rounds = rounds
    if len(rounds) < 2:
        return
    first, last = rounds[0], rounds[-1]
    record.ttft_s = first["ttft_s"]
    record.sent_s = first["sent_s"]
    if last["latency_s"] is not None:
        record.latency_s = last["sent_s"] + last["latency_s"] - first["sent_s"]
    if last["total_s"] is not None:
        record.total_s = last["sent_s"] + last["total_s"] - first["sent_s"]
        record.end_s = record.sent_s + record.total_s
    record.itl_s = [gap for r in rounds for gap in r["itl_s"]]
    if all(r["completion_tokens"] is not None for r in rounds):
        record.prompt_tokens = sum(r["prompt_tokens"] or 0 for r in rounds)
        record.completion_tokens = sum(r["completion_tokens"] for r in rounds)
    record.tool_calls = [{**call, "round": i} for i, r in enumerate(rounds) for call in r["tool_calls"] or []]
    if record.completion_tokens and record.latency_s:
        record.output_tokens_per_s = record.completion_tokens / record.latency_s
