"""Several endpoints behind one client (`--base-url A --base-url B --balance rr|least`).

Each endpoint keeps its own client (connection pool), its own RPM / TPM buckets (the run's
--rpm / --tpm apply to each endpoint) and its own health: after FAIL_LIMIT consecutive failures
that are the server's fault (see `server_fault`) it is left out for COOLDOWN_S seconds (all
endpoints out: the least recently failed one is tried). `rr` takes the healthy endpoints in turn;
`least` takes the one with the fewest requests in flight (ties in turn). A retry names the
endpoints that already failed its row (`avoid`): it goes to a healthy one that has not, so a row
is lost only when every endpoint fails it (or the retries run out first). Every result is
labelled with its endpoint (`AttemptResult.endpoint`), so the summary can give figures per endpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Collection, Protocol, Sequence

from batchrun.endpoint.attempt import CONNECTION_ERROR, INCOMPLETE_STREAM, MALFORMED_CHUNK, STREAM_ERROR, AttemptResult
from batchrun.endpoint.requests import estimate_request_tokens
from batchrun.endpoint.resolve import open_endpoint, preflight
from batchrun.endpoint.transport import Endpoint, StreamClient

if TYPE_CHECKING:
    from batchrun.config import RunConfig

BALANCES = ("rr", "least")
FAIL_LIMIT = 3
COOLDOWN_S = 5.0
# Failures that say the endpoint is broken, whatever was asked of it: it could not be reached, or
# it answered 200 and then garbled (MalformedChunk), cut (IncompleteStream) or aborted
# (StreamError) the stream. Timeouts, 429s, 4xx, EmptyResponse (a stop sequence or a tiny
# max_tokens gives one on any endpoint) and ResponseTooLarge (our own cap) say nothing of its health.
SERVER_FAULTS = frozenset({CONNECTION_ERROR, MALFORMED_CHUNK, INCOMPLETE_STREAM, STREAM_ERROR})


class Limiter(Protocol):
    """One endpoint's pacing (engine/limits.py's RateLimits: its --rpm / --tpm buckets)."""

    async def acquire(self, estimated_tokens: int) -> None: ...

    async def aclose(self) -> None: ...


@dataclass
class Member:
    client: StreamClient
    label: str
    limits: Limiter
    in_flight: int = 0
    failures: int = 0  # consecutive
    down_until: float = 0.0
    sent: int = 0


@dataclass
class MultiClient:
    """The Pool's client (send(body, result) -> result) over several StreamClients."""

    members: list[Member]
    balance: str = "rr"
    clock: Callable[[], float] = time.monotonic
    charge_tokens: bool = False  # True with --tpm: each request's tokens are estimated
    _next: int = field(default=0, init=False)

    @property
    def endpoint(self) -> Endpoint:
        return self.members[0].client.endpoint

    @property
    def on_headers(self) -> Any:
        """The pool's response-header hook (learned limits), shared by every member client."""
        return self.members[0].client.on_headers

    @on_headers.setter
    def on_headers(self, hook: Any) -> None:
        for member in self.members:
            member.client.on_headers = hook

    def pick(self, avoid: Sequence[str] = ()) -> Member:
        """The endpoint for the next attempt; `avoid` names those that already failed this row,
        the last one last. A healthy endpoint not in it first; else a healthy one other than the
        last to fail; else (all resting) the least recently failed, again not the last if another."""
        now = self.clock()
        healthy = [m for m in self._in_turn() if m.down_until <= now]
        if not healthy:
            resting = _unless(sorted(self.members, key=lambda m: m.down_until), avoid[-1:])
            return resting[0]
        fresh = [m for m in healthy if m.label not in avoid]
        candidates = fresh or _unless(healthy, avoid[-1:])
        choice = min(candidates, key=lambda m: m.in_flight) if self.balance == "least" else candidates[0]
        self._next = (self.members.index(choice) + 1) % len(self.members)
        return choice

    def _in_turn(self) -> list[Member]:
        return self.members[self._next :] + self.members[: self._next]

    async def send(
        self, body: bytes, result: AttemptResult | None = None, *, avoid: Sequence[str] = ()
    ) -> AttemptResult:
        """One attempt on the endpoint `pick(avoid)` chooses; the result names it (`endpoint`)."""
        member = self.pick(avoid)
        result = AttemptResult(sent=member.client.clock()) if result is None else result
        await member.limits.acquire(_estimate(body) if self.charge_tokens else 1)
        member.in_flight += 1
        member.sent += 1
        try:
            await member.client.send(body, result)
        finally:
            member.in_flight -= 1
        result.endpoint = member.label
        self._health(member, result)
        return result

    def _health(self, member: Member, result: AttemptResult) -> None:
        bad = server_fault(result)
        member.failures = member.failures + 1 if bad else 0
        if member.failures >= FAIL_LIMIT:
            member.down_until = self.clock() + COOLDOWN_S
            member.failures = 0

    async def aclose(self) -> None:
        for member in self.members:
            await member.limits.aclose()


def server_fault(result: AttemptResult) -> bool:
    """The attempt failed through the endpoint's own fault: a 5xx, or a SERVER_FAULTS type."""
    return (result.http_status or 0) >= 500 or result.error_type in SERVER_FAULTS


def _unless(members: list[Member], labels: Collection[str]) -> list[Member]:
    """`members` without those labelled `labels`, unless that leaves none."""
    return [m for m in members if m.label not in labels] or members


def _estimate(body: bytes) -> int:
    """The request's TPM charge, as the pool estimates it (prompt estimate + max_tokens)."""
    try:
        return estimate_request_tokens(json.loads(body))
    except ValueError:
        return max(1, math.ceil(len(body) / 4))


def label(endpoint: Endpoint) -> str:
    """How records and the summary name an endpoint: its URL without a password or key."""
    return endpoint.display_url


@contextlib.asynccontextmanager
async def open_more(config: RunConfig, say: Callable[[str], None]) -> AsyncIterator[list[Endpoint]]:
    """The endpoints after the first --base-url (check them with check_more once the model is known)."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(open_endpoint(url, config.endpoint.api_key, say))
            for url in config.endpoint.extra_base_urls
        ]


async def check_more(more: list[Endpoint], config: RunConfig, say: Callable[[str], None]) -> None:
    """Each further endpoint reachable, its key accepted and `config.endpoint.model` (the first one's) served."""
    for endpoint in more:
        await preflight(endpoint, config.endpoint.model, timeout_s=config.limits.timeout)
    if more:
        say(f"{len(more) + 1} endpoints, balanced {config.endpoint.balance}")


def multi_client(clients: list[StreamClient], config: RunConfig, limits: Callable[[], Limiter]) -> MultiClient:
    """One client over `clients`, each endpoint paced by a Limiter of its own from `limits()`."""
    members = [Member(c, label(c.endpoint), limits()) for c in clients]
    return MultiClient(members, config.endpoint.balance, charge_tokens=config.limits.tpm is not None)
