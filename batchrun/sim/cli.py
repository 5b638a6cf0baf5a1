"""`batchrun serve`: run the simulated endpoint in the foreground until Ctrl-C.

Registered by the main app as `app.command("serve")(serve)`; this module only maps options
onto a SimConfig and runs the server.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Callable, Optional

import typer

from batchrun.errors import ConfigError
from batchrun.sim.config import DEFAULT_MODEL, SimConfig

_LAT = "Latency model"
_FAULTS = "Faults (probabilities per request, seeded)"
_BATCH = "Batch API (/v1/files, /v1/batches)"


def _panel(name: str) -> Callable[[str], Any]:
    """`_lat("...")` is typer.Option(help="...", rich_help_panel=_LAT): the panels' plain options."""
    return lambda help: typer.Option(help=help, rich_help_panel=name)


_lat, _faults, _batch = _panel(_LAT), _panel(_FAULTS), _panel(_BATCH)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on; keep the loopback default unless you "
                                           "mean to expose it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one.")] = 8000,
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", help=f"Model name to list in /v1/models; repeat for several. [default: {DEFAULT_MODEL}]")] = None,
    enforce_models: Annotated[bool, typer.Option(
        help="Answer 404 model_not_found for a model not given with --model.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for text, lengths, jitter and faults.")] = 0,
    api_key: Annotated[Optional[str], typer.Option(
        help="Require 'Authorization: Bearer KEY' (401 otherwise). Default: no auth.")] = None,
    batch_delay: Annotated[float, _batch("Seconds from creating a batch job to its completion.")] = 2.0,
    batch_error_rate: Annotated[float, _batch(
        "Chance a request of a job fails (HTTP 500 in the error file).")] = 0.0,
    batch_failure_rate: Annotated[float, _batch("Chance a whole job fails validation.")] = 0.0,
    batch_expiry_rate: Annotated[float, _batch("Chance a job expires with half its requests done.")] = 0.0,
    batch_state_dir: Annotated[Optional[str], _batch(
        "Keep files and jobs in this directory, so they survive a restart.")] = None,
    batch_token_limit: Annotated[Optional[int], _batch(
        "Enqueued-token limit: prompt tokens per model over unfinished jobs; a job past it fails "
        "with token_limit_exceeded.")] = None,
    fast: Annotated[bool, typer.Option(
        help="Zero delays and no queueing: measures the client's own overhead.")] = False,
    fixed_ttft: Annotated[Optional[float], _lat(
        "Fixed-latency mode: exact seconds to first token (no jitter, no queue).")] = None,
    fixed_itl: Annotated[Optional[float], _lat("Fixed-latency mode: exact seconds between chunks.")] = None,
    ttft: Annotated[float, _lat("Base seconds to first token.")] = 0.25,
    prefill: Annotated[float, _lat("Seconds added to TTFT per prompt token.")] = 0.0002,
    itl: Annotated[float, _lat("Seconds between tokens with one sequence decoding.")] = 0.025,
    itl_load_factor: Annotated[float, _lat("Relative ITL growth per extra decoding sequence.")] = 0.03,
    jitter: Annotated[float, _lat("Lognormal sigma of TTFT and ITL jitter (0: none).")] = 0.15,
    max_concurrency: Annotated[int, _lat("Sequences decoding at once; more requests wait FIFO.")] = 16,
    output_tokens_mean: Annotated[float, _lat("Mean answer length in tokens (lognormal).")] = 80.0,
    output_tokens: Annotated[Optional[int], _lat(
        "Fixed answer length in tokens (max_tokens still caps it).")] = None,
    rpm: Annotated[Optional[int], typer.Option(help="Requests-per-minute limit (429 beyond it).")] = None,
    tpm: Annotated[Optional[int], typer.Option(
        help="Tokens-per-minute limit: prompt tokens + max_tokens (256 if unset).")] = None,
    ratelimit_headers: Annotated[str, typer.Option(
        help="How --rpm/--tpm are announced: openai (x-ratelimit-*), anthropic (anthropic-ratelimit-*), "
             "ietf (RateLimit / RateLimit-Policy) or none.")] = "openai",
    tool_call_rate: Annotated[float, typer.Option(
        help="Chance of a tool call when tools are offered and none is named in the prompt.")] = 0.0,
    fault_500: Annotated[float, _faults("HTTP 500 rate.")] = 0.0,
    fault_502: Annotated[float, _faults("HTTP 502 rate.")] = 0.0,
    fault_503: Annotated[float, _faults("HTTP 503 rate.")] = 0.0,
    fault_429: Annotated[float, _faults("Injected 429 rate.")] = 0.0,
    fault_invalid_json: Annotated[float, _faults(
        "Share of response_format JSON answers sent as broken JSON.")] = 0.0,
    fault_cut: Annotated[float, _faults("Stream closed mid-way, without [DONE].")] = 0.0,
    fault_stall: Annotated[float, _faults("Stream goes silent mid-way for --stall-seconds.")] = 0.0,
    fault_malformed: Annotated[float, _faults("One data: line that is not JSON.")] = 0.0,
    stall_seconds: Annotated[float, _faults("Length of a stall.")] = 3600.0,
    strict: Annotated[bool, typer.Option(
        "--strict/--lenient", help="strict: 400 for unknown parameters and out-of-range values, as OpenAI; "
                                   "lenient: accept and ignore them, as vLLM.")] = True,
    prefix_cache_tokens: Annotated[int, _lat(
        "Prefix-cache capacity in tokens (0: off); a cached prompt prefix skips its prefill time.")] = 1_000_000,
    embedding_dim: Annotated[int, typer.Option(
        help="Length of /v1/embeddings vectors unless the request sets 'dimensions'.")] = 256,
    fresh_jitter: Annotated[bool, _lat(
        "Draw jitter afresh per request (a real endpoint's noise) instead of from the prompt.")] = False,
    like: Annotated[Optional[list[str]], typer.Option(
        "--like", help="Serve a twin: a twin file from `batchrun fit`, or run / bench directories to fit now "
                       "(repeatable). Its latency, output lengths, failures, rate limits and wire quirks replace "
                       "the latency, output, fault and rate-limit options.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the base URL.")] = False,
) -> None:
    """Run a simulated OpenAI-compatible endpoint (latency model, rate limits, faults) until Ctrl-C."""
    if like:
        return _serve(_twin_config(like, seed=seed, api_key=api_key, model=model, quiet=quiet), host, port, quiet)
    try:
        config = SimConfig(
            seed=seed, models=tuple(model or (DEFAULT_MODEL,)), enforce_models=enforce_models,
            api_key=api_key, fast=fast, fixed_ttft_s=fixed_ttft, fixed_itl_s=fixed_itl, ttft_s=ttft,
            prefill_s_per_token=prefill, itl_s=itl, itl_load_factor=itl_load_factor, jitter=jitter,
            max_concurrency=max_concurrency, output_tokens_mean=output_tokens_mean,
            output_tokens=output_tokens, rpm=rpm, tpm=tpm, ratelimit_headers=ratelimit_headers, tool_call_rate=tool_call_rate,
            error_500_rate=fault_500, error_502_rate=fault_502, error_503_rate=fault_503,
            error_429_rate=fault_429, cut_rate=fault_cut, stall_rate=fault_stall,
            malformed_rate=fault_malformed, stall_s=stall_seconds, batch_delay_s=batch_delay,
            batch_error_rate=batch_error_rate, batch_failure_rate=batch_failure_rate,
            batch_expiry_rate=batch_expiry_rate, batch_state_dir=batch_state_dir,
            batch_token_limit=batch_token_limit, invalid_json_rate=fault_invalid_json,
            fresh_jitter=fresh_jitter, strict=strict, prefix_cache_tokens=prefix_cache_tokens,
            embedding_dim=embedding_dim)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    _serve(config, host, port, quiet)


def _twin_config(like: list[str], *, seed: int, api_key: str | None, model: list[str] | None,
                 quiet: bool) -> SimConfig:
    """The SimConfig serving the twin `--like` names; its notes go to stderr (what it could not fit)."""
    from batchrun.twin.load import load, sim_config

    try:
        twin = load(like)
        changes: dict[str, Any] = {"api_key": api_key}
        if model:
            changes["models"] = tuple(model)
        config = sim_config(twin, seed=seed, **changes)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if not quiet:
        for note in twin.notes:
            typer.echo(f"note: {note}", err=True)
    return config


def _serve(config: SimConfig, host: str, port: int, quiet: bool) -> None:
    from batchrun.sim.server import run_loop  # the server loads only when `serve` runs

    from batchrun.interrupts import unwinding

    try:
        with unwinding():      # Ctrl-C stops the server through its cleanup (batch state saved)
            run_loop(_serve_forever(config, host, port, quiet))
    except KeyboardInterrupt:
        typer.echo("\nstopped", err=True)
        raise typer.Exit(130) from None
    except OSError as err:
        typer.echo(f"error: cannot listen on {host}:{port}: {err.strerror} (try --port 0)", err=True)
        raise typer.Exit(2) from None


async def _serve_forever(config: SimConfig, host: str, port: int, quiet: bool = False) -> None:
    from batchrun.sim.server import serve_sim

    async with serve_sim(config, host, port) as sim:
        if quiet:
            typer.echo(sim.base_url)
            await asyncio.Event().wait()
        mode = "fast" if config.fast else "fixed-latency" if config.fixed else "twin" if config.twin else "latency model"
        typer.echo(f"batchrun sim ({mode}) listening on {sim.base_url}")
        typer.echo(f"export OPENAI_BASE_URL={sim.base_url}")
        typer.echo(f"export OPENAI_API_KEY={config.api_key or 'sim'}")
        typer.echo("stats: " + sim.url + "/sim/stats   (Ctrl-C to stop)")
        await asyncio.Event().wait()
