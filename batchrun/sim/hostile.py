"""A hostile Batch API provider, for batchrun's own tests: output lines broken in every way a
reader must survive (`[[sim:batch_line=K]]`), credentials echoed back into job errors and result
lines (`batch_echo_auth`), and job objects with fields replaced (`batch_patch`).

Nothing here runs unless a test asks for it: the directives and both SimConfig fields are off by
default.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from batchrun.sim.http import Request


def echo_of(req: Request) -> str:
    """The credentials a request came with, as a careless provider would quote them back: the
    Authorization header, its Basic credentials decoded, and the query string."""
    auth = req.headers.get(b"authorization", b"").decode("latin-1")
    decoded = ""
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:]).decode("latin-1")
        except (binascii.Error, ValueError):
            decoded = "?"
    return f"you sent Authorization: {auth} (that is {decoded or auth[7:]}) with query {req.query or '-'}"


def echo_errors(echo: str) -> list[dict[str, Any]]:
    """A job's `errors.data` quoting the credentials (on any status, as a hostile provider may)."""
    return [{"code": "echo", "message": f"quota check for {echo}", "param": None, "line": None}]


def patched(obj: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    """A Batch object with `batch_patch`'s fields put over its own."""
    return {**obj, **patch} if patch else obj


def broken_line(kind: str, good: bytes) -> bytes:
    """An output line (newline included) broken the `kind` way (directives.BATCH_LINE_KINDS)."""
    if kind == "not_json":  # cut short: the custom_id is still at its start
        return good[: max(len(good) // 2, 40)].rstrip(b"\n") + b"\n"
    if kind == "garbage":
        return b"<html>upstream hiccup</html>\n"
    if kind == "duplicate":
        return good + _dumps(_changed(json.loads(good), "content", "a second, different answer"))
    line = json.loads(good)
    if kind == "line_array":
        return _dumps([line])
    return _dumps(_BREAKERS[kind](line))


def _message(line: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = line["response"]["body"]["choices"][0]["message"]
    return message


def _changed(line: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    _message(line)[field] = value
    return line


def _set(path: tuple[str, ...], value: Any) -> Any:
    def breaker(line: dict[str, Any]) -> dict[str, Any]:
        target: Any = line
        for name in path[:-1]:
            target = target[name][0] if name == "choices" else target[name]
        target[path[-1]] = value
        return line

    return breaker


def _split_content(line: dict[str, Any]) -> dict[str, Any]:
    text = _message(line)["content"] or ""
    half = len(text) // 2
    return _changed(line, "content", [{"type": "text", "text": text[:half]}, {"type": "text", "text": text[half:]}])


def _without(name: str) -> Any:
    def breaker(line: dict[str, Any]) -> dict[str, Any]:
        line.pop(name, None)
        return line

    return breaker


_BREAKERS = {
    "status_code": _set(("response", "status_code"), "abc"),
    "usage": _set(("response", "body", "usage"), "lots"),
    "choices": _set(("response", "body", "choices"), {}),
    "message": _set(("response", "body", "choices", "message"), "str"),
    "tool_calls": lambda line: _changed(line, "tool_calls", ["x"]),
    "content_number": lambda line: _changed(line, "content", 42),
    "content_parts": _split_content,
    "refusal_part": lambda line: _changed(line, "content", [{"type": "refusal", "refusal": "I cannot help."}]),
    "bad_part": lambda line: _changed(line, "content", [{"type": "image_url", "image_url": {"url": "x"}}]),
    "no_custom_id": _without("custom_id"),
    "unknown_custom_id": lambda line: {**line, "custom_id": "nobody-" + str(line["custom_id"])},
    "no_response": lambda line: {**line, "response": None, "error": None},
}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
