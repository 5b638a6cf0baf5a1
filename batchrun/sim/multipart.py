"""multipart/form-data bodies (what `POST /v1/files` receives) -> {field: Part} (pure).

The sim needs two fields, `purpose` and `file`, from clients that send them in one body
(the openai SDK, curl -F); a boundary split is all that takes, without a dependency.
"""

from __future__ import annotations

from dataclasses import dataclass


class MultipartError(ValueError):
    """The body is not multipart/form-data the sim can read; the message says why."""


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    data: bytes


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a `multipart/form-data; boundary=...` header."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise MultipartError(f"expected multipart/form-data, got {kind.strip() or 'no content-type'!r}")
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"')
    raise MultipartError("the multipart/form-data content-type has no boundary")


def parse_multipart(content_type: str, body: bytes) -> dict[str, Part]:
    """Every named part of the body; a later part with the same name replaces an earlier one."""
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3:
        raise MultipartError("the body has no complete multipart part")
    parts: dict[str, Part] = {}
    for piece in pieces[1:-1]:  # before the first delimiter: preamble; after the last: "--" epilogue
        part = _part(piece)
        parts[part.name] = part
    return parts


def _part(piece: bytes) -> Part:
    head, sep, data = piece.removeprefix(b"\r\n").partition(b"\r\n\r\n")
    if not sep:
        raise MultipartError("a multipart part has no blank line after its headers")
    data = data.removesuffix(b"\r\n")
    params: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-disposition":
            params = _disposition(value)
    if "name" not in params:
        raise MultipartError("a multipart part has no content-disposition name")
    return Part(params["name"], params.get("filename"), data)


def _disposition(value: str) -> dict[str, str]:
    params = {}
    for item in value.split(";")[1:]:
        key, _, val = item.strip().partition("=")
        params[key.lower()] = val.strip().strip('"')
    return params
