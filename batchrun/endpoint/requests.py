"""Prompt + run-wide defaults -> the JSON body for POST /chat/completions (pure, no I/O), the
token estimates charged before a request is sent, and the Job that carries both to the engine.

Precedence, lowest to highest, for an ordinary row:

    run-wide options (RequestDefaults)  <  extra_body  <  the row's own fields

extra_body is the power user's escape hatch, so it beats the named run-wide options it
repeats, but a value written on a row is the most specific thing there is and always wins.
`messages` and `stream` are ours: the conversation comes from the row and every request
streams (batchrun times every chunk), so extra_body cannot replace them. `max_tokens` and
`max_completion_tokens` are one setting under two names: a layer that sets either replaces
both from the layers below, so a body never carries two contradicting limits.

A Batch API line's body is sent as written; only the stream fields are added, and the
run-wide model when the body names none.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from batchrun.inputs.prompt import Prompt

if TYPE_CHECKING:  # the SDK's TypedDicts document shapes; no SDK object is used at runtime
    from openai.types.chat import ChatCompletionToolChoiceOptionParam

TOKEN_LIMITS = ("max_tokens", "max_completion_tokens")
RESERVED_BODY_KEYS = frozenset({"messages", "stream"})  # extra_body may not set these
DEFAULT_OUTPUT_TOKENS = 256  # charged for a reply when no max_tokens is known anywhere
CHARS_PER_TOKEN = 4  # UTF-8 bytes per token for English text with GPT-style tokenizers
TOKENS_PER_MESSAGE = 4  # chat-template overhead per message (role markers, separators)
TOKENS_PER_IMAGE = 85  # OpenAI's charge for a low-detail image; a guess for other servers


@dataclass(frozen=True, slots=True)
class RequestDefaults:
    """Run-wide request fields; None means "leave it to the server"."""

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)  # merged as is (see module doc)
    tools: list[dict[str, Any]] | None = None  # as the user gave them (--tools): OpenAI's shape, not checked here
    tool_choice: ChatCompletionToolChoiceOptionParam | None = None  # only sent when the body has tools
    parallel_tool_calls: bool | None = None  # only sent when the body has tools
    response_format: dict[str, Any] | None = None  # --json / --json-schema (see answers.py)


@dataclass(frozen=True, slots=True)
class Job:
    """A prompt ready to send: its body bytes and the TPM charge estimated before sending."""

    prompt: Prompt
    body: bytes
    estimated_tokens: int  # prompt estimate + max_tokens, charged before the request
    prompt_tokens_estimate: int  # used in the record when the server sends no usage
    request: dict[str, Any] | None = None  # the body as sent, kept in the record (None: --no-save-request)


def build_body(prompt: Prompt, defaults: RequestDefaults) -> dict[str, Any]:
    """The body for one prompt: openai's CompletionCreateParamsStreaming plus any extra_body keys."""
    if prompt.body is not None:
        return _batch_body(prompt.body, defaults)
    body: dict[str, Any] = {}
    if defaults.model is not None:
        body["model"] = defaults.model
    body["messages"] = prompt.messages or []
    _layer(body, _named_defaults(defaults))
    _layer(body, {k: v for k, v in defaults.extra_body.items() if k not in RESERVED_BODY_KEYS})
    _layer(body, prompt.params)
    _tool_options(body, defaults)
    return _streaming(body, defaults.extra_body.get("stream_options"))


def _named_defaults(defaults: RequestDefaults) -> dict[str, Any]:
    named = {
        "max_tokens": defaults.max_tokens,
        "temperature": defaults.temperature,
        "tools": defaults.tools,
        "response_format": defaults.response_format,
    }
    return {k: v for k, v in named.items() if v is not None}


def _layer(body: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Apply one precedence layer; a token limit here replaces the one from below."""
    if any(name in fields for name in TOKEN_LIMITS):
        for name in TOKEN_LIMITS:
            body.pop(name, None)
    body.update(fields)


def _tool_options(body: dict[str, Any], defaults: RequestDefaults) -> None:
    # Run-wide tool_choice / parallel_tool_calls make OpenAI reject a request without tools,
    # so they apply only where tools ended up in the body; explicit ones are left alone.
    if not body.get("tools"):
        return
    if defaults.tool_choice is not None:
        body.setdefault("tool_choice", defaults.tool_choice)
    if defaults.parallel_tool_calls is not None:
        body.setdefault("parallel_tool_calls", defaults.parallel_tool_calls)


def _batch_body(source: Mapping[str, Any], defaults: RequestDefaults) -> dict[str, Any]:
    body = dict(source)
    if "model" not in body and defaults.model is not None:
        body["model"] = defaults.model
    return _streaming(body, body.get("stream_options"))


def _streaming(body: dict[str, Any], options: Any) -> dict[str, Any]:
    # include_usage makes the server send a final usage chunk: real token counts, not estimates.
    body["stream"] = True
    body["stream_options"] = {**(options if isinstance(options, Mapping) else {}), "include_usage": True}
    return body


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Input tokens, estimated without a tokenizer: ceil(UTF-8 bytes / 4) + 4 per message.

    UTF-8 bytes, not characters: English is ~4 characters (= bytes) per token, while CJK
    text is ~1 token per 3-byte character, which a character count would underestimate
    4-fold; for TPM budgeting an overestimate is the safe side. Counted: every text content
    and part, tool-call arguments, tool definitions; 85 tokens per image part. At least 1.
    """
    size, images = 0, 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, Mapping):
            part_size, part_images = _message_size(message)
            size, images = size + part_size, images + part_images
    if body.get("tools"):
        size += _json_size(body["tools"])
    count = len(messages) if isinstance(messages, list) else 0
    return max(1, math.ceil(size / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * count + TOKENS_PER_IMAGE * images)


def _message_size(message: Mapping[str, Any]) -> tuple[int, int]:
    """(UTF-8 bytes of text, number of image parts) in one message."""
    content = message.get("content")
    size, images = _text_size(content), 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                size += _text_size(part.get("text"))
                images += part.get("type") in ("image_url", "input_image")
    for call in message.get("tool_calls") or ():
        size += _json_size(call)
    return size, images


def _text_size(value: Any) -> int:
    return len(value.encode("utf-8", "replace")) if isinstance(value, str) else 0


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "replace"))


def estimate_request_tokens(body: Mapping[str, Any], default_max_tokens: int | None = None) -> int:
    """Tokens a request may use, for TPM charging before it is sent: prompt estimate + output limit.

    The output limit is the body's max_completion_tokens or max_tokens, else
    `default_max_tokens`, else DEFAULT_OUTPUT_TOKENS (256).
    """
    return estimate_prompt_tokens(body) + _output_limit(body, default_max_tokens)


def _output_limit(body: Mapping[str, Any], default_max_tokens: int | None) -> int:
    for name in reversed(TOKEN_LIMITS):  # max_completion_tokens is the newer, preferred name
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default_max_tokens if default_max_tokens is not None else DEFAULT_OUTPUT_TOKENS


# ---------------------------------------------------------------- the text of a row, for /completions and /embeddings


def prompt_text(prompt: Prompt) -> str:
    """A row's conversation as one prompt string: the text of every message, in order, one blank
    line apart (a system message first, as --system puts it). Content parts contribute their text."""
    if prompt.body is not None:
        value = prompt.body.get("prompt") or prompt.body.get("input")
        if isinstance(value, str):
            return value
    parts = []
    for message in prompt.messages or []:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        if isinstance(content, str) and content:
            parts.append(content)
    return "\n\n".join(parts)
