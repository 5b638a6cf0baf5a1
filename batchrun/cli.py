"""The typer app: options -> config -> asyncio.run(...); exceptions -> exit codes, in one place.

Exit codes: 0 ok; 1 the run finished with failed requests (with --fail-on-error) or was
stopped by --max-errors / a regression in `compare`; 2 a usage or input error; 130 interrupted.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from batchrun.analysis.recommend import DEFAULT_MAX_FAILURE_SHARE
from batchrun.config import (RunConfig, env_endpoint, load_env_file, parse_concurrency, parse_json_option, parse_workers,
                             parse_limit, tool_choice_value)
from batchrun.errors import BatchrunError, ConfigError, InputChanged
from batchrun.interrupts import unwinding

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Send prompts to any OpenAI-compatible chat endpoint concurrently, and measure it.")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _opt(help: str, *names: str, env: str | None = None, **kw: Any) -> Any:
    return typer.Option(*names, help=help, envvar=env, show_envvar=env is not None, **kw)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    typer.echo(f"batchrun: error: {message}", err=True)
    raise typer.Exit(code)


def guarded(fn: Callable[[], int]) -> None:
    """Run a command body; a BatchrunError is a user mistake: a message, never a traceback.
    Ctrl-C or SIGTERM unwinds the body (files closed, the run directory's lock removed): one line, 130."""
    try:
        with unwinding():
            code = fn()
    except BatchrunError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("batchrun: interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(code)


# Options shared by `run` and `bench`, declared once.
Prompts = Annotated[Optional[Path], typer.Argument(help="CSV, JSONL, Parquet or Batch API JSONL file of prompts.")]
Fmt = Annotated[Optional[str], _opt("Input format when the extension does not say: csv, jsonl, parquet.", "--format")]
PromptColumn = Annotated[Optional[str], _opt("Column holding the prompt (default: 'prompt', else the only text column).")]
IdColumn = Annotated[Optional[str], _opt("Column holding the row id (default: an 'id' column if present, else the row number).")]
Template = Annotated[Optional[str], _opt("Prompt template filled from the row's columns, e.g. 'Summarise: {text}'.")]
System = Annotated[Optional[str], _opt("System message put before every prompt.")]
Model = Annotated[Optional[str], _opt("Model name (default: the endpoint's only model).", env="BATCHRUN_MODEL")]
MaxTokens = Annotated[Optional[int], _opt("Maximum output tokens per request.", env="BATCHRUN_MAX_TOKENS")]
Temperature = Annotated[Optional[float], _opt("Sampling temperature.", env="BATCHRUN_TEMPERATURE")]
ExtraBody = Annotated[Optional[str], _opt("JSON object merged into every request body.", env="BATCHRUN_EXTRA_BODY")]
BaseUrl = Annotated[Optional[str], _opt("Endpoint base URL, e.g. http://localhost:8000/v1, or 'builtin' for the built-in simulated endpoint "
                                        "(default: OPENAI_BASE_URL; with only OPENAI_API_KEY set, https://api.openai.com/v1; with neither, the built-in endpoint; "
                                        "on --resume, the run's own endpoint).")]
MaxRetryWait = Annotated[float, _opt("Longest single wait before a retry, in seconds, whatever the server's retry-after asks.", env="BATCHRUN_MAX_RETRY_WAIT")]
MaxResponseBytes = Annotated[int, _opt("Largest response accepted, in bytes (--mode batch: result line); a longer one is cut and recorded as ResponseTooLarge.", env="BATCHRUN_MAX_RESPONSE_BYTES")]
Rpm = Annotated[str, _opt("Requests-per-minute limit to stay under; auto: the limit the provider's "
                          "rate-limit headers announce; off: none.", env="BATCHRUN_RPM")]
Tpm = Annotated[str, _opt("Tokens-per-minute limit to stay under; auto / off as for --rpm.", env="BATCHRUN_TPM")]
Timeout = Annotated[float, _opt("Seconds a whole request may take.", env="BATCHRUN_TIMEOUT")]
TtftTimeout = Annotated[Optional[float], _opt("Seconds to wait for the first token.", env="BATCHRUN_TTFT_TIMEOUT")]
Out = Annotated[Optional[Path], _opt("Output directory (default: results/<input>-<timestamp>).")]
BuiltinOption = Annotated[Optional[list[str]], _opt("Configure the built-in endpoint, KEY=VALUE (repeatable), e.g. ttft_s=0.3 or seed=7; see `batchrun serve --help`.", "--builtin-option")]
BaseUrls = Annotated[Optional[list[str]], _opt("Endpoint base URL, e.g. http://localhost:8000/v1, or 'builtin' for the built-in simulated endpoint "
                                               "(default: OPENAI_BASE_URL; with only OPENAI_API_KEY set, https://api.openai.com/v1; with neither, the built-in endpoint; "
                                               "on --resume, the run's own endpoint). Repeat it to spread requests over several endpoints (see --balance).", "--base-url")]
EndpointKind = Annotated[str, _opt("API to call: chat (/chat/completions), completions (/completions, prompt strings) or embeddings (/embeddings, batched; run only).", "--endpoint")]
Synthetic = Annotated[Optional[str], _opt("Generated prompts instead of a file, e.g. prompt_tokens=512,output_tokens=128,stdev=32,n=1000,seed=1 (see docs/workloads.md).")]
Slice = Annotated[Optional[str], _opt("Also report throughput and latency per time window of this width, e.g. 10s.", "--slice")]


@app.command()
def run(
    ctx: typer.Context,
    prompts: Prompts = None,
    fmt: Fmt = None,
    prompt_column: PromptColumn = None,
    id_column: IdColumn = None,
    template: Template = None,
    system: System = None,
    on_bad_row: Annotated[str, _opt("fail: stop at the first bad row; skip: record it as skipped and go on.", env="BATCHRUN_ON_BAD_ROW")] = "fail",
    mode: Annotated[Optional[str], _opt("online: stream every request now; batch: through the OpenAI Batch API (half price, "
                                        "results within 24 h); auto: online when small or urgent, else batch. [default: online]",
                                        env="BATCHRUN_MODE")] = None,
    deadline: Annotated[Optional[str], _opt("Answers needed within this time, e.g. 2h or 90m: --mode auto goes online below "
                                            "24 h; --mode batch cancels jobs still open then (their rows stay resumable).")] = None,
    batch_wait: Annotated[Optional[str], _opt("--mode batch: the longest this session waits for open jobs, e.g. 6h; "
                                              "then it stops waiting, the jobs go on at the provider and "
                                              "--resume collects them. [default: 25h]")] = None,
    model: Model = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    extra_body: ExtraBody = None,
    tools: Annotated[Optional[Path], _opt("JSON file with a list of OpenAI tool definitions.")] = None,
    tool_choice: Annotated[Optional[str], _opt("auto, none, required, or a tool name.")] = None,
    parallel_tool_calls: Annotated[Optional[bool], _opt("Allow several tool calls in one response.", "--parallel-tool-calls/--no-parallel-tool-calls")] = None,
    tool_module: Annotated[Optional[Path], _opt("Python file whose functions run the tools the model calls (runs your code in-process).")] = None,
    max_tool_rounds: Annotated[int, _opt("Most follow-up requests after tool results, per row (with --tool-module).")] = 3,
    tool_timeout: Annotated[float, _opt("Seconds one tool call may take (with --tool-module).")] = 30.0,
    base_url: BaseUrls = None,
    concurrency: Annotated[str, _opt("Most requests in flight at once, or auto: start low and find what the "
                                     "endpoint takes (AIMD on 429s, errors and a TTFT knee).", "--concurrency", "-c",
                                     env="BATCHRUN_CONCURRENCY")] = "16",
    workers: Annotated[str, _opt("Sending processes, each with its own event loop and connections; this one "
                                 "reads, writes and paces for all. auto: cores - 1 from --concurrency 256 on, "
                                 "else 1.", env="BATCHRUN_WORKERS")] = "1",
    ray: Annotated[bool, _opt("Run the workers as Ray actors: join the Ray cluster on this machine (or RAY_ADDRESS's) "
                              "or start one; --workers N actors (default: the cluster's CPUs - 1). Needs "
                              "pip install 'ray[client]>=2.9' (the ray extra).", "--ray")] = False,
    ray_address: Annotated[Optional[str], _opt("Join this Ray cluster (implies --ray): auto, ray://HOST:10001 "
                                               "or HOST:6379.", env="BATCHRUN_RAY_ADDRESS")] = None,
    ray_cpus: Annotated[float, _opt("CPUs each Ray actor reserves (with --ray).")] = 1.0,
    rpm: Rpm = "auto",
    tpm: Tpm = "auto",
    slo: Annotated[Optional[str], _opt("Latency bounds, e.g. ttft=500ms,e2e=10s: goodput in the summary, "
                                       "and the bound --concurrency auto keeps to.")] = None,
    timeout: Timeout = 600.0,
    ttft_timeout: TtftTimeout = None,
    retries: Annotated[int, _opt("Retries for 429 / 5xx / connection errors / timeouts.", env="BATCHRUN_RETRIES")] = 3,
    max_retry_wait: MaxRetryWait = 60.0,
    max_response_bytes: MaxResponseBytes = 16 * 1024 * 1024,
    max_errors: Annotated[Optional[int], _opt("Stop the run after this many failed requests.")] = None,
    max_error_rate: Annotated[Optional[float], _opt("Stop the run when this fraction of requests fails (after 20).")] = None,
    out: Out = None,
    resume: Annotated[Optional[Path], _opt("Continue the run in this directory: rows already ok are not sent again.")] = None,
    output_format: Annotated[str, _opt("Results file format: csv or parquet.")] = "csv",
    quiet: Annotated[bool, _opt("No progress bar (for CI logs).", "--quiet", "-q")] = False,
    fail_on_error: Annotated[bool, _opt("Exit 1 when any request failed.")] = False,
    builtin_option: BuiltinOption = None,
    dry_run: Annotated[bool, _opt("Read the whole file and show bad rows, three prompts, estimated tokens, cost and time; send nothing.", "--dry-run")] = False,
    limit: Annotated[Optional[int], _opt("Send only the first N rows (a pilot); --resume without it extends the run to the whole file.")] = None,
    price_in: Annotated[Optional[float], _opt("USD per 1M prompt tokens (default: a dated list price for well-known models).")] = None,
    price_out: Annotated[Optional[float], _opt("USD per 1M output tokens (default: a dated list price for well-known models).")] = None,
    json_schema: Annotated[Optional[Path], _opt("JSON Schema file: ask for strict structured output, validate every answer, its fields become result columns.")] = None,
    json_mode: Annotated[bool, _opt("Ask for a JSON object answer (json_object mode) and parse it into result columns.", "--json")] = False,
    overwrite: Annotated[bool, _opt("Let --out name a non-empty run directory: its run files are replaced.", "--overwrite")] = False,
    input_changed: Annotated[Optional[str], _opt("'ok': let --resume continue on a changed input file (rows matched by id).")] = None,
    csv_formulas: Annotated[str, _opt("escape: prefix text cells starting with = + - @ with ' (spreadsheet-safe); raw: write them as they are.")] = "escape",
    row_settings: Annotated[bool, _opt("Input columns named model, max_tokens, temperature, ... set those per row.", "--row-settings/--no-row-settings")] = True,
    save_request: Annotated[bool, _opt("Keep each request as sent (messages, model, ...) in records.jsonl.", "--save-request/--no-save-request")] = True,
    endpoint: EndpointKind = "chat",
    batch_size: Annotated[int, _opt("Inputs per request with --endpoint embeddings.")] = 32,
    synthetic: Synthetic = None,
    speedup: Annotated[float, _opt("Trace replay (a timestamp or delay_s column): play the schedule this many times faster.")] = 1.0,
    slice_: Slice = None,
    balance: Annotated[str, _opt("With several --base-url: rr (in turn) or least (fewest requests in flight).")] = "rr",
) -> None:
    """Send every prompt, write one timed record per row, and a summary."""
    def body() -> int:
        from batchrun.runner import execute_run
        from batchrun.engine.tools import load_tool_definitions

        from batchrun.analysis.metrics import parse_slo

        url, key = env_endpoint(base_url[0] if base_url else None, None, use_env_url=resume is None)
        (rpm_value, learn_rpm), (tpm_value, learn_tpm) = parse_limit(rpm, "--rpm"), parse_limit(tpm, "--tpm")
        conc, auto = parse_concurrency(concurrency)
        n_workers, workers_auto = parse_workers(workers)
        ray_at = ray_address or ("local" if ray else None)
        if ray_at is not None and ctx.get_parameter_source("workers").name == "DEFAULT":   # sized by the cluster
            workers_auto = True
        config = RunConfig(
            input=prompts, fmt=fmt, prompt_column=prompt_column, id_column=id_column, template=template,
            system=system, on_bad_row=on_bad_row, model=model, max_tokens=max_tokens, temperature=temperature,
            extra_body=parse_json_option(extra_body, "--extra-body") or {},
            tools=load_tool_definitions(tools) if tools else None, tool_choice=tool_choice_value(tool_choice),
            parallel_tool_calls=parallel_tool_calls, tool_module=tool_module, max_tool_rounds=max_tool_rounds, tool_timeout=tool_timeout,
            base_url=url, api_key=key, concurrency=conc, concurrency_auto=auto,
            workers=n_workers, workers_auto=workers_auto, ray=ray_at, ray_cpus=ray_cpus, rpm=rpm_value, tpm=tpm_value,
            learn_rpm=learn_rpm, learn_tpm=learn_tpm, slo=_slo(slo, parse_slo), timeout=timeout,
            ttft_timeout=ttft_timeout, retries=retries, max_errors=max_errors, max_error_rate=max_error_rate,
            max_retry_wait=max_retry_wait, max_response_bytes=max_response_bytes, out=out, resume=resume,
            output_format=output_format, quiet=quiet, fail_on_error=fail_on_error,
            builtin_options=tuple(builtin_option or ()),
            **_data_options(dry_run=dry_run, limit=limit, price_in=price_in, price_out=price_out,
                            json_schema=json_schema, json_mode=json_mode, overwrite=overwrite,
                            input_changed=input_changed, csv_formulas=csv_formulas,
                            row_settings=row_settings, save_request=save_request),
            mode=mode, deadline_s=_duration(deadline, "--deadline"), batch_wait_s=_duration(batch_wait, "--batch-wait"),
            endpoint=endpoint, batch_size=batch_size, synthetic=synthetic, speedup=speedup,
            slice_s=_duration(slice_, "--slice"), extra_base_urls=list(base_url or [])[1:], balance=balance)
        if config.dry_run:
            return _preview(config)
        return _report_run(asyncio.run(execute_run(config)), fail_on_error)
    guarded(body)


def _data_options(*, json_schema: Path | None, **options: Any) -> dict[str, Any]:
    """The data-team run options as RunConfig fields; the schema file is read and checked here."""
    from batchrun.endpoint.answers import load_schema

    if json_schema is not None:
        try:
            text = json_schema.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--json-schema {json_schema}: {exc.strerror or exc}") from None
        options["json_schema"] = load_schema(text, f"--json-schema {json_schema}")
    return options


def _preview(config: RunConfig) -> int:
    """--dry-run: exit 0 when every row can be sent, 2 when some cannot."""
    from batchrun.preview import dry_run, format_preview
    from batchrun.runner import resolve_resume

    config = resolve_resume(config)
    preview = dry_run(config)
    typer.echo(format_preview(preview, config))
    return EXIT_OK if preview.bad_count == 0 else EXIT_USAGE


def _say_if_simulated(endpoint: dict[str, Any] | None) -> None:
    if endpoint and endpoint.get("kind") == "builtin":
        typer.echo("batchrun: note: these results come from the built-in simulated endpoint, not a real model "
                   "(set OPENAI_API_KEY / OPENAI_BASE_URL for a real one)", err=True)


def _report_run(outcome: Any, fail_on_error: bool) -> int:
    from batchrun.report.summary import format_summary_table

    from batchrun.report.workloads import workload_lines

    typer.echo(format_summary_table(outcome.summary))
    for line in workload_lines(outcome.summary):
        typer.echo(line)
    for path in outcome.files:
        typer.echo(f"  wrote {path}")
    _say_if_simulated(outcome.endpoint)
    if outcome.refused is not None:
        typer.echo(f"batchrun: error: the endpoint refused the run: {outcome.refused}", err=True)
        typer.echo("batchrun: no more rows were sent; fix the key (OPENAI_API_KEY), --model or --base-url and "
                   f"continue with: batchrun run --resume {outcome.out_dir}", err=True)
        return EXIT_USAGE
    if outcome.internal_errors:
        typer.echo(f"batchrun: error: {outcome.internal_errors} row(s) hit an internal error of batchrun (a bug); "
                   f"the tracebacks are in {outcome.out_dir}/internal-errors.log", err=True)
        return EXIT_FAILED
    if outcome.input_error is not None:
        typer.echo(f"batchrun: error: {outcome.input_error}", err=True)
        if isinstance(outcome.input_error, InputChanged):
            typer.echo(f"batchrun: the rows read are recorded; once the file is as it should be, send what it has "
                       f"that this run did not with --resume {outcome.out_dir} --input-changed ok (rows matched by "
                       "id), or start a new --out", err=True)
        else:
            typer.echo(f"batchrun: rows before it are recorded; fix the file and rerun with --resume {outcome.out_dir} "
                       "--input-changed ok", err=True)
        return EXIT_USAGE
    if outcome.interrupted:
        typer.echo(f"batchrun: interrupted; continue with: batchrun run --resume {outcome.out_dir}", err=True)
        return EXIT_INTERRUPTED
    if outcome.aborted:
        typer.echo(f"batchrun: stopped early: {outcome.aborted}; continue with --resume {outcome.out_dir}", err=True)
        return EXIT_FAILED
    return EXIT_FAILED if fail_on_error and outcome.failed else EXIT_OK


@app.command()
def bench(
    prompts: Prompts = None,
    fmt: Fmt = None,
    prompt_column: PromptColumn = None,
    id_column: IdColumn = None,
    template: Template = None,
    system: System = None,
    model: Model = None,
    max_tokens: Annotated[int, _opt("Maximum output tokens per request (bench default 32: short answers keep a bench quick).")] = 32,
    temperature: Temperature = None,
    extra_body: ExtraBody = None,
    base_url: BaseUrl = None,
    requests: Annotated[Optional[int], _opt("Measured requests per run, exactly (default: sized: by --time-budget, or, with -c or --rate given, "
                                            "at least max(100, 4 x concurrency) per level, more until its p50 TTFT and latency intervals are "
                                            "within ±4%, at most 4x that, and 100 for the sync baseline; prompts cycle when the file has fewer).",
                                            "--requests", "-n")] = None,
    concurrency: Annotated[Optional[str], _opt("Concurrency levels to sweep, e.g. 1,2,4,8 (default 1,4,16,64). Given, each level is "
                                               "sized by its spread (see -n) unless --time-budget is given too.",
                                               "--concurrency", "-c")] = None,
    time_budget: Annotated[Optional[float], _opt("Seconds the runs share: each sends until what it sent would end past its share "
                                                 "(the sync baseline two shares), after at least 10 requests and one per slot. "
                                                 "Default 36 when neither -c, --rate nor -n is given (the whole bench then takes under "
                                                 "a minute against an endpoint answering in about 1 s: 46-49 s against the built-in "
                                                 "one), else none; 0: none.")] = None,
    rate: Annotated[Optional[str], _opt("Open-loop load instead: requests/s levels, e.g. 2,4,8 (Poisson arrivals).")] = None,
    burstiness: Annotated[float, _opt("Gamma shape of inter-arrival times with --rate (1 = Poisson, <1 burstier).")] = 1.0,
    warmup: Annotated[Optional[int], _opt("Unmeasured requests before each run, at its concurrency (default: one wave, one per slot).")] = None,
    no_warmup: Annotated[bool, _opt("Send nothing unmeasured: no warm-up pass over the prompts before the first run "
                                    "(by default every distinct prompt is sent once, max_tokens 1, so every run meets "
                                    "the same server cache state) and no --warmup wave before each run.",
                                    "--no-warmup")] = False,
    repeat: Annotated[int, _opt("Repeat every run this many times (figures get 95% confidence intervals).")] = 1,
    sync: Annotated[bool, _opt("Include the sequential openai.OpenAI baseline.", "--sync/--no-sync")] = True,
    max_run_time: Annotated[float, _opt("Stop sending new requests this many seconds into a run (default 0: no limit; a cut run is reported with its count).")] = 0.0,
    slo: Annotated[Optional[str], _opt("Latency bounds for goodput and the recommendation, e.g. ttft=500ms,tpot=50ms,e2e=10s.")] = None,
    max_failure_share: Annotated[float, _opt("Largest share of failed requests a level may have and still be "
                                             "recommended, e.g. 0.05 for 5% (an API with occasional 5xx).")] = DEFAULT_MAX_FAILURE_SHARE,
    find_max: Annotated[bool, _opt("Search for the highest concurrency meeting --slo (doubling from the lowest "
                                   "--concurrency level, then bisection) instead of sweeping every level.")] = False,
    rpm: Rpm = "auto",
    tpm: Tpm = "auto",
    timeout: Timeout = 120.0,
    ttft_timeout: TtftTimeout = None,
    retries: Annotated[int, _opt("Retries per request (default 0: in a benchmark a failure is data).")] = 0,
    max_retry_wait: MaxRetryWait = 60.0,
    max_response_bytes: MaxResponseBytes = 16 * 1024 * 1024,
    out: Out = None,
    builtin_option: BuiltinOption = None,
    quiet: Annotated[bool, _opt("Print only the final table and errors (for CI logs).", "--quiet", "-q")] = False,
    endpoint: EndpointKind = "chat",
    synthetic: Synthetic = None,
) -> None:
    """The sync SDK baseline vs the async pool at several concurrencies, under a minute by default (--time-budget)."""
    def body() -> int:
        from batchrun.bench.sweep import DEFAULT_LEVELS, BenchConfig, execute_bench, parse_levels, resolve_time_budget
        from batchrun.analysis.metrics import parse_slo
        from batchrun.report.bench import format_bench_table

        url, key = env_endpoint(base_url, None)
        (rpm_value, learn_rpm), (tpm_value, learn_tpm) = parse_limit(rpm, "--rpm"), parse_limit(tpm, "--tpm")
        run_config = RunConfig(
            input=prompts, fmt=fmt, prompt_column=prompt_column, id_column=id_column, template=template,
            system=system, on_bad_row="skip", model=model, max_tokens=max_tokens, temperature=temperature,
            extra_body=parse_json_option(extra_body, "--extra-body") or {}, base_url=url, api_key=key,
            rpm=rpm_value, tpm=tpm_value, learn_rpm=learn_rpm, learn_tpm=learn_tpm, timeout=timeout,
            ttft_timeout=ttft_timeout, retries=retries, max_retry_wait=max_retry_wait,
            max_response_bytes=max_response_bytes, builtin_options=tuple(builtin_option or ()), quiet=quiet,
            endpoint=endpoint, synthetic=synthetic)
        if no_warmup and warmup is not None:
            raise ConfigError("--no-warmup sends nothing unmeasured: leave out --warmup (or --no-warmup)")
        config = BenchConfig(
            run=run_config, requests=requests,
            concurrencies=parse_levels(concurrency) if concurrency else DEFAULT_LEVELS,
            rates=parse_levels(rate, float) if rate else (), burstiness=burstiness,
            time_budget_s=resolve_time_budget(time_budget, requests=requests, levels_given=bool(concurrency or rate)),
            warmup=0 if no_warmup else warmup, warm_cache=not no_warmup, repeat=repeat, sync=sync,
            max_run_s=max_run_time or None, slo=_slo(slo, parse_slo), max_failure_share=max_failure_share)
        if find_max:
            from batchrun.bench.findmax import execute_find_max, format_find_max

            out_dir, found = asyncio.run(execute_find_max(config, out))
            typer.echo(format_find_max(found, config.slo or {}))
            typer.echo(f"  wrote {out_dir}/find_max.json, summary.json, report.md, report.html, runs/")
            _say_if_simulated(_written_endpoint(out_dir))
            return EXIT_OK
        out_dir, analysis = asyncio.run(execute_bench(config, out))
        typer.echo(format_bench_table(analysis))
        _echo_workloads(out_dir)
        typer.echo(f"  wrote {out_dir}/summary.json, report.md, report.html, runs/")
        _say_if_simulated(analysis.get("endpoint"))
        return EXIT_OK
    guarded(body)


def _echo_workloads(out_dir: Any) -> None:
    """A synthetic bench: the headline run's requested and realised lengths."""
    import json

    from batchrun.report.workloads import workload_lines

    headline = json.loads((out_dir / "summary.json").read_text(encoding="utf-8")).get("summary") or {}
    for line in workload_lines(headline):
        typer.echo(line)


def _written_endpoint(out_dir: Path) -> Any:
    import json

    return json.loads((out_dir / "summary.json").read_text(encoding="utf-8")).get("endpoint")


def _duration(text: str | None, option: str) -> float | None:
    from batchrun.endpoint.hints import parse_duration_s

    if text is None:
        return None
    seconds = parse_duration_s(text)
    if seconds is None:
        raise ConfigError(f"{option}: cannot read {text!r} as a duration; write e.g. 2h, 90m, 45s or 3600")
    return seconds


def _slo(text: str | None, parse: Callable[[str], dict[str, float]]) -> dict[str, float] | None:
    if not text:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(f"--slo: {exc}") from exc


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A directory written by `batchrun run` or `batchrun bench` (also an interrupted bench).")],
           quiet: Annotated[bool, _opt("Print nothing but errors.", "--quiet", "-q")] = False) -> None:
    """Rebuild summary.json, report.md and report.html from saved records, sending nothing."""
    def body() -> int:
        from batchrun.report.summary import rebuild_reports

        for path in rebuild_reports(run_dir).values():
            if not quiet:
                typer.echo(f"  wrote {path}")
        return EXIT_OK
    guarded(body)


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline run or bench directory (or its summary.json).")],
    current: Annotated[Path, typer.Argument(help="Current run or bench directory (or its summary.json).")],
    max_regression: Annotated[Optional[str], _opt('Tolerances, added to or replacing the defaults, e.g. "latency_p99=10%,ttft_p50=10%,throughput=-5%".')] = None,
    fmt: Annotated[str, _opt("text, md (a pull-request comment), json, junit (XML test report) or github (workflow annotations).", "--format")] = "text",
    fail_on_inconclusive: Annotated[bool, _opt("Exit 1 also when a figure is inconclusive (too few requests to decide).")] = False,
    allow_config_change: Annotated[bool, _opt("Compare even when model, endpoint, max_tokens, concurrency, input or batchrun version differ.")] = False,
    quiet: Annotated[bool, _opt("Print only the regressions (on stderr) and errors.", "--quiet", "-q")] = False,
    verbose: Annotated[bool, _opt("Print the whole comparison also when the gate passes (a pass prints nothing, "
                                  "or with --format github one warning naming the undecided figures).",
                                  "--verbose", "-v")] = False,
) -> None:
    """Each headline figure's change with a 95% interval and a verdict; exit 1 on a regression.

    Silent on a pass unless --verbose; a failure prints what failed. Writes a Markdown summary to
    $GITHUB_STEP_SUMMARY when that variable is set."""
    def body() -> int:
        from batchrun.analysis.compare import compare as compare_sides
        from batchrun.analysis.compare import parse_tolerances
        from batchrun.report.compare import FORMATS, console_output, format_comparison, gate_failed

        try:
            tolerances = parse_tolerances(max_regression) if max_regression else None
        except ValueError as exc:
            raise ConfigError(f"--max-regression: {exc}") from exc
        if fmt not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        result = compare_sides(baseline, current, tolerances, defaults=True, allow_config_change=allow_config_change)
        if not quiet:
            typer.echo(console_output(result, fmt, fail_on_inconclusive, verbose), nl=False)
        _step_summary(format_comparison(result, "md", fail_on_inconclusive))
        if quiet or fmt not in ("text", "github"):      # else stdout already says what failed
            for line in result.regressions:
                typer.echo(f"batchrun: regression: {line}", err=True)
        return EXIT_FAILED if gate_failed(result, fail_on_inconclusive) else EXIT_OK
    guarded(body)


@app.command()
def fit(
    sources: Annotated[list[Path], typer.Argument(help="Run or bench directories (written by `batchrun run` / "
                                                       "`batchrun bench`) of the endpoint to copy.")],
    out: Annotated[Path, _opt("The twin file to write (serve it with `batchrun serve --like FILE`).")] = Path("twin.json"),
    report: Annotated[Optional[Path], _opt("The fit's report page, HTML with a Markdown copy beside it "
                                           "(default: the twin file's name with .html).")] = None,
    no_report: Annotated[bool, _opt("Write only the twin file.", "--no-report")] = False,
    quiet: Annotated[bool, _opt("Print only the paths written and errors.", "--quiet", "-q")] = False,
) -> None:
    """Fit an endpoint twin to the records of runs and benches: latency by requests in flight and
    prompt length, output lengths, failures, rate limits and wire quirks, as a small JSON file."""
    def body() -> int:
        from batchrun.twin.load import fit_sources, write_twin

        twin, observed = fit_sources(sources)
        write_twin(twin, out)
        typer.echo(f"  wrote {out}")
        if not no_report:
            from batchrun.twin.compare import compare_fit
            from batchrun.twin.report import headline, write_fit_report

            comparison = compare_fit(twin, observed)
            for path in write_fit_report(twin, comparison, report or out.with_suffix(".html")):
                typer.echo(f"  wrote {path}")
            if not quiet:
                typer.echo(headline(comparison))
        if not quiet:
            for note in twin.notes:
                typer.echo(f"note: {note}")
        return EXIT_OK
    guarded(body)


def _step_summary(markdown: str) -> None:
    """Append to the GitHub Actions job summary when running there."""
    import os

    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")
    except OSError as exc:
        typer.echo(f"batchrun: warning: cannot write $GITHUB_STEP_SUMMARY ({path}): {exc.strerror}", err=True)


from batchrun.sim.cli import serve  # noqa: E402  (after `app`, which it does not need)

app.command("serve", help="Run the built-in simulated OpenAI-compatible endpoint in the foreground.")(serve)

from batchrun.batchapi.commands import batch_app  # noqa: E402

app.add_typer(batch_app, name="batch")


def main(argv: list[str] | None = None) -> None:
    load_env_file()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="batchrun")
