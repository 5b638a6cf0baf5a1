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

from batchrun.config import RunConfig, env_endpoint, load_env_file, parse_json_option, tool_choice_value
from batchrun.errors import BatchrunError, ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Send prompts to any OpenAI-compatible chat endpoint concurrently, and measure it.")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _opt(help: str, *names: str, env: str | None = None, **kw: Any) -> Any:
    return typer.Option(*names, help=help, envvar=env, show_envvar=env is not None, **kw)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    typer.echo(f"batchrun: error: {message}", err=True)
    raise typer.Exit(code)


def guarded(fn: Callable[[], int]) -> None:
    """Run a command body; a BatchrunError is a user mistake: a message, never a traceback."""
    try:
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
MaxResponseBytes = Annotated[int, _opt("Largest response accepted, in bytes; a longer one is cut and recorded as ResponseTooLarge.", env="BATCHRUN_MAX_RESPONSE_BYTES")]
BaseUrls = Annotated[Optional[list[str]], _opt("Endpoint base URL, e.g. http://localhost:8000/v1, or 'builtin' for the built-in simulated endpoint "
                                               "(default: OPENAI_BASE_URL; with only OPENAI_API_KEY set, https://api.openai.com/v1; with neither, the built-in endpoint; "
                                               "on --resume, the run's own endpoint). Repeat it to spread requests over several endpoints (see --balance).", "--base-url")]
Rpm = Annotated[Optional[float], _opt("Requests-per-minute limit to stay under.", env="BATCHRUN_RPM")]
Tpm = Annotated[Optional[float], _opt("Tokens-per-minute limit to stay under.", env="BATCHRUN_TPM")]
Timeout = Annotated[float, _opt("Seconds a whole request may take.", env="BATCHRUN_TIMEOUT")]
TtftTimeout = Annotated[Optional[float], _opt("Seconds to wait for the first token.", env="BATCHRUN_TTFT_TIMEOUT")]
Out = Annotated[Optional[Path], _opt("Output directory (default: results/<input>-<timestamp>).")]
EndpointKind = Annotated[str, _opt("API to call: chat (/chat/completions), completions (/completions, prompt strings) or embeddings (/embeddings, batched; run only).", "--endpoint")]
Synthetic = Annotated[Optional[str], _opt("Generated prompts instead of a file, e.g. prompt_tokens=512,output_tokens=128,stdev=32,n=1000,seed=1 (see README: Workloads).")]
Slice = Annotated[Optional[str], _opt("Also report throughput and latency per time window of this width, e.g. 10s.", "--slice")]


@app.command()
def run(
    prompts: Prompts = None,
    fmt: Fmt = None,
    prompt_column: PromptColumn = None,
    id_column: IdColumn = None,
    template: Template = None,
    system: System = None,
    on_bad_row: Annotated[str, _opt("fail: stop at the first bad row; skip: record it as skipped and go on.", env="BATCHRUN_ON_BAD_ROW")] = "fail",
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
    concurrency: Annotated[int, _opt("Most requests in flight at once.", "--concurrency", "-c", env="BATCHRUN_CONCURRENCY")] = 16,
    rpm: Rpm = None,
    tpm: Tpm = None,
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

        url, key = env_endpoint(base_url[0] if base_url else None, None, use_env_url=resume is None)
        config = RunConfig(
            input=prompts, fmt=fmt, prompt_column=prompt_column, id_column=id_column, template=template,
            system=system, on_bad_row=on_bad_row, model=model, max_tokens=max_tokens, temperature=temperature,
            extra_body=parse_json_option(extra_body, "--extra-body") or {},
            tools=load_tool_definitions(tools) if tools else None, tool_choice=tool_choice_value(tool_choice),
            parallel_tool_calls=parallel_tool_calls, tool_module=tool_module, max_tool_rounds=max_tool_rounds, tool_timeout=tool_timeout,
            base_url=url, api_key=key, concurrency=concurrency, rpm=rpm, tpm=tpm, timeout=timeout,
            ttft_timeout=ttft_timeout, retries=retries, max_errors=max_errors, max_error_rate=max_error_rate,
            max_retry_wait=max_retry_wait, max_response_bytes=max_response_bytes, out=out, resume=resume, output_format=output_format, quiet=quiet, fail_on_error=fail_on_error,
            endpoint=endpoint, batch_size=batch_size, synthetic=synthetic, speedup=speedup,
            slice_s=_duration(slice_, "--slice"), extra_base_urls=list(base_url or [])[1:], balance=balance)
        return _report_run(asyncio.run(execute_run(config)), fail_on_error)
    guarded(body)


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
        typer.echo(f"batchrun: rows before it are recorded; fix the file and rerun with --resume {outcome.out_dir}", err=True)
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
    max_tokens: Annotated[int, _opt("Maximum output tokens per request (bench default 32, so a sweep takes a minute).")] = 32,
    temperature: Temperature = None,
    extra_body: ExtraBody = None,
    base_url: BaseUrl = None,
    requests: Annotated[int, _opt("Requests per run (prompts cycle when the file has fewer).", "--requests", "-n")] = 64,
    concurrency: Annotated[str, _opt("Concurrency levels to sweep, e.g. 1,2,4,8.", "--concurrency", "-c")] = "1,2,4,8,16,32,64",
    rate: Annotated[Optional[str], _opt("Open-loop load instead: requests/s levels, e.g. 2,4,8 (Poisson arrivals).")] = None,
    burstiness: Annotated[float, _opt("Gamma shape of inter-arrival times with --rate (1 = Poisson, <1 burstier).")] = 1.0,
    warmup: Annotated[int, _opt("Unmeasured requests before each run, at its concurrency.")] = 0,
    repeat: Annotated[int, _opt("Repeat every run this many times (figures get 95% confidence intervals).")] = 1,
    sync: Annotated[bool, _opt("Include the sequential openai.OpenAI baseline.", "--sync/--no-sync")] = True,
    max_run_time: Annotated[float, _opt("Stop sending new requests this many seconds into a run (0: no limit).")] = 5.0,
    slo: Annotated[Optional[str], _opt("Latency bounds for goodput and the recommendation, e.g. ttft=500ms,tpot=50ms,e2e=10s.")] = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    timeout: Timeout = 120.0,
    ttft_timeout: TtftTimeout = None,
    retries: Annotated[int, _opt("Retries per request (default 0: in a benchmark a failure is data).")] = 0,
    max_retry_wait: MaxRetryWait = 60.0,
    max_response_bytes: MaxResponseBytes = 16 * 1024 * 1024,
    out: Out = None,
    endpoint: EndpointKind = "chat",
    synthetic: Synthetic = None,
) -> None:
    """Compare the sync SDK baseline with the async pool at several concurrencies; report and plots."""
    def body() -> int:
        from batchrun.bench.sweep import BenchConfig, execute_bench, parse_levels
        from batchrun.analysis.metrics import parse_slo
        from batchrun.report.bench import format_bench_table

        url, key = env_endpoint(base_url, None)
        run_config = RunConfig(
            input=prompts, fmt=fmt, prompt_column=prompt_column, id_column=id_column, template=template,
            system=system, on_bad_row="skip", model=model, max_tokens=max_tokens, temperature=temperature,
            extra_body=parse_json_option(extra_body, "--extra-body") or {}, base_url=url, api_key=key,
            rpm=rpm, tpm=tpm, timeout=timeout, ttft_timeout=ttft_timeout, retries=retries,
            max_retry_wait=max_retry_wait, max_response_bytes=max_response_bytes, endpoint=endpoint, synthetic=synthetic)
        config = BenchConfig(
            run=run_config, requests=requests, concurrencies=parse_levels(concurrency),
            rates=parse_levels(rate, float) if rate else (), burstiness=burstiness, warmup=warmup,
            repeat=repeat, sync=sync, max_run_s=max_run_time or None, slo=_slo(slo, parse_slo))
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


def _duration(text: str | None, option: str) -> float | None:
    """'10s', '500ms', '2m' or a bare number of seconds."""
    if text is None:
        return None
    from batchrun.endpoint.hints import parse_duration_s
    try:
        return float(text)
    except ValueError:
        pass
    seconds = parse_duration_s(text)
    if seconds is None:
        raise ConfigError(f"{option}: expected a duration such as 10s, 500ms or 2m, got {text!r}")
    return seconds


def _slo(text: str | None, parse: Callable[[str], dict[str, float]]) -> dict[str, float] | None:
    if not text:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(f"--slo: {exc}") from exc


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A directory written by `batchrun run` or `batchrun bench`.")]) -> None:
    """Rebuild summary.json, report.md and report.html from saved records, sending nothing."""
    def body() -> int:
        from batchrun.report.summary import rebuild_reports

        for path in rebuild_reports(run_dir).values():
            typer.echo(f"  wrote {path}")
        return EXIT_OK
    guarded(body)


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline summary.json or run directory.")],
    current: Annotated[Path, typer.Argument(help="Current summary.json or run directory.")],
    max_regression: Annotated[Optional[str], _opt('Tolerances, e.g. "latency_p99=10%,ttft_p50=10%,throughput=-5%".')] = None,
    fmt: Annotated[str, _opt("text, or md for a pull-request comment.", "--format")] = "text",
) -> None:
    """Side-by-side change of every headline figure; exit 1 when one regressed past its tolerance."""
    def body() -> int:
        from batchrun.analysis.compare import compare as compare_summaries
        from batchrun.analysis.compare import format_comparison, load_summary, parse_tolerances

        try:
            tolerances = parse_tolerances(max_regression) if max_regression else None
        except ValueError as exc:
            raise ConfigError(f"--max-regression: {exc}") from exc
        if fmt not in ("text", "md"):
            raise ConfigError(f"--format must be text or md, got {fmt!r}")
        result = compare_summaries(load_summary(baseline), load_summary(current), tolerances)
        typer.echo(format_comparison(result, fmt=fmt))
        for line in result.regressions:
            typer.echo(f"batchrun: regression: {line}", err=True)
        return EXIT_OK if result.passed else EXIT_FAILED
    guarded(body)


from batchrun.sim.cli import serve  # noqa: E402  (after `app`, which it does not need)

app.command("serve", help="Run the built-in simulated OpenAI-compatible endpoint in the foreground.")(serve)


def main(argv: list[str] | None = None) -> None:
    load_env_file()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="batchrun")
