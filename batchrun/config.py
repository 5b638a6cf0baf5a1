"""RunConfig, grouped, and its validation; the only place the environment and `.env` are read.

    RunConfig
     +-- input     InputConfig     the prompts: file, columns, template, bad rows, synthetic, replay speed
     +-- endpoint  EndpointConfig  where they go: URLs, key, model, API kind, built-in endpoint options
     +-- request   RequestConfig   what each request asks: max_tokens, temperature, body, JSON answers
     +-- tools     ToolsConfig     tool definitions and the module that runs them
     +-- limits    LimitsConfig    how fast and how patient: concurrency, rpm / tpm, timeouts, retries, SLO
     +-- output    OutputConfig    the files: directory, format, spreadsheet safety, slices, prices
     +-- control   ControlConfig   how the run goes: resume, pilot, dry run, Batch API mode, stop rules
     +-- scale     ScaleConfig     worker processes and Ray

Each group is frozen and checks its own fields; RunConfig checks what spans groups. The defaults
are the declared options' (batchrun/options.py), parsed. `public_dict()` is flat, keyed by option
name, as run.json and summary.json hold it; `from_public_dict` reads it and every older run.json.

Precedence: command-line flag > environment (`OPENAI_*`, `BATCHRUN_*`) > `.env` file > default.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping

from dotenv import load_dotenv

from batchrun import options, values
from batchrun.errors import ConfigError
from batchrun.redact import public_url, redact

OnBadRow = Literal["fail", "skip"]
ON_BAD_ROW: tuple[OnBadRow, ...] = ("fail", "skip")
OUTPUT_FORMATS = ("csv", "parquet")
CSV_FORMULAS = ("escape", "raw")
ENDPOINTS = ("chat", "completions", "embeddings")
MODES = (None, "online", "batch", "auto")

_D = options.field_defaults("run")
DEFAULTS: Mapping[str, Any] = _D  # every config field's default (`batchrun run`'s)


def load_env_file(path: str | os.PathLike[str] | None = None) -> None:
    """Read `.env` (from the working directory) into the environment without overriding it."""
    load_dotenv(path or Path.cwd() / ".env", override=False)


def env_endpoint(
    base_url: str | None, api_key: str | None, *, use_env_url: bool = True
) -> tuple[str | None, str | None]:
    """Flags win; otherwise OPENAI_BASE_URL / OPENAI_API_KEY from the environment or `.env`.
    `use_env_url=False` (a --resume): the base URL only from the flag, since a resumed run keeps
    its own endpoint unless told otherwise."""
    if use_env_url:
        base_url = base_url or env_base_url()
    api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
    return base_url, api_key


def env_base_url() -> str | None:
    """OPENAI_BASE_URL from the environment or `.env`."""
    return os.environ.get("OPENAI_BASE_URL") or None


def env_openai_org_project() -> tuple[str | None, str | None]:
    """OPENAI_ORG_ID and OPENAI_PROJECT_ID (None when unset), which the openai SDK turns into the
    OpenAI-Organization / OpenAI-Project headers; batchrun sends them the same way."""
    return os.environ.get("OPENAI_ORG_ID"), os.environ.get("OPENAI_PROJECT_ID")


def env_options(command: str = "run") -> dict[str, str]:
    """The options `command` takes from the environment (`BATCHRUN_*`, declared in options.py) that
    are set there, as text: what a face without typer (the Python API) adds to its keywords."""
    return {o.name: os.environ[o.env] for o in options.of(command) if o.cli and o.env and os.environ.get(o.env)}


def _flag(name: str) -> str:
    return "--" + options.public_names().get(name, name).replace("_", "-")


def _finite(group: Any, *names: str) -> None:
    """NaN or infinity in a number option is refused (`--rpm nan` would hang the limiter,
    `--temperature nan` would be sent as invalid JSON)."""
    for name in names:
        value = getattr(group, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{_flag(name)} must be a finite number, got {value}")


def _positive(group: Any, *names: str) -> None:
    for name in names:
        value = getattr(group, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{_flag(name)} must be positive, got {value}")


def _one_of(value: Any, allowed: tuple[Any, ...], option: str) -> None:
    if value not in allowed:
        words = [a for a in allowed if a is not None]
        raise ConfigError(f"{option} must be one of {', '.join(words)}, got {value!r}")


@dataclass(frozen=True)
class InputConfig:
    """The prompts: a file (its format, columns, template) or generated ones."""

    path: Path | None = _D["path"]
    fmt: str | None = _D["fmt"]
    prompt_column: str | None = _D["prompt_column"]
    id_column: str | None = _D["id_column"]
    template: str | None = _D["template"]
    system: str | None = _D["system"]
    on_bad_row: OnBadRow = _D["on_bad_row"]
    row_settings: bool = _D["row_settings"]  # input columns named model / max_tokens / ... override the flags
    synthetic: str | None = _D["synthetic"]  # --synthetic spec: generated prompts instead of a file
    speedup: float = _D["speedup"]  # trace replay: timestamps / delay_s divided by this

    def __post_init__(self) -> None:
        _one_of(self.on_bad_row, ON_BAD_ROW, "--on-bad-row")
        _positive(self, "speedup")
        if self.synthetic is not None and self.path is not None:
            raise ConfigError("give a prompts file or --synthetic, not both")


@dataclass(frozen=True)
class EndpointConfig:
    """Where requests go and which model answers."""

    base_url: str | None = _D["base_url"]
    extra_base_urls: tuple[str, ...] = _D["extra_base_urls"]  # --base-url given more than once
    api_key: str | None = field(default=_D["api_key"], repr=False)
    model: str | None = _D["model"]
    endpoint: str = _D["endpoint"]  # chat / completions / embeddings
    balance: str = _D["balance"]  # rr / least, across base_url and extra_base_urls
    builtin_options: tuple[str, ...] = _D["builtin_options"]  # --builtin-option KEY=VALUE

    def __post_init__(self) -> None:
        _one_of(self.endpoint, ENDPOINTS, "--endpoint")
        _one_of(self.balance, ("rr", "least"), "--balance")
        if self.extra_base_urls and self.endpoint == "embeddings":
            raise ConfigError("--endpoint embeddings takes one --base-url")


@dataclass(frozen=True)
class RequestConfig:
    """What every request asks for (a row's own settings may override them)."""

    max_tokens: int | None = _D["max_tokens"]
    temperature: float | None = _D["temperature"]
    extra_body: dict[str, Any] = field(default_factory=lambda: dict(_D["extra_body"]))
    json_mode: bool = _D["json_mode"]  # --json: answers must be a JSON object
    json_schema: dict[str, Any] | None = _D["json_schema"]  # --json-schema: the schema answers must follow
    batch_size: int = _D["batch_size"]  # inputs per /embeddings request

    def __post_init__(self) -> None:
        _finite(self, "max_tokens", "temperature")
        _positive(self, "max_tokens")
        if not isinstance(self.extra_body, dict):
            raise ConfigError("--extra-body must be a JSON object, e.g. '{\"top_p\": 0.9}'")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise ConfigError("--json-schema must hold a JSON object (a JSON Schema)")
        if not 1 <= self.batch_size <= 2048:
            raise ConfigError(f"--batch-size must be between 1 and 2048, got {self.batch_size}")


@dataclass(frozen=True)
class ToolsConfig:
    """Tools offered to the model, and the Python module that runs them."""

    tools: list[dict[str, Any]] | None = _D["tools"]
    tool_choice: Any = _D["tool_choice"]
    parallel_tool_calls: bool | None = _D["parallel_tool_calls"]
    tool_module: Path | None = _D["tool_module"]
    max_tool_rounds: int = _D["max_tool_rounds"]
    tool_timeout: float = _D["tool_timeout"]

    def __post_init__(self) -> None:
        _finite(self, "tool_timeout")
        _positive(self, "tool_timeout")


@dataclass(frozen=True)
class LimitsConfig:
    """How many requests at once, how fast, how long each may take, how often to retry."""

    concurrency: int = _D["concurrency"]  # with concurrency_auto: the most it may grow to
    concurrency_auto: bool = _D["concurrency_auto"]  # --concurrency auto: found at run time (engine/adaptive.py)
    rpm: float | None = _D["rpm"]
    learn_rpm: bool = _D["learn_rpm"]  # --rpm auto (the default): pace by the provider's headers
    tpm: float | None = _D["tpm"]
    learn_tpm: bool = _D["learn_tpm"]
    timeout: float | None = _D["timeout"]
    ttft_timeout: float | None = _D["ttft_timeout"]
    retries: int = _D["retries"]
    max_retry_wait: float = _D["max_retry_wait"]
    max_response_bytes: int = _D["max_response_bytes"]
    slo: dict[str, float] | None = _D["slo"]  # latency bounds: goodput, and --concurrency auto's ceiling
    seed: int | None = None  # retry jitter and open-loop arrivals (None: random)

    def __post_init__(self) -> None:
        _finite(self, "concurrency", "rpm", "tpm", "timeout", "ttft_timeout", "max_retry_wait")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency}")
        _positive(self, "rpm", "tpm", "timeout", "ttft_timeout", "max_retry_wait", "max_response_bytes")
        if self.retries < 0:
            raise ConfigError(f"--retries must be 0 or more, got {self.retries}")


@dataclass(frozen=True)
class OutputConfig:
    """The run directory and what goes into its files."""

    out: Path | None = _D["out"]
    output_format: str = _D["output_format"]
    csv_formulas: str = _D["csv_formulas"]  # escape: OWASP-neutralise formula-like text cells; raw: as is
    save_request: bool = _D["save_request"]  # records keep the body as sent
    slice_s: float | None = _D["slice_s"]  # --slice: per-window figures of this width
    price_in: float | None = _D["price_in"]  # USD per 1M prompt tokens (None: the price table's, if any)
    price_out: float | None = _D["price_out"]  # USD per 1M output tokens

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"--output-format must be csv or parquet, got {self.output_format!r}")
        if self.csv_formulas not in CSV_FORMULAS:
            raise ConfigError(f"--csv-formulas must be escape or raw, got {self.csv_formulas!r}")
        if self.slice_s is not None and self.slice_s <= 0:
            raise ConfigError(f"--slice must be a positive duration, got {self.slice_s}")
        for name in ("price_in", "price_out"):
            value = getattr(self, name)
            if value is not None and (value < 0 or value != value):
                raise ConfigError(f"{_flag(name)} is USD per 1M tokens, 0 or more; got {value}")


@dataclass(frozen=True)
class ControlConfig:
    """How the run goes: a new one or a resumed one, a pilot or a dry run, online or through the
    Batch API, and when it stops early."""

    resume: Path | None = _D["resume"]
    limit: int | None = _D["limit"]  # send only the first N rows (a pilot)
    dry_run: bool = _D["dry_run"]  # read and price the file, send nothing
    mode: str | None = _D["mode"]  # None: online, or the resumed run's mode
    deadline_s: float | None = _D["deadline_s"]  # answers needed within this many seconds
    batch_wait_s: float | None = _D["batch_wait_s"]  # --mode batch: longest wait per session (None: 25 h)
    quiet: bool = _D["quiet"]
    fail_on_error: bool = _D["fail_on_error"]
    max_errors: int | None = _D["max_errors"]
    max_error_rate: float | None = _D["max_error_rate"]
    max_cost: float | None = _D["max_cost"]  # USD: no request is sent that would take the spend past it
    overwrite: bool = _D["overwrite"]  # --out may name a non-empty directory: its run files are replaced
    input_changed: str | None = _D["input_changed"]  # "ok": --resume accepts a changed input file (rows matched by id)

    def __post_init__(self) -> None:
        _finite(self, "max_error_rate", "max_cost")
        if self.max_cost is not None and self.max_cost <= 0:
            raise ConfigError(f"--max-cost is a budget in USD, more than 0; got {self.max_cost:g}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        _one_of(self.mode, MODES, "--mode")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ConfigError(f"--deadline must be positive, got {self.deadline_s}")
        if self.batch_wait_s is not None and not (0 < self.batch_wait_s < math.inf):
            raise ConfigError(f"--batch-wait must be a positive duration, got {self.batch_wait_s}")
        if self.max_error_rate is not None and not 0 <= self.max_error_rate <= 1:
            raise ConfigError(f"--max-error-rate is a fraction between 0 and 1, got {self.max_error_rate}")
        if self.input_changed not in (None, "ok"):
            raise ConfigError(f"--input-changed takes only 'ok', got {self.input_changed!r}")
        if self.overwrite and self.resume is not None:
            raise ConfigError("--overwrite and --resume contradict each other: pick one")


@dataclass(frozen=True)
class ScaleConfig:
    """Sending processes: this one alone, worker processes, or Ray actors."""

    workers: int = _D["workers"]  # --workers: sending processes (1: the run's own process)
    workers_auto: bool = _D["workers_auto"]  # --workers auto: cores - 1 at high concurrency
    ray: str | None = None  # --ray / --ray-address: local, auto, ray://HOST:PORT or HOST:PORT
    ray_cpus: float = _D["ray_cpus"]  # --ray-cpus: CPUs each Ray actor reserves

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.ray is None:
            return
        if importlib.util.find_spec("ray") is None:
            raise ConfigError(f"--ray needs Ray, which is not installed here ({values.RAY_INSTALL})")
        values.ray_address(self.ray)
        if not self.ray_cpus > 0:
            raise ConfigError(f"--ray-cpus must be positive, got {self.ray_cpus}")


GROUPS: dict[str, type] = {
    "input": InputConfig,
    "endpoint": EndpointConfig,
    "request": RequestConfig,
    "tools": ToolsConfig,
    "limits": LimitsConfig,
    "output": OutputConfig,
    "control": ControlConfig,
    "scale": ScaleConfig,
}
# Config field -> its group's name (field names are unique across groups).
FIELD_GROUP = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}


@dataclass(frozen=True)
class RunConfig:
    """Everything one `batchrun run` needs; built once by a face, never mutated."""

    input: InputConfig = field(default_factory=InputConfig)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    request: RequestConfig = field(default_factory=RequestConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)

    def __post_init__(self) -> None:
        if self.input.path is None and self.control.resume is None and self.input.synthetic is None:
            raise ConfigError("give a prompts file (CSV, JSONL or Parquet), --synthetic SPEC, or --resume RUN_DIR")
        _check_across(self)

    @classmethod
    def of(cls, **values: Any) -> RunConfig:
        """A config from flat config fields (`model=...`, `concurrency_auto=True`), the rest default."""
        by_group: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
        for name, value in values.items():
            if name not in FIELD_GROUP:
                raise TypeError(f"RunConfig has no field {name!r}")
            by_group[FIELD_GROUP[name]][name] = value
        return cls(**{name: GROUPS[name](**given) for name, given in by_group.items()})

    @classmethod
    def from_options(cls, command: str = "run", **given: Any) -> RunConfig:
        """A config from option values as a user gives them (`concurrency="auto"`, `rpm="off"`,
        `json_schema=Path(...)`); options left out take their declared default. Reads the endpoint
        and key from the environment (`OPENAI_BASE_URL`, `OPENAI_API_KEY`) when not given; a
        resumed run keeps its own endpoint instead."""
        options.check_names(command, given)
        flat: dict[str, Any] = {}
        for option in options.of(command):
            if option.name in given and option.fields and FIELD_GROUP.get(option.fields[0]):
                flat.update(option.config_values(given[option.name]))
        url, key = env_endpoint(flat.get("base_url"), flat.get("api_key"), use_env_url=given.get("resume") is None)
        flat["base_url"], flat["api_key"] = url, key
        ray = given.get("ray_address") or (values.RAY_LOCAL if given.get("ray") else None)
        if ray is not None:
            flat["ray"] = ray
            flat.setdefault("workers_auto", "workers" not in given)  # then the cluster sizes it
        if command != "run":  # a command's own defaults (bench: max_tokens 32, timeout 120, ...)
            flat = {**{k: v for k, v in options.field_defaults(command).items() if k in FIELD_GROUP}, **flat}
        return cls.of(**flat)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with `changes` (flat config fields), validated again."""
        by_group: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            if name not in FIELD_GROUP:
                raise TypeError(f"RunConfig has no field {name!r}")
            by_group.setdefault(FIELD_GROUP[name], {})[name] = value
        return dataclasses.replace(
            self, **{group: dataclasses.replace(getattr(self, group), **given) for group, given in by_group.items()}
        )

    def flat(self) -> dict[str, Any]:
        """Every config field by name, in group order."""
        return {
            f.name: getattr(group, f.name) for group in (getattr(self, name) for name in GROUPS) for f in fields(group)
        }

    def public_dict(self) -> dict[str, Any]:
        """The config as written to run.json / summary.json: flat, keyed by option name, JSON-safe,
        and never the key."""
        secrets = (self.endpoint.api_key,) if self.endpoint.api_key else ()
        data = self.flat()
        del data["api_key"]
        if self.endpoint.base_url:  # a gateway key may ride in the URL (`?api_key=...`)
            data["base_url"] = redact(self.endpoint.base_url, secrets)
        data["extra_base_urls"] = [public_url(u, secrets) for u in self.endpoint.extra_base_urls]
        data["api_key_set"] = self.endpoint.api_key is not None
        renamed = options.public_names()
        public: dict[str, Any] = json.loads(json.dumps({renamed.get(k, k): v for k, v in data.items()}, default=str))
        return public

    @classmethod
    def from_public_dict(cls, data: Mapping[str, Any], **overrides: Any) -> RunConfig:
        """Rebuild a config saved by `public_dict` (for --resume), applying `overrides` (flat
        config fields). Reads every older run.json too: flat field names, and the keys they had."""
        to_field = {option: name for name, option in options.public_names().items()}
        found: dict[str, Any] = {}
        for key, value in data.items():
            name = to_field.get(key, key)
            if name in FIELD_GROUP:
                found[name] = value
        for name in ("path", "out", "resume", "tool_module"):
            if found.get(name) is not None:
                found[name] = Path(found[name])
        for name in ("extra_base_urls", "builtin_options"):
            if found.get(name) is not None:
                found[name] = tuple(found[name])
        found.update(overrides)
        return cls.of(**found)


def _one_process_clash(config: RunConfig) -> str | None:
    """What makes a run keep to one process (None: nothing)."""
    return (
        "--concurrency auto"
        if config.limits.concurrency_auto
        else "a second --base-url"
        if config.endpoint.extra_base_urls
        else "--endpoint embeddings"
        if config.endpoint.endpoint == "embeddings"
        else "--mode batch"
        if config.control.mode == "batch"
        else None
    )


def _check_across(config: RunConfig) -> None:
    """What no single group can check."""
    scale, endpoint = config.scale, config.endpoint
    if scale.workers > 1 and _one_process_clash(config):
        raise ConfigError(
            f"--workers {scale.workers} cannot be combined with {_one_process_clash(config)} yet: "
            "those run in one process (use --workers 1)"
        )
    if scale.ray is not None and _one_process_clash(config):
        raise ConfigError(f"--ray cannot be combined with {_one_process_clash(config)} yet: that runs in one process")
    if config.request.batch_size != _D["batch_size"] and endpoint.endpoint != "embeddings":
        raise ConfigError("--batch-size groups inputs for --endpoint embeddings only")
    if config.control.mode == "batch" and (endpoint.endpoint != "chat" or endpoint.extra_base_urls):
        raise ConfigError(
            "--mode batch sends chat requests to one endpoint; leave out --endpoint / a second --base-url"
        )
    if endpoint.endpoint == "embeddings" and config.tools.tools:
        raise ConfigError("--tools cannot be used with --endpoint embeddings")
