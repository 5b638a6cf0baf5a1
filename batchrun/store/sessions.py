"""run.json: a run's settings and its sessions (the first run and every --resume), each with the
endpoint that answered it, so a resumed run keeps its endpoint (plan.resolve_resume) and every
record says which session wrote it."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from batchrun.errors import ConfigError, OutputError
from batchrun.version import __version__

RUN_JSON = "run.json"


def read_run_json(run_dir: Path) -> dict[str, Any]:
    """The saved run.json of `run_dir`, or a ConfigError saying what to do."""
    path = run_dir / RUN_JSON
    if not path.exists():
        raise ConfigError(
            f"{run_dir} is not a batchrun run directory (no {RUN_JSON}); "
            "pass the directory a previous `batchrun run` wrote"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("config"), dict):
            raise KeyError("config")
        return data
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"cannot read {path} ({type(exc).__name__}: {exc}); rerun without --resume "
            f"into a new --out (rows already done are in {run_dir / 'records.jsonl'})"
        ) from exc


def start_session(out: Path, config: dict[str, Any], endpoint: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """Write run.json with this session added; returns its number (1-based) and the previous
    session's entry (None on a first run)."""
    path = out / RUN_JSON
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    sessions = list(previous.get("sessions") or [])
    n = len(sessions) + 1
    session = {
        "n": n,
        "started_at": datetime.now(timezone.utc).isoformat(),
        "batchrun_version": __version__,
        "endpoint": endpoint,
    }
    # Keys written by other stages (e.g. the input's identity) are kept as they are.
    data = {
        **previous,
        "wall_time_s": previous.get("wall_time_s", 0.0),
        "config": config,
        "endpoint": endpoint,
        "started_at": previous.get("started_at", session["started_at"]),
        "sessions": [*sessions, session],
    }
    write_json(path, data)
    return n, (sessions[-1] if sessions else None)


def add_wall_time(out: Path, wall: float) -> float:
    """Sending time over every session of this run (a resumed run adds to it), kept in run.json."""
    path = out / RUN_JSON
    data = json.loads(path.read_text(encoding="utf-8"))
    data["wall_time_s"] = data.get("wall_time_s", 0.0) + wall
    write_json(path, data)
    return data["wall_time_s"]


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write then rename: a crash mid-write never leaves a torn run.json that --resume cannot read."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror} (is the disk full?)") from exc
