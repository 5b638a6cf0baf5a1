"""A small run pays only for what it uses: heavy libraries load where they are needed.

Each check runs in a fresh interpreter (this test process has long since imported everything),
and looks at sys.modules: deterministic, not timed. The timing is in bench/bench_startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import openai

from batchrun.endpoint import attempt

# matplotlib is no longer a dependency at all (plots are SVG from report/svg.py); it stays on the
# list so that nobody brings it back onto the run path unnoticed. httpx/httpx2 come with openai;
# pydantic with openai, and with typer >= 0.28 (pyproject caps typer below it for this reason).
HEAVY = ("matplotlib", "openai", "httpx", "httpx2", "pydantic", "pandas", "pyarrow", "numpy", "jsonschema")


def _loaded_after(code: str, names: tuple[str, ...] = HEAVY) -> list[str]:
    script = code + f"\nimport json, sys\nprint(json.dumps([m for m in {names!r} if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_loading_the_cli_and_the_run_path_imports_no_heavy_library() -> None:
    loaded = _loaded_after(
        "import batchrun.cli, batchrun.pipeline, batchrun.report.summary, "
        "batchrun.report.limits, batchrun.report.plots, batchrun.endpoint.transport"
    )
    assert loaded == []


def test_a_one_row_run_loads_no_heavy_library_nor_the_batch_api_flow(tmp_path: Path) -> None:
    """The whole run path: reading, the request with the SDK's headers, results.csv, summary and
    all reports with their plots."""
    data = tmp_path / "in.csv"
    data.write_text("id,prompt\nr1,hello\n")
    code = (
        "from batchrun.cli import main\n"
        f"try:\n    main(['run', {str(data)!r}, '--base-url', 'builtin', '-q', '--out', {str(tmp_path / 'out')!r}])\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code"
    )
    assert _loaded_after(code, HEAVY + ("batchrun.batchapi.flow",)) == []
    assert (tmp_path / "out" / "report.html").read_text().count('<div class="plot"') == 4


def test_loading_the_cli_does_not_load_the_run_path() -> None:
    # Each command imports its own work (`--help`, `report`, `compare` never need the engine).
    assert (
        _loaded_after(
            "import batchrun.cli",
            ("aiohttp", "tqdm", "batchrun.pipeline", "batchrun.engine.pool", "batchrun.report.summary"),
        )
        == []
    )


def test_loading_the_cli_does_not_load_the_simulated_endpoint() -> None:
    # `batchrun serve` and the built-in endpoint (in a child process) load it when they start.
    assert _loaded_after("import batchrun.cli", ("batchrun.sim.server", "batchrun.sim.process")) == []


def test_error_type_names_are_the_openai_sdk_class_names() -> None:
    assert attempt.TIMEOUT_ERROR == openai.APITimeoutError.__name__
    assert attempt.CONNECTION_ERROR == openai.APIConnectionError.__name__
    sdk = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
        500: openai.InternalServerError,
        503: openai.InternalServerError,
        418: openai.APIStatusError,
        302: openai.APIStatusError,
    }
    for status, cls in sdk.items():
        assert attempt.status_error_type(status) == cls.__name__, status
        assert issubclass(cls, openai.APIStatusError)


def test_importing_batchrun_loads_only_its_names() -> None:
    """The Python face's names load on first use: `import batchrun` is the package and its version."""
    assert (
        _loaded_after("import batchrun", (*HEAVY, "asyncio", "typer", "tqdm", "batchrun.api", "batchrun.config")) == []
    )


def test_a_python_run_loads_no_heavy_library_until_its_frame(tmp_path: Path) -> None:
    def run(out: str) -> str:
        return (
            "import batchrun\n"
            f"run = batchrun.run(['hello'], base_url='builtin', quiet=True, out={str(tmp_path / out)!r})\n"
            "assert run.ok == 1, run\n"
        )

    assert _loaded_after(run("a"), (*HEAVY, "tqdm", "typer")) == []
    assert _loaded_after(run("b") + "run.frame\n", ("pandas",)) == ["pandas"]
