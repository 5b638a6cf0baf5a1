"""`batchrun batch status DIR` and `batchrun batch cancel DIR`: look at or stop a run's Batch API
jobs without waiting for them (`batchrun run --resume DIR` collects them)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from batchrun.batchapi.ledger import JobEntry, Ledger
from batchrun.config import env_endpoint
from batchrun.errors import ConfigError

# The openai SDK (via batchapi.api / flow) is imported inside the commands: every `batchrun`
# invocation imports this module, and the SDK costs half a second.

batch_app = typer.Typer(no_args_is_help=True, help="The Batch API jobs of a `batchrun run --mode batch` directory.")

RunDir = Annotated[Path, typer.Argument(help="A directory written by `batchrun run --mode batch`.")]
BaseUrl = Annotated[Optional[str], typer.Option(help="The endpoint the jobs live at (default: the run's own, "
                                                     "as --resume uses).")]


@batch_app.command()
def status(run_dir: RunDir, base_url: BaseUrl = None) -> None:
    """Every job of the run: its file, id, status and request counts (open jobs asked afresh)."""
    from batchrun.cli import guarded

    guarded(lambda: asyncio.run(_status(run_dir, base_url)))


@batch_app.command()
def cancel(run_dir: RunDir, base_url: BaseUrl = None) -> None:
    """Cancel the run's open jobs; `batchrun run --resume DIR` then collects what they finished."""
    from batchrun.cli import guarded

    guarded(lambda: asyncio.run(_cancel(run_dir, base_url)))


def job_row(job: JobEntry) -> str:
    counts = job.request_counts
    done = f"{counts.get('completed', 0)} ok, {counts.get('failed', 0)} failed of {job.requests}" if counts \
        else f"{job.requests} requests"
    return (f"{job.name}  {job.batch_id or '(not created)':34}  {job.status or 'planned':11}  {done}"
            f"{'  collected' if job.collected else ''}")


async def _status(run_dir: Path, base_url: str | None) -> int:
    from batchrun.batchapi.api import TRANSIENT

    ledger = _ledger(run_dir)
    open_jobs = [j for j in ledger.open_jobs() if j.batch_id]
    if open_jobs:
        async with _api(run_dir, ledger, base_url) as api:
            for job in open_jobs:
                try:
                    _refresh(job, await api.retrieve(job.batch_id or ""), api.endpoint.secrets)
                except TRANSIENT as exc:
                    typer.echo(f"batchrun: {job.batch_id}: status unavailable ({type(exc).__name__})", err=True)
        ledger.save(run_dir)
    for job in ledger.jobs:
        typer.echo(job_row(job))
    if open_jobs:
        typer.echo(f"collect with: batchrun run --resume {run_dir}")
    return 0


async def _cancel(run_dir: Path, base_url: str | None) -> int:
    ledger = _ledger(run_dir)
    open_jobs = [j for j in ledger.open_jobs() if j.batch_id]
    async with _api(run_dir, ledger, base_url) as api:
        for job in open_jobs:
            await api.cancel(job.batch_id or "")
            _refresh(job, await api.retrieve(job.batch_id or ""), api.endpoint.secrets)
            typer.echo(job_row(job))
    ledger.save(run_dir)
    typer.echo(f"{len(open_jobs)} job(s) asked to cancel; collect what they did with: batchrun run --resume {run_dir}")
    return 0


def _ledger(run_dir: Path) -> Ledger:
    ledger = Ledger.load(run_dir)
    if not ledger.jobs:
        raise ConfigError(f"{run_dir} has no Batch API jobs (pass a directory of `batchrun run --mode batch`)")
    return ledger


def _refresh(job: JobEntry, batch: Any, secrets: tuple[str, ...]) -> None:
    from batchrun.batchapi.flow import _update

    for problem in _update(job, batch, secrets):
        typer.echo(f"batchrun: warning: job {job.batch_id or job.name}: the provider's {problem}; ignored", err=True)


class _api:
    """The endpoint the run's jobs live at, opened like `run` opens it (the built-in one with the
    run's saved state), as a BatchApi."""

    def __init__(self, run_dir: Path, ledger: Ledger, base_url: str | None) -> None:
        self.url, self.key = env_endpoint(base_url, None, use_env_url=False)   # like --resume: the run's own
        self.run_dir, self.ledger = run_dir, ledger

    async def __aenter__(self) -> Any:
        from batchrun.batchapi.api import BatchApi
        from batchrun.batchapi.flow import SIM_STATE_DIR, _check_endpoint
        from batchrun.sim import SimConfig
        from batchrun.endpoint.resolve import BUILTIN, open_endpoint
        from batchrun.runner import say

        if self.url is None:        # the run's own endpoint (a URL that held credentials needs --base-url)
            self.url = BUILTIN if self.ledger.endpoint in (None, "embedded") else self.ledger.endpoint
        sim = SimConfig(batch_state_dir=str((self.run_dir / SIM_STATE_DIR).resolve()))
        self._endpoint = open_endpoint(self.url, self.key, announce=say, sim_config=sim)
        endpoint = await self._endpoint.__aenter__()
        _check_endpoint(self.ledger, endpoint, self.run_dir)
        self._api = BatchApi(endpoint)
        return self._api

    async def __aexit__(self, *exc: Any) -> None:
        await self._api.__aexit__(*exc)
        await self._endpoint.__aexit__(*exc)
