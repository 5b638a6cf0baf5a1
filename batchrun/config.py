"""RunConfig and its validation; the only place the environment and `.env` are read.

Precedence: command-line flag > environment (`OPENAI_*`, `BATCHRUN_*`) > `.env` file > default.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from batchrun.errors import ConfigError
from batchrun.redact import redact

ON_BAD_ROW = ("fail", "skip")
OUTPUT_FORMATS = ("csv", "parquet")
CSV_FORMULAS = ("escape", "raw")


def load_env_file(path: str | os.PathLike[str] | None = None) -> None:
    """Read `.env` (from the working directory) into the environment without overriding it."""
    load_dotenv(path or Path.cwd() / ".env", override=False)


def env_endpoint(base_url: str | None, api_key: str | None, *,
                 use_env_url: bool = True) -> tuple[str | None, str | None]:
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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json_option(value: str | None, option: str) -> Any:
    """A JSON option value, or a ConfigError that names the option."""
    if value is None:
        return None
    try:
        return json.loads(value, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{option} is not valid JSON ({exc.msg} at column {exc.colno}): {value!r}") from exc
    except ValueError as exc:       # NaN / Infinity: not JSON, and no server would take it
        raise ConfigError(f"{option}: {exc}: {value!r}") from exc


AUTO_CEILING = 256      # --concurrency auto grows to at most this many requests in flight


def parse_limit(text: str | float | None, option: str) -> tuple[float | None, bool]:
    """--rpm / --tpm: a number (fixed), `auto` (learned from the provider's headers) or `off`
    (neither) -> (limit, learn)."""
    if text is None:
        return None, True
    word = str(text).strip().lower()
    if word in ("auto", ""):
        return None, True
    if word in ("off", "none"):
        return None, False
    try:
        value = float(word)
    except ValueError:
        raise ConfigError(f"{option} takes a number per minute, 'auto' or 'off', got {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{option} must be a finite number, got {text}")
    if value <= 0:
        raise ConfigError(f"{option} must be a positive number per minute, 'auto' or 'off', got {text!r}")
    return value, False


def parse_workers(text: str | int) -> tuple[int, bool]:
    """--workers: a number of processes, or `auto` -> (value, auto)."""
    word = str(text).strip().lower()
    if word == "auto":
        return 1, True
    try:
        return int(word), False
    except ValueError:
        raise ConfigError(f"--workers takes a whole number or 'auto', got {text!r}") from None


def _validate_workers(config: "RunConfig") -> None:
    if config.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {config.workers}")
    if config.workers == 1:
        return
    clash = ("--concurrency auto" if config.concurrency_auto else
             "a second --base-url" if config.extra_base_urls else
             "--endpoint embeddings" if config.endpoint == "embeddings" else
             "--mode batch" if config.mode == "batch" else None)
    if clash:
        raise ConfigError(f"--workers {config.workers} cannot be combined with {clash} yet: "
                          "those run in one process (use --workers 1)")


def _validate_ray(config: "RunConfig") -> None:
    """--ray: Ray importable (without importing it), an address it can take, no one-process option."""
    if config.ray is None:
        return
    import importlib.util
    from batchrun.engine.ray_plan import INSTALL, check_address
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(f"--ray needs Ray, which is not installed here ({INSTALL})")
    check_address(config.ray)
    if not config.ray_cpus > 0:
        raise ConfigError(f"--ray-cpus must be positive, got {config.ray_cpus}")
    clash = ("--concurrency auto" if config.concurrency_auto else
             "a second --base-url" if config.extra_base_urls else
             "--endpoint embeddings" if config.endpoint == "embeddings" else
             "--mode batch" if config.mode == "batch" else None)
    if clash:
        raise ConfigError(f"--ray cannot be combined with {clash} yet: that runs in one process")


def parse_concurrency(text: str | int) -> tuple[int, bool]:
    """--concurrency: a number, or `auto` (found at run time, up to AUTO_CEILING) -> (value, auto)."""
    word = str(text).strip().lower()
    if word == "auto":
        return AUTO_CEILING, True
    try:
        return int(word), False
    except ValueError:
        raise ConfigError(f"--concurrency takes a whole number or 'auto', got {text!r}") from None


def tool_choice_value(text: str | None) -> Any:
    """--tool-choice: auto / none / required as they are, any other word names a function."""
    if text is None or text in ("auto", "none", "required"):
        return text
    return {"type": "function", "function": {"name": text}}


# Every number option: NaN or infinity in any of them is refused (`--rpm nan` would hang the
# limiter, `--temperature nan` would be sent as invalid JSON).
_NUMBERS = ("max_tokens", "temperature", "tool_timeout", "concurrency", "rpm", "tpm", "timeout",
            "ttft_timeout", "max_error_rate", "max_retry_wait")


@dataclass(frozen=True)
class RunConfig:
    """Everything one `batchrun run` needs; built once by the CLI, never mutated."""

    input: Path | None = None
    fmt: str | None = None
    prompt_column: str | None = None
    id_column: str | None = None
    template: str | None = None
    system: str | None = None
    on_bad_row: str = "fail"
    # online now, or through the Batch API (batchrun/batchapi); None: online, or the resumed run's mode
    mode: str | None = None
    deadline_s: float | None = None          # answers needed within this many seconds
    batch_wait_s: float | None = None        # --mode batch: longest wait for open jobs per session (None: 25 h)
    # request defaults
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    tool_module: Path | None = None
    max_tool_rounds: int = 3
    tool_timeout: float = 30.0
    # endpoint
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    # pool
    concurrency: int = 16                # with concurrency_auto: the most it may grow to
    concurrency_auto: bool = False       # --concurrency auto: found at run time (engine/adaptive.py)
    workers: int = 1                     # --workers: sending processes (1: the run's own process)
    workers_auto: bool = False           # --workers auto: cores - 1 at high concurrency (engine/workers_plan.py)
    ray: str | None = None               # --ray: local, auto, ray://HOST:PORT or HOST:PORT (engine/ray_plan.py)
    ray_cpus: float = 1.0                # --ray-cpus: CPUs each Ray actor reserves
    rpm: float | None = None
    tpm: float | None = None
    learn_rpm: bool = True               # --rpm auto (the default): pace by the provider's headers
    learn_tpm: bool = True
    slo: dict[str, float] | None = None  # latency bounds: goodput, and the ceiling of --concurrency auto
    timeout: float | None = 600.0
    ttft_timeout: float | None = None
    retries: int = 3
    max_errors: int | None = None
    max_error_rate: float | None = None
    max_retry_wait: float = 60.0
    max_response_bytes: int = 16 * 1024 * 1024
    # output
    out: Path | None = None
    resume: Path | None = None
    output_format: str = "csv"
    quiet: bool = False
    fail_on_error: bool = False
    seed: int | None = None
    # workloads and endpoints (see inputs/synthetic.py, inputs/sessions.py, inputs/traces.py)
    endpoint: str = "chat"                   # chat / completions / embeddings
    batch_size: int = 32                     # inputs per /embeddings request
    synthetic: str | None = None             # --synthetic spec: generated prompts instead of a file
    speedup: float = 1.0                     # trace replay: timestamps / delay_s divided by this
    slice_s: float | None = None             # --slice: per-window figures of this width
    extra_base_urls: list[str] = field(default_factory=list)   # --base-url given more than once
    balance: str = "rr"                      # rr / least, across base_url and extra_base_urls
    builtin_options: tuple[str, ...] = ()    # --builtin-option KEY=VALUE for the built-in endpoint
    # data-team runs (issue 10)
    row_settings: bool = True               # input columns named model / max_tokens / ... override the flags
    save_request: bool = True               # records keep the body as sent
    csv_formulas: str = "escape"            # escape: OWASP-neutralise formula-like text cells; raw: as is
    overwrite: bool = False                 # --out may name a non-empty directory: its run files are replaced
    input_changed: str | None = None        # "ok": --resume accepts a changed input file (rows matched by id)
    dry_run: bool = False                   # read and price the file, send nothing
    limit: int | None = None                # send only the first N rows (a pilot)
    price_in: float | None = None           # USD per 1M prompt tokens (None: the price table's, if any)
    price_out: float | None = None          # USD per 1M output tokens
    json_schema: dict[str, Any] | None = None  # --json-schema: the schema answers must follow
    json_mode: bool = False                 # --json: answers must be a JSON object

    def __post_init__(self) -> None:
        self._validate()
        self._validate_data_options()

    def _validate_data_options(self) -> None:
        if self.csv_formulas not in CSV_FORMULAS:
            raise ConfigError(f"--csv-formulas must be escape or raw, got {self.csv_formulas!r}")
        if self.input_changed not in (None, "ok"):
            raise ConfigError(f"--input-changed takes only 'ok', got {self.input_changed!r}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        for name in ("price_in", "price_out"):
            value = getattr(self, name)
            if value is not None and (value < 0 or value != value):
                raise ConfigError(f"--{name.replace('_', '-')} is USD per 1M tokens, 0 or more; got {value}")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise ConfigError("--json-schema must hold a JSON object (a JSON Schema)")
        if self.overwrite and self.resume is not None:
            raise ConfigError("--overwrite and --resume contradict each other: pick one")

    def _validate(self) -> None:
        for name in _NUMBERS:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency}")
        for name in ("rpm", "tpm", "timeout", "ttft_timeout", "max_tokens", "max_retry_wait",
                     "max_response_bytes", "tool_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
        _validate_workers(self)
        _validate_ray(self)
        if self.retries < 0:
            raise ConfigError(f"--retries must be 0 or more, got {self.retries}")
        if self.max_error_rate is not None and not 0 <= self.max_error_rate <= 1:
            raise ConfigError(f"--max-error-rate is a fraction between 0 and 1, got {self.max_error_rate}")
        if self.on_bad_row not in ON_BAD_ROW:
            raise ConfigError(f"--on-bad-row must be one of {', '.join(ON_BAD_ROW)}, got {self.on_bad_row!r}")
        if self.mode not in (None, "online", "batch", "auto"):
            raise ConfigError(f"--mode must be online, batch or auto, got {self.mode!r}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ConfigError(f"--deadline must be positive, got {self.deadline_s}")
        if self.batch_wait_s is not None and not (0 < self.batch_wait_s < math.inf):
            raise ConfigError(f"--batch-wait must be a positive duration, got {self.batch_wait_s}")
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"--output-format must be csv or parquet, got {self.output_format!r}")
        if not isinstance(self.extra_body, dict):
            raise ConfigError("--extra-body must be a JSON object, e.g. '{\"top_p\": 0.9}'")
        if self.input is None and self.resume is None and self.synthetic is None:
            raise ConfigError("give a prompts file (CSV, JSONL or Parquet), --synthetic SPEC, or --resume RUN_DIR")
        _validate_workload(self)

    def public_dict(self) -> dict[str, Any]:
        """The config as written to run.json / summary.json: JSON-safe, and never the key."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_key"}
        if self.base_url:       # a gateway key may ride in the URL (`?api_key=...`)
            data["base_url"] = redact(self.base_url, (self.api_key,) if self.api_key else ())
        from batchrun.endpoint.multi import public_url
        data["extra_base_urls"] = [public_url(u, (self.api_key,) if self.api_key else ()) for u in self.extra_base_urls]
        data["api_key_set"] = self.api_key is not None
        return json.loads(json.dumps(data, default=str))

    @classmethod
    def from_public_dict(cls, data: dict[str, Any], **overrides: Any) -> "RunConfig":
        """Rebuild a config saved by `public_dict` (for --resume), applying `overrides`."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("input", "out", "resume", "tool_module"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        values.update(overrides)
        return cls(**values)


ENDPOINTS = ("chat", "completions", "embeddings")


def _validate_workload(config: RunConfig) -> None:
    if config.endpoint not in ENDPOINTS:
        raise ConfigError(f"--endpoint must be one of {', '.join(ENDPOINTS)}, got {config.endpoint!r}")
    if config.batch_size != 32 and config.endpoint != "embeddings":
        raise ConfigError("--batch-size groups inputs for --endpoint embeddings only")
    if not 1 <= config.batch_size <= 2048:
        raise ConfigError(f"--batch-size must be between 1 and 2048, got {config.batch_size}")
    if config.speedup <= 0:
        raise ConfigError(f"--speedup must be positive, got {config.speedup}")
    if config.slice_s is not None and config.slice_s <= 0:
        raise ConfigError(f"--slice must be a positive duration, got {config.slice_s}")
    if config.synthetic is not None and config.input is not None:
        raise ConfigError("give a prompts file or --synthetic, not both")
    if getattr(config, "mode", "online") == "batch" and (config.endpoint != "chat" or config.extra_base_urls):
        raise ConfigError("--mode batch sends chat requests to one endpoint; leave out --endpoint / a second --base-url")
    if config.balance not in ("rr", "least"):
        raise ConfigError(f"--balance must be rr or least, got {config.balance!r}")
    if config.extra_base_urls and config.endpoint == "embeddings":
        raise ConfigError("--endpoint embeddings takes one --base-url")
    if config.endpoint == "embeddings" and config.tools:
        raise ConfigError("--tools cannot be used with --endpoint embeddings")


def config_replace(config: RunConfig, **changes: Any) -> RunConfig:
    """A copy of `config` with `changes`, validated again."""
    data = asdict(config)
    data.update(changes)
    return RunConfig(**data)
