"""The run report's view of what the pool learned: the provider's rate limits (with the
--rpm/--tpm to recommend) and, with --concurrency auto, the concurrency over time."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from batchrun.analysis.columns import Columns
from batchrun.analysis.timeline import in_flight_timeline, session_timelines
from batchrun.report import plots
from batchrun.report.format import fmt_num, fmt_pct
from batchrun.report.html import Image, Section, Table, Text
from batchrun.store.records import Record

FINDINGS = ("rate_limits", "concurrency")
_MANY_429 = 0.02


def add_findings(summary: dict[str, Any], findings: Mapping[str, Any]) -> None:
    """Put the pool's findings into a run summary, with the warnings they call for."""
    for key in FINDINGS:
        if findings.get(key) is not None:
            summary[key] = findings[key]
    summary["warnings"] = [*summary["warnings"], *limit_warnings(summary)]


def limit_warnings(summary: Mapping[str, Any]) -> list[str]:
    limits = summary.get("rate_limits")
    if not limits:
        return []
    out = [f"ignored a rate-limit header: {p}" for p in limits["provider"]["unreadable"].values()]
    share = limits["rate_limited_share"]
    if share is not None and share > _MANY_429:
        out.append(
            f"{fmt_pct(share)} of requests were answered 429 (rate limited); "
            f"{recommend_text(limits) or 'lower --rpm / --tpm'}"
        )
    provider, user = limits["provider"], limits["user"]
    for flag, mine, theirs in (
        ("rpm", user["rpm"], provider["requests_per_min"]),
        ("tpm", user["tpm"], provider["tokens_per_min"]),
    ):
        if mine and theirs and mine > theirs:
            out.append(f"--{flag} {mine:g} is above the provider's announced {theirs:,.0f} per minute")
    return out


def seen_text(limits: Mapping[str, Any]) -> str:
    """'provider (openai headers): 600 requests/min, 40,000 tokens/min; 0.4% of requests were 429s'."""
    provider = limits["provider"]
    parts = [
        f"{fmt_num(v, 0)} {unit}/min"
        for v, unit in ((provider["requests_per_min"], "requests"), (provider["tokens_per_min"], "tokens"))
        if v
    ]
    said = ", ".join(parts) if parts else "no rate-limit headers seen"
    source = f" ({provider['source']} headers)" if provider["source"] else ""
    share = limits["rate_limited_share"]
    tail = f"; {fmt_pct(share)} of {limits['attempts']} requests were 429s" if share is not None else ""
    return f"provider{source}: {said}{tail}"


def recommend_text(limits: Mapping[str, Any]) -> str | None:
    rec = limits["recommend"]
    flags = " ".join(f"--{k} {v}" for k, v in rec.items() if v)
    return f"recommended: {flags}" if flags else None


def concurrency_text(conc: Mapping[str, Any]) -> str:
    history = conc["history"]
    values = [n for _, n in history[len(history) // 2 :]] or [conc["final"]]
    return (
        f"concurrency auto: settled at {conc['settled']} (recommended -c {conc['settled']}); "
        f"{len(history) - 1} changes, last half between {min(values)} and {max(values)}"
    )


def console_lines(summary: Mapping[str, Any]) -> list[str]:
    lines = []
    limits = summary.get("rate_limits")
    if limits and (limits["provider"]["responses"] or limits["rate_limited"]):
        rec = recommend_text(limits)
        lines.append(f"limits      {seen_text(limits)}" + (f"; {rec}" if rec else ""))
    if summary.get("concurrency"):
        lines.append(f"concurrency {concurrency_text(summary['concurrency'])}")
    return lines


def limits_section(summary: Mapping[str, Any], records: Sequence[Record] | Columns) -> Section | None:
    """'Rate limits and concurrency': the limits seen and paced by, and the concurrency plot."""
    limits, conc = summary.get("rate_limits"), summary.get("concurrency")
    if not limits and not conc:
        return None
    blocks: list[Text | Table | Image] = []
    if limits:
        paced, user = limits["paced"], limits["user"]
        blocks.append(Text(seen_text(limits)))
        blocks.append(
            Table(
                ["limit", "provider announced / min", "you gave", "paced at / min"],
                [
                    [
                        name,
                        fmt_num(limits["provider"][key], 0),
                        fmt_num(user[flag], 0) if user[flag] else "auto" if limits["learned"] else "off",
                        fmt_num(paced[flag], 0),
                    ]
                    for name, key, flag in (
                        ("requests", "requests_per_min", "rpm"),
                        ("tokens", "tokens_per_min", "tpm"),
                    )
                ],
            )
        )
        rec = recommend_text(limits)
        if rec:
            blocks.append(Text(rec))
    if conc:
        blocks.append(Text(concurrency_text(conc)))
        steps = [(t, n) for t, n in conc["history"]]
        if steps and summary.get("wall_time_s"):
            steps.append((max(steps[-1][0], summary["wall_time_s"]), steps[-1][1]))
        # In flight first, so the limit is drawn over it (they coincide while the limit binds).
        blocks.append(
            Image(
                plots.timeline(
                    {"in flight": _in_flight_line(records), "concurrency limit": steps}, title="Concurrency over time"
                ),
                "concurrency over time",
            )
        )
    return Section("Rate limits and concurrency", blocks)


def _in_flight_line(records: Sequence[Record] | Columns) -> list[tuple[float, int]]:
    """The run's in-flight steps (thinned for a plot when there are very many): all sessions'
    spans on one line, as in_flight_timeline draws them."""
    if not isinstance(records, Columns):
        return in_flight_timeline(records)
    return session_timelines(records, by_session=False).get(1, [])
