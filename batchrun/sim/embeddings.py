"""POST /v1/embeddings: one unit vector per input, seeded by (seed, input) so the same text always
gets the same vector, sent after the latency model's TTFT for the batch's tokens (no decode).

`encoding_format` "float" (JSON numbers) or "base64" (little-endian float32, what the openai SDK
asks for by default); `dimensions` sets the vector length. Faults and `[[sim:...]]` directives
(read from the inputs) apply as for chat: an injected error, a cut or a malformed body.
"""

from __future__ import annotations

import base64
import hashlib
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy loads on the first embeddings request, not with every `batchrun` start
    import numpy as np  # lazy: numpy (~0.1 s) for /v1/embeddings only

from batchrun.sim import model
from batchrun.sim.directives import DirectiveError, parse_directives
from batchrun.sim.faults import any_fault_rate, choose_faults
from batchrun.sim.handling import admitted, answer_headers, check_injected_error, check_model, read_body, send_body
from batchrun.sim.host import Host
from batchrun.sim.http import Connection, Request
from batchrun.sim.planner import Plan
from batchrun.sim.wire import ApiError, dumps

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request
ENCODINGS = ("float", "base64")


def handle_embeddings(server: Host, conn: Connection, req: Request, rid: str) -> None:
    got = admitted(server, conn, req, rid, "embeddings", _admit)
    if got is None:
        return
    body, texts, plan = got
    dim = body.get("dimensions") or server.config.embedding_dim
    payload = embeddings_body(
        server.config.seed, texts, body["model"], dim, body.get("encoding_format") or "float", plan.prompt_tokens
    )
    send_body(server, conn, req, plan, answer_headers(server, rid, False), payload)


def _admit(server: Host, req: Request) -> tuple[dict[str, Any], list[str], Plan]:
    cfg = server.config
    body = read_body(server, req, "embeddings")
    texts, tokens = validate_embeddings(body)
    check_model(cfg, body)
    attempt = server.attempts.next(req.body)
    try:
        d = parse_directives("\n".join(texts), attempt)
    except DirectiveError as err:
        raise ApiError(400, str(err), param="input") from None
    server.check_rate_limit(body["model"], tokens)
    key = model.request_key(cfg.seed, texts)
    plan = Plan(prompt_tokens=tokens, key=key)
    if d.error is not None or d.cut is not None or d.malformed is not None or any_fault_rate(cfg):
        rng = model.rng_for(key, "fault", attempt) if any_fault_rate(cfg) else None
        plan.faults = choose_faults(cfg, d, rng, 0)
    check_injected_error(server, plan)
    plan.queued = not (cfg.fast or cfg.fixed or d.ttft is not None)
    jitter = model.jitter_factors(model.rng_for(key, "latency", attempt), cfg, 1)[0]
    plan.ttft_s = d.ttft if d.ttft is not None else model.ttft_s(cfg, tokens, jitter)
    return body, texts, plan


def validate_embeddings(body: dict[str, Any]) -> tuple[list[str], int]:
    """(the inputs as text, their token count), or OpenAI's 400."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ApiError(400, "you must provide a model parameter", param="model")
    raw = body.get("input")
    if raw is None:
        raise ApiError(400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    items = [raw] if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)) else raw
    if not isinstance(items, list) or not items:
        raise ApiError(
            400,
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            param="input",
        )
    if len(items) > MAX_INPUTS:
        raise ApiError(
            400,
            f"Invalid 'input': maximum {MAX_INPUTS} inputs per request, got {len(items)}.",
            param="input",
            code="array_above_max_length",
        )
    texts, tokens = [], 0
    for i, item in enumerate(items):
        if isinstance(item, str) and item:
            texts.append(item)
            tokens += max(1, math.ceil(len(item) / model.CHARS_PER_TOKEN))
        elif isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            texts.append(" ".join(map(str, item)))
            tokens += len(item)
        else:
            raise ApiError(
                400,
                f"Invalid 'input[{i}]': expected a non-empty string or array of token ids.",
                param="input",
                code="invalid_value",
            )
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ENCODINGS:
        raise ApiError(
            400,
            f"Invalid value: {fmt!r}. Supported values are: 'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    dim = body.get("dimensions")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 8192):
        raise ApiError(
            400,
            f"Invalid 'dimensions': expected an integer between 1 and 8192, got {dim!r}.",
            param="dimensions",
            code="invalid_value",
        )
    return texts, tokens


def embedding_vector(seed: int, text: str, dim: int) -> np.ndarray:
    """A unit float32 vector that depends only on (seed, text, dim)."""
    import numpy as np

    digest = hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=8).digest()
    vec = np.random.default_rng(int.from_bytes(digest, "little")).standard_normal(dim).astype(np.float32)
    return vec / np.float32(np.linalg.norm(vec) or 1.0)


def embeddings_body(seed: int, texts: list[str], model_name: str, dim: int, fmt: str, tokens: int) -> bytes:
    data = []
    for i, text in enumerate(texts):
        vec = embedding_vector(seed, text, dim)
        value: Any = base64.b64encode(vec.astype("<f4").tobytes()).decode() if fmt == "base64" else vec.tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return dumps(
        {
            "object": "list",
            "data": data,
            "model": model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
