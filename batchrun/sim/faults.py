"""Which fault, if any, one request suffers: from its directives, else a seeded roll.

Error faults replace the whole response; stream faults happen after some output chunks:
`cut` closes the connection (no [DONE]), `stall` goes silent for stall_s, `malformed` sends a
`data:` line that is not JSON and then carries on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from batchrun.sim.config import ERROR_FAULTS, FAULT_KINDS, SimConfig
from batchrun.sim.directives import Directives
from batchrun.twin.model import TwinModel, http_status


@dataclass(frozen=True, slots=True)
class Faults:
    error: int | None = None  # HTTP status to answer with instead of a completion
    events: tuple[tuple[int, str], ...] = ()  # (output chunks sent before it, kind), in order

    def at(self, sent: int) -> list[str]:
        return [kind for pos, kind in self.events if pos == sent]


NO_FAULTS = Faults()


def choose_faults(cfg: SimConfig, d: Directives, rng: random.Random | None, n_chunks: int) -> Faults:
    """Directives win; else one roll against the configured rates (rng None: no rates set)."""
    if d.error is not None:
        return Faults(error=d.error)
    forced = [
        (min(v, n_chunks), k)
        for k, v in (("malformed", d.malformed), ("stall", d.stall), ("cut", d.cut))
        if v is not None
    ]
    if forced:
        return Faults(events=tuple(sorted(forced, key=lambda e: e[0])))
    return roll_fault(cfg, rng, n_chunks) if rng is not None else NO_FAULTS


def roll_fault(cfg: SimConfig, rng: random.Random, n_chunks: int) -> Faults:
    """At most one fault, picked by one uniform draw over the cumulative rates (a twin's own)."""
    if cfg.twin is not None:
        return twin_fault(cfg.twin, rng, n_chunks)
    u, edge = rng.random(), 0.0
    for kind in FAULT_KINDS:
        edge += cfg.fault_rate(kind)
        if u < edge:
            if kind in ERROR_FAULTS:
                return Faults(error=int(kind.removeprefix("error_")))
            # After at least one chunk and before the last, so the client has started reading.
            return Faults(events=((rng.randint(1, max(1, n_chunks - 1)), kind),))
    return NO_FAULTS


def twin_fault(twin: TwinModel, rng: random.Random, n_chunks: int) -> Faults:
    """A twin's failure: an HTTP error, or a stream fault (a source's timeout is served as a stall,
    so the client's own timeout ends it as it ended the source's request)."""
    failure = twin.failure(rng.random())
    if failure is None:
        return NO_FAULTS
    status = http_status(failure)
    if status is not None:
        return Faults(error=status)
    kind = "stall" if failure.kind == "timeout" else failure.kind
    return Faults(events=((rng.randint(1, max(1, n_chunks - 1)), kind),))


def any_fault_rate(cfg: SimConfig) -> bool:
    if cfg.twin is not None:
        return cfg.twin.fails
    return any(cfg.fault_rate(k) > 0 for k in FAULT_KINDS)
