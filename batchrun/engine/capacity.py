"""Settings that cannot work as given, found before the first request: more connections than
the process may open files, or rate limits that would make a run last for days."""

from __future__ import annotations

from batchrun.errors import ConfigError

_SPARE_FILES = 64  # the input, records.jsonl, the event loop, logs, ...
_DAY_S = 86_400.0


def ensure_open_files(concurrency: int) -> str | None:
    """Raise the open-file limit to fit `concurrency` connections where the hard limit allows;
    a message saying so, or a ConfigError saying what to do when it cannot."""
    try:
        import resource  # here: Windows has no `resource` module
    except ImportError:  # Windows: no RLIMIT_NOFILE to manage
        return None
    needed = concurrency + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
            f"--concurrency {concurrency} needs about {needed} open files, but this "
            f"process may open at most {hard}; lower --concurrency to {max(1, hard - _SPARE_FILES)} "
            f"or raise the limit (`ulimit -n {needed}`, or the service's LimitNOFILE)"
        )
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError) as exc:
        raise ConfigError(
            f"--concurrency {concurrency} needs about {needed} open files and the limit "
            f"is {soft}; raising it failed ({exc}): run `ulimit -n {needed}` first"
        ) from exc
    return f"raised the open-file limit from {soft} to {needed} for --concurrency {concurrency}"


def pacing_warnings(rows: int | None, charge_tokens: int, rpm: float | None, tpm: float | None) -> list[str]:
    """Warnings for limits that cannot be what the user meant: a --tpm below one request's charge,
    or an --rpm / --tpm that stretches the run past a day (with the expected duration)."""
    out = []
    if tpm is not None and charge_tokens > tpm:
        out.append(
            f"--tpm {tpm:g} is smaller than one request's token charge (~{charge_tokens} tokens: "
            f"prompt estimate + max_tokens): each request waits about "
            f"{_duration(60.0 * charge_tokens / tpm)} for its turn"
        )
    if rows:
        waits = [(f"--rpm {rpm:g}", 60.0 * rows / rpm)] if rpm else []
        if tpm:
            waits.append((f"--tpm {tpm:g}", 60.0 * rows * charge_tokens / tpm))
        for option, seconds in waits:
            if seconds > _DAY_S:
                what = "1 row takes" if rows == 1 else f"{rows} rows take"
                out.append(f"at {option}, about {what} about {_duration(seconds)}; is that the limit you meant?")
    return out


def _duration(seconds: float) -> str:
    if seconds >= _DAY_S:
        return f"{seconds / _DAY_S:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"
