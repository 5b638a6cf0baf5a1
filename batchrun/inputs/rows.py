"""CSV / JSONL / Parquet / Batch-API JSONL -> a stream of Prompt (or BadRow), line numbers kept.

    for item in read_prompts("prompts.csv", template="Summarise: {text}", on_bad_row="skip"):
        ...  # Prompt, or BadRow for a row that cannot be sent

Options and the path are checked when `read_prompts` is called; the file is read lazily,
row by row. Memory stays flat except for the set of ids seen (kept only when ids come from
the file: an id column or Batch API custom_ids, where duplicates are possible).
"""

from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from batchrun.errors import InputChanged, InputError
from batchrun.inputs.identity import changed_while_read, input_identity
from batchrun.inputs.prompt import BadRow, Prompt
from batchrun.inputs.readers import RawRow, Where, check_path, json_kind, non_finite, open_source, resolve_format

SKIP_HINT = "fix the row or use --on-bad-row skip"
MESSAGES = "messages"
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
TOOL_CHOICES = ("auto", "none", "required")
BATCH_URLS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True, slots=True)
class InputSpec:
    """Where the prompts are and how to turn rows into conversations."""

    path: Path
    fmt: str | None = None  # csv / jsonl / parquet; None: from the extension
    prompt_column: str | None = None  # None: 'prompt', else the only text column
    id_column: str | None = None  # None: an 'id' column if any, else the row number
    template: str | None = None  # e.g. "Summarise: {text}"; wins over prompt_column
    system: str | None = None  # system message put first (unless the row has one)
    on_bad_row: Literal["fail", "skip"] = "fail"
    row_settings: bool = True  # columns named model / max_tokens / ... override the flags


def read_prompts(
    path: str | Path,
    *,
    fmt: str | None = None,
    prompt_column: str | None = None,
    id_column: str | None = None,
    template: str | None = None,
    system: str | None = None,
    on_bad_row: Literal["fail", "skip"] = "fail",
    row_settings: bool = True,
) -> Iterator[Prompt | BadRow]:
    """Check options and path now (InputError), then stream the file as Prompt / BadRow."""
    return iter_prompts(
        InputSpec(Path(path), fmt, prompt_column, id_column, template, system, on_bad_row, row_settings)
    )


def iter_prompts(spec: InputSpec) -> Iterator[Prompt | BadRow]:
    """Like read_prompts, from an InputSpec."""
    if spec.on_bad_row not in ("fail", "skip"):
        raise InputError(f"unknown --on-bad-row {spec.on_bad_row!r}", hint="use fail or skip")
    template = Template(spec.template) if spec.template is not None else None
    fmt = resolve_format(spec.path, spec.fmt)
    check_path(spec.path)
    return _stream(spec, fmt, template)


def _stream(spec: InputSpec, fmt: str, template: Template | None) -> Iterator[Prompt | BadRow]:
    where = Where.of(spec.path, fmt)
    before = _identity(spec.path)  # as reading begins: compared once it ends
    with open_source(spec.path, fmt, where) as source:
        try:
            yield from _items(spec, template, where, source)
        except InputError as exc:  # a row torn by a change is the change's doing: say that
            changed = _changed(spec.path, before, None)
            if changed is None:
                raise
            raise changed from exc
        changed = _changed(spec.path, before, source.bytes_read())
        if changed is not None:
            raise changed


def _items(spec: InputSpec, template: Template | None, where: Where, source: Any) -> Iterator[Prompt | BadRow]:
    builder = _RowBuilder(spec, template, where)
    if source.columns is not None:
        builder.set_columns(source.columns, source.text_columns or [], header=True)
    for raw in source.rows():  # every column: results give the whole row back
        try:
            item: Prompt | BadRow = builder.build(raw)
        except _Bad as bad:
            if spec.on_bad_row == "fail":
                raise where.error(bad.message, line=raw.line, column=bad.column, hint=SKIP_HINT) from None
            reason = str(where.error(bad.message, line=raw.line, column=bad.column))
            item = _bad_row(bad, raw, builder, reason)
        yield item


def _identity(path: Path) -> dict[str, Any] | None:
    try:
        return input_identity(path)
    except OSError:
        return None  # opening it says what is wrong


def _changed(path: Path, before: dict[str, Any] | None, bytes_read: int | None) -> InputChanged | None:
    change = None if before is None else changed_while_read(path, before, bytes_read)
    if change is None:
        return None
    return InputChanged(
        f"changed while the run read it ({change}): rows added, removed or edited meanwhile "
        "may be missing, or sent from two versions of the file",
        path=str(path),
    )


def _bad_row(bad: "_Bad", raw: RawRow, builder: "_RowBuilder", reason: str) -> BadRow:
    if bad.id is not None:
        return BadRow(bad.id, raw.row, raw.line, reason, data=raw.data, synthetic_id=bad.synthetic)
    row_id, synthetic = builder.fallback_id(raw.row)
    return BadRow(row_id, raw.row, raw.line, reason, data=raw.data, synthetic_id=synthetic)


class Template:
    """A prompt template with plain `{column}` fields only.

    Parsed with string.Formatter().parse and rendered by joining pieces, never with
    str.format: `{row.__class__}`, `{x[0]}`, `{x!r}` and `{x:>{y}}` are rejected up front,
    so a row's values cannot reach attributes, indexes or format machinery.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts = _parse_template(text)  # (literal, field or None) pairs
        self.fields = tuple(dict.fromkeys(name for _, name in self.parts if name))
        if not self.fields:
            raise InputError(
                f"--template {text!r} has no {{column}} field", hint='name a column in braces, e.g. "Summarise: {text}"'
            )

    def render(self, value_of: Callable[[str], str]) -> str:
        """The filled-in text; `value_of(field)` supplies each field's text."""
        return "".join(literal + (value_of(name) if name else "") for literal, name in self.parts)


def _parse_template(text: str) -> list[tuple[str, str | None]]:
    try:
        pieces = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InputError(
            f"--template {text!r} is malformed ({exc})", hint="write literal braces as {{ and }}"
        ) from None
    parts: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in pieces:
        if name is not None and (not name.isidentifier() or spec or conversion):
            whole = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise InputError(
                f"--template field {whole} is not allowed: only plain {{column}} names",
                hint="use the column name alone, e.g. {text}",
            )
        parts.append((literal, name))
    return parts


class _Bad(Exception):
    """A row that cannot become a Prompt; becomes an InputError or a BadRow."""

    def __init__(
        self, message: str, column: str | int | None = None, id: str | None = None, synthetic: bool = False
    ) -> None:
        super().__init__(message)
        self.synthetic = synthetic
        self.message, self.column, self.id = message, column, id


@dataclass(frozen=True, slots=True)
class _Layout:
    """Which columns carry the prompt and the id, decided once per file."""

    prompt_column: str | None  # None: rows need 'messages' (or a template)
    id_column: str | None  # None: the row number is the id


class _RowBuilder:
    """Turns raw rows into Prompts; remembers ids to catch duplicates."""

    def __init__(self, spec: InputSpec, template: Template | None, where: Where) -> None:
        self.spec, self.template, self.where = spec, template, where
        self.layout: _Layout | None = None
        self._seen: set[str] = set()

    def set_columns(self, columns: list[str], text_columns: list[str], *, header: bool) -> None:
        """Decide the layout from a header (CSV/Parquet) or the first JSONL object's keys."""
        if header:
            self._require_columns(columns)
        # A column named 'id' is what people mean by "the row's id"; results keep it.
        id_column = self.spec.id_column or ("id" if "id" in columns else None)
        prompt_column = self.spec.prompt_column
        if prompt_column is None and self.template is None:
            prompt_column = _infer_prompt_column(columns, text_columns, id_column, self.where)
        self.layout = _Layout(prompt_column, id_column)

    def _require_columns(self, columns: list[str]) -> None:
        have = ", ".join(map(repr, columns))
        for name, option in ((self.spec.prompt_column, "--prompt-column"), (self.spec.id_column, "--id-column")):
            if name is not None and name not in columns:
                raise self.where.error(
                    f"has no column {name!r} (from {option}); its columns are {have}",
                    hint=f"pass {option} with one of them",
                )
        for name in self.template.fields if self.template else ():
            if name not in columns:
                raise self.where.error(
                    f"--template uses {{{name}}} but there is no column {name!r}; its columns are {have}",
                    hint="fix the --template field names",
                )

    def build(self, raw: RawRow) -> Prompt:
        """The Prompt for one row; raises _Bad naming the column at fault."""
        if raw.data is None:
            raise _Bad(raw.problem or "unreadable row", raw.column)
        data = raw.data
        if "custom_id" in data and "body" in data:
            return self._batch_prompt(raw, data)
        if self.layout is None:  # JSONL: the first ordinary object sets the layout
            self.set_columns(list(data), [k for k, v in data.items() if isinstance(v, str)], header=False)
        row_id = self._row_id(raw, data)
        try:
            messages = self._conversation(data)
            params = row_params(data) if self.spec.row_settings else {}
            return Prompt(row_id, raw.row, raw.line, messages=messages, params=params, data=data)
        except _Bad as bad:
            bad.id = row_id
            raise

    def fallback_id(self, row: int) -> tuple[str, bool]:
        """(id, made up?) of a bad row whose own id is missing or unreadable. With ids from the file,
        the row number could be some other row's id: the made-up id is flagged, and the flag (not
        the text) keeps it apart from real ids in records.jsonl."""
        if self.layout is None or self.layout.id_column is None:
            return str(row), False
        return f"#row-{row}", True

    def _row_id(self, raw: RawRow, data: dict[str, Any]) -> str:
        column = self.layout.id_column if self.layout else None
        if column is None:
            return str(raw.row)  # unique by construction: nothing to remember
        value = data.get(column)
        if _unset(value):
            raise _Bad(f"the id is {_blank(value)}" if column in data else "the row has no id field", column)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _Bad(f"an id must be text or a whole number, not {json_kind(value)}", column)
        return self._claim(str(value).strip(), column, raw.row)

    def _claim(self, row_id: str, column: str, row: int) -> str:
        if row_id in self._seen:
            # The skipped duplicate gets an id of its own: under the same id its record would
            # supersede the first row's in records.jsonl and hide that row's result.
            raise _Bad(
                f"duplicate id {row_id!r}: ids must be unique",
                column,
                id=f"{row_id}#duplicate-row-{row}",
                synthetic=True,
            )
        self._seen.add(row_id)
        return row_id

    def _conversation(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        value = data.get(MESSAGES)
        if _unset(value):
            messages = [{"role": "user", "content": self._text(data)}]
        else:
            messages = parse_messages(value, MESSAGES)
        if self.spec.system is not None and messages[0].get("role") not in ("system", "developer"):
            messages = [{"role": "system", "content": self.spec.system}, *messages]
        return messages

    def _text(self, data: dict[str, Any]) -> str:
        if self.template is not None:
            return self.template.render(lambda name: _field_text(data, name))
        column = self.layout.prompt_column if self.layout else None
        if column is None:
            raise _Bad(
                "no prompt: the row has no 'messages' and the file no prompt column "
                "(pass --prompt-column or --template)"
            )
        value = data.get(column)
        if _unset(value):
            raise _Bad(f"the prompt is {_blank(value)}" if column in data else "the row has no prompt field", column)
        if not isinstance(value, str):
            raise _Bad(f"the prompt must be text, not {json_kind(value)}", column)
        return value

    def _batch_prompt(self, raw: RawRow, data: dict[str, Any]) -> Prompt:
        custom_id = data.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id.strip():
            raise _Bad("custom_id must be a non-empty string", "custom_id")
        row_id = self._claim(custom_id, "custom_id", raw.row)
        try:
            return Prompt(row_id, raw.row, raw.line, body=_batch_body(data), data=data)
        except _Bad as bad:
            bad.id = row_id
            raise


def _infer_prompt_column(
    columns: list[str], text_columns: list[str], id_column: str | None, where: Where
) -> str | None:
    """'prompt' if present, else the only text column that is not an id or request field."""
    if "prompt" in columns:
        return "prompt"
    skip = {*RESERVED, "id", "custom_id", id_column}
    candidates = [c for c in text_columns if c not in skip]
    if len(candidates) == 1:
        return candidates[0]
    if MESSAGES in columns:
        return None  # rows carry their own conversations
    have = ", ".join(map(repr, columns))
    if not candidates:
        raise where.error(
            f"has no text column to use as the prompt; its columns are {have}",
            hint="add a 'prompt' column, or pass --prompt-column or --template",
        )
    raise where.error(
        f"cannot tell which column is the prompt: {', '.join(map(repr, candidates))}", hint="pass --prompt-column NAME"
    )


def _field_text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if _unset(value):
        raise _Bad(f"the --template field is {_blank(value)}" if name in data else "missing --template field", name)
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)  # numbers, lists, dates: stable text
    except (ValueError, RecursionError) as exc:  # a value nested too deeply to write out again
        raise _Bad(f"the value cannot be written as text ({exc})", name) from None


def _batch_body(data: dict[str, Any]) -> dict[str, Any]:
    """Check one OpenAI Batch API line and return its body."""
    method, url, body = data.get("method", "POST"), data.get("url", BATCH_URLS[0]), data.get("body")
    if not isinstance(method, str) or method.upper() != "POST":
        raise _Bad(f"method must be POST, not {method!r}", "method")
    if url not in BATCH_URLS:
        raise _Bad(f"url {url!r} is not supported: batchrun sends chat completions", "url")
    if not isinstance(body, dict):
        raise _Bad(f"body must be an object, not {json_kind(body)}", "body")
    parse_messages(body.get(MESSAGES), "body.messages")
    return body


def parse_messages(value: Any, column: str) -> list[dict[str, Any]]:
    """A validated chat conversation from a list or its JSON text; raises _Bad."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise _Bad(f"not valid JSON ({exc})", column) from None
    if not isinstance(value, list) or not value:
        raise _Bad(
            'expected a non-empty list of {"role": ..., "content": ...} objects, '
            f"got {json_kind(value) if value != [] else 'an empty list'}",
            column,
        )
    for i, message in enumerate(value):
        problem = _message_problem(message)
        if problem:
            raise _Bad(f"message {i}: {problem}", column)
    return value


def _message_problem(message: Any) -> str | None:
    if not isinstance(message, dict):
        return f"expected an object, got {json_kind(message)}"
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        return f"role {role!r} is not one of {', '.join(ROLES)}"
    content = message.get("content")
    if isinstance(content, (str, list)):  # a list: multi-part content (text, image_url, ...)
        return None
    if content is None and role == "assistant" and message.get("tool_calls"):
        return None
    return "needs 'content' (a string or a list of parts)"


# --- per-row request fields -------------------------------------------------------------------


def _unset(value: Any) -> bool:
    """In a data column (id, prompt, messages, a --template field) a blank cell, null or NaN
    (pandas' missing value) means 'no value'."""
    return _blank_cell(value) or (isinstance(value, float) and math.isnan(value))


def _blank_cell(value: Any) -> bool:
    """A blank cell or null: the only 'not set' of a row setting. NaN is not one: a NaN
    temperature is a bad row, never silently the flag's value."""
    return value is None or (isinstance(value, str) and not value.strip())


def _blank(value: Any) -> str:
    """How an unset data value reads in a message."""
    return "NaN (how pandas writes a missing value)" if isinstance(value, float) else "empty"


def _number(value: Any) -> float | int | None:
    """An int or finite float from a number or its text; None if it is neither. NaN and
    infinities (as numbers or as text such as 'nan', '-inf') raise a ValueError that says so."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"{non_finite(value)}: write a finite number, or leave it empty (null) to use the run's setting"
        )
    return value


def _as_count(value: Any) -> int:
    number = _number(value)
    if number is None or number != int(number) or number < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return int(number)  # 256.0 is fine: pandas writes ints as floats when a column has gaps


def _as_temperature(value: Any) -> float:
    number = _number(value)
    if number is None or number < 0:
        raise ValueError(f"expected a number of at least 0, got {value!r}")
    return float(number)


def _as_model(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a model name, got {json_kind(value)}")
    return value.strip()


def _as_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)  # CSV cells hold JSON text
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None


def _as_tools(value: Any) -> list[dict[str, Any]] | None:
    tools = _as_json(value)
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise ValueError("expected a JSON list of tool objects")
    return tools or None  # [] means no tools: servers reject an empty list


def _as_tool_choice(value: Any) -> str | dict[str, Any]:
    choice = _as_json(value) if isinstance(value, str) and value.lstrip().startswith("{") else value
    if isinstance(choice, str) and choice.strip() in TOOL_CHOICES:
        return choice.strip()
    if isinstance(choice, dict):
        return choice
    raise ValueError(f"expected {', '.join(TOOL_CHOICES)} or a JSON object, got {value!r}")


PARAMS: dict[str, Callable[[Any], Any]] = {
    "model": _as_model,
    "max_tokens": _as_count,
    "max_completion_tokens": _as_count,
    "temperature": _as_temperature,
    "tools": _as_tools,
    "tool_choice": _as_tool_choice,
}
RESERVED = frozenset({MESSAGES, *PARAMS})  # never guessed to be the prompt column


def row_params(data: dict[str, Any]) -> dict[str, Any]:
    """Per-row request fields, typed; raises _Bad naming the column of a bad value."""
    params: dict[str, Any] = {}
    for name, convert in PARAMS.items():
        if name not in data:  # the common case; checked first because it is cheap
            continue
        value = data[name]
        if _blank_cell(value):
            continue
        try:
            converted = convert(value)
        except ValueError as exc:  # converters word their own messages
            raise _Bad(str(exc), name) from None
        if converted is not None:
            params[name] = converted
    return params
