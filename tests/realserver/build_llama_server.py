"""Build llama.cpp's `llama-server` on CPU for the real-server test tier, or reuse the cached build.

    python tests/realserver/build_llama_server.py           # build if needed, print the binary's path
    python tests/realserver/build_llama_server.py --check   # exit 0 if a working build is cached, else 1

The source is the llama.cpp vendored in the `llama-cpp-python` sdist, pinned by version and hash and
fetched with pip from the package index; cmake builds only the `llama-server` target, CPU only, with no
network access of its own (no curl, no OpenSSL, no web UI download). The binary lands in a cache
directory outside the checkout, keyed by version and a hash of the build flags:
`${BATCHRUN_CACHE:-~/.cache/batchrun}/llama-server/<version>-<hash>/llama-server`. A cached binary is
reused when `--version` runs. A second caller waits on a lock while a build is under way, so a test
session can wait for a build that `.ci/run` started in the background.

Exit status: 0 the binary is there and runs; 1 the build failed (the log's tail is printed); 3 no C/C++
compiler, cmake or build tool on this machine (said loudly: install build-essential and cmake).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Iterator

VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
NO_TOOLS_EXIT = 3

# ggml (the tensor kernels a token's time is spent in) keeps the release -O3: this file is included
# right after ggml's project() call and shadows the flags in its directory only.
GGML_FLAGS_CMAKE = """set(CMAKE_C_FLAGS_RELEASE "-O3 -DNDEBUG")
set(CMAKE_CXX_FLAGS_RELEASE "-O3 -DNDEBUG")
"""
# Build flags, part of the cache key (with GGML_FLAGS_CMAKE). Everything outside ggml (the server,
# chat parsers, model graphs: ~84% of the compile) is built at -O1, which cuts the CPU time of the
# whole build by about 30% against a plain Release build; with ggml at -O1 too a token took ~1.6x
# as long, with ggml at -O3 it takes what a release build's does.
CMAKE_FLAGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DCMAKE_C_FLAGS_RELEASE=-O1 -DNDEBUG",
    "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary to copy into the cache
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",  # no npm build of the web UI ...
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # ... and no download of a prebuilt one at build time
    "-DGGML_CCACHE=OFF",
    "-DGGML_NATIVE=ON",  # the cache lives on the machine that built it
)


def cache_root() -> Path:
    """Where builds are kept: $BATCHRUN_CACHE, else ~/.cache/batchrun."""
    return Path(os.environ.get("BATCHRUN_CACHE") or Path.home() / ".cache" / "batchrun")


def build_key(version: str = VERSION, flags: tuple[str, ...] = CMAKE_FLAGS) -> str:
    """`<version>-<12 hex>`: the hash covers the flags and the processor they were compiled for."""
    digest = hashlib.sha256(json.dumps([list(flags), GGML_FLAGS_CMAKE, platform.machine()]).encode()).hexdigest()
    return f"{version}-{digest[:12]}"


def install_dir(version: str = VERSION) -> Path:
    return cache_root() / "llama-server" / build_key(version)


def binary_path(version: str = VERSION) -> Path:
    return install_dir(version) / "llama-server"


def log_path(version: str = VERSION) -> Path:
    """The last build's full cmake output for this key."""
    return install_dir(version).parent / f"{build_key(version)}.build.log"


def version_of(binary: Path) -> str | None:
    """The binary's `--version` text, or None when it is missing or does not run."""
    if not binary.is_file():
        return None
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    # llama-server prints its version on stderr.
    return (done.stderr + done.stdout).strip() if done.returncode == 0 else None


def missing_tools() -> list[str]:
    """Build tools this machine lacks (empty when a build can be tried)."""
    wanted = {
        "cmake": ["cmake"],
        "a C compiler": [os.environ.get("CC", ""), "cc", "gcc", "clang"],
        "a C++ compiler": [os.environ.get("CXX", ""), "c++", "g++", "clang++"],
        "make or ninja": ["ninja", "make"],
    }
    return [what for what, names in wanted.items() if not any(n and shutil.which(n) for n in names)]


@contextlib.contextmanager
def build_lock(version: str = VERSION, wait: bool = True) -> Iterator[bool]:
    """Hold the build lock for this key; yields False at once when `wait` is off and it is taken."""
    lock = install_dir(version).parent / f"{build_key(version)}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_in_progress(version: str = VERSION) -> bool:
    """True while another process holds the build lock."""
    with build_lock(version, wait=False) as got:
        return not got


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    """Run one build step with its output appended to `log`; raise with the log's tail on failure."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{cmd[0]} failed with exit {done.returncode}; full log: {log}\n{tail}")


def _fetch_sources(version: str, work: Path, log: Path) -> Path:
    """pip-download the pinned sdist (hash checked) and unpack only its vendor/llama.cpp."""
    reqs = work / "requirements.txt"
    reqs.write_text(f"llama-cpp-python=={version} --hash=sha256:{SDIST_SHA256}\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--require-hashes",
            "-r",
            str(reqs),
            "-d",
            str(work),
        ],
        log,
    )
    sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
    prefix = f"{sdist.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        extract = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(work, members=members, **extract)
    return work / prefix


def build(version: str = VERSION, jobs: int | None = None) -> Path:
    """Build llama-server into the cache unless a working one is there; returns the binary's path."""
    binary = binary_path(version)
    with build_lock(version):
        if version_of(binary):
            return binary
        started = time.monotonic()
        log = log_path(version)
        log.write_text("")
        with tempfile.TemporaryDirectory(prefix="llama-build-") as tmp:
            work = Path(tmp)
            source = _fetch_sources(version, work, log)
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            ggml_flags = work / "ggml-flags.cmake"
            ggml_flags.write_text(GGML_FLAGS_CMAKE)
            _run(
                [
                    "cmake",
                    "-S",
                    str(source),
                    "-B",
                    str(work / "build"),
                    *generator,
                    *CMAKE_FLAGS,
                    f"-DCMAKE_PROJECT_ggml_INCLUDE={ggml_flags}",
                ],
                log,
            )
            _run(
                [
                    "cmake",
                    "--build",
                    str(work / "build"),
                    "--target",
                    "llama-server",
                    "-j",
                    str(jobs or os.cpu_count() or 2),
                ],
                log,
            )
            built = work / "build" / "bin" / "llama-server"
            install_dir(version).mkdir(parents=True, exist_ok=True)
            staged = binary.with_suffix(".partial")
            shutil.copy2(built, staged)
            staged.replace(binary)  # atomic: a reader never sees half a binary
        (install_dir(version) / "build.json").write_text(
            json.dumps(
                {
                    "llama_cpp_python": version,
                    "cmake_flags": list(CMAKE_FLAGS),
                    "ggml_flags": GGML_FLAGS_CMAKE,
                    "build_seconds": round(time.monotonic() - started, 1),
                    "machine": platform.machine(),
                    "version": version_of(binary),
                },
                indent=2,
            )
        )
        return binary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", "-j", type=int, help="parallel compile jobs (default: all cores)")
    parser.add_argument("--check", action="store_true", help="only say whether a working build is cached")
    args = parser.parse_args(argv)
    binary = binary_path()
    if version_of(binary):
        print(binary)
        return 0
    if args.check:
        print(f"no working llama-server at {binary}", file=sys.stderr)
        return 1
    lacking = missing_tools()
    if lacking:
        print(
            f"build_llama_server: CANNOT BUILD llama-server: this machine has no {', '.join(lacking)} "
            "(install build-essential and cmake); the real-server tests will be skipped",
            file=sys.stderr,
        )
        return NO_TOOLS_EXIT
    print(
        f"build_llama_server: building llama-server from llama-cpp-python {VERSION} into {install_dir()} "
        "(about 8 CPU-minutes: 4-8 minutes on 2 cores)",
        file=sys.stderr,
    )
    try:
        print(build(jobs=args.jobs))
    except (RuntimeError, OSError, StopIteration) as exc:
        print(f"build_llama_server: BUILD FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
