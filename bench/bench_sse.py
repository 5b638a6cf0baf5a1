"""Per-chunk parsing cost: batchrun's SSEStream against a minimal parser (split lines, one
orjson.loads, take the content) on the same bytes, in the same process, no network.

    python bench/bench_sse.py            # about 10 s

Prints microseconds per chunk for both and their ratio (batchrun / minimal); the minimal parser
does none of batchrun's work (usage, tool calls, reasoning, choices by index, byte cap, CR line
ends), so the ratio is what that work costs per chunk.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.endpoint.attempt import AttemptResult  # noqa: E402
from batchrun.endpoint.sse import SSEStream

CHUNKS = 64
READS = 2_000  # responses per timing


def response(n: int = CHUNKS) -> list[bytes]:
    """One streamed response as vLLM/OpenAI send it, one network read per chunk."""

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    usage = {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": n}}
    return (
        [chunk({"role": "assistant", "content": ""})]
        + [chunk({"content": " word"}) for _ in range(n)]
        + [chunk({}, "stop"), b"data: " + json.dumps(usage).encode() + b"\n\n", b"data: [DONE]\n\n"]
    )


def minimal(reads: list[bytes]) -> str:
    parts = []
    for piece in reads:
        for line in piece.split(b"\n"):
            if line.startswith(b"data: ") and line[6:] != b"[DONE]":
                choices = orjson.loads(line[6:]).get("choices")
                if choices:
                    content = choices[0]["delta"].get("content")
                    if content:
                        parts.append(content)
    return "".join(parts)


def batchrun(reads: list[bytes]) -> str:
    result = AttemptResult(sent=0.0)
    stream = SSEStream(result)
    for i, piece in enumerate(reads):
        if stream.feed(piece, float(i)):
            break
    stream.finish(float(len(reads)))
    assert result.status == "ok", result.error
    return result.text


def per_chunk_us(parse, reads: list[bytes]) -> float:
    start = time.perf_counter()
    for _ in range(READS):
        parse(reads)
    return (time.perf_counter() - start) / (READS * len(reads)) * 1e6


def main() -> None:
    reads = response()
    assert minimal(reads) == batchrun(reads)
    mins, ours = [], []
    for _ in range(7):  # interleaved, so both see the same machine load
        mins.append(per_chunk_us(minimal, reads))
        ours.append(per_chunk_us(batchrun, reads))
    m, b = statistics.median(mins), statistics.median(ours)
    print(f"== SSE parsing, {CHUNKS}-chunk responses, median of 7 interleaved runs")
    print(f"minimal parser     {m:6.2f} us/chunk")
    print(f"batchrun SSEStream {b:6.2f} us/chunk")
    print(f"ratio batchrun / minimal  {b / m:.2f}x")


if __name__ == "__main__":
    main()
