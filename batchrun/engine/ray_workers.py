"""`--ray`: the workers of engine/workers.py as Ray actors, behind the same Coordinator.

Why this shape: a Ray actor is a process the cluster places and keeps; an *async* actor runs
its methods on one asyncio loop inside it. So each actor runs the unchanged worker loop
`serve(channel)` as a task on that loop, with a queue-backed channel; the driver talks to it
with two kinds of actor call:

    push(bytes)  driver -> actor: every message posted since the last push (JOBS, CREDIT,
                 PACE, STOP, END), in order, as one orjson array; one push in flight per actor,
                 so the order holds (Ray does not promise order between calls to an async actor)
    pull()       actor -> driver: a long poll that returns as soon as anything is waiting:
                 every message queued since the last pull (BATCH frames of finished records,
                 READY, DONE) as one orjson array; b"" once the worker has ended

Records stay JSON bytes end to end (no pickling of Record objects), a batch costs one call,
and a dead actor shows up as a RayActorError on the pending pull: the channel's end, which
the Coordinator already treats as a dead worker (its rows are sent again).

Ray is imported only here and in engine/ray_plan.py, which the pipeline loads only for --ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import time
import traceback
from collections import deque
from typing import Any

import orjson
import ray

from batchrun.engine.channel import START
from batchrun.engine.workers import serve

_CLOSE = "__close__"  # driver -> actor: the driver closed its end (the worker takes it as STOP)
CLOSE_TIMEOUT_S = 10.0  # for the last push to reach a live actor


class _ActorSide:
    """The worker's Channel inside the actor: an inbox filled by push(), an outbox drained by pull()."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        self._out: list[Any] = []
        self._waiting = asyncio.Event()
        self.ended = False

    async def send(self, kind: str, payload: Any = None) -> None:
        self.post(kind, payload)

    def post(self, kind: str, payload: Any = None) -> None:
        if not self.ended:
            self._out.append([kind, payload])
            self._waiting.set()

    async def recv(self) -> tuple[str, Any] | None:
        return await self.inbox.get()

    async def close(self) -> None:
        self.end()

    def end(self) -> None:
        self.ended = True
        self._waiting.set()

    async def take(self) -> bytes:
        """Everything queued, as soon as there is anything; b"" once ended and drained."""
        while not self._out and not self.ended:
            self._waiting.clear()
            await self._waiting.wait()
        if not self._out:
            return b""
        out, self._out = self._out, []
        return orjson.dumps(out)  # records are orjson.Fragment: their JSON bytes, as they are


class WorkerActor:
    """One worker as a Ray actor (made remote by `actor_class()`); its methods run on one loop."""

    def __init__(self) -> None:
        self._side: _ActorSide | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> list[Any]:
        """Start the worker loop; [pid, node address] for messages."""
        gc.freeze()  # as workers.main: fewer, shorter pauses while measuring
        gc.set_threshold(50_000, 50, 100)
        self._side = _ActorSide()
        self._task = asyncio.get_running_loop().create_task(self._serve(self._side))
        return [os.getpid(), ray.util.get_node_ip_address() if ray.is_initialized() else socket.gethostname()]

    @staticmethod
    async def _serve(side: _ActorSide) -> None:
        try:
            await serve(side)
        except Exception:  # a bug of ours: in the actor's log (and the driver's stderr)
            traceback.print_exc()
            raise
        finally:
            side.end()  # the driver sees the channel end: this actor's rows go to others

    async def push(self, data: bytes) -> None:
        assert self._side is not None
        for kind, payload in orjson.loads(data):
            if kind == _CLOSE:
                self._side.inbox.put_nowait(None)
                continue
            if kind == START:  # the run's clock, as this machine's perf_counter reads it
                payload["t0"] = time.perf_counter() - payload.pop("elapsed_s")
            self._side.inbox.put_nowait((kind, payload))

    async def pull(self) -> bytes:
        assert self._side is not None
        return await self._side.take()

    async def join(self) -> None:
        """Return once the worker loop has ended."""
        if self._task is not None:
            await asyncio.gather(asyncio.shield(self._task), return_exceptions=True)


class RayChannel:
    """The driver's end of one actor's channel (engine/channel.py's Channel, plus `post`)."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._out: list[Any] = []
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._in: deque[tuple[str, Any]] = deque()
        self.gone = False  # the actor ended, or died
        self._closed = False
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    def post(self, kind: str, payload: Any = None) -> None:
        if self.gone or self._closed:
            return
        self._out.append([kind, payload])
        self._drained.clear()
        self._wake.set()

    async def send(self, kind: str, payload: Any = None) -> None:
        """Post, and wait until the actor has it (back-pressure, as a socket's drain)."""
        self.post(kind, payload)
        await self._drained.wait()

    async def recv(self) -> tuple[str, Any] | None:
        while not self._in:
            if self.gone:
                return None
            try:
                data = await self._actor.pull.remote()
            except ray.exceptions.RayError:  # killed, its node lost, or ended
                data = b""
            if not data:
                self.gone = True
                self._drained.set()
                return None
            self._in.extend((kind, payload) for kind, payload in orjson.loads(data))
        return self._in.popleft()

    async def close(self) -> None:
        if self._closed:
            return
        self.post(_CLOSE)
        self._closed = True
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):  # a stuck push: finish kills the actor
            await asyncio.wait_for(self._drained.wait(), CLOSE_TIMEOUT_S)
        self._sender.cancel()
        await asyncio.gather(self._sender, return_exceptions=True)

    async def _send_loop(self) -> None:
        while True:
            while not self._out:
                self._wake.clear()
                await self._wake.wait()
            out, self._out = self._out, []
            try:
                await self._actor.push.remote(_encode(out))
            except ray.exceptions.RayError:
                self.gone = True
            if not self._out:
                self._drained.set()


def _encode(messages: list[Any]) -> bytes:
    """The messages as one orjson array. START carries the run's clock as seconds elapsed (the
    actor turns it back into a t0 on its own perf_counter: machines do not share a monotonic
    clock; the error is one push's latency, about a millisecond on one machine)."""
    for message in messages:
        if message[0] == START:
            spec = dict(message[1])
            spec["elapsed_s"] = time.perf_counter() - spec.pop("t0")
            message[1] = spec
    return orjson.dumps(messages)


class RayWorker:
    """A started actor, as the Coordinator's WorkerHandle."""

    def __init__(self, actor: Any, actor_name: str, pid: int, node: str) -> None:
        self.actor, self.actor_name, self.pid, self.node = actor, actor_name, pid, node
        self.channel = RayChannel(actor)
        self.name = f"{actor_name}, pid {pid} on {node}"

    async def finish(self, timeout_s: float) -> None:
        """Close the channel (a running worker stops), wait for its loop to end, then end the actor."""
        await self.channel.close()
        try:
            await asyncio.wait_for(self.actor.join.remote(), timeout_s)
        except (TimeoutError, asyncio.TimeoutError, ray.exceptions.RayError):
            pass
        ray.kill(self.actor)


def actor_class(num_cpus: float) -> Any:
    """WorkerActor as a Ray actor class: no restarts and no task retries, since a pull that ran
    twice would lose the records of the first (the Coordinator resends a dead actor's rows)."""
    return ray.remote(num_cpus=num_cpus, max_restarts=0, max_task_retries=0)(WorkerActor)
