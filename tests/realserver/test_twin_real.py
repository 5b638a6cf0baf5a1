"""The endpoint twin of a real llama-server: a bench sweep against it, `batchrun fit` on the bench
directory as it is, `batchrun serve --like` the twin file, the same sweep against the twin, and per
level TTFT and latency p50/p90 within 10% and throughput within 15% of the real server's.

The set-up, and why:

- A llama-server of its own: 2 slots (-c 1 runs alone, -c 2 is batched, -c 4 queues two), its
  host-memory prompt cache off (`--cache-ram 0`: with it, the bench's warm-up makes every measured
  prompt a cache hit and TTFT a few ms of noise), so each request's prefill is real work.
- Prompts of one length that differ in their first words: a slot's last prompt shares only the
  template's first tokens with the next, so every request is prefilled the same way.
- `ignore_eos` and max_tokens 24: every answer is 24 tokens (a random model stops at random).
- The real server on core 0 and the bench client on core 1 (where the machine has two): unpinned,
  the server's compute thread takes the client's core and the client's event-loop lag p90 grows
  from ~1.5 ms to 6-14 ms, which the twin (a process that needs almost no CPU) does not cause
  again. The twin is not pinned: its timers should fire on time, and on a core shared with the
  machine's other work they fired up to 10 ms late at p90; the client is on core 1 in both runs.

The sample must be able to decide the claim. The twin's percentiles are drawn from the source's
own sample, so they scatter around the source's by sampling noise alone: at TWIN_FACTOR times the
source's count, with a spread (sd) of the source's 95% half-width / 1.96 / sqrt(TWIN_FACTOR). The
source's half-widths must be under PRECISION (asserted): 7.5% gives an sd under 2.8%, so 10% is
over three of those out, and the source's own percentiles stand for the server's within 7.5%.
(5% would need about 2.3 times the requests: on this machine's two shared cores the server's
speed halves and recovers from second to second, and a sweep of 400 requests per level gave
half-widths of 6.6-15% at its widest figure; pooling sweeps does not help, as the speed drifts
between them.) A sweep whose widest half-width is over PRECISION is measured again, afresh, up
to MAX_SWEEPS times, and the most precise is kept.

The twin is fitted net of the client's own delay (its event-loop lag), on the assumption that the
client measuring the twin is delayed as much as the one that measured the server. A load spike
can break that for a level (measured: lag p90 11.8 ms in the twin's -c 1 run against 1.4-2.6 ms
in the real one's, and every figure of that level 18-29% slow): such a level is benched again,
up to TWIN_TRIES times, while its lag p90 is more than LAG_SLACK_S off the real one's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytest
from promptfiles import write_prompts
from twinserve import serve_like

from batchrun.analysis.distribution import percentile
from batchrun.analysis.stats import quantile_ci
from batchrun.store.records import OK, read_records

from .realruns import CLI_TIMEOUT_S, cli_argv, cli_env
from .servers import RealServer, llama_server_command

pytestmark = pytest.mark.realserver

LEVELS = (1, 2, 4)
SLOTS = 2
SWEEP = 400  # measured requests per level against the real server
MAX_SWEEPS = 3
TWIN_FACTOR = 2  # the twin's sweep measures this many times as many
PROMPT_WORDS = 50
MAX_TOKENS = 24
TOLERANCE = 0.10  # TTFT and latency p50 / p90
RPS_TOLERANCE = 0.15  # throughput
PRECISION = 0.075  # the source's 95% half-width of each percentile, relative, at most
LAG_SLACK_S = 0.002  # the twin run's client lag p90 may differ from the real run's by this much
TWIN_TRIES = 3


def pinned(argv: Sequence[str], cpu: int) -> list[str]:
    """`argv` on one core (taskset), where the machine has two and taskset exists."""
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        return list(argv)
    return [taskset, "-c", str(cpu), *argv]


WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an have not but all can they "
    "which one more their about will would there also has when what some time people could other"
).split()


def prompts(path: Path, n: int) -> Path:
    """n prompts of PROMPT_WORDS words after a distinct numbered first line."""
    words = [WORDS[(7 * i) % len(WORDS)] for i in range(PROMPT_WORDS)]
    return write_prompts(path, [f"Request {i:04d}. {' '.join(words)}" for i in range(n)])


def bench(data: Path, url: str, out: Path, n: int, levels: Sequence[int] = LEVELS) -> Path:
    argv = pinned(
        cli_argv(
            "bench",
            data,
            "--base-url",
            url,
            "-c",
            ",".join(map(str, levels)),
            "-n",
            str(n),
            "--max-tokens",
            str(MAX_TOKENS),
            "--extra-body",
            '{"ignore_eos": true}',
            "--no-sync",
            "--no-warmup",
            "--out",
            out,
            "-q",
        ),
        1,
    )
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=cli_env(), stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, f"bench exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return out


@dataclass(frozen=True)
class Figures:
    n: int
    ttft: list[float]  # sorted, seconds
    latency: list[float]
    rps: float  # ok requests over the seconds their runs took


def figures(outs: Sequence[Path], levels: Sequence[int] = LEVELS) -> dict[int, Figures]:
    """Per level, the ok requests of every bench directory in `outs` that ran it, pooled."""
    got = {}
    for c in levels:
        name = f"async-c{c}-r1"
        ok, seconds = [], 0.0
        for out in outs:
            if not (out / "runs" / name).is_dir():
                continue
            rows = {r["name"]: r for r in json.loads((out / "summary.json").read_text())["bench"]["rows"]}
            run = [
                r
                for r in read_records(out / "runs" / name / "records.jsonl")
                if r.status == OK and r.ttft_s is not None
            ]
            ok += run
            seconds += len(run) / rows[name]["requests_per_s"]
        got[c] = Figures(
            len(ok),
            sorted(r.ttft_s for r in ok),
            sorted(r.latency_s for r in ok),  # type: ignore[misc]
            len(ok) / seconds,
        )
    return got


def lag_p90(outs: Sequence[Path], c: int) -> float:
    """The client's event-loop lag p90 over the level's runs in `outs` (bench.json keeps the samples)."""
    samples = sorted(
        x
        for out in outs
        for run in json.loads((out / "bench.json").read_text())["runs"]
        if run["name"] == f"async-c{c}-r1"
        for x in run["loop_lag_s"]
    )
    return percentile(samples, 90)


def widest(real: dict[int, Figures]) -> tuple[float, str]:
    """The largest relative 95% half-width over the levels' percentiles, and which it is."""
    return max(
        (half_width(getattr(f, name), q), f"c={c} {name} p{q} (n={f.n})")
        for c, f in real.items()
        for name in ("ttft", "latency")
        for q in (50, 90)
    )


def half_width(values: list[float], q: int) -> float:
    """The distribution-free 95% interval of the q-th percentile, its larger side over the value."""
    low, high = quantile_ci(values, q)  # type: ignore[misc]
    mid = percentile(values, q)
    return max(mid - low, high - mid) / mid


def table(real: dict[int, Figures], twin: dict[int, Figures]) -> tuple[str, list[str]]:
    """The per-level comparison as Markdown, and every figure outside its tolerance."""
    lines = [
        "| c | n real / twin | figure | real p50 | twin p50 | p50 diff | real p90 | twin p90 | p90 diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    misses = []
    for c in LEVELS:
        r, t = real[c], twin[c]
        for name in ("ttft", "latency"):
            cells = []
            for q in (50, 90):
                a, b = percentile(getattr(r, name), q), percentile(getattr(t, name), q)
                cells += [
                    f"{1000 * a:.1f} ms (±{half_width(getattr(r, name), q):.0%})",
                    f"{1000 * b:.1f} ms",
                    f"{b / a - 1:+.1%}",
                ]
                if abs(b / a - 1) >= TOLERANCE:
                    misses.append(f"c={c} {name} p{q}: real {1000 * a:.1f} ms, twin {1000 * b:.1f} ms")
            lines.append(f"| {c} | {r.n} / {t.n} | {name} | " + " | ".join(cells) + " |")
        change = t.rps / r.rps - 1
        lines.append(
            f"| {c} | {r.n} / {t.n} | throughput | {r.rps:.1f} req/s | {t.rps:.1f} req/s | {change:+.1%} | | | |"
        )
        if abs(change) >= RPS_TOLERANCE:
            misses.append(f"c={c} throughput: real {r.rps:.1f}, twin {t.rps:.1f} req/s")
    return "\n".join(lines), misses


def test_a_twin_fitted_to_a_llama_server_sweep_matches_it_at_every_level(
    llama_binary: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    data = prompts(tmp_path / "prompts.csv", SWEEP)
    started = time.monotonic()
    argv = pinned(llama_server_command(llama_binary, tiny_gguf, "--cache-ram", "0", slots=SLOTS), 0)
    sweeps: dict[Path, tuple[float, str]] = {}
    with RealServer("twin-source", argv, tmp_path / "llama-server.log") as server:
        while len(sweeps) < MAX_SWEEPS and (not sweeps or min(sweeps.values())[0] > PRECISION):
            out = bench(data, server.url, tmp_path / f"real{len(sweeps) + 1}", SWEEP)
            sweeps[out] = widest(figures([out]))
    source = min(sweeps, key=sweeps.__getitem__)
    if sweeps[source][0] > PRECISION:
        # The server's own speed could not be measured to 10% here: the data cannot decide whether the
        # twin matches, which is neither a pass nor a failure of the twin. Said loudly, never silent.
        pytest.skip(
            f"UNDECIDED: no sweep of {len(sweeps)} can decide {TOLERANCE:.0%} (the machine is too noisy): the widest "
            f"95% half-width of each was {[f'{w:.1%} at {where}' for w, where in sweeps.values()]}, over {PRECISION:.1%}"
        )
    real = figures([source])

    fit = subprocess.run(
        cli_argv("fit", source, "--out", tmp_path / "twin.json", "-q"),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
    )
    assert fit.returncode == 0, fit.stderr
    twin_runs: dict[int, Path] = {}
    with serve_like(str(tmp_path / "twin.json")) as url:
        for attempt in range(1, TWIN_TRIES + 1):
            todo = [c for c in LEVELS if c not in twin_runs]
            out = bench(data, url, tmp_path / f"twin{attempt}", SWEEP * TWIN_FACTOR, todo)
            for c in todo:
                if abs(lag_p90([out], c) - lag_p90([source], c)) <= LAG_SLACK_S or attempt == TWIN_TRIES:
                    twin_runs[c] = out
            if len(twin_runs) == len(LEVELS):
                break
    lags = {c: (lag_p90([source], c), lag_p90([twin_runs[c]], c)) for c in LEVELS}
    off = {
        c: f"real {1000 * a:.1f} ms, twin {1000 * b:.1f} ms" for c, (a, b) in lags.items() if abs(a - b) > LAG_SLACK_S
    }
    assert not off, (
        f"the client's lag p90 in the twin's sweep stayed off the real one's (the machine's load changed): {off}"
    )
    twin = {c: figures([twin_runs[c]], [c])[c] for c in LEVELS}

    text, misses = table(real, twin)
    print(
        f"\n{text}\n(real-server twin test: real sweep {source.name} of {len(sweeps)}, twin sweeps "
        f"{sorted({p.name for p in twin_runs.values()})}, client lag p90 real / twin "
        + ", ".join(f"c={c} {1000 * a:.1f} / {1000 * b:.1f} ms" for c, (a, b) in lags.items())
        + f"; {time.monotonic() - started:.0f} s)"
    )
    assert not misses, f"{misses}\n{text}"
