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

from batchrun.config import RunConfig, env_endpoint, load_env_file, parse_json_option
from batchrun.errors import BatchrunError

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


@app.command()
def run(
    prompts: Annotated[Optional[Path], typer.Argument(help="CSV, JSONL, Parquet or Batch API JSONL file of prompts.")] = None,
    fmt: Annotated[Optional[str], _opt("Input format when the extension does not say: csv, jsonl, parquet.", "--format")] = None,
    prompt_column: Annotated[Optional[str], _opt("Column holding the prompt (default: 'prompt', else the only text column).")] = None,
    id_column: Annotated[Optional[str], _opt("Column holding the row id (default: an 'id' column if present, else the row number).")] = None,
    template: Annotated[Optional[str], _opt("Prompt template filled from the row's columns, e.g. 'Summarise: {text}'.")] = None,
    system: Annotated[Optional[str], _opt("System message put before every prompt.")] = None,
    on_bad_row: Annotated[str, _opt("fail: stop at the first bad row; skip: record it as skipped and go on.", env="BATCHRUN_ON_BAD_ROW")] = "fail",
    model: Annotated[Optional[str], _opt("Model name (default: the endpoint's only model).", env="BATCHRUN_MODEL")] = None,
    max_tokens: Annotated[Optional[int], _opt("Maximum output tokens per request.", env="BATCHRUN_MAX_TOKENS")] = None,
    temperature: Annotated[Optional[float], _opt("Sampling temperature.", env="BATCHRUN_TEMPERATURE")] = None,
    extra_body: Annotated[Optional[str], _opt("JSON object merged into every request body.", env="BATCHRUN_EXTRA_BODY")] = None,
    tools: Annotated[Optional[Path], _opt("JSON file with a list of OpenAI tool definitions.")] = None,
    tool_choice: Annotated[Optional[str], _opt("auto, none, required, or a tool name.")] = None,
    parallel_tool_calls: Annotated[Optional[bool], _opt("Allow several tool calls in one response.", "--parallel-tool-calls/--no-parallel-tool-calls")] = None,
    tool_module: Annotated[Optional[Path], _opt("Python file whose functions run the tools the model calls (runs your code in-process).")] = None,
    max_tool_rounds: Annotated[int, _opt("Most tool-calling rounds per row.")] = 3,
    base_url: Annotated[Optional[str], _opt("Endpoint base URL, e.g. https://api.openai.com/v1 (default: OPENAI_BASE_URL, else the built-in endpoint).")] = None,
    concurrency: Annotated[int, _opt("Most requests in flight at once.", "--concurrency", "-c", env="BATCHRUN_CONCURRENCY")] = 16,
    rpm: Annotated[Optional[float], _opt("Requests-per-minute limit to stay under.", env="BATCHRUN_RPM")] = None,
    tpm: Annotated[Optional[float], _opt("Tokens-per-minute limit to stay under.", env="BATCHRUN_TPM")] = None,
    timeout: Annotated[float, _opt("Seconds a whole request may take.", env="BATCHRUN_TIMEOUT")] = 600.0,
    ttft_timeout: Annotated[Optional[float], _opt("Seconds to wait for the first token.", env="BATCHRUN_TTFT_TIMEOUT")] = None,
    retries: Annotated[int, _opt("Retries for 429 / 5xx / connection errors / timeouts.", env="BATCHRUN_RETRIES")] = 3,
    max_errors: Annotated[Optional[int], _opt("Stop the run after this many failed requests.")] = None,
    max_error_rate: Annotated[Optional[float], _opt("Stop the run when this fraction of requests fails (after 20).")] = None,
    out: Annotated[Optional[Path], _opt("Output directory (default: results/<input>-<timestamp>).")] = None,
    resume: Annotated[Optional[Path], _opt("Continue the run in this directory: rows already ok are not sent again.")] = None,
    output_format: Annotated[str, _opt("Results file format: csv or parquet.")] = "csv",
    quiet: Annotated[bool, _opt("No progress bar (for CI logs).", "--quiet", "-q")] = False,
    fail_on_error: Annotated[bool, _opt("Exit 1 when any request failed.")] = False,
) -> None:
    """Send every prompt, write one timed record per row, and a summary."""
    def body() -> int:
        from batchrun.runner import execute_run
        from batchrun.tools import load_tool_definitions

        url, key = env_endpoint(base_url, None)
        config = RunConfig(
            input=prompts, fmt=fmt, prompt_column=prompt_column, id_column=id_column, template=template,
            system=system, on_bad_row=on_bad_row, model=model, max_tokens=max_tokens, temperature=temperature,
            extra_body=parse_json_option(extra_body, "--extra-body") or {},
            tools=load_tool_definitions(tools) if tools else None, tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls, tool_module=tool_module, max_tool_rounds=max_tool_rounds,
            base_url=url, api_key=key, concurrency=concurrency, rpm=rpm, tpm=tpm, timeout=timeout,
            ttft_timeout=ttft_timeout, retries=retries, max_errors=max_errors, max_error_rate=max_error_rate,
            out=out, resume=resume, output_format=output_format, quiet=quiet, fail_on_error=fail_on_error)
        return _report_run(asyncio.run(execute_run(config)), fail_on_error)
    guarded(body)


def _report_run(outcome: Any, fail_on_error: bool) -> int:
    from batchrun.report import format_summary_table

    typer.echo(format_summary_table(outcome.summary))
    for path in outcome.files:
        typer.echo(f"  wrote {path}")
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


from batchrun.sim.cli import serve  # noqa: E402  (after `app`, which it does not need)

app.command("serve", help="Run the built-in simulated OpenAI-compatible endpoint in the foreground.")(serve)


def main(argv: list[str] | None = None) -> None:
    load_env_file()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="batchrun")
