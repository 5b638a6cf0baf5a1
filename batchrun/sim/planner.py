"""A validated request body -> the Plan of its response (pure: no clock, no socket).

Everything seeded comes from RNGs keyed by (seed, messages, tools), so the plan does not depend
on arrival order. The text and tool choice use attempt 0 (a retry gets the same answer); fault
rolls and latency jitter use the attempt number of the identical body (a retry can succeed).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from batchrun.sim import model, structured
from batchrun.sim.config import SimConfig
from batchrun.sim.directives import Directives, parse_directives
from batchrun.sim.faults import NO_FAULTS, Faults, any_fault_rate, choose_faults
from batchrun.sim.params import stop_list
from batchrun.sim.sampling import apply_stop, output_length
from batchrun.sim.text import generate_tokens
from batchrun.sim.tools import ToolCall, choose_tools, make_calls, split_arguments

DEFAULT_COST_COMPLETION = 256  # TPM cost of the answer when the request gives no max_tokens


@dataclass(slots=True)
class Plan:
    prompt_tokens: int
    finish_reason: str = "stop"
    tokens: list[str] = field(default_factory=list)  # content tokens, one per chunk
    calls: list[ToolCall] = field(default_factory=list)
    arg_pieces: list[list[str]] = field(default_factory=list)  # per call: argument pieces, one per chunk
    faults: Faults = NO_FAULTS
    ttft_s: float = 0.0  # slot -> first token (no queue wait); see model.ttft_s
    queued: bool = True  # False: skip the capacity queue (fast, fixed, [[sim:ttft=...]])
    itl_jitter: list[float] = field(default_factory=list)  # one factor per gap
    chunk_tokens: float = 1.0  # content tokens per output chunk, on average (SimConfig.tokens_per_chunk, plain text)
    chunk_u: float = 0.0  # a fractional chunk_tokens: the draw that rounds the chunk count (content_chunk_count)
    twin_ranks: list[float] = field(default_factory=list)  # twin: TTFT rank, mean-gap rank, a rank per gap
    twin_ttft: bool = False  # twin: TTFT drawn when the request starts (else ttft_s, from a directive)
    cached_tokens: int = 0  # prompt tokens served from the prefix cache (usage.prompt_tokens_details)
    key: bytes = b""  # the request's RNG key (logprobs are drawn from it)
    json_text: bool = False  # tokens are pieces of a JSON document: escaped on the wire
    unseen_tokens: int = 0  # generated but not sent: the stop token of [[sim:empty]]

    @property
    def n_chunks(self) -> int:
        """Output chunks: one per chunk_tokens content tokens, or per call one header plus its
        argument pieces."""
        return content_chunk_count(len(self.tokens), self.chunk_tokens, self.chunk_u) + sum(
            1 + len(p) for p in self.arg_pieces
        )

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens) + sum(1 + len(p) for p in self.arg_pieces) + self.unseen_tokens

    def content_chunks(self) -> list[str]:
        """The content tokens as streamed: chunk_tokens of them per chunk (see chunk_edges)."""
        if self.chunk_tokens == 1:
            return self.tokens
        edges = chunk_edges(len(self.tokens), self.chunk_tokens, self.chunk_u)
        return ["".join(self.tokens[a:b]) for a, b in zip(edges, edges[1:])]


def content_chunk_count(tokens: int, per_chunk: float, u: float = 0.0) -> int:
    """Chunks that `tokens` content tokens are streamed in at `per_chunk` tokens a chunk.

    A whole per_chunk groups exactly: ceil(tokens / k), the last chunk the smaller. A fractional
    one is an average (a server that holds a byte token back until it completes a character:
    llama-server streamed 24 tokens in 19 to 22 chunks, 1.18 a chunk): x = tokens / k chunks,
    rounded up with probability frac(x) by the draw u, else down (at least one), so the mean count
    is x. Rounding always up would give every answer up to a chunk, and its gap, more than its
    source had (+3.6% of the gap time at 20.3 chunks)."""
    if not tokens:
        return 0
    x = tokens / per_chunk
    if per_chunk == int(per_chunk):
        return math.ceil(x - 1e-9)
    whole = math.floor(x + 1e-9)
    return max(1, whole + (1 if u < x - whole else 0))


def chunk_edges(tokens: int, per_chunk: float, u: float = 0.0) -> list[int]:
    """Where each chunk starts, and the end: a whole k gives chunks of exactly k (the last one
    smaller); a fractional one spreads the tokens evenly over content_chunk_count's chunks, mixing
    sizes floor(k) and ceil(k)."""
    n = content_chunk_count(tokens, per_chunk, u)
    if per_chunk == int(per_chunk):
        step = int(per_chunk)
        return [min(tokens, j * step) for j in range(n)] + [tokens]
    return [round(j * tokens / n) for j in range(n + 1)]


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return model.message_text(message)
    return ""


def output_cap(body: dict[str, Any]) -> int | None:
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    return cap if isinstance(cap, int) else None


# Counts requests planned in this process; only fresh-jitter mode reads it (seeded by order).
_REQUEST_COUNTER = itertools.count()


def token_cost(body: dict[str, Any], prompt_tokens: int) -> int:
    """What a request counts against the TPM limit: prompt + max_tokens, as OpenAI reserves it."""
    return prompt_tokens + (output_cap(body) or DEFAULT_COST_COMPLETION)


def request_directives(body: dict[str, Any], attempt: int) -> Directives:
    """Raises DirectiveError for an unreadable marker."""
    return parse_directives(last_user_text(body["messages"]), attempt)


def plan_request(
    cfg: SimConfig, body: dict[str, Any], d: Directives, attempt: int, prompt_tokens: int, group: bool = True
) -> Plan:
    """`group`: content tokens may share a chunk (not when each chunk carries its logprobs)."""
    messages = body["messages"]
    key = model.request_key(cfg.seed, messages, body.get("tools"), body.get("seed"))
    plan = Plan(prompt_tokens=prompt_tokens, key=key)
    if structured.wants_json(body) and not body.get("tools"):
        _plan_json(plan, cfg, body, key, attempt)
    else:
        _plan_output(plan, cfg, body, d, key)
        if group and not plan.calls:
            plan.chunk_tokens = cfg.tokens_per_chunk
            plan.chunk_u = model.rng_for(key, "chunks").random()
    faulty = d != Directives() or any_fault_rate(cfg)
    if faulty:
        # A twin rolls on its own stream: the same prompts and seed as its source's sim must not
        # fail in the same places.
        purpose = "fault" if cfg.twin is None else "twin-fault"
        rng = model.rng_for(key, purpose, attempt) if any_fault_rate(cfg) else None
        plan.faults = choose_faults(cfg, d, rng, plan.n_chunks)
    _plan_timing(plan, cfg, d, key, attempt)
    return plan


def _plan_output(plan: Plan, cfg: SimConfig, body: dict[str, Any], d: Directives, key: bytes) -> None:
    messages = body["messages"]
    user_text = last_user_text(messages)
    if body.get("tools"):
        last_role = messages[-1].get("role", "") if isinstance(messages[-1], dict) else ""
        rng = model.rng_for(key, "tools")
        names = choose_tools(body, user_text, last_role, d, rng, cfg.tool_call_rate)
        if names:
            plan.calls = make_calls(names, body, user_text, rng, d.bad_args)
            plan.arg_pieces = [split_arguments(c.arguments, rng) for c in plan.calls]
            plan.finish_reason = "tool_calls"
            return
    if d.empty:  # the first token matched a stop sequence: counted in usage, never sent
        plan.finish_reason, plan.unseen_tokens = "stop", 1
        return
    rng = model.rng_for(key, "text")
    natural = d.tokens or natural_tokens(rng, cfg, output_cap(body))
    min_tokens = body.get("min_tokens") or 0
    n, plan.finish_reason = output_length(natural, output_cap(body), bool(body.get("ignore_eos")), min_tokens)
    plan.tokens = generate_tokens(rng, n)
    plan.tokens, stopped = apply_stop(plan.tokens, stop_list(body), min_tokens)  # ignore_eos keeps stops, as vLLM
    if stopped:
        plan.finish_reason = "stop"


def natural_tokens(rng: random.Random, cfg: SimConfig, cap: int | None) -> int:
    """The answer's length before max_tokens: the latency model's lognormal, or a twin's draw."""
    if cfg.twin is None:
        return model.sample_output_tokens(rng, cfg)
    return cfg.twin.answer_tokens(rng.random(), cap)


def _plan_json(plan: Plan, cfg: SimConfig, body: dict[str, Any], key: bytes, attempt: int) -> None:
    """response_format json_object / json_schema: a JSON answer (see sim/structured.py)."""
    text = structured.json_answer(body, model.rng_for(key, "json"))
    if cfg.invalid_json_rate and model.rng_for(key, "invalid-json", attempt).random() < cfg.invalid_json_rate:
        text = structured.break_json(text)
    tokens = structured.json_tokens(text)
    cap = output_cap(body)
    plan.finish_reason = "length" if cap and cap < len(tokens) else "stop"
    plan.tokens, plan.json_text = tokens[:cap] if cap else tokens, True


def _plan_timing(plan: Plan, cfg: SimConfig, d: Directives, key: bytes, attempt: int) -> None:
    # A twin has no slots to queue for: its TTFT tables hold the queueing its source saw.
    plan.queued = not (cfg.fast or cfg.fixed or d.ttft is not None or cfg.twin is not None)
    if not cfg.fast:
        gaps = plan.n_chunks  # gaps after the first chunk, plus one before the finish chunk
        # Fresh jitter: a counter in the key, so even the same prompt sent twice differs.
        jitter_key = key + next(_REQUEST_COUNTER).to_bytes(8, "little") if cfg.fresh_jitter else key
        rng = model.rng_for(jitter_key, "latency", attempt)
        if cfg.twin is not None:
            plan.twin_ranks = [rng.random() for _ in range(gaps + 2)]
            plan.twin_ttft = d.ttft is None
        else:
            factors = model.jitter_factors(rng, cfg, gaps + 1)
            plan.ttft_s = model.ttft_s(cfg, plan.prompt_tokens, factors[0])
            plan.itl_jitter = factors[1:]
    if d.ttft is not None:
        plan.ttft_s = d.ttft  # honoured in fast mode too: handy for client-timeout tests
