"""bench.py and the bench / report / compare commands, against the built-in endpoint."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from promptfiles import write_prompts
from typer.testing import CliRunner

from batchrun import options
from batchrun.bench.sizing import TARGET_HALF_WIDTH, RunSize, SizedJobs, drain_s, level_half_width, window_allows
from batchrun.bench.sweep import (
    DEFAULT_LEVELS,
    DEFAULT_TIME_BUDGET_S,
    SAMPLE,
    BenchConfig,
    arrivals,
    bench_jobs,
    resolve_time_budget,
)
from batchrun.cli import app
from batchrun.config import RunConfig
from batchrun.errors import ConfigError
from batchrun.sim import SimConfig, SimProcess
from batchrun.store.records import Record, read_records

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(scope="module")
def fixed_sim():
    """20 ms TTFT, 2 ms gaps, 10 tokens, no queueing: every request takes ~40 ms."""
    with SimProcess(SimConfig(fixed_ttft_s=0.02, fixed_itl_s=0.002, output_tokens=10)) as sim:
        yield sim


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_bench_sweep_writes_every_run_and_a_report(fixed_sim, tmp_path) -> None:
    result = invoke(
        "bench",
        str(SAMPLES / "prompts.csv"),
        "--base-url",
        fixed_sim.base_url,
        "-n",
        "16",
        "-c",
        "1,4",
        "--warmup",
        "2",
        "--out",
        "b",
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "b"
    manifest = json.loads((out / "bench.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == ["sync-r1", "async-c1-r1", "async-c4-r1"]
    for name in ("sync-r1", "async-c1-r1", "async-c4-r1"):
        lines = (out / "runs" / name / "records.jsonl").read_text().splitlines()
        assert len(lines) == 16 and all(json.loads(l)["status"] == "ok" for l in lines)
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["bench"]["rows"]}
    # Four at a time against a server with no queueing: clearly faster than one at a time.
    assert rows["async-c4-r1"]["requests_per_s"] > 2 * rows["async-c1-r1"]["requests_per_s"]
    assert summary["summary"]["bench_run"] in rows  # the headline is the recommended run
    html = (out / "report.html").read_text()
    for title in (
        "throughput vs concurrency",
        "latency and TTFT vs concurrency",
        "TTFT CDF per run",
        "in-flight timeline per run",
    ):
        assert title in html
    assert html.count('<div class="plot"') >= 4
    assert "Recommended concurrency" in result.output and "faster than sync (95% interval" in result.output


def test_report_rebuilds_a_bench_and_compare_gates_it(fixed_sim, tmp_path) -> None:
    args = ["bench", str(SAMPLES / "prompts.csv"), "--base-url", fixed_sim.base_url, "-n", "8", "-c", "2", "--no-sync"]
    assert invoke(*args, "--out", "a").exit_code == 0
    (tmp_path / "a" / "report.html").unlink()
    result = invoke("report", "a")
    assert result.exit_code == 0 and (tmp_path / "a" / "report.html").exists()
    same = invoke("compare", "a", "a", "--max-regression", "latency_p99=10%,throughput=-5%")
    assert same.exit_code == 0, same.output
    # A crafted regression: the current run's p99 latency doubled.
    current = json.loads((tmp_path / "a" / "summary.json").read_text())
    current["summary"]["latency_s"]["p99"] *= 2
    (tmp_path / "slower.json").write_text(json.dumps(current))
    worse = invoke("compare", "a", "slower.json", "--max-regression", "latency_p99=10%", "--format", "md")
    assert worse.exit_code == 1 and "latency_p99" in worse.output and "|" in worse.output


def test_open_loop_records_planned_and_actual_send_times(fixed_sim, tmp_path) -> None:
    result = invoke(
        "bench",
        str(SAMPLES / "prompts.csv"),
        "--base-url",
        fixed_sim.base_url,
        "-n",
        "20",
        "--rate",
        "40",
        "--no-sync",
        "--out",
        "r",
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "r" / "runs" / "rate-40-r1" / "records.jsonl").read_text().splitlines()
    records = [json.loads(l) for l in lines]
    assert len(records) == 20 and all(r["scheduled_s"] is not None for r in records)
    assert all(r["sent_s"] >= r["scheduled_s"] - 1e-3 for r in records)  # never sent early


def test_bad_options_are_usage_errors(tmp_path) -> None:
    result = invoke("bench", str(SAMPLES / "prompts.csv"), "-c", "1,x", "--base-url", "http://127.0.0.1:9/v1")
    assert result.exit_code == 2 and "comma-separated" in result.output
    result = invoke("compare", "nowhere", "nowhere2")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_bench_jobs_cycle_with_unique_ids() -> None:
    jobs = bench_jobs(RunConfig.of(path=SAMPLES / "prompts.csv", model="m"), 100)
    ids = [j.prompt.id for j in jobs]
    assert len(ids) == 100 and len(set(ids)) == 100 and [j.prompt.row for j in jobs] == list(range(100))


def test_arrivals_have_the_requested_mean_rate() -> None:
    gen = arrivals(10.0, 1.0, seed=3)
    times = [next(gen) for _ in range(5001)]
    assert times[0] == 0 and all(b >= a for a, b in zip(times, times[1:]))
    assert times[-1] / 5000 == pytest.approx(0.1, rel=0.05)  # mean gap 1/rate


def test_sync_baseline_enforces_the_whole_request_timeout_like_the_async_client() -> None:
    """Chunks every 50 ms for 0.5 s: each read is quick, the whole request is not (timeout 0.3 s)."""
    import time

    from batchrun.bench.sync import run_sync
    from batchrun.endpoint.transport import Endpoint

    jobs = bench_jobs(RunConfig.of(path=SAMPLES / "prompts.csv", model="m"), 2)
    with SimProcess(SimConfig(fixed_ttft_s=0.01, fixed_itl_s=0.05, output_tokens=10)) as sim:
        endpoint = Endpoint(sim.base_url)
        slow = run_sync(endpoint, jobs, timeout_s=0.3, t0=time.perf_counter())
        ok = run_sync(endpoint, jobs, timeout_s=5.0, t0=time.perf_counter())
    assert [r.status for r in slow] == ["timeout", "timeout"] and "--timeout" in slow[0].error
    assert [r.status for r in ok] == ["ok", "ok"] and ok[0].completion_tokens == 10
    assert ok[0].latency_s - ok[0].ttft_s == pytest.approx(sum(ok[0].itl_s))


# ---------------------------------------------------------------- one request path for both sides

from aiohttp import web  # noqa: E402
from rawserver import DONE, chunk, cut, raw_server, sse  # noqa: E402


def _cases() -> dict[str, object]:
    ok = [chunk(role="assistant"), chunk("Hel"), chunk("lo", finish="stop")]
    cases = {
        "ok": lambda r: sse(r, ok + [DONE]),
        "no [DONE]": lambda r: sse(r, ok),
        "error event in a 200 stream": lambda r: sse(r, [chunk("a"), b'data: {"error": {"message": "boom"}}\n\n']),
        "malformed line": lambda r: sse(r, [chunk("a"), b"data: {not json\n\n", DONE]),
        "empty answer": lambda r: sse(r, [chunk(role="assistant"), chunk(finish="stop"), DONE]),
        "cut mid-stream": lambda r: cut(r, [chunk("a"), chunk("b")]),
        "429": lambda r: _status(429, {"error": {"message": "slow down"}}),
        "500 html": lambda r: _status(500, "<html>oops</html>"),
    }

    def handler(make):  # aiohttp wants coroutine functions, not lambdas returning coroutines
        async def handle(request: web.Request) -> web.StreamResponse:
            return await make(request)

        return handle

    return {name: handler(make) for name, make in cases.items()}


async def _status(status: int, body: object) -> web.Response:
    if isinstance(body, str):
        return web.Response(status=status, text=body, content_type="text/html")
    return web.json_response(body, status=status)


async def test_sync_and_async_classify_the_same_response_the_same_way() -> None:
    import asyncio
    import time

    from batchrun.bench.sync import run_sync
    from batchrun.endpoint.transport import Endpoint, StreamClient, make_session

    jobs = bench_jobs(RunConfig.of(path=SAMPLES / "prompts.csv", model="raw-model"), 1)
    for name, handler in _cases().items():
        async with raw_server(handler) as url:
            endpoint = Endpoint(url)
            async with make_session(1) as session:
                result = await StreamClient(session, endpoint, timeout_s=5.0).send(jobs[0].body)
            [record] = await asyncio.to_thread(run_sync, endpoint, jobs, timeout_s=5.0, t0=time.perf_counter())
        assert (record.status, record.error_type) == (result.status, result.error_type), name
        assert record.text == result.text, name
        if name != "cut mid-stream":  # only the transport's own words for a cut differ
            assert record.error == result.error, name


# ---------------------------------------------------------------- samples, wall time, the built-in endpoint


def test_requests_per_level_are_honoured_and_enough_by_default() -> None:
    config = BenchConfig(run=RunConfig.of(path=SAMPLES / "prompts.csv", model="m"))
    assert config.max_run_s is None  # was 5 s: -n 200 at c=4 measured 20
    assert [config.requests_for(c) for c in (1, 4, 25, 64)] == [100, 100, 100, 256]
    assert [config.requests_cap(c) for c in (1, 64)] == [400, 1024]
    assert [config.warmup_for(c) for c in (1, 8)] == [1, 8]
    given = BenchConfig(run=config.run, requests=7, warmup=0)
    assert (given.requests_for(64), given.requests_cap(64), given.warmup_for(64)) == (7, 7, 0)


# ---------------------------------------------------------------- the default bench: a time budget


def test_a_bench_given_no_levels_and_no_n_shares_a_time_budget() -> None:
    assert resolve_time_budget(None, requests=None, levels_given=False) == DEFAULT_TIME_BUDGET_S
    assert resolve_time_budget(None, requests=None, levels_given=True) is None  # -c / --rate: by spread
    assert resolve_time_budget(None, requests=50, levels_given=False) is None  # -n: exactly that
    assert resolve_time_budget(0, requests=None, levels_given=False) is None  # 0: none
    assert resolve_time_budget(90, requests=None, levels_given=True) == 90
    run = RunConfig.of(path=SAMPLES / "prompts.csv", model="m")
    quick = BenchConfig(run=run, time_budget_s=36.0)
    assert quick.concurrencies == DEFAULT_LEVELS == (1, 4, 16, 64)
    # sync two shares, four levels one each: 6 shares of 6 s
    assert (quick.shares(), quick.run_count()) == (6, 5)
    assert quick.size(1, sync=True) == RunSize(10, 400, window_s=12.0)
    assert [quick.size(c) for c in (1, 16, 64)] == [
        RunSize(10, 400, window_s=6.0),
        RunSize(16, 400, window_s=6.0),
        RunSize(64, 1024, window_s=6.0),
    ]
    no_sync = BenchConfig(run=run, time_budget_s=36.0, sync=False, repeat=2)
    assert (no_sync.shares(), no_sync.size(4).window_s) == (8, 4.5)
    # Levels given, no budget: sized by spread (the CI recipe's sizing), sync exactly 100.
    spread = BenchConfig(run=run, concurrencies=(8,))
    assert spread.size(8) == RunSize(100, 400, target=TARGET_HALF_WIDTH)
    assert spread.size(1, sync=True) == RunSize(100, 100)
    assert BenchConfig(run=run, requests=7).size(64) == RunSize(7, 7)
    with pytest.raises(ConfigError, match="give one of them"):
        BenchConfig(run=run, requests=7, time_budget_s=30.0)
    bad = invoke("bench", str(SAMPLES / "prompts.csv"), "--time-budget", "-5")
    assert bad.exit_code == 2 and "--time-budget is a number of seconds above 0 (0 for none), got -5" in bad.output


def test_drain_and_window_by_hand() -> None:
    # 10 finished in 2 s: 5 in flight take 5 x 2 / 10 = 1 s more.
    assert drain_s(2.0, 10, 5) == 1.0 and drain_s(2.0, 0, 5) == 0.0
    assert window_allows(2.0, 3.5, 10, 5, 4) and not window_allows(2.0, 2.9, 10, 5, 4)
    # Fewer finished than `settled`: the rate is not read, only the share bounds the sending.
    assert window_allows(2.0, 2.1, 3, 50, 4) and not window_allows(2.2, 2.1, 3, 50, 4)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_sequential_run_stops_when_its_next_request_would_end_past_its_share() -> None:
    """Requests of 1 s one after another in a 5.5 s share, at least 3: the 4th (sent at 3 s)
    and 5th (at 4 s) end within it; a 6th, sent at 5 s, would end at 6 s: not sent."""
    clock, records = Clock(), []
    sized = SizedJobs(list(range(100)), records, RunSize(3, 100, window_s=5.5), clock=clock)
    for i in sized:
        assert sized.may_send()
        clock.now += 1.0
        records.append(Record(id=str(i), row=i, status="ok", latency_s=1.0, total_s=1.0))
    assert (sized.launched, len(records), clock.now) == (5, 5, 5.0)
    assert sized.outlook() == ("5", 0.0)


def test_jobs_taken_ahead_are_not_sent_past_the_share() -> None:
    """The pool's queue takes jobs before it sends them: at send time `may_send` refuses them
    once the share is spent (the minimum always goes)."""
    clock, records = Clock(), []
    sized = SizedJobs(list(range(100)), records, RunSize(4, 100, window_s=2.0), concurrency=4, clock=clock)
    taken = iter(sized)
    queue = [next(taken) for _ in range(12)]  # three waves ahead, at 0 s
    assert all(sized.may_send() for _ in range(4))  # the minimum
    clock.now = 2.5  # nothing finished, the share is spent
    assert not sized.may_send() and sized.stopped and next(taken, None) is None
    assert (sized.launched, len(queue)) == (4, 12)


def test_progress_outlook_by_sizing() -> None:
    clock, records = Clock(), []
    exact = SizedJobs(list(range(40)), records, RunSize(40, 40), clock=clock)
    next(iter(exact))
    clock.now = 2.0
    records += [Record(id=str(i), row=i) for i in range(10)]
    assert exact.outlook() == ("40", 6.0)  # 10 in 2 s: 30 more in 6 s
    spread = SizedJobs(list(range(400)), records, RunSize(100, 400, target=0.04), clock=clock)
    next(iter(spread))
    assert spread.outlook()[0] == "100+"


def _sized_level(sigma: float, seed: int = 1, target: float | None = TARGET_HALF_WIDTH) -> tuple[SizedJobs, list]:
    """Hand out jobs as the pool would, each finishing at once with a lognormal(0, sigma) TTFT."""
    rng = np.random.default_rng(seed)
    records: list[Record] = []
    sized = SizedJobs(list(range(400)), records, RunSize(100, 400, target=target))
    for i in sized:
        ttft = 0.3 * float(rng.lognormal(0.0, sigma))
        records.append(Record(id=str(i), row=i, ttft_s=ttft, latency_s=ttft + 0.5))
    return sized, records


def test_a_level_measures_until_its_p50_interval_is_tight_enough() -> None:
    quiet, records = _sized_level(0.01)
    assert quiet.sent == len(records) == 100 and quiet.capped_width() is None  # tight at its minimum
    noisy, records = _sized_level(0.2)
    assert 125 <= noisy.sent == len(records) <= 300  # checked every 25
    assert level_half_width(records) <= TARGET_HALF_WIDTH < level_half_width(records[: noisy.sent - 25])
    wild, records = _sized_level(1.0)
    assert wild.sent == 400 and wild.capped_width() > 0.1  # the cap, and it says so
    given, records = _sized_level(1.0, target=None)  # -n: exactly that many
    assert given.sent == 400 and given.capped_width() is None
    failing = SizedJobs(
        list(range(400)), [Record(id="x", row=0, status="error")] * 100, RunSize(100, 400, target=TARGET_HALF_WIDTH)
    )
    assert len(list(failing)) == 100  # nothing to judge: the minimum


def test_the_default_sizing_in_a_real_bench(tmp_path) -> None:
    """Wild jitter runs a level to its cap (4 x 100), with a warning and without a "cut" mark.
    (Stopping at the minimum is tested on scripted records above: a real endpoint's timing on a
    loaded machine is not steady enough to pin.)"""
    wild = invoke(
        "bench",
        str(SAMPLES / "prompts.csv"),
        "-c",
        "8",
        "--no-sync",
        "--out",
        "wild",
        "-q",
        *[
            a
            for opt in ("ttft_s=0.002", "prefill_s_per_token=0", "itl_s=0.0002", "output_tokens=3", "jitter=1.5")
            for a in ("--builtin-option", opt)
        ],
    )
    assert wild.exit_code == 0, wild.output
    assert len((tmp_path / "wild" / "runs" / "async-c8-r1" / "records.jsonl").read_text().splitlines()) == 400
    assert "stopped at its cap of 400 requests" in wild.output and "measure more with -n" in wild.output
    assert "400 of" not in (tmp_path / "wild" / "report.md").read_text()  # not shown as a cut run


def test_a_time_cut_is_reported_and_small_levels_are_marked(fixed_sim, tmp_path) -> None:
    result = invoke(
        "bench",
        str(SAMPLES / "prompts.csv"),
        "--base-url",
        fixed_sim.base_url,
        "-n",
        "40",
        "-c",
        "1",
        "--no-sync",
        "--max-run-time",
        "0.2",
        "--out",
        "cut",
    )
    assert result.exit_code == 0, result.output
    records = (tmp_path / "cut" / "runs" / "async-c1-r1" / "records.jsonl").read_text().splitlines()
    assert 1 <= len(records) < 40
    assert f"cut it to {len(records)} of 40 requests" in result.output
    assert f"{len(records)} of 40 (<30)" in result.output and "(<30)" in (tmp_path / "cut" / "report.md").read_text()


def test_wall_time_runs_from_the_first_send_to_the_last_byte(fixed_sim, tmp_path) -> None:
    result = invoke(
        "bench",
        str(SAMPLES / "prompts.csv"),
        "--base-url",
        fixed_sim.base_url,
        "-n",
        "6",
        "-c",
        "1",
        "--out",
        "w",
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert "batchrun: async, concurrency" not in result.output  # --quiet
    manifest = json.loads((tmp_path / "w" / "bench.json").read_text())
    for run in manifest["runs"]:
        records = [
            json.loads(l) for l in (tmp_path / "w" / "runs" / run["name"] / "records.jsonl").read_text().splitlines()
        ]
        span = max(r["end_s"] for r in records) - min(r["sent_s"] for r in records)
        assert run["wall_time_s"] == pytest.approx(span), run["name"]  # no client setup inside
    rows = {r["mode"]: r for r in json.loads((tmp_path / "w" / "summary.json").read_text())["bench"]["rows"]}
    # Six 40 ms requests: the SDK client's 0.1-0.27 s setup inside the sync wall time made this
    # about 2x; what is left is the SDK's own per-request cost.
    assert rows["async"]["efficiency"] < 1.3


def test_the_built_in_endpoint_is_noisy_and_seeded_per_bench(tmp_path) -> None:
    args = [
        "bench",
        str(SAMPLES / "prompts.csv"),
        "-n",
        "5",
        "-c",
        "2",
        "--no-sync",
        "-q",
        "--builtin-option",
        "fixed_ttft_s=0.001",
        "--builtin-option",
        "fixed_itl_s=0",
    ]
    seeds = []
    for name in ("s1", "s2"):
        assert invoke(*args, "--out", name).exit_code == 0
        doc = json.loads((tmp_path / name / "summary.json").read_text())
        assert doc["builtin_endpoint"]["fresh_jitter"] is True and doc["builtin_endpoint"]["fixed_ttft_s"] == 0.001
        seeds.append(doc["builtin_endpoint"]["seed"])
    assert seeds[0] != seeds[1]
    bad = invoke(*args[:-4], "--builtin-option", "ttft_s=fast", "--out", "s3")
    assert bad.exit_code == 2 and "ttft_s takes a float" in bad.output


def test_report_rebuilds_an_interrupted_bench(fixed_sim, tmp_path) -> None:
    """A bench killed after some runs has bench.json (rewritten after each run) and their records."""
    assert (
        invoke(
            "bench",
            str(SAMPLES / "prompts.csv"),
            "--base-url",
            fixed_sim.base_url,
            "-n",
            "6",
            "-c",
            "1,2",
            "--no-sync",
            "--out",
            "i",
            "-q",
        ).exit_code
        == 0
    )
    for name in ("summary.json", "report.md", "report.html"):
        (tmp_path / "i" / name).unlink()
    manifest = json.loads((tmp_path / "i" / "bench.json").read_text())
    manifest["runs"] = manifest["runs"][:1]  # as if stopped during the second run
    (tmp_path / "i" / "bench.json").write_text(json.dumps(manifest))
    result = invoke("report", "i", "-q")
    assert result.exit_code == 0, result.output
    assert "async-c1-r1" in (tmp_path / "i" / "report.md").read_text()


def test_compare_pools_every_repeat_of_the_bench_level(fixed_sim, tmp_path) -> None:
    args = [
        "bench",
        str(SAMPLES / "prompts.csv"),
        "--base-url",
        fixed_sim.base_url,
        "-n",
        "8",
        "-c",
        "2",
        "--no-sync",
        "--repeat",
        "2",
        "-q",
        "--warmup",
        "0",
    ]
    for name in ("a", "b"):
        assert invoke(*args, "--out", name).exit_code == 0
    result = invoke("compare", "a", "b", "--format", "json")
    doc = json.loads(result.stdout)
    ttft = next(f for f in doc["figures"] if f["name"] == "ttft_p50")
    assert (ttft["n_baseline"], ttft["n_current"]) == (16, 16)  # both repeats, not the first
    assert "c=2, 16 requests, 2 repeats pooled" in doc["baseline"]
    other = invoke(
        "bench",
        str(SAMPLES / "prompts.csv"),
        "--base-url",
        fixed_sim.base_url,
        "-n",
        "4",
        "-c",
        "4",
        "--no-sync",
        "-q",
        "--out",
        "c",
    )
    assert other.exit_code == 0
    refused = invoke("compare", "a", "c")
    assert refused.exit_code == 2 and "did not measure c=2" in refused.output
    run = invoke("compare", "a", "a/runs/async-c2-r1")
    assert run.exit_code == 2 and "bench" in run.output and "run" in run.output


def test_ctrl_c_keeps_what_the_bench_measured(fixed_sim, tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchrun",
            "bench",
            str(SAMPLES / "prompts.csv"),
            "--base-url",
            fixed_sim.base_url,
            "-n",
            "500",
            "-c",
            "1",
            "--no-sync",
            "-q",
            "--out",
            "x",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": root},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    records = tmp_path / "x" / "runs" / "async-c1-r1" / "records.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not records.exists() or len(records.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 130, output
    doc = json.loads((tmp_path / "x" / "summary.json").read_text())
    [row] = doc["bench"]["rows"]
    assert doc["interrupted"] is True and 5 <= row["n"] < 500 and row["errors"] == 0
    assert "async-c1-r1 partly" in output


def _records(out: Path, run: str) -> list[dict]:
    return [json.loads(line) for line in (out / "runs" / run / "records.jsonl").read_text().splitlines()]


def test_a_level_with_failures_says_so_everywhere_and_is_not_recommended(fixed_sim, tmp_path) -> None:
    """9 of 20 prompts fail on their first send of an identical body (a sim directive): the
    warm-up pass (its own body, max_tokens 1) and c=1 meet the failures, c=4 (the second send)
    does not. c=1 is marked in all four outputs and never recommended."""
    texts = [
        f"t19 failures row {i}" + (" [[sim:error=500x1]]" if i % 20 in (1, 3, 5, 7, 9, 11, 13, 15, 17) else "")
        for i in range(20)
    ]
    prompts = write_prompts(tmp_path / "p.csv", texts)
    result = invoke(
        "bench",
        str(prompts),
        "--base-url",
        fixed_sim.base_url,
        "-n",
        "20",
        "-c",
        "1,4",
        "--no-sync",
        "--warmup",
        "0",
        "--out",
        "f",
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "f"
    assert sum(r["status"] != "ok" for r in _records(out, "async-c1-r1")) == 9
    assert all(r["status"] == "ok" for r in _records(out, "async-c4-r1"))
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text in (result.output, md, html):
        assert "9/20 (45%)" in text  # the failed column, next to its req/s
        assert "async-c1-r1: 9/20 failed (45%): its req/s and speedup count only the 11 that succeeded" in text
        assert "Recommended concurrency: 4 (" in text and "n=20, 0 failed;" in text
        assert "n=20): 9/20 failed (45%), over the 1% allowed" in text  # c=1's line
        assert (
            "Warm-up: 20 prompts sent once before measuring (4 at a time, max_tokens 1), not measured; "
            "9/20 failed (45%)" in text
        )
    doc = json.loads((out / "summary.json").read_text())["bench"]
    c1 = next(r for r in doc["rows"] if r["name"] == "async-c1-r1")
    assert (c1["n"], c1["errors"], c1["failure_share"]) == (20, 9, 0.45)
    assert doc["recommended_concurrency"] == 4 and doc["excluded_levels"] == [1] and doc["max_failure_share"] == 0.01
    assert doc["recommendation_reasons"]["1"] == "9/20 failed (45%), over the 1% allowed"
    assert doc["warmup"]["failed"] == 9 and doc["recommendation"][0].startswith("Recommended concurrency: 4")
    assert json.loads((out / "summary.json").read_text())["summary"]["bench_run"] == "async-c4-r1"


def test_a_5xx_share_on_every_level_leaves_nothing_to_recommend(tmp_path) -> None:
    """The built-in endpoint failing ~30% of requests (seeded): every level is ruled out and the
    throughput-best one is named with its failures; --max-failure-share 0.5 (here through a
    rebuilt report) lets them back in, with the failures beside the figures."""
    result = invoke(
        "bench",
        str(SAMPLES / "prompts.csv"),
        "-n",
        "30",
        "-c",
        "1,2",
        "--out",
        "x",
        "-q",
        *[
            a
            for opt in ("fixed_ttft_s=0.002", "fixed_itl_s=0", "output_tokens=3", "error_500_rate=0.3", "seed=5")
            for a in ("--builtin-option", opt)
        ],
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "x"
    doc = json.loads((out / "summary.json").read_text())["bench"]
    assert doc["recommended_concurrency"] is None and doc["excluded_levels"] == [1, 2]
    assert all(r["errors"] / r["n"] > 0.01 for r in doc["rows"])
    assert (
        doc["recommendation"][0]
        == "No concurrency level can be recommended: every level measured was ruled out (below)."
    )
    best = next(g for g in doc["groups"] if g["mode"] == "async" and g["concurrency"] == doc["best_concurrency"])
    assert f"failed ({best['errors'] * 100 / best['n']:.3g}" in doc["recommendation"][1]
    assert result.stdout.startswith("No concurrency can be recommended: every level measured was ruled out")
    assert result.stdout.splitlines()[1].startswith(f"c={doc['best_concurrency']} measured the most, ")
    manifest = json.loads((out / "bench.json").read_text())
    manifest["max_failure_share"] = 0.5
    (out / "bench.json").write_text(json.dumps(manifest))
    assert invoke("report", "x", "-q").exit_code == 0
    again = json.loads((out / "summary.json").read_text())["bench"]
    rec = next(
        g for g in again["groups"] if g["mode"] == "async" and g["concurrency"] == again["recommended_concurrency"]
    )
    assert f"n=30, {rec['errors']}/30 failed" in again["recommendation"][0]
    report = (out / "report.md").read_text()
    assert "at most 50% failed requests" in report
    # The answer now names a level, its failures beside its n, and says what req/s counts.
    answer = report.split("## Answer\n\n")[1].splitlines()[0]
    assert answer.startswith(f"async at c={rec['concurrency']} is ") and f"n=30 at c={rec['concurrency']} (" in answer
    assert answer.endswith("req/s counts successful requests only.")


def _long_prompts(tag: str, n: int) -> list[str]:
    # ~300 characters each, distinct from the first character: the sim's prefix cache (blocks of
    # 64 characters) can only have one from having seen that very prompt.
    return [f"{tag} {i} " + "every request of this prompt shares nothing with another one " * 5 for i in range(n)]


def test_every_pass_meets_the_same_cache_state_after_the_warm_up(fixed_sim, tmp_path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", _long_prompts("t19 warm", 8))
    result = invoke("bench", str(prompts), "--base-url", fixed_sim.base_url, "-n", "8", "-c", "1", "--out", "w")
    assert result.exit_code == 0, result.output
    out = tmp_path / "w"
    sync, async_ = _records(out, "sync-r1"), _records(out, "async-c1-r1")
    # Nothing of the warm-up is in a measured run: 8 records each, the bench's own ids.
    assert [r["id"] for r in sync] == [r["id"] for r in async_] == [f"q{i}" for i in range(8)]
    # The sync baseline, the first measured pass, already finds every prompt cached, as c=1 does.
    assert all(r["cached_tokens"] > 0 for r in sync + async_)
    assert [r["cached_tokens"] for r in sync] == [r["cached_tokens"] for r in async_]
    rows = {r["name"]: r for r in json.loads((out / "summary.json").read_text())["bench"]["rows"]}
    assert rows["sync-r1"]["cached_share"] == rows["async-c1-r1"]["cached_share"] > 0.5
    statement = "Warm-up: 8 prompts sent once before measuring (1 at a time, max_tokens 1), not measured"
    for text in (result.output, (out / "report.md").read_text(), (out / "report.html").read_text()):
        assert statement in text and "different prompt-cache states" not in text
    warmup = json.loads((out / "summary.json").read_text())["bench"]["warmup"]
    assert (warmup["pass"], warmup["prompts"], warmup["failed"], warmup["max_tokens"]) == (True, 8, 0, 1)
    assert warmup["text"].startswith(statement)


def test_no_warmup_sends_nothing_unmeasured_and_says_the_first_pass_was_cold(fixed_sim, tmp_path) -> None:
    prompts = write_prompts(tmp_path / "p.csv", _long_prompts("t19 cold", 8))
    result = invoke(
        "bench", str(prompts), "--base-url", fixed_sim.base_url, "-n", "8", "-c", "1", "--out", "c", "--no-warmup"
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "c"
    assert all(r["cached_tokens"] == 0 for r in _records(out, "sync-r1"))  # cold: never seen
    assert all(r["cached_tokens"] > 0 for r in _records(out, "async-c1-r1"))  # seen once, by sync
    statement = "No warm-up (--no-warmup): the first pass may see a cold cache; every request sent was measured"
    for text in (result.output, (out / "report.md").read_text(), (out / "report.html").read_text()):
        assert statement in text
        assert "the runs met different prompt-cache states (share of prompt tokens cached: sync-r1 0.0%" in text
    assert json.loads((out / "summary.json").read_text())["bench"]["warmup"]["pass"] is False
    both = invoke("bench", str(prompts), "--base-url", fixed_sim.base_url, "--no-warmup", "--warmup", "2")
    assert both.exit_code == 2 and "--no-warmup sends nothing unmeasured" in both.output


def test_a_bench_rows_speedup_efficiency_and_failures_by_hand() -> None:
    from batchrun.report.bench import bench_analysis

    def rec(i: int, status: str = "ok") -> Record:
        return Record(
            id=str(i),
            row=i,
            status=status,
            sent_s=0.0,
            end_s=0.5,
            ttft_s=0.25,
            latency_s=0.5,
            total_s=0.5,
            completion_tokens=4,
            prompt_tokens=10,
            cached_tokens=5 if i % 2 else 0,
        )

    runs = [
        {
            "name": "sync",
            "mode": "sync",
            "concurrency": 1,
            "repeat": 0,
            "wall_time_s": 4.0,
            "records": [rec(i) for i in range(4)],
        },
        {
            "name": "async-c2",
            "mode": "async",
            "concurrency": 2,
            "repeat": 0,
            "wall_time_s": 1.0,
            "records": [rec(i) for i in range(4)] + [rec(4, "error")],
        },
    ]
    sync, c2 = bench_analysis({"runs": runs})["rows"]
    # sync: 4 ok / 4 s = 1 req/s, the baseline; c=2: 4 ok / 1 s = 4 req/s -> speedup 4, efficiency 4 / 2
    assert (sync["requests_per_s"], sync["speedup"], sync["efficiency"]) == (1.0, 1.0, 1.0)
    assert (c2["requests_per_s"], c2["speedup"], c2["efficiency"]) == (4.0, 4.0, 2.0)
    # 1 of 5 attempted failed; cached 5 + 5 of 4 x 10 prompt tokens of the ok records
    assert (c2["n"], c2["errors"], c2["failure_share"], c2["cached_share"]) == (5, 1, 0.2, 0.25)


# ---------------------------------------------------------------- the default bench, end to end

FAST = [a for opt in ("fixed_ttft_s=0.002", "fixed_itl_s=0.0005", "output_tokens=4") for a in ("--builtin-option", opt)]


def _svg(html: str, alt: str) -> ET.Element:
    """The plot whose alt text starts with `alt`, parsed."""
    start = html.index(f'aria-label="{alt}')
    return ET.fromstring(html[html.index("<svg", start) : html.index("</div>", start)])


def test_the_default_bench_leads_every_view_with_the_answer(tmp_path) -> None:
    """No -c, no -n: the default levels share a time budget (here 1 s, against a fast built-in
    endpoint), progress shows per run on stderr, and the console, report.md and report.html
    open with the speedup of the recommended level and why, then the SIMULATED banner."""
    result = invoke("bench", str(SAMPLES / "prompts.csv"), "--time-budget", "1", "--out", "q", *FAST)
    assert result.exit_code == 0, result.output
    out = tmp_path / "q"
    doc = json.loads((out / "summary.json").read_text())["bench"]
    assert [r["name"] for r in doc["rows"]] == ["sync-r1", "async-c1-r1", "async-c4-r1", "async-c16-r1", "async-c64-r1"]
    rec = doc["recommended_concurrency"]
    sp = doc["speedup"][str(rec)]
    assert sp["ci_low"] <= sp["estimate"] <= sp["ci_high"] and sp["sync_n"] >= 10
    answer = doc["answer"]
    assert answer[0].startswith(f"async at c={rec} is ") and "(95% interval " in answer[0]
    assert answer[0].endswith(f"; n={sp['n']} at c={rec}, n={sp['sync_n']} sync.")
    assert answer[1].startswith(f"Recommended c={rec} because ")
    assert result.stdout.splitlines()[: len(answer)] == answer
    md = (out / "report.md").read_text().split("\n\n")
    assert md[: 2 + len(answer)] == ["# batchrun bench report", "## Answer", *answer]
    assert md[2 + len(answer)] == "## Endpoint" and "SIMULATED ENDPOINT" in md[3 + len(answer)]
    html = (out / "report.html").read_text()
    body = html[html.index("<body>") :]
    assert body.index("<h2>Answer</h2>") < body.index(f"<p>{answer[0]}</p>") < body.index("SIMULATED ENDPOINT")
    # Progress: a plain line per run (stderr is not a terminal here), with its counts.
    for label in ("sync (run 1/5)", "async c=1 (run 2/5)", "async c=64 (run 5/5)"):
        assert any(
            line.startswith(f"batchrun: {label}: ") and " requests, ok " in line for line in result.stderr.splitlines()
        ), label
    # The plots mark the sync baseline's point and the recommended level.
    throughput = _svg(html, "throughput vs concurrency")
    marks = {g.get("data-name"): g for g in throughput.iter("g") if g.get("class") in ("series", "mark")}
    assert marks["sync baseline (c=1)"].find("circle") is not None and f"recommended c={rec}" in marks
    latency = _svg(html, "latency and TTFT vs concurrency")
    assert any(g.get("data-name") == f"recommended c={rec}" for g in latency.iter("g"))


def test_a_first_bench_with_no_prompts_measures_the_bundled_sample(tmp_path) -> None:
    """`batchrun bench` alone: the default levels and time budget over the sample shipped with the
    package, said in one line (here on a 1 s budget against a fast built-in endpoint)."""
    config = BenchConfig.from_options()
    assert config.sample and config.run.input.path == SAMPLE and config.time_budget_s == DEFAULT_TIME_BUDGET_S
    result = invoke("bench", "--time-budget", "1", "--out", "q", "-q", *FAST)
    assert result.exit_code == 0, result.output
    said = (
        f"batchrun: no prompts given: benching the built-in sample of 44 prompts ({SAMPLE}); give a file to bench yours"
    )
    assert said in result.stderr.splitlines()  # also with -q: the figures are not of the user's prompts
    doc = json.loads((tmp_path / "q" / "summary.json").read_text())
    assert [r["name"] for r in doc["bench"]["rows"]][:2] == ["sync-r1", "async-c1-r1"]
    assert doc["bench"]["answer"][0].startswith("async at c=")
    sent = {r.id for r in read_records(tmp_path / "q" / "runs" / "sync-r1" / "records.jsonl")}
    assert sent <= {f"s{i:03d}" for i in range(1, 45)} | {f"s{i:03d}#{lap}" for i in range(1, 45) for lap in (1, 2, 3)}
    assert "sample" not in json.loads((tmp_path / "q" / "bench.json").read_text())["config"]
    given = invoke("bench", str(SAMPLES / "prompts.csv"), "--time-budget", "0.5", "-c", "2", "--no-sync", "-q", *FAST)
    assert given.exit_code == 0 and "no prompts given" not in given.output  # a file given: no such line


def test_the_sample_is_package_data_and_its_help_counts_it_right() -> None:
    import tomllib

    from batchrun.inputs.scan import count_rows

    assert count_rows(SAMPLE) == 44  # the number --help and the announcement name
    (argument,) = [o.on("bench") for o in options.of("bench") if o.name == "input"]
    assert "a built-in sample of 44 prompts" in argument.help
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["package-data"]["batchrun"]
    assert any(SAMPLE.relative_to(SAMPLE.parent.parent).match(pattern) for pattern in shipped)


def test_quiet_shows_no_progress(tmp_path) -> None:
    result = invoke(
        "bench", str(SAMPLES / "prompts.csv"), "--time-budget", "0.5", "-c", "2", "--no-sync", "-q", "--out", "q", *FAST
    )
    assert result.exit_code == 0, result.output
    assert "requests, ok" not in result.stderr and result.stdout.startswith("async at c=2: ")


def test_a_synthetic_bench_sized_by_its_time_budget_generates_its_prompts(fixed_sim, tmp_path) -> None:
    # No -n: the levels are sized as they run, so the prompts generated must cover the most a level may take.
    result = invoke(
        "bench",
        "--synthetic",
        "prompt_tokens=20,output_tokens=5",
        "--base-url",
        fixed_sim.base_url,
        "-c",
        "1",
        "--no-sync",
        "--time-budget",
        "0.5",
        "--out",
        str(tmp_path / "syn"),
        "-q",
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "syn" / "runs" / "async-c1-r1" / "records.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["status"] == "ok" for line in lines)
