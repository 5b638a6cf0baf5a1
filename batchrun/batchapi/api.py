"""The Batch API calls batchrun makes, through the openai SDK (its retries, auth and error types).

Speed does not matter here (a handful of calls per job), so the SDK is used as is; every
provider error becomes a BatchApiError whose message says what to do, with secrets redacted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import openai

from batchrun.batchapi.lines import KeptLines
from batchrun.endpoint.batch import PATH
from batchrun.endpoint.sdk_transport import AsyncResendTransport
from batchrun.endpoint.transport import Endpoint, redirect_text
from batchrun.errors import BatchrunError
from batchrun.redact import redact

COMPLETION_WINDOW: Final = "24h"
CLOCK_SKEW_S = 600.0  # our clock vs the provider's, when searching by creation time
# Errors worth waiting out while polling: the SDK has already retried them twice.
TRANSIENT = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)


class BatchApiError(BatchrunError):
    """The provider refused a Batch API call (no Batch API, a bad key, a rejected file)."""


class BatchApi:
    """`async with BatchApi(endpoint) as api:` files and batches of one endpoint."""

    def __init__(self, endpoint: Endpoint, *, max_retries: int = 4, timeout_s: float = 600.0) -> None:
        self.endpoint = endpoint
        # Credentials that were in the URL go as Basic auth, as online mode sends them.
        headers = endpoint.auth_headers() if endpoint.basic_auth is not None else None
        # A query in the base URL (`?api_key=` of some gateways) goes with every call: the SDK would
        # glue the path onto it ("/v1/?api_key=kbatches"). Redirects are not followed (the SDK's httpx
        # would turn an upload's POST into a GET). A call that meets a pooled connection the server
        # had closed is sent again at once (endpoint/sdk_transport.py), not after a backed-off retry.
        url = urlsplit(endpoint.base_url)
        self._transport = AsyncResendTransport()
        http = openai.DefaultAsyncHttpxClient(transport=self._transport, follow_redirects=False)
        self._client = openai.AsyncOpenAI(
            base_url=urlunsplit(url._replace(query="")),
            api_key=endpoint.api_key or "not-needed",
            max_retries=max_retries,
            timeout=timeout_s,
            default_headers=headers,
            default_query=dict(parse_qsl(url.query)) or None,
            http_client=http,
        )

    @property
    def reconnects(self) -> int:
        """Calls re-sent at once after meeting a pooled connection the server had closed."""
        return self._transport.reconnects

    async def __aenter__(self) -> "BatchApi":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()

    def error(self, what: str, exc: Exception) -> BatchApiError:
        where = self.endpoint.display_url
        detail = redact(str(exc), self.endpoint.secrets)
        if isinstance(exc, openai.APIStatusError) and 300 <= exc.status_code < 400:
            detail, hint = f"HTTP {exc.status_code}", redirect_text(exc.response.headers.get("location"))
        elif isinstance(exc, openai.NotFoundError) and what.startswith(("upload", "list")):
            hint = "this endpoint has no Batch API; use --mode online"
        elif isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            hint = "check OPENAI_API_KEY"
        else:
            hint = "fix the cause and rerun with --resume; jobs already created are kept"
        return BatchApiError(f"{what} at {where} failed: {type(exc).__name__}: {detail} ({hint})")

    async def upload(self, path: Path, name: str) -> str:
        try:
            with open(path, "rb") as f:
                created = await self._client.files.create(file=(name, f), purpose="batch")
        except openai.OpenAIError as exc:
            raise self.error(f"upload of {path.name}", exc) from exc
        return created.id

    async def find_file(self, name: str, since: float) -> str | None:
        """The id of a batch file named `name` uploaded after `since` (unix s): an upload whose id
        was never saved. Newest first, so the search stops at the first older file."""
        try:
            async for f in self._client.files.list(purpose="batch", order="desc"):
                if _older(f.created_at, since):
                    break
                if f.filename == name and isinstance(f.id, str):
                    return f.id
        except openai.OpenAIError as exc:
            raise self.error("list of files", exc) from exc
        return None

    async def create(self, file_id: str, name: str) -> Any:
        try:
            return await self._client.batches.create(
                input_file_id=file_id,
                endpoint=PATH,
                completion_window=COMPLETION_WINDOW,
                metadata={"batchrun_file": name},
            )
        except openai.OpenAIError as exc:
            raise self.error(f"creating the job for {name}", exc) from exc

    async def find_batch(self, file_id: str, since: float, refused: set[str] = frozenset()) -> Any | None:  # type: ignore[assignment]
        """The job made from `file_id` created after `since` (a create whose id was never saved),
        other than the `refused` ones; the list is newest first, so the search stops at the first
        older job."""
        try:
            async for batch in self._client.batches.list(limit=100):
                if _older(batch.created_at, since):
                    break
                if batch.input_file_id == file_id and isinstance(batch.id, str) and batch.id not in refused:
                    return batch
        except openai.OpenAIError as exc:
            raise self.error("list of batches", exc) from exc
        return None

    async def retrieve(self, batch_id: str) -> Any:
        """The job; a transient failure propagates as is so the poll loop can wait it out."""
        try:
            return await self._client.batches.retrieve(batch_id)
        except TRANSIENT:
            raise
        except openai.OpenAIError as exc:
            raise self.error(f"status of {batch_id}", exc) from exc

    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel; a job that has just ended (409 / 400) is left as it is."""
        try:
            await self._client.batches.cancel(batch_id)
        except (openai.ConflictError, openai.BadRequestError):
            return
        except openai.OpenAIError as exc:
            raise self.error(f"cancelling {batch_id}", exc) from exc

    async def download(self, file_id: str, target: Path, max_line_bytes: int) -> Path:
        """An output or error file, streamed to `target` as batchrun keeps it (lines.KeptLines:
        secrets masked, lines over `max_line_bytes` replaced by a note; a 200 MB file or a 150 MB
        line is never held whole); written then renamed, so a file there is always complete."""
        tmp = target.with_name(target.name + ".part")
        kept = KeptLines(max_line_bytes, self.endpoint.secrets)
        try:
            async with self._client.files.with_streaming_response.content(file_id) as response:
                with open(tmp, "wb") as f:
                    async for piece in response.iter_bytes():
                        f.write(kept.feed(piece))
                    f.write(kept.close())
            tmp.replace(target)
        except openai.OpenAIError as exc:
            tmp.unlink(missing_ok=True)
            raise self.error(f"download of {file_id}", exc) from exc
        return target


def _older(created_at: Any, since: float) -> bool:
    """Whether a listed file or job was made before `since` (unix s, our clock, less the skew);
    a created_at that is not a number says nothing, so the search goes on."""
    return (
        isinstance(created_at, (int, float)) and not isinstance(created_at, bool) and created_at < since - CLOCK_SKEW_S
    )
