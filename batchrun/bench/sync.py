"""The sync baseline of `batchrun bench`: the official `openai.OpenAI` client, one request after
another, streaming.

Only the transport is its own (the SDK's blocking httpx client); the bytes it receives go through
the async client's own SSE parser and classification (`SSEStream`, `fail_status`, `to_record`),
so the sync and async rows of a bench call the same server response the same thing: a stream
without `[DONE]`, an error event inside a 200 stream, a malformed line, an empty answer.

The client is built and warmed (one unmeasured request) before the clock starts, so its setup
is not counted as the baseline's time. Its transport re-sends, once and at once, a request that
met a pooled connection the server had closed (endpoint/sdk_transport.py), as the async client
does, and the record counts it in `reconnects`: neither side pays a failed try for it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import openai

from batchrun.endpoint.assemble import to_record
from batchrun.endpoint.attempt import CONNECTION_ERROR, INCOMPLETE_STREAM, TIMEOUT_ERROR, AttemptResult
from batchrun.endpoint.requests import Job
from batchrun.endpoint.sdk_transport import ResendTransport
from batchrun.endpoint.sse import SSEStream
from batchrun.endpoint.transport import Endpoint, fail_status
from batchrun.redact import redact
from batchrun.store.records import CANCELLED, ERROR, TIMEOUT, Record

# Body keys the SDK takes as keyword arguments; anything else goes through `extra_body`.
_SDK_KEYS = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stream_options",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "user",
    "response_format",
}


class _Client(NamedTuple):
    sdk: openai.OpenAI
    transport: ResendTransport  # its `reconnects` gives each request's re-sends


def make_client(endpoint: Endpoint, timeout_s: float | None) -> _Client:
    """The SDK client, without its retries (a failure is a record), over a ResendTransport, and
    without following redirects (the SDK's httpx client follows them, turning a POST into a GET)."""
    transport = ResendTransport()
    sdk = openai.OpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key or "not-needed",
        default_headers=endpoint.auth_headers() if endpoint.basic_auth else None,
        max_retries=0,
        timeout=timeout_s,
        http_client=openai.DefaultHttpxClient(transport=transport, follow_redirects=False),
    )
    return _Client(sdk, transport)


def run_sync(
    endpoint: Endpoint,
    jobs: Iterable[Job],
    *,
    timeout_s: float | None,
    t0: float | None = None,
    send_for_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    warmup: Sequence[Job] = (),
    stop: threading.Event | None = None,
    send_check: Callable[[], bool] | None = None,
    records: list[Record] | None = None,
) -> list[Record]:
    """Send `jobs` one after another; stop starting new ones `send_for_s` after the start, or
    once `send_check` (asked before each send) says no.

    `warmup` jobs go first and are not recorded; the run's clock (`t0`, unless given) starts after
    them, so every record's `sent_s` is an offset from the first measured send. Setting `stop`
    (Ctrl-C in the bench) ends the run after the request in flight. Records are appended to
    `records` (when given, so a caller may watch them) as each request ends, and returned."""
    client = make_client(endpoint, timeout_s)
    records = [] if records is None else records
    try:
        for job in warmup:
            _one(client, job, endpoint, clock(), clock, timeout_s)
        start = clock() if t0 is None else t0
        for job in jobs:
            if (
                (send_for_s is not None and clock() - start >= send_for_s)
                or (stop is not None and stop.is_set())
                or (send_check is not None and not send_check())
            ):
                break
            records.append(_one(client, job, endpoint, start, clock, timeout_s))
    finally:
        client.sdk.close()
    return records


class _Deadline(Exception):
    """The whole-request --timeout passed mid-stream (the SDK's timeout bounds each read only)."""


def _kwargs(job: Job) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(job.body)
    body.pop("stream", None)
    kwargs = {k: body.pop(k) for k in list(body) if k in _SDK_KEYS}
    return {**kwargs, "stream": True, "extra_body": body or None}


def _one(
    client: _Client, job: Job, endpoint: Endpoint, t0: float, clock: Callable[[], float], timeout_s: float | None = None
) -> Record:
    queued_at = time.time()
    resent_before = client.transport.reconnects
    result = AttemptResult(sent=clock())
    try:
        _stream(client.sdk, job, result, clock, timeout_s)
    except _Deadline:
        result.fail(TIMEOUT, TIMEOUT_ERROR, f"the request took longer than {timeout_s:g}s (--timeout)")
    except openai.APITimeoutError:
        result.fail(TIMEOUT, TIMEOUT_ERROR, f"the request took longer than {timeout_s:g}s (--timeout)")
    except openai.APIStatusError as exc:
        result.http_status = exc.status_code
        response = exc.response
        fail_status(
            result,
            exc.status_code,
            response.content if response is not None else b"",
            location=response.headers.get("location") if response is not None else None,
        )
    except KeyboardInterrupt:
        result.fail(CANCELLED, "Cancelled", "cancelled before the response finished")
        raise
    except Exception as exc:  # noqa: BLE001 - mid-stream, the SDK lets its HTTP library's own errors through
        if "Timeout" in type(exc).__name__:
            result.fail(TIMEOUT, TIMEOUT_ERROR, f"the request took longer than {timeout_s:g}s (--timeout)")
        else:  # a stream cut after output is what the async client calls it
            kind = INCOMPLETE_STREAM if result.ttft_s is not None else CONNECTION_ERROR
            result.fail(ERROR, kind, f"the server closed the connection: {type(exc).__name__}: {exc}")
    if result.total_s is None:
        result.total_s = clock() - result.sent
    if result.error:
        result.error = redact(result.error, endpoint.secrets)
    log = [result.logged(t0)]
    record = to_record(job, result, log, t0, queued_at, 0.0)
    # The re-send happens inside the SDK's call: its clock started before the dead connection,
    # so unlike the async client's, this record's times include that (loopback: well under 1 ms).
    record.reconnects = client.transport.reconnects - resent_before
    return record


def _stream(
    client: openai.OpenAI, job: Job, result: AttemptResult, clock: Callable[[], float], timeout_s: float | None
) -> None:
    with client.chat.completions.with_streaming_response.create(**_kwargs(job)) as resp:
        result.http_status = resp.status_code
        result.request_id = resp.headers.get("x-request-id")
        stream = SSEStream(result)
        ended: float | None = None  # when `data: [DONE]` (or a stream error) was read
        try:
            for piece in resp.iter_bytes():
                now = clock()
                if timeout_s is not None and now - result.sent > timeout_s:
                    raise _Deadline
                # After the end, read on to the body's own end (its last chunk marker), as the
                # SDK's Stream does: httpx keeps only a connection whose response was read to
                # the end, and a user of the SDK sends each request on a kept connection.
                if ended is None and stream.feed(piece, now):
                    ended = now
        finally:
            # Also on a timeout or a cut: keep the partial text and timings (the caller then sets
            # the outcome, which finish() never overrides).
            stream.finish(clock() if ended is None else ended)
