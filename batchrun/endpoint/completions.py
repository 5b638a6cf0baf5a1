"""The completions kind: one streamed POST /completions per row, a `prompt` string instead of
`messages`. Its stream is read by sse.TextSSEStream (`choices[0].text` instead of a delta); the
transport and the record are chat's."""

from __future__ import annotations

from typing import Any

from batchrun.endpoint.assemble import to_record
from batchrun.endpoint.kinds import Kind
from batchrun.endpoint.requests import RequestDefaults, build_body, prompt_text
from batchrun.endpoint.sse import TextSSEStream
from batchrun.endpoint.transport import StreamClient
from batchrun.inputs.prompt import Prompt

COMPLETION_DROPPED = frozenset({"messages", "tools", "tool_choice", "parallel_tool_calls", "max_completion_tokens"})


def build_completion_body(prompt: Prompt, defaults: RequestDefaults) -> dict[str, Any]:
    """The body for POST /completions: `prompt` instead of `messages`, the same precedence of
    run-wide options < extra_body < row fields; chat-only fields (tools, ...) are left out and
    max_completion_tokens becomes max_tokens (the only name /completions knows)."""
    chat = build_body(prompt, defaults)
    limit = chat.get("max_completion_tokens", chat.get("max_tokens"))
    body = {k: v for k, v in chat.items() if k not in COMPLETION_DROPPED and k != "max_tokens"}
    body["prompt"] = prompt_text(prompt)
    if limit is not None:
        body["max_tokens"] = limit
    return body


KIND = Kind("completions", "completions", build_completion_body, TextSSEStream, to_record, StreamClient)
