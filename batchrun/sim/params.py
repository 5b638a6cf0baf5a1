"""Which request parameters the built-in endpoint honours, ignores and rejects, per endpoint.

The tables below are the single source of the "Parameters" section of docs/serve.md. In `--strict` mode
(the default) a parameter the endpoint does not know, or a value out of OpenAI's documented
range, is answered with OpenAI's own 400 wording; `--lenient` skips these checks and ignores
what it does not use, as vLLM does. Structural checks (missing `messages`, wrong types of the
fields the sim reads) apply in both modes, since without them there is no request to answer.
"""

from __future__ import annotations

from typing import Any

from batchrun.sim.wire import ApiError, invalid_type

# Parameters that change the answer. `ignore_eos` and `min_tokens` are vLLM's extensions,
# accepted because benchmarks send them to hold the output length.
CHAT_HONOURED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "seed",
        "logprobs",
        "top_logprobs",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "ignore_eos",
        "min_tokens",
    }
)
# Known to OpenAI's chat API, accepted and range-checked, with no effect on the sim's answer.
CHAT_IGNORED = frozenset(
    {
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
        "metadata",
        "store",
        "service_tier",
        "response_format",
        "reasoning_effort",
        "modalities",
        "audio",
        "prediction",
        "prompt_cache_key",
        "safety_identifier",
        "verbosity",
        "web_search_options",
        "functions",
        "function_call",
    }
)
COMPLETIONS_HONOURED = frozenset(
    {
        "model",
        "prompt",
        "stream",
        "stream_options",
        "max_tokens",
        "n",
        "stop",
        "seed",
        "logprobs",
        "echo",
        "ignore_eos",
        "min_tokens",
    }
)
COMPLETIONS_IGNORED = frozenset(
    {
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
        "best_of",
        "suffix",
    }
)
EMBEDDINGS_HONOURED = frozenset({"model", "input", "encoding_format", "dimensions"})
EMBEDDINGS_IGNORED = frozenset({"user"})

KNOWN = {
    "chat": CHAT_HONOURED | CHAT_IGNORED,
    "completions": COMPLETIONS_HONOURED | COMPLETIONS_IGNORED,
    "embeddings": EMBEDDINGS_HONOURED | EMBEDDINGS_IGNORED,
}

# (low, high, integer?) as OpenAI documents them.
RANGES: dict[str, tuple[float, float, bool]] = {
    "temperature": (0.0, 2.0, False),
    "top_p": (0.0, 1.0, False),
    "presence_penalty": (-2.0, 2.0, False),
    "frequency_penalty": (-2.0, 2.0, False),
    "top_logprobs": (0, 20, True),
    "n": (1, 128, True),
    "best_of": (1, 20, True),
    "min_tokens": (0, 1 << 31, True),
}
COMPLETIONS_LOGPROBS_MAX = 5
MAX_STOP = 4


def check_params(body: dict[str, Any], endpoint: str, strict: bool) -> None:
    """Raise OpenAI's 400 for an unknown parameter or a value out of range (strict mode only)."""
    if not strict:
        return
    known = KNOWN[endpoint]
    for name in body:
        if name not in known:
            raise ApiError(400, f"Unrecognized request argument supplied: {name}", param=name)
    for name, (low, high, integer) in RANGES.items():
        if body.get(name) is not None:
            _check_range(name, body[name], low, high, integer)
    if endpoint == "completions" and body.get("logprobs") is not None:
        _check_range("logprobs", body["logprobs"], 0, COMPLETIONS_LOGPROBS_MAX, True)
    if body.get("best_of") not in (None, 1):
        raise ApiError(
            400, "The sim does not sample several candidates: leave out 'best_of' or set it to 1.", param="best_of"
        )


def check_sampling(body: dict[str, Any], endpoint: str) -> None:
    """Types of the honoured fields the sim reads (both modes: it must understand them to answer)."""
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise ApiError(
                400,
                "Invalid type for 'stop': expected one of a string or an array of strings.",
                param="stop",
                code="invalid_type",
            )
        if len(stops) > MAX_STOP:
            raise ApiError(
                400,
                f"Invalid 'stop': array too long. Expected an array with maximum length "
                f"{MAX_STOP}, but got an array with length {len(stops)} instead.",
                param="stop",
                code="array_above_max_length",
            )
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise invalid_type("seed", "an integer", seed)
    for name in ("ignore_eos", "echo"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise invalid_type(name, "a boolean", body[name])
    min_tokens = body.get("min_tokens")
    if min_tokens is not None and (not isinstance(min_tokens, int) or isinstance(min_tokens, bool)):
        raise invalid_type("min_tokens", "an integer", min_tokens)
    if endpoint == "chat":
        _check_chat_logprobs(body)


def _check_chat_logprobs(body: dict[str, Any]) -> None:
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise invalid_type("logprobs", "a boolean", logprobs)
    top = body.get("top_logprobs")
    if top is None:
        return
    if not isinstance(top, int) or isinstance(top, bool):
        raise invalid_type("top_logprobs", "an integer", top)
    if not logprobs:
        raise ApiError(
            400,
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is given.",
            param="top_logprobs",
            code="invalid_value",
        )


def stop_list(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    return [s for s in ([stop] if isinstance(stop, str) else stop) if s]


def _check_range(name: str, value: Any, low: float, high: float, integer: bool) -> None:
    kind = "integer" if integer else "decimal"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise invalid_type(name, "an integer" if integer else "a number", value)
    if value < low:
        raise ApiError(
            400,
            f"Invalid '{name}': {kind} below minimum value. Expected a value >= {low:g}, but got {value:g} instead.",
            param=name,
            code=f"{kind}_below_min_value",
        )
    if value > high:
        raise ApiError(
            400,
            f"Invalid '{name}': {kind} above maximum value. Expected a value <= {high:g}, but got {value:g} instead.",
            param=name,
            code=f"{kind}_above_max_value",
        )
