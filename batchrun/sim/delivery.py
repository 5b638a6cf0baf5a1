"""Playing a Plan over a connection in time: the capacity queue and the timed responses.

Responses run on loop timers (`call_later`), not a task per request: a timer callback is about half
the cost of a task waking from asyncio.sleep, there is nothing to cancel but one handle when the
client goes away, and a stopped server leaves no pending tasks. Chunk times are scheduled from
the previous chunk's planned time, not from "now", so a late wake-up does not push every later
chunk back (in fixed mode the timeline is exact up to timer resolution).

The timeline is kept on time.monotonic(), not loop.time(): uvloop's loop.time() counts whole
milliseconds, so a plan anchored on it started up to 1 ms early and `call_at` fired up to 1 ms
late, about +0.5 ms per chunk on average. A request that gets a slot at once is timed from when it
was handed to the handler, not from when its plan was ready: parsing and planning (about 0.3-1 ms
of Python on a busy machine) are inside the TTFT the plan draws, as a real server's are.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable

from batchrun.sim import model
from batchrun.sim.config import SimConfig
from batchrun.sim.http import LAST_CHUNK, Connection, chunk
from batchrun.sim.planner import Plan
from batchrun.twin.inflight import LoadMeter

# Both loops fire a timer on a millisecond grid after its time, about half a millisecond late on
# average (uvloop counts whole milliseconds; asyncio's epoll wait rounds its timeout up to one):
# asking that much early makes the average chunk time the planned one.
TIMER_LATE_S = 0.0005


class Engine:
    """max_concurrency slots; requests beyond them wait first-in, first-out."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.decoding = 0  # requests holding a slot
        self.queued = 0  # live requests waiting for one
        self.open = 0  # requests being answered, queued or not
        self.meter = LoadMeter()  # open and its recent average: a twin's load (twin/inflight.py)
        self._waiting: deque[_Delivery] = deque()

    def load(self) -> float:
        """What a twin reads its tables at: the requests being answered, or their recent average."""
        return self.meter.load(time.monotonic())

    def count(self, delta: int) -> None:
        self.open += delta
        self.meter.change(time.monotonic(), delta)

    def admit(self, job: _Delivery) -> None:
        if self.decoding < self.capacity:
            self.decoding += 1
            job.begin(holding=True, since=job.conn.received_s)
        else:
            self.queued += 1
            self._waiting.append(job)

    def release(self) -> None:
        self.decoding -= 1
        while self._waiting and self.decoding < self.capacity:
            job = self._waiting.popleft()
            if job.cancelled:
                continue  # its count was dropped in withdraw()
            self.queued -= 1
            self.decoding += 1
            job.begin(holding=True)

    def withdraw(self) -> None:
        """A waiting job was cancelled; it stays in the deque and is skipped when reached."""
        self.queued -= 1


class Hooks:
    """What a delivery reports back to the server (kept apart so this module needs no server)."""

    def __init__(self, count_fault: Callable[[str], None], done: Callable[[bool], None]) -> None:
        self.count_fault = count_fault  # kind -> None, when a fault actually happens
        self.done = done  # True: answered in full; False: the client left mid-answer


class _Delivery:
    def __init__(self, cfg: SimConfig, engine: Engine, conn: Connection, plan: Plan, hooks: Hooks) -> None:
        self.cfg, self.engine, self.conn, self.plan, self.hooks = cfg, engine, conn, plan, hooks
        self.loop = asyncio.get_running_loop()
        self.handle: asyncio.TimerHandle | None = None
        self.holding = False
        self.waiting = False
        self.cancelled = False
        self.counted = False
        self.ratio_mean: float | None = None  # a twin's: see TwinModel.ratio_mean
        self.mean_rank = 0.5  # a twin's: the rank its mean gap is read at (mean_gap_rank)
        self.next_at = 0.0

    def start(self) -> None:
        self.conn.watcher = self
        self.counted = True
        self.engine.count(+1)
        if self.plan.queued:
            self.waiting = True
            self.engine.admit(self)
        else:
            self.begin(holding=False, since=self.conn.received_s)

    def begin(self, holding: bool, since: float | None = None) -> None:
        """Start the timeline `since` then (time.monotonic()), or now: a request that waited for
        a slot starts when it gets one."""
        self.waiting, self.holding = False, holding
        self.next_at = (since or time.monotonic()) + self._first_s() + self._extra_s()
        self._schedule()

    def _first_s(self) -> float:
        """Seconds to the first chunk: the plan's, or a twin's at the requests now in flight."""
        twin, plan = self.cfg.twin, self.plan
        if twin is not None and plan.twin_ttft:
            return twin.ttft_s(self.engine.load(), plan.twin_ranks[0], plan.prompt_tokens)
        return plan.ttft_s

    def _extra_s(self) -> float:
        return 0.0

    def _instant(self) -> bool:
        """Fast mode with nothing to wait for: answer at once, no timer."""
        return self.cfg.fast and not self.plan.faults.events and not self.plan.ttft_s

    def cancel(self) -> None:
        """The client went away: stop the timers and give the slot back."""
        if self.cancelled:
            return
        self.cancelled = True
        if self.handle is not None:
            self.handle.cancel()
        if self.waiting:
            self.engine.withdraw()
        self._release()
        self._uncount()
        self.hooks.done(False)

    def _schedule(self) -> None:
        self.handle = self.loop.call_later(max(0.0, self.next_at - time.monotonic() - TIMER_LATE_S), self._step)

    def _release(self) -> None:
        if self.holding:
            self.holding = False
            self.engine.release()

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            self.engine.count(-1)

    def _gap(self, k: int) -> float:
        ranks, twin = self.plan.twin_ranks, self.cfg.twin
        if ranks and twin is not None:
            load = self.engine.load()
            if self.ratio_mean is None:  # once per request, at the load at its first gap
                self.ratio_mean = twin.ratio_mean(load, ranks[2 : 2 + max(0, self.plan.n_chunks - 1)])
                self.mean_rank = twin.mean_gap_rank(load, ranks[0], ranks[1])
            return twin.gap_s(load, self.mean_rank, ranks[2 + k] if 2 + k < len(ranks) else 0.5, self.ratio_mean)
        jitter = self.plan.itl_jitter[k] if k < len(self.plan.itl_jitter) else 1.0
        return model.itl_s(self.cfg, max(1, self.engine.decoding), jitter)

    def _end(self, completed: bool) -> None:
        self.cancelled = True  # nothing more to cancel if the connection drops now
        self._release()
        self._uncount()
        if completed:
            self.hooks.done(True)
            self.conn.finish()
        else:
            self.conn.watcher = None
            self.conn.close()

    def _step(self) -> None:
        raise NotImplementedError


class StreamDelivery(_Delivery):
    """SSE: one HTTP chunk per output chunk, after TTFT and then one ITL apart."""

    def __init__(
        self,
        cfg: SimConfig,
        engine: Engine,
        conn: Connection,
        plan: Plan,
        hooks: Hooks,
        head: bytes,
        units: list[bytes],
        tail: bytes,
        malformed: bytes,
    ) -> None:
        super().__init__(cfg, engine, conn, plan, hooks)
        self.head, self.units, self.tail, self.malformed = head, units, tail, malformed
        self.sent = 0
        self.fault_i = 0

    def start(self) -> None:
        if self._instant():
            # Zero delays: headers and the whole body in one chunk, one write.
            self.conn.write(self.head + chunk(b"".join(self.units) + self.tail) + LAST_CHUNK)
            self.hooks.done(True)
            return self.conn.finish()
        # Headers go out at once, as streaming servers do; the first token waits for TTFT.
        self.conn.write(self.head)
        super().start()

    def _step(self) -> None:
        out: list[bytes] = []
        events = self.plan.faults.events
        while self.fault_i < len(events) and events[self.fault_i][0] == self.sent:
            kind = events[self.fault_i][1]
            self.fault_i += 1
            self.hooks.count_fault(kind)
            if kind == "malformed":
                out.append(self.malformed)
            elif kind == "stall":
                return self._stall(out)
            else:  # cut
                self._flush(out)
                return self._end(completed=False)
        if self.sent == len(self.units):
            self.conn.write(chunk(b"".join(out) + self.tail) + LAST_CHUNK)
            return self._end(completed=True)
        out.append(self.units[self.sent])
        self.sent += 1
        self._flush(out)
        self.next_at += self._gap(self.sent - 1)
        self._schedule()

    def _stall(self, out: list[bytes]) -> None:
        # A stalled stream gives its slot back, so one hung request does not starve the rest;
        # after stall_s it resumes without a slot.
        self._flush(out)
        self._release()
        self.next_at = time.monotonic() + self.cfg.stall_s
        self._schedule()

    def _flush(self, out: list[bytes]) -> None:
        if out:
            self.conn.write(chunk(b"".join(out)))


class BodyDelivery(_Delivery):
    """Non-streamed: the whole JSON once the answer is "generated" (TTFT + one ITL per token)."""

    def __init__(
        self,
        cfg: SimConfig,
        engine: Engine,
        conn: Connection,
        plan: Plan,
        hooks: Hooks,
        head: Callable[[int], bytes],
        body: bytes,
    ) -> None:
        super().__init__(cfg, engine, conn, plan, hooks)
        self.head, self.body = head, body

    def start(self) -> None:
        if self._instant():
            return self.respond()
        super().start()

    def _extra_s(self) -> float:
        # One timer for the whole answer; the batching slowdown is sampled once, at the start.
        extra = sum(self._gap(k) for k in range(self.plan.n_chunks))
        if any(kind == "stall" for _, kind in self.plan.faults.events):
            self.hooks.count_fault("stall")
            extra += self.cfg.stall_s
        return extra

    def _step(self) -> None:
        self.respond()

    def respond(self) -> None:
        kinds = {kind for _, kind in self.plan.faults.events}
        body = self.body
        if "malformed" in kinds:
            self.hooks.count_fault("malformed")
            body = body[: len(body) // 2]  # a complete HTTP response whose JSON is cut short
        if "cut" in kinds:
            self.hooks.count_fault("cut")
            self.conn.write(self.head(len(body)) + body[: len(body) // 2])
            return self._end(completed=False)
        self.conn.write(self.head(len(body)) + body)
        self._end(completed=True)
