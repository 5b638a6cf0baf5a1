"""One POST /embeddings (a batch of inputs) -> a timed EmbedResult with its vectors.

Not streamed: `latency_s` = `total_s` = send -> whole body read; there is no TTFT or ITL. The
vectors come back in `vectors` (float32, one row per input, in input order), decoded from base64
(or from JSON numbers when the server ignores encoding_format). Never raises for a request failure.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import numpy as np
import orjson

from batchrun.endpoint.client import RESPONSE_TOO_LARGE, AttemptResult, StreamClient, read_capped
from batchrun.store.records import ERROR

BAD_EMBEDDINGS = "BadEmbeddingsResponse"   # a 200 whose body is not the expected list of vectors


@dataclass(slots=True)
class EmbedResult(AttemptResult):
    vectors: np.ndarray | None = None      # shape (inputs, dim), float32
    inputs: int = 0                        # how many inputs the request carried


class EmbeddingsClient(StreamClient):
    """StreamClient's error handling, timeouts and redaction, for the non-streamed /embeddings."""

    path: ClassVar[str] = "/embeddings"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._headers["Accept"] = "application/json"

    async def embed(self, body: bytes, inputs: int) -> EmbedResult:
        result = EmbedResult(sent=self.clock(), inputs=inputs)
        await self.send(body, result)
        return result

    async def _read_stream(self, resp: aiohttp.ClientResponse, result: AttemptResult, deadline: Any,
                           start: float) -> None:
        raw = await read_capped(resp.content, self.max_response_bytes + 1)
        now = self.clock()
        if len(raw) > self.max_response_bytes:
            result.fail(ERROR, RESPONSE_TOO_LARGE, f"the response grew past {self.max_response_bytes} bytes "
                        "(--max-response-bytes); lower --batch-size or raise the limit")
            return
        result.latency_s = result.total_s = now - result.sent
        assert isinstance(result, EmbedResult)
        try:
            parse_embeddings(orjson.loads(raw), result)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            result.fail(ERROR, BAD_EMBEDDINGS, f"the embeddings response cannot be read: {exc}")


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
    vectors = [np.frombuffer(base64.b64decode(v), dtype="<f4") if isinstance(v, str)
               else np.asarray(v, dtype=np.float32) for v in values]
    if len({v.shape for v in vectors}) > 1 or vectors[0].ndim != 1:
        raise ValueError("vectors of different lengths in one response")
    return np.stack(vectors)
