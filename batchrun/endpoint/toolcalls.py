"""Tool calls in an answer: `delta.tool_calls` fragments assembled by index into complete calls,
checked against the tools the request offered, and whether a request obliges the model to call one
(pure; the chat stream parser, the Batch API's result lines and the pool use them)."""

from __future__ import annotations

import json
from typing import Any


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
                call = self._calls[index] = {
                    "index": index,
                    "id": None,
                    "type": "function",
                    "name": [],
                    "arguments": [],
                }
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
        return [
            _with_parsed_arguments({**call, "name": "".join(call["name"]), "arguments": "".join(call["arguments"])})
            for _, call in sorted(self._calls.items())
        ]


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
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def argument_problems(arguments: Any, schema: dict[str, Any] | None) -> list[str]:
    """What is wrong with parsed arguments against a tool's `parameters` schema: required
    fields, top-level property types and enums (enough to catch a model's usual mistakes)."""
    if not isinstance(arguments, dict):
        return [f"arguments must be a JSON object, not {type(arguments).__name__}"]
    if not schema:
        return []
    problems = [f"missing required field {name!r}" for name in schema.get("required", []) if name not in arguments]
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
    schemas = {
        t.get("function", {}).get("name"): t.get("function", {}).get("parameters")
        for t in tools or []
        if isinstance(t, dict)
    }
    for call in calls:
        if call.get("arguments_error"):
            call["problems"] = [call["arguments_error"]]
        elif call["name"] not in schemas:
            call["problems"] = [f"the model called {call['name']!r}, which the request did not offer"]
        else:
            call["problems"] = argument_problems(call["parsed_arguments"], schemas[call["name"]])
        call["valid"] = not call["problems"]
    return calls


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
