"""Choose the endpoint (a configured one, or the built-in simulated one) and check it before a run."""

from __future__ import annotations

import contextlib
import json
from typing import Any, AsyncIterator, Callable

import aiohttp

from batchrun.endpoint.client import Endpoint
from batchrun.errors import ConfigError
from batchrun.redact import redact


@contextlib.asynccontextmanager
async def open_endpoint(base_url: str | None, api_key: str | None,
                        announce: Callable[[str], None], sim_config: Any = None) -> AsyncIterator[Endpoint]:
    """The configured endpoint, or with no base URL the built-in one, started in a child
    process so that its work never shares a core or an event loop with the measuring client.
    `sim_config`: the built-in endpoint's SimConfig (default: SimConfig())."""
    if base_url:
        yield Endpoint(base_url=base_url, api_key=api_key)
        return
    from batchrun.sim import SimConfig, SimProcess

    async with SimProcess(sim_config or SimConfig()) as sim:
        announce(f"no OPENAI_BASE_URL or --base-url set: using the built-in simulated endpoint at "
                 f"{sim.base_url} (set OPENAI_BASE_URL and OPENAI_API_KEY to use a real provider)")
        yield Endpoint(base_url=sim.base_url, api_key=None, embedded=True)


async def preflight(endpoint: Endpoint, model: str | None) -> str | None:
    """Fail fast on an endpoint that cannot be reached or rejects the key, before any row is sent;
    with no --model, use the endpoint's model when it serves exactly one."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    url = endpoint.base_url.rstrip("/") + "/models"
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
    except aiohttp.ClientConnectorError as exc:
        raise ConfigError(f"cannot connect to {redact(endpoint.base_url, endpoint.secrets)}: "
                          f"{exc.os_error} (is the server running? check --base-url / OPENAI_BASE_URL)") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach {redact(endpoint.base_url, endpoint.secrets)}: "
                          f"{type(exc).__name__} (check --base-url / OPENAI_BASE_URL)") from exc
    if status in (401, 403):
        raise ConfigError(f"{redact(endpoint.base_url, endpoint.secrets)} rejected the API key "
                          f"(HTTP {status}); check OPENAI_API_KEY / --api-key")
    if model or status != 200:
        return model            # some servers have no /models; the requests will tell
    return _only_model(body)


def _only_model(body: bytes) -> str | None:
    try:
        models = [m["id"] for m in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError):
        return None
    return models[0] if len(models) == 1 else None
