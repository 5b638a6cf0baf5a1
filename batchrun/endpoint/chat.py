"""The chat kind: one streamed POST /chat/completions per row. Its parts are the ones the other
kinds build on: the body (requests.py), the stream parser (sse.py), the transport (transport.py)
and the record (assemble.py)."""

from __future__ import annotations

from batchrun.endpoint.assemble import to_record
from batchrun.endpoint.kinds import Kind
from batchrun.endpoint.requests import build_body
from batchrun.endpoint.sse import SSEStream
from batchrun.endpoint.transport import CHAT_PATH, StreamClient

KIND = Kind("chat", CHAT_PATH, build_body, SSEStream, to_record, StreamClient)
