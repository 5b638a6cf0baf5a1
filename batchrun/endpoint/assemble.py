"""Record assembly for the kinds that answer one row per request (chat, completions): the final
attempt's result, the row's attempts and its time in the queue -> the row's Record. The pool and
bench's sync baseline both build records here, so the two sides of a bench name and estimate
the same response the same way.
"""

from __future__ import annotations

from batchrun.endpoint.attempt import AttemptResult
from batchrun.endpoint.requests import Job
from batchrun.store.records import OK, Attempt, Record


def to_record(
    job: Job, result: AttemptResult, log: list[Attempt], t0: float, queued_at: float, queue_wait: float
) -> Record:
    """One row's Record from its final attempt; `log` holds every attempt, `t0` is the run's start
    on the same clock as `result`, `queued_at` the wall-clock label of the row's queueing and
    `queue_wait` the seconds it waited before its first send."""
    prompt, sent_s = job.prompt, result.sent - t0
    record = Record(
        id=prompt.id,
        row=prompt.row,
        status=result.status,
        error_type=result.error_type,
        error=result.error,
        http_status=result.http_status,
        attempts=len(log),
        attempt_log=log,
        request_id=result.request_id,
        model=result.model,
        finish_reason=result.finish_reason,
        text=result.text,
        tool_calls=result.tool_calls,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        cached_tokens=result.cached_tokens,
        usage_chunk=result.usage_chunk,
        queued_at=queued_at,
        queue_wait_s=queue_wait,
        sent_s=sent_s,
        ttft_s=result.ttft_s,
        latency_s=result.latency_s,
        total_s=result.total_s,
        itl_s=result.itl_s,
        output_chunks=result.output_chunks,
        ttfo_s=result.ttfo_s,
        reasoning_text=result.reasoning_text,
        reasoning_tokens=result.reasoning_tokens,
        other_choices=result.other_choices,
        input=prompt.data,
        request=job.request,
        endpoint=result.endpoint,
    )
    if record.end_s is None and result.total_s is not None:
        record.end_s = sent_s + result.total_s
    record.empty = result.status == OK and not result.text and not result.tool_calls
    if result.output_chunks and record.completion_tokens is None:
        # No usage from the server: one token per output chunk, and say it is an estimate.
        record.completion_tokens = result.output_chunks
        record.prompt_tokens = record.prompt_tokens or job.prompt_tokens_estimate
        record.tokens_estimated = True
    if record.completion_tokens and record.latency_s:
        record.output_tokens_per_s = record.completion_tokens / record.latency_s
    return record
