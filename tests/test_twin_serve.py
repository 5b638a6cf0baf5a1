"""`batchrun fit` and `batchrun serve --like` end to end: a run against the built-in endpoint with
known settings, its twin served by a real `batchrun serve` process, and a run against the twin,
all over loopback sockets.

The tolerance of a timing claim is set by the claim (10%), and each test first checks that its
sample is large enough for the claim to mean something: the source's own distribution-free 95%
interval of each percentile must be well inside it. Failure rates are compared with the 95%
interval of a difference of two binomial shares at the runs' sizes.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from promptfiles import write_prompts
from twinserve import serve_like
from typer.testing import CliRunner

from batchrun.analysis.distribution import percentile
from batchrun.analysis.stats import proportion_difference, quantile_ci
from batchrun.cli import app
from batchrun.sim import SimProcess
from batchrun.store.records import CANCELLED, OK, Record, read_records
from batchrun.twin import sim_config
from batchrun.twin.fit import failure_kind
from batchrun.twin.model import GRID, Failure, Failures, Level, Output, TwinModel

WORDS = "river stone bridge market signal pattern garden window letter answer".split()


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def prompts(path: Path, n: int, chars: int = 256) -> Path:
    """n distinct prompts of about `chars` characters (64 tokens at 4 characters per token)."""
    texts = []
    for i in range(n):
        words = [f"question {i}:"]
        while sum(len(w) + 1 for w in words) < chars:
            words.append(WORDS[(i + len(words)) % len(WORDS)])
        texts.append(" ".join(words)[:chars])
    return write_prompts(path, texts)


def builtin(*options: str) -> list[str]:
    return ["--base-url", "builtin", *(x for o in options for x in ("--builtin-option", o))]


def run(data: Path, out: str, *args: str) -> list[Record]:
    result = invoke("run", str(data), "--out", out, "-q", "--retries", "0", *args)
    assert result.exit_code == 0, result.output
    return [r for r in read_records(Path(out) / "records.jsonl") if r.status != CANCELLED]


def ok_values(records: list[Record], key: str) -> list[float]:
    return sorted(getattr(r, key) for r in records if r.status == OK)


def test_a_run_against_the_twin_gives_the_sources_ttft_and_latency_within_10_percent(tmp_path: Path) -> None:
    """Known settings: TTFT 50 ms, 5 ms per token, 8 slots under 16 requests (so half of them
    queue), 5% HTTP 500s, natural answer lengths (lognormal, mean 12, sigma 0.3) under max_tokens 64.
    (With sigma 0.6 the latency p90's interval reaches about 5% at this n: 0.3 keeps it near 3%.)"""
    data = prompts(tmp_path / "p.csv", 480)
    settings = [
        "ttft_s=0.05",
        "itl_s=0.005",
        "max_concurrency=8",
        "error_500_rate=0.05",
        "output_tokens_mean=12",
        "output_tokens_sigma=0.3",
        "fresh_jitter=true",
        "seed=3",
    ]
    source = run(data, "source", "-c", "16", "--max-tokens", "64", *builtin(*settings))
    assert invoke("fit", "source", "--out", "twin.json", "-q").exit_code == 0
    with serve_like("twin.json") as url:
        twin = run(data, "twin", "-c", "16", "--max-tokens", "64", "--base-url", url)
    for key in ("ttft_s", "latency_s"):
        s, t = ok_values(source, key), ok_values(twin, key)
        for q in (50, 90):
            measured = percentile(s, q)
            low, high = quantile_ci(s, q)  # type: ignore[misc]
            # n large enough: with half-widths under 5%, two runs of the source itself differ by
            # sampling noise alone with a spread (sd) under 5% x sqrt(2) / 1.96 = 3.6%, so 10% is
            # nearly three of those out.
            assert max(measured - low, high - measured) / measured < 0.05, (key, q, len(s))
            change = percentile(t, q) / measured - 1
            assert abs(change) < 0.10, f"{key} p{q}: source {measured:.4f}, twin {percentile(t, q):.4f} ({change:+.1%})"


def failure_counts(records: list[Record]) -> Counter[str]:
    return Counter(k for r in records for a in r.attempt_log if (k := failure_kind(a)) is not None)


def test_serve_like_a_run_dir_reproduces_failure_kinds_and_rates(tmp_path: Path) -> None:
    """HTTP 500 / 503 / 429, cut and malformed streams and stalls (a timeout at the client's 3 s),
    each at a known rate; the twin is fitted from the run directory as it starts. At 16 in flight
    the client keeps up on a busy machine: no answer but a stalled one comes near the timeout."""
    n = 1500
    data = prompts(tmp_path / "p.csv", n, chars=40)
    faults = [
        "fixed_ttft_s=0.002",
        "fixed_itl_s=0.001",
        "output_tokens=4",
        "error_500_rate=0.04",
        "error_503_rate=0.03",
        "error_429_rate=0.02",
        "cut_rate=0.03",
        "malformed_rate=0.02",
        "stall_rate=0.01",
    ]
    source = run(data, "source", "-c", "16", "--timeout", "3", *builtin(*faults))
    with serve_like("source") as url:
        twin = run(data, "twin", "-c", "16", "--timeout", "3", "--base-url", url)
    seen, got = failure_counts(source), failure_counts(twin)
    assert set(seen) == set(got) == {"http_500", "http_503", "http_429", "cut", "malformed", "timeout"}
    for kind in seen:
        diff = proportion_difference(seen[kind], len(source), got[kind], len(twin))
        assert diff is not None and diff.low <= 0 <= diff.high, (kind, seen[kind], got[kind], diff)


def test_the_twin_copies_wire_quirks_rate_limit_headers_and_the_model_name(tmp_path: Path) -> None:
    data = prompts(tmp_path / "p.csv", 40, chars=40)
    quirks = [
        "fixed_ttft_s=0.002",
        "fixed_itl_s=0.001",
        "output_tokens=6",
        'usage_placement="finish"',
        "tokens_per_chunk=2",
        "rpm=60000",
        'ratelimit_headers="anthropic"',
        'models=["acme-7b"]',
    ]
    run(data, "source", "-c", "4", *builtin(*quirks))
    assert invoke("fit", "source", "--out", "twin.json", "--no-report", "-q").exit_code == 0
    with serve_like("twin.json") as url:
        twin = run(data, "twin", "-c", "4", "--base-url", url)
    assert {(r.usage_chunk, r.completion_tokens, r.output_chunks, r.model) for r in twin} == {
        ("finish", 6, 3, "acme-7b")
    }
    limits = json.loads(Path("twin/summary.json").read_text())["summary"]["rate_limits"]["provider"]
    assert (limits["source"], limits["requests_per_min"]) == ("anthropic", 60000)


def test_fit_on_a_bench_sweep_gives_a_level_per_concurrency_and_a_report(tmp_path: Path) -> None:
    data = prompts(tmp_path / "p.csv", 40, chars=40)
    result = invoke(
        "bench",
        str(data),
        "-c",
        "1,4",
        "-n",
        "40",
        "--no-sync",
        "--max-tokens",
        "4",
        "--out",
        "b",
        "-q",
        *builtin("ttft_s=0.004", "itl_s=0.0005", "max_concurrency=2", "prefill_s_per_token=0"),
    )
    assert result.exit_code == 0, result.output
    result = invoke("fit", "b", "--out", "out/twin.json")
    assert result.exit_code == 0, result.output
    twin = json.loads(Path("out/twin.json").read_text())
    assert [lv["in_flight"] for lv in twin["levels"]] == [1.0, 4.0]
    assert [s["name"] for s in twin["sources"]] == ["b:async-c1-r1", "b:async-c4-r1"]
    assert "the largest difference is" in result.output
    assert "note: TTFT and chunk gaps vs concurrency: levels at in flight 1, 4;" in result.output
    page = Path("out/twin.html").read_text()
    assert page.count('<div class="plot"') == 2 + 1 + 3 * 2  # per-level lines, throughput, CDFs
    assert "Measured vs twin" in Path("out/twin.md").read_text()


def test_a_twin_config_serves_from_a_child_process() -> None:
    """What a Python caller does: a TwinModel -> sim_config -> SimProcess (the config, twin
    included, crosses to the child as JSON)."""
    flat = lambda v: (v,) * len(GRID)  # noqa: E731
    twin = TwinModel(
        levels=(Level(1.0, 30, flat(0.01), 30, flat(0.001), 60, flat(1.0)),),
        model="acme-7b",
        output=Output(n=30, stop_n=30, stop_tokens=flat(5.0)),
        failures=Failures(100, (Failure("http_503", 100),)),
    )  # every attempt: 503
    with SimProcess(sim_config(twin)) as sim:
        body = json.dumps({"model": "acme-7b", "messages": [{"role": "user", "content": "hi"}]}).encode()
        request = urllib.request.Request(sim.base_url + "/chat/completions", body, {"Content-Type": "application/json"})
        with contextlib.suppress(urllib.error.HTTPError), urllib.request.urlopen(request, timeout=30):
            raise AssertionError("the twin answered 200; every attempt should be a 503")
        assert sim.stats()["responses"] == {"503": 1}


def test_fit_and_serve_like_refuse_what_is_not_a_run_or_a_twin(tmp_path: Path) -> None:
    Path("empty").mkdir()
    result = invoke("fit", "empty")
    assert result.exit_code == 2 and "not a run or bench directory" in result.output
    result = invoke("fit", "missing")
    assert result.exit_code == 2 and "missing: no such file or directory" in result.output
    Path("bad.json").write_text(json.dumps({"schema": "batchrun.twin/1", "levels": [{"in_flight": 1}]}))
    proc = subprocess.run(
        [sys.executable, "-m", "batchrun", "serve", "--like", "bad.json", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "bad.json: grid: missing" in proc.stderr
    assert "Traceback" not in proc.stderr
