"""Online or Batch API: `--mode auto`'s rule, and the checks that keep a run in one place.

The rule for `--mode auto` (in this order):
  1. online when the rows are few: at most AUTO_ONLINE_MAX_ROWS (1,000) rows to send, which
     online mode finishes in minutes while a Batch API job may take up to its 24 h window;
  2. online when the job is urgent: --deadline shorter than the Batch API's 24 h window;
  3. online when --tool-module runs tools between requests (a batch request cannot);
  4. online when the endpoint has no Batch API (GET /v1/batches does not answer 200);
  5. otherwise batch: half the price, and outside the online rate limits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import aiohttp

from batchrun.batchapi.ledger import Ledger
from batchrun.config import RunConfig
from batchrun.endpoint.resolve import BUILTIN
from batchrun.errors import ConfigError
from batchrun.plan import open_rows
from batchrun.store.outputs import done_ids
from batchrun.store.records import RECORDS

AUTO_ONLINE_MAX_ROWS = 1_000
BATCH_WINDOW_S = 24 * 3600.0


def auto_choice(rows: int, deadline_s: float | None, tool_module: bool, has_batch_api: bool | None) -> tuple[str, str]:
    """(mode, why) by the rule above (pure). `has_batch_api` None: not known (not asked)."""
    if rows <= AUTO_ONLINE_MAX_ROWS:
        return "online", f"{rows} rows to send (at most {AUTO_ONLINE_MAX_ROWS:,} go online)"
    if deadline_s is not None and deadline_s < BATCH_WINDOW_S:
        return "online", f"--deadline {deadline_s:g} s is shorter than the Batch API's 24 h window"
    if tool_module:
        return "online", "--tool-module runs tools between requests, which a batch request cannot"
    if has_batch_api is False:
        return "online", "the endpoint has no Batch API (GET /v1/batches did not answer 200)"
    return "batch", f"{rows} rows and no deadline under 24 h: the Batch API costs half"


def open_batch_jobs(out: Path | None) -> int:
    """Batch API jobs of the run in `out` not yet collected that may exist at the provider
    (uploaded, or created); 0 for a new run."""
    path = out / "run.json" if out is not None else None
    if path is None or not path.exists():
        return 0
    try:
        jobs = (json.loads(path.read_text(encoding="utf-8")).get("batch") or {}).get("jobs") or []
    except (OSError, ValueError):
        return 0
    return sum(1 for job in jobs if not job.get("collected") and (job.get("file_id") or job.get("batch_id")))


def drop_unsent_jobs(out: Path | None) -> None:
    """Going online: planned files never uploaded are dropped, so a later batch session cannot
    send rows that online mode has answered meanwhile."""
    if out is None or not (out / "run.json").exists():
        return
    ledger = Ledger.load(out)
    unsent = [job for job in ledger.open_jobs() if job.file_id is None and job.batch_id is None]
    for job in unsent:
        job.collected, job.status = True, "dropped"
    if unsent:
        ledger.save(out)


async def choose_mode(config: RunConfig, announce: Callable[[str], None]) -> RunConfig:
    """The config with `mode` settled to online or batch (after resolve_resume)."""
    open_jobs = open_batch_jobs(config.control.resume)
    if config.control.mode in (None, "online"):
        if open_jobs:
            raise ConfigError(
                f"{config.control.resume} has {open_jobs} Batch API job(s) not yet collected: "
                "resume with --mode batch to collect them (sending their rows online would pay twice)"
            )
        drop_unsent_jobs(config.control.resume)
        return config.replace(mode="online")
    if config.control.mode == "batch":
        if config.tools.tool_module is not None:
            raise ConfigError(
                "--tool-module runs tools between requests, which a Batch API request cannot; use --mode online"
            )
        return config
    if open_jobs:
        return config.replace(mode="batch")
    count = rows_to_send(config)
    endpoint = config.endpoint
    probe = None if count <= AUTO_ONLINE_MAX_ROWS else await has_batch_api(endpoint.base_url, endpoint.api_key)
    mode, why = auto_choice(count, config.control.deadline_s, config.tools.tool_module is not None, probe)
    announce(f"--mode auto: {mode} ({why})")
    return config.replace(mode=mode)


def rows_to_send(config: RunConfig) -> int:
    """Rows of the input without an ok record in the run directory (all of them for a new run)."""
    done = done_ids(config.control.resume / RECORDS) if config.control.resume else set()
    return sum(1 for row in open_rows(config) if row.id not in done)


async def has_batch_api(base_url: str | None, api_key: str | None) -> bool | None:
    """Whether GET {base_url}/batches answers 200; the built-in endpoint and OpenAI (no base URL)
    have one."""
    if not base_url or base_url == BUILTIN:
        return True
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(base_url.rstrip("/") + "/batches?limit=1", headers=headers) as resp:
                return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return None
