"""What one HTTP attempt produced (AttemptResult), and the names of the ways it can fail: the
openai SDK's exception names where it has one, our own where it has none."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchrun.redact import redact
from batchrun.store.records import OK, Attempt

# Our own error types, for failures the openai SDK has no class for.
INCOMPLETE_STREAM = "IncompleteStream"  # connection closed before `data: [DONE]`
MALFORMED_CHUNK = "MalformedChunk"  # a `data:` line that is not JSON
STREAM_ERROR = "StreamError"  # `data: {"error": ...}` inside a 200 stream
EMPTY_RESPONSE = "EmptyResponse"  # the stream finished with no answer and no finish_reason
RESPONSE_TOO_LARGE = "ResponseTooLarge"  # the response grew past --max-response-bytes
# The openai SDK's exception names, spelled out so a run does not import the SDK (~0.4 s) just for
# them; tests/test_lazy_imports.py pins them to the SDK's classes.
TIMEOUT_ERROR = "APITimeoutError"
CONNECTION_ERROR = "APIConnectionError"

_STATUS_ERRORS: dict[int, str] = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}
_MAX_MESSAGE = 500
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def status_error_type(status: int) -> str:
    """The openai SDK's exception name for an HTTP status, as the SDK would raise it."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    return "InternalServerError" if status >= 500 else "APIStatusError"


@dataclass(slots=True)
class AttemptResult:
    """What one HTTP attempt produced; times are seconds on the injected monotonic clock."""

    sent: float  # clock value when the request was sent
    status: str = OK
    http_status: int | None = None
    error_type: str | None = None
    error: str | None = None
    retry_after_s: float | None = None
    request_id: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens (llama-server: timings.cache_n)
    usage_chunk: str | None = None  # where usage came: trailing, finish or content (see sse.usage_place)
    reasoning_text: str = ""  # `reasoning_content` / `reasoning` deltas
    other_choices: list[str] | None = None  # n > 1: the texts of choices 1.. by their `index`
    ttft_s: float | None = None  # send -> first output chunk (reasoning, content or tool call)
    ttfo_s: float | None = None  # send -> first answer chunk (content or tool call, not reasoning)
    first_content_s: float | None = None  # send -> first content chunk
    first_tool_call_s: float | None = None  # send -> first tool-call delta
    latency_s: float | None = None  # send -> last output chunk
    total_s: float | None = None  # send -> end of the response
    itl_s: list[float] = field(default_factory=list)
    output_chunks: int = 0
    secrets: tuple[str, ...] = ()  # redacted from `error` before it is cut to length
    endpoint: str | None = None  # which endpoint answered, with several (--base-url A --base-url B)
    reconnects: int = 0  # re-sends after a dead pooled connection (not attempts)

    def fail(self, status: str, error_type: str, message: str) -> "AttemptResult":
        # Redact first: a key echoed past the cut point must not leave its first characters behind.
        message = redact(message, self.secrets)
        self.status, self.error_type, self.error = status, error_type, message[:_MAX_MESSAGE]
        return self

    def logged(self, t0: float) -> Attempt:
        """This attempt as a record's attempt log keeps it (times from the run's start `t0`)."""
        return Attempt(
            status=self.status,
            sent_s=self.sent - t0,
            duration_s=self.total_s or 0.0,
            http_status=self.http_status,
            error_type=self.error_type,
            error=self.error,
            retry_after_s=self.retry_after_s,
        )


def error_message(error: Any) -> str:
    """The message of an OpenAI-shaped `error` object (or whatever stands in its place)."""
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error.get("code") or error)
    return str(error)
