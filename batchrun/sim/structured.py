"""response_format for the built-in endpoint: json_object and json_schema answers.

A json_schema request gets a JSON document that follows the schema (every property, as strict
mode requires; enum values, types, nested objects and arrays); json_object gets
{"answer": "<words>"}. With `invalid_json_rate`, that share of attempts gets broken JSON (its
closing brace missing), rolled per attempt so a retry can succeed. max_tokens still applies: a
cut answer is unfinished JSON with finish_reason "length", as a real model's would be.
"""

from __future__ import annotations

import json
import random
from typing import Any

from batchrun.sim.text import WORDS
from batchrun.sim.wire import ApiError

CHARS_PER_TOKEN = 4  # characters of JSON text per streamed token
_MAX_DEPTH = 6


def check_response_format(body: dict[str, Any]) -> None:
    """ApiError(400) for a response_format OpenAI would reject."""
    fmt = body.get("response_format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise ApiError(
            400,
            f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object' and 'json_schema'.",
            param="response_format.type",
            code="invalid_value",
        )
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("name"), str)
            or not isinstance(spec.get("schema"), dict)
        ):
            raise ApiError(
                400,
                "Missing required parameter: 'response_format.json_schema' needs a 'name' and a 'schema' object.",
                param="response_format.json_schema",
                code="missing_required_parameter",
            )


def wants_json(body: dict[str, Any]) -> bool:
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def json_answer(body: dict[str, Any], rng: random.Random) -> str:
    """The answer's JSON text for a json_object / json_schema request."""
    fmt = body["response_format"]
    if fmt["type"] == "json_schema":
        return json.dumps(instance(fmt["json_schema"]["schema"], rng), ensure_ascii=False)
    return json.dumps({"answer": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))})


def instance(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value valid against `schema` (the subset structured outputs use: type, enum, const,
    properties, items, anyOf, minimum / maximum, minItems / maxItems)."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    if schema.get("anyOf"):
        return instance(rng.choice(schema["anyOf"]), rng, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _of_type(kind, schema, rng, depth)


def _of_type(kind: str, schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    if kind == "object":
        return {name: instance(sub, rng, depth + 1) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        low = schema.get("minItems", 1)
        count = rng.randint(low, max(low, min(schema.get("maxItems", 3), low + 3)))
        return [instance(schema.get("items") or {}, rng, depth + 1) for _ in range(count)]
    if kind == "integer":
        return rng.randint(int(schema.get("minimum", 0)), int(schema.get("maximum", 100)))
    if kind == "number":
        low, high = float(schema.get("minimum", 0.0)), float(schema.get("maximum", 1.0))
        return round(rng.uniform(low, high), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))


def break_json(text: str) -> str:
    """The injected fault: the document without its last character (an unclosed object)."""
    return text[:-1]


def json_tokens(text: str) -> list[str]:
    """The JSON text in streamed pieces of ~4 characters."""
    return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)] or [text]


def escape(token: str) -> str:
    """A piece of JSON text as it goes inside the content string of a chunk."""
    return json.dumps(token, ensure_ascii=False)[1:-1]
