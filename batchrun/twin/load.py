"""Reading what a twin is fitted on (run and bench directories), twin files, and the SimConfig
that serves a twin. The I/O around the pure fit (twin/fit.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from batchrun.errors import ConfigError, OutputError
from batchrun.sim.config import DEFAULT_MODEL, SimConfig
from batchrun.store.records import Record, read_records
from batchrun.twin.fit import Observations, RunRecords, fit_observations, observe, quantile_table
from batchrun.twin.lag import summary_lag_table
from batchrun.twin.model import Table, TwinError, TwinModel


def fit(sources: Sequence[str | Path]) -> TwinModel:
    """The twin of the endpoint that these run and bench directories measured."""
    return fit_sources(sources)[0]


def fit_sources(sources: Sequence[str | Path]) -> tuple[TwinModel, Observations]:
    """The twin, and what it was fitted on (for the report)."""
    runs = read_sources(sources)
    obs = observe(runs)
    try:
        return fit_observations(obs, runs), obs
    except ValueError as exc:
        raise ConfigError(f"{', '.join(map(str, sources))}: {exc}") from None


def load(like: Sequence[str | Path]) -> TwinModel:
    """A twin from `--like`: one twin file (written by `batchrun fit`), or run / bench directories
    to fit now."""
    paths = [Path(p) for p in like]
    if not paths:
        raise ConfigError("--like: give a twin file or at least one run or bench directory")
    files = [p for p in paths if p.is_file()]
    if files:
        if len(paths) > 1:
            raise ConfigError(f"--like {files[0]}: a twin file stands alone; give it, or run directories to fit")
        return read_twin(files[0])
    return fit(paths)


def read_sources(sources: Sequence[str | Path]) -> list[RunRecords]:
    """Every run in these directories: a run directory is one run, a bench directory one per
    async or open-loop level (the sync SDK baseline is left out: another client's timings)."""
    if not sources:
        raise ConfigError("give at least one run or bench directory")
    runs: list[RunRecords] = []
    for source in map(Path, sources):
        if not source.exists():
            raise ConfigError(f"{source}: no such file or directory (give a run or bench directory)")
        if source.is_file():
            raise ConfigError(f"{source}: a file; fit takes the run or bench directories it should copy")
        if (source / "bench.json").is_file():
            runs += _bench_runs(source)
        elif (source / "records.jsonl").is_file():
            runs.append(_run(source, source))
        else:
            raise ConfigError(
                f"{source}: not a run or bench directory (no records.jsonl, no bench.json); "
                "give a directory written by `batchrun run` or `batchrun bench`"
            )
    return runs


def _bench_runs(bench: Path) -> list[RunRecords]:
    entries = [
        run
        for run in _json(bench / "bench.json").get("runs") or []
        if isinstance(run, dict) and run.get("mode") != "sync" and isinstance(run.get("name"), str)
    ]
    runs = [
        _run(bench / "runs" / run["name"], bench, run["name"], run.get("loop_lag_s"))
        for run in entries
        if (bench / "runs" / run["name"] / "records.jsonl").is_file()
    ]
    if not runs:
        raise ConfigError(f"{bench}: a bench directory without async runs to fit (runs/*/records.jsonl)")
    return runs


def _run(directory: Path, source: Path, level: str | None = None, lag_samples: Any = None) -> RunRecords:
    summary = _json(directory / "summary.json") if (directory / "summary.json").is_file() else {}
    figures = summary.get("summary") or {}
    limits = (figures.get("rate_limits") or {}).get("provider")
    model = (summary.get("endpoint") or {}).get("model")
    lag = figures.get("loop_lag") or {}
    saturated = bool(lag.get("client_saturated"))
    name = f"{source}:{level}" if level else str(source)
    lag_s, lag_n = _lag(lag_samples, lag)
    return RunRecords(
        name, [_lean(r) for r in read_records(directory / "records.jsonl")], limits, model, saturated, lag_s, lag_n
    )


def _lag(samples: Any, summary: dict[str, Any]) -> tuple[Table | None, int]:
    """The client's loop lag over a run: the bench's raw samples when it kept them (bench.json),
    else what the run's summary keeps (p50, p99, max; see twin/lag.py)."""
    if isinstance(samples, list) and samples and all(isinstance(x, (int, float)) for x in samples):
        return quantile_table(float(x) for x in samples), len(samples)
    count = summary.get("count")
    table = summary_lag_table(summary.get("p50_s"), summary.get("p99_s"), summary.get("max_s"))
    return (table, count) if table is not None and isinstance(count, int) and count > 0 else (None, 0)


def _lean(record: Record) -> Record:
    """The record without what the fit never reads (the answers, the input row): a big run's
    records then take about half the memory while they are fitted."""
    record.text = record.reasoning_text = ""
    record.input = record.other_choices = record.tool_calls = record.rounds = record.parsed = None
    return record


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def read_twin(path: Path) -> TwinModel:
    """A twin file; ConfigError naming the file and the field for anything wrong in it."""
    data = _json(path)
    try:
        return TwinModel.from_dict(data)
    except TwinError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def write_twin(model: TwinModel, path: Path) -> None:
    text = _compact_lists(json.dumps(model.to_dict(), indent=1)) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror} (choose another --out)") from None


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9][0-9.eE+-]*(?:,\s*-?[0-9][0-9.eE+-]*)*)\s*\]")


def _compact_lists(text: str) -> str:
    """Lists of numbers on one line each: a table reads as one row, not 43 lines."""
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def sim_config(twin: TwinModel, seed: int = 0, **changes: Any) -> SimConfig:
    """The built-in endpoint serving `twin`: its model name, rate limits and wire quirks; jitter
    drawn afresh per request, as a real endpoint's noise; lenient about parameters (a real server
    took what the source run sent); no prefix cache (the source's is in the TTFT tables)."""
    limits = twin.rate_limits
    settings: dict[str, Any] = dict(
        seed=seed,
        models=(twin.model or DEFAULT_MODEL,),
        twin=twin,
        fresh_jitter=True,
        strict=False,
        prefix_cache_tokens=0,
        rpm=limits.rpm,
        tpm=limits.tpm,
        ratelimit_headers=limits.headers or "none",
        usage_placement=twin.wire.usage,
        tokens_per_chunk=twin.wire.tokens_per_chunk,
        chars_per_token=twin.prompt.chars_per_token,
    )
    if twin.failures.retry_after_s is not None:
        settings["retry_after_s"] = twin.failures.retry_after_s
    return SimConfig(**{**settings, **changes})
