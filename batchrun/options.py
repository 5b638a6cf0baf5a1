"""Every option of every command, declared once.

An option's `name` is its Python keyword, its key in run.json / summary.json and, in kebab case,
its flag (`max_tokens` -> `--max-tokens`). A declaration says what the command line gives (`type`),
the default (per command where commands differ), the help line, the group (its `--help` panel and
the config group it fills), extra flags, the environment variable, the commands that take it, and
how its value becomes the config's (`parse`, into the config fields `into`).

Read by the command line (cli.py generates each command's typer options from these), by the
config (its defaults are these, parsed), by the Python face's keywords and by the CLI reference
(docs/cli.md). Importing this module loads nothing heavy: typer only when a command is generated.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Mapping, Optional

from batchrun import values
from batchrun.errors import ConfigError

# The --help panels, in the order they are shown: the groups a run is configured by, then each
# command's own.
PANELS = {
    "input": "Input",
    "bench": "Benchmark",
    "endpoint": "Endpoint",
    "request": "Request",
    "limits": "Limits and retries",
    "output": "Output",
    "control": "Run control",
    "tools": "Tools",
    "scale": "Scale-out",
}


@dataclass(frozen=True)
class Option:
    """One option. `per` holds what differs per command: {"bench": {"default": 32, "help": ...}}."""

    name: str
    type: Any  # what the command line gives: str, int, float, bool, Path, list[str]
    default: Any
    help: str
    group: str  # a key of PANELS (or a command's own, shown without a panel)
    commands: tuple[str, ...] = ("run",)
    flags: tuple[str, ...] = ()  # when not just --kebab-name: aliases ("-c"), "--x/--no-x"
    env: str | None = None
    parse: Callable[[Any], Any] | None = None  # the given value -> the config's value (a tuple: one per `into`)
    into: tuple[str, ...] | None = None  # the config fields it sets (None: the one named like it)
    argument: bool = False  # positional, not --name
    metavar: str | None = None  # an argument's name in --help (default: NAME)
    cli: bool = True  # False: a Python keyword only (the key is never put on argv)
    per: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.name,) if self.into is None else self.into

    def on(self, command: str) -> Option:
        """This option as `command` takes it."""
        return replace(self, **{**self.per.get(command, {}), "commands": (command,), "per": {}})

    def coerce(self, value: Any) -> Any:
        """A number or yes/no option given as text (an environment variable, a Python caller's
        string) as its type; a ConfigError names the option when the text is not one."""
        kind = next((t for t in (bool, int, float) if self.type in (t, Optional[t])), None)
        if kind is None or not isinstance(value, str):
            return value
        if kind is bool:
            word = value.strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off"):
                return False
        else:
            with contextlib.suppress(ValueError):
                return kind(value)
        raise ConfigError(f"{self.flag} takes {'yes or no' if kind is bool else 'a number'}, got {value!r}")

    def config_values(self, value: Any) -> dict[str, Any]:
        """The config fields this option sets from `value` (as given, or its default)."""
        if not self.fields:
            return {}
        value = self.coerce(value)
        parsed = value if self.parse is None else self.parse(value)
        if len(self.fields) == 1:
            return {self.fields[0]: parsed}
        return dict(zip(self.fields, parsed))


def _o(name: str, type: Any, default: Any, help: str, group: str, **kw: Any) -> Option:
    return Option(name, type, default, help, group, **kw)


RUN, BENCH, RUN_BENCH = ("run",), ("bench",), ("run", "bench")
_ENDPOINT_HELP = (
    "Endpoint base URL, e.g. http://localhost:8000/v1, or 'builtin' for the built-in simulated "
    "endpoint (default: OPENAI_BASE_URL; with only OPENAI_API_KEY set, https://api.openai.com/v1; "
    "with neither, the built-in endpoint"
)

OPTIONS: tuple[Option, ...] = (
    # ---------------------------------------------------------------- input
    _o(
        "input",
        Optional[Path],
        None,
        "CSV, JSONL, Parquet or Batch API JSONL file of prompts.",
        "input",
        commands=RUN_BENCH,
        per={
            "bench": {
                "help": "CSV, JSONL, Parquet or Batch API JSONL file of prompts (none, and no --synthetic: a built-in "
                "sample of 44 prompts, short questions to paragraph-long tasks)."
            }
        },
        argument=True,
        metavar="PROMPTS",
        parse=values.path,
        into=("path",),
    ),
    _o(
        "prompt_column",
        Optional[str],
        None,
        "Column holding the prompt (default: 'prompt', else the only text column).",
        "input",
        commands=RUN_BENCH,
    ),
    _o(
        "id_column",
        Optional[str],
        None,
        "Column holding the row id (default: an 'id' column if present, else the row number).",
        "input",
        commands=RUN_BENCH,
    ),
    _o(
        "template",
        Optional[str],
        None,
        "Prompt template filled from the row's columns, e.g. 'Summarise: {text}'.",
        "input",
        commands=RUN_BENCH,
    ),
    _o("system", Optional[str], None, "System message put before every prompt.", "input", commands=RUN_BENCH),
    _o(
        "format",
        Optional[str],
        None,
        "Input format when the extension does not say: csv, jsonl, parquet.",
        "input",
        commands=RUN_BENCH,
        into=("fmt",),
    ),
    _o(
        "on_bad_row",
        str,
        "fail",
        "fail: stop at the first bad row; skip: record it as skipped and go on.",
        "input",
        env="BATCHRUN_ON_BAD_ROW",
    ),
    _o(
        "row_settings",
        bool,
        True,
        "Input columns named model, max_tokens, temperature, ... set those per row.",
        "input",
        flags=("--row-settings/--no-row-settings",),
    ),
    _o(
        "synthetic",
        Optional[str],
        None,
        "Generated prompts instead of a file, e.g. prompt_tokens=512,output_tokens=128,n=1000 "
        "(also stdev=, seed=; see docs/workloads.md).",
        "input",
        commands=RUN_BENCH,
    ),
    _o(
        "speedup",
        float,
        1.0,
        "Trace replay (a timestamp or delay_s column): play the schedule this many times faster.",
        "input",
    ),
    # ---------------------------------------------------------------- bench
    _o(
        "requests",
        Optional[int],
        None,
        "Measured requests per run, exactly (default: sized: by --time-budget, or, with -c or --rate given, at "
        "least max(100, 4 x concurrency) per level, more until its p50 TTFT and latency intervals are within ±4%, "
        "at most 4x that, and 100 for the sync baseline; prompts cycle when the file has fewer).",
        "bench",
        commands=BENCH,
        flags=("--requests", "-n"),
    ),
    _o(
        "time_budget",
        Optional[float],
        None,
        "Seconds the runs share: each sends until what it sent would end past its share (the sync baseline two "
        "shares), after at least 10 requests and one per slot. Default 36 when neither -c, --rate nor -n is given "
        "(the whole bench then takes under a minute against an endpoint answering in about 1 s: 46-49 s against "
        "the built-in one), else none; 0: none.",
        "bench",
        commands=BENCH,
        into=(),
    ),
    _o(
        "rate",
        Optional[str],
        None,
        "Open-loop load instead: requests/s levels, e.g. 2,4,8 (Poisson arrivals).",
        "bench",
        commands=BENCH,
        parse=values.rates,
        into=("rates",),
    ),
    _o(
        "burstiness",
        float,
        1.0,
        "Gamma shape of inter-arrival times with --rate (1 = Poisson, <1 burstier).",
        "bench",
        commands=BENCH,
    ),
    _o(
        "warmup",
        Optional[int],
        None,
        "Unmeasured requests before each run, at its concurrency (default: one wave, one per slot).",
        "bench",
        commands=BENCH,
    ),
    _o(
        "no_warmup",
        bool,
        False,
        "Send nothing unmeasured: no warm-up pass over the prompts before the first run (by default every "
        "distinct prompt is sent once, max_tokens 1, so every run meets the same server cache state) and no "
        "--warmup wave before each run.",
        "bench",
        commands=BENCH,
        flags=("--no-warmup",),
        into=(),
    ),
    _o(
        "repeat",
        int,
        1,
        "Repeat every run this many times (figures get 95% confidence intervals).",
        "bench",
        commands=BENCH,
    ),
    _o(
        "sync",
        bool,
        True,
        "Include the sequential openai.OpenAI baseline.",
        "bench",
        commands=BENCH,
        flags=("--sync/--no-sync",),
    ),
    _o(
        "max_run_time",
        float,
        0.0,
        "Stop sending new requests this many seconds into a run (0: no limit; a cut run is reported with its count).",
        "bench",
        commands=BENCH,
        parse=lambda v: float(v) or None,
        into=("max_run_s",),
    ),
    _o(
        "max_failure_share",
        float,
        0.01,
        "Largest share of failed requests a level may have and still be recommended, e.g. 0.05 for 5% "
        "(an API with occasional 5xx).",
        "bench",
        commands=BENCH,
    ),
    _o(
        "find_max",
        bool,
        False,
        "Search for the highest concurrency meeting --slo (doubling from the lowest --concurrency level, then "
        "bisection) instead of sweeping every level.",
        "bench",
        commands=BENCH,
        flags=("--find-max",),
        into=(),
    ),
    # ---------------------------------------------------------------- endpoint
    _o(
        "base_url",
        Optional[list[str]],
        None,
        _ENDPOINT_HELP + "; on --resume, the run's own endpoint). Repeat it to spread requests over several "
        "endpoints (see --balance).",
        "endpoint",
        commands=RUN_BENCH,
        flags=("--base-url",),
        parse=values.base_urls,
        into=("base_url", "extra_base_urls"),
        per={"bench": {"type": Optional[str], "flags": (), "help": _ENDPOINT_HELP + ")."}},
    ),
    _o(
        "api_key",
        Optional[str],
        None,
        "API key (default: OPENAI_API_KEY). Never on the command line, where other users' `ps` shows it.",
        "endpoint",
        commands=RUN_BENCH,
        cli=False,
        env="OPENAI_API_KEY",
    ),
    _o(
        "model",
        Optional[str],
        None,
        "Model name (default: the endpoint's only model).",
        "endpoint",
        commands=RUN_BENCH,
        env="BATCHRUN_MODEL",
    ),
    _o(
        "endpoint",
        str,
        "chat",
        "API to call: chat (/chat/completions), completions (/completions, prompt strings) or embeddings "
        "(/embeddings, batched).",
        "endpoint",
        commands=RUN_BENCH,
        flags=("--endpoint",),
        per={"bench": {"help": "API to call: chat (/chat/completions) or completions (/completions, prompt strings)."}},
    ),
    _o("balance", str, "rr", "With several --base-url: rr (in turn) or least (fewest requests in flight).", "endpoint"),
    _o(
        "builtin_option",
        Optional[list[str]],
        None,
        "Configure the built-in endpoint, KEY=VALUE (repeatable), e.g. ttft_s=0.3 or seed=7; see "
        "`batchrun serve --help`.",
        "endpoint",
        commands=RUN_BENCH,
        flags=("--builtin-option",),
        parse=values.strings,
        into=("builtin_options",),
    ),
    # ---------------------------------------------------------------- request
    _o(
        "max_tokens",
        Optional[int],
        None,
        "Maximum output tokens per request.",
        "request",
        commands=RUN_BENCH,
        env="BATCHRUN_MAX_TOKENS",
        per={
            "bench": {
                "type": int,
                "default": 32,
                "env": None,
                "help": "Maximum output tokens per request (short answers keep a bench quick).",
            }
        },
    ),
    _o(
        "temperature",
        Optional[float],
        None,
        "Sampling temperature.",
        "request",
        commands=RUN_BENCH,
        env="BATCHRUN_TEMPERATURE",
    ),
    _o(
        "extra_body",
        Optional[str],
        None,
        "JSON object merged into every request body.",
        "request",
        commands=RUN_BENCH,
        env="BATCHRUN_EXTRA_BODY",
        parse=values.extra_body,
    ),
    _o(
        "json",
        bool,
        False,
        "Ask for a JSON object answer (json_object mode) and parse it into result columns.",
        "request",
        flags=("--json",),
        into=("json_mode",),
    ),
    _o(
        "json_schema",
        Optional[Path],
        None,
        "JSON Schema file: ask for strict structured output, validate every answer, its fields become result columns.",
        "request",
        parse=values.json_schema,
    ),
    _o("batch_size", int, 32, "Inputs per request with --endpoint embeddings.", "request"),
    # ---------------------------------------------------------------- limits
    _o(
        "concurrency",
        str,
        "16",
        "Most requests in flight at once, or auto: start low and find what the endpoint takes (AIMD on 429s, "
        "errors and a TTFT knee).",
        "limits",
        commands=RUN_BENCH,
        flags=("--concurrency", "-c"),
        env="BATCHRUN_CONCURRENCY",
        parse=values.concurrency,
        into=("concurrency", "concurrency_auto"),
        per={
            "bench": {
                "type": Optional[str],
                "default": None,
                "env": None,
                "group": "bench",
                "parse": values.levels,
                "into": ("concurrencies",),
                "help": "Concurrency levels to sweep, e.g. 1,2,4,8 (default 1,4,16,64; with --find-max the "
                "lowest is where the search starts). Given, each level is sized by its spread (see -n) "
                "unless --time-budget is given too.",
            }
        },
    ),
    _o(
        "rpm",
        str,
        "auto",
        "Requests-per-minute limit to stay under; auto: the limit the provider's rate-limit headers announce; "
        "off: none.",
        "limits",
        commands=RUN_BENCH,
        env="BATCHRUN_RPM",
        parse=values.rpm,
        into=("rpm", "learn_rpm"),
    ),
    _o(
        "tpm",
        str,
        "auto",
        "Tokens-per-minute limit to stay under; auto / off as for --rpm.",
        "limits",
        commands=RUN_BENCH,
        env="BATCHRUN_TPM",
        parse=values.tpm,
        into=("tpm", "learn_tpm"),
    ),
    _o(
        "timeout",
        float,
        600.0,
        "Seconds a whole request may take.",
        "limits",
        commands=RUN_BENCH,
        env="BATCHRUN_TIMEOUT",
        per={"bench": {"default": 120.0}},
    ),
    _o(
        "ttft_timeout",
        Optional[float],
        None,
        "Seconds to wait for the first token.",
        "limits",
        commands=RUN_BENCH,
        env="BATCHRUN_TTFT_TIMEOUT",
    ),
    _o(
        "retries",
        int,
        3,
        "Retries for 429 / 5xx / connection errors / timeouts.",
        "limits",
        commands=RUN_BENCH,
        env="BATCHRUN_RETRIES",
        per={"bench": {"default": 0, "env": None, "help": "Retries per request (in a benchmark a failure is data)."}},
    ),
    _o(
        "max_retry_wait",
        float,
        60.0,
        "Longest single wait before a retry, in seconds, whatever the server's retry-after asks.",
        "limits",
        commands=RUN_BENCH,
        env="BATCHRUN_MAX_RETRY_WAIT",
    ),
    _o(
        "max_response_bytes",
        int,
        16 * 1024 * 1024,
        "Largest response accepted, in bytes (--mode batch: result line); a longer one is cut and recorded as "
        "ResponseTooLarge.",
        "limits",
        commands=RUN_BENCH,
        env="BATCHRUN_MAX_RESPONSE_BYTES",
    ),
    _o(
        "slo",
        Optional[str],
        None,
        "Latency bounds, e.g. ttft=500ms,e2e=10s: goodput in the summary, and the bound --concurrency auto keeps to.",
        "limits",
        commands=RUN_BENCH,
        parse=values.slo,
        per={
            "bench": {
                "group": "bench",
                "help": "Latency bounds for goodput and the recommendation, e.g. ttft=500ms,tpot=50ms,e2e=10s.",
            }
        },
    ),
    # ---------------------------------------------------------------- output
    _o(
        "out",
        Optional[Path],
        None,
        "Output directory (default: results/<input>-<timestamp>).",
        "output",
        commands=RUN_BENCH,
        parse=values.path,
        per={
            "bench": {
                "help": "Output directory (default: results/bench-<input>-<timestamp>; with --find-max, "
                "results/findmax-<timestamp>)."
            }
        },
    ),
    _o("output_format", str, "csv", "Results file format: csv or parquet.", "output"),
    _o(
        "csv_formulas",
        str,
        "escape",
        "escape: prefix text cells starting with = + - @ with ' (spreadsheet-safe); raw: write them as they are.",
        "output",
    ),
    _o(
        "save_request",
        bool,
        True,
        "Keep each request as sent (messages, model, ...) in records.jsonl.",
        "output",
        flags=("--save-request/--no-save-request",),
    ),
    _o(
        "slice",
        Optional[str],
        None,
        "Also report throughput and latency per time window of this width, e.g. 10s.",
        "output",
        flags=("--slice",),
        parse=lambda v: values.duration(v, "--slice"),
        into=("slice_s",),
    ),
    _o(
        "price_in",
        Optional[float],
        None,
        "USD per 1M prompt tokens (default: a dated list price for well-known models).",
        "output",
    ),
    _o(
        "price_out",
        Optional[float],
        None,
        "USD per 1M output tokens (default: a dated list price for well-known models).",
        "output",
    ),
    # ---------------------------------------------------------------- run control
    _o(
        "resume",
        Optional[Path],
        None,
        "Continue the run in this directory: rows already ok are not sent again (progress counts the rows left: "
        "0 of rows minus those done).",
        "control",
        parse=values.path,
    ),
    _o(
        "limit",
        Optional[int],
        None,
        "Send only the first N rows that can be sent (a pilot; with --on-bad-row skip, bad rows met on the way are "
        "recorded as skipped and not counted); --resume without it extends the run to the whole file.",
        "control",
    ),
    _o(
        "dry_run",
        bool,
        False,
        "Read the whole file and show bad rows, three prompts, estimated tokens, cost and time; send nothing. "
        "Exits 2 when a row is bad, unless --on-bad-row skip (then 0: the bad rows are listed as skipped).",
        "control",
        flags=("--dry-run",),
    ),
    _o(
        "mode",
        Optional[str],
        None,
        "online: stream every request now; batch: through the OpenAI Batch API (half price, results within "
        "24 h); auto: online when small or urgent, else batch (default: online; on --resume, the run's own "
        "mode).",
        "control",
        env="BATCHRUN_MODE",
    ),
    _o(
        "deadline",
        Optional[str],
        None,
        "Answers needed within this time, e.g. 2h or 90m: --mode auto goes online below 24 h; --mode batch "
        "cancels jobs still open then (their rows stay resumable).",
        "control",
        parse=lambda v: values.duration(v, "--deadline"),
        into=("deadline_s",),
    ),
    _o(
        "batch_wait",
        Optional[str],
        None,
        "--mode batch: the longest this session waits for open jobs, e.g. 6h (default: 25h); then it stops "
        "waiting, the jobs go on at the provider and --resume collects them.",
        "control",
        parse=lambda v: values.duration(v, "--batch-wait"),
        into=("batch_wait_s",),
    ),
    _o(
        "quiet",
        bool,
        False,
        "No progress bar (for CI logs).",
        "control",
        commands=RUN_BENCH,
        flags=("--quiet", "-q"),
        per={"bench": {"help": "Print only the final table and errors (for CI logs)."}},
    ),
    _o("fail_on_error", bool, False, "Exit 1 when any request failed.", "control"),
    _o("max_errors", Optional[int], None, "Stop the run after this many failed requests.", "control"),
    _o(
        "max_error_rate",
        Optional[float],
        None,
        "Stop the run when this fraction of requests fails (after 20).",
        "control",
    ),
    _o(
        "max_cost",
        Optional[float],
        None,
        "Budget in USD: no request is sent once spend so far plus the requests in flight and the next "
        "at their expected cost would pass it; the run ends resumable (--resume with a higher --max-cost "
        "goes on). Needs a price: --price-in/--price-out, or a model in the list-price table.",
        "control",
    ),
    _o(
        "overwrite",
        bool,
        False,
        "Let --out name a non-empty run directory: its run files are replaced.",
        "control",
        flags=("--overwrite",),
    ),
    _o(
        "input_changed",
        Optional[str],
        None,
        "'ok': let --resume continue on a changed input file (rows matched by id).",
        "control",
    ),
    # ---------------------------------------------------------------- tools
    _o("tools", Optional[Path], None, "JSON file with a list of OpenAI tool definitions.", "tools", parse=values.tools),
    _o("tool_choice", Optional[str], None, "auto, none, required, or a tool name.", "tools", parse=values.tool_choice),
    _o(
        "parallel_tool_calls",
        Optional[bool],
        None,
        "Allow several tool calls in one response.",
        "tools",
        flags=("--parallel-tool-calls/--no-parallel-tool-calls",),
    ),
    _o(
        "tool_module",
        Optional[Path],
        None,
        "Python file whose functions run the tools the model calls (runs your code in-process).",
        "tools",
        parse=values.path,
    ),
    _o("max_tool_rounds", int, 3, "Most follow-up requests after tool results, per row (with --tool-module).", "tools"),
    _o("tool_timeout", float, 30.0, "Seconds one tool call may take (with --tool-module).", "tools"),
    # ---------------------------------------------------------------- scale-out
    _o(
        "workers",
        str,
        "1",
        "Sending processes, each with its own event loop and connections; this one reads, writes and paces for "
        "all. auto: cores - 1 from --concurrency 256 on, else 1.",
        "scale",
        env="BATCHRUN_WORKERS",
        parse=values.workers,
        into=("workers", "workers_auto"),
    ),
    _o(
        "ray",
        bool,
        False,
        "Run the workers as Ray actors: join the Ray cluster on this machine (or RAY_ADDRESS's) or start one; "
        "--workers N actors (default: the cluster's CPUs - 1). Needs pip install 'ray[client]>=2.9' (the ray "
        "extra).",
        "scale",
        flags=("--ray",),
        into=(),
    ),
    _o(
        "ray_address",
        Optional[str],
        None,
        "Join this Ray cluster (implies --ray): auto, ray://HOST:10001 or HOST:6379.",
        "scale",
        env="BATCHRUN_RAY_ADDRESS",
        into=(),
    ),
    _o("ray_cpus", float, 1.0, "CPUs each Ray actor reserves (with --ray).", "scale"),
    # ---------------------------------------------------------------- report, compare, batch
    _o(
        "run_dir",
        Path,
        ...,
        "A directory written by `batchrun run` or `batchrun bench` (also an interrupted bench).",
        "report",
        commands=("report", "batch status", "batch cancel"),
        argument=True,
        per={
            "batch status": {"help": "A directory written by `batchrun run --mode batch`."},
            "batch cancel": {"help": "A directory written by `batchrun run --mode batch`."},
        },
    ),
    _o(
        "baseline",
        Path,
        ...,
        "Baseline run or bench directory (or its summary.json).",
        "compare",
        commands=("compare",),
        argument=True,
    ),
    _o(
        "current",
        Path,
        ...,
        "Current run or bench directory (or its summary.json).",
        "compare",
        commands=("compare",),
        argument=True,
    ),
    _o(
        "max_regression",
        Optional[str],
        None,
        'Tolerances, added to or replacing the defaults, e.g. "latency_p99=10%,ttft_p50=10%,throughput=-5%".',
        "compare",
        commands=("compare",),
    ),
    _o(
        "format",
        str,
        "text",
        "text, md (a pull-request comment), json, junit (XML test report) or github (workflow annotations).",
        "compare",
        commands=("compare",),
    ),
    _o(
        "fail_on_inconclusive",
        bool,
        False,
        "Exit 1 also when a figure is inconclusive (too few requests to decide).",
        "compare",
        commands=("compare",),
    ),
    _o(
        "allow_config_change",
        bool,
        False,
        "Compare even when model, endpoint, max_tokens, concurrency, input or batchrun version differ.",
        "compare",
        commands=("compare",),
    ),
    _o(
        "verbose",
        bool,
        False,
        "Print the whole comparison also when the gate passes (a pass prints nothing, or with --format github one "
        "warning naming the undecided figures).",
        "compare",
        commands=("compare",),
        flags=("--verbose", "-v"),
    ),
    _o(
        "quiet",
        bool,
        False,
        "Print nothing but errors.",
        "report",
        commands=("report", "compare", "fit"),
        flags=("--quiet", "-q"),
        per={
            "compare": {"help": "Print only the regressions (on stderr) and errors."},
            "fit": {"help": "Print only the paths written and errors."},
        },
    ),
    _o(
        "base_url",
        Optional[str],
        None,
        "The endpoint the jobs live at (default: the run's own, as --resume uses).",
        "batch",
        commands=("batch status", "batch cancel"),
    ),
    # ---------------------------------------------------------------- fit
    _o(
        "sources",
        list[Path],
        ...,
        "Run or bench directories (written by `batchrun run` / `batchrun bench`) of the endpoint to copy.",
        "fit",
        commands=("fit",),
        argument=True,
    ),
    _o(
        "out",
        Path,
        Path("twin.json"),
        "The twin file to write (serve it with `batchrun serve --like FILE`).",
        "fit",
        commands=("fit",),
    ),
    _o(
        "report",
        Optional[Path],
        None,
        "The fit's report page, HTML with a Markdown copy beside it (default: the twin file's name with .html).",
        "fit",
        commands=("fit",),
    ),
    _o("no_report", bool, False, "Write only the twin file.", "fit", commands=("fit",), flags=("--no-report",)),
)


def of(command: str, declared: Iterable[Option] = OPTIONS, panels: Mapping[str, str] = PANELS) -> list[Option]:
    """The options `command` takes, as it takes them, in --help order (panels, then declaration)."""
    order = list(panels)
    found = [o.on(command) for o in declared if command in o.commands]
    return sorted(found, key=lambda o: (not o.argument, order.index(o.group) if o.group in order else len(order)))


def named(command: str, name: str) -> Option:
    for option in of(command):
        if option.name == name:
            return option
    raise KeyError(f"{command} has no option {name!r}")


def check_names(command: str, given: Iterable[str], declared: Iterable[Option] = OPTIONS) -> None:
    """A TypeError for a keyword `command` does not take, with the closest names it does."""
    known = [o.name for o in of(command, declared)]
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise TypeError(f"{command}() got an unexpected keyword argument {name!r}{hint}")


def with_defaults(command: str, given: Mapping[str, Any], declared: Iterable[Option] = OPTIONS) -> dict[str, Any]:
    """Every option of `command`: the given value, else the declared default."""
    check_names(command, given, declared)
    return {o.name: given.get(o.name, o.default) for o in of(command, declared)}


def field_defaults(command: str = "run") -> dict[str, Any]:
    """The config fields' defaults: each option's default, parsed as a given value would be."""
    out: dict[str, Any] = {}
    for option in of(command):
        if option.default is not ...:
            out.update(option.config_values(option.default))
    return out


def public_names(command: str = "run") -> dict[str, str]:
    """Config field -> the option name it is written under in run.json, where the two differ."""
    return {o.fields[0]: o.name for o in of(command) if len(o.fields) == 1 and o.fields[0] != o.name}


# ---------------------------------------------------------------- the command line (typer)


def _unwrapped(doc: str | None) -> str | None:
    """A docstring with each paragraph on one line: rich keeps a docstring's line breaks, which cut
    the command list's one-line summaries in the middle of a sentence."""
    if doc is None:
        return None
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def typer_parameter(option: Option, panels: Mapping[str, str] = PANELS) -> inspect.Parameter:
    """The parameter a typer command takes for `option`: Annotated[type, typer.Option(...)]."""
    import typer  # lazy: the Python face never needs typer

    panel = panels.get(option.group)
    if option.argument:
        info = typer.Argument(help=option.help, metavar=option.metavar or option.name.upper(), show_default=False)
    else:
        # No default shown for None: typer 0.12 shows an unset --x/--no-x flag as "[default: no-x]".
        info = typer.Option(
            *option.flags,
            help=option.help,
            envvar=option.env,
            show_envvar=option.env is not None,
            rich_help_panel=panel,
            show_default=option.default is not None,
        )
    return inspect.Parameter(
        option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default, annotation=Annotated[option.type, info]
    )


def typer_command(
    command: str,
    run: Callable[[Any, dict[str, Any]], None],
    declared: Iterable[Option] = OPTIONS,
    doc: str | None = None,
    panels: Mapping[str, str] = PANELS,
) -> Callable[..., None]:
    """A function typer can register as `command`: its parameters are the declared options;
    calling it calls `run(ctx, values)` with the values the user gave (those left out are absent:
    the declaration's default is theirs)."""
    import typer  # lazy: the Python face never needs typer

    options = [o for o in of(command, declared, panels) if o.cli]

    def handler(ctx: typer.Context, **params: Any) -> None:
        given = {
            name: value
            for name, value in params.items()
            if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
        }
        run(ctx, given)

    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    parameters = [ctx_param, *(typer_parameter(o, panels) for o in options)]
    handler.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    handler.__annotations__ = {p.name: p.annotation for p in parameters}
    handler.__doc__ = _unwrapped(doc)
    handler.__name__ = command.replace(" ", "_")
    return handler
