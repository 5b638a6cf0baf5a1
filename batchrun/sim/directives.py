"""Prompt directives: `[[sim:...]]` markers in the last user message that force one request's behaviour.

    [[sim:error=500]]      answer with that HTTP error (any 4xx/5xx; 429 carries retry-after)
    [[sim:cut=5]]          close the connection after 5 output chunks (no [DONE])
    [[sim:stall=3]]        go silent after 3 output chunks for stall_s seconds
    [[sim:malformed=2]]    a non-JSON `data:` line after 2 output chunks (`malformed` alone: after 1)
    [[sim:tokens=64]]      exactly 64 output tokens (still capped by max_tokens)
    [[sim:ttft=0.5]]       this request's TTFT is 0.5 s, without queueing
    [[sim:tools]]          call a tool (as with tool_choice "required")
    [[sim:always_tools]]   keep calling tools even after tool results
    [[sim:bad_args]]       tool-call arguments that are not valid JSON
    [[sim:batch_line=K]]   Batch API only: the request's output line is broken the K way (see
                           BATCH_LINE_KINDS; a hostile provider's file, for batchrun's tests)
    [[sim:batch_bytes=N]]  Batch API only: the answer is padded so its output line is N bytes
    [[sim:no_tools]]       answer with text even when tool_choice forces a tool call (a server that
                           ignores tool_choice)
    [[sim:empty]]          end the answer at once: no content, finish_reason "stop", usage
                           completion_tokens 1 (a stop sequence that matched the first token)

A suffix `xN` makes a directive fire only on the first N attempts of an identical request body,
e.g. `[[sim:error=500x2]]` fails twice, then succeeds. Several directives may share one marker,
separated by commas: `[[sim:tokens=32,cut=10]]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MARKER = "[[sim:"
_MARKER_RE = re.compile(r"\[\[sim:([^\]]*)\]\]")
_ITEM_RE = re.compile(r"^([a-z_]+)(?:=([0-9]+(?:\.[0-9]+)?|[a-z_]+?))?(?:x([0-9]+))?$")

_INT_ARGS = {"error", "cut", "stall", "malformed", "tokens", "batch_bytes"}
# How [[sim:batch_line=K]] breaks an output line: each a shape a provider's file must not crash a reader with.
BATCH_LINE_KINDS = (
    "status_code",
    "usage",
    "choices",
    "message",
    "tool_calls",
    "content_number",
    "content_parts",
    "refusal_part",
    "bad_part",
    "not_json",
    "garbage",
    "no_custom_id",
    "unknown_custom_id",
    "duplicate",
    "line_array",
    "no_response",
)
_WORD_ARGS = {"batch_line": BATCH_LINE_KINDS}
_FLOAT_ARGS = {"ttft"}
_FLAGS = {"bad_args", "always_tools", "tools", "malformed", "no_tools", "empty"}


class DirectiveError(ValueError):
    """A `[[sim:...]]` marker that cannot be understood (answered with HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Directives:
    error: int | None = None
    cut: int | None = None
    stall: int | None = None
    malformed: int | None = None
    tokens: int | None = None
    ttft: float | None = None
    tools: bool = False
    always_tools: bool = False
    bad_args: bool = False
    batch_line: str | None = None
    batch_bytes: int | None = None
    no_tools: bool = False
    empty: bool = False


NONE = Directives()


def parse_directives(text: str, attempt: int = 0) -> Directives:
    """The directives in `text` that still fire on this attempt (0-based) of an identical body."""
    if MARKER not in text:
        return NONE
    found: dict[str, object] = {}
    for marker in _MARKER_RE.findall(text):
        for item in filter(None, (s.strip() for s in marker.split(","))):
            name, value, limit = _parse_item(item)
            if limit is None or attempt < limit:
                found[name] = value
    return Directives(**found)  # type: ignore[arg-type]


def _parse_item(item: str) -> tuple[str, object, int | None]:
    m = _ITEM_RE.match(item)
    if not m:
        raise DirectiveError(f"cannot parse sim directive {item!r} (see docs/serve.md)")
    name, raw, limit = m.group(1), m.group(2), m.group(3)
    limit_n = int(limit) if limit else None
    if raw is None:
        if name not in _FLAGS:
            raise DirectiveError(f"sim directive {name!r} needs a value, e.g. [[sim:{name}=5]]")
        return name, (1 if name == "malformed" else True), limit_n
    if name in _WORD_ARGS and raw in _WORD_ARGS[name]:
        return name, raw, limit_n
    numeric = raw[0].isdigit()  # the pattern lets words through for _WORD_ARGS only
    if numeric and name in _INT_ARGS and "." not in raw:
        return name, _checked(name, int(raw)), limit_n
    if numeric and name in _FLOAT_ARGS:
        return name, float(raw), limit_n
    raise DirectiveError(f"unknown sim directive or bad value {item!r} (see docs/serve.md)")


def _checked(name: str, value: int) -> int:
    if name == "error" and not 400 <= value <= 599:
        raise DirectiveError(f"[[sim:error={value}]]: use an HTTP error status 400-599")
    if name == "tokens" and value < 1:
        raise DirectiveError("[[sim:tokens=N]] needs N >= 1")
    if name == "batch_bytes" and not 1 <= value <= 2**31:
        raise DirectiveError("[[sim:batch_bytes=N]] needs 1 <= N <= 2**31")
    return value
