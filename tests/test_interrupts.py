"""Ctrl-C at any moment of `batchrun run`: exit 130, the interruption said in one line, never a
traceback; from the first statement of ours (imports, option parsing, the endpoint check,
sending, the reports) to the end.

The delays count from the moment the entry point has installed its handler, read from the child's
`-X importtime` lines: before that, Python is starting itself (`site`, .pth files) and no code of
ours can run. What runs before the handler is pinned separately: nothing but the tiny package
`__init__`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from promptfiles import write_prompts
from test_workers import slow_sim  # noqa: F401 (a fixture)

from batchrun.sim import SimProcess

# What the console script pip writes for `batchrun = "batchrun.__main__:main"` runs.
CONSOLE_SCRIPT = "import sys; from batchrun.__main__ import main; sys.exit(main())"
ENTRY_READY = "| batchrun.__main__"  # its -X importtime line: the handler is installed


class Started:
    """The `batchrun` command in a child process, stderr read in a thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPROFILEIMPORTTIME": "1"}
        env.pop("OPENAI_API_KEY", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CONSOLE_SCRIPT, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if ENTRY_READY in line:
                self.ready.set()

    def said(self) -> list[str]:
        """stderr without the import-time lines."""
        return [line.rstrip("\n") for line in self.lines if not line.startswith("import time:")]

    def finish(self) -> int:
        code = self.proc.wait(120)
        self._reader.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


@pytest.mark.parametrize("delay_s", [0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.6])
def test_ctrl_c_at_any_moment_exits_130_with_no_traceback(slow_sim: SimProcess, tmp_path: Path, delay_s: float) -> None:
    """A run of a few seconds, Ctrl-C `delay_s` after the entry point's first statement: in the
    imports, the option parsing, the endpoint check or the sending, depending on the machine."""
    write_prompts(tmp_path / "p.csv", 1500)
    run = Started(["run", "p.csv", "--base-url", slow_sim.base_url, "--out", "o", "-q", "-c", "2"], tmp_path)
    assert run.ready.wait(60), "".join(run.lines)[-2000:]
    time.sleep(delay_s)
    run.proc.send_signal(signal.SIGINT)
    code = run.finish()
    said = run.said()
    assert code == 130 and not any("Traceback" in line for line in said), "\n".join(said)
    assert said and said[-1].startswith("batchrun: interrupted"), said
    assert not (tmp_path / "o" / ".batchrun.lock").exists()


def test_nothing_of_batchrun_runs_before_the_ctrl_c_handler() -> None:
    """The entry point's module imports only the package's tiny __init__ before its handler: the
    rest of batchrun (typer, aiohttp, ~0.4 s) loads after it."""
    script = (
        "import sys, json; before = set(sys.modules); import batchrun.__main__ as m; "
        "import signal; print(json.dumps([sorted(set(sys.modules) - before), "
        "signal.getsignal(signal.SIGINT) is m._interrupted]))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    loaded, installed = json.loads(proc.stdout)
    assert installed
    assert [m for m in loaded if m.startswith("batchrun")] == ["batchrun", "batchrun.__main__"]
    assert not {"typer", "click", "aiohttp"} & set(loaded)


def test_the_console_script_is_the_entry_point_with_the_handler() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["scripts"]["batchrun"] == "batchrun.__main__:main"
