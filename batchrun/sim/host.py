"""What a request handler may use of the server: its state (counters, attempts, engine) and a
few helpers, named by a Protocol so that handlers (chat.py, and every endpoint added beside it)
depend on this module and never on server.py, which imports them to route requests."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING, Protocol

from batchrun.sim.config import FAULT_KINDS, SimConfig
from batchrun.sim.delivery import Engine, Hooks
from batchrun.sim.http import Connection, Request
from batchrun.sim.prefix_cache import PrefixCache
from batchrun.sim.wire import ApiError


class Stats:
    """Counters a test compares with what its client saw."""

    def __init__(self) -> None:
        self.requests = 0  # POST requests on chat, completions and embeddings
        self.by_endpoint: Counter[str] = Counter()  # POST requests by endpoint (chat, completions, embeddings)
        self.responses: Counter[int] = Counter()  # every response by HTTP status (bar _QUIET_PATHS)
        self.faults: Counter[str] = Counter(dict.fromkeys(FAULT_KINDS, 0))
        self.rate_limited: Counter[str] = Counter(requests=0, tokens=0)  # 429s from rpm / tpm
        self.tool_call_responses = 0
        self.completed = 0  # answers sent in full
        self.disconnects = 0  # clients that left mid-answer (cuts not included)

    def count_response(self, status: int) -> None:
        self.responses[status] += 1

    def count_fault(self, kind: str) -> None:
        self.faults[kind] += 1


class AttemptCounter:
    """How many times an identical request body was seen, so `xN` directives and fault rolls
    can differ between a request and its retries. Bounded: oldest bodies are forgotten first."""

    def __init__(self, limit: int = 200_000) -> None:
        self._seen: dict[bytes, int] = {}
        self._limit = limit

    def next(self, body: bytes) -> int:
        key = hashlib.blake2b(body, digest_size=16).digest()
        n = self._seen.get(key, 0)
        self._seen[key] = n + 1
        if len(self._seen) > self._limit:
            del self._seen[next(iter(self._seen))]
        return n


if TYPE_CHECKING:  # the stores import this module for Host
    from batchrun.sim.batches import BatchStore
    from batchrun.sim.files import FileStore


class Host(Protocol):
    """The server as its handlers see it (SimServer implements it)."""

    files: FileStore  # /v1/files
    batches: BatchStore  # /v1/batches
    config: SimConfig
    counters: Stats
    attempts: AttemptCounter
    engine: Engine
    hooks: Hooks
    prefix_cache: PrefixCache

    def completion_id(self) -> str: ...
    def created(self) -> int: ...
    def ratelimit_headers(self) -> list[tuple[str, str]]: ...
    def check_rate_limit(self, model: str, cost_tokens: int) -> None: ...
    def send_json(
        self,
        conn: Connection,
        req: Request,
        rid: str,
        status: int,
        body: bytes,
        extra: list[tuple[str, str]] | None = None,
    ) -> None: ...
    def send_error(self, conn: Connection, req: Request, rid: str, err: ApiError) -> None: ...
