"""POST /v1/completions: the legacy text endpoint (a prompt string in, text out), with the same
checks, plan, latency model, prefix cache and faults as chat; the prompt plays the user message.

One prompt per request: a list of several prompts (OpenAI's batching) and `n` > 1 are answered
with a 400 that says so.
"""

from __future__ import annotations

import math
from typing import Any

from batchrun.sim.delivery import StreamDelivery
from batchrun.sim.directives import DirectiveError
from batchrun.sim.handling import admitted, answer_headers, check_injected_error, check_model, read_body, send_body
from batchrun.sim.host import Host
from batchrun.sim.http import Connection, Request, response_head
from batchrun.sim.params import check_sampling
from batchrun.sim.planner import Plan, plan_request, request_directives, token_cost
from batchrun.sim.prefix_cache import apply_cache
from batchrun.sim.sampling import completion_logprobs, plan_logprobs
from batchrun.sim.wire import DONE, FINGERPRINT, ApiError, dumps, place_usage, usage


def handle_completions(server: Host, conn: Connection, req: Request, rid: str) -> None:
    got = admitted(server, conn, req, rid, "completions", _admit)
    if got is None:
        return
    body, prompt, plan = got
    headers = answer_headers(server, rid, bool(body.get("stream")))
    cid = "cmpl-" + server.completion_id().removeprefix("chatcmpl-")
    enc = TextEncoder(
        cid, server.created(), body["model"], bool((body.get("stream_options") or {}).get("include_usage"))
    )
    echo = prompt if body.get("echo") and isinstance(prompt, str) else ""
    lps = _logprobs(body, plan, len(echo))
    if body.get("stream"):
        pieces = (
            [enc.text(t, lp) for t, lp in zip(plan.tokens, lps)]
            if lps
            else [enc.text(t) for t in plan.content_chunks()]
        )
        units = ([enc.text(echo)] if echo else []) + pieces
        tail = enc.text("", None, plan.finish_reason)
        if enc.include_usage:
            usage_json = dumps(usage(plan.prompt_tokens, plan.completion_tokens, plan.cached_tokens))
            units, tail = place_usage(server.config.usage_placement, units, tail, enc.usage(plan), usage_json)
        server.counters.count_response(200)
        StreamDelivery(
            server.config,
            server.engine,
            conn,
            plan,
            server.hooks,
            response_head(200, headers, None, req.keep_alive),
            units,
            tail + DONE,
            enc.prefix + b'"unterminated\n\n',
        ).start()
        return
    payload = enc.body(echo + "".join(plan.tokens), plan, _joined(lps, plan, len(echo)))
    send_body(server, conn, req, plan, headers, payload)


def _admit(server: Host, req: Request) -> tuple[dict[str, Any], str | list[int], Plan]:
    cfg = server.config
    body = read_body(server, req, "completions")
    prompt = validate_completion(body)
    check_sampling(body, "completions")
    check_model(cfg, body)
    text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    chat_like = {**body, "messages": [{"role": "user", "content": text}]}
    chat_like.pop("logprobs", None)
    attempt = server.attempts.next(req.body)
    try:
        directives = request_directives(chat_like, attempt)
    except DirectiveError as err:
        raise ApiError(400, str(err), param="prompt") from None
    prompt_tokens = len(prompt) if isinstance(prompt, list) else max(1, math.ceil(len(prompt) / cfg.chars_per_token))
    server.check_rate_limit(body["model"], token_cost(body, prompt_tokens))
    plan = plan_request(cfg, chat_like, directives, attempt, prompt_tokens, group=body.get("logprobs") is None)
    apply_cache(server.prefix_cache, plan, cfg.prefill_s_per_token, text)
    check_injected_error(server, plan)
    return body, prompt, plan


def validate_completion(body: dict[str, Any]) -> str | list[int]:
    """The one prompt of the request (a string, or token ids), or OpenAI's 400."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ApiError(400, "you must provide a model parameter", param="model")
    prompt = body.get("prompt")
    if prompt is None:
        raise ApiError(400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return prompt
    if isinstance(prompt, list) and len(prompt) > 1:
        raise ApiError(400, "The sim answers one prompt per request: send a string, or a list of one.", param="prompt")
    if not isinstance(prompt, str):
        raise ApiError(
            400,
            "Invalid type for 'prompt': expected one of a string, an array of strings, an array "
            "of integers or an array of arrays of integers.",
            param="prompt",
            code="invalid_type",
        )
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise ApiError(400, "Invalid type for 'stream': expected a boolean.", param="stream", code="invalid_type")
    if body.get("stream_options") is not None and body.get("stream") is not True:
        raise ApiError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    for name in ("max_tokens", "n"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ApiError(
                400,
                f"Invalid '{name}': expected an integer >= 1, but got {value!r} instead.",
                param=name,
                code="invalid_value",
            )
    if body.get("n") not in (None, 1):
        raise ApiError(400, "The sim answers with one choice only: leave out 'n' or set it to 1.", param="n")
    return prompt


def _logprobs(body: dict[str, Any], plan: Plan, offset: int) -> list[dict[str, Any]] | None:
    """Per token, the chunk's `logprobs` object (completions format), when `logprobs` is set."""
    if body.get("logprobs") is None:
        return None
    lps = plan_logprobs(plan.key, plan.tokens, body["logprobs"])
    out, pos = [], offset
    for token, lp in zip(plan.tokens, lps):
        out.append(completion_logprobs([token], [lp], pos))
        pos += len(token)
    return out


def _joined(per_token: list[dict[str, Any]] | None, plan: Plan, offset: int) -> dict[str, Any] | None:
    """The per-token objects as one choice's `logprobs` (non-streamed)."""
    if per_token is None:
        return None
    return {
        "tokens": list(plan.tokens),
        "token_logprobs": [p["token_logprobs"][0] for p in per_token],
        "top_logprobs": [p["top_logprobs"][0] for p in per_token],
        "text_offset": [p["text_offset"][0] for p in per_token],
    }


class TextEncoder:
    """`text_completion` objects and stream chunks."""

    def __init__(self, cid: str, created: int, model: str, include_usage: bool) -> None:
        self.cid, self.created, self.model, self.include_usage = cid, created, model, include_usage
        self.prefix = (
            b'data: {"id":"'
            + cid.encode()
            + b'","object":"text_completion","created":'
            + str(created).encode()
            + b',"model":'
            + dumps(model)
            + b',"system_fingerprint":"'
            + FINGERPRINT.encode()
            + b'","choices":[{"index":0,"text":'
        )
        self._usage_null = b',"usage":null' if include_usage else b""

    def text(self, token: str, logprobs: dict[str, Any] | None = None, finish: str | None = None) -> bytes:
        return (
            self.prefix
            + dumps(token)
            + b',"logprobs":'
            + dumps(logprobs)
            + b',"finish_reason":'
            + dumps(finish)
            + b"}]"
            + self._usage_null
            + b"}\n\n"
        )

    def usage(self, plan: Plan) -> bytes:
        return b"data: " + dumps(self._object([], plan)) + b"\n\n"

    def body(self, text: str, plan: Plan, logprobs: dict[str, Any] | None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": plan.finish_reason}
        return dumps(self._object([choice], plan))

    def _object(self, choices: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
        return {
            "id": self.cid,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
            "usage": usage(plan.prompt_tokens, plan.completion_tokens, plan.cached_tokens),
        }
