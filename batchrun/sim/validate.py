"""Request-body checks for /v1/chat/completions, answered with OpenAI's own 400 messages."""

from __future__ import annotations

import json
from typing import Any

from batchrun.sim.tools import function_tools
from batchrun.sim.wire import TYPE_NAMES, ApiError, invalid_type

ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means "
            "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
            "payload, but what was sent was not valid JSON.)",
        ) from None
    if not isinstance(body, dict):
        raise invalid_type("body", "an object", body)
    return body


def validate_chat(body: dict[str, Any]) -> None:
    """Raise ApiError(400) for a malformed request; unknown parameters and value ranges are
    params.py's (strict mode only)."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ApiError(400, "you must provide a model parameter", param="model")
    _check_messages(body.get("messages"))
    _check_optional(body, "stream", bool)
    if "stream_options" in body and body["stream_options"] is not None:
        if body.get("stream") is not True:
            raise ApiError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        _check_optional(body, "stream_options", dict)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        _check_positive_int(body, name)
    if body.get("n") not in (None, 1):
        raise ApiError(400, "The sim answers with one choice only: leave out 'n' or set it to 1.", param="n")
    _check_tools(body)


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise ApiError(
            400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise ApiError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        _check_message(i, message)


def _check_message(i: int, message: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise invalid_type(where, "an object", message)
    role = message.get("role")
    if role not in ROLES:
        raise ApiError(
            400,
            f"Invalid value: {role!r}. Supported values are: " + ", ".join(repr(r) for r in ROLES) + ".",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = message.get("content")
    if content is None and role not in ("assistant", "function"):
        raise ApiError(
            400,
            f"Missing required parameter: '{where}.content'.",
            param=f"{where}.content",
            code="missing_required_parameter",
        )
    if content is not None and not isinstance(content, (str, list)):
        raise invalid_type(f"{where}.content", "one of a string or an array", content)


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not tools:
        raise ApiError(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            param="tool_choice",
        )
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise ApiError(
                400,
                f"Invalid value: {choice!r}. Supported values are: 'none', 'auto', and 'required'.",
                param="tool_choice",
                code="invalid_value",
            )
        return
    name = ((choice.get("function") or {}).get("name")) if isinstance(choice, dict) else None
    if name not in function_tools(tools):
        raise ApiError(
            400,
            f"Invalid value for 'tool_choice': function {name!r} is not among the tools.",
            param="tool_choice",
            code="invalid_value",
        )


def _check_optional(body: dict[str, Any], name: str, kind: type) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise invalid_type(name, TYPE_NAMES[kind], value)


def _check_positive_int(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_type(name, "an integer", value)
    if value < 1:
        raise ApiError(
            400,
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
