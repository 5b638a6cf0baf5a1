"""Keep secrets out of every message batchrun prints or writes."""

from __future__ import annotations

import re

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_QUERY_KEY = re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access_token|sig)=)[^&\s\"']+")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with known secrets, bearer tokens, key-like query values and sk- keys masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = _QUERY_KEY.sub(r"\1***", text)
    return _SK.sub("sk-***", text)
