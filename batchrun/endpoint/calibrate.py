"""Size synthetic prompts for the endpoint at hand: a local tokenizer when one is named, else two
probe requests whose usage.prompt_tokens fit tokens = a * characters + b (see inputs/synthetic.py)."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from batchrun.config import RunConfig
from batchrun.endpoint.kinds import kind
from batchrun.endpoint.requests import RequestDefaults
from batchrun.endpoint.transport import Endpoint, make_session
from batchrun.inputs.prompt import Prompt
from batchrun.inputs.synthetic import (
    Sizer,
    check_spec,
    default_count,
    fit_sizer,
    load_tokenizer,
    probe_texts,
    synthetic_prompts,
)
from batchrun.store.records import OK


async def calibrate(
    config: RunConfig, endpoint: Endpoint, say: Callable[[str], None], tokenizer: str | None = None, seed: int = 0
) -> Sizer:
    if tokenizer:
        return Sizer(tokenizer=load_tokenizer(tokenizer), source=f"tokenizer {tokenizer}")
    # A probe is one streamed row: an embeddings run's prompts are sized by chat probes.
    probe = kind("completions" if config.endpoint.endpoint == "completions" else "chat")
    defaults = RequestDefaults(model=config.endpoint.model, extra_body=config.request.extra_body)
    points: list[tuple[int, int]] = []
    async with make_session(1) as session:
        client = probe.client_for(session, endpoint, timeout_s=config.limits.timeout)
        for text in probe_texts(seed):
            prompt = Prompt(
                id="probe", row=0, line=0, messages=[{"role": "user", "content": text}], params={"max_tokens": 1}
            )
            result = await client.send(json.dumps(probe.build_body(prompt, defaults), ensure_ascii=False).encode())
            if result.status == OK and result.prompt_tokens:
                points.append((len(text), result.prompt_tokens))
    sizer = fit_sizer(points)
    if sizer is None:
        say(
            "synthetic: the endpoint's usage could not calibrate prompt lengths (no usage in the probe "
            "answers); sizing at 4 characters per token, so realised lengths may differ from requested"
        )
        return Sizer()
    say(
        f"synthetic: {sizer.per_char * 1000:.0f} tokens per 1,000 characters, {sizer.overhead:.0f} tokens "
        "of overhead per prompt (from two probe requests)"
    )
    return sizer


async def synthetic_rows(
    config: RunConfig, endpoint: Endpoint, fallback_n: int, say: Callable[[str], None]
) -> tuple[Iterator[Prompt], dict[str, Any]]:
    """The run's generated prompts and what to record about them (spec, sizing)."""
    spec = check_spec(config.input.synthetic or "")
    sizer = await calibrate(config, endpoint, say, spec.tokenizer, spec.seed)
    info = {**spec.public(), "sizing": sizer.public()}
    return synthetic_prompts(spec, default_count(spec, fallback_n), sizer), info
