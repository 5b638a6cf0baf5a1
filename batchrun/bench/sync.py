"""The sync baseline of `batchrun bench`: the official `openai.OpenAI` client, one request after
another, streaming, timed exactly like the async client (same definitions, same clock).

It is what "plain sequential calls" cost on the user's own prompts and endpoint; the SDK's
per-chunk objects cost ~100 us each, which the report's overhead note mentions.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterable

import openai

from batchrun.endpoint.client import CONNECTION_ERROR, INCOMPLETE_STREAM, MALFORMED_CHUNK, Endpoint, status_error_type
from batchrun.engine.pool import Job
from batchrun.store.records import ERROR, OK, TIMEOUT, Attempt, Record
from batchrun.redact import redact

# Body keys the SDK takes as keyword arguments; anything else goes through `extra_body`.
_SDK_KEYS = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
             "stop", "seed", "tools", "tool_choice", "parallel_tool_calls", "stream_options",
             "n", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "user",
             "response_format"}


def run_sync(endpoint: Endpoint, jobs: Iterable[Job], *, timeout_s: float | None, t0: float,
             send_for_s: float | None = None, clock: Callable[[], float] = time.perf_counter) -> list[Record]:
    """Send `jobs` one after another with the SDK (no SDK retries: a failure is a record);
    stop starting new ones `send_for_s` after `t0`."""
    client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or "not-needed",
                           default_headers=endpoint.auth_headers() if endpoint.basic_auth else None,
                           max_retries=0, timeout=timeout_s)
    records: list[Record] = []
    try:
        for job in jobs:
            if send_for_s is not None and clock() - t0 >= send_for_s:
                break
            records.append(_one(client, job, endpoint, t0, clock, timeout_s))
    finally:
        client.close()
    return records


class _Deadline(Exception):
    """The whole-request --timeout passed mid-stream (the SDK's timeout bounds each read only)."""


def _one(client: openai.OpenAI, job: Job, endpoint: Endpoint, t0: float,
         clock: Callable[[], float], timeout_s: float | None = None) -> Record:
    body: dict[str, Any] = json.loads(job.body)
    body.pop("stream", None)
    kwargs = {k: body.pop(k) for k in list(body) if k in _SDK_KEYS}
    record = Record(id=job.prompt.id, row=job.prompt.row, queued_at=time.time(), attempts=1)
    sent = clock()
    record.sent_s = sent - t0
    parts: list[str] = []
    last = sent
    try:
        stream = client.chat.completions.create(stream=True, extra_body=body or None, **kwargs)
        with stream:
            for chunk in stream:
                now = clock()
                if timeout_s is not None and now - sent > timeout_s:
                    raise _Deadline
                record.model = record.model or chunk.model
                if chunk.usage is not None:
                    record.prompt_tokens = chunk.usage.prompt_tokens
                    record.completion_tokens = chunk.usage.completion_tokens
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta.content or choice.delta.tool_calls:
                    if record.ttft_s is None:
                        record.ttft_s = now - sent
                    else:
                        record.itl_s.append(now - last)
                    last = now
                    record.output_chunks += 1
                    parts.append(choice.delta.content or "")
                record.finish_reason = choice.finish_reason or record.finish_reason
        record.status = OK if record.output_chunks else ERROR
        if not record.output_chunks:
            record.error_type, record.error = "EmptyResponse", "the stream finished without any content"
    except _Deadline:
        record.status, record.error_type = TIMEOUT, openai.APITimeoutError.__name__
        record.error = f"the request took longer than {timeout_s:g}s (--timeout)"
    except openai.APITimeoutError as exc:
        record.status, record.error_type, record.error = TIMEOUT, type(exc).__name__, str(exc)
    except openai.APIStatusError as exc:
        record.status, record.http_status = ERROR, exc.status_code
        record.error_type, record.error = status_error_type(exc.status_code), f"HTTP {exc.status_code}: {exc.message}"
    except openai.APIConnectionError as exc:     # a stream cut after output is what the async client calls it
        kind = INCOMPLETE_STREAM if record.output_chunks else CONNECTION_ERROR
        record.status, record.error_type, record.error = ERROR, kind, f"{type(exc).__name__}: {exc}"
    except openai.OpenAIError as exc:
        record.status, record.error_type, record.error = ERROR, type(exc).__name__, str(exc)
    except ValueError as exc:      # mid-stream, the SDK lets json's error on a non-JSON line through
        record.status, record.error_type, record.error = ERROR, MALFORMED_CHUNK, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a cut stream raises the SDK's HTTP library's own error
        kind = INCOMPLETE_STREAM if record.output_chunks else CONNECTION_ERROR
        record.status, record.error_type, record.error = ERROR, kind, f"{type(exc).__name__}: {exc}"
    end = clock()
    record.text = "".join(parts)
    record.total_s = end - sent
    record.end_s = end - t0
    if record.ttft_s is not None:
        record.latency_s = last - sent
    if record.error:
        record.error = redact(record.error, endpoint.secrets)[:500]
    if record.completion_tokens is None and record.output_chunks:
        record.completion_tokens, record.tokens_estimated = record.output_chunks, True
        record.prompt_tokens = record.prompt_tokens or job.prompt_tokens_estimate
    if record.completion_tokens and record.latency_s:
        record.output_tokens_per_s = record.completion_tokens / record.latency_s
    record.http_status = record.http_status or (200 if record.status == OK else None)
    record.attempt_log = [Attempt(status=record.status, sent_s=record.sent_s, duration_s=record.total_s,
                                  http_status=record.http_status, error_type=record.error_type,
                                  error=record.error)]
    return record
