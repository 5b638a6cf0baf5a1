"""What the model endpoints' POST handlers (chat, completions, embeddings) share: counting a
request, the first checks in OpenAI's order, the model check, an injected error and a JSON
answer's delivery. Each handler keeps only what its endpoint reads and writes differently."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from batchrun.sim.config import SimConfig
from batchrun.sim.delivery import BodyDelivery
from batchrun.sim.host import Host
from batchrun.sim.http import Connection, Request, response_head
from batchrun.sim.params import check_params
from batchrun.sim.planner import Plan
from batchrun.sim.validate import parse_body
from batchrun.sim.wire import ApiError, injected_429, invalid_api_key, model_not_found, server_error

SSE_HEADERS = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]
JSON_HEADERS = [("content-type", "application/json")]

T = TypeVar("T")


def admitted(
    server: Host, conn: Connection, req: Request, rid: str, endpoint: str, admit: Callable[[Host, Request], T]
) -> T | None:
    """Count the request and run `admit`; its ApiError is answered here, and then None is returned."""
    server.counters.requests += 1
    server.counters.by_endpoint[endpoint] += 1
    try:
        return admit(server, req)
    except ApiError as err:
        server.send_error(conn, req, rid, err)
        return None


def read_body(server: Host, req: Request, endpoint: str) -> dict[str, Any]:
    """Auth, the JSON body, then (strict mode) unknown parameters and ranges: OpenAI's first checks."""
    check_auth(server.config.api_key, req)
    body = parse_body(req.body)
    check_params(body, endpoint, server.config.strict)
    return body


def check_auth(api_key: str | None, req: Request) -> None:
    if api_key is None:
        return
    auth = req.headers.get(b"authorization", b"").decode("latin-1")
    given = auth[7:] if auth[:7].lower() == "bearer " else ""
    if given != api_key:
        raise invalid_api_key(given)


def check_model(cfg: SimConfig, body: dict[str, Any]) -> None:
    """404 model_not_found for a model the sim does not list, when it enforces its list."""
    if cfg.enforce_models and body["model"] not in cfg.models:
        raise model_not_found(body["model"])


def check_injected_error(server: Host, plan: Plan) -> None:
    """The plan's injected HTTP error (a seeded fault or a directive), counted as a fault."""
    if plan.faults.error is not None:
        server.counters.count_fault(f"error_{plan.faults.error}")
        raise injected_error(plan.faults.error, server.config.retry_after_s)


def injected_error(status: int, retry_after_s: float) -> ApiError:
    if status == 429:
        return injected_429(retry_after_s)
    return server_error(status, retry_after_s if status == 503 else None)


def answer_headers(server: Host, rid: str, stream: bool) -> list[tuple[str, str]]:
    """A 200's headers: SSE or JSON content type, the request id and the rate-limit headers."""
    return [*(SSE_HEADERS if stream else JSON_HEADERS), ("x-request-id", rid), *server.ratelimit_headers()]


def send_body(
    server: Host, conn: Connection, req: Request, plan: Plan, headers: list[tuple[str, str]], payload: bytes
) -> None:
    """A whole (non-streamed) 200 answer, delivered after the plan's latency; counted when its head goes."""

    def head(length: int) -> bytes:
        server.counters.count_response(200)
        return response_head(200, headers, length, req.keep_alive)

    BodyDelivery(server.config, server.engine, conn, plan, server.hooks, head, payload).start()
