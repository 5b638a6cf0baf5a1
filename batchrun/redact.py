"""Keep secrets out of every message batchrun prints or writes."""

from __future__ import annotations

import re

_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
# Only after an Authorization name: "basic" alone is an ordinary word. (Our own Basic token is
# also among the endpoint's known secrets, so an echo of it is masked wherever it appears.)
_BASIC = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?basic\s+)[^\s\"',;]+")
_QUERY_KEY = re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access_token|sig)=)[^&\s\"']+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"'<>]+@")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with known secrets, bearer and basic auth tokens, credentials in URLs (`user:pass@`),
    key-like query values and sk- keys masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = _BASIC.sub(r"\1***", text)
    text = _USERINFO.sub(r"\1***:***@", text)
    text = _QUERY_KEY.sub(r"\1***", text)
    return _SK.sub("sk-***", text)


def host_and_port(url: str) -> str:
    """Where a URL points, as 'host:port' and nothing else: never its credentials, path or query
    (for a Location header or a lock file, where a path may carry a signed token)."""
    from urllib.parse import urlsplit

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
