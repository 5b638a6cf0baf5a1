"""/v1/completions: the same timed streaming client, reading `choices[0].text` instead of a delta.

Only the per-chunk parse differs from chat (SSEStream): line framing, the response cap,
timing (TTFT, ITL), usage, errors and the end-of-stream rules are SSEStream's own.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from batchrun.endpoint.client import (MALFORMED_CHUNK, STREAM_ERROR, SSEStream, StreamClient,
                                      _error_message, _read_usage)
from batchrun.store.records import ERROR


class TextSSEStream(SSEStream):
    """SSEStream for `text_completion` chunks: `{"choices": [{"text": "...", "finish_reason": ...}]}`."""

    __slots__ = ()

    def feed(self, piece: bytes, now: float) -> bool:
        lines = self._lines(piece)
        if lines is None:
            return self._too_large()
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                return True
            if self._chunk(data, now):
                return True
        return False

    def _chunk(self, data: bytes, now: float) -> bool:
        """One `data:` payload; True when it ends the stream (an error or a garbled line)."""
        result = self.result
        try:
            chunk = orjson.loads(data)
            choices = chunk.get("choices")
            if choices:
                choice = next((c for c in choices if (c.get("index") or 0) == 0), None)
                if choice is not None:
                    text = choice.get("text")
                    if text:
                        if not isinstance(text, str):
                            raise TypeError("text is not a string")
                        self._output(chunk, text, None, now)
                    if choice.get("finish_reason"):
                        result.finish_reason = choice["finish_reason"]
            elif chunk.get("error"):
                result.fail(ERROR, STREAM_ERROR, _error_message(chunk["error"]))
                return True
            if chunk.get("usage"):
                _read_usage(chunk, result)
            elif result.model is None and not choices:
                result.model = chunk.get("model") or None
        except (ValueError, AttributeError, TypeError, KeyError, IndexError):
            result.fail(ERROR, MALFORMED_CHUNK, f"a stream line is not a text completion chunk: {data[:80]!r}")
            return True
        return False


class TextStreamClient(StreamClient):
    """StreamClient for POST /completions."""

    path: ClassVar[str] = "/completions"
    stream_class: ClassVar[Any] = TextSSEStream
