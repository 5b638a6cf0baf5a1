"""The embeddings kind: one POST /embeddings per batch of inputs -> a timed EmbedResult with its
vectors -> one Record per input.

Not streamed: `latency_s` = `total_s` = send -> whole body read; there is no TTFT or ITL. The
vectors come back in `vectors` (float32, one row per input, in input order), decoded from base64
(or from JSON numbers when the server ignores encoding_format). Never raises for a request failure.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp
import numpy as np
import orjson

from batchrun.endpoint.attempt import RESPONSE_TOO_LARGE, AttemptResult
from batchrun.endpoint.kinds import Kind
from batchrun.endpoint.transport import StreamClient, read_capped
from batchrun.inputs.prompt import Prompt
from batchrun.store.records import ERROR, OK, Attempt, Record

BAD_EMBEDDINGS = "BadEmbeddingsResponse"  # a 200 whose body is not the expected list of vectors


@dataclass(slots=True)
class EmbedResult(AttemptResult):
    vectors: np.ndarray | None = None  # shape (inputs, dim), float32
    inputs: int = 0  # how many inputs the request carried


def build_embeddings_body(
    texts: list[str], model: str | None, extra_body: Mapping[str, Any], encoding_format: str = "base64"
) -> dict[str, Any]:
    """The body for POST /embeddings: one batch of inputs. base64 by default: a quarter of the bytes
    of JSON floats and no float parsing (what the openai SDK asks for too)."""
    body: dict[str, Any] = {"encoding_format": encoding_format}
    if model is not None:
        body["model"] = model
    body.update({k: v for k, v in extra_body.items() if k not in ("input", "stream", "stream_options")})
    body["input"] = texts
    return body


def parse_embeddings(data: dict[str, Any], result: EmbedResult) -> None:
    """Fill `result` from an OpenAI `list` of `embedding` objects (pure)."""
    items = sorted(data["data"], key=lambda d: d["index"])
    if len(items) != result.inputs:
        raise ValueError(f"{len(items)} vectors for {result.inputs} inputs")
    result.vectors = _matrix([item["embedding"] for item in items])
    result.model = data.get("model")
    usage = data.get("usage") or {}
    prompt = usage.get("prompt_tokens")
    result.prompt_tokens = prompt if type(prompt) is int else None
    result.finish_reason = "stop"


def _matrix(values: list[Any]) -> np.ndarray:
    """(inputs, dim) float32 from base64 strings (one buffer, one copy) or JSON number lists."""
    if not values:
        return np.zeros((0, 0), np.float32)
    if all(isinstance(v, str) for v in values):
        raw = [base64.b64decode(v) for v in values]
        if len({len(r) for r in raw}) > 1 or len(raw[0]) % 4:
            raise ValueError("vectors of different lengths in one response")
        return np.frombuffer(b"".join(raw), dtype="<f4").astype(np.float32, copy=False).reshape(len(raw), -1)
    vectors = [
        np.frombuffer(base64.b64decode(v), dtype="<f4") if isinstance(v, str) else np.asarray(v, dtype=np.float32)
        for v in values
    ]
    if len({v.shape for v in vectors}) > 1 or vectors[0].ndim != 1:
        raise ValueError("vectors of different lengths in one response")
    return np.stack(vectors)


@dataclass
class EmbeddingsClient(StreamClient):
    """StreamClient's error handling, timeouts and redaction, for the non-streamed /embeddings."""

    path: str = "embeddings"
    parse: Any = parse_embeddings

    def __post_init__(self) -> None:
        super().__post_init__()
        self._headers["Accept"] = "application/json"

    async def embed(self, body: bytes, inputs: int) -> EmbedResult:
        result = EmbedResult(sent=self.clock(), inputs=inputs)
        await self.send(body, result)
        return result

    async def _read_stream(
        self, resp: aiohttp.ClientResponse, result: AttemptResult, deadline: Any, start: float
    ) -> None:
        raw = await read_capped(resp.content, self.max_response_bytes + 1)
        now = self.clock()
        if len(raw) > self.max_response_bytes:
            result.fail(
                ERROR,
                RESPONSE_TOO_LARGE,
                f"the response grew past {self.max_response_bytes} bytes "
                "(--max-response-bytes); lower --batch-size or raise the limit",
            )
            return
        result.latency_s = result.total_s = now - result.sent
        assert isinstance(result, EmbedResult)
        try:
            self.parse(orjson.loads(raw), result)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            result.fail(ERROR, BAD_EMBEDDINGS, f"the embeddings response cannot be read: {exc}")


def split_tokens(total: int | None, texts: list[str]) -> list[int] | list[None]:
    """A batch's usage.prompt_tokens shared out by text length (largest remainder), so per-input
    counts add up to exactly what the server reported."""
    if total is None:
        return [None] * len(texts)
    weights = [max(1, len(t)) for t in texts]
    whole = sum(weights)
    shares = [total * w / whole for w in weights]
    counts = [int(s) for s in shares]
    for i in sorted(range(len(texts)), key=lambda i: counts[i] - shares[i])[: total - sum(counts)]:
        counts[i] += 1
    return counts


def input_records(
    prompts: list[Prompt],
    texts: list[str],
    result: EmbedResult,
    log: list[Attempt],
    t0: float,
    queued_at: float,
    queue_wait: float,
) -> list[Record]:
    """One Record per input of one request, from its final attempt: the request's outcome and
    times, each input's share of the usage, and the request's re-sends on the first record only
    (so the summary's sum is true)."""
    tokens = split_tokens(result.prompt_tokens, texts)
    records = [
        _input_record(p, n, len(prompts) > 1, result, log, t0, queued_at, queue_wait) for p, n in zip(prompts, tokens)
    ]
    if records:
        records[0].reconnects = result.reconnects
    return records


def _input_record(
    prompt: Prompt,
    tokens: int | None,
    shared: bool,
    result: EmbedResult,
    log: list[Attempt],
    t0: float,
    queued_at: float,
    queue_wait: float,
) -> Record:
    record = Record(
        id=prompt.id,
        row=prompt.row,
        status=result.status,
        attempts=len(log),
        attempt_log=log,
        queued_at=queued_at,
        queue_wait_s=queue_wait,
        error_type=result.error_type,
        error=result.error,
        http_status=result.http_status,
        request_id=result.request_id,
        model=result.model,
        finish_reason=result.finish_reason,
        prompt_tokens=tokens,
        completion_tokens=0 if result.status == OK else None,
    )
    # Several inputs share one usage figure: each row's share of it is a length-weighted guess.
    record.tokens_estimated = tokens is not None and shared
    record.sent_s, record.latency_s, record.total_s = result.sent - t0, result.latency_s, result.total_s
    if result.total_s is not None:
        record.end_s = record.sent_s + result.total_s
    return record


KIND = Kind("embeddings", "embeddings", build_embeddings_body, parse_embeddings, input_records, EmbeddingsClient)
