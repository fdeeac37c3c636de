"""The HTTP edge: a bare ASGI callable (no framework on the hot path).

``POST /`` is the KMS endpoint; ``GET /healthz`` says the server is up. The
body is read up to 1 MiB and no further; everything else is the pipeline's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import RequestEntityTooLargeException, UnknownOperationException
from keycask.service.pipeline import Pipeline, Reply

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 1024 * 1024
_JSON = b"application/x-amz-json-1.1"


class _TooLarge(Exception):
    pass


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", _JSON),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_reply(send: Send, reply: Reply) -> None:
    await _send(send, reply.status, reply.body, [(b"x-amzn-requestid", reply.request_id.encode())])


class KMSApp:
    def __init__(self, pipeline: Pipeline, *, max_body: int = MAX_BODY) -> None:
        self._pipeline = pipeline
        self._max_body = max_body
        self.ready = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        client = scope.get("client")
        source_ip = client[0] if client else None
        method, path = scope["method"], scope["path"]
        if path == "/healthz" and method in ("GET", "HEAD"):
            status = 200 if self.ready else 503
            await _send(
                send, status, b'{"status":"ok"}' if self.ready else b'{"status":"starting"}', []
            )
            return
        if path != "/" or method != "POST":
            reply = await self._pipeline.refuse(
                UnknownOperationException(
                    f"keycask serves the KMS API at POST /, not {method} {path[:64]}"
                ),
                source_ip,
            )
            await _send_reply(send, reply)
            return
        try:
            body = await _read_body(scope, receive, self._max_body)
        except _TooLarge:
            reply = await self._pipeline.refuse(
                RequestEntityTooLargeException(f"Request body exceeds {self._max_body} bytes."),
                source_ip,
            )
            await _send_reply(send, reply)
            return
        request = HttpRequest(
            method=method,
            raw_path=scope.get("raw_path") or path.encode(),
            query_string=scope.get("query_string", b""),
            headers=tuple((bytes(k), bytes(v)) for k, v in scope["headers"]),
            body=body,
        )
        await _send_reply(send, await self._pipeline.handle(request, source_ip))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                await send({"type": "lifespan.shutdown.complete"})
                return
