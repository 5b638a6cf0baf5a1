"""POST /v1/chat/completions: checks in OpenAI's order, then a Plan, then its delivery."""

from __future__ import annotations

from typing import Any

from batchrun.sim import model
from batchrun.sim.delivery import StreamDelivery
from batchrun.sim.directives import DirectiveError
from batchrun.sim.handling import admitted, answer_headers, check_injected_error, check_model, read_body, send_body
from batchrun.sim.host import Host
from batchrun.sim.http import Connection, Request, response_head
from batchrun.sim.params import check_sampling
from batchrun.sim.planner import Plan, plan_request, request_directives, token_cost
from batchrun.sim.prefix_cache import apply_cache, chat_prefix_text
from batchrun.sim.sampling import chat_logprob_entry, plan_logprobs
from batchrun.sim.structured import check_response_format, escape
from batchrun.sim.validate import validate_chat
from batchrun.sim.wire import DONE, ApiError, ChunkEncoder, completion_body, dumps, place_usage, usage


def handle_chat(server: Host, conn: Connection, req: Request, rid: str) -> None:
    got = admitted(server, conn, req, rid, "chat", _admit)
    if got is None:
        return
    body, plan = got
    if plan.calls:
        server.counters.tool_call_responses += 1
    headers = answer_headers(server, rid, bool(body.get("stream")))
    if body.get("stream"):
        _stream(server, conn, req, body, plan, headers)
    else:
        _respond(server, conn, req, body, plan, headers)


def _admit(server: Host, req: Request) -> tuple[dict[str, Any], Plan]:
    """Auth, body, model, directives, rate limit, injected error -- or the ApiError to answer with."""
    cfg = server.config
    body = read_body(server, req, "chat")
    validate_chat(body)
    check_sampling(body, "chat")
    check_response_format(body)
    check_model(cfg, body)
    attempt = server.attempts.next(req.body)
    try:
        directives = request_directives(body, attempt)
    except DirectiveError as err:
        raise ApiError(400, str(err), param="messages") from None
    prompt_tokens = model.estimate_prompt_tokens(body["messages"], cfg.chars_per_token)
    server.check_rate_limit(body["model"], token_cost(body, prompt_tokens))
    plan = plan_request(cfg, body, directives, attempt, prompt_tokens, group=not body.get("logprobs"))
    apply_cache(server.prefix_cache, plan, cfg.prefill_s_per_token, chat_prefix_text(body["messages"]))
    check_injected_error(server, plan)
    return body, plan


def _stream(
    server: Host, conn: Connection, req: Request, body: dict[str, Any], plan: Plan, headers: list[tuple[str, str]]
) -> None:
    opts = body.get("stream_options") or {}
    enc = ChunkEncoder(server.completion_id(), server.created(), body["model"], bool(opts.get("include_usage")))
    units = _units(enc, plan, body)
    if units:
        units[0] = enc.role() + units[0]  # the role chunk goes out with the first token, as OpenAI's does
    else:
        units = [enc.role()]  # a stop sequence at the very start: no content at all
    tail = enc.finish(plan.finish_reason)
    if opts.get("include_usage"):
        counts = (plan.prompt_tokens, plan.completion_tokens, plan.cached_tokens)
        units, tail = place_usage(server.config.usage_placement, units, tail, enc.usage(*counts), dumps(usage(*counts)))
    head = response_head(200, headers, None, req.keep_alive)
    server.counters.count_response(200)
    StreamDelivery(
        server.config, server.engine, conn, plan, server.hooks, head, units, tail + DONE, enc.malformed()
    ).start()


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
        if plan.json_text:  # JSON pieces carry quotes: escape them (plain words need not be)
            return [enc.content(escape(t)) for t in plan.tokens]
        return [enc.content(t) for t in plan.content_chunks()]
    units = []
    for i, (call, pieces) in enumerate(zip(plan.calls, plan.arg_pieces, strict=True)):
        units.append(enc.tool_start(i, call))
        units += [enc.tool_args(i, p) for p in pieces]
    return units


def _respond(
    server: Host, conn: Connection, req: Request, body: dict[str, Any], plan: Plan, headers: list[tuple[str, str]]
) -> None:
    text = None if plan.calls else "".join(plan.tokens)
    entries = _logprob_entries(body, plan)
    payload = completion_body(
        server.completion_id(),
        server.created(),
        body["model"],
        text,
        plan.calls,
        plan.finish_reason,
        plan.prompt_tokens,
        plan.completion_tokens,
        plan.cached_tokens,
        None if entries is None else {"content": entries, "refusal": None},
    )
    send_body(server, conn, req, plan, headers, payload)
