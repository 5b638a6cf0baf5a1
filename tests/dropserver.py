"""A raw HTTP/1.1 server that closes connections the way some real servers do, in its own thread
(so a `batchrun run` through CliRunner, with its own event loop, can use it).

llama.cpp's llama-server answers a streamed request in full, then closes the TCP connection
without a `Connection: close` header: the client's pool keeps the socket and writes its next
request into a dead connection. Here the close waits for that next request, so the client meets
the dead connection every time, not only when it is quicker than the FIN (the worst case, made
deterministic). The `policy` says what happens to each connection:

    "llama"        answer the first request of a connection in full, with no Connection header;
                   a later request on it is read and answered by closing the socket without a byte
    "close_after"  what llama-server does: answer in full, then close at once (whether the client
                   meets the dead connection depends on whether it reuses it before the FIN is read)
    "cut_first"    as llama, but the first request of each prompt is cut after its first event
                   (the response head and some bytes did arrive)
    "answer_once"  as llama for the first request the server ever gets; every later request, on
                   any connection, fresh or reused, is dropped without a byte
    "drop_all"     every request is dropped without a byte (every connection, fresh ones too)

GET /v1/models gives one model, any other GET an empty list (the Batch API's GET /v1/batches),
under the same policy. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
from collections import Counter
from typing import Any

from batchrun.endpoint.requests import Job
from batchrun.inputs.prompt import Prompt

IDLE_CLOSE_S = 10.0  # a connection no request comes on is closed after this


def sse_response(prompt: str, tokens: int = 3, *, text: bool = False) -> bytes:
    """A complete chunked SSE response (head and body), as llama-server sends: no Connection
    header. Chat chunks, or /completions' `text` chunks with `text=True`."""

    def choice(content: str | None, finish: str | None = None) -> dict[str, Any]:
        if text:
            return {"index": 0, "text": content or "", "finish_reason": finish}
        delta = {} if finish else {"content": content} if content else {"role": "assistant", "content": None}
        return {"index": 0, "delta": delta, "finish_reason": finish}

    events = [{"choices": [choice(None)]}]
    events += [{"choices": [choice(f" w{i}")]} for i in range(tokens)]
    events.append({"choices": [choice(None, "stop")]})
    events.append(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": len(prompt.split()),
                "completion_tokens": tokens,
                "total_tokens": len(prompt.split()) + tokens,
            },
        }
    )
    body = b"".join(_chunk(b"data: " + json.dumps({"model": "drop-model", **e}).encode() + b"\n\n") for e in events)
    body += _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    return _head("text/event-stream", chunked=True) + body


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _head(content_type: str, *, chunked: bool = False, length: int | None = None) -> bytes:
    size = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{size}\r\n\r\n".encode()


def embeddings_response(body: bytes) -> bytes:
    """One 2-float vector per input, base64 as batchrun asks, usage one token per word."""
    texts = json.loads(body)["input"]
    vector = base64.b64encode(struct.pack("<2f", 1.0, 0.0)).decode()
    payload = json.dumps(
        {
            "object": "list",
            "model": "drop-model",
            "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(len(texts))],
            "usage": {
                "prompt_tokens": sum(len(t.split()) for t in texts),
                "total_tokens": sum(len(t.split()) for t in texts),
            },
        }
    ).encode()
    return _head("application/json", length=len(payload)) + payload


MODELS = json.dumps({"object": "list", "data": [{"id": "drop-model", "object": "model"}]}).encode()
EMPTY_LIST = json.dumps({"object": "list", "data": [], "has_more": False}).encode()


class DropServer:
    """`with DropServer("llama") as server:` ... `server.base_url` (ends in /v1)."""

    def __init__(self, policy: str) -> None:
        assert policy in ("llama", "close_after", "cut_first", "answer_once", "drop_all")
        self.policy = policy
        self.connections = 0  # accepted
        self.answered: Counter[str] = Counter()  # prompt -> complete answers sent
        self.cut: Counter[str] = Counter()  # prompt -> answers cut after a chunk
        self.dropped = 0  # requests read and answered by closing
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dropserver", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.base_url = ""

    def __enter__(self) -> "DropServer":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            # Each connection's task closes its writer as it ends; the transport lets go of its
            # socket a loop turn later. Stopping the loop before then leaves the socket for the
            # garbage collector (an unclosed-socket warning in whichever test runs next).
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()
            for _ in range(3):
                await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                request = await asyncio.wait_for(_read_request(reader), IDLE_CLOSE_S if served else None)
                if request is None:
                    return
                method, path, body = request
                once_done = self.policy == "answer_once" and sum(self.answered.values()) > 0
                if served or self.policy == "drop_all" or (once_done and method != "GET"):
                    self.dropped += 1
                    return
                served += 1
                await self._answer(writer, method, path, body)
                if self.policy == "close_after":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            return
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, method: str, path: str, body: bytes) -> None:
        if method == "GET":
            payload = MODELS if path.startswith("/v1/models") else EMPTY_LIST
            writer.write(_head("application/json", length=len(payload)) + payload)
            await writer.drain()
            return
        if path.endswith("/embeddings"):
            writer.write(embeddings_response(body))
            await writer.drain()
            self.answered[" ".join(json.loads(body)["input"])] += 1
            return
        prompt = _prompt(body)
        response = sse_response(prompt, text=path.endswith("/v1/completions"))
        if self.policy == "cut_first" and not self.cut[prompt]:
            self.cut[prompt] += 1
            first_chunk_end = response.index(b"\r\n\r\n") + 4
            first_chunk_end = response.index(b"\n\n\r\n", first_chunk_end) + 4
            writer.write(response[:first_chunk_end])  # head and one event: bytes did arrive
            await writer.drain()
            raise ConnectionError("cut on purpose")
        writer.write(response)
        await writer.drain()
        self.answered[prompt] += 1


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path = lines[0].split(" ")[:2]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return method, path, body


def _prompt(body: bytes) -> str:
    data: dict[str, Any] = json.loads(body)
    messages = data.get("messages") or [{"content": data.get("prompt", "")}]
    return str(messages[-1].get("content"))


def chat_job(i: int) -> Job:
    """Row i as the Pool and the sync baseline take it: a streamed chat request for drop-model."""
    messages = [{"role": "user", "content": f"question {i}"}]
    body = {"model": "drop-model", "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    return Job(
        prompt=Prompt(id=f"q{i}", row=i, line=i + 2, messages=messages),
        body=json.dumps(body).encode(),
        estimated_tokens=10,
        prompt_tokens_estimate=2,
    )
