"""OpenAI's JSON shapes: errors, model lists, chat completions and their stream chunks."""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from batchrun.sim.tools import ToolCall

FINGERPRINT = "fp_sim"
DONE = b"data: [DONE]\n\n"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class ApiError(Exception):
    """An HTTP error answered with OpenAI's body: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = list(headers)

    def body(self) -> bytes:
        return dumps({"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}})


_SERVER_ERRORS = {
    500: ("The server had an error while processing your request. Sorry about that!", "server_error"),
    502: ("Bad gateway.", "server_error"),
    503: ("The engine is currently overloaded, please try again later.", "server_error"),
}


def server_error(status: int, retry_after_s: float | None = None) -> ApiError:
    message, kind = _SERVER_ERRORS.get(status, (f"Simulated error {status}.", "server_error"))
    if status < 500:
        kind = "invalid_request_error"
    headers = retry_after_headers(retry_after_s) if retry_after_s is not None else []
    return ApiError(status, message, kind, headers=headers)


def retry_after_headers(seconds: float) -> list[tuple[str, str]]:
    """`retry-after` in whole seconds (rounded up, as HTTP wants) and OpenAI's `retry-after-ms`."""
    ms = max(0, math.ceil(seconds * 1000))
    return [("retry-after", str(math.ceil(ms / 1000))), ("retry-after-ms", str(ms))]


def rate_limit_error(kind: str, model: str, limit: int, used: int, requested: int, wait_s: float) -> ApiError:
    """429 as OpenAI words it; `kind` is "requests" or "tokens" (also the error's type)."""
    unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    message = (
        f"Rate limit reached for {model} in organization org-sim on {unit}: Limit {limit}, "
        f"Used {used}, Requested {requested}. Please try again in {wait_s:.3g}s."
    )
    return ApiError(429, message, kind, code="rate_limit_exceeded", headers=retry_after_headers(wait_s))


def injected_429(retry_after_s: float) -> ApiError:
    message = "Rate limit reached (simulated). Please try again in a moment."
    return ApiError(429, message, "requests", code="rate_limit_exceeded", headers=retry_after_headers(retry_after_s))


def invalid_api_key(given: str | None) -> ApiError:
    if not given:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    else:
        shown = given[:3] + "*" * 6 + given[-4:] if len(given) > 8 else "*" * len(given)
        message = f"Incorrect API key provided: {shown}. You can find your API key in the sim's --api-key."
    return ApiError(401, message, code="invalid_api_key")


def model_not_found(model: str) -> ApiError:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return ApiError(404, message, code="model_not_found")


def invalid_url(method: str, path: str) -> ApiError:
    return ApiError(404, f"Invalid URL ({method} {path})")


TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    float: "a number",
    type(None): "null",
}


def invalid_type(param: str, expected: str, value: Any) -> ApiError:
    """OpenAI's 400 for a field of the wrong JSON type, naming the type it got."""
    got = TYPE_NAMES.get(type(value), type(value).__name__)
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        param=param,
        code="invalid_type",
    )


def model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "batchrun-sim"}


def models_body(models: Sequence[str], created: int) -> bytes:
    return dumps({"object": "list", "data": [model_object(m, created) for m in models]})


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def completion_body(
    cid: str,
    created: int,
    model: str,
    text: str | None,
    calls: Sequence[ToolCall],
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    logprobs: Any = None,
) -> bytes:
    """A non-streamed `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
    return dumps(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens, cached_tokens),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
    )


_USAGE_NULL_END = b'"usage":null}\n\n'


def place_usage(
    placement: str, units: list[bytes], finish: bytes, usage_event: bytes, usage_json: bytes
) -> tuple[list[bytes], bytes]:
    """(units, tail) of a stream that asked for usage, with usage where `placement` puts it:
    trailing (`usage_event`, a chunk of its own after the finish chunk, as OpenAI sends it),
    finish (on the finish chunk), content (on the last output chunk) or none. `finish` and every
    unit end in `"usage":null}` (include_usage): the object replaces that null."""
    if placement == "content" and units:
        return units[:-1] + [_with_usage(units[-1], usage_json)], finish
    if placement in ("finish", "content"):
        return units, _with_usage(finish, usage_json)
    if placement == "none":
        return units, finish
    return units, finish + usage_event


def _with_usage(event: bytes, usage_json: bytes) -> bytes:
    if not event.endswith(_USAGE_NULL_END):
        raise ValueError("the event has no usage field to fill")
    return event[: -len(_USAGE_NULL_END)] + b'"usage":' + usage_json + b"}\n\n"


class ChunkEncoder:
    """Builds `data: {chat.completion.chunk}\\n\\n` events from pre-encoded pieces.

    Content tokens come from the sim's word list (ASCII letters, spaces, periods), so they go
    between fixed byte prefixes without json.dumps: the fast path costs one concat per token.
    """

    def __init__(self, cid: str, created: int, model: str, include_usage: bool) -> None:
        self._head = (
            b'data: {"id":"'
            + cid.encode()
            + b'","object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + dumps(model)
            + b',"system_fingerprint":"'
            + FINGERPRINT.encode()
            + b'",'
        )
        self._open = self._head + b'"choices":[{"index":0,"delta":'
        self._usage_null = b',"usage":null' if include_usage else b""
        self._close = b',"logprobs":null,"finish_reason":null}]' + self._usage_null + b"}\n\n"
        self._content_open = self._open + b'{"content":"'
        self._content_close = b'"}' + self._close

    def role(self) -> bytes:
        return self._open + b'{"role":"assistant","content":"","refusal":null}' + self._close

    def content(self, token: str) -> bytes:
        return self._content_open + token.encode() + self._content_close

    def content_logprobs(self, token: str, entry: dict[str, Any]) -> bytes:
        """A content chunk carrying its token's logprobs (the slow path: only when asked for)."""
        return (
            self._open
            + b'{"content":'
            + dumps(token)
            + b'},"logprobs":'
            + dumps({"content": [entry], "refusal": None})
            + b',"finish_reason":null}]'
            + self._usage_null
            + b"}\n\n"
        )

    def tool_start(self, index: int, call: ToolCall) -> bytes:
        delta = {
            "tool_calls": [
                {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            ]
        }
        return self._open + dumps(delta) + self._close

    def tool_args(self, index: int, piece: str) -> bytes:
        return self._open + dumps({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}) + self._close

    def finish(self, reason: str) -> bytes:
        return (
            self._open
            + b'{},"logprobs":null,"finish_reason":"'
            + reason.encode()
            + b'"}]'
            + self._usage_null
            + b"}\n\n"
        )

    def usage(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> bytes:
        return (
            self._head
            + b'"choices":[],"usage":'
            + dumps(usage(prompt_tokens, completion_tokens, cached_tokens))
            + b"}\n\n"
        )

    def malformed(self) -> bytes:
        """A `data:` line cut off mid-JSON, as a broken proxy might forward it."""
        return self._open + b'{"content":"unterminated\n\n'
