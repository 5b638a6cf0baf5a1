"""`--ray [ADDRESS]`: which cluster, how many actors, whether they can reach the endpoint.

The pure parts (the address, the actor count, the loopback check) take plain values so they
are tested without a cluster; `RayCluster` does the connecting and starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit

from batchrun.engine import ray_watchdog
from batchrun.errors import BatchrunError, ConfigError

# RAY_LOCAL: --ray alone, ray.init() joins the cluster here (or RAY_ADDRESS's) or starts one;
# RAY_INSTALL: the `ray` extra's requirement itself, which installs Ray however batchrun was installed.
from batchrun.values import RAY_INSTALL, RAY_LOCAL

NAMESPACE = "batchrun"  # actors are named batchrun-<driver pid>-<run>-<i> in this namespace
START_TIMEOUT_S = 120.0  # an actor waits for a free CPU; an autoscaler may add a node meanwhile


def import_ray() -> Any:
    try:
        import ray  # optional (the ray extra), and ~1 s: a --ray run alone imports it
    except ImportError:
        raise ConfigError(
            f"--ray needs Ray, which is not installed here ({RAY_INSTALL}, on the driver and on "
            "every node of the cluster)"
        ) from None
    return ray


@dataclass(frozen=True)
class Node:
    """One alive node of the cluster."""

    node_id: str
    address: str  # NodeManagerAddress: the IP the node is reached at
    cpus: float


def is_loopback(base_url: str) -> bool:
    """True when the URL's host is this machine's loopback only (localhost, 127.0.0.0/8, ::1)."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_problem(base_url: str, described: str, nodes: list[Node], driver_address: str, client: bool) -> str | None:
    """Why actors cannot reach a loopback endpoint on this cluster, or None when they can (every
    node is this machine, and this process is on it)."""
    if not is_loopback(base_url):
        return None
    if client:
        return (
            f"the endpoint {described} listens on this machine's loopback only, and with a ray:// address "
            "the actors run on the cluster's nodes, never here"
        )
    others = sorted({n.address for n in nodes if n.address != driver_address})
    if not others:
        return None
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    return (
        f"the endpoint {described} listens on this machine's loopback only, which the cluster's other "
        f"nodes ({shown}) cannot reach"
    )


def unreachable_message(problem: str, embedded: bool) -> str:
    fix = (
        "start the built-in endpoint where every node reaches it (`batchrun serve --host 0.0.0.0 --api-key KEY` "
        "on one machine) and pass its address with --base-url"
        if embedded
        else "give --base-url an address every node of the cluster reaches"
    )
    return f"--ray: {problem}; {fix}, or run without --ray"


def actor_count(requested: int | None, cluster_cpus: float, cpus_per_actor: float) -> int:
    """--workers N with --ray: N. Otherwise the cluster's CPUs minus one for the driver, in
    actors of `cpus_per_actor` each; at least one."""
    if requested is not None:
        return requested
    return max(1, int((cluster_cpus - 1) // cpus_per_actor))


def check_workload(kind: str) -> None:
    """Ray actors send rows; other workloads keep their state in one process."""
    if kind != "rows":
        what = {"sessions": "multi-turn sessions", "trace": "a trace replay"}.get(kind, f"a {kind} run")
        raise ConfigError(f"--ray: {what} runs in one process (run without --ray)")


class RayCluster:
    """A connection to a cluster for one run: the facts that size it, and actors started on it."""

    def __init__(self, ray: Any, started_here: bool, say: Callable[[str], None]) -> None:
        self.ray, self.started_here, self.say = ray, started_here, say
        self.run_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.actors: list[Any] = []
        self.cpus_per_actor = 1.0
        self.pin: Any = None  # a scheduling strategy, for a loopback endpoint

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, address: str, say: Callable[[str], None]) -> AsyncIterator["RayCluster"]:
        """Connected (joined, or started on this machine) for the block; actors killed after it."""
        ray = import_ray()
        started_here = not ray.is_initialized()
        watchdog = None
        if started_here:
            before = ray_watchdog.children_of(os.getpid())
            _connect(ray, address)  # in the main thread: Ray sets its signal handlers there
            # A cluster started here (rather than joined) is this process's children: a watchdog
            # ends them, and what they start, should this process die without shutting it down.
            watchdog = ray_watchdog.start(sorted(ray_watchdog.children_of(os.getpid()) - before))
        cluster = cls(ray, started_here, say)
        try:
            yield cluster
        finally:
            for actor in cluster.actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
            if started_here:
                ray.shutdown()
            ray_watchdog.stop(watchdog)

    # --- facts ---
    def nodes(self) -> list[Node]:
        return [
            Node(n["NodeID"], n["NodeManagerAddress"], float(n.get("Resources", {}).get("CPU", 0)))
            for n in self.ray.nodes()
            if n.get("Alive")
        ]

    def cpus(self) -> float:
        return float(self.ray.cluster_resources().get("CPU", 0))

    def client(self) -> bool:
        return bool(self.ray.util.client.ray.is_connected())

    def driver_address(self) -> str:
        return self.ray.util.get_node_ip_address()

    def plan(self, requested: int | None, cpus_per_actor: float, endpoint: Any) -> int:
        """The number of actors; refuses an endpoint they cannot reach, and pins actors to this
        node when the endpoint is on its loopback (an autoscaler's new node could not reach it)."""
        described = f"(the built-in one, {endpoint.base_url})" if endpoint.embedded else endpoint.display_url
        problem = loopback_problem(endpoint.base_url, described, self.nodes(), self.driver_address(), self.client())
        if problem:
            raise ConfigError(unreachable_message(problem, endpoint.embedded))
        if is_loopback(endpoint.base_url):
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # lazy: Ray

            self.pin = NodeAffinitySchedulingStrategy(self.ray.get_runtime_context().get_node_id(), soft=False)
        self.cpus_per_actor = cpus_per_actor
        cpus = self.cpus()
        n = actor_count(requested, cpus, cpus_per_actor)
        if n * cpus_per_actor > cpus:
            self.say(
                f"warning: {n} Ray actors of {cpus_per_actor:g} CPU need {n * cpus_per_actor:g} CPUs; the "
                f"cluster has {cpus:g}: the others wait for room (up to {START_TIMEOUT_S:.0f} s)"
            )
        return n

    # --- actors ---
    async def launch(self, index: int) -> Any:
        """One worker actor, started (the Coordinator's `launch`)."""
        from batchrun.engine.ray_workers import RayWorker, actor_class  # lazy: it imports Ray

        name = f"batchrun-{self.run_id}-{index}"
        options: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
        if self.pin is not None:
            options["scheduling_strategy"] = self.pin
        actor = actor_class(self.cpus_per_actor).options(**options).remote()
        self.actors.append(actor)
        try:
            pid, node = await asyncio.wait_for(actor.start.remote(), START_TIMEOUT_S)
        except (TimeoutError, asyncio.TimeoutError):
            raise BatchrunError(
                f"Ray actor {name} did not start within {START_TIMEOUT_S:.0f} s: the cluster has "
                f"{self.cpus():g} CPUs for actors of {self.cpus_per_actor:g} CPU each (ask for fewer "
                "with --workers, or less with --ray-cpus)"
            ) from None
        except self.ray.exceptions.RayError as exc:
            raise BatchrunError(
                f"Ray actor {name} did not start: {_first_line(exc)} (is batchrun installed "
                "on every node, the same version as here?)"
            ) from None
        return RayWorker(actor, name, pid, node)


def _connect(ray: Any, address: str) -> None:
    """ray.init for --ray's address; a failure is a clear message, not a traceback."""
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "logging_level": logging.WARNING}
    if address != RAY_LOCAL:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ConnectionError, ValueError, RuntimeError, ...: all mean "not connected"
        where = "a local Ray cluster" if address == RAY_LOCAL else f"the Ray cluster at {address}"
        hint = (
            f" (a ray:// address needs Ray Client: {RAY_INSTALL} installs it)"
            if isinstance(exc, ImportError) and address.startswith("ray://")
            else ""
        )
        raise ConfigError(f"--ray: could not connect to {where}: {_first_line(exc)}{hint}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
