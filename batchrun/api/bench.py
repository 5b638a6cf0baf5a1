"""`batchrun.bench` / `batchrun.abench`: a bench from Python, and the `Bench` (or, with
find_max=True, the `FindMax`) they return. `batchrun bench` calls the same `execute`."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from batchrun.api import keywords
from batchrun.api.run import PROMPTS, Prompts, Summary, _is_frame, _notifier, _progress, _Staged
from batchrun.errors import InsideEventLoop
from batchrun.hooks import Hooks

if TYPE_CHECKING:
    import pandas
    from typing_extensions import Unpack  # typing's own from Python 3.11

    from batchrun.api.typed import BenchOptions
    from batchrun.bench.findmax import FindMaxResult, Probe


@dataclass(frozen=True)
class Recommendation:
    """The concurrency the bench recommends and why: the lowest level whose throughput cannot be
    told from the best (95% intervals) among those with few enough failures and within the SLO."""

    level: int | None  # None: every level was ruled out (`why` says how), or an open-loop bench
    requests_per_s: float | None  # its throughput (successful requests/s), its repeats pooled
    interval: tuple[float, float] | None  # 95% interval of that throughput
    n: int | None  # requests it measured
    why: tuple[str, ...]  # the recommendation as the report says it, sentence by sentence


@dataclass(frozen=True)
class Speedup:
    """A level's throughput over the sync SDK baseline's, with its 95% interval and sample sizes."""

    level: int
    estimate: float | None
    interval: tuple[float, float] | None
    n: int  # requests of the level
    sync_n: int  # requests of the sync baseline


class Bench:
    """A finished bench: the directory it wrote and its figures.

    `frame`: one row per run (the sync baseline, each level and repeat) with the figures the
    report's table shows and `n`; `levels`: one row per level, repeats pooled, with 95% intervals;
    `recommendation`, `speedup` (the recommended level's over sync), `summary` (summary.json:
    the recommended level's figures, the settings, the endpoint). `str(bench)` is the CLI's table."""

    def __init__(self, out_dir: Path, analysis: Mapping[str, Any]) -> None:
        self.out_dir = out_dir
        self.analysis = dict(analysis)

    @classmethod
    def read(cls, out_dir: str | os.PathLike[str]) -> Bench:
        """The bench a directory holds (bench.json and its runs' records), analysed afresh."""
        from batchrun.report.bench import bench_analysis  # lazy: numpy, for a bench only
        from batchrun.report.summary import load_bench, read_summary

        path = Path(out_dir)
        analysis = bench_analysis(load_bench(path))
        analysis["endpoint"] = read_summary(path).get("endpoint")
        return cls(path, analysis)

    @property
    def frame(self) -> pandas.DataFrame:
        import pandas  # lazy: pandas costs ~0.3 s

        return pandas.DataFrame(self.analysis["rows"])

    @property
    def levels(self) -> pandas.DataFrame:
        import pandas  # lazy: as frame

        return pandas.DataFrame(self.analysis["groups"])

    @property
    def recommendation(self) -> Recommendation:
        level = self.analysis["recommended_concurrency"]
        group = _level(self.analysis, level) or {}
        low, high = group.get("requests_per_s_ci_low"), group.get("requests_per_s_ci_high")
        return Recommendation(
            level,
            group.get("requests_per_s"),
            None if low is None or high is None else (low, high),
            group.get("n"),
            tuple(self.analysis["recommendation"]),
        )

    @property
    def speedup(self) -> Speedup | None:
        """The recommended level's speedup over the sync baseline; None without either."""
        level = self.analysis["recommended_concurrency"]
        found = (self.analysis.get("speedup") or {}).get(str(level))
        if level is None or not found or found.get("estimate") is None:
            return None
        low, high = found.get("ci_low"), found.get("ci_high")
        interval = None if low is None or high is None else (low, high)
        return Speedup(level, found["estimate"], interval, found["n"], found["sync_n"])

    @property
    def summary(self) -> Summary:
        """summary.json as an object, as `Run.summary`: the recommended level's figures by attribute
        (`b.summary.ttft_s.p50`, `b.summary.counts.ok`), the file's sections (`config`, `endpoint`)."""
        return Summary(json.loads((self.out_dir / "summary.json").read_text(encoding="utf-8")))

    def __str__(self) -> str:
        from batchrun.report.bench import format_bench_table  # lazy: as read()

        return format_bench_table(self.analysis)

    def __repr__(self) -> str:
        rec, runs = self.recommendation, len(self.analysis["rows"])
        said = f"recommended concurrency {rec.level}" if rec.level is not None else "no level recommended"
        if rec.level is not None and rec.requests_per_s is not None:
            said += f" ({rec.requests_per_s:.3g} req/s, n={rec.n})"
        speedup = self.speedup
        if speedup is not None and speedup.estimate is not None:
            said += f", {speedup.estimate:.3g}x sync"
        return f"<batchrun.Bench {self.out_dir}: {runs} runs, {said}>"


class FindMax:
    """A find-max search (bench with find_max=True): the highest concurrency that met the SLO.

    `best` (None: not even the first level), `first_failing` (None: the ceiling passed), `probes`
    (each level measured: requests, throughput, p99 TTFT and latency with 95% intervals, verdict),
    `frame` (the probes as rows); `str(found)` is the CLI's answer and table."""

    def __init__(self, out_dir: Path, found: FindMaxResult, slo: Mapping[str, float]) -> None:
        self.out_dir, self.found, self.slo = out_dir, found, dict(slo)

    @property
    def best(self) -> int | None:
        return self.found.best

    @property
    def first_failing(self) -> int | None:
        return self.found.first_failing

    @property
    def probes(self) -> list[Probe]:
        return list(self.found.probes)

    @property
    def frame(self) -> pandas.DataFrame:
        import pandas  # lazy: pandas costs ~0.3 s

        return pandas.DataFrame(self.found.to_dict()["probes"])

    def __str__(self) -> str:
        from batchrun.bench.findmax import format_find_max  # lazy: the bench's modules

        return format_find_max(self.found, self.slo)

    def __repr__(self) -> str:
        return (
            f"<batchrun.FindMax {self.out_dir}: best concurrency {self.best}, first failing {self.first_failing}, "
            f"{len(self.found.probes)} probes>"
        )


def _level(analysis: Mapping[str, Any], level: int | None) -> Mapping[str, Any] | None:
    return next((g for g in analysis["groups"] if g["mode"] == "async" and g["concurrency"] == level), None)


async def execute(given: Mapping[str, Any], hooks: Hooks, staged: _Staged | None = None) -> Bench | FindMax:
    """The bench (or find-max search) the options describe, with a face's hooks: the one code
    path of `batchrun bench` and `batchrun.bench`. Python rows (`staged`) are written once the
    options are known to be valid."""
    from batchrun.bench.sweep import BenchConfig, execute_bench  # lazy: the bench loads the openai SDK

    config = BenchConfig.from_options(**given)
    if staged is not None:
        staged.write()
    if given.get("find_max"):
        from batchrun.bench.findmax import execute_find_max  # lazy: find-max only

        out_dir, found = await execute_find_max(config, config.run.output.out, hooks)
        return FindMax(out_dir, found, config.slo or {})
    out_dir, analysis = await execute_bench(config, config.run.output.out, hooks)
    return Bench(out_dir, analysis)


def _given(prompts: Prompts, options: Mapping[str, Any]) -> tuple[dict[str, Any], _Staged | None]:
    """The options a call gave; Python rows (a DataFrame, a list) become a file in the bench's
    directory, as `batchrun.run` makes them one in the run's (written by `execute`)."""
    given = keywords.given("bench", options)
    if prompts is None:
        return given, None
    if "input" in given:
        raise TypeError("give the prompts once: as the first argument, not also as input=")
    if isinstance(prompts, (str, os.PathLike)):
        return {**given, "input": Path(prompts)}, None
    if not (_is_frame(prompts) or isinstance(prompts, Sequence)):
        raise TypeError(f"prompts must be a path, a pandas DataFrame or a list, not {type(prompts).__name__}")
    from batchrun.store.rundir import new_run_dir  # lazy: only Python rows need the directory now

    given.setdefault("out", new_run_dir("bench"))
    staged = _Staged.of(prompts, given)
    return {**given, **staged.options()}, staged


def _hooks(given: Mapping[str, Any]) -> Hooks:
    """The Python face's: messages to the "batchrun" logger (the few a user must see to stderr
    too), a tqdm.auto bar per run (a widget in Jupyter); neither when quiet."""
    quiet = bool(given.get("quiet"))
    return Hooks(notify=_notifier(quiet), progress=None if quiet else _progress())


@keywords.takes("bench", [PROMPTS])
def bench(prompts: Prompts = None, /, **options: Unpack[BenchOptions]) -> Bench | FindMax:
    """Benchmark the endpoint: the sync SDK baseline, then the async pool at each concurrency
    (or arrival rate), every run recorded, then one report; returns the `Bench`.

    Args:
        prompts: a CSV, JSONL or Parquet file of prompts, a pandas DataFrame or a list of
            prompt strings or dicts (None: `synthetic=` prompts, or else a built-in sample).
        **options: every option of `batchrun bench`, by its name and with its default
            (`concurrency=[1, 4, 16]` or "1,4,16", `requests=100`, `rate=[2, 4]`,
            `slo={"ttft": 0.5}` or "ttft=500ms", `max_tokens`, `base_url`, `out`, ...).
            `find_max=True` searches for the highest concurrency meeting `slo` instead and
            returns a `FindMax`.

    Raises:
        TypeError: an unknown keyword (naming the closest ones).
        ConfigError, InputError: a bad option or prompts file.
        InsideEventLoop: called inside a running event loop (Jupyter): `await batchrun.abench(...)`.
        KeyboardInterrupt: Ctrl-C, after the runs measured so far are written and reported.

        b = batchrun.bench("prompts.csv", concurrency=[1, 4, 16])
        b.frame; b.recommendation; b.speedup
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no running loop: the one case bench() is for
        return asyncio.run(abench(prompts, **options))
    raise InsideEventLoop(
        "batchrun.bench() blocks, and an event loop is already running here (Jupyter, an async app): "
        "use `await batchrun.abench(...)` with the same arguments"
    )


@keywords.takes("bench", [PROMPTS])
async def abench(prompts: Prompts = None, /, **options: Unpack[BenchOptions]) -> Bench | FindMax:
    """`bench` as a coroutine, for a running event loop (Jupyter: `b = await batchrun.abench(...)`)."""
    given, staged = _given(prompts, options)
    return await execute(given, _hooks(given), staged)
