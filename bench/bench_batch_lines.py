"""Peak memory of `batchrun run --mode batch` when the provider's output file holds one huge line:
is --max-response-bytes held without reading the line whole?

    python bench/bench_batch_lines.py                    # a 150 MB line, --max-response-bytes 1 MiB
    python bench/bench_batch_lines.py --line-mb 50 --max-response-bytes 4194304

Starts the built-in endpoint (`batchrun.sim`, --fast, batch delay 0) in a child process on
127.0.0.1; one job of three rows, the middle one answered with a line of --line-mb megabytes
(`[[sim:batch_bytes=N]]`). The figure is the `batchrun run` process's own peak RSS (`ru_maxrss`
from `os.wait4` on that child; the endpoint's process is not counted), over its whole life:
plan, upload, poll, download, collect, results and reports. Same-run baseline: the same job whose
three answers are all small. Both runs also check their rows (the huge one must be
ResponseTooLarge, the others ok). --unbounded adds the huge job with a bound above the line, to
show what the bound saves. Loopback only; the endpoint is a child process this script stops.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.sim import SimConfig, SimProcess  # noqa: E402

MIB = 1024 * 1024


def _write_rows(path: Path, middle: str) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt"])
        writer.writerows([["r0", "a small question"], ["r1", middle], ["r2", "another small question"]])
    return path


def _run(prompts: Path, out: Path, base_url: str, max_bytes: int) -> int:
    """Peak RSS in bytes of one `batchrun run --mode batch` child process (its own rusage)."""
    cmd = [
        sys.executable,
        "-c",
        "from batchrun.cli import main; main()",
        "run",
        str(prompts),
        "--mode",
        "batch",
        "--base-url",
        base_url,
        "--out",
        str(out),
        "-q",
        "--max-tokens",
        "8",
        "--max-response-bytes",
        str(max_bytes),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"batchrun exited {os.waitstatus_to_exitcode(status)}:\n{err}")
    return usage.ru_maxrss * 1024  # Linux: KiB


def _statuses(out: Path) -> list[tuple[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return [(r["status"], r["error_type"]) for r in csv.DictReader(f)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--line-mb", type=float, default=150.0, help="size of the huge output line, MB (10^6 bytes)")
    ap.add_argument("--max-response-bytes", type=int, default=MIB)
    ap.add_argument(
        "--unbounded",
        action="store_true",
        help="also run the huge job with a bound above the line (~7x the line in RSS: what the bound saves)",
    )
    args = ap.parse_args()
    line_bytes = int(args.line_mb * 1_000_000)
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimProcess(SimConfig(fast=True, batch_delay_s=0.0, output_tokens=8)) as sim,
    ):
        root = Path(tmp)
        small = _write_rows(root / "small.csv", "a third small question")
        huge = _write_rows(root / "huge.csv", f"[[sim:batch_bytes={line_bytes}]] a question with a huge answer")
        baseline = _run(small, root / "small", sim.base_url, args.max_response_bytes)
        peak = _run(huge, root / "huge", sim.base_url, args.max_response_bytes)
        kept = (root / "huge" / "batch" / "0001.output.jsonl").stat().st_size
        unbounded = _run(huge, root / "unbounded", sim.base_url, 2**31) if args.unbounded else None
        assert _statuses(root / "small") == [("ok", "")] * 3, _statuses(root / "small")
        assert _statuses(root / "huge") == [("ok", ""), ("error", "ResponseTooLarge"), ("ok", "")], _statuses(
            root / "huge"
        )
    print(f"--mode batch, one job of 3 rows, --max-response-bytes {args.max_response_bytes:,}")
    print(
        f"  one output line of {line_bytes / 1e6:,.0f} MB : peak RSS {peak / MIB:7.1f} MiB "
        f"(the line is the row's ResponseTooLarge; kept output file {kept:,} bytes)"
    )
    print(f"  baseline, all lines small : peak RSS {baseline / MIB:7.1f} MiB")
    print(f"  ratio huge / baseline     : {peak / baseline:.2f}x")
    if unbounded is not None:
        print(f"  the same line accepted (--max-response-bytes {2**31:,}): peak RSS {unbounded / MIB:7.1f} MiB")


if __name__ == "__main__":
    main()
