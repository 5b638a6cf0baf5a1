"""batchrun.serve(): the built-in endpoint from Python, on a free loopback port, stopped on exit."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from typer.testing import CliRunner

import batchrun
from batchrun.cli import app
from batchrun.errors import ConfigError


def chat(url: str, content: str = "hi", key: str | None = None) -> dict[str, Any]:
    """One non-streamed chat completion, over plain HTTP."""
    body = json.dumps({"model": "batchrun-sim", "messages": [{"role": "user", "content": content}]}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(f"{url}/chat/completions", body, headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def models(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/models", timeout=30) as response:
        return [m["id"] for m in json.loads(response.read())["data"]]


def test_serve_yields_a_loopback_url_answers_and_stops_on_exit() -> None:
    served = batchrun.serve(fast=True, model=["a", "b"])
    with served as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1") and not url.endswith(":8000/v1")
        assert models(url) == ["a", "b"]
        assert chat(url, "hi [[sim:tokens=5]]")["usage"]["completion_tokens"] == 5
        assert served.stats()["completed"] == 1
    with pytest.raises(urllib.error.URLError):
        models(url)
    with pytest.raises(RuntimeError, match="only inside"):
        _ = served.base_url


def test_the_endpoint_is_stopped_when_the_block_raises() -> None:
    with pytest.raises(ZeroDivisionError):
        with batchrun.serve(fast=True) as url:
            raise ZeroDivisionError
    with pytest.raises(urllib.error.URLError):
        models(url)


def test_options_are_serves_keywords() -> None:
    with batchrun.serve(fast=True, api_key="sk-test") as url:
        with pytest.raises(urllib.error.HTTPError) as refused:
            chat(url)
        refused.value.close()  # the error holds the response open
        assert refused.value.code == 401
        assert chat(url, key="sk-test")["choices"][0]["message"]["content"]


def test_inside_a_running_event_loop() -> None:
    async def main() -> list[str]:
        async with batchrun.serve(fast=True) as url:
            return await asyncio.to_thread(models, url)

    assert asyncio.run(main()) == ["batchrun-sim"]


def test_a_pytest_fixture_as_the_docstring_shows(endpoint_url: str) -> None:
    assert chat(endpoint_url)["object"] == "chat.completion"


@pytest.fixture(scope="module")
def endpoint_url() -> Any:
    with batchrun.serve(fast=True, seed=1) as url:
        yield url


def test_an_unknown_keyword_is_a_type_error_with_the_close_names() -> None:
    with pytest.raises(TypeError, match="'ttf'.*did you mean 'ttft'"):
        batchrun.serve(ttf=0.05)


def test_a_bad_value_is_a_config_error_naming_the_option() -> None:
    with pytest.raises(ConfigError, match="max.concurrency"):
        batchrun.serve(max_concurrency=0)
    cli = CliRunner().invoke(app, ["serve", "--max-concurrency", "0"])
    assert cli.exit_code == 2 and "error:" in cli.output and "max-concurrency" in cli.output


def test_like_a_missing_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nowhere: no such file"):
        batchrun.serve(like="nowhere")


def test_the_signature_lists_every_serve_option_with_its_default() -> None:
    import inspect

    from batchrun.options import of
    from batchrun.sim.cli import SERVE_OPTIONS, SERVE_PANELS

    shown = inspect.signature(batchrun.serve).parameters
    declared = {o.name: o.default for o in of("serve", SERVE_OPTIONS, SERVE_PANELS)}
    assert list(shown) == list(declared)
    assert {name: p.default for name, p in shown.items()} == {**declared, "port": 0}
