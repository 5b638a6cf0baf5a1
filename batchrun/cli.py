"""The command line: argv -> the declared options -> the work -> an exit code, in one place.

Every command's options are generated from batchrun/options.py (serve's from batchrun/sim/cli.py):
each command here is only what it does with them. Each imports its own work inside its body, so
`batchrun --help`, `report` or `compare` never load the run path, and `run` never the bench's SDK.

Exit codes: 0 ok; 1 the run finished with failed requests (with --fail-on-error) or was
stopped by --max-errors / a regression in `compare`; 2 a usage or input error; 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Iterator, Mapping, Optional

import typer

from batchrun import options
from batchrun.config import RunConfig, load_env_file
from batchrun.errors import BatchrunError, ConfigError, InputChanged
from batchrun.hooks import Hooks
from batchrun.interrupts import loop_handlers, unwinding
from batchrun.options import Option
from batchrun.version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
HELP_FLAGS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=HELP_FLAGS,
    help="Send prompts to any OpenAI-compatible chat endpoint concurrently, and measure it.",
)
batch_app = typer.Typer(
    no_args_is_help=True,
    context_settings=HELP_FLAGS,
    help="The Batch API jobs of a `batchrun run --mode batch` directory.",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"batchrun {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        Optional[bool],
        typer.Option(
            "--version", "-V", help="Print batchrun's version and exit.", callback=_print_version, is_eager=True
        ),
    ] = None,
) -> None:
    """Send prompts to any OpenAI-compatible chat endpoint concurrently, and measure it."""


def fail(message: str, code: int = EXIT_USAGE) -> None:
    typer.echo(f"batchrun: error: {message}", err=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    """A line for the user on stderr, so stdout stays clean for pipes."""
    typer.echo(f"batchrun: {message}", err=True)


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
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code)


def command(
    name: str,
    on: typer.Typer = app,
    declared: Iterable[Option] = options.OPTIONS,
    panels: Mapping[str, str] = options.PANELS,
    help: str | None = None,
) -> Callable[[Callable[[dict[str, Any]], int]], Callable[[dict[str, Any]], int]]:
    """Register `body(given)` as the command `name`, its options generated from `declared`;
    `given` holds the options the user gave (left-out ones are absent: their default is declared)."""

    def register(body: Callable[[dict[str, Any]], int]) -> Callable[[dict[str, Any]], int]:
        handler = options.typer_command(
            name, lambda ctx, given: guarded(lambda: body(given)), declared, doc=body.__doc__, panels=panels
        )
        on.command(name.split()[-1], help=help)(handler)
        return body

    return register


# ---------------------------------------------------------------- run


@command("run")
def run(given: dict[str, Any]) -> int:
    """Send every prompt, write one timed record per row, and a summary."""
    from batchrun.api.run import execute, prepare  # the Python face's own steps: one code path for both
    from batchrun.progress import ConsoleProgress  # lazy: tqdm is for `run` only

    prepared = prepare(None, given)
    config = prepared.config
    if config.control.dry_run:
        return _preview(config)
    hooks = Hooks(notify=say, progress=ConsoleProgress(), interrupts=ctrl_c_stops)
    return _report_run(asyncio.run(execute(prepared, hooks)).outcome, config.control.fail_on_error)


@contextlib.contextmanager
def ctrl_c_stops(stop: Callable[[], None], close_now: Callable[[], None] | None) -> Iterator[None]:
    """While a run sends: the first Ctrl-C / SIGTERM stops it (it ends as an interrupted run, its
    files written); a second closes the records file (whole lines, flushed), removes the run
    directory's lock and exits 130 at once."""
    from batchrun.store.rundir import drop_held_locks  # lazy: as the run path

    pressed = False

    def on_signal() -> None:
        nonlocal pressed
        if pressed and close_now is not None:
            close_now()
            drop_held_locks()
            os._exit(EXIT_INTERRUPTED)
        pressed = True
        stop()

    with loop_handlers(asyncio.get_running_loop(), on_signal):
        yield


def _preview(config: RunConfig) -> int:
    """--dry-run: exit 0 when the run would go through (every row can be sent, or --on-bad-row skip
    would skip the bad ones), 2 when a bad row would stop it."""
    from batchrun.plan import resolve_resume  # lazy: as the run path
    from batchrun.preview import dry_run, format_preview  # lazy: for --dry-run only

    config = resolve_resume(config)
    preview = dry_run(config)
    typer.echo(format_preview(preview, config))
    return EXIT_OK if preview.bad_count == 0 or config.input.on_bad_row == "skip" else EXIT_USAGE


def _say_if_simulated(endpoint: dict[str, Any] | None) -> None:
    if endpoint and endpoint.get("kind") == "builtin":
        say(
            "note: these results come from the built-in simulated endpoint, not a real model "
            "(set OPENAI_API_KEY / OPENAI_BASE_URL for a real one)"
        )


def _report_run(outcome: Any, fail_on_error: bool) -> int:
    from batchrun.report.summary import format_summary_table  # lazy: as the run path
    from batchrun.report.workloads import workload_lines

    typer.echo(format_summary_table(outcome.summary))
    for line in workload_lines(outcome.summary):
        typer.echo(line)
    for path in outcome.files:
        typer.echo(f"  wrote {path}")
    _say_if_simulated(outcome.endpoint)
    if outcome.refused is not None:
        say(f"error: the endpoint refused the run: {outcome.refused}")
        say(
            "no more rows were sent; fix the key (OPENAI_API_KEY), --model or --base-url and "
            f"continue with: batchrun run --resume {outcome.out_dir}"
        )
        return EXIT_USAGE
    if outcome.internal_errors:
        say(
            f"error: {outcome.internal_errors} row(s) hit an internal error of batchrun (a bug); "
            f"the tracebacks are in {outcome.out_dir}/internal-errors.log"
        )
        return EXIT_FAILED
    if outcome.input_error is not None:
        say(f"error: {outcome.input_error}")
        if isinstance(outcome.input_error, InputChanged):
            say(
                f"the rows read are recorded; once the file is as it should be, send what it has that this run "
                f"did not with --resume {outcome.out_dir} --input-changed ok (rows matched by id), or start a "
                "new --out"
            )
        else:
            say(
                f"rows before it are recorded; fix the file and rerun with --resume {outcome.out_dir} "
                "--input-changed ok"
            )
        return EXIT_USAGE
    if outcome.interrupted:
        say(f"interrupted; continue with: batchrun run --resume {outcome.out_dir}")
        return EXIT_INTERRUPTED
    if outcome.max_cost and outcome.max_cost.get("reached"):
        _say_over_budget(outcome.max_cost, outcome.out_dir)
        return EXIT_FAILED
    if outcome.aborted:
        say(f"stopped early: {outcome.aborted}; continue with --resume {outcome.out_dir}")
        return EXIT_FAILED
    return EXIT_FAILED if fail_on_error and outcome.failed else EXIT_OK


def _say_over_budget(budget: dict[str, Any], out_dir: Path) -> None:
    from batchrun.analysis.cost import format_usd  # lazy: as the run path

    spent, limit = format_usd(budget["spent_usd"]), format_usd(budget["max_usd"])
    say(f"stopped at the budget: spent {spent} of --max-cost {limit} ({budget['reached']})")
    say(
        "the rows not sent are not recorded; continue with: batchrun run --resume "
        f"{out_dir} --max-cost USD, a budget above {spent} for the whole run (its projected cost is in the "
        "summary above)"
    )


# ---------------------------------------------------------------- bench


@command("bench")
def bench(given: dict[str, Any]) -> int:
    """The sync SDK baseline vs the async pool at several concurrencies, under a minute by default
    (--time-budget); with no PROMPTS, a built-in sample of prompts."""
    from batchrun.bench.sweep import BenchConfig, execute_bench  # lazy: the bench loads the openai SDK
    from batchrun.progress import ConsoleProgress  # lazy: tqdm
    from batchrun.report.bench import format_bench_table  # lazy: numpy, for a bench only

    config = BenchConfig.from_options(**given)
    hooks = Hooks(notify=say, progress=ConsoleProgress())  # Ctrl-C unwinds a bench (it keeps its runs)
    if given.get("find_max"):
        from batchrun.bench.findmax import execute_find_max, format_find_max  # lazy: --find-max only

        out_dir, found = asyncio.run(execute_find_max(config, config.run.output.out, hooks))
        typer.echo(format_find_max(found, config.slo or {}))
        typer.echo(f"  wrote {out_dir}/find_max.json, summary.json, report.md, report.html, runs/")
        _say_if_simulated(_written_endpoint(out_dir))
        return EXIT_OK
    out_dir, analysis = asyncio.run(execute_bench(config, config.run.output.out, hooks))
    typer.echo(format_bench_table(analysis))
    _echo_workloads(out_dir)
    typer.echo(f"  wrote {out_dir}/summary.json, report.md, report.html, runs/")
    _say_if_simulated(analysis.get("endpoint"))
    return EXIT_OK


def _echo_workloads(out_dir: Path) -> None:
    """A synthetic bench: the headline run's requested and realised lengths."""
    from batchrun.report.workloads import workload_lines  # lazy: as the bench

    headline = json.loads((out_dir / "summary.json").read_text(encoding="utf-8")).get("summary") or {}
    for line in workload_lines(headline):
        typer.echo(line)


def _written_endpoint(out_dir: Path) -> Any:
    return json.loads((out_dir / "summary.json").read_text(encoding="utf-8")).get("endpoint")


# ---------------------------------------------------------------- report, compare


@command("report")
def report(given: dict[str, Any]) -> int:
    """Rebuild summary.json, report.md and report.html from saved records, sending nothing."""
    from batchrun.finish import rebuild_reports  # lazy: `report` alone reads records back

    picked = options.with_defaults("report", given)
    for path in rebuild_reports(picked["run_dir"]).values():
        if not picked["quiet"]:
            typer.echo(f"  wrote {path}")
    return EXIT_OK


@command("compare")
def compare(given: dict[str, Any]) -> int:
    """Each headline figure's change with a 95% interval and a verdict; exit 1 on a regression.

    Silent on a pass unless --verbose; a failure prints what failed. Writes a Markdown summary to
    $GITHUB_STEP_SUMMARY when that variable is set."""
    from batchrun.analysis.compare import compare as compare_sides  # lazy: `compare` alone needs these
    from batchrun.analysis.compare import parse_tolerances
    from batchrun.report.compare import FORMATS, console_output, format_comparison, gate_failed

    picked = options.with_defaults("compare", given)
    fmt, strict = picked["format"], picked["fail_on_inconclusive"]
    try:
        tolerances = parse_tolerances(picked["max_regression"]) if picked["max_regression"] else None
    except ValueError as exc:
        raise ConfigError(f"--max-regression: {exc}") from exc
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    result = compare_sides(
        picked["baseline"],
        picked["current"],
        tolerances,
        defaults=True,
        allow_config_change=picked["allow_config_change"],
    )
    if not picked["quiet"]:
        typer.echo(console_output(result, fmt, strict, picked["verbose"]), nl=False)
    _step_summary(format_comparison(result, "md", strict))
    if picked["quiet"] or fmt not in ("text", "github"):  # else stdout already says what failed
        for line in result.regressions:
            say(f"regression: {line}")
    return EXIT_FAILED if gate_failed(result, strict) else EXIT_OK


@command("fit")
def fit(given: dict[str, Any]) -> int:
    """Fit an endpoint twin to the records of runs and benches: latency by requests in flight and
    prompt length, output lengths, failures, rate limits and wire quirks, as a small JSON file."""
    from batchrun.twin.load import fit_sources, write_twin  # lazy: only `fit` reads records to fit them

    picked = options.with_defaults("fit", given)
    out, quiet = picked["out"], picked["quiet"]
    twin, observed = fit_sources(picked["sources"])
    write_twin(twin, out)
    typer.echo(f"  wrote {out}")
    if not picked["no_report"]:
        from batchrun.twin.compare import compare_fit  # lazy: `fit` alone needs these
        from batchrun.twin.report import headline, write_fit_report

        comparison = compare_fit(twin, observed)
        for path in write_fit_report(twin, comparison, picked["report"] or out.with_suffix(".html")):
            typer.echo(f"  wrote {path}")
        if not quiet:
            typer.echo(headline(comparison))
    if not quiet:
        for note in twin.notes:
            typer.echo(f"note: {note}")
    return EXIT_OK


def _step_summary(markdown: str) -> None:
    """Append to the GitHub Actions job summary when running there."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown + "\n")
    except OSError as exc:
        say(f"warning: cannot write $GITHUB_STEP_SUMMARY ({path}): {exc.strerror}")


# ---------------------------------------------------------------- serve, batch

from batchrun.sim.cli import SERVE_OPTIONS, SERVE_PANELS, serve  # noqa: E402  (the sim's own options, beside its config)

command(
    "serve",
    declared=SERVE_OPTIONS,
    panels=SERVE_PANELS,
    help="Run the built-in simulated OpenAI-compatible endpoint in the foreground.",
)(serve)
app.add_typer(batch_app, name="batch")


@command("batch status", on=batch_app)
def batch_status(given: dict[str, Any]) -> int:
    """Every job of the run: its file, id, status and request counts (open jobs asked afresh)."""
    return _batch_command("status", given)


@command("batch cancel", on=batch_app)
def batch_cancel(given: dict[str, Any]) -> int:
    """Cancel the run's open jobs; `batchrun run --resume DIR` then collects what they finished."""
    return _batch_command("cancel", given)


def _batch_command(name: str, given: dict[str, Any]) -> int:
    from batchrun.batchapi import commands  # lazy: the Batch API's commands alone

    picked = options.with_defaults(f"batch {name}", given)
    for line in asyncio.run(getattr(commands, name)(picked["run_dir"], picked["base_url"], say)):
        typer.echo(line)
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    load_env_file()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="batchrun")
