"""Keep secrets out of every message batchrun prints or writes.

Two strengths, for two kinds of text from a provider:

- `redact` is for messages (errors, job errors, anything shown): the endpoint's known secrets
  and also anything shaped like a credential (bearer / basic tokens, `user:pass@` in URLs,
  key-like query values, sk- keys) are masked.
- `mask` is for answers (content, tool calls, ids): only the endpoint's known secrets are
  masked, exactly. An answer is the user's data: a model that writes "Authorization: Bearer
  $TOKEN" in a code sample must keep it, but our own key echoed back by the provider must not.

`redact_json` applies `mask` to every string of a JSON value (keys too).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
# Only after an Authorization name: "basic" alone is an ordinary word. (Our own Basic token is
# also among the endpoint's known secrets, so an echo of it is masked wherever it appears.)
_BASIC = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?basic\s+)[^\s\"',;]+")
_KEY_NAMES = r"api[-_]?key|key|token|access_token|sig"
_QUERY_KEY = re.compile(rf"(?i)([?&](?:{_KEY_NAMES})=)[^&\s\"']+")
_KEY_NAME = re.compile(rf"(?i)^(?:{_KEY_NAMES})$")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"'<>]+@")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
MIN_SECRET = 4  # shorter "secrets" ("x", "abc") would mask ordinary text


def mask(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with each of the known `secrets` replaced by ***."""
    for secret in secrets:
        if len(secret) >= MIN_SECRET and secret in text:
            text = text.replace(secret, "***")
    return text


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with known secrets, bearer and basic auth tokens, credentials in URLs (`user:pass@`),
    key-like query values and sk- keys masked."""
    text = mask(text, secrets)
    text = _BEARER.sub(r"\1***", text)
    text = _BASIC.sub(r"\1***", text)
    text = _USERINFO.sub(r"\1***:***@", text)
    text = _QUERY_KEY.sub(r"\1***", text)
    return _SK.sub("sk-***", text)


def public_url(url: str, secrets: tuple[str, ...] = ()) -> str:
    """A configured URL as it may be written: credentials in it (`user:pass@`) as `***:***@`,
    key-like query values and the known `secrets` masked."""
    return redact(url, secrets + query_secrets(url))


def host_and_port(url: str) -> str:
    """Where a URL points, as 'host:port' and nothing else: never its credentials, path or query
    (for a Location header or a lock file, where a path may carry a signed token)."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return "(an unreadable URL)"
    if not host:
        return "(a relative URL on the same host)"
    if ":" in host:
        host = f"[{host}]"
    port = port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return f"{host}:{port}" if port else host


def redact_json(value: Any, secrets: tuple[str, ...]) -> Any:
    """A JSON value (dicts, lists, strings, numbers) with `mask` applied to every string in it."""
    if not secrets:
        return value
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {mask(str(k), secrets): redact_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, secrets) for v in value]
    return value


def query_secrets(url: str) -> tuple[str, ...]:
    """The values of key-like query parameters (`?api_key=...`, `&token=...`) of a URL: some
    gateways take the key there, and a provider may echo it back without its name."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return ()
    raw = [tuple(item.split("=", 1)) for item in query.split("&") if "=" in item]
    found = [v for k, v in raw + parse_qsl(query) if _KEY_NAME.match(k) and v]  # as written, and decoded
    return tuple(dict.fromkeys(found))
