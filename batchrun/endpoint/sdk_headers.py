"""The default headers the openai SDK sends, built without importing the SDK (~0.45 s at start).

Servers and gateways see batchrun's requests as the SDK's: the same User-Agent and
`X-Stainless-*` identity, and `OpenAI-Organization` / `OpenAI-Project` when `OPENAI_ORG_ID` /
`OPENAI_PROJECT_ID` are set (the SDK reads those variables; config.py reads them for us).
tests/test_sdk_headers.py pins the result to `openai.OpenAI(...).default_headers` on this machine.
"""

from __future__ import annotations

import functools
import platform
import re
import sys
from importlib.util import find_spec
from pathlib import Path

from batchrun.config import env_openai_org_project

_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.M)


@functools.lru_cache(maxsize=1)
def sdk_version() -> str:
    """The installed openai package's version, read from its _version.py: importlib.metadata
    costs ~0.1 s here, importing the package ~0.45 s."""
    try:
        spec = find_spec("openai")
        text = Path(spec.origin).with_name("_version.py").read_text(encoding="utf-8")  # type: ignore[union-attr,arg-type]
        return _VERSION.search(text).group(1)  # type: ignore[union-attr]
    except (AttributeError, ImportError, OSError, TypeError, ValueError):
        return "unknown"


def _os_name() -> str:
    """The SDK's X-Stainless-OS names (MacOS, Linux, Windows, FreeBSD, OpenBSD, iOS, Android)."""
    system = platform.system().lower()
    if sys.platform == "ios":
        return "iOS"
    if hasattr(sys, "getandroidapilevel"):
        return "Android"
    names = {"darwin": "MacOS", "windows": "Windows", "freebsd": "FreeBSD", "openbsd": "OpenBSD", "linux": "Linux"}
    if system in names:
        return names[system]
    # The SDK names another system by its full platform string; platform.platform() (~70 ms)
    # is paid only here.
    return f"other:{platform.platform().lower()}" if system else "Unknown"


def _arch() -> str:
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    if machine == "arm":
        return "arm"
    if machine == "x86_64":
        return "x64"
    if sys.maxsize <= 2**32:
        return "x32"
    return f"other:{machine}" if machine else "unknown"


@functools.lru_cache(maxsize=1)
def _identity() -> tuple[tuple[str, str], ...]:
    version = sdk_version()
    return (
        ("Accept", "application/json"),
        ("Content-Type", "application/json"),
        ("User-Agent", f"OpenAI/Python {version}"),
        ("X-Stainless-Lang", "python"),
        ("X-Stainless-Package-Version", version),
        ("X-Stainless-OS", _os_name()),
        ("X-Stainless-Arch", _arch()),
        ("X-Stainless-Runtime", platform.python_implementation()),
        ("X-Stainless-Runtime-Version", platform.python_version()),
        # What the sync `openai.OpenAI` client says, as batchrun sent when it built one for these.
        ("X-Stainless-Async", "false"),
    )


def sdk_default_headers() -> dict[str, str]:
    """`openai.OpenAI(...).default_headers` without Authorization (the caller adds its own)."""
    headers = dict(_identity())
    org, project = env_openai_org_project()
    if org is not None:
        headers["OpenAI-Organization"] = org
    if project is not None:
        headers["OpenAI-Project"] = project
    return headers
