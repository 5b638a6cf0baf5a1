"""TwinModel: an endpoint fitted to its records, as the built-in endpoint serves it. Pure: no I/O.

What a twin draws for one request (u, u_m, u_k are uniform ranks in [0, 1) from the request's RNG;
x is the number of requests the server is answering, this one included):

    TTFT      = T(x, u) + prefill_s_per_token * (prompt_tokens - ref_tokens), at least 0
    gap k     = M(x, v) * R(x, u_k) / mean_j R(x, u_j)   (the chunk gaps: a per-request mean, and
                                                        the shape around it, scaled to average 1)
    v         = the mean gap's rank: u_m coupled to u by the level's Spearman rank correlation rho
                (a Gaussian copula, twin/copula.py; each keeps its own table; rho 0 gives v = u_m)
    output    = the cap (max_tokens) with probability length_share, else S(u)

T, M, R and S are empirical quantile tables on the shared probability grid, read between grid
points by linear interpolation (a piecewise-linear inverse CDF). T, M and R exist per level (the
requests in flight at send that the fit grouped); between two levels each quantile is
interpolated linearly in x, below the lowest level the lowest holds, and above the highest T and
M grow by the slope of their medians over the last two levels (never shrink: a slope below zero is
held flat). R is never extrapolated; rho is interpolated like a table value and held outside.

T is net of the client's own delay in seeing the first chunk (twin/lag.py): a run against the twin
adds its client's delay again. Each level keeps the delay it was taken from (lag_s).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from batchrun.twin.copula import coupled_rank

SCHEMA = "batchrun.twin/1"

# The probability grid of every quantile table: 0, 1%, then every 2.5% to 97.5%, 99%, 100%.
# Dense enough that p50 and p90 are grid points and the tails keep their shape.
GRID: tuple[float, ...] = (0.0, 0.01, *(round(0.025 * i, 3) for i in range(1, 40)), 0.99, 1.0)

Table = tuple[float, ...]


class TwinError(ValueError):
    """A twin file or dict that does not describe a twin; the message names the field."""


@dataclass(frozen=True, slots=True)
class Level:
    """The requests that were sent with about `in_flight` requests in flight."""

    in_flight: float  # requests in flight at send (this one included), median of the level
    n: int  # ok requests behind the TTFT table
    ttft_s: Table  # TTFT at the reference prompt length, quantiles on the grid
    gap_requests: int = 0  # requests with two or more output chunks (behind gap_mean_s)
    gap_mean_s: Table | None = None  # per request: mean seconds between its output chunks
    gaps: int = 0  # gaps behind gap_ratio
    gap_ratio: Table | None = None  # each gap over its request's mean gap (the shape within a request)
    ttft_gap_rho: float = 0.0  # Spearman rank correlation of a request's TTFT and its mean gap
    lag_s: Table | None = None  # the client's own delay (event-loop lag) taken out of ttft_s
    lag_n: int = 0  # lag samples behind lag_s (0: nothing taken out)


@dataclass(frozen=True, slots=True)
class Prompt:
    ref_tokens: float = 0.0  # the prompt length TTFT tables are at (median of the fit)
    prefill_s_per_token: float = 0.0  # TTFT growth per prompt token; 0 when not fitted
    prefill_n: int = 0  # requests the slope was fitted on (0: not fitted)
    chars_per_token: float = 4.0  # how the twin counts prompt tokens from message text
    chars_n: int = 0  # requests that gave it (0: the default 4)


@dataclass(frozen=True, slots=True)
class Output:
    n: int = 0  # ok requests
    length_n: int = 0  # of which stopped by max_tokens (finish_reason "length")
    cap: int | None = None  # the max_tokens they hit (the largest), for requests without one
    stop_n: int = 0  # of which stopped by themselves
    stop_tokens: Table | None = None  # their output tokens, quantiles on the grid

    @property
    def length_share(self) -> float:
        return self.length_n / self.n if self.n else 0.0


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str  # http_<status>, cut, malformed or timeout when served; else the error type
    count: int  # attempts that failed this way
    served: bool = True  # False: seen but not reproduced (the notes say why)


@dataclass(frozen=True, slots=True)
class Failures:
    attempts: int = 0  # every attempt that got an outcome (cancelled ones left out)
    kinds: tuple[Failure, ...] = ()
    retry_after_s: float | None = None  # median retry-after the failed attempts were given

    def share(self, failure: Failure) -> float:
        return failure.count / self.attempts if self.attempts else 0.0


@dataclass(frozen=True, slots=True)
class RateLimits:
    headers: str | None = None  # header family seen: openai, anthropic, ietf; None: none seen
    rpm: int | None = None  # requests per minute announced
    tpm: int | None = None  # tokens per minute announced


@dataclass(frozen=True, slots=True)
class Wire:
    usage: str = "trailing"  # where the stream's usage came: trailing, finish, content or none
    usage_n: int = 0  # requests that showed it (0: assumed)
    tokens_per_chunk: float = 1.0  # output tokens per content chunk, on average (at least 1)
    chunk_n: int = 0  # requests that showed it (0: assumed)


@dataclass(frozen=True, slots=True)
class Source:
    name: str  # the run or bench directory (its path as given)
    records: int  # records read from it


@dataclass(frozen=True, slots=True)
class TwinModel:
    levels: tuple[Level, ...]
    model: str | None = None
    prompt: Prompt = Prompt()
    output: Output = Output()
    failures: Failures = Failures()
    rate_limits: RateLimits = RateLimits()
    wire: Wire = Wire()
    sources: tuple[Source, ...] = ()
    notes: tuple[str, ...] = ()  # what could not be fitted, what is extrapolated
    grid: tuple[float, ...] = GRID
    schema: str = SCHEMA
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        check(self)

    # ---- draws (the server calls these per request and per chunk)

    def ttft_s(self, in_flight: float, u: float, prompt_tokens: float) -> float:
        """Seconds from arrival to the first chunk for a request of `prompt_tokens`, at rank u."""
        base = _across(self._series("ttft"), in_flight, lambda t: at(self.grid, t, u))
        return max(0.0, base + self.prompt.prefill_s_per_token * (prompt_tokens - self.prompt.ref_tokens))

    def gap_s(self, in_flight: float, u_request: float, u_gap: float, ratio_mean: float = 1.0) -> float:
        """Seconds before one output chunk after the first: the request's mean gap (rank
        u_request) times this gap's ratio (rank u_gap) over `ratio_mean`, the mean ratio of all
        the request's gaps (see ratio_mean), so that its gaps average to the drawn mean gap as a
        measured request's do by definition."""
        mean = self._series("gap_mean")
        if not mean.keys:
            return 0.0
        return max(
            0.0,
            _across(mean, in_flight, lambda t: at(self.grid, t, u_request))
            * self._ratio(in_flight, u_gap)
            / ratio_mean,
        )

    def mean_gap_rank(self, in_flight: float, u_ttft: float, u: float) -> float:
        """The rank of a request's mean gap, from its TTFT's rank u_ttft and its own uniform u,
        coupled by the level's rank correlation (twin/copula.py)."""
        return coupled_rank(self._rho(in_flight), u_ttft, u)

    def _rho(self, in_flight: float) -> float:
        levels = self.levels
        if in_flight <= levels[0].in_flight:
            return levels[0].ttft_gap_rho
        if in_flight >= levels[-1].in_flight:
            return levels[-1].ttft_gap_rho
        j = bisect.bisect_right([lv.in_flight for lv in levels], in_flight)
        lo, hi = levels[j - 1], levels[j]
        w = (in_flight - lo.in_flight) / (hi.in_flight - lo.in_flight)
        return (1.0 - w) * lo.ttft_gap_rho + w * hi.ttft_gap_rho

    def client_lag_s(self, in_flight: float, u: float) -> float:
        """The client's own delay at rank u (the lag the TTFT tables are net of); 0 without one."""
        lag = self._series("lag")
        return _across(lag, in_flight, lambda t: at(self.grid, t, u)) if lag.keys else 0.0

    def ratio_mean(self, in_flight: float, u_gaps: Sequence[float]) -> float:
        """The mean gap ratio at the ranks of one request's gaps (1.0 without any)."""
        if not u_gaps or not self._series("gap_ratio").keys:
            return 1.0
        mean = math.fsum(self._ratio(in_flight, u) for u in u_gaps) / len(u_gaps)
        return mean if mean > 0 else 1.0

    def _ratio(self, in_flight: float, u: float) -> float:
        ratio = self._series("gap_ratio")
        return _across(ratio, in_flight, lambda t: at(self.grid, t, u)) if ratio.keys else 1.0

    def output_tokens(self, u: float) -> int | None:
        """The answer's natural length at rank u; None: it runs until max_tokens stops it."""
        out = self.output
        if out.stop_tokens is None or u < out.length_share:
            return None if out.n else 1
        v = (u - out.length_share) / (1.0 - out.length_share)
        return max(1, round(at(self.grid, out.stop_tokens, v)))

    def answer_tokens(self, u: float, cap: int | None) -> int:
        """The natural length to plan an answer with at rank u: an answer its source saw cut by
        max_tokens runs one token past the request's cap (so the cap cuts it here too), or to the
        source's cap when the request gives none."""
        n = self.output_tokens(u)
        if n is not None:
            return n
        return cap + 1 if cap else self.output.cap or 1

    def failure(self, u: float) -> Failure | None:
        """The served failure at rank u, if any: one draw over the cumulative shares."""
        edge = 0.0
        for f in self.failures.kinds:
            if f.served:
                edge += self.failures.share(f)
                if u < edge:
                    return f
        return None

    @property
    def fails(self) -> bool:
        return any(f.served for f in self.failures.kinds)

    def _series(self, name: str) -> _Series:
        got = self._cache.get(name)
        if got is None:
            got = self._cache[name] = _series(self, name)
        return got

    # ---- JSON

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the schema id first, tables as lists, numbers rounded to 6 digits."""
        return {
            "schema": self.schema,
            "model": self.model,
            "sources": [_plain(s) for s in self.sources],
            "notes": list(self.notes),
            "grid": list(self.grid),
            "prompt": _plain(self.prompt),
            "levels": [_plain(lv) for lv in self.levels],
            "output": _plain(self.output),
            "failures": {
                "attempts": self.failures.attempts,
                "retry_after_s": self.failures.retry_after_s,
                "kinds": [{**_plain(f), "share": round6(self.failures.share(f))} for f in self.failures.kinds],
            },
            "rate_limits": _plain(self.rate_limits),
            "wire": _plain(self.wire),
        }

    @classmethod
    def from_dict(cls, data: Any) -> TwinModel:
        """The model in `data`; TwinError names the first field that is wrong."""
        return _from_dict(data)


# ---------------------------------------------------------------- tables


def at(grid: Sequence[float], table: Sequence[float], u: float) -> float:
    """The table's value at probability u: linear between the two grid points around it."""
    i = min(max(bisect.bisect_right(grid, u) - 1, 0), len(grid) - 2)
    g0, g1 = grid[i], grid[i + 1]
    t = min(max((u - g0) / (g1 - g0), 0.0), 1.0)
    return table[i] + (table[i + 1] - table[i]) * t


@dataclass(frozen=True, slots=True)
class _Series:
    keys: tuple[float, ...]  # levels' in_flight, ascending
    tables: tuple[Table, ...]
    slope: float  # growth per request in flight above the last level (>= 0)


def _series(model: TwinModel, name: str) -> _Series:
    """One table per level that has it, and the slope used above the highest level."""
    pairs = [
        (lv.in_flight, t)
        for lv in model.levels
        if (t := {"ttft": lv.ttft_s, "gap_mean": lv.gap_mean_s, "gap_ratio": lv.gap_ratio, "lag": lv.lag_s}[name])
        is not None
    ]
    keys, tables = tuple(k for k, _ in pairs), tuple(t for _, t in pairs)
    slope = 0.0
    if name in ("ttft", "gap_mean") and len(keys) >= 2:
        median = lambda t: at(model.grid, t, 0.5)  # noqa: E731
        slope = max(0.0, (median(tables[-1]) - median(tables[-2])) / (keys[-1] - keys[-2]))
    return _Series(keys, tables, slope)


def _across(series: _Series, x: float, value: Any) -> float:
    """A table value at `x` requests in flight: interpolated between levels, held below the
    lowest, and grown by the series' slope above the highest."""
    keys = series.keys
    if x <= keys[0]:
        return value(series.tables[0])
    if x >= keys[-1]:
        return value(series.tables[-1]) + series.slope * (x - keys[-1])
    j = bisect.bisect_right(keys, x)
    w = (x - keys[j - 1]) / (keys[j] - keys[j - 1])
    return (1.0 - w) * value(series.tables[j - 1]) + w * value(series.tables[j])


# ---------------------------------------------------------------- checks and JSON

USAGE_PLACES = ("trailing", "finish", "content", "none")
HEADER_FAMILIES = ("openai", "anthropic", "ietf")
SERVED_STREAM_KINDS = ("cut", "malformed", "timeout")


def check(model: TwinModel) -> None:
    """TwinError for a model the server could not serve."""
    grid = model.grid
    if model.schema != SCHEMA:
        raise TwinError(
            f"schema: expected {SCHEMA!r}, got {model.schema!r} (write it with this batchrun's `batchrun fit`)"
        )
    if len(grid) < 2 or grid[0] != 0.0 or grid[-1] != 1.0 or any(b <= a for a, b in zip(grid, grid[1:])):
        raise TwinError("grid: expected ascending probabilities from 0 to 1")
    if not model.levels:
        raise TwinError("levels: at least one level is needed (no successful request was fitted)")
    keys = [lv.in_flight for lv in model.levels]
    if any(b <= a for a, b in zip(keys, keys[1:])) or keys[0] <= 0:
        raise TwinError("levels: in_flight must be positive and ascending")
    for i, lv in enumerate(model.levels):
        for name in ("ttft_s", "gap_mean_s", "gap_ratio", "lag_s"):
            _check_table(f"levels[{i}].{name}", getattr(lv, name), len(grid), required=name == "ttft_s")
        if not -1.0 <= lv.ttft_gap_rho <= 1.0:
            raise TwinError(f"levels[{i}].ttft_gap_rho: expected a rank correlation between -1 and 1")
    _check_table("output.stop_tokens", model.output.stop_tokens, len(grid), required=False)
    if model.wire.usage not in USAGE_PLACES:
        raise TwinError(f"wire.usage: expected one of {', '.join(USAGE_PLACES)}, got {model.wire.usage!r}")
    if model.wire.tokens_per_chunk < 1 or model.prompt.chars_per_token <= 0:
        raise TwinError("wire.tokens_per_chunk must be at least 1 and prompt.chars_per_token positive")
    if model.rate_limits.headers not in (None, *HEADER_FAMILIES):
        raise TwinError(f"rate_limits.headers: expected one of {', '.join(HEADER_FAMILIES)} or null")
    if sum(model.failures.share(f) for f in model.failures.kinds if f.served) > 1.0 + 1e-9:
        raise TwinError("failures: the served shares add up to more than 1")
    for f in model.failures.kinds:
        if f.served and not (_http_status(f.kind) or f.kind in SERVED_STREAM_KINDS):
            raise TwinError(
                f"failures: kind {f.kind!r} cannot be served (http_<400-599>, "
                f"{', '.join(SERVED_STREAM_KINDS)}); set its served to false"
            )


def _check_table(where: str, table: Table | None, size: int, *, required: bool) -> None:
    if table is None:
        if required:
            raise TwinError(f"{where}: missing")
        return
    if (
        len(table) != size
        or any(not math.isfinite(v) or v < 0 for v in table)
        or any(b < a for a, b in zip(table, table[1:]))
    ):
        raise TwinError(f"{where}: expected {size} finite, non-negative, ascending numbers (one per grid point)")


def http_status(failure: Failure) -> int | None:
    """The HTTP status a served failure answers with, or None for a stream fault."""
    return _http_status(failure.kind)


def _http_status(kind: str) -> int | None:
    head, _, digits = kind.partition("_")
    if head == "http" and digits.isdigit() and 400 <= int(digits) <= 599:
        return int(digits)
    return None


def round6(v: float) -> float:
    return float(f"{v:.6g}")


def _plain(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in obj.__slots__:
        v = getattr(obj, name)
        if isinstance(v, tuple):
            v = [round6(x) for x in v]
        elif isinstance(v, float):
            v = round6(v)
        out[name] = v
    return out


def _from_dict(data: Any) -> TwinModel:
    if not isinstance(data, dict):
        raise TwinError("expected a JSON object")
    if data.get("schema") != SCHEMA:
        raise TwinError(
            f"schema: expected {SCHEMA!r}, got {data.get('schema')!r} (is this a twin file written by `batchrun fit`?)"
        )
    try:
        failures = data.get("failures") or {}
        return TwinModel(
            schema=data["schema"],
            model=data.get("model"),
            grid=_floats("grid", data["grid"]),
            levels=tuple(_build(Level, f"levels[{i}]", lv) for i, lv in enumerate(_list("levels", data["levels"]))),
            prompt=_build(Prompt, "prompt", data.get("prompt") or {}),
            output=_build(Output, "output", data.get("output") or {}),
            failures=Failures(
                attempts=_int("failures.attempts", failures.get("attempts", 0)),
                retry_after_s=failures.get("retry_after_s"),
                kinds=tuple(
                    _build(Failure, f"failures.kinds[{i}]", f, drop=("share",))
                    for i, f in enumerate(_list("failures.kinds", failures.get("kinds", [])))
                ),
            ),
            rate_limits=_build(RateLimits, "rate_limits", data.get("rate_limits") or {}),
            wire=_build(Wire, "wire", data.get("wire") or {}),
            sources=tuple(
                _build(Source, f"sources[{i}]", s) for i, s in enumerate(_list("sources", data.get("sources", [])))
            ),
            notes=tuple(str(n) for n in _list("notes", data.get("notes", []))),
        )
    except KeyError as exc:
        raise TwinError(f"{exc.args[0]}: missing") from None


def _build(cls: Any, where: str, data: Any, drop: tuple[str, ...] = ()) -> Any:
    if not isinstance(data, dict):
        raise TwinError(f"{where}: expected an object")
    known = set(cls.__slots__)
    unknown = [k for k in data if k not in known and k not in drop]
    if unknown:
        raise TwinError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
    kwargs = {k: (_floats(f"{where}.{k}", v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise TwinError(f"{where}: {exc}") from None
    for name in cls.__slots__:
        _check_type(f"{where}.{name}", getattr(obj, name), cls.__dataclass_fields__[name].type)
    return obj


_TYPES = {
    "int": ((int,), "a whole number"),
    "float": ((int, float), "a number"),
    "str": ((str,), "text"),
    "bool": ((bool,), "true or false"),
}


def _check_type(where: str, value: Any, annotation: str) -> None:
    """The plain fields' JSON types (tables are checked by check())."""
    base = annotation.split("|")[0].strip()
    if value is None:
        if "None" not in annotation:
            raise TwinError(f"{where}: must not be null")
        return
    if base not in _TYPES:
        return
    allowed, name = _TYPES[base]
    if not isinstance(value, allowed) or (base != "bool" and isinstance(value, bool)):
        raise TwinError(f"{where}: expected {name}, got {value!r}")


def _floats(where: str, values: Any) -> tuple[float, ...]:
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise TwinError(f"{where}: expected a list of numbers")
    return tuple(float(v) for v in values)


def _list(where: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TwinError(f"{where}: expected a list")
    return value


def _int(where: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TwinError(f"{where}: expected a whole number >= 0, got {value!r}")
    return value
