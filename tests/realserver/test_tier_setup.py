"""The tier's own machinery, without a real server: the build cache and its lock, the loud skip (and
the CI failure) when no llama-server is built, and the tiny model files. Runs in the default suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from . import build_llama_server as build
from . import tinymodel

SCRIPT = Path(build.__file__)
HERE = SCRIPT.parent


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty BATCHRUN_CACHE for this test (and for the processes it starts)."""
    monkeypatch.setenv("BATCHRUN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BATCHRUN_LLAMA_SERVER", raising=False)
    return tmp_path / "cache"


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env or dict(os.environ)
    )


def test_the_cache_is_keyed_by_version_and_flags(cache: Path) -> None:
    assert build.binary_path() == cache / "llama-server" / build.build_key() / "llama-server"
    assert build.build_key().startswith(f"{build.VERSION}-")
    assert build.build_key(flags=build.CMAKE_FLAGS + ("-DGGML_AVX2=OFF",)) != build.build_key()
    assert build.build_key("9.9.9") != build.build_key()


def test_a_cached_binary_that_runs_is_reused_without_building(cache: Path) -> None:
    binary = build.binary_path()
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\necho 'version: 0 (stand-in)' >&2\n")
    binary.chmod(0o755)
    done = _script()
    assert (done.returncode, done.stdout.strip()) == (0, str(binary))
    assert "building" not in done.stderr
    binary.write_text("#!/bin/sh\nexit 1\n")  # there but broken: not a working build
    assert _script("--check").returncode == 1


def test_no_compiler_is_said_loudly_with_its_own_exit_status(cache: Path) -> None:
    done = _script(env={**os.environ, "PATH": str(cache), "CC": "", "CXX": ""})
    assert done.returncode == build.NO_TOOLS_EXIT
    assert "CANNOT BUILD llama-server" in done.stderr and "cmake" in done.stderr


def test_the_lock_tells_another_process_a_build_is_under_way(cache: Path) -> None:
    assert not build.build_in_progress()
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; sys.path.insert(0, sys.argv[1]); import build_llama_server as b\n"
                "with b.build_lock():\n    print('held', flush=True); time.sleep(60)"
            ),
            str(HERE),
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            assert build.build_in_progress()
        finally:
            holder.kill()
    assert not build.build_in_progress()


def _tier(cache: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on one llama-server test of the tier, in a child process, with an empty build cache."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("CI", "BATCHRUN_LLAMA_SERVER")}
    child_env |= {"BATCHRUN_CACHE": str(cache), **env}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "realserver",
            f"{HERE / 'test_realserver.py'}::test_completions_endpoint",
            "--rootdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env,
        cwd=HERE.parent.parent,
    )


def test_without_a_build_the_tier_is_skipped_loudly(cache: Path, tmp_path: Path) -> None:
    done = _tier(cache, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 skipped" in done.stdout
    assert "WARNING: REAL-SERVER TESTS SKIPPED" in done.stdout and "build_llama_server.py" in done.stdout


def test_under_ci_a_missing_build_fails_the_run(cache: Path, tmp_path: Path) -> None:
    done = _tier(cache, tmp_path, CI="true")
    assert done.returncode == 1, done.stdout[-2000:]
    assert "CI=true: the tier must run in CI" in done.stdout


def test_the_gguf_holds_the_tiny_chat_model(tmp_path: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(tinymodel.write_gguf(tmp_path / "tiny.gguf"))
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("tokenizer.ggml.")}
    shape = tinymodel.Shape()
    assert fields["general.architecture"] == "llama"
    assert (fields["llama.embedding_length"], fields["llama.block_count"]) == (shape.n_embd, shape.n_layer)
    assert fields["tokenizer.chat_template"] == tinymodel.CHAT_TEMPLATE
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == shape.vocab_size
    params = sum(int(np.prod(t.shape)) for t in reader.tensors)
    assert 0.9e6 < params < 1.1e6


def test_gguf_and_hf_weights_are_one_model() -> None:
    """The GGUF's Q/K rows are the HF ones reordered for its RoPE layout; everything else is equal."""
    shape = tinymodel.Shape()
    hf, gg = tinymodel.hf_weights(shape, 512, 0), tinymodel.gguf_weights(shape, 512, 0)
    assert np.array_equal(gg["blk.1.attn_v.weight"], hf["model.layers.1.self_attn.v_proj.weight"])
    q_hf, q_gg = hf["model.layers.0.self_attn.q_proj.weight"], gg["blk.0.attn_q.weight"]
    head = shape.n_embd // shape.n_head
    # Within head 0, HF row j (first half) pairs with row j + head/2; GGUF puts them side by side.
    assert np.array_equal(q_gg[0], q_hf[0]) and np.array_equal(q_gg[1], q_hf[head // 2])
    assert sorted(map(bytes, q_gg)) == sorted(map(bytes, q_hf))
