"""A tqdm bar over Batch API jobs: requests done (completed + failed, from each job's
request_counts) of all requests, and how many jobs are in each status."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Sequence

from tqdm import tqdm

from batchrun.batchapi.ledger import JobEntry

STATUS_ORDER = ("validating", "in_progress", "finalizing", "completed", "failed", "expired",
                "cancelling", "cancelled")


def status_line(jobs: Sequence[JobEntry]) -> str:
    """e.g. 'in_progress 2, completed 1 | ok=120 failed=3' (pure)."""
    by_status = Counter(job.status or "submitting" for job in jobs)
    order = {s: i for i, s in enumerate(STATUS_ORDER)}
    states = ", ".join(f"{s} {n}" for s, n in sorted(by_status.items(), key=lambda kv: order.get(kv[0], -1)))
    ok = sum(job.request_counts.get("completed", 0) for job in jobs)
    failed = sum(job.request_counts.get("failed", 0) for job in jobs)
    return f"{states} | ok={ok} failed={failed}"


def done_requests(jobs: Sequence[JobEntry]) -> int:
    return sum(job.request_counts.get("completed", 0) + job.request_counts.get("failed", 0) for job in jobs)


class JobsProgress:
    """Call update() after each poll round; close() at the end."""

    def __init__(self, jobs: Sequence[JobEntry]) -> None:
        self.jobs = list(jobs)
        self.bar = tqdm(total=sum(j.requests for j in self.jobs), unit="req", file=sys.stderr,
                        dynamic_ncols=True, desc=f"{len(self.jobs)} batch job(s)",
                        mininterval=0 if sys.stderr.isatty() else 10.0)

    def update(self) -> None:
        self.bar.n = done_requests(self.jobs)
        self.bar.set_postfix_str(status_line(self.jobs), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.update()
        self.bar.close()
