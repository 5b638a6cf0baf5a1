"""How many worker processes a run uses (`--workers N|auto`), and the spec each one gets."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from batchrun.config import RunConfig
from batchrun.engine.pool import PoolConfig
from batchrun.engine.workers import WorkerSpec
from batchrun.errors import ConfigError

# `--workers auto` uses more than one process from this concurrency on. Below it one process's
# loop keeps up (bench/bench_workers.py: TTFT inflation p99 at 256 streams is a few ms in one
# process), and a second process would only add its start-up and the coordinator's hop.
AUTO_MIN_CONCURRENCY = 256


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(config: RunConfig, kind: str, cores: int | None = None) -> int:
    """1 (today's in-process run) or the number of worker processes; `kind` is the workload's.

    auto: cores - 1 (one core left for the coordinator and the rest of the machine) once
    --concurrency reaches AUTO_MIN_CONCURRENCY and the workload can be split, else 1."""
    problem = _unsplittable(kind)
    if config.scale.workers_auto:
        cores = usable_cores() if cores is None else cores
        return max(1, cores - 1) if config.limits.concurrency >= AUTO_MIN_CONCURRENCY and problem is None else 1
    if config.scale.workers > 1 and problem is not None:
        raise ConfigError(f"--workers {config.scale.workers}: {problem} (use --workers 1)")
    return config.scale.workers


def _unsplittable(kind: str) -> str | None:
    if kind == "sessions":
        return "multi-turn sessions run in one process"
    if kind == "trace":
        return "a trace replay keeps its schedule in one process"
    if kind != "rows":
        return f"a {kind} run works in one process"
    return None


def worker_spec(config: RunConfig, endpoint: Any, pool_config: PoolConfig, t0: float) -> WorkerSpec:
    """What every worker gets (its `concurrency` share is set per worker by the coordinator)."""
    pool = dataclasses.asdict(pool_config)
    pool.pop("adaptive")  # --concurrency auto runs in one process (config.py)
    limits, tools = config.limits, config.tools
    return WorkerSpec(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        basic_auth=endpoint.basic_auth,
        embedded=endpoint.embedded,
        endpoint_kind=config.endpoint.endpoint,
        timeout=limits.timeout,
        ttft_timeout=limits.ttft_timeout,
        max_response_bytes=limits.max_response_bytes,
        pool=pool,
        t0=t0,
        metered=bool(limits.rpm or limits.tpm),
        tool_module=str(tools.tool_module) if tools.tool_module else None,
        tool_timeout=tools.tool_timeout,
        json_schema=config.request.json_schema,
        json_mode=config.request.json_mode,
    )
