"""What does checking that the input did not change during a run cost, next to reading it?

    python bench/bench_input_check.py [--rows 1m] [--repeat 3]

Writes a CSV of N generated prompts (the shape bench_memory.py uses) to a temporary directory,
then times, best of --repeat, in this process:
- the baseline: reading every row with the run's reader (`read_prompts`, which includes the check);
- the check itself: the identity taken as reading begins and again at its end
  (`input_identity` twice: size, and SHA-256 of the whole file up to 2 MiB, else its first and
  last MiB) and the comparison (`changed_while_read`), as ratios to the baseline;
- for comparison, one SHA-256 pass over the whole file: what each full checksum would cost
  (a second pass at the end, or hashing while reading), also as a ratio to the baseline.
Nothing is sent; no server is started.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench_memory import row_count, write_input  # the same generated prompts (this directory is on sys.path)

from batchrun.inputs.identity import changed_while_read, input_identity
from batchrun.inputs.rows import read_prompts


def _best_s(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _read_all(path: Path) -> int:
    return sum(1 for _ in read_prompts(path))


def _check(path: Path) -> None:
    before = input_identity(path)
    assert changed_while_read(path, before, path.stat().st_size) is None


def _full_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1m", help="rows in the generated CSV (10k, 1m, 2500)")
    ap.add_argument("--repeat", type=int, default=3, help="timings per figure; the best is shown")
    opts = ap.parse_args()
    rows = row_count(opts.rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.csv"
        write_input(path, rows)
        size_mb = path.stat().st_size / 1e6
        assert _read_all(path) == rows
        read_s = _best_s(lambda: _read_all(path), opts.repeat)
        check_s = _best_s(lambda: _check(path), max(opts.repeat, 10))
        full_s = _best_s(lambda: _full_sha256(path), opts.repeat)
    print(f"input: {rows:,} rows, {size_mb:.1f} MB (page cache warm)")
    print(f"  read every row (baseline)          {read_s:8.3f} s   1.000")
    print(f"  the change check (identity x2)     {check_s * 1e3:8.2f} ms  {check_s / read_s:.5f} of the read")
    print(f"  one full SHA-256 pass, for scale   {full_s * 1e3:8.2f} ms  {full_s / read_s:.5f} of the read")


if __name__ == "__main__":
    main()
