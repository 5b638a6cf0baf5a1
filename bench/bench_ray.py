"""`batchrun run --ray`: how many records a second one driver receives and writes, and so how
large a cluster one driver serves before the output itself must be sharded.

    nice -n 5 python bench/bench_ray.py            # 20,000 rows end to end + the driver's ceiling
    nice -n 5 python bench/bench_ray.py --quick    # 5,000 rows

1. The driver's ceiling, without Ray or an endpoint: real records (from the one-process run of
   part 2) packed as an actor packs them (BATCH frames of 256 records, the orjson bytes pull()
   returns), then decoded and handed to the Coordinator's own message handler, which builds each
   Record, appends it to records.jsonl (one write and flush per batch) and counts it.
   records/s = records / CPU seconds of that loop (time.process_time): what one driver core
   absorbs, however many actors send.
2. End to end: `rows` rows against the built-in endpoint in fast mode (its own process, 64-token
   answers), once in one process (-c 256) and once with --ray --workers 2 on a local 2-CPU
   cluster (started once, before either run, so its start-up counts in neither); records/s =
   rows / the run's send span (summary.json throughput). Also the driver's own CPU seconds per
   1,000 records in the --ray run (this process: reader, request bodies, Ray calls both ways,
   decoding, writing, counting), marginal: a `rows` run minus a `rows`/5 run, per 1,000 extra
   rows, so start-up and the report files cancel out; and the part of it spent while sending
   (up to the start of the final results.csv / summary pass). This bounds how far one driver goes.
3. The arithmetic, printed: actors one driver serves = ceiling / one actor's records/s (part 2's
   one-process figure: a sending process at full speed), and the bytes/s records.jsonl grows by.
Everything runs on 127.0.0.1 and stops by itself. On a machine with few cores the actors, the
endpoint and the driver share them: part 2's ratio then shows the overhead, not the gain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import orjson  # noqa: E402

from batchrun.engine.channel import BATCH  # noqa: E402
from batchrun.engine.coordinator import Coordinator  # noqa: E402
from batchrun.engine.pool import PoolConfig  # noqa: E402
from batchrun.engine.workers import BATCH_RECORDS, WorkerSpec  # noqa: E402
from batchrun.sim import SimConfig, SimProcess  # noqa: E402
from batchrun.store.records import RecordSink  # noqa: E402


def write_prompts(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,prompt\n")
        f.writelines(f"q{i},question {i}\n" for i in range(n))


def run_cli(args: list[str]) -> None:
    from typer.testing import CliRunner

    from batchrun.cli import app

    result = CliRunner().invoke(app, args, catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"run failed ({result.exit_code}): {result.output[-2000:]}")


def throughput(out: Path) -> tuple[float, int]:
    summary = json.loads((out / "summary.json").read_text())["summary"]
    return summary["throughput"]["requests_per_s"], summary["counts"]["ok"]


def end_to_end(work: Path, rows: int) -> dict[str, Any]:
    import ray

    small = rows // 5
    write_prompts(work / "p.csv", rows)
    write_prompts(work / "small.csv", small)
    ray.init(num_cpus=2, include_dashboard=False, namespace="batchrun", logging_level="WARNING")
    try:
        with SimProcess(SimConfig(fast=True, output_tokens=64)) as sim:
            flags = ["--base-url", sim.base_url, "-q", "-c", "256"]
            run_cli(["run", str(work / "p.csv"), *flags, "--out", str(work / "one")])
            cpu, live = {}, {}
            for name in ("small", "ray"):
                cpu0 = time.process_time()
                with _sending_ends() as ended:
                    run_cli(
                        [
                            "run",
                            str(work / f"{'small' if name == 'small' else 'p'}.csv"),
                            *flags,
                            "--out",
                            str(work / name),
                            "--ray",
                            "--workers",
                            "2",
                        ]
                    )
                cpu[name] = time.process_time() - cpu0
                live[name] = ended[0] - cpu0
    finally:
        ray.shutdown()
    one, one_ok = throughput(work / "one")
    on_ray, ray_ok = throughput(work / "ray")
    assert one_ok == rows and ray_ok == rows, (one_ok, ray_ok)
    # Marginal: start-up and the report files cost the same for both sizes and cancel out.
    return {
        "one_process_rps": one,
        "ray_rps": on_ray,
        "driver_cpu_per_1000": (cpu["ray"] - cpu["small"]) / (rows - small) * 1000,
        "live_cpu_per_1000": (live["ray"] - live["small"]) / (rows - small) * 1000,
    }


@contextlib.contextmanager
def _sending_ends() -> Iterator[list[float]]:
    """The driver's CPU time when sending has ended and the final files begin (finish_run, as the
    pipeline calls it)."""
    from batchrun import pipeline

    ended: list[float] = []
    original = pipeline.finish_run

    def finish(*args: Any, **kwargs: Any) -> Any:
        ended.append(time.process_time())
        return original(*args, **kwargs)

    pipeline.finish_run = finish  # type: ignore[assignment]
    try:
        yield ended
    finally:
        pipeline.finish_run = original  # type: ignore[assignment]


def frames(records_path: Path, total: int) -> tuple[list[bytes], int, float]:
    """pull() replies of BATCH_RECORDS records each, `total` records in all, from real records."""
    lines = records_path.read_bytes().splitlines()
    stats = [0] * 6
    out, n = [], 0
    while n < total:
        chunk = [orjson.Fragment(line) for line in lines[:BATCH_RECORDS]]
        out.append(
            orjson.dumps([[BATCH, {"records": chunk, "want": [], "observe": [], "correct": [], "stats": stats}]])
        )
        n += len(chunk)
    mean_bytes = sum(len(line) + 1 for line in lines) / len(lines)
    return out, n, mean_bytes


def driver_ceiling(records_path: Path, total: int) -> tuple[float, float]:
    """(records/s of one driver core receiving and writing, mean bytes per record line)."""
    replies, n, mean_bytes = frames(records_path, total)
    spec = WorkerSpec(
        base_url="http://127.0.0.1:9/v1",
        api_key=None,
        basic_auth=None,
        embedded=False,
        endpoint_kind="chat",
        timeout=None,
        ttft_timeout=None,
        max_response_bytes=1 << 24,
        pool={},
        t0=0.0,
        metered=False,
    )
    with tempfile.TemporaryDirectory() as tmp, RecordSink(Path(tmp) / "records.jsonl") as sink:
        coordinator = Coordinator(spec, PoolConfig(), 1, t0=0.0, write_many=sink.write_many, say=print)
        link = coordinator.links[0]
        start = time.process_time()
        for reply in replies:
            for kind, payload in orjson.loads(reply):
                coordinator._on_message(link, kind, payload)
        cpu = time.process_time() - start
    assert coordinator.stats.ok == n, coordinator.stats.ok
    return n / cpu, mean_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 rows instead of 20,000")
    parser.add_argument("--rows", type=int, default=None)
    args = parser.parse_args()
    rows = args.rows or (5_000 if args.quick else 20_000)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        e2e = end_to_end(work, rows)
        ceiling, mean_bytes = driver_ceiling(work / "one" / "records.jsonl", 100_000)
    one, on_ray = e2e["one_process_rps"], e2e["ray_rps"]
    print(f"cores here: {len(os.sched_getaffinity(0))}; rows: {rows:,}; fast built-in endpoint, 64-token answers")
    print(
        f"1. driver ceiling (decode + Record + records.jsonl + count, one core): {ceiling:,.0f} records/s "
        f"({1000 / ceiling * 1000:.1f} ms CPU per 1,000; {mean_bytes:,.0f} bytes per record line)"
    )
    print(
        f"2. end to end: one process {one:,.0f} records/s; --ray --workers 2 {on_ray:,.0f} records/s "
        f"(ratio {on_ray / one:.2f}); driver CPU in the --ray run {e2e['driver_cpu_per_1000'] * 1000:.0f} ms "
        f"per 1,000 records (marginal: a {rows:,}-row minus a {rows // 5:,}-row run) = at most "
        f"{1000 / e2e['driver_cpu_per_1000']:,.0f} records/s on one driver core"
    )
    live = 1000 / e2e["live_cpu_per_1000"]
    print(
        f"   of which while sending (reader, request bodies, Ray calls, decoding, writing, counting; "
        f"not the final results.csv / summary pass): {e2e['live_cpu_per_1000'] * 1000:.0f} ms per 1,000 = at most "
        f"{live:,.0f} records/s"
    )
    print(
        f"3. one driver core keeps up with about {live / one:.1f} actors sending at one process's full speed "
        f"({one:,.0f} records/s each) by the live cost, {ceiling / one:.1f} by the receive-and-write ceiling; "
        f"records.jsonl grows by {live * mean_bytes / 1e6:,.1f} MB/s at the live bound"
    )


if __name__ == "__main__":
    main()
