"""Writing results.csv / results.parquet from records.jsonl, against one plain pass over the same
records (the floor: every record read and decoded once), measured in the same run.

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
            row = {"review_id": f"{i:07d}", "product": "kettle", "stars": "4",
                   "review": "Works exactly as described, very happy with it."}
            sink.write(Record(id=row["review_id"], row=i, text=answer, ttft_s=0.1234567, latency_s=0.5,
                              total_s=0.51, prompt_tokens=30, completion_tokens=40, input=row,
                              request={"model": "m", "messages": [{"role": "user", "content": row["review"]}]},
                              parsed={"label": "positive", "confidence": 0.9}))


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
        make_records(out / "records.jsonl", n)
        plain = min(timed(lambda: sum(1 for _ in iter_latest(out / "records.jsonl"))) for _ in range(2))
        csv_s = min(timed(lambda: write_results(out / "records.jsonl", out, "csv")) for _ in range(2))
        pq_s = min(timed(lambda: write_results(out / "records.jsonl", out, "parquet")) for _ in range(2))
    print(f"{n:,} records: one plain pass {plain:.2f} s ({n / plain:,.0f} records/s)")
    print(f"results.csv      {csv_s:.2f} s ({n / csv_s:,.0f} rows/s), {csv_s / plain:.2f}x the plain pass")
    print(f"results.parquet  {pq_s:.2f} s ({n / pq_s:,.0f} rows/s), {pq_s / plain:.2f}x the plain pass")


if __name__ == "__main__":
    main()
