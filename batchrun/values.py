"""Option values from the forms a user gives them: text on the command line, or values from Python.

Each parser takes what the shell gives (text) and what a Python caller would pass (a number, a
dict, a list), and returns the config's value; a ConfigError names the option and says what it
takes. Pure, and light to import: the command line's start-up loads this module.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from batchrun.errors import ConfigError, InputError

AUTO_CEILING = 256  # --concurrency auto grows to at most this many requests in flight
SLO_KEYS = ("ttft", "tpot", "e2e")
RAY_INSTALL = 'pip install "ray[client]>=2.9"'
RAY_LOCAL = "local"  # --ray without --ray-address: join the cluster on this machine, or start one

# Go-style durations, as in OpenAI's `x-ratelimit-reset-*` headers: "1s", "6m0s", "20ms", "1h2m3.5s".
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SLO_ITEM = re.compile(r"^\s*([a-z0-9_]+)\s*=\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*$", re.IGNORECASE)


def _finite_nonneg(value: float) -> float | None:
    return value if math.isfinite(value) and value >= 0 else None


def parse_duration_s(text: str | None) -> float | None:
    """Seconds in a Go-style duration ("6m0s", "20ms") or a bare number of seconds ("1.5");
    None for a value it cannot read (never raises: a header's value may be anything)."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        return _finite_nonneg(float(text))
    except ValueError:
        pass
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if pos != len(text):
        return None
    return _finite_nonneg(total)


def duration(value: str | float | None, option: str) -> float | None:
    """--deadline 2h, --slice 10s: seconds (a number is seconds already)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    seconds = parse_duration_s(str(value))
    if seconds is None:
        raise ConfigError(f"{option}: cannot read {value!r} as a duration; write e.g. 2h, 90m, 45s or 3600")
    return seconds


def parse_slo(text: str) -> dict[str, float]:
    """'ttft=500ms,tpot=50ms,e2e=10s' -> {'ttft': 0.5, 'tpot': 0.05, 'e2e': 10.0} (seconds)."""
    slo: dict[str, float] = {}
    for item in text.split(","):
        m = _SLO_ITEM.match(item)
        if not m:
            raise ValueError(
                f"bad SLO item {item.strip()!r}: write NAME=VALUE with a unit, "
                f"e.g. ttft=500ms or e2e=10s (names: {', '.join(SLO_KEYS)})"
            )
        name, value, unit = m.group(1).lower(), float(m.group(2)), m.group(3).lower()
        if name in slo:
            raise ValueError(f"SLO {name!r} is given twice")
        slo[name] = value / 1000 if unit == "ms" else value
    return check_slo(slo)


def check_slo(slo: Mapping[str, float]) -> dict[str, float]:
    """Validate an SLO mapping (names in SLO_KEYS, positive seconds) and return a copy."""
    unknown = sorted(set(slo) - set(SLO_KEYS))
    if unknown:
        raise ValueError(f"unknown SLO name(s) {', '.join(unknown)}; valid names: {', '.join(SLO_KEYS)}")
    for name, value in slo.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"SLO {name} must be a positive number of seconds, got {value!r}")
    if not slo:
        raise ValueError(f"empty SLO; give at least one of {', '.join(SLO_KEYS)}")
    return {k: float(v) for k, v in slo.items()}


def slo(value: str | Mapping[str, float] | None) -> dict[str, float] | None:
    """--slo ttft=500ms,e2e=10s, or {"ttft": 0.5, "e2e": 10.0} (seconds)."""
    if not value:
        return None
    try:
        return check_slo(value) if isinstance(value, Mapping) else parse_slo(value)
    except ValueError as exc:
        raise ConfigError(f"--slo: {exc}") from exc


def limit(value: str | float | None, option: str) -> tuple[float | None, bool]:
    """--rpm / --tpm: a number (fixed), `auto` (learned from the provider's headers) or `off`
    (neither) -> (limit, learn)."""
    if value is None:
        return None, True
    word = str(value).strip().lower()
    if word in ("auto", ""):
        return None, True
    if word in ("off", "none"):
        return None, False
    try:
        number = float(word)
    except ValueError:
        raise ConfigError(f"{option} takes a number per minute, 'auto' or 'off', got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{option} must be a finite number, got {value}")
    if number <= 0:
        raise ConfigError(f"{option} must be a positive number per minute, 'auto' or 'off', got {value!r}")
    return number, False


def rpm(value: str | float | None) -> tuple[float | None, bool]:
    return limit(value, "--rpm")


def tpm(value: str | float | None) -> tuple[float | None, bool]:
    return limit(value, "--tpm")


def _count_or_auto(value: str | int, option: str, auto: int) -> tuple[int, bool]:
    word = str(value).strip().lower()
    if word == "auto":
        return auto, True
    try:
        return int(word), False
    except ValueError:
        raise ConfigError(f"{option} takes a whole number or 'auto', got {value!r}") from None


def concurrency(value: str | int) -> tuple[int, bool]:
    """--concurrency: a number, or `auto` (found at run time, up to AUTO_CEILING) -> (value, auto)."""
    return _count_or_auto(value, "--concurrency", AUTO_CEILING)


def workers(value: str | int) -> tuple[int, bool]:
    """--workers: a number of processes, or `auto` -> (value, auto)."""
    return _count_or_auto(value, "--workers", 1)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def json_option(value: Any, option: str) -> Any:
    """A JSON option's value: text is parsed (a ConfigError names the option); anything else is
    taken as the value itself."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{option} is not valid JSON ({exc.msg} at column {exc.colno}): {value!r}") from exc
    except ValueError as exc:  # NaN / Infinity: not JSON, and no server would take it
        raise ConfigError(f"{option}: {exc}: {value!r}") from exc


def extra_body(value: str | Mapping[str, Any] | None) -> dict[str, Any]:
    parsed = json_option(value, "--extra-body")
    return {} if parsed is None else parsed


def tool_choice(value: Any) -> Any:
    """--tool-choice: auto / none / required as they are, any other word names a function."""
    if value is None or not isinstance(value, str) or value in ("auto", "none", "required"):
        return value
    return {"type": "function", "function": {"name": value}}


def load_tools(path: Path) -> list[dict[str, Any]]:
    """A JSON file holding a list of OpenAI tool definitions, checked for the fields the API needs."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the tools file: {exc.strerror}", path=str(path)) from exc
    except ValueError as exc:
        raise InputError(
            f"not valid JSON: {exc}", path=str(path), hint="the file must hold a JSON list of tool definitions"
        ) from exc
    return check_tools(data, str(path))


def check_tools(data: Any, where: str) -> list[dict[str, Any]]:
    """Tool definitions (one alone is taken as a list of one), each with a function name."""
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError("expected a JSON list of tool definitions", path=where)
    for i, tool in enumerate(data):
        name = tool.get("function", {}).get("name") if isinstance(tool, dict) else None
        if not name:
            raise InputError(
                f"tool #{i + 1} has no function.name",
                path=where,
                hint='each tool is {"type": "function", "function": {"name": ..., "parameters": {...}}}',
            )
    return data


def tools(value: str | Path | list[dict[str, Any]] | dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """--tools FILE, or the definitions themselves."""
    if value is None:
        return None
    return load_tools(Path(value)) if isinstance(value, (str, Path)) else check_tools(value, "tools")


def load_schema(text: str, source: str) -> dict[str, Any]:
    """A JSON Schema from a file's text; a ConfigError names the file when it is not one."""
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source} is not valid JSON ({exc})") from None
    return check_schema(schema, source)


def check_schema(schema: Any, source: str) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise ConfigError(
            f"{source} must hold a JSON Schema object, e.g. "
            '{"type": "object", "properties": {"label": {"type": "string"}}}'
        )
    # lazy: only a run with a schema pays for jsonschema (~0.1 s)
    from jsonschema import Draft202012Validator, SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ConfigError(f"{source} is not a valid JSON Schema: {exc.message}") from None
    return schema


def json_schema(value: str | Path | dict[str, Any] | None) -> dict[str, Any] | None:
    """--json-schema FILE, or the schema itself: what answers must follow."""
    if value is None:
        return None
    if not isinstance(value, (str, Path)):
        return check_schema(value, "json_schema")
    try:
        text = Path(value).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--json-schema {value}: {exc.strerror or exc}") from None
    return load_schema(text, f"--json-schema {value}")


def base_urls(value: str | list[str] | tuple[str, ...] | None) -> tuple[str | None, tuple[str, ...]]:
    """--base-url, repeatable: the first endpoint and the rest."""
    if value is None:
        return None, ()
    urls = [value] if isinstance(value, str) else list(value)
    return (urls[0] if urls else None), tuple(urls[1:])


def strings(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A repeatable text option as a tuple."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def levels(value: str | int | float | list[Any] | tuple[Any, ...] | None, kind: type = int) -> tuple[Any, ...]:
    """'1,2,4' (or [1, 2, 4]) -> (1, 2, 4), with a ConfigError naming the bad item."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [value] if isinstance(value, (int, float)) else value
    try:
        return tuple(kind(part) for part in items if str(part).strip())
    except ValueError as exc:
        raise ConfigError(f"expected a comma-separated list of numbers, got {value!r}") from exc


def rates(value: str | float | list[float] | None) -> tuple[float, ...]:
    return levels(value, float)


def ray_address(value: str | None) -> str | None:
    """--ray-address: auto, ray://host:port or host:port (a GCS address); `local` for --ray alone."""
    if value is None:
        return None
    text = value.strip()
    if text in (RAY_LOCAL, "auto") or text.startswith("ray://"):
        return text
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address takes auto, ray://HOST:PORT or HOST:PORT, got {text!r}")
    return text
