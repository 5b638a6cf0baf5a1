"""POST /v1/chat/completions: checks in OpenAI's order, then a Plan, then its delivery."""

from __future__ import annotations

from typing import Any

from batchrun.sim import model
from batchrun.sim.delivery import BodyDelivery, StreamDelivery
from batchrun.sim.directives import DirectiveError
from batchrun.sim.host import Host
from batchrun.sim.http import Connection, Request, response_head
from batchrun.sim.planner import Plan, plan_request, request_directives, token_cost
from batchrun.sim.params import check_params, check_sampling
from batchrun.sim.prefix_cache import apply_cache, chat_prefix_text
from batchrun.sim.sampling import chat_logprob_entry, plan_logprobs
from batchrun.sim.structured import check_response_format, escape
from batchrun.sim.validate import parse_body, validate_chat
from batchrun.sim.wire import (
    DONE,
    ApiError,
    ChunkEncoder,
    completion_body,
    injected_429,
    invalid_api_key,
    model_not_found,
    server_error,
)

SSE_HEADERS = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
JSON_HEADERS = [("content-type", "application/json")]


def handle_chat(server: Host, conn: Connection, req: Request, rid: str) -> None:
    server.counters.requests += 1
    server.counters.by_endpoint["chat"] += 1
    try:
        body, plan = _admit(server, req)
    except ApiError as err:
        return server.send_error(conn, req, rid, err)
    if plan.calls:
        server.counters.tool_call_responses += 1
    headers = [*(SSE_HEADERS if body.get("stream") else JSON_HEADERS), ("x-request-id", rid),
               *server.ratelimit_headers()]
    if body.get("stream"):
        _stream(server, conn, req, body, plan, headers)
    else:
        _respond(server, conn, req, body, plan, headers)


def _admit(server: Host, req: Request) -> tuple[dict[str, Any], Plan]:
    """Auth, body, model, directives, rate limit, injected error -- or the ApiError to answer with."""
    cfg = server.config
    check_auth(cfg.api_key, req)
    body = parse_body(req.body)
    check_params(body, "chat", cfg.strict)
    validate_chat(body)
    check_sampling(body, "chat")
    check_response_format(body)
    if cfg.enforce_models and body["model"] not in cfg.models:
        raise model_not_found(body["model"])
    attempt = server.attempts.next(req.body)
    try:
        directives = request_directives(body, attempt)
    except DirectiveError as err:
        raise ApiError(400, str(err), param="messages") from None
    prompt_tokens = model.estimate_prompt_tokens(body["messages"])
    server.check_rate_limit(body["model"], token_cost(body, prompt_tokens))
    plan = plan_request(cfg, body, directives, attempt, prompt_tokens)
    apply_cache(server.prefix_cache, plan, cfg.prefill_s_per_token, chat_prefix_text(body["messages"]))
    if plan.faults.error is not None:
        server.counters.count_fault(f"error_{plan.faults.error}")
        raise _injected_error(plan.faults.error, cfg.retry_after_s)
    return body, plan


def check_auth(api_key: str | None, req: Request) -> None:
    if api_key is None:
        return
    auth = req.headers.get(b"authorization", b"").decode("latin-1")
    given = auth[7:] if auth[:7].lower() == "bearer " else ""
    if given != api_key:
        raise invalid_api_key(given)


def _injected_error(status: int, retry_after_s: float) -> ApiError:
    if status == 429:
        return injected_429(retry_after_s)
    return server_error(status, retry_after_s if status == 503 else None)


def _stream(server: Host, conn: Connection, req: Request, body: dict[str, Any], plan: Plan,
            headers: list[tuple[str, str]]) -> None:
    opts = body.get("stream_options") or {}
    enc = ChunkEncoder(server.completion_id(), server.created(), body["model"],
                       bool(opts.get("include_usage")))
    units = _units(enc, plan, body)
    if units:
        units[0] = enc.role() + units[0]   # the role chunk goes out with the first token, as OpenAI's does
    else:
        units = [enc.role()]               # a stop sequence at the very start: no content at all
    tail = enc.finish(plan.finish_reason)
    if opts.get("include_usage"):
        tail += enc.usage(plan.prompt_tokens, plan.completion_tokens, plan.cached_tokens)
    head = response_head(200, headers, None, req.keep_alive)
    server.counters.count_response(200)
    StreamDelivery(server.config, server.engine, conn, plan, server.hooks,
                   head, units, tail + DONE, enc.malformed()).start()


def _logprob_entries(body: dict[str, Any], plan: Plan) -> list[dict[str, Any]] | None:
    if not body.get("logprobs") or plan.calls:
        return None
    lps = plan_logprobs(plan.key, plan.tokens, body.get("top_logprobs") or 0)
    return [chat_logprob_entry(t, lp, alts) for t, (lp, alts) in zip(plan.tokens, lps)]


def _units(enc: ChunkEncoder, plan: Plan, body: dict[str, Any]) -> list[bytes]:
    entries = _logprob_entries(body, plan)
    if entries is not None:
        return [enc.content_logprobs(t, e) for t, e in zip(plan.tokens, entries)]
    if not plan.calls:
        if plan.json_text:          # JSON pieces carry quotes: escape them (plain words need not be)
            return [enc.content(escape(t)) for t in plan.tokens]
        return [enc.content(t) for t in plan.tokens]
    units = []
    for i, (call, pieces) in enumerate(zip(plan.calls, plan.arg_pieces, strict=True)):
        units.append(enc.tool_start(i, call))
        units += [enc.tool_args(i, p) for p in pieces]
    return units


def _respond(server: Host, conn: Connection, req: Request, body: dict[str, Any], plan: Plan,
             headers: list[tuple[str, str]]) -> None:
    text = None if plan.calls else "".join(plan.tokens)
    entries = _logprob_entries(body, plan)
    payload = completion_body(server.completion_id(), server.created(), body["model"], text, plan.calls,
                              plan.finish_reason, plan.prompt_tokens, plan.completion_tokens,
                              plan.cached_tokens, None if entries is None else {"content": entries, "refusal": None})

    def head(length: int) -> bytes:
        server.counters.count_response(200)
        return response_head(200, headers, length, req.keep_alive)

    BodyDelivery(server.config, server.engine, conn, plan, server.hooks, head, payload).start()
