"""The user's side of tool calling: a --tools definitions file, and running the model's calls
with the user's own functions (--tool-module), round after round."""

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
            pass  # the loop is gone: the run ended while this tool hung

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
    functions: dict[str, Callable[..., Any]] = {
        name: obj
        for name, obj in vars(module).items()
        if callable(obj) and not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__
    }
    if not functions:
        raise InputError("the tool module defines no public functions", path=str(path))
    return functions


# ---------------------------------------------------------------- rounds in the record


def assistant_message(text: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant turn that asked for `calls`, as the next request must repeat it."""
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {
                "id": c["id"],
                "type": c.get("type") or "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in calls
        ],
    }


def round_entry(result: Any, attempts: list[Any], t0: float) -> dict[str, Any]:
    """One model call of a tool-calling row, as kept in `Record.rounds`."""
    return {
        "status": result.status,
        "error_type": result.error_type,
        "attempts": len(attempts),
        "sent_s": result.sent - t0,
        "ttft_s": result.ttft_s,
        "latency_s": result.latency_s,
        "total_s": result.total_s,
        "itl_s": list(result.itl_s),
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "finish_reason": result.finish_reason,
        "text": result.text,
        "tool_calls": result.tool_calls,
        "tool_results": None,
    }


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
