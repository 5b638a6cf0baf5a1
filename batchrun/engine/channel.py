"""The message channel between the coordinator and one worker: small typed messages, whole or
not at all.

A message is `(kind, payload)`, payload JSON-able; records travel as their JSON bytes inside it
(`orjson.Fragment(record.to_json())`), never pickled, so neither side builds Python objects it
does not need. The transport here is a stream socket with length-prefixed orjson frames; another
transport (Ray actor calls) only has to offer the same `send` / `recv` / `close`.

A frame cut short (the peer was killed while writing) is never delivered: `recv` returns None,
the end of the channel, exactly as after a clean close.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any, Protocol

import orjson

_HEADER = struct.Struct("<I")  # payload length, bytes
MAX_FRAME = 1 << 30  # a frame past this is a bug, not a message

# Coordinator -> worker
START, JOBS, CREDIT, PACE, STOP, END = "start", "jobs", "credit", "pace", "stop", "end"
# Worker -> coordinator
READY, BATCH, DONE = "ready", "batch", "done"


class Channel(Protocol):
    """What the coordinator and a worker need of their link, whatever carries it."""

    async def send(self, kind: str, payload: Any = None) -> None: ...

    def post(self, kind: str, payload: Any = None) -> None: ...  # send without waiting (control messages)

    async def recv(self) -> tuple[str, Any] | None: ...  # None: the peer is gone (or closed)

    async def close(self) -> None: ...


def encode(kind: str, payload: Any = None) -> bytes:
    """One frame: length prefix, then `[kind, payload]` as orjson."""
    body = orjson.dumps([kind, payload])
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> tuple[str, Any]:
    kind, payload = orjson.loads(body)
    return kind, payload


class StreamChannel:
    """A Channel over an asyncio stream pair (a socketpair end, a TCP or Unix socket)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def over(cls, sock: socket.socket) -> "StreamChannel":
        """A channel on a connected socket; create inside the running loop."""
        reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_FRAME)
        return cls(reader, writer)

    async def send(self, kind: str, payload: Any = None) -> None:
        self.post(kind, payload)
        with contextlib.suppress(ConnectionError):  # a dead peer: its recv side says so
            await self._writer.drain()

    def post(self, kind: str, payload: Any = None) -> None:
        """Queue a frame without waiting for the socket (small control messages)."""
        if not self._writer.is_closing():
            self._writer.write(encode(kind, payload))

    async def recv(self) -> tuple[str, Any] | None:
        try:
            head = await self._reader.readexactly(_HEADER.size)
            (size,) = _HEADER.unpack(head)
            if size > MAX_FRAME:
                return None
            return decode(await self._reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
