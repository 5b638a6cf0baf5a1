"""Tool calls: which tools a request calls, and JSON arguments generated from each tool's schema.

The decision is deterministic: a tool named in the last user message is called (two named tools:
two parallel calls, unless parallel_tool_calls is false); else tool_choice "required", a named
function, or the [[sim:tools]] directive forces one; else a seeded roll against tool_call_rate.
[[sim:no_tools]] answers with text whatever tool_choice says, as a server that ignores it would.
After a `role: "tool"` result the answer is plain content, unless [[sim:always_tools]] is given.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any, Iterator

from batchrun.sim.directives import Directives
from batchrun.sim.text import word

_NUMBER_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_MARKER_RE = re.compile(r"\[\[sim:[^\]]*\]\]")
_SENTENCE_RE = re.compile(r"[.!?\n]+")


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str  # "call_..."
    name: str
    arguments: str  # JSON text (deliberately broken under [[sim:bad_args]])


def function_tools(tools: Any) -> dict[str, dict[str, Any]]:
    """name -> parameters schema for each `{"type": "function"}` tool, in the request's order."""
    out: dict[str, dict[str, Any]] = {}
    for tool in tools if isinstance(tools, list) else []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            out[fn["name"]] = params if isinstance(params, dict) else {}
    return out


def choose_tools(
    body: dict[str, Any], user_text: str, last_role: str, d: Directives, rng: random.Random, tool_call_rate: float
) -> list[str]:
    """Names of the tools this request calls, in call order (empty: answer with content)."""
    tools = list(function_tools(body.get("tools")))
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none" or d.no_tools or (last_role == "tool" and not d.always_tools):
        return []
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return [name] if name in tools else []
    named = mentioned_tools(tools, user_text)
    if named:
        return named if body.get("parallel_tool_calls", True) is not False else named[:1]
    forced = choice == "required" or d.tools or d.always_tools
    if forced or rng.random() < tool_call_rate:
        return [tools[rng.randrange(len(tools))]]
    return []


def mentioned_tools(tools: list[str], text: str) -> list[str]:
    """Tools whose name appears as a whole word in text, ordered by first mention."""
    hits = []
    for name in tools:
        m = re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", text)
        if m:
            hits.append((m.start(), name))
    return [name for _, name in sorted(hits)]


def make_calls(
    names: list[str], body: dict[str, Any], user_text: str, rng: random.Random, bad_args: bool
) -> list[ToolCall]:
    schemas = function_tools(body.get("tools"))
    ctx = _ArgContext(user_text, rng)
    calls = []
    for name in names:
        args = json.dumps(value_for(schemas.get(name, {}), ctx), separators=(",", ":"))
        if bad_args:
            args = args[:-1]  # drop the closing brace: truncated, as a model cut off mid-call would send
        calls.append(ToolCall(id=f"call_{rng.getrandbits(96):024x}", name=name, arguments=args))
    return calls


def split_arguments(arguments: str, rng: random.Random) -> list[str]:
    """Pieces of 2-6 characters, the way a model streams arguments a token at a time."""
    pieces, i = [], 0
    while i < len(arguments):
        step = rng.randint(2, 6)
        pieces.append(arguments[i : i + step])
        i += step
    return pieces or [""]


class _ArgContext:
    """Values to fill arguments with: numbers and proper nouns from the prompt first, then words."""

    def __init__(self, text: str, rng: random.Random) -> None:
        text = _MARKER_RE.sub(" ", text)
        self.rng = rng
        self.numbers: Iterator[str] = iter(_NUMBER_RE.findall(text))
        self.names: Iterator[str] = iter(_proper_nouns(text))

    def number(self) -> str | None:
        return next(self.numbers, None)

    def string(self) -> str:
        return next(self.names, None) or word(self.rng)


def _proper_nouns(text: str) -> list[str]:
    """Capitalised words that do not start a sentence: 'weather in Paris and Tokyo' -> Paris, Tokyo."""
    out = []
    for sentence in _SENTENCE_RE.split(text):
        words = re.findall(r"[A-Za-z][\w'-]*", sentence)
        out += [w for w in words[1:] if w[0].isupper() and w != "I"]
    return out


def value_for(schema: Any, ctx: _ArgContext) -> Any:
    """A deterministic value that validates against a (simple) JSON schema."""
    if not isinstance(schema, dict):
        return ctx.string()
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return value_for(schema[key][0], ctx)
    return _BY_TYPE.get(_type_of(schema), _string)(schema, ctx)


def _type_of(schema: dict[str, Any]) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t is None:
        return "object" if "properties" in schema else "string"
    return str(t)


def _object(schema: dict[str, Any], ctx: _ArgContext) -> dict[str, Any]:
    props = schema.get("properties") or {}
    required = schema.get("required")
    keys = required if isinstance(required, list) else list(props)
    return {k: value_for(props.get(k, {}), ctx) for k in keys}


def _array(schema: dict[str, Any], ctx: _ArgContext) -> list[Any]:
    return [value_for(schema.get("items", {}), ctx) for _ in range(max(1, schema.get("minItems", 1)))]


def _integer(schema: dict[str, Any], ctx: _ArgContext) -> int:
    raw = ctx.number()
    value = int(float(raw)) if raw is not None else ctx.rng.randint(1, 100)
    return int(_clamp(value, schema))


def _number(schema: dict[str, Any], ctx: _ArgContext) -> float:
    raw = ctx.number()
    value = float(raw) if raw is not None else round(ctx.rng.uniform(0, 100), 2)
    return float(_clamp(value, schema))


def _clamp(value: float, schema: dict[str, Any]) -> float:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    value = max(value, lo) if isinstance(lo, (int, float)) else value
    return min(value, hi) if isinstance(hi, (int, float)) else value


def _string(schema: dict[str, Any], ctx: _ArgContext) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return "2024-01-15"
    if fmt == "date-time":
        return "2024-01-15T12:00:00Z"
    return ctx.string()


_BY_TYPE = {
    "object": _object,
    "array": _array,
    "integer": _integer,
    "number": _number,
    "string": _string,
    "boolean": lambda schema, ctx: True,
    "null": lambda schema, ctx: None,
}
