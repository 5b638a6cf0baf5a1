"""`batchrun batch status DIR` and `batchrun batch cancel DIR`: look at or stop a run's Batch API
jobs without waiting for them (`batchrun run --resume DIR` collects them). Each returns the lines
to show; warnings go to `notify`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from batchrun.batchapi.ledger import JobEntry, Ledger
from batchrun.config import env_endpoint
from batchrun.endpoint.resolve import BUILTIN, open_endpoint
from batchrun.errors import ConfigError
from batchrun.sim.config import SimConfig

# The openai SDK (via batchapi.api / flow) is imported inside the functions: the command line
# imports this module's callers on every start, and the SDK costs half a second.

Notify = Callable[[str], None]


def job_row(job: JobEntry) -> str:
    counts = job.request_counts
    done = (
        f"{counts.get('completed', 0)} ok, {counts.get('failed', 0)} failed of {job.requests}"
        if counts
        else f"{job.requests} requests"
    )
    return (
        f"{job.name}  {job.batch_id or '(not created)':34}  {job.status or 'planned':11}  {done}"
        f"{'  collected' if job.collected else ''}"
    )


async def status(run_dir: Path, base_url: str | None, notify: Notify) -> list[str]:
    """Every job of the run: its file, id, status and request counts (open jobs asked afresh)."""
    from batchrun.batchapi.api import TRANSIENT  # lazy: the openai SDK

    ledger = _ledger(run_dir)
    open_jobs = [j for j in ledger.open_jobs() if j.batch_id]
    if open_jobs:
        async with _api(run_dir, ledger, base_url, notify) as api:
            for job in open_jobs:
                try:
                    _refresh(job, await api.retrieve(job.batch_id or ""), api.endpoint.secrets, notify)
                except TRANSIENT as exc:
                    notify(f"{job.batch_id}: status unavailable ({type(exc).__name__})")
        ledger.save(run_dir)
    lines = [job_row(job) for job in ledger.jobs]
    if open_jobs:
        lines.append(f"collect with: batchrun run --resume {run_dir}")
    return lines


async def cancel(run_dir: Path, base_url: str | None, notify: Notify) -> list[str]:
    """Cancel the run's open jobs; `batchrun run --resume DIR` then collects what they finished."""
    ledger = _ledger(run_dir)
    open_jobs = [j for j in ledger.open_jobs() if j.batch_id]
    lines = []
    async with _api(run_dir, ledger, base_url, notify) as api:
        for job in open_jobs:
            await api.cancel(job.batch_id or "")
            _refresh(job, await api.retrieve(job.batch_id or ""), api.endpoint.secrets, notify)
            lines.append(job_row(job))
    ledger.save(run_dir)
    lines.append(
        f"{len(open_jobs)} job(s) asked to cancel; collect what they did with: batchrun run --resume {run_dir}"
    )
    return lines


def _ledger(run_dir: Path) -> Ledger:
    ledger = Ledger.load(run_dir)
    if not ledger.jobs:
        raise ConfigError(f"{run_dir} has no Batch API jobs (pass a directory of `batchrun run --mode batch`)")
    return ledger


def _refresh(job: JobEntry, batch: Any, secrets: tuple[str, ...], notify: Notify) -> None:
    from batchrun.batchapi.flow import _update  # lazy: the openai SDK

    for problem in _update(job, batch, secrets):
        notify(f"warning: job {job.batch_id or job.name}: the provider's {problem}; ignored")


@contextlib.asynccontextmanager
async def _api(run_dir: Path, ledger: Ledger, base_url: str | None, notify: Notify) -> AsyncIterator[Any]:
    """The endpoint the run's jobs live at, opened like `run` opens it (the built-in one with the
    run's saved state), as a BatchApi."""
    from batchrun.batchapi.api import BatchApi  # lazy: the openai SDK
    from batchrun.batchapi.flow import SIM_STATE_DIR, _check_endpoint  # lazy: the openai SDK

    url, key = env_endpoint(base_url, None, use_env_url=False)  # like --resume: the run's own
    if url is None:  # the run's own endpoint (a URL that held credentials needs --base-url)
        url = BUILTIN if ledger.endpoint in (None, "embedded") else ledger.endpoint
    sim = SimConfig(batch_state_dir=str((run_dir / SIM_STATE_DIR).resolve()))
    async with open_endpoint(url, key, announce=notify, sim_config=sim) as endpoint:
        _check_endpoint(ledger, endpoint, run_dir)
        async with BatchApi(endpoint) as api:
            yield api
