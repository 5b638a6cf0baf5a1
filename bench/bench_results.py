"""Writing results.csv / results.parquet from records.jsonl, against one plain pass over the same
records (the floor: every record read and decoded once), measured in the same run. Also what
writing records.jsonl costs the run's event loop: the caller's time per record in
RecordSink.write (it queues; a writer thread writes and flushes every 100 ms), against the
former way, one write() and flush() per record on the caller (the same-run baseline).

    python bench/bench_results.py            # 100,000 records (about half a minute)
    python bench/bench_results.py --quick    # 20,000

The records carry what a data-team run's do: the input row (4 columns), the request as sent, a
parsed answer and a 40-word text. The plain pass builds a Record per line (what the summary reads);
the writer reads each line twice as plain dicts (one pass for the index and the columns, one to
write). Measured 2026-11-24 on the shared 2-core machine, 100,000 records: plain pass 5.4 s,
results.csv 8.0 s (1.50x), results.parquet 7.2 s (1.34x); writing Record objects in two passes,
as a first version did, took 16.9 s (3.4x).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchrun.store.outputs import iter_latest, write_results  # noqa: E402
from batchrun.store.records import Record, RecordSink  # noqa: E402


def make_records(path: Path, n: int) -> None:
    answer = " ".join(["word"] * 40)
    with RecordSink(path) as sink:
        for i in range(n):
            row = {
                "review_id": f"{i:07d}",
                "product": "kettle",
                "stars": "4",
                "review": "Works exactly as described, very happy with it.",
            }
            sink.write(
                Record(
                    id=row["review_id"],
                    row=i,
                    text=answer,
                    ttft_s=0.1234567,
                    latency_s=0.5,
                    total_s=0.51,
                    prompt_tokens=30,
                    completion_tokens=40,
                    input=row,
                    request={"model": "m", "messages": [{"role": "user", "content": row["review"]}]},
                    parsed={"label": "positive", "confidence": 0.9},
                )
            )


def _records(n: int) -> list[Record]:
    answer = " ".join(["word"] * 40)
    return [
        Record(
            id=f"{i:07d}",
            row=i,
            text=answer,
            ttft_s=0.1234567,
            latency_s=0.5,
            total_s=0.51,
            prompt_tokens=30,
            completion_tokens=40,
            input={"review": "Works as described."},
            request={"model": "m", "messages": [{"role": "user", "content": "Works as described."}]},
        )
        for i in range(n)
    ]


def caller_cost(write, records: list[Record]) -> tuple[float, float]:
    """(wall s, CPU s of this thread) spent in `write`, one call per record: what the loop pays."""
    wall = cpu = 0.0
    for record in records:
        w, c = time.perf_counter(), time.thread_time()
        write(record)
        cpu += time.thread_time() - c
        wall += time.perf_counter() - w
    return wall, cpu


def sink_figures(tmp: Path, n: int) -> None:
    records = _records(n)
    with open(tmp / "sync.jsonl", "ab") as f:  # the former RecordSink.write, inline

        def sync_write(record: Record) -> None:
            f.write(record.to_json() + b"\n")
            f.flush()

        sync_wall, sync_cpu = caller_cost(sync_write, records)
    with RecordSink(tmp / "queued.jsonl") as sink:
        queued_wall, queued_cpu = caller_cost(sink.write, records)
    assert (tmp / "queued.jsonl").read_bytes() == (tmp / "sync.jsonl").read_bytes()
    print(f"records.jsonl, {n:,} records: the caller (the event loop) spends per record")
    print(
        f"  write+flush on the caller (before)  {sync_wall / n * 1e6:6.1f} us wall, {sync_cpu / n * 1e6:6.1f} us CPU   1.00x"
    )
    print(
        f"  RecordSink.write (queued, now)      {queued_wall / n * 1e6:6.1f} us wall, {queued_cpu / n * 1e6:6.1f} us CPU"
        f"   {queued_wall / sync_wall:.2f}x wall"
    )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    n = 20_000 if parser.parse_args().quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        sink_figures(out, n)
        make_records(out / "records.jsonl", n)
        plain = min(timed(lambda: sum(1 for _ in iter_latest(out / "records.jsonl"))) for _ in range(2))
        csv_s = min(timed(lambda: write_results(out / "records.jsonl", out, "csv")) for _ in range(2))
        pq_s = min(timed(lambda: write_results(out / "records.jsonl", out, "parquet")) for _ in range(2))
    print(f"{n:,} records: one plain pass {plain:.2f} s ({n / plain:,.0f} records/s)")
    print(f"results.csv      {csv_s:.2f} s ({n / csv_s:,.0f} rows/s), {csv_s / plain:.2f}x the plain pass")
    print(f"results.parquet  {pq_s:.2f} s ({n / pq_s:,.0f} rows/s), {pq_s / plain:.2f}x the plain pass")


if __name__ == "__main__":
    main()
