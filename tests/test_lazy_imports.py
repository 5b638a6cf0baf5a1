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

from batchrun.endpoint import client

HEAVY = ("matplotlib", "openai", "pandas", "pyarrow", "numpy", "jsonschema")


def _loaded_after(code: str) -> list[str]:
    script = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_loading_the_cli_and_the_run_path_imports_no_heavy_library() -> None:
    loaded = _loaded_after("import batchrun.cli, batchrun.runner, batchrun.report.summary, "
                           "batchrun.report.limits, batchrun.report.plots, batchrun.endpoint.client")
    assert loaded == []


def test_an_online_run_does_not_load_the_batch_api_flow(tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_text("id,prompt\nr1,hello\n")
    code = ("import sys\nfrom batchrun.cli import main\n"
            f"try:\n    main(['run', {str(data)!r}, '--base-url', 'builtin', '-q', '--out', {str(tmp_path / 'out')!r}])\n"
            "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "print('flow loaded' if 'batchrun.batchapi.flow' in sys.modules else 'flow not loaded')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "flow not loaded"
    assert (tmp_path / "out" / "report.html").read_text().count('<div class="plot"') > 0


def test_error_type_names_are_the_openai_sdk_class_names() -> None:
    assert client.TIMEOUT_ERROR == openai.APITimeoutError.__name__
    assert client.CONNECTION_ERROR == openai.APIConnectionError.__name__
    sdk = {400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
           404: openai.NotFoundError, 409: openai.ConflictError, 422: openai.UnprocessableEntityError,
           429: openai.RateLimitError, 500: openai.InternalServerError, 503: openai.InternalServerError,
           418: openai.APIStatusError, 302: openai.APIStatusError}
    for status, cls in sdk.items():
        assert client.status_error_type(status) == cls.__name__, status
        assert issubclass(cls, openai.APIStatusError)
