"""The fit: the records of one or more runs -> a TwinModel. Pure: records in, a model out.

Definitions (every figure below comes from the records alone):

- in flight at send: for a request sent at t, the number of attempts of its run whose span
  [sent, sent + duration) contains t, itself included. Attempts of every outcome count: each held
  a connection. Records of different runs, or of different sessions of one run (--resume), are on
  different clocks and never counted together.
- load at send: that count, or its moving average over the time before t if that is higher
  (twin/inflight.py: the count dips between a closed-loop client's requests; the server's load
  does not). The twin server keys its draws on the same load, kept live.
- levels: ok requests grouped by their load (to the nearest whole number), from the lowest up, a group closing
  once it holds MIN_LEVEL requests (a sparse count joins the next one up; a sparse top joins the
  last group). A level's `in_flight` is the median count of its requests. A bench sweep gives one
  level per concurrency, a run at one concurrency one level (its first wave, sent while fewer
  requests were in flight, joins it).
- prefill slope: within each level, requests sorted by prompt tokens and cut into up to
  PREFILL_GROUPS equal groups of at least PREFILL_MIN_GROUP; each group gives (median prompt
  tokens, median TTFT), centred on its level's mean; the slope is the least-squares line through
  the origin of all centred points. Not fitted (0) when no level has two groups of different
  prompt lengths; held at 0 when negative.
- TTFT table: each request's TTFT moved to the reference prompt length (the median over all ok
  requests): ttft - slope * (prompt_tokens - ref), at least 0; quantiles on the grid; then one copy
  of the client's own delay taken out (twin/lag.py): the event-loop lag of the runs the level's
  requests came from, mixed in proportion to their requests (none when no run kept its lag).
- TTFT / gap rank correlation: Spearman's rho of the level's (moved) TTFTs and mean gaps, over its
  requests with two or more output chunks (mid-ranks for ties; 0 under MIN_RHO_N requests).
- chunk gaps: per request with two or more output chunks, m = mean of its gaps (itl_s); the
  level's gap_mean_s are the quantiles of m, its gap_ratio those of every gap / m (pooled).
- output: finish_reason "length" means max_tokens stopped the answer; the cap is the largest such
  answer's tokens. Other answers' completion_tokens give the stop table.
- failures: per attempt (retries included, cancelled left out): http_<status> for an HTTP error,
  timeout for a client timeout, cut for a stream that ended early (IncompleteStream), malformed
  for a chunk that was not JSON (MalformedChunk), else the error type (seen, not served).
- wire: tokens per chunk is the answers' completion_tokens over their output chunks (sums over
  answers with usage; at least 1): 1 for OpenAI, 1.19 for a server that streamed 32 tokens in 27
  chunks (llama-server holds a byte token back until it completes a character); the usage placement is the most common `usage_chunk`, "none" when most
  answers came without usage.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from batchrun.analysis.distribution import percentile
from batchrun.analysis.timeline import in_flight
from batchrun.sim.model import CHARS_PER_TOKEN, message_text
from batchrun.store.records import CANCELLED, OK, SKIPPED, TIMEOUT, Attempt, Record
from batchrun.twin.copula import spearman
from batchrun.twin.inflight import loads_at
from batchrun.twin.lag import deconvolve, mix_tables
from batchrun.twin.model import (
    GRID,
    Failure,
    Failures,
    Level,
    Output,
    Prompt,
    RateLimits,
    Source,
    Table,
    TwinModel,
    Wire,
    at,
)

MIN_LEVEL = 30  # ok requests a level needs (the project's "few requests" mark)
PREFILL_GROUPS = 4
PREFILL_MIN_GROUP = 10
MAX_GAPS = 200_000  # pooled gaps kept per level (every k-th past it): a huge run still fits in ~1 s
MIN_RHO_N = 10  # requests a rank correlation needs

# The client's own error types (batchrun.endpoint.attempt), by name: the fit reads records only.
_STREAM_KINDS = {"IncompleteStream": "cut", "MalformedChunk": "malformed", "APITimeoutError": "timeout"}


@dataclass(frozen=True)
class RunRecords:
    """The records of one run (or one level of a bench), and what its summary says."""

    name: str
    records: Sequence[Record]
    rate_limits: Mapping[str, Any] | None = None  # summary.json: summary.rate_limits.provider
    model: str | None = None  # summary.json: endpoint.model
    client_saturated: bool = False  # summary.json: loop_lag.client_saturated
    lag_s: Table | None = None  # the client's event-loop lag over the run, quantiles on the grid
    lag_n: int = 0  # lag samples behind it


@dataclass(frozen=True, slots=True)
class Observed:
    """One ok request and the number of requests in flight when it was sent."""

    in_flight: float  # the load at send (twin/inflight.py): requests in flight, or their recent average
    record: Record
    run: int  # index of its timeline in Observations.runs

    @property
    def ttft_s(self) -> float:
        """The record's TTFT (only ok records with a TTFT are observed)."""
        ttft = self.record.ttft_s
        assert ttft is not None
        return ttft


@dataclass(frozen=True, slots=True)
class Timeline:
    """One clock's worth of records: a run, or one session of a resumed run."""

    name: str
    completed: int  # requests that got an outcome (not cancelled, not skipped)
    ok: int
    span_s: float | None  # first send to last end
    mean_in_flight: float | None
    lag_s: Table | None = None  # its run's client lag (RunRecords.lag_s)
    lag_n: int = 0


@dataclass
class Observations:
    ok: list[Observed] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    runs: list[Timeline] = field(default_factory=list)


def fit_twin(runs: Sequence[RunRecords]) -> TwinModel:
    """The twin of the endpoint these runs measured (ValueError when no request succeeded)."""
    return fit_observations(observe(runs), runs)


def observe(runs: Sequence[RunRecords]) -> Observations:
    """Every ok request with its in-flight count at send, every attempt, and each timeline."""
    obs = Observations()
    for run in runs:
        for session, records in _sessions(run.records).items():
            name = run.name if session == 1 else f"{run.name} (session {session})"
            _observe_timeline(obs, name, records, run)
    return obs


def _sessions(records: Iterable[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {}
    for r in records:
        if r.status != SKIPPED:
            out.setdefault(r.session or 1, []).append(r)
    return out


def _observe_timeline(obs: Observations, name: str, records: list[Record], run: RunRecords) -> None:
    spans = [span for r in records for span in attempt_spans(r)]
    index = len(obs.runs)
    ok = [
        r
        for r in records
        if r.status == OK and r.sent_s is not None and r.ttft_s is not None and r.latency_s is not None
    ]
    for r, load in zip(ok, loads_at(spans, [r.sent_s for r in ok])):  # type: ignore[misc]
        obs.ok.append(Observed(load, r, index))
    for r in records:
        obs.attempts += [a for a in r.attempt_log if a.status != CANCELLED]
    done = [r for r in records if r.status != CANCELLED and r.sent_s is not None and r.end_s is not None]
    bounds = [(r.sent_s, r.end_s) for r in done if r.sent_s is not None and r.end_s is not None]  # all of done
    span = max(end for _, end in bounds) - min(sent for sent, _ in bounds) if bounds else None
    obs.runs.append(Timeline(name, len(done), len(ok), span or None, in_flight(done)[1], run.lag_s, run.lag_n))


def attempt_spans(record: Record) -> list[tuple[float, float]]:
    """(sent, end) of each attempt on the run's clock; the record's own span when it has no log."""
    spans = [(a.sent_s, a.sent_s + a.duration_s) for a in record.attempt_log if a.duration_s is not None]
    if not spans and record.sent_s is not None and record.end_s is not None:
        spans = [(record.sent_s, record.end_s)]
    return spans


def in_flight_at(starts: Sequence[float], ends: Sequence[float], t: float) -> int:
    """Spans [start, end) holding t, from the sorted starts and ends: every span that started by t
    minus every span that ended by t (a span that ended by t also started by then)."""
    return bisect.bisect_right(starts, t) - bisect.bisect_right(ends, t)


def fit_observations(obs: Observations, runs: Sequence[RunRecords]) -> TwinModel:
    if not obs.ok:
        raise ValueError("no successful request with timings to fit (a twin needs at least one ok record)")
    groups = group_levels([o.in_flight for o in obs.ok], MIN_LEVEL)
    levels_obs = [[obs.ok[i] for i in members] for members in groups]
    prompt = fit_prompt(levels_obs)
    levels = tuple(fit_level(members, prompt, obs.runs) for members in levels_obs)
    records = [o.record for o in obs.ok]
    output = fit_output(records)
    rate_limits = fit_rate_limits(runs)
    failures = fit_failures(obs.attempts, limiter=rate_limits.rpm is not None or rate_limits.tpm is not None)
    wire = fit_wire(records)
    sources = tuple(Source(r.name, len(r.records)) for r in runs)
    model = _model_name(records, runs)
    notes = fit_notes(levels, prompt, output, failures, rate_limits, wire, runs)
    fitted = TwinModel(
        levels=levels,
        model=model,
        prompt=prompt,
        output=output,
        failures=failures,
        rate_limits=rate_limits,
        wire=wire,
        sources=sources,
        notes=notes,
    )
    # As its file holds it (6 significant digits), so a twin fitted on the spot and one read back
    # from `batchrun fit`'s file serve exactly the same.
    return TwinModel.from_dict(fitted.to_dict())


# ---------------------------------------------------------------- levels


def group_levels(in_flight: Sequence[float], min_n: int) -> list[list[int]]:
    """Indices of `in_flight` grouped into levels (see the module docstring), lowest level first;
    loads are grouped by their nearest whole number."""
    by_count: dict[int, list[int]] = {}
    for i, x in enumerate(in_flight):
        by_count.setdefault(round(x), []).append(i)
    groups: list[list[int]] = []
    current: list[int] = []
    for x in sorted(by_count):
        current += by_count[x]
        if len(current) >= min_n:
            groups.append(current)
            current = []
    if current:
        if groups:
            groups[-1] += current
        else:
            groups.append(current)
    return groups


def quantile_table(values: Iterable[float]) -> Table:
    """The values' percentiles at every grid point (linear between closest ranks, as metrics)."""
    xs = sorted(values)
    return tuple(percentile(xs, 100.0 * g) for g in GRID)


def fit_level(members: Sequence[Observed], prompt: Prompt, runs: Sequence[Timeline] = ()) -> Level:
    xs = sorted(o.in_flight for o in members)
    ttft = [
        max(0.0, o.ttft_s - prompt.prefill_s_per_token * (_prompt_tokens(o.record, prompt) - prompt.ref_tokens))
        for o in members
    ]
    means, ratios, paired = [], [], []
    for o, t in zip(members, ttft):
        gaps = o.record.itl_s
        if gaps:
            m = math.fsum(gaps) / len(gaps)
            means.append(m)
            paired.append((t, m))
            if m > 0:
                ratios += [g / m for g in gaps]
    if len(ratios) > MAX_GAPS:
        ratios = ratios[:: math.ceil(len(ratios) / MAX_GAPS)]
    table = quantile_table(ttft)
    lag, lag_n = _level_lag(members, runs)
    if lag is not None:
        table = deconvolve(table, lag)
    return Level(
        in_flight=percentile(xs, 50),
        n=len(members),
        ttft_s=table,
        gap_requests=len(means),
        gap_mean_s=quantile_table(means) if means else None,
        gaps=len(ratios),
        gap_ratio=quantile_table(ratios) if ratios else None,
        ttft_gap_rho=spearman(paired) if len(paired) >= MIN_RHO_N else 0.0,
        lag_s=lag,
        lag_n=lag_n,
    )


def _level_lag(members: Sequence[Observed], runs: Sequence[Timeline]) -> tuple[Table | None, int]:
    """The client lag of the runs the level's requests came from, each weighted by how many came
    from it (runs that kept no lag left out), and the lag samples behind it."""
    counts = Counter(o.run for o in members if runs and runs[o.run].lag_s is not None)
    if not counts:
        return None, 0
    tables = [runs[i].lag_s for i in counts]
    return mix_tables(tables, list(counts.values())), sum(runs[i].lag_n for i in counts)  # type: ignore[arg-type]


def _prompt_tokens(record: Record, prompt: Prompt) -> float:
    return prompt.ref_tokens if record.prompt_tokens is None else float(record.prompt_tokens)


# ---------------------------------------------------------------- prompt


def fit_prompt(levels: Sequence[Sequence[Observed]]) -> Prompt:
    tokens = sorted(o.record.prompt_tokens for lv in levels for o in lv if o.record.prompt_tokens is not None)
    ref = percentile(tokens, 50) if tokens else 0.0
    slope, used = prefill_slope(levels)
    chars, chars_n = chars_per_token([o.record for lv in levels for o in lv])
    return Prompt(
        ref_tokens=ref,
        prefill_s_per_token=max(0.0, slope) if used else 0.0,
        prefill_n=used,
        chars_per_token=chars,
        chars_n=chars_n,
    )


def prefill_slope(levels: Sequence[Sequence[Observed]]) -> tuple[float, int]:
    """(seconds of TTFT per prompt token, requests used); (0, 0) when it cannot be fitted."""
    points: list[tuple[float, float]] = []
    used = 0
    for level in levels:
        pairs = sorted((float(o.record.prompt_tokens), o.ttft_s) for o in level if o.record.prompt_tokens is not None)
        k = min(PREFILL_GROUPS, len(pairs) // PREFILL_MIN_GROUP)
        if k < 2 or pairs[0][0] == pairs[-1][0]:
            continue
        size = len(pairs) / k
        medians = []
        for g in range(k):
            part = pairs[round(g * size) : round((g + 1) * size)]
            medians.append((percentile([p for p, _ in part], 50), percentile(sorted(t for _, t in part), 50)))
        mx = math.fsum(p for p, _ in medians) / k
        my = math.fsum(t for _, t in medians) / k
        points += [(p - mx, t - my) for p, t in medians]
        used += len(pairs)
    sxx = math.fsum(x * x for x, _ in points)
    if sxx <= 0:
        return 0.0, 0
    return math.fsum(x * y for x, y in points) / sxx, used


def chars_per_token(records: Iterable[Record]) -> tuple[float, int]:
    """Median characters of prompt text per prompt token reported by the server, over requests
    saved with their body and answered with usage; (4.0, 0) when none were."""
    ratios = sorted(
        chars / r.prompt_tokens
        for r in records
        if r.prompt_tokens and not r.tokens_estimated and (chars := request_chars(r.request))
    )
    if not ratios:
        return float(CHARS_PER_TOKEN), 0
    return percentile(ratios, 50), len(ratios)


def request_chars(request: Mapping[str, Any] | None) -> int:
    """Characters of prompt text in a saved request body: its messages' text, or its prompt."""
    if not request:
        return 0
    if isinstance(request.get("messages"), list):
        return sum(len(message_text(m)) for m in request["messages"])
    prompt = request.get("prompt")
    return len(prompt) if isinstance(prompt, str) else 0


# ---------------------------------------------------------------- output, failures, limits, wire


def fit_output(records: Sequence[Record]) -> Output:
    hit = [r.completion_tokens for r in records if r.completion_tokens is not None and r.finish_reason == "length"]
    stop = [r.completion_tokens for r in records if r.completion_tokens is not None and r.finish_reason != "length"]
    return Output(
        n=len(hit) + len(stop),
        length_n=len(hit),
        cap=max(hit) if hit else None,
        stop_n=len(stop),
        stop_tokens=quantile_table(float(t) for t in stop) if stop else None,
    )


def failure_kind(attempt: Attempt) -> str | None:
    """The kind of a failed attempt (see the module docstring); None for a success."""
    if attempt.status == OK:
        return None
    if attempt.status == TIMEOUT:
        return "timeout"
    if attempt.http_status is not None and attempt.http_status != 200:
        return f"http_{attempt.http_status}"
    return _STREAM_KINDS.get(attempt.error_type or "", attempt.error_type or "error")


def fit_failures(attempts: Sequence[Attempt], *, limiter: bool) -> Failures:
    """Failure kinds per attempt, most common first. With announced rate limits the twin's own
    limiter answers 429s, so the 429s seen are not also drawn at random."""
    kinds = Counter(k for a in attempts if (k := failure_kind(a)) is not None)
    out = []
    for kind, count in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])):
        served = _servable(kind) and not (limiter and kind == "http_429")
        out.append(Failure(kind, count, served))
    waits = sorted(a.retry_after_s for a in attempts if a.status != OK and a.retry_after_s is not None)
    return Failures(attempts=len(attempts), kinds=tuple(out), retry_after_s=percentile(waits, 50) if waits else None)


def _servable(kind: str) -> bool:
    head, _, digits = kind.partition("_")
    return (head == "http" and digits.isdigit() and 400 <= int(digits) <= 599) or kind in (
        "cut",
        "malformed",
        "timeout",
    )


def fit_rate_limits(runs: Sequence[RunRecords]) -> RateLimits:
    """The limits the first run with rate-limit headers announced."""
    for run in runs:
        seen = run.rate_limits or {}
        if seen.get("source"):
            rpm, tpm = seen.get("requests_per_min"), seen.get("tokens_per_min")
            return RateLimits(
                headers=seen["source"], rpm=math.floor(rpm) if rpm else None, tpm=math.floor(tpm) if tpm else None
            )
    return RateLimits()


def fit_wire(records: Sequence[Record]) -> Wire:
    with_usage = [r for r in records if not r.tokens_estimated and r.completion_tokens is not None]
    chunked = [r for r in with_usage if r.output_chunks]
    tokens, chunks = sum(r.completion_tokens for r in chunked), sum(r.output_chunks for r in chunked)  # type: ignore[misc]
    per_chunk = max(1.0, tokens / chunks) if chunks else 1.0
    places = Counter(r.usage_chunk for r in with_usage if r.usage_chunk)
    without = len(records) - len(with_usage)
    if without > len(with_usage):
        usage, usage_n = "none", without
    elif places:
        usage, usage_n = places.most_common(1)[0][0], sum(places.values())
    else:
        usage, usage_n = "trailing", 0
    return Wire(usage=usage, usage_n=usage_n, tokens_per_chunk=per_chunk, chunk_n=len(chunked))


def _model_name(records: Sequence[Record], runs: Sequence[RunRecords]) -> str | None:
    names = Counter(r.model for r in records if r.model)
    if names:
        return names.most_common(1)[0][0]
    return next((r.model for r in runs if r.model), None)


# ---------------------------------------------------------------- notes


def fit_notes(
    levels: Sequence[Level],
    prompt: Prompt,
    output: Output,
    failures: Failures,
    limits: RateLimits,
    wire: Wire,
    runs: Sequence[RunRecords],
) -> tuple[str, ...]:
    """What the fit could not fit, what it assumed, and where the twin extrapolates."""
    notes = [_levels_note(levels)]
    notes.append(_lag_note(levels))
    saturated = [r.name for r in runs if r.client_saturated]
    if saturated:
        notes.append(
            f"client saturated in {', '.join(saturated)}: its own queueing (event-loop lag) was large and "
            "uneven, and the gaps between chunks keep it; fit runs at a concurrency the client keeps up "
            "with (or with --workers)"
        )
    if prompt.prefill_n:
        notes.append(
            f"TTFT vs prompt length: {prompt.prefill_s_per_token * 1000:.4g} ms per 1,000 prompt tokens "
            f"(n={prompt.prefill_n}), around {prompt.ref_tokens:g} tokens"
        )
    else:
        notes.append(
            f"TTFT vs prompt length: not fitted (prompt lengths too alike, or fewer than "
            f"{2 * PREFILL_MIN_GROUP} requests per level): TTFT held independent of prompt length"
        )
    if not prompt.chars_n:
        notes.append("prompt tokens: no saved request with usage, so the twin counts 4 characters per token")
    if output.length_n:
        notes.append(
            f"output length: {output.length_n} of {output.n} answers ({100 * output.length_share:.0f}%) "
            f"were cut by max_tokens (up to {output.cap}); their natural length is unknown: such an "
            f"answer runs to the request's max_tokens, or to {output.cap} tokens without one"
        )
    notes += _failure_notes(failures, limits)
    if limits.headers is None:
        unrecorded = any(r.rate_limits is None for r in runs)
        notes.append(
            "rate limits: "
            + ("not recorded (a bench keeps no rate-limit headers)" if unrecorded else "no rate-limit headers seen")
            + ": the twin sends none and limits nothing"
        )
    if not wire.usage_n:
        notes.append("usage placement: not recorded in these records (an older batchrun): assumed trailing")
    if not wire.chunk_n:
        notes.append("tokens per chunk: no answer with usage: assumed 1")
    return tuple(notes)


def _lag_note(levels: Sequence[Level]) -> str:
    lagged = [lv for lv in levels if lv.lag_s is not None]
    if not lagged:
        return (
            "client delay: no event-loop lag recorded with these runs: the TTFT tables keep the client's own "
            "delay, and a run against the twin adds its own again"
        )
    p50 = ", ".join(f"{1000 * at(GRID, lv.lag_s, 0.5):.2g}" for lv in lagged)  # type: ignore[arg-type]
    p90 = ", ".join(f"{1000 * at(GRID, lv.lag_s, 0.9):.2g}" for lv in lagged)  # type: ignore[arg-type]
    return (
        f"client delay: the TTFT tables are net of one copy of the client's own delay, its event-loop lag "
        f"(p50 {p50} ms, p90 {p90} ms by level), which a run against the twin adds again"
    )


def _levels_note(levels: Sequence[Level]) -> str:
    if len(levels) == 1:
        lv = levels[0]
        return (
            f"TTFT and chunk gaps vs concurrency: one level only (in flight {lv.in_flight:g}, n={lv.n}), "
            "held constant at every concurrency"
        )
    keys = ", ".join(f"{lv.in_flight:g}" for lv in levels)
    return (
        f"TTFT and chunk gaps vs concurrency: levels at in flight {keys}; interpolated between them, held "
        f"below {levels[0].in_flight:g}, extrapolated above {levels[-1].in_flight:g} (linear from the last two levels)"
    )


def _failure_notes(failures: Failures, limits: RateLimits) -> list[str]:
    notes = []
    for f in failures.kinds:
        if f.served:
            continue
        if f.kind == "http_429" and (limits.rpm or limits.tpm):
            notes.append(
                f"failures: the {f.count} HTTP 429s are left to the twin's rate limiter "
                f"(rpm {limits.rpm}, tpm {limits.tpm}), not drawn at random"
            )
        else:
            notes.append(f"failures: {f.count} attempts failed with {f.kind}, which the twin cannot reproduce")
    return notes
