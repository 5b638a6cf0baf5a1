"""`run --ray`: the worker loop of --workers as Ray actors on a local cluster (one per module, 2
CPUs) gives the rows one process gives, holds --rpm across actors, leaves every row exactly
once after a killed actor or an interrupted run (then --resume), and never logs the API key.

Without Ray installed the cluster tests are skipped; the checks that --ray then fails clearly
and that a plain run never imports Ray run either way."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
from promptfiles import write_prompts
from test_workers import Run, assert_each_row_once, assert_same_rows, invoke, records, results, slow_sim  # noqa: F401 (a fixture)

from batchrun.engine.ray_plan import Node, actor_count, is_loopback, loopback_problem
from batchrun.sim import SimConfig, SimProcess

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install -e '.[ray]')")
KEY = "sk-raytest-0123456789abcdef"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """One local Ray cluster for the module (about 5-10 s to start); runs in this process join it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, namespace="batchrun", logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def keyed_sim() -> Iterator[SimProcess]:
    """Fast; requires the API key (401 otherwise); announces limits far above what a test sends."""
    with SimProcess(SimConfig(fast=True, api_key=KEY, rpm=600_000, tpm=60_000_000)) as server:
        yield server


def ray_flags(sim: SimProcess, *more: str) -> list[str]:
    return ["--base-url", sim.base_url, "-q", "--ray", "--workers", "2", *more]


# --- the plan, without a cluster ---
def test_actor_count_is_cluster_cpus_minus_one_unless_given() -> None:
    assert actor_count(None, 2, 1) == 1
    assert actor_count(None, 64, 1) == 63
    assert actor_count(None, 64, 2) == 31
    assert actor_count(None, 1, 1) == 1  # never zero
    assert actor_count(5, 2, 1) == 5


def test_a_loopback_endpoint_is_refused_when_other_nodes_cannot_reach_it() -> None:
    here = Node("a", "10.0.0.1", 8)
    there = Node("b", "10.0.0.2", 8)
    url = "http://127.0.0.1:8000/v1"
    assert is_loopback(url) and is_loopback("http://localhost:1/v1") and is_loopback("http://[::1]:1/v1")
    assert not is_loopback("http://10.0.0.1:8000/v1") and not is_loopback("https://api.openai.com/v1")
    assert loopback_problem(url, url, [here], "10.0.0.1", client=False) is None
    problem = loopback_problem(url, url, [here, there], "10.0.0.1", client=False)
    assert problem is not None and "10.0.0.2" in problem and "loopback" in problem
    assert loopback_problem(url, url, [here], "10.0.0.1", client=True) is not None  # ray://: never here
    assert loopback_problem("http://10.0.0.1:8000/v1", "x", [here, there], "10.0.0.1", client=True) is None


def test_a_plain_run_never_imports_ray_and_ray_missing_is_a_clear_usage_error(
    fast_sim: SimProcess, tmp_path: Path
) -> None:
    """In a fresh interpreter: a plain run leaves Ray unimported (installed or not); with `import
    ray` made impossible, --ray exits 2 naming what to install."""
    write_prompts(tmp_path / "p.csv", 3)
    script = (
        "import sys\nfrom typer.testing import CliRunner\nfrom batchrun.cli import app\n"
        f"plain = CliRunner().invoke(app, ['run', 'p.csv', '-q', '--out', 'a', '--base-url', '{fast_sim.base_url}'])\n"
        "print('plain', plain.exit_code, 'ray' in sys.modules)\n"
        "sys.modules['ray'] = None   # as if not installed\n"
        "ray = CliRunner().invoke(app, ['run', 'p.csv', '-q', '--out', 'b', '--ray'])\n"
        "print('ray', ray.exit_code, ray.output.replace(chr(10), ' '))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("plain", "ray")))
    assert lines["plain"] == "0 False", done.stdout + done.stderr
    assert lines["ray"].startswith("2 ") and 'pip install "ray[client]>=2.9"' in lines["ray"], lines["ray"]


def test_ray_with_a_one_process_option_or_a_bad_address_is_a_usage_error(tmp_path: Path) -> None:
    write_prompts(tmp_path / "p.csv", 3)
    result = invoke(["run", "p.csv", "--ray", "-c", "auto", "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 2 and "--ray" in result.output
    result = invoke(["run", "p.csv", "--ray-address", "head", "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 2 and "--ray" in result.output


# --- runs on the local cluster ---
@needs_ray
def test_ray_actors_give_the_rows_one_process_gives_at_the_rate_asked(
    cluster: Any, keyed_sim: SimProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row for row as one process. --rpm 2400 (40/s, a one-second burst of 40) holds for the run,
    not per actor: the endpoint counts each request once and refuses none, and no second of sends
    holds more than the burst and a second's refill (two actors pacing alone would put up to 80
    in it). The key reached the actors (the endpoint answers 401 without it) and appears nowhere
    in Ray's session directory (its logs included)."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    n, per_s = 100, 40
    write_prompts(tmp_path / "p.csv", n)
    base = ["run", "p.csv", "--base-url", keyed_sim.base_url, "-q", "-c", "16"]
    assert invoke([*base, "--out", "one"]).exit_code == 0
    before = keyed_sim.stats()
    two = invoke([*base, "--out", "two", "--ray", "--workers", "2", "--rpm", str(per_s * 60)])
    assert two.exit_code == 0, two.output
    after = keyed_sim.stats()
    assert "2 Ray actors" in two.output
    assert_same_rows(tmp_path / "one", tmp_path / "two")

    assert after["requests"] - before["requests"] == n and after["rate_limited"] == before["rate_limited"]
    limits = json.loads((tmp_path / "two" / "summary.json").read_text())["summary"]["rate_limits"]
    assert limits["attempts"] == n and limits["paced"]["rpm"] == per_s * 60
    sent = sorted(a["sent_s"] for r in records(tmp_path / "two") for a in r["attempt_log"])
    assert len(sent) == n
    busiest = max(sum(1 for t in sent[i:] if t < start + 1.0) for i, start in enumerate(sent))
    assert busiest <= 2 * per_s + 1
    assert sent[-1] - sent[0] >= (n - per_s) / per_s * 0.95  # lower bound only: slow can only lengthen

    assert _session_files_with(cluster, KEY.encode()) == []


@needs_ray
def test_a_killed_actor_leaves_every_row_once_with_faults(cluster: Any, slow_sim: SimProcess, tmp_path: Path) -> None:
    """1,000 rows with 8% injected faults (retried); one actor ray.kill()ed mid-run: its rows are
    sent again by the other, and every row is recorded ok exactly once."""
    n = 1000
    write_prompts(tmp_path / "p.csv", n)
    killed: list[str] = []
    killer = threading.Thread(
        target=_kill_one_actor, args=(cluster, tmp_path / "o" / "records.jsonl", n // 4, killed), daemon=True
    )
    killer.start()
    result = invoke(
        ["run", "p.csv", *ray_flags(slow_sim, "--out", "o", "-c", "32", "--max-retry-wait", "0.05", "--retries", "6")]
    )
    killer.join(10)
    assert killed, "no actor was killed"
    assert result.exit_code == 0, result.output
    assert "ended unexpectedly" in result.output
    assert_each_row_once(tmp_path / "o", n)
    assert Counter(r["id"] for r in records(tmp_path / "o")).most_common(1)[0][1] == 1


@needs_ray
def test_an_interrupted_ray_run_resumes_exactly_once(cluster: Any, slow_sim: SimProcess, tmp_path: Path) -> None:
    """A driver joining the cluster by address, Ctrl-C'd mid-run: exit 130, its actors gone; then
    --resume (on the same cluster): every row ok exactly once."""
    n = 600
    write_prompts(tmp_path / "p.csv", n)
    out = tmp_path / "o"
    flags = [
        "--base-url",
        slow_sim.base_url,
        "-q",
        "-c",
        "32",
        "--workers",
        "2",
        "--max-retry-wait",
        "0.05",
        "--retries",
        "6",
    ]
    address = cluster.get_runtime_context().gcs_address
    run = Run(["run", "p.csv", "--out", "o", "--ray-address", address, *flags], tmp_path)
    run.wait_for_records(out / "records.jsonl", n // 3, timeout_s=90)
    os.killpg(run.proc.pid, signal.SIGINT)
    assert run.finish() == 130, "".join(run.lines)[-3000:]
    assert json.loads((out / "summary.json").read_text())["summary"]["run"]["interrupted"] is True
    ok_first = {r["id"] for r in records(out) if r["status"] == "ok"}
    assert 0 < len(ok_first) < n
    _wait_no_batchrun_actors(cluster)

    resumed = invoke(["run", "--resume", "o", "--ray", *flags])
    assert resumed.exit_code == 0, resumed.output
    assert_each_row_once(out, n)


@needs_ray
def test_the_watchdog_kills_its_roots_and_their_descendants_once_the_driver_pipe_ends() -> None:
    """Without a cluster: a root that ignores SIGTERM and its child that does too are SIGKILLed
    when the pipe ends; a process outside the tree is left alone."""
    import psutil
    import ray  # noqa: F401 (puts the psutil Ray ships on sys.path)

    from batchrun.engine.ray_watchdog import running, watch

    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    root = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {stubborn!r}]); {stubborn}",
        ]
    )
    bystander = subprocess.Popen([sys.executable, "-c", stubborn])
    tree = [psutil.Process(root.pid)]
    try:
        deadline = time.monotonic() + 30
        while len(tree) < 2 and time.monotonic() < deadline:
            tree = [psutil.Process(root.pid), *psutil.Process(root.pid).children()]
            time.sleep(0.01)
        assert len(tree) == 2, "the root did not start its child"
        read, write = os.pipe()
        killed: list[int] = []
        with open(read, "rb") as pipe:
            watcher = threading.Thread(target=lambda: killed.append(watch([root.pid], pipe, poll_s=0.05)))
            watcher.start()
            os.close(write)  # the driver is gone
            watcher.join(30)
        assert killed == [2]
        deadline = time.monotonic() + 30  # a SIGKILL takes effect soon, not at once
        while running(tree) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running(tree) == []
        assert running([psutil.Process(bystander.pid)]) != []
    finally:
        for proc in running(tree):
            proc.kill()
        bystander.kill()
        for proc in (root, bystander):
            proc.wait()


@needs_ray
def test_a_sigkilled_driver_leaves_no_process_of_its_cluster_behind(
    slow_sim: SimProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain --ray starts a local cluster as the driver's children. The driver SIGKILLed once its
    actors send: every process of that cluster (the driver's descendants just before the kill, and
    any process naming the run's own Ray temp dir) is gone within 30 s. Ray alone ends the GCS,
    the raylet and the actors, but leaves the DashboardAgent and the RuntimeEnvAgent for a minute."""
    import psutil
    import ray  # noqa: F401 (puts the psutil Ray ships on sys.path)

    from batchrun.engine.ray_watchdog import running

    ray_tmp = tempfile.mkdtemp(prefix="brray", dir="/tmp")  # short: Ray's socket paths live under it
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # start a cluster, never join one
    write_prompts(tmp_path / "p.csv", 20_000)
    run = Run(["run", "p.csv", *ray_flags(slow_sim, "--out", "o", "-c", "4")], tmp_path)
    cluster: list[Any] = []
    try:
        run.wait_for_records(tmp_path / "o" / "records.jsonl", 100, timeout_s=120)
        driver = psutil.Process(run.proc.pid)
        cluster = driver.children(recursive=True) + [p for p in psutil.process_iter() if _names(p, ray_tmp)]
        assert any("raylet" in _cmdline(p) for p in cluster), [_cmdline(p) for p in cluster]
        run.proc.kill()
        killed_at = time.monotonic()
        run.finish()
        left = running(cluster)
        while left and time.monotonic() - killed_at < 45:
            time.sleep(0.1)
            left = running(cluster)
        took = time.monotonic() - killed_at
        assert not left and took <= 30, f"after {took:.1f} s still running: {[_cmdline(p)[:80] for p in left]}"
    finally:
        for proc in running(cluster):
            proc.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _cmdline(proc: Any) -> str:
    import psutil

    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return "?"


def _names(proc: Any, text: str) -> bool:
    return text in _cmdline(proc)


def _kill_one_actor(ray: Any, path: Path, n: int, killed: list[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            names = sorted(
                a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("batchrun-")
            )
            if names:
                ray.kill(ray.get_actor(names[0], namespace="batchrun"))
                killed.append(names[0])
                return
        time.sleep(0.005)


def _wait_no_batchrun_actors(ray: Any, timeout_s: float = 20) -> None:
    """No actor outlives its driver (Ray ends a dead driver's actors)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("batchrun-")]
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(f"actors still alive: {left}")


def _session_files_with(ray: Any, needle: bytes) -> list[str]:
    """Files under this cluster's session directory (logs, and Ray's other files) holding `needle`."""
    from ray._private.worker import _global_node

    root = Path(_global_node.get_session_dir_path())
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 64 << 20:
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found
