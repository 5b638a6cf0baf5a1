"""What a bar over Batch API jobs shows (the command line draws it: progress.JobsProgress): requests
done (completed + failed, from each job's request_counts) of all requests, and how many jobs are in
each status."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from batchrun.batchapi.ledger import JobEntry

STATUS_ORDER = ("validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")


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
