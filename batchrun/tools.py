"""Streamed tool calls: `delta.tool_calls` fragments assembled by index into complete calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batchrun.errors import InputError


class ToolCallAssembler:
    """Collects `delta.tool_calls` pieces; several parallel calls are kept apart by `index`."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, deltas: list[dict[str, Any]]) -> None:
        for position, delta in enumerate(deltas):
            index = delta.get("index", position)
            call = self._calls.get(index)
            if call is None:
                call = self._calls[index] = {"index": index, "id": None, "type": "function",
                                             "name": "", "arguments": ""}
            if delta.get("id"):
                call["id"] = delta["id"]
            if delta.get("type"):
                call["type"] = delta["type"]
            function = delta.get("function") or {}
            if function.get("name"):
                call["name"] += function["name"]
            if function.get("arguments"):
                call["arguments"] += function["arguments"]

    def calls(self) -> list[dict[str, Any]]:
        """The finished calls in index order, each with its arguments parsed where they are JSON."""
        return [_with_parsed_arguments(self._calls[i]) for i in sorted(self._calls)]


def _with_parsed_arguments(call: dict[str, Any]) -> dict[str, Any]:
    out = dict(call)
    try:
        out["parsed_arguments"] = json.loads(call["arguments"]) if call["arguments"] else {}
        out["arguments_error"] = None
    except ValueError as exc:
        out["parsed_arguments"] = None
        out["arguments_error"] = f"arguments are not valid JSON: {exc}"
    return out


def load_tool_definitions(path: Path) -> list[dict[str, Any]]:
    """A JSON file holding a list of OpenAI tool definitions, checked for the fields the API needs."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the tools file: {exc.strerror}", path=str(path)) from exc
    except ValueError as exc:
        raise InputError(f"not valid JSON: {exc}", path=str(path),
                         hint="the file must hold a JSON list of tool definitions") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError("expected a JSON list of tool definitions", path=str(path))
    for i, tool in enumerate(data):
        name = tool.get("function", {}).get("name") if isinstance(tool, dict) else None
        if not name:
            raise InputError(f"tool #{i + 1} has no function.name", path=str(path),
                             hint='each tool is {"type": "function", "function": {"name": ..., "parameters": {...}}}')
    return data
