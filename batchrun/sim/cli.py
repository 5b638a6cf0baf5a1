"""`batchrun serve`: run the simulated endpoint in the foreground until Ctrl-C.

Its options are declared here, beside SimConfig, with the same Option declarations as every other
command's (batchrun/options.py); each names the SimConfig field it sets, and its default is that
field's. The main app generates the command from them (`SERVE_OPTIONS`), makes the SimConfig
through the Python face (`batchrun.serve`'s) and serves it here (`serve_foreground`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Optional

import typer

from batchrun.interrupts import unwinding
from batchrun.options import Option
from batchrun.options import of as options_of
from batchrun.sim.config import DEFAULT_MODEL, SimConfig

SERVE_PANELS = {
    "serve": "Options",
    "latency": "Latency model",
    "faults": "Faults (probabilities per request, seeded)",
    "batch": "Batch API (/v1/files, /v1/batches)",
}
_SIM = {f.name: f.default for f in dataclasses.fields(SimConfig)}


def _s(name: str, type: Any, help: str, group: str = "serve", field: str | None = None, **kw: Any) -> Option:
    """A serve option setting SimConfig's `field` (default: the option's name), with its default."""
    into = kw.pop("into", (field or name,))
    default = kw.pop("default") if "default" in kw else _SIM[into[0]]
    return Option(name, type, default, help, group, commands=("serve",), into=into, **kw)


def _models(value: list[str] | tuple[str, ...] | str | None) -> tuple[str, ...]:
    return (DEFAULT_MODEL,) if not value else (value,) if isinstance(value, str) else tuple(value)


SERVE_OPTIONS: tuple[Option, ...] = (
    _s(
        "host",
        str,
        "Interface to listen on; keep the loopback default unless you mean to expose it.",
        default="127.0.0.1",
        into=(),
    ),
    _s("port", int, "TCP port; 0 picks a free one.", default=8000, into=()),
    _s(
        "model",
        Optional[list[str]],
        f"Model name to list in /v1/models; repeat for several (default: {DEFAULT_MODEL}).",
        field="models",
        default=None,
        flags=("--model",),
        parse=_models,
    ),
    _s("enforce_models", bool, "Answer 404 model_not_found for a model not given with --model."),
    _s("seed", int, "Seed for text, lengths, jitter and faults."),
    _s("api_key", Optional[str], "Require 'Authorization: Bearer KEY' (401 otherwise). Default: no auth."),
    _s("fast", bool, "Zero delays and no queueing: measures the client's own overhead."),
    _s("rpm", Optional[int], "Requests-per-minute limit (429 beyond it)."),
    _s("tpm", Optional[int], "Tokens-per-minute limit: prompt tokens + max_tokens (256 if unset)."),
    _s(
        "ratelimit_headers",
        str,
        "How --rpm/--tpm are announced: openai (x-ratelimit-*), anthropic "
        "(anthropic-ratelimit-*), ietf (RateLimit / RateLimit-Policy) or none.",
    ),
    _s("tool_call_rate", float, "Chance of a tool call when tools are offered and none is named in the prompt."),
    _s(
        "strict",
        bool,
        "strict: 400 for unknown parameters and out-of-range values, as OpenAI; lenient: accept "
        "and ignore them, as vLLM.",
        flags=("--strict/--lenient",),
    ),
    _s("embedding_dim", int, "Length of /v1/embeddings vectors unless the request sets 'dimensions'."),
    _s(
        "like",
        Optional[list[str]],
        "Serve a twin: a twin file from `batchrun fit`, or run / bench directories to "
        "fit now (repeatable). Its latency, output lengths, failures, rate limits and "
        "wire quirks replace the latency, output, fault and rate-limit options.",
        default=None,
        flags=("--like",),
        into=(),
    ),
    _s("quiet", bool, "Print only the base URL.", default=False, flags=("--quiet", "-q"), into=()),
    _s(
        "fixed_ttft",
        Optional[float],
        "Fixed-latency mode: exact seconds to first token (no jitter, no queue).",
        "latency",
        "fixed_ttft_s",
    ),
    _s("fixed_itl", Optional[float], "Fixed-latency mode: exact seconds between chunks.", "latency", "fixed_itl_s"),
    _s("ttft", float, "Base seconds to first token.", "latency", "ttft_s"),
    _s("prefill", float, "Seconds added to TTFT per prompt token.", "latency", "prefill_s_per_token"),
    _s("itl", float, "Seconds between tokens with one sequence decoding.", "latency", "itl_s"),
    _s("itl_load_factor", float, "Relative ITL growth per extra decoding sequence.", "latency"),
    _s("jitter", float, "Lognormal sigma of TTFT and ITL jitter (0: none).", "latency"),
    _s("max_concurrency", int, "Sequences decoding at once; more requests wait FIFO.", "latency"),
    _s("output_tokens_mean", float, "Mean answer length in tokens (lognormal).", "latency"),
    _s("output_tokens", Optional[int], "Fixed answer length in tokens (max_tokens still caps it).", "latency"),
    _s(
        "prefix_cache_tokens",
        int,
        "Prefix-cache capacity in tokens (0: off); a cached prompt prefix skips its prefill time.",
        "latency",
    ),
    _s(
        "fresh_jitter",
        bool,
        "Draw jitter afresh per request (a real endpoint's noise) instead of from the prompt.",
        "latency",
    ),
    _s("fault_500", float, "HTTP 500 rate.", "faults", "error_500_rate"),
    _s("fault_502", float, "HTTP 502 rate.", "faults", "error_502_rate"),
    _s("fault_503", float, "HTTP 503 rate.", "faults", "error_503_rate"),
    _s("fault_429", float, "Injected 429 rate.", "faults", "error_429_rate"),
    _s(
        "fault_invalid_json",
        float,
        "Share of response_format JSON answers sent as broken JSON.",
        "faults",
        "invalid_json_rate",
    ),
    _s("fault_cut", float, "Stream closed mid-way, without [DONE].", "faults", "cut_rate"),
    _s("fault_stall", float, "Stream goes silent mid-way for --stall-seconds.", "faults", "stall_rate"),
    _s("fault_malformed", float, "One data: line that is not JSON.", "faults", "malformed_rate"),
    _s("stall_seconds", float, "Length of a stall.", "faults", "stall_s"),
    _s("batch_delay", float, "Seconds from creating a batch job to its completion.", "batch", "batch_delay_s"),
    _s("batch_error_rate", float, "Chance a request of a job fails (HTTP 500 in the error file).", "batch"),
    _s("batch_failure_rate", float, "Chance a whole job fails validation.", "batch"),
    _s("batch_expiry_rate", float, "Chance a job expires with half its requests done.", "batch"),
    _s("batch_state_dir", Optional[str], "Keep files and jobs in this directory, so they survive a restart.", "batch"),
    _s(
        "batch_token_limit",
        Optional[int],
        "Enqueued-token limit: prompt tokens per model over unfinished jobs; a "
        "job past it fails with token_limit_exceeded.",
        "batch",
    ),
)


def sim_config(given: dict[str, Any]) -> SimConfig:
    """The SimConfig the serve options describe (options left out keep SimConfig's defaults)."""
    fields: dict[str, Any] = {}
    for option in options_of("serve", SERVE_OPTIONS, SERVE_PANELS):
        if option.name in given:
            fields.update(option.config_values(given[option.name]))
    return SimConfig(**fields)


def serve_foreground(config: SimConfig, host: str, port: int, quiet: bool) -> int:
    """Serve `config` on host:port in this process until Ctrl-C (130); a port taken exits 2."""
    from batchrun.sim.server import run_loop  # the server loads only when `serve` runs

    try:
        with unwinding():  # Ctrl-C stops the server through its cleanup (batch state saved)
            run_loop(_serve_forever(config, host, port, quiet))
    except KeyboardInterrupt:
        typer.echo("\nstopped", err=True)
        raise typer.Exit(130) from None
    except OSError as err:
        typer.echo(f"error: cannot listen on {host}:{port}: {err.strerror} (try --port 0)", err=True)
        raise typer.Exit(2) from None
    return 0


async def _serve_forever(config: SimConfig, host: str, port: int, quiet: bool = False) -> None:
    from batchrun.sim.server import serve_sim  # lazy: the server loads only when `serve` runs

    async with serve_sim(config, host, port) as sim:
        if quiet:
            typer.echo(sim.base_url)
            await asyncio.Event().wait()
        mode = (
            "fast" if config.fast else "fixed-latency" if config.fixed else "twin" if config.twin else "latency model"
        )
        typer.echo(f"batchrun sim ({mode}) listening on {sim.base_url}")
        typer.echo(f"export OPENAI_BASE_URL={sim.base_url}")
        typer.echo(f"export OPENAI_API_KEY={config.api_key or 'sim'}")
        typer.echo("stats: " + sim.url + "/sim/stats   (Ctrl-C to stop)")
        await asyncio.Event().wait()
