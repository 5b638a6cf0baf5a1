"""SimProcess (the sim in a child process) and the `serve` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from batchrun.cli import app
from batchrun.sim import SimConfig, SimProcess

ROOT = Path(__file__).resolve().parents[1]


def test_sim_process_serves_the_sync_sdk_and_stops_cleanly() -> None:
    start = time.perf_counter()
    with SimProcess(SimConfig(fast=True, api_key="sk-1")) as sim:
        started = time.perf_counter() - start
        with openai.OpenAI(base_url=sim.base_url, api_key="sk-1", max_retries=0) as client:
            done = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            chunks = list(
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi [[sim:tokens=7]]"}], stream=True
                )
            )
        stats = sim.stats()
        proc = sim._proc
    assert started < 5.0  # ~0.2 s usually; generous for a loaded machine
    assert done.choices[0].message.content
    assert sum(bool(c.choices[0].delta.content) for c in chunks if c.choices) == 7
    assert stats["requests"] == 2 and stats["completed"] == 2
    assert proc is not None and proc.returncode == 0  # stopped on stdin EOF, reaped


async def test_sim_process_works_as_async_context_manager() -> None:
    async with SimProcess(SimConfig(fast=True)) as sim:
        async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="k", max_retries=0) as client:
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "[[sim:error=500]]"}]
                )
        assert sim.stats()["faults"]["error_500"] == 1
        pid = sim.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_sim_process_reports_a_port_in_use() -> None:
    with SimProcess(SimConfig(fast=True)) as first:
        taken = SimProcess(SimConfig(fast=True), port=first.port)
        with pytest.raises(Exception, match="exited with code"):
            taken.start()


def test_serve_rejects_a_bad_option() -> None:
    result = CliRunner().invoke(app, ["serve", "--max-concurrency", "0"])
    assert result.exit_code == 2 and "max-concurrency" in result.output


def test_serve_prints_the_url_and_exits_130_on_ctrl_c(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent("""
        import signal, typer
        signal.signal(signal.SIGINT, signal.default_int_handler)   # a background shell ignores SIGINT
        from batchrun.cli import app
        app()
    """)
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), "serve", "--port", "0", "--fast"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        second = proc.stdout.readline()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "listening on http://127.0.0.1:" in first
    assert second.startswith("export OPENAI_BASE_URL=http://127.0.0.1:") and second.strip().endswith("/v1")
    assert proc.returncode == 130 and "Traceback" not in err
