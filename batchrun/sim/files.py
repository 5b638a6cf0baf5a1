"""/v1/files: upload (multipart), list, retrieve, content, delete, in OpenAI's shapes.

Files live in memory, or with `batch_state_dir` set also on disk (`files/<id>.json` + `.data`),
so a sim restarted on the same directory still serves them: the built-in endpoint of a
`batchrun run --mode batch` that was killed keeps its jobs' files for the resumed run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

from batchrun.sim.handling import check_auth
from batchrun.sim.host import Host
from batchrun.sim.http import Connection, Request, response_head
from batchrun.sim.multipart import MultipartError, parse_multipart
from batchrun.sim.wire import ApiError, dumps, invalid_url

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
LIST_LIMIT = 10_000


class FileStore:
    """id -> file object (dict) and its bytes."""

    def __init__(self, state_dir: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._meta: dict[str, dict[str, Any]] = {}
        self._data: dict[str, bytes] = {}
        self._dir = Path(state_dir) / "files" if state_dir else None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            for path in sorted(self._dir.glob("*.json")):
                meta = json.loads(path.read_text(encoding="utf-8"))
                self._meta[meta["id"]] = meta

    def add(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = "file-" + os.urandom(12).hex()
        meta = {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": int(self.clock()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self._meta[fid] = meta
        if self._dir is None:
            self._data[fid] = data
        else:  # data first, then the meta that makes the file visible after a restart
            _atomic_write(self._dir / f"{fid}.data", data)
            _atomic_write(self._dir / f"{fid}.json", json.dumps(meta).encode())
        return meta

    def get(self, fid: str) -> dict[str, Any]:
        meta = self._meta.get(fid)
        if meta is None:
            raise ApiError(404, f"No such File object: {fid}", param="id")
        return meta

    def content(self, fid: str) -> bytes:
        self.get(fid)
        if self._dir is None:
            return self._data[fid]
        return (self._dir / f"{fid}.data").read_bytes()

    def delete(self, fid: str) -> None:
        self.get(fid)
        del self._meta[fid]
        self._data.pop(fid, None)
        if self._dir is not None:
            (self._dir / f"{fid}.json").unlink(missing_ok=True)
            (self._dir / f"{fid}.data").unlink(missing_ok=True)

    def all(self) -> list[dict[str, Any]]:
        return list(self._meta.values())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def list_page(items: list[dict[str, Any]], query: dict[str, str], default_limit: int) -> bytes:
    """OpenAI's cursor page: `after` an id, `limit`, `order` (by created_at; desc by default)."""
    order = query.get("order", "desc")
    items = sorted(items, key=lambda o: (o["created_at"], o["id"]), reverse=order != "asc")
    if "after" in query:
        ids = [o["id"] for o in items]
        items = items[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
    limit = _limit(query.get("limit"), default_limit)
    page = items[:limit]
    return dumps(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )


def _limit(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        limit = int(value)
    except ValueError:
        raise ApiError(400, f"Invalid 'limit': expected an integer, got {value!r}.", param="limit") from None
    if not 1 <= limit <= LIST_LIMIT:
        raise ApiError(400, f"Invalid 'limit': {limit} is outside 1..{LIST_LIMIT}.", param="limit")
    return limit


def query_of(req: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(req.query).items()}


def subpath(req: Request, resource: str) -> list[str]:
    """`/v1/files/file-1/content` -> ["file-1", "content"] for resource "/files"."""
    path = req.path.rstrip("/")
    path = path[3:] if path.startswith("/v1/") else path
    return [p for p in path[len(resource) :].split("/") if p]


def handle_files(server: Host, conn: Connection, req: Request, rid: str) -> None:
    try:
        check_auth(server.config.api_key, req)
        status, body = _route(server.files, req)
    except ApiError as err:
        return server.send_error(conn, req, rid, err)
    if isinstance(body, tuple):  # file content: raw bytes, not JSON
        server.counters.count_response(status)
        head = response_head(
            status, [("content-type", "application/octet-stream"), ("x-request-id", rid)], len(body[0]), req.keep_alive
        )
        conn.write(head + body[0])
        return conn.finish()
    server.send_json(conn, req, rid, status, body)


def _route(store: FileStore, req: Request) -> tuple[int, bytes | tuple[bytes]]:
    parts = subpath(req, "/files")
    if req.method == "POST" and not parts:
        return 200, dumps(_upload(store, req))
    if req.method == "GET" and not parts:
        query = query_of(req)
        files = [f for f in store.all() if f["purpose"] == query["purpose"]] if "purpose" in query else store.all()
        return 200, list_page(files, query, LIST_LIMIT)
    if req.method == "GET" and len(parts) == 1:
        return 200, dumps(store.get(parts[0]))
    if req.method == "GET" and len(parts) == 2 and parts[1] == "content":
        return 200, (store.content(parts[0]),)
    if req.method == "DELETE" and len(parts) == 1:
        store.delete(parts[0])
        return 200, dumps({"id": parts[0], "object": "file", "deleted": True})
    raise invalid_url(req.method, req.path)


def _upload(store: FileStore, req: Request) -> dict[str, Any]:
    try:
        parts = parse_multipart(req.headers.get(b"content-type", b"").decode("latin-1"), req.body)
    except MultipartError as exc:
        raise ApiError(400, f"Could not parse multipart form: {exc}.") from None
    if "file" not in parts:
        raise ApiError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    if "purpose" not in parts:
        raise ApiError(
            400, "Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter"
        )
    purpose = parts["purpose"].data.decode("utf-8", "replace")
    if purpose not in PURPOSES:
        raise ApiError(
            400,
            f"Invalid value for 'purpose': {purpose!r}. Supported values are: "
            + ", ".join(repr(p) for p in PURPOSES)
            + ".",
            param="purpose",
            code="invalid_value",
        )
    return store.add(parts["file"].data, parts["file"].filename or "upload", purpose)
