"""endpoint/sdk_headers.py: batchrun sends the openai SDK's default headers without importing it."""

from __future__ import annotations

import openai
import pytest

from batchrun.endpoint.sdk_headers import sdk_default_headers, sdk_version
from batchrun.endpoint.transport import Endpoint


def sdk_headers() -> dict[str, str]:
    """The SDK's default headers; Omit() = not sent. The key goes apart (older SDKs list it here too)."""
    client = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    try:
        return {k: v for k, v in client.default_headers.items() if isinstance(v, str) and k != "Authorization"}
    finally:
        client.close()


def test_our_headers_are_the_sdks_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_ORG_ID", raising=False)
    monkeypatch.delenv("OPENAI_PROJECT_ID", raising=False)
    assert sdk_version() == openai.__version__
    assert sdk_default_headers() == sdk_headers()


def test_organization_and_project_come_from_the_same_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-123")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_abc")
    ours = sdk_default_headers()
    assert ours == sdk_headers()
    assert (ours["OpenAI-Organization"], ours["OpenAI-Project"]) == ("org-123", "proj_abc")


def test_endpoint_headers_add_streaming_accept_and_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_ORG_ID", raising=False)
    monkeypatch.delenv("OPENAI_PROJECT_ID", raising=False)
    expected = {**sdk_headers(), "Accept": "text/event-stream"}
    assert Endpoint("http://127.0.0.1:9/v1", "sk-test").headers() == {**expected, "Authorization": "Bearer sk-test"}
    assert Endpoint("http://127.0.0.1:9/v1").headers() == expected
    basic = Endpoint.of("http://user:pw@127.0.0.1:9/v1", "sk-test").headers()
    assert (
        basic["Authorization"] == "Basic dXNlcjpwdw==" and basic["User-Agent"] == f"OpenAI/Python {openai.__version__}"
    )
