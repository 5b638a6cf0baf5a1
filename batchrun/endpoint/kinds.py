"""Each endpoint kind and what it is made of, in one table: a new kind is one module that builds
its `KIND`, and one line in `_MODULES`.

    kind         path (base URL +)   request builder             parser               record assembly
    chat         chat/completions    requests.build_body         sse.SSEStream        assemble.to_record
    completions  completions         build_completion_body       sse.TextSSEStream    assemble.to_record
    embeddings   embeddings          build_embeddings_body       parse_embeddings     input_records
    batch        /v1/chat/completions  batch_body (online body)  record_from_raw      record_from_line

The builders and the record assembly of the kinds answering one row per request (chat,
completions) take the same arguments, so whatever sends rows picks them by name (`--endpoint`).
An embeddings request carries a batch of inputs, and a batch request is a line in a file for the
Batch API, not a POST of ours: their builders and their record assembly take what those need
(each is documented in its module); the table says where each part is.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import aiohttp

    from batchrun.endpoint.transport import Endpoint, StreamClient

# Imported on first use, not here: the embeddings kind loads numpy (~0.1 s) that a chat run never needs.
_MODULES = {
    "chat": "batchrun.endpoint.chat",
    "completions": "batchrun.endpoint.completions",
    "embeddings": "batchrun.endpoint.embeddings",
    "batch": "batchrun.endpoint.batch",
}
KIND_NAMES = tuple(_MODULES)


@dataclass(frozen=True)
class Kind:
    """What one endpoint kind is made of."""

    name: str
    path: str  # where its requests go, under the base URL
    build_body: Callable[..., Any]  # row(s) -> the request body
    parse: Any  # the response parser (for a client: its `parse`)
    to_record: Callable[..., Any]  # what was parsed -> the row's Record(s)
    client: type[StreamClient] | None = None  # the transport that sends one request (None: batch)

    def client_for(self, session: aiohttp.ClientSession, endpoint: Endpoint, **options: Any) -> StreamClient:
        """A client sending this kind's requests to `endpoint` (`options`: StreamClient's timeouts,
        clock, response cap)."""
        if self.client is None:
            raise ValueError(f"{self.name} requests are not sent one by one")
        return self.client(session, endpoint, path=self.path, parse=self.parse, **options)


def kind(name: str) -> Kind:
    """The kind called `name` (chat, completions, embeddings, batch)."""
    try:
        module = _MODULES[name]
    except KeyError:
        raise ValueError(f"no endpoint kind {name!r} (one of {', '.join(_MODULES)})") from None
    found: Kind = importlib.import_module(module).KIND
    return found
