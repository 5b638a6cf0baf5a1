"""Choose the endpoint (a configured one, OpenAI's for a bare key, or the built-in simulated one)
and check it before a run."""

from __future__ import annotations

import contextlib
import json
from typing import Any, AsyncIterator, Callable

import aiohttp

from batchrun.config import RunConfig
from batchrun.endpoint.transport import Endpoint, error_body_text
from batchrun.errors import ConfigError
from batchrun.redact import mask, redact
from batchrun.sim.config import SimConfig
from batchrun.sim.config import realistic as noisy

BUILTIN = "builtin"  # `--base-url builtin`: the simulated endpoint, by name
OPENAI_BASE_URL = "https://api.openai.com/v1"
_MAX_MODELS_SHOWN = 20


def choose_base_url(base_url: str | None, api_key: str | None) -> str:
    """The URL a run uses: the configured one; with only a key, OpenAI's (as the openai SDK and
    the `llm` CLI do); with neither, the built-in endpoint. `builtin` names it explicitly."""
    if base_url:
        return BUILTIN if base_url.strip().lower() == BUILTIN else base_url
    return OPENAI_BASE_URL if api_key else BUILTIN


def endpoint_info(endpoint: Endpoint, model: str | None) -> dict[str, Any]:
    """Which endpoint answered, as summary.json and run.json say it (never a secret)."""
    if endpoint.embedded:
        return {"kind": "builtin", "base_url": None, "model": model}
    return {"kind": "remote", "base_url": endpoint.display_url, "model": model}


def sim_config(config: RunConfig, realistic: bool = False) -> SimConfig | None:
    """The built-in endpoint's SimConfig for this run (None with a configured endpoint): the
    defaults, or `realistic` noise for a bench, with --builtin-option applied."""
    if choose_base_url(config.endpoint.base_url, config.endpoint.api_key) != BUILTIN:
        if config.endpoint.builtin_options:
            raise ConfigError(
                "--builtin-option configures the built-in endpoint; it has no effect with "
                "--base-url / OPENAI_BASE_URL (leave one of them out)"
            )
        return None
    return (noisy() if realistic else SimConfig()).with_options(config.endpoint.builtin_options)


@contextlib.asynccontextmanager
async def open_endpoint(
    base_url: str | None, api_key: str | None, announce: Callable[[str], None], sim_config: Any = None
) -> AsyncIterator[Endpoint]:
    """The endpoint `choose_base_url` picks; the built-in one (configured by `sim_config`, a
    SimConfig; default SimConfig()) is started in a child process so that its work never shares
    a core or an event loop with the measuring client."""
    url = choose_base_url(base_url, api_key)
    if url != BUILTIN:
        if not base_url:
            announce(
                f"OPENAI_API_KEY is set and no base URL: using {OPENAI_BASE_URL} "
                "(set OPENAI_BASE_URL or --base-url for another provider)"
            )
        try:
            endpoint = Endpoint.of(url, api_key)
        except ValueError as exc:  # e.g. a port that is not a number
            raise ConfigError(f"--base-url is not a valid URL ({exc}): {redact(url, (api_key or '',))}") from None
        if not url.lower().startswith(("http://", "https://")):
            raise ConfigError(
                f"--base-url must start with http:// or https:// (or be '{BUILTIN}'), got {endpoint.display_url!r}"
            )
        yield endpoint
        return
    from batchrun.sim.process import SimProcess  # lazy: only the built-in endpoint starts a child process

    async with SimProcess(sim_config or SimConfig()) as sim:
        why = "--base-url builtin" if base_url else "no OPENAI_BASE_URL, --base-url or OPENAI_API_KEY set"
        announce(
            f"{why}: using the built-in simulated endpoint at {sim.base_url}; its answers are "
            "made up and its timings are a model's, not a real provider's (set OPENAI_API_KEY, "
            "and OPENAI_BASE_URL for a provider other than OpenAI)"
        )
        yield Endpoint(base_url=sim.base_url, api_key=None, embedded=True)


async def preflight(
    endpoint: Endpoint,
    model: str | None,
    *,
    timeout_s: float | None = 30.0,
    announce: Callable[[str], None] = lambda _: None,
) -> str | None:
    """Fail fast on an endpoint that cannot be reached or rejects the key, before any row is sent;
    with no --model, use the endpoint's model when it serves exactly one, and stop when it
    lists several. `timeout_s` is the run's --timeout."""
    url = endpoint.url("models")
    where = endpoint.display_url
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
            async with session.get(url, headers=endpoint.auth_headers()) as resp:
                body = await resp.content.read(1 << 20)
                status, ctype = resp.status, resp.headers.get("Content-Type", "")
    except aiohttp.ClientConnectorError as exc:
        raise ConfigError(
            f"cannot connect to {where}: {exc.os_error} (is the server running? check --base-url / OPENAI_BASE_URL)"
        ) from exc
    except TimeoutError as exc:
        raise ConfigError(
            f"{where} did not answer GET /models within {timeout_s:g}s (--timeout); check --base-url / OPENAI_BASE_URL"
        ) from exc
    except aiohttp.ClientError as exc:
        raise ConfigError(f"cannot reach {where}: {type(exc).__name__} (check --base-url / OPENAI_BASE_URL)") from exc
    message = redact(error_body_text(body, ctype), endpoint.secrets)
    if status in (401, 403):
        raise ConfigError(f"{where} rejected the API key (HTTP {status}: {message}); check OPENAI_API_KEY")
    if status != 200:
        # Some servers have no /models: say so, and let the first requests tell (a refused key
        # or a wrong model on a chat request still stops the run at once).
        announce(
            f"GET {redact(url, endpoint.secrets)} answered HTTP {status} ({message}): the key and the model "
            "are not checked before sending" + ("" if model else "; pass --model")
        )
        return model
    models = _models(body)
    if model or models is None:
        if model and models and model not in models:
            announce(f"model {model!r} is not among the {len(models)} models {where} lists; sending anyway")
        return model
    if len(models) == 1:
        return models[0]
    if not models:
        raise ConfigError(f"{where} lists no models; pass --model")
    shown = mask(", ".join(models[:_MAX_MODELS_SHOWN]), endpoint.secrets) + (
        ", ..." if len(models) > _MAX_MODELS_SHOWN else ""
    )
    raise ConfigError(f"{where} serves {len(models)} models and no --model was given; choose one with --model: {shown}")


def _models(body: bytes) -> list[str] | None:
    try:
        return [str(m["id"]) for m in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError):
        return None
