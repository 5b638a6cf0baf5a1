"""/v1/completions: the same timed streaming client, reading `choices[0].text` instead of a delta.

Only where the text sits differs from chat: line framing, the response cap, timing (TTFT, ITL),
usage, errors, choices by index and the end-of-stream rules are SSEStream's own (its `feed`
hands a choice without a delta to `_no_delta`, which is where a text chunk's `text` is read).
"""

from __future__ import annotations

from typing import Any, ClassVar

from batchrun.endpoint.client import SSEStream, StreamClient


class TextSSEStream(SSEStream):
    """SSEStream for `text_completion` chunks: `{"choices": [{"text": "...", "finish_reason": ...}]}`."""

    __slots__ = ()
    kind: ClassVar[str] = "text completion"

    def _no_delta(self, chunk: dict[str, Any], choice: dict[str, Any], now: float) -> None:
        text = choice.get("text")
        if text:
            if not isinstance(text, str):
                raise TypeError("text is not a string")
            self._output(chunk, text, None, now)

    def _other_choice(self, index: int, choice: dict[str, Any]) -> None:
        """n > 1: only choice 0's text is read; the other choices' text is not kept."""


class TextStreamClient(StreamClient):
    """StreamClient for POST /completions."""

    path: ClassVar[str] = "/completions"
    stream_class: ClassVar[Any] = TextSSEStream
