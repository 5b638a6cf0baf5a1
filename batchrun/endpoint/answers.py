"""--json / --json-schema: what to ask for (response_format) and how to check an answer (pure).

The answer's text must be one JSON object; with a schema it is also validated (jsonschema,
the reference validator). A failed check is a status of its own, `invalid_output`, with the
validator's message, and the pool retries it like any other retryable failure.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_PROBLEM = 300  # characters of a validation message kept in the record


def response_format(schema: dict[str, Any] | None, json_mode: bool) -> dict[str, Any] | None:
    """The request's response_format: strict json_schema, json_object, or None."""
    if schema is not None:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "answer"))[:64]
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    if json_mode:
        return {"type": "json_object"}
    return None


def strict_problems(schema: Any, where: str = "the schema") -> list[str]:
    """What OpenAI's strict mode would reject in `schema`: an object without
    additionalProperties false, or with properties missing from `required` (other servers, e.g.
    vLLM, accept such schemas, so this is a warning, not a refusal)."""
    if not isinstance(schema, dict):
        return []
    problems = []
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            problems.append(f"{where} does not set additionalProperties: false")
        missing = [name for name in props if name not in (schema.get("required") or [])]
        if missing:
            problems.append(f"{where} does not require {', '.join(missing)}")
        for name, sub in props.items():
            problems += strict_problems(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += strict_problems(schema["items"], f"{where}[]")
    return problems


class AnswerCheck:
    """Callable: an answer's text -> (the parsed object, None) or (None, why it is invalid)."""

    def __init__(self, schema: dict[str, Any] | None = None) -> None:
        self._validator = None
        if schema is not None:
            from jsonschema import Draft202012Validator  # lazy: a run with --json-schema alone pays ~0.1 s

            self._validator = Draft202012Validator(schema)

    def __call__(self, text: str) -> tuple[dict[str, Any] | None, str | None]:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return None, f"the answer is not valid JSON ({exc})"[:MAX_PROBLEM]
        if not isinstance(value, dict):
            return None, "the answer is JSON but not an object {...}"
        if self._validator is not None:
            error = next(iter(self._validator.iter_errors(value)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
                return None, f"the answer breaks the schema at {where}: {error.message}"[:MAX_PROBLEM]
        return value, None
