"""The Batch API jobs of a run, kept in run.json under "batch" and saved after every step.

Each job is written before the step that needs it: the planned input file before its upload,
the file id before the job is created, the job id before anything waits on it. So a process
killed at any point finds on --resume what it had already done, and a step whose id was not
saved yet (killed mid-request) is found at the provider by its file name or input file id
instead of being done twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from batchrun.batchapi.jobobject import read_counts
from batchrun.errors import ConfigError
from batchrun.store.sessions import write_json

RUN_JSON = "run.json"
TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass(slots=True)
class JobEntry:
    name: str  # e.g. "0003"; the uploaded file is batchrun-<token>-<name>.jsonl
    input: str  # request lines, relative to the run directory
    ids: str  # (custom_id, row) per line, relative to the run directory
    requests: int
    bytes: int
    model: str | None = None
    planned_at: float = 0.0  # unix s, our clock: the provider's search starts here
    file_id: str | None = None  # set once uploaded
    batch_id: str | None = None  # set once the job is created
    status: str | None = None  # the provider's last reported status
    request_counts: dict[str, int] = field(default_factory=dict)
    created_at: int | None = None  # the job's created_at (unix s, from the provider)
    ended_at: int | None = None  # completed_at / expired_at / cancelled_at / failed_at
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # a failed job's validation errors
    collected: bool = False  # every row of the job has its record
    refused: list[str] = field(default_factory=list)  # earlier jobs of this file, failed at the token limit


@dataclass(slots=True)
class Ledger:
    endpoint: str | None = None  # where the jobs live (redacted URL, or "embedded")
    token: str = field(default_factory=lambda: os.urandom(6).hex())
    jobs: list[JobEntry] = field(default_factory=list)

    @classmethod
    def load(cls, out: Path) -> "Ledger":
        path = out / RUN_JSON
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8")).get("batch")
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        if not data:
            return cls()
        known = {f.name for f in fields(JobEntry)}
        jobs = [JobEntry(**{k: v for k, v in job.items() if k in known}) for job in data.get("jobs", [])]
        for job in jobs:  # saved raw by an earlier batchrun: only figures that are counts
            job.request_counts = read_counts(job.request_counts, job.requests, [])
        return cls(endpoint=data.get("endpoint"), token=data["token"], jobs=jobs)

    def save(self, out: Path) -> None:
        """Into run.json beside what the pipeline keeps there; write then rename, never torn."""
        path = out / RUN_JSON
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        data["batch"] = {"endpoint": self.endpoint, "token": self.token, "jobs": [asdict(j) for j in self.jobs]}
        write_json(path, data)

    def open_jobs(self) -> list[JobEntry]:
        return [j for j in self.jobs if not j.collected]

    def next_name(self) -> str:
        return f"{len(self.jobs) + 1:04d}"

    def upload_name(self, job: JobEntry) -> str:
        return f"batchrun-{self.token}-{job.name}.jsonl"
