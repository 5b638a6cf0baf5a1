"""Real OpenAI-compatible servers on an ephemeral 127.0.0.1 port for the real-server tier.

`RealServer` starts one server process, waits until its /health answers, and stops it on every path
(terminate, then kill). `llama_server_command` and `vllm_command` say how to start each kind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

MODEL_NAME = "tiny"  # what both kinds serve the model as
START_TIMEOUT_S = 60.0  # llama-server with a 4 MB model is up in about a second
VLLM_START_TIMEOUT_S = 300.0  # vLLM on CPU imports torch and compiles kernels: 30-120 s here


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerDied(RuntimeError):
    """The server process exited (or never became healthy); the message carries its log's tail."""


@dataclass
class RealServer:
    """One server process. `command(port)` gives its argv; `url` is its /v1 base URL once started."""

    name: str
    argv: Sequence[str]  # without the port: `--port N` is appended
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = START_TIMEOUT_S
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RealServer:
        """Start on a fresh port and wait for /health; raise ServerDied with the log's tail if it fails."""
        self.port = free_port()
        env = {**os.environ, **self.env}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.argv, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerDied(f"{self.name} exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.root}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise ServerDied(f"{self.name} not healthy after {self.start_timeout_s:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the server's whole process group at once (an abrupt crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Terminate (then kill after 20 s) the process group; safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RealServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Backend:
    """A running server kind under test: `timing` is False where its timings mean nothing (vLLM on 2 cores)."""

    kind: str  # "llama-server" or "vllm"
    server: RealServer
    timing: bool
    model: str

    @property
    def url(self) -> str:
        return self.server.url


@dataclass(frozen=True)
class ServerKind:
    """How to make a server of one kind (not started): `new(name, *extra_args)`."""

    kind: str  # "llama-server" or "vllm"
    timing: bool  # False where its timings mean nothing (vLLM on 2 cores)
    new: Callable[..., RealServer]
    chat_args: tuple[str, ...]  # what a chat server of this kind is started with
    embed_args: tuple[str, ...]  # what makes it serve /v1/embeddings


def llama_server_command(binary: Path, model: Path, *extra: str, slots: int = 4) -> list[str]:
    """llama-server on one thread (the client gets the other core), `slots` parallel sequences."""
    return [
        str(binary),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "-c",
        str(1024 * slots),
        "-np",
        str(slots),
        "-t",
        "1",
        "-tb",
        "1",
        "--metrics",
        "--no-webui",
        "--alias",
        MODEL_NAME,
        *extra,
    ]


def vllm_command(python: str, model_dir: Path, *extra: str) -> list[str]:
    """vLLM's OpenAI server on CPU in float32; `vllm serve` would look for a package named vllm."""
    return [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        MODEL_NAME,
        "--host",
        "127.0.0.1",
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "1024",
        "--max-num-seqs",
        "8",
        *extra,
    ]


# vLLM answers a forced tool choice only with a tool-call parser (else HTTP 400); `pythonic` needs no
# special tokens. Its JSON grammar allows unbounded whitespace, which a random model fills until
# max_tokens: structured answers are only complete without it.
VLLM_CHAT_ARGS = (
    "--enable-auto-tool-choice",
    "--tool-call-parser",
    "pythonic",
    "--structured-outputs-config",
    '{"backend": "xgrammar", "disable_any_whitespace": true}',
)
VLLM_EMBED_ARGS = ("--runner", "pooling")
LLAMA_EMBED_ARGS = ("--embeddings", "--pooling", "mean")

VLLM_ENV = {"VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
