"""SimConfig: every knob of the simulated endpoint, frozen so one config describes one server."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from batchrun.errors import ConfigError

if TYPE_CHECKING:  # loaded with the first twin (batchrun serve --like), not with the CLI
    from batchrun.twin.model import TwinModel

DEFAULT_MODEL = "batchrun-sim"

# Fault kinds with a seeded rate; the SimConfig field for kind K is f"{K}_rate".
ERROR_FAULTS = ("error_500", "error_502", "error_503", "error_429")
STREAM_FAULTS = ("cut", "stall", "malformed")
FAULT_KINDS = ERROR_FAULTS + STREAM_FAULTS
RATELIMIT_STYLES = ("openai", "anthropic", "ietf", "none")
USAGE_PLACEMENTS = ("trailing", "finish", "content", "none")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The simulated endpoint's behaviour. Durations in seconds; rates are probabilities per request."""

    seed: int = 0
    models: tuple[str, ...] = (DEFAULT_MODEL,)  # /v1/models lists these; the first is the default
    enforce_models: bool = False  # True: an unlisted model gets 404 model_not_found
    api_key: str | None = None  # None: no auth; else "Authorization: Bearer <key>" is required

    # Output length: lognormal with this mean, capped by max_tokens; output_tokens fixes it instead.
    output_tokens_mean: float = 80.0
    output_tokens_sigma: float = 0.6  # lognormal shape: 0.6 gives p10/p90 of about 0.4x / 1.8x the mean
    output_tokens: int | None = None

    # Latency model (see batchrun/sim/model.py and docs/serve.md for the formulas).
    ttft_s: float = 0.25  # base time to first token, before queueing and prefill
    prefill_s_per_token: float = 0.0002  # added to TTFT per prompt token (1,000 tokens -> +0.2 s)
    itl_s: float = 0.025  # gap between tokens with one sequence decoding
    itl_load_factor: float = 0.03  # relative ITL growth per extra decoding sequence
    jitter: float = 0.15  # lognormal sigma of the per-request TTFT / per-token ITL factors
    fresh_jitter: bool = False  # True: jitter drawn afresh per request (a real endpoint's noise);
    # False: from the prompt, so the same prompt is equally fast
    max_concurrency: int = 16  # sequences decoding at once; more requests wait FIFO

    fast: bool = False  # zero delays, no queueing: measures the client's own overhead
    fixed_ttft_s: float | None = None  # fixed-latency mode (either set): exact TTFT, ...
    fixed_itl_s: float | None = None  # ... exact gap between chunks; no jitter, no queueing

    rpm: int | None = None  # requests per minute (token bucket); None: unlimited
    tpm: int | None = None  # tokens per minute: prompt tokens + max_tokens (else 256)
    ratelimit_headers: str = "openai"  # how the limits are announced: openai, anthropic, ietf, none

    tool_call_rate: float = 0.0  # chance of a tool call when tools are offered and none is named
    invalid_json_rate: float = 0.0  # response_format json answers: share of attempts with broken JSON

    strict: bool = True  # 400 for unknown parameters and out-of-range values (else ignored)
    prefix_cache_tokens: int = 1_000_000  # prefix-cache capacity (0: off); a cached prefix skips its prefill
    embedding_dim: int = 256  # /v1/embeddings vector length unless the request gives `dimensions`

    # Wire quirks of a streamed answer (a twin copies its source's).
    usage_placement: str = "trailing"  # usage (when asked for) on: its own chunk after the finish
    # (OpenAI), the finish chunk, the last content chunk, or none
    tokens_per_chunk: float = 1.0  # output tokens per content chunk (chat and completions text), on
    # average: 1.19 streams 32 tokens in 27 chunks
    chars_per_token: float = 4.0  # prompt tokens counted as ceil(characters / this)
    twin: TwinModel | None = None  # a fitted endpoint (batchrun fit): its latency, output lengths
    # and failures replace the latency model, output and fault rates

    error_500_rate: float = 0.0
    error_502_rate: float = 0.0
    error_503_rate: float = 0.0
    error_429_rate: float = 0.0  # injected 429s, apart from the rpm/tpm limiter
    cut_rate: float = 0.0  # connection closed mid-stream, no [DONE]
    stall_rate: float = 0.0  # no bytes for stall_s mid-stream
    malformed_rate: float = 0.0  # one `data:` line that is not JSON
    stall_s: float = 3600.0
    retry_after_s: float = 1.0  # retry-after sent with injected 429 / 503

    # Batch API (/v1/files, /v1/batches; see batchrun/sim/batches.py for a job's timeline).
    batch_delay_s: float = 2.0  # creation -> completed; short, so a demo finishes in seconds
    batch_error_rate: float = 0.0  # chance a request of a job fails (HTTP 500 in the error file)
    batch_failure_rate: float = 0.0  # chance a whole job fails validation (status failed)
    batch_expiry_rate: float = 0.0  # chance a job expires with half its requests done
    batch_state_dir: str | None = None  # keep files and jobs here, so they survive a restart
    batch_token_limit: int | None = None  # enqueued prompt tokens per model over unfinished jobs
    # A hostile provider (tests; see batchrun/sim/hostile.py): both off by default.
    batch_patch: dict[str, Any] | None = None  # put over every Batch object served, e.g. {"status": "paused"}
    batch_echo_auth: bool = False  # job errors and result lines quote the request's credentials

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def fixed(self) -> bool:
        """Fixed-latency mode: set TTFT and gaps, no jitter, no queueing."""
        return self.fixed_ttft_s is not None or self.fixed_itl_s is not None

    def fault_rate(self, kind: str) -> float:
        return float(getattr(self, f"{kind}_rate"))

    def replace(self, **changes: Any) -> SimConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        data = dataclasses.asdict(self.replace(twin=None))
        data["twin"] = None if self.twin is None else self.twin.to_dict()
        return json.dumps(data)

    def with_options(self, options: "Iterable[str]") -> SimConfig:
        """This config with `KEY=VALUE` items applied (`--builtin-option`); values are JSON
        (`0.3`, `true`, `null`, `["a"]`) or else plain text. ConfigError names a bad item."""
        changes: dict[str, Any] = {}
        names = {f.name: f for f in dataclasses.fields(self)}
        for item in options:
            key, sep, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in names or key == "twin":
                raise ConfigError(
                    f"--builtin-option {item!r}: write KEY=VALUE with KEY one of {', '.join(sorted(names))}"
                )
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw.strip()
            default = names[key].default
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if (
                default is not None
                and not isinstance(default, tuple)
                and type(value) is not type(default)
                and value is not None
            ):
                raise ConfigError(
                    f"--builtin-option {item!r}: {key} takes a {type(default).__name__}, "
                    f"e.g. {key}={json.dumps(default)}"
                )
            changes[key] = tuple(value) if key == "models" and isinstance(value, list) else value
        try:
            return self.replace(**changes)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--builtin-option: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> SimConfig:
        data = json.loads(text)
        data["models"] = tuple(data["models"])
        if data.get("twin") is not None:
            from batchrun.twin.model import TwinModel  # lazy: the twin package loads its fit (store, analysis)

            data["twin"] = TwinModel.from_dict(data["twin"])
        return cls(**data)


def realistic(seed: int | None = None, **changes: Any) -> SimConfig:
    """The built-in endpoint as `batchrun bench` starts it: a fresh random seed per run (recorded
    in the summary) and jitter drawn afresh per request, so two runs differ the way two runs
    against a real endpoint do, and a CI gate calibrated on it sees noise."""
    return SimConfig(
        seed=random.SystemRandom().randrange(2**31) if seed is None else seed, fresh_jitter=True, jitter=0.2, **changes
    )


def public(cfg: SimConfig) -> dict[str, Any]:
    """The config as written into summaries: never the API key."""
    data = dataclasses.asdict(cfg.replace(twin=None))
    data["api_key"] = None if cfg.api_key is None else "(set)"
    if cfg.twin is not None:  # what it was fitted on, not its tables
        data["twin"] = {
            "model": cfg.twin.model,
            "sources": [s.name for s in cfg.twin.sources],
            "levels_in_flight": [lv.in_flight for lv in cfg.twin.levels],
        }
    return data


def _validate(cfg: SimConfig) -> None:
    if not cfg.models or not all(isinstance(m, str) and m for m in cfg.models):
        raise ConfigError("sim: give at least one non-empty model name (--model NAME)")
    if cfg.max_concurrency < 1:
        raise ConfigError("sim: --max-concurrency must be at least 1")
    for name in (
        "ttft_s",
        "prefill_s_per_token",
        "itl_s",
        "itl_load_factor",
        "jitter",
        "stall_s",
        "retry_after_s",
        "output_tokens_sigma",
    ):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"sim: {name} must not be negative")
    if cfg.batch_delay_s < 0:
        raise ConfigError("sim: batch_delay_s must not be negative")
    if cfg.batch_token_limit is not None and cfg.batch_token_limit < 1:
        raise ConfigError("sim: --batch-token-limit must be at least 1 (leave it out for no limit)")
    if cfg.batch_patch is not None and not isinstance(cfg.batch_patch, dict):
        raise ConfigError('sim: batch_patch is a JSON object of Batch fields, e.g. {"status": "paused"}')
    if any(not 0.0 <= r <= 1.0 for r in (cfg.batch_error_rate, cfg.batch_failure_rate, cfg.batch_expiry_rate)):
        raise ConfigError("sim: batch error, failure and expiry rates are probabilities between 0 and 1")
    for name in ("fixed_ttft_s", "fixed_itl_s"):
        if (getattr(cfg, name) or 0) < 0:
            raise ConfigError(f"sim: {name} must not be negative")
    if cfg.output_tokens_mean < 1 or (cfg.output_tokens is not None and cfg.output_tokens < 1):
        raise ConfigError("sim: output tokens must be at least 1")
    for name in ("rpm", "tpm"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ConfigError(f"sim: --{name} must be at least 1 (leave it out for no limit)")
    if cfg.prefix_cache_tokens < 0 or cfg.embedding_dim < 1:
        raise ConfigError("sim: prefix_cache_tokens must not be negative and embedding_dim must be at least 1")
    if cfg.usage_placement not in USAGE_PLACEMENTS:
        raise ConfigError(
            f"sim: usage_placement must be one of {', '.join(USAGE_PLACEMENTS)}, got {cfg.usage_placement!r}"
        )
    if cfg.tokens_per_chunk < 1 or cfg.chars_per_token <= 0:
        raise ConfigError("sim: tokens_per_chunk must be at least 1 and chars_per_token positive")
    if cfg.twin is not None and (cfg.fast or cfg.fixed):
        raise ConfigError("sim: a twin has its own latency: leave out --fast and the fixed-latency options")
    if cfg.ratelimit_headers not in RATELIMIT_STYLES:
        raise ConfigError(
            f"sim: --ratelimit-headers must be one of {', '.join(RATELIMIT_STYLES)}, got {cfg.ratelimit_headers!r}"
        )
    rates = [cfg.fault_rate(k) for k in FAULT_KINDS] + [cfg.invalid_json_rate, cfg.tool_call_rate]
    if any(not 0.0 <= r <= 1.0 for r in rates):
        raise ConfigError("sim: fault and tool-call rates are probabilities between 0 and 1")
    if sum(rates[:-2]) > 1.0:
        raise ConfigError("sim: the fault rates add up to more than 1")


class SimAddress:
    """`url` and `base_url` of a sim listening on `host`:`port` (SimServer, SimProcess)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"
