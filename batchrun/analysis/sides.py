"""One side of a comparison: a run or bench directory, a summary.json or a summary dict, read
into a Side (its summary, and its records when it has them), and what differs between two sides.

Refuses (CompareRefused, exit 2) what cannot be compared: unreadable or empty files, summaries
of an unknown schema version, a run against a bench, a bench level the other side did not measure.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from batchrun.analysis.metrics import summarize
from batchrun.errors import CompareRefused, ConfigError  # noqa: F401  (CompareRefused: imported from here too)
from batchrun.report.summary import load_bench, load_run
from batchrun.store.records import SKIPPED, Record

KNOWN_SCHEMA_VERSIONS = (1,)
# A summary without these is not a batchrun summary at all.
_REQUIRED_KEYS = ("counts", "throughput", "latency_s", "ttft_s")


# ---------------------------------------------------------------- one side of the comparison


@dataclass(slots=True)
class Side:
    """What one argument of `compare` holds: its summary, and its records when it has them."""

    where: str
    kind: str  # "run" or "bench"
    summary: dict[str, Any]
    doc: dict[str, Any] = field(default_factory=dict)  # the whole summary.json, when read
    records: list[Record] | None = None  # pooled over the repeats of one bench level
    wall_s: float = 0.0  # summed over those repeats
    runs: int = 1
    level: str | None = None  # "c=8" or "rate=4" for a bench level
    open_loop: bool = False

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.doc.get("config") or {})


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc} (pass a run or bench directory, or its summary.json)") from exc
    if not isinstance(doc, dict) or not doc:
        raise CompareRefused(
            f"{path} is empty or not a JSON object: nothing to compare (pass a summary.json written by batchrun)"
        )
    return doc


def _check_summary(summary: Any, where: str) -> dict[str, Any]:
    if not isinstance(summary, Mapping) or not summary:
        raise CompareRefused(f"{where} holds no summary: nothing to compare (pass a summary.json written by batchrun)")
    missing = [k for k in _REQUIRED_KEYS if not isinstance(summary.get(k), Mapping)]
    if missing:
        raise CompareRefused(
            f"{where} is not a batchrun summary: it lacks {', '.join(missing)} "
            "(rebuild it with `batchrun report RUN_DIR`)"
        )
    return dict(summary)


def _check_version(doc: Mapping[str, Any], where: str) -> None:
    version = doc.get("schema_version")
    if version not in KNOWN_SCHEMA_VERSIONS:
        raise CompareRefused(
            f"{where} has schema version {version!r}, which this batchrun does not know "
            f"(it reads {', '.join(map(str, KNOWN_SCHEMA_VERSIONS))}); rebuild it with "
            "`batchrun report RUN_DIR` or compare with the batchrun that wrote it"
        )


def load_side(source: Mapping[str, Any] | Path | str) -> Side:
    """A Side from a summary dict, a summary.json document or file, a run dir or a bench dir.

    A summary.json next to its records.jsonl (or bench.json) is read as its directory, so the
    comparison has the records."""
    if isinstance(source, Mapping):
        doc = dict(source)
        if "schema_version" in doc:
            _check_version(doc, "the given summary")
            return _doc_side(doc, "the given summary")
        return Side("the given summary", "run", _check_summary(doc, "the given summary"))
    path = Path(source)
    if (
        path.is_file()
        and path.name == "summary.json"
        and ((path.parent / "records.jsonl").exists() or (path.parent / "bench.json").exists())
    ):
        path = path.parent
    if path.is_dir():
        if (path / "bench.json").exists():
            return _bench_side(path)
        if (path / "records.jsonl").exists():
            return _run_dir_side(path)
        if not (path / "summary.json").exists():
            raise ConfigError(f"{path} has no records.jsonl (pass the --out directory of a batchrun run)")
        path = path / "summary.json"
    doc = _read_doc(path)
    if "schema_version" not in doc:
        return Side(str(path), "run", _check_summary(doc, str(path)))  # a bare summary dict
    _check_version(doc, str(path))
    return _doc_side(doc, str(path))


def _doc_side(doc: dict[str, Any], where: str) -> Side:
    kind = doc.get("kind", "run")
    if kind == "bench" and doc.get("summary") is None:
        raise CompareRefused(
            f"{where} is a bench with no headline summary: pass the bench directory, "
            "or compare one of its runs, e.g. RUN_DIR/runs/<name>"
        )
    return Side(where, kind, _check_summary(doc.get("summary"), where), doc=doc)


def _run_dir_side(path: Path) -> Side:
    doc: dict[str, Any] = (
        _read_doc(path / "summary.json") if (path / "summary.json").exists() else {"schema_version": 1}
    )
    _check_version(doc, str(path / "summary.json"))
    run = load_run(path)
    if doc.get("config") is None and run.config is not None:
        doc["config"] = run.config
    summary = _check_summary(run.summary, str(path))
    records = run.records
    assert isinstance(records, list)  # load_run without lean reads Records, not Columns
    sent = [r for r in records if r.status != SKIPPED and r.sent_s is not None]
    return Side(
        str(path),
        doc.get("kind", "run"),
        summary,
        doc=doc,
        records=records,
        wall_s=summary.get("wall_time_s") or 0.0,
        runs=1,
        open_loop=any(r.scheduled_s is not None for r in sent),
    )


def _bench_side(path: Path) -> Side:
    doc: dict[str, Any] = (
        _read_doc(path / "summary.json") if (path / "summary.json").exists() else {"schema_version": 1}
    )
    _check_version(doc, str(path / "summary.json"))
    bench = load_bench(path)
    doc.setdefault("config", bench.get("config"))
    doc["kind"] = "bench"
    return Side(str(path), "bench", {}, doc={**doc, "_bench": bench})


def side_of_records(
    records: Sequence[Record],
    *,
    where: str = "records",
    wall_s: float | None = None,
    doc: Mapping[str, Any] | None = None,
    slo: Mapping[str, float] | None = None,
    open_loop: bool = False,
) -> Side:
    """A Side straight from records (library use and tests: no files)."""
    summary = summarize(records, wall_time_s=wall_s, slo=slo)
    return Side(
        where,
        "run",
        summary,
        doc=dict(doc or {}),
        records=list(records),
        wall_s=summary["wall_time_s"] or 0.0,
        open_loop=open_loop,
    )


def _levels(side: Side) -> dict[str, list[dict[str, Any]]]:
    levels: dict[str, list[dict[str, Any]]] = {}
    for run in side.doc["_bench"]["runs"]:
        if run["mode"] == "async":
            levels.setdefault(f"c={run['concurrency']}", []).append(run)
        elif run["mode"] == "rate":
            levels.setdefault(f"rate={run['rate']:g}", []).append(run)
    return levels


def _headline_level(side: Side) -> str | None:
    summary = side.doc.get("summary") or {}
    name = summary.get("bench_run")
    for level, runs in _levels(side).items():
        if any(r["name"] == name for r in runs):
            return level
    levels = list(_levels(side))
    return levels[0] if len(levels) == 1 else None


def _pool_level(side: Side, level: str) -> Side:
    """The bench side narrowed to one level, its repeats' records pooled."""
    runs = _levels(side)[level]
    records = [r for run in runs for r in run["records"]]
    wall = math.fsum(run.get("wall_time_s") or 0.0 for run in runs)
    slo = side.doc["_bench"].get("slo")
    summary = summarize(records, wall_time_s=wall or None, slo=slo)
    summary["bench_level"] = level
    config = {**side.config, "level": level}
    doc = {k: v for k, v in side.doc.items() if k != "_bench"}
    doc["config"] = config
    return Side(
        side.where,
        "bench",
        summary,
        doc=doc,
        records=records,
        wall_s=wall,
        runs=len(runs),
        level=level,
        open_loop=runs[0]["mode"] == "rate",
    )


def _pick_levels(base: Side, cur: Side) -> tuple[Side, Side]:
    if (
        base.kind != cur.kind
        and "bench" in (base.kind, cur.kind)
        and (base.doc.get("_bench") is not None or cur.doc.get("_bench") is not None)
    ):
        raise CompareRefused(
            f"{base.where} is a {base.kind} and {cur.where} a {cur.kind}: compare two runs "
            "or two benches (or pass one bench run, RUN_DIR/runs/<name>)"
        )
    if base.doc.get("_bench") is None or cur.doc.get("_bench") is None:
        return base, cur
    level = _headline_level(base)
    if level is None:
        raise CompareRefused(
            f"{base.where} has no recommended level to compare: compare one of its runs, e.g. RUN_DIR/runs/<name>"
        )
    if level not in _levels(cur):
        raise CompareRefused(
            f"{cur.where} did not measure {level}, the baseline's level "
            f"(it has {', '.join(_levels(cur)) or 'no async level'})"
        )
    return _pool_level(base, level), _pool_level(cur, level)


# ---------------------------------------------------------------- configuration differences

# Settings whose change changes what is measured (the rest, like --out or --quiet, do not).
_COMPARED_SETTINGS = (
    "model",
    "base_url",
    "max_tokens",
    "temperature",
    "system",
    "template",
    "extra_body",
    "tools",
    "tool_choice",
    "prompt_column",
    "concurrency",
    "rates",
    "burstiness",
    "level",
    "slo",
    "input",
)


def _endpoint_kind(side: Side) -> str | None:
    endpoint = side.doc.get("endpoint")
    if isinstance(endpoint, Mapping):
        return endpoint.get("kind")
    return None


def _input_identity(side: Side) -> Any:
    ident = side.doc.get("input")
    if isinstance(ident, Mapping) and ident.get("sha256"):
        return ident["sha256"]
    return side.config.get("input")


def config_differences(base: Side, cur: Side) -> tuple[list[str], list[str]]:
    """(differences that make the comparison unfair, notes on what is unknown)."""
    diffs: list[str] = []
    notes: list[str] = []
    if not base.doc or not cur.doc:
        return diffs, ["configuration unknown on one side (a bare summary): not checked"]
    b, c = base.config, cur.config
    for key in _COMPARED_SETTINGS:
        if key == "input":
            bv, cv = _input_identity(base), _input_identity(cur)
        else:
            bv, cv = b.get(key), c.get(key)
        if key == "concurrency" and (base.level or cur.level):
            continue  # the level says it for a bench
        if key in ("rates",) and (base.level or cur.level):
            continue
        if bv != cv:
            diffs.append(f"{key}: {_show(bv)} -> {_show(cv)}")
    kinds = (_endpoint_kind(base), _endpoint_kind(cur))
    if None in kinds:
        where = "both sides" if kinds == (None, None) else "the baseline" if kinds[0] is None else "the current side"
        (notes if kinds == (None, None) else diffs).append(
            f"endpoint: simulated or real is unknown on {where} (summary has no 'endpoint' key)"
        )
    elif kinds[0] != kinds[1]:
        diffs.append(f"endpoint: {kinds[0]} -> {kinds[1]} (simulated vs real)")
    versions = (base.doc.get("batchrun_version"), cur.doc.get("batchrun_version"))
    if versions[0] != versions[1]:
        diffs.append(f"batchrun version: {_show(versions[0])} -> {_show(versions[1])}")
    return diffs, notes


def _show(value: Any) -> str:
    if value is None:
        return "unknown/none"
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
