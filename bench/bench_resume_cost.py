"""What does reading an earlier session's spend add to the start of a resumed run?

    python bench/bench_resume_cost.py [--records 100000] [--runs 3]

A resumed run with a price reads its records.jsonl once to find the rows already done
(store/outputs.done_ids); in the same pass it now charges every earlier record's usage to the
running cost (the progress line) and to the --max-cost budget (pipeline._carry). This writes
`--records` records shaped like a run's (answer text, timings, usage) to a temporary directory and
times the best of `--runs` calls of done_ids alone (the baseline, measured in the same run) and
with the carry, in CPU seconds of this process, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from batchrun.analysis.cost import Price, RunningCost
from batchrun.engine.budget import Budget
from batchrun.pipeline import _carry
from batchrun.store.outputs import done_ids

PRICE = Price(0.15, 0.60, "bench")


def _write_records(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            record = {
                "id": str(i),
                "row": i,
                "status": "ok",
                "sent_s": 0.1 * i,
                "end_s": 0.1 * i + 1.2,
                "ttft_s": 0.25,
                "latency_s": 1.2,
                "prompt_tokens": 40 + i % 17,
                "completion_tokens": 80 + i % 31,
                "text": "word " * 80,
                "input": {"id": str(i), "prompt": "Name a colour " + "x" * (i % 50)},
                "session": 1,
            }
            f.write(json.dumps(record) + "\n")


def _best_cpu(fn: object, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        fn()  # type: ignore[operator]
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.jsonl"
        _write_records(path, args.records)
        alone = _best_cpu(lambda: done_ids(path), args.runs)
        carried = _best_cpu(lambda: done_ids(path, _carry(Budget(1e9, PRICE), RunningCost(PRICE))), args.runs)
    print(f"{args.records:,} records, best of {args.runs} (CPU s of this process)")
    print(f"  done_ids alone (baseline)      {alone:.3f} s")
    print(f"  with the spend carried         {carried:.3f} s  ({carried / alone:.2f}x the baseline)")


if __name__ == "__main__":
    main()
