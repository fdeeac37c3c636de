"""keycask's HTTP/1.1 server, spoken to in raw bytes over real sockets on 127.0.0.1.

Every behaviour uvicorn gave us and the server must keep has a test here, and so
does every kind of hostile input the edge of a KMS must survive. Timeouts are
configured short (0.2 s) and the tests assert that the connection is closed,
never how fast anything is.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import itertools
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keycask.http import connection as http_connection
from keycask.http import proxy
from keycask.http.messages import Refused, Request, Response
from keycask.http.peer import client_address
from keycask.http.server import HttpServer, Limits

WAIT = 5.0  # generous bound for anything that should happen "at once"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


# -- a test app -------------------------------------------------------------------


async def echo(request: Request) -> Response:
    """Describe the request back; sleeps if told to, raises if told to."""
    if request.path == "/boom":
        raise RuntimeError("secret-request-content")
    if request.path.startswith("/sleep/"):
        await asyncio.sleep(float(request.path.rsplit("/", 1)[1]))
    body = json.dumps(
        {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path.decode("latin-1"),
            "query": request.query_string.decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers],
            "body": request.body.decode("latin-1"),
            "client": request.client,
        }
    ).encode()
    return Response(200, body, ((b"content-type", b"application/json"),))


class Refusals:
    """The app's answer to an oversized body; remembers what it was shown."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.seen.append(request)
        return Response(
            413,
            b'{"__type": "RequestEntityTooLargeException"}',
            ((b"content-type", b"application/x-amz-json-1.1"),),
        )


# -- a raw HTTP client ------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, server: HttpServer) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, *, head: bool = False) -> Reply:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        lines = raw.decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1"
        headers = []
        for line in lines[1:]:
            if line:
                name, value = line.split(": ", 1)
                headers.append((name.lower(), value))
        length = int(dict(headers).get("content-length", "0"))
        body = b""
        if length and not head:
            body = await asyncio.wait_for(self.reader.readexactly(length), WAIT)
        return Reply(int(status), headers, body)

    async def closed(self) -> bool:
        """Whether the server closes the connection (after what it has sent)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), WAIT)
        except ConnectionResetError:
            rest = b""
        await self.close()
        return rest == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def post(body: bytes = b"{}", path: str = "/", extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: kms\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def get(path: str = "/", version: str = "1.1", extra: str = "") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: kms\r\n{extra}\r\n".encode()


def chunked(chunks: list[bytes], path: str = "/") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: kms\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


Start = Callable[..., Awaitable[HttpServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Start]:
    servers: list[HttpServer] = []

    async def start(
        handler: Callable[[Request], Awaitable[Response]] = echo,
        refuse: Callable[[Request], Awaitable[Response]] | None = None,
        on_refused: Refused | None = None,
        **limits: Any,
    ) -> HttpServer:
        server = HttpServer(
            handler, refuse or Refusals(), limits=Limits(**limits), on_refused=on_refused
        )
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown(grace=1.0)


# -- keep-alive, versions, close --------------------------------------------------


async def test_keep_alive_serves_several_requests_on_one_connection(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    for i in range(5):
        await client.send(post(b'{"n": %d}' % i))
        reply = await client.reply()
        assert reply.status == 200
        assert reply.header("connection") is None
        assert reply.json()["body"] == f'{{"n": {i}}}'
    assert server.stats.connections == 1
    await client.close()


async def test_request_fields_reach_the_handler(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(post(b"x", path="/a%20b/c?q=1&r=%2F", extra="X-Amz-Target: T.Op\r\n"))
    seen = (await client.reply()).json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/a b/c"
    assert seen["raw_path"] == "/a%20b/c"
    assert seen["query"] == "q=1&r=%2F"
    assert seen["headers"] == [["host", "kms"], ["content-length", "1"], ["x-amz-target", "T.Op"]]
    assert seen["body"] == "x"
    assert seen["client"] == "127.0.0.1"
    await client.close()


async def test_vaults_list_method_reaches_the_handler_as_list(serve: Start) -> None:
    """httptools refuses LIST; the server parses it as GET and names it
    LIST again, on a kept-alive connection and after another request too."""
    server = await serve()
    client = await Client.connect(server)
    for _ in range(2):
        await client.send(b"LIST /v1/transit/keys HTTP/1.1\r\nHost: kms\r\n\r\n")
        seen = (await client.reply()).json()
        assert seen["method"] == "LIST" and seen["raw_path"] == "/v1/transit/keys"
        await client.send(b"GET /v1/transit/keys HTTP/1.1\r\nHost: kms\r\n\r\n")
        assert (await client.reply()).json()["method"] == "GET"
    await client.close()


async def test_http10_closes_after_the_response(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(get(version="1.0"))
    reply = await client.reply()
    assert reply.status == 200
    assert reply.header("connection") == "close"
    assert await client.closed()


async def test_http10_keep_alive_is_honoured_and_acknowledged(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    for _ in range(2):
        await client.send(get(version="1.0", extra="Connection: Keep-Alive\r\n"))
        reply = await client.reply()
        assert reply.status == 200
        # An HTTP/1.0 client keeps the connection only if told so.
        assert reply.header("connection") == "keep-alive"
    await client.close()


async def test_upgrade_requests_are_answered_then_closed(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(get(extra="Connection: Upgrade\r\nUpgrade: websocket\r\n") + get())
    reply = await client.reply()
    assert reply.status == 200
    assert reply.header("connection") == "close"
    assert await client.closed()


async def test_connection_close_is_honoured(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(post(extra="Connection: close\r\n"))
    reply = await client.reply()
    assert reply.status == 200
    assert reply.header("connection") == "close"
    assert await client.closed()


# -- pipelining -------------------------------------------------------------------


async def test_pipelined_requests_are_answered_in_order(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(post(b"1") + post(b"2") + post(b"3"))
    assert [(await client.reply()).json()["body"] for _ in range(3)] == ["1", "2", "3"]
    await client.close()


async def test_a_slow_first_request_does_not_reorder_answers(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(post(b"1", path="/sleep/0.2") + post(b"2") + post(b"3", path="/sleep/0"))
    assert [(await client.reply()).json()["body"] for _ in range(3)] == ["1", "2", "3"]
    await client.close()


async def test_pipelined_request_after_connection_close_is_ignored(serve: Start) -> None:
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.path)
        return Response(200, b"{}")

    server = await serve(handler)
    client = await Client.connect(server)
    await client.send(post(path="/a", extra="Connection: close\r\n") + post(path="/b"))
    assert (await client.reply()).header("connection") == "close"
    assert await client.closed()
    assert calls == ["/a"]


# -- bodies -----------------------------------------------------------------------


async def test_chunked_body_is_assembled(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(chunked([b"hello ", b"chunked ", b"world"]))
    assert (await client.reply()).json()["body"] == "hello chunked world"
    # The connection stays usable: chunk framing was consumed exactly.
    await client.send(post(b"next"))
    assert (await client.reply()).json()["body"] == "next"
    await client.close()


async def test_chunked_body_split_across_writes(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    data = chunked([b"a" * 1000, b"b" * 3000])
    for i in range(0, len(data), 700):
        await client.send(data[i : i + 700])
        await asyncio.sleep(0.01)
    assert (await client.reply()).json()["body"] == "a" * 1000 + "b" * 3000
    await client.close()


async def test_body_exactly_at_the_limit_is_accepted(serve: Start) -> None:
    server = await serve(max_body=1000)
    client = await Client.connect(server)
    await client.send(post(b"x" * 1000))
    assert len((await client.reply()).json()["body"]) == 1000
    await client.send(chunked([b"y" * 600, b"y" * 400]))
    assert len((await client.reply()).json()["body"]) == 1000
    await client.close()


async def test_content_length_over_the_limit_is_refused_before_the_body(serve: Start) -> None:
    refusals = Refusals()
    server = await serve(refuse=refusals, max_body=1000)
    client = await Client.connect(server)
    # Only the headers: the answer must come without the server waiting for the body.
    await client.send(b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 1001\r\n\r\n")
    reply = await client.reply()
    assert reply.status == 413
    assert reply.header("connection") == "close"
    assert await client.closed()
    assert len(refusals.seen) == 1
    assert refusals.seen[0].body == b""
    assert (b"content-length", b"1001") in refusals.seen[0].headers


async def test_chunked_body_over_the_limit_is_refused_and_closed(serve: Start) -> None:
    refusals = Refusals()
    server = await serve(refuse=refusals, max_body=1000)
    client = await Client.connect(server)
    await client.send(chunked([b"z" * 600, b"z" * 600]))
    reply = await client.reply()
    assert reply.status == 413
    assert reply.header("connection") == "close"
    assert await client.closed()
    assert [r.body for r in refusals.seen] == [b""]


async def test_a_giant_body_is_not_read_after_the_refusal(serve: Start) -> None:
    refusals = Refusals()
    server = await serve(refuse=refusals, max_body=1000)
    client = await Client.connect(server)
    head = b"POST / HTTP/1.1\r\nHost: kms\r\nTransfer-Encoding: chunked\r\n\r\n"
    client.writer.write(head + b"100000\r\n" + b"g" * 0x100000)
    reply = await client.reply()
    assert reply.status == 413
    assert [r.body for r in refusals.seen] == [b""], "the refusal carries no body"
    assert await client.closed()
    await client.close()


async def test_expect_100_continue_gets_100_then_the_answer(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(
        b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await client.reply()
    assert interim.status == 100
    await client.send(b"hello")
    reply = await client.reply()
    assert reply.status == 200
    assert reply.json()["body"] == "hello"
    await client.close()


async def test_expect_100_continue_waits_for_earlier_answers(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(
        post(b"first", path="/sleep/0.2")
        + b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n"
    )
    # The 100 belongs to the second request, so it must not jump the first answer.
    assert (await client.reply()).json()["body"] == "first"
    assert (await client.reply()).status == 100
    await client.send(b"second")
    assert (await client.reply()).json()["body"] == "second"
    await client.close()


async def test_expect_100_continue_over_the_limit_gets_the_refusal_only(serve: Start) -> None:
    server = await serve(max_body=10)
    client = await Client.connect(server)
    await client.send(
        b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
    )
    assert (await client.reply()).status == 413
    assert await client.closed()


# -- header limits and malformed input --------------------------------------------


async def test_headers_too_large_get_431(serve: Start) -> None:
    server = await serve(max_header_bytes=4096)
    client = await Client.connect(server)
    await client.send(post(extra=f"X-Big: {'a' * 5000}\r\n"))
    reply = await client.reply()
    assert reply.status == 431
    assert reply.header("connection") == "close"
    assert "message" in reply.json()
    assert await client.closed()


async def test_too_many_headers_get_431(serve: Start) -> None:
    server = await serve(max_headers=20)
    client = await Client.connect(server)
    await client.send(post(extra="".join(f"X-H{i}: v\r\n" for i in range(30))))
    assert (await client.reply()).status == 431
    assert await client.closed()


async def test_a_header_that_never_ends_is_cut_off(serve: Start) -> None:
    server = await serve(max_header_bytes=4096)
    client = await Client.connect(server)
    await client.send(b"POST / HTTP/1.1\r\nX-Endless: ")
    status = None
    # Keep feeding one header value; the server must answer 431 long before 1 MB.
    for _ in range(256):
        try:
            await client.send(b"a" * 4096)
        except ConnectionError:
            break
        await asyncio.sleep(0.001)
        if client.reader.at_eof() or len(client.reader._buffer) > 0:  # type: ignore[attr-defined]
            break
    status = (await client.reply()).status
    assert status == 431
    await client.close()


async def test_a_chunk_extension_that_never_ends_is_cut_off(serve: Start) -> None:
    server = await serve(max_header_bytes=4096)
    client = await Client.connect(server)
    await client.send(b"POST / HTTP/1.1\r\nHost: kms\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=")
    for _ in range(256):
        try:
            await client.send(b"e" * 4096)
        except ConnectionError:
            break
        await asyncio.sleep(0.001)
        if client.reader.at_eof() or len(client.reader._buffer) > 0:  # type: ignore[attr-defined]
            break
    assert (await client.reply()).status == 431
    await client.close()


async def test_trailers_count_against_the_header_limits(serve: Start) -> None:
    server = await serve(max_headers=10)
    client = await Client.connect(server)
    head = b"POST / HTTP/1.1\r\nHost: kms\r\nTransfer-Encoding: chunked\r\n\r\n"
    trailers = b"".join(b"X-T%d: v\r\n" % i for i in range(20))
    await client.send(head + b"1\r\na\r\n0\r\n" + trailers + b"\r\n")
    assert (await client.reply()).status == 431
    assert await client.closed()


async def test_trailers_are_not_passed_to_the_handler(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    head = b"POST / HTTP/1.1\r\nHost: kms\r\nTransfer-Encoding: chunked\r\n\r\n"
    await client.send(head + b"1\r\na\r\n0\r\nX-Trailer: sneaky\r\n\r\n")
    seen = (await client.reply()).json()
    assert seen["body"] == "a"
    assert ["x-trailer", "sneaky"] not in seen["headers"]
    await client.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface
        b"NOTAMETHOD / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
async def test_malformed_requests_get_400_and_close(serve: Start, garbage: bytes) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(garbage)
    reply = await client.reply()
    assert reply.status == 400
    assert reply.header("connection") == "close"
    assert "message" in reply.json()
    assert await client.closed()


async def test_content_length_with_transfer_encoding_is_refused(serve: Start) -> None:
    calls: list[Request] = []

    async def handler(request: Request) -> Response:
        calls.append(request)
        return Response(200, b"{}")

    server = await serve(handler)
    client = await Client.connect(server)
    smuggle = (
        b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n"
    )
    await client.send(smuggle)
    assert (await client.reply()).status == 400
    assert await client.closed()
    assert calls == []


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "missing or repeated host header"),
        (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "missing or repeated host header"),
        (b"GET / HTTP/1.1\r\nHost: kms\r\nHost: evil\r\n\r\n", "missing or repeated host header"),
        (b"GET / HTTP/1.0\r\nHost: kms\r\nHost: evil\r\n\r\n", "missing or repeated host header"),
        (
            b"POST / HTTP/1.1\r\nHost: kms\r\nTransfer-Encoding: identity, chunked\r\n\r\n"
            b"0\r\n\r\n",
            "unsupported transfer-encoding",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: kms\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "malformed request",  # httptools refuses this one itself
        ),
        (b"GET / HTTP/2.0\r\nHost: kms\r\n\r\n", "unsupported HTTP version"),
        (
            b"GET / HTTP/2.0\r\nHost: kms\r\nConnection: keep-alive\r\n\r\n",
            "unsupported HTTP version",
        ),
        (
            b"GET / HTTP/2.0\r\nHost: kms\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            "unsupported HTTP version",
        ),
        (b"GET / HTTP/0.9\r\nHost: kms\r\n\r\n", "unsupported HTTP version"),
        (b"GET http://other.example/ HTTP/1.1\r\nHost: kms\r\n\r\n", "invalid request target"),
        (
            b"POST http://kms/ HTTP/1.1\r\nHost: kms\r\nContent-Length: 0\r\n\r\n",
            "invalid request target",
        ),
    ],
)
async def test_requests_a_proxy_could_read_differently_get_400(
    serve: Start, request_bytes: bytes, reason: str
) -> None:
    """Behind an HTTP proxy every ambiguity is a way to smuggle a request past
    it: no Host in HTTP/1.1, two Hosts, a transfer coding other than chunked
    alone, an HTTP version we do not speak, an absolute-form target. Each is
    refused before the handler runs, and reported for the audit log."""
    calls: list[Request] = []
    refusals: list[tuple[str | None, int, str]] = []

    async def handler(request: Request) -> Response:
        calls.append(request)
        return Response(200, b"{}")

    async def on_refused(client: str | None, status: int, why: str) -> None:
        refusals.append((client, status, why))

    server = await serve(handler, on_refused=on_refused)
    client = await Client.connect(server)
    await client.send(request_bytes)
    reply = await client.reply()
    assert reply.status == 400
    assert reply.json() == {"message": reason}
    assert await client.closed()
    assert calls == []
    assert refusals == [("127.0.0.1", 400, reason)]


async def test_http10_without_host_is_still_served(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(b"GET /x HTTP/1.0\r\n\r\n")
    assert (await client.reply()).json()["path"] == "/x"
    assert await client.closed()


async def test_a_refusal_is_reported_before_it_is_answered(serve: Start) -> None:
    """The app records a refusal before the client hears it (no audit, no
    answer), for every kind: malformed, header limits, too slow."""
    release = asyncio.Event()
    refusals: list[tuple[int, str]] = []

    async def on_refused(client: str | None, status: int, why: str) -> None:
        refusals.append((status, why))
        await release.wait()

    server = await serve(on_refused=on_refused, header_timeout=0.2, max_headers=4)
    client = await Client.connect(server)
    await client.send(b"\x00garbage\r\n\r\n")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.reader.read(1), 0.3)
    assert refusals == [(400, "malformed request")]
    release.set()
    assert (await client.reply()).status == 400
    assert await client.closed()
    many = await Client.connect(server)
    await many.send(get(extra="".join(f"X-{i}: v\r\n" for i in range(6))))
    assert (await many.reply()).status == 431
    assert await many.closed()
    slow = await Client.connect(server)
    await slow.send(b"GET / HTTP/1.1\r\nHost: kms\r\n")
    assert (await slow.reply()).status == 408
    assert await slow.closed()
    assert refusals[1:] == [(431, "too many request headers"), (408, "request timed out")]


async def test_garbage_after_a_good_request_answers_both(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(post(b"ok", path="/sleep/0.05") + b"\x00\x01garbage\r\n\r\n")
    assert (await client.reply()).json()["body"] == "ok"
    assert (await client.reply()).status == 400
    assert await client.closed()


# -- timeouts ---------------------------------------------------------------------


async def test_idle_keep_alive_connection_is_closed(serve: Start) -> None:
    server = await serve(keep_alive_timeout=0.2)
    client = await Client.connect(server)
    await client.send(post())
    assert (await client.reply()).status == 200
    assert await client.closed()  # nothing more is written: a silent close


async def test_a_connection_that_never_speaks_is_closed(serve: Start) -> None:
    server = await serve(keep_alive_timeout=0.2)
    client = await Client.connect(server)
    assert await client.closed()


async def test_slow_headers_get_408_and_close(serve: Start) -> None:
    server = await serve(header_timeout=0.2)
    client = await Client.connect(server)
    await client.send(b"POST / HT")
    reply = await client.reply()
    assert reply.status == 408
    assert reply.header("connection") == "close"
    assert await client.closed()


async def test_slowloris_trickle_does_not_extend_the_header_deadline(serve: Start) -> None:
    server = await serve(header_timeout=0.3, keep_alive_timeout=30)
    client = await Client.connect(server)
    await client.send(b"POST / HTTP/1.1\r\n")
    for i in range(100):
        try:
            await client.send(b"X-%d: v\r\n" % i)
        except ConnectionError:
            break
        if client.reader.at_eof() or len(client.reader._buffer) > 0:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.05)
    assert (await client.reply()).status == 408
    await client.close()


async def test_slow_body_gets_408_and_close(serve: Start) -> None:
    server = await serve(body_timeout=0.2)
    client = await Client.connect(server)
    await client.send(b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 10\r\n\r\nabc")
    reply = await client.reply()
    assert reply.status == 408
    assert await client.closed()


async def test_slow_second_request_waits_for_the_first_answer(serve: Start) -> None:
    server = await serve(header_timeout=0.2)
    client = await Client.connect(server)
    await client.send(post(b"1", path="/sleep/0.4") + b"POST / HT")
    # The 408 for the stalled second request comes after the first request's answer.
    assert (await client.reply()).json()["body"] == "1"
    assert (await client.reply()).status == 408
    assert await client.closed()


async def test_a_request_held_up_by_a_full_pipeline_is_not_timed_out(serve: Start) -> None:
    # Reading pauses while three slow requests are queued; the fourth request's body
    # is late because of the server, not the client, so its clock must not run.
    server = await serve(max_pipelined=1, body_timeout=0.6)
    client = await Client.connect(server)
    slow = post(b"s", path="/sleep/0.3")
    await client.send(slow * 3 + b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 4\r\n\r\n")
    for _ in range(3):
        assert (await client.reply()).json()["body"] == "s"
    await client.send(b"late")
    assert (await client.reply()).json()["body"] == "late"
    await client.close()


async def test_a_client_that_does_not_read_is_cut_off(serve: Start) -> None:
    big = Response(200, b"x" * (1 << 20))

    async def handler(request: Request) -> Response:
        return big

    server = await serve(handler, body_timeout=0.3)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(post() * 16)
    # Never read: the server stalls on writing, then must drop the connection.
    for _ in range(100):
        await asyncio.sleep(0.05)
        if server.stats.connections == 0:
            break
    assert server.stats.connections == 0
    sock.close()


# -- errors from the app ----------------------------------------------------------


async def test_handler_exception_gives_500_and_the_connection_goes_on(
    serve: Start, caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve()
    client = await Client.connect(server)
    with caplog.at_level(logging.ERROR, logger="keycask.http"):
        await client.send(post(b"secret-body", path="/boom"))
        reply = await client.reply()
    assert reply.status == 500
    assert reply.json() == {"__type": "KMSInternalException", "message": "internal error"}
    # The answer was complete, so the connection stays usable.
    assert reply.header("connection") is None
    await client.send(post(b"after"))
    assert (await client.reply()).json()["body"] == "after"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "RuntimeError" in logged
    assert "secret" not in logged
    assert all(r.exc_info is None for r in caplog.records)
    await client.close()


@pytest.mark.parametrize(
    "bad",
    [
        Response(200, b"{}", ((b"x-injected", b"a\r\nset-cookie: evil"),)),
        Response(200, b"{}", ((b"x-bare-cr", b"a\rb"),)),
        Response(99, b"{}"),
        Response(1000, b"{}"),
    ],
)
async def test_a_bad_response_from_the_app_gives_500(serve: Start, bad: Response) -> None:
    async def handler(request: Request) -> Response:
        return bad

    server = await serve(handler)
    client = await Client.connect(server)
    await client.send(post())
    reply = await client.reply()
    assert reply.status == 500
    assert reply.header("set-cookie") is None
    await client.close()


async def test_refusal_that_raises_gives_500_and_closes(serve: Start) -> None:
    async def refuse(request: Request) -> Response:
        raise RuntimeError("audit down")

    server = await serve(refuse=refuse, max_body=10)
    client = await Client.connect(server)
    await client.send(post(b"x" * 11))
    reply = await client.reply()
    assert reply.status == 500
    assert reply.header("connection") == "close"
    assert await client.closed()


# -- client disconnects -----------------------------------------------------------


async def test_client_disconnect_mid_body_leaves_the_server_well(
    serve: Start, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Request] = []

    async def handler(request: Request) -> Response:
        calls.append(request)
        return Response(200, b"{}")

    server = await serve(handler)
    with caplog.at_level(logging.WARNING):
        client = await Client.connect(server)
        await client.send(b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 100\r\n\r\nabc")
        await client.close()
        for _ in range(100):
            if server.stats.connections == 0:
                break
            await asyncio.sleep(0.01)
        assert server.stats.connections == 0
        other = await Client.connect(server)
        await other.send(post())
        assert (await other.reply()).status == 200
        await other.close()
    assert len(calls) == 1
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_client_gone_while_handler_runs(
    serve: Start, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    finished = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/wait":
            await release.wait()
            finished.set()
        return Response(200, b"{}")

    server = await serve(handler)
    client = await Client.connect(server)
    await client.send(post(path="/wait"))
    await asyncio.sleep(0.05)
    client.writer.transport.abort()
    await asyncio.sleep(0.05)
    with caplog.at_level(logging.WARNING, logger="keycask.http"):
        release.set()  # the handler finishes; its answer has nowhere to go
        await asyncio.wait_for(finished.wait(), WAIT)
        for _ in range(100):  # the server drops the connection on a later loop turn
            if server.stats.connections == 0:
                break
            await asyncio.sleep(0.01)
    assert server.stats.connections == 0
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    other = await Client.connect(server)
    await other.send(post())
    assert (await other.reply()).status == 200
    await other.close()


# -- graceful shutdown ------------------------------------------------------------


async def test_graceful_shutdown(serve: Start) -> None:
    release = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/slow":
            await release.wait()
        return Response(200, b'{"done": true}')

    server = await serve(handler)
    port = server.port
    idle = await Client.connect(server)
    await idle.send(post())
    assert (await idle.reply()).status == 200
    busy = await Client.connect(server)
    await busy.send(post(path="/slow"))
    await asyncio.sleep(0.05)

    stopping = asyncio.create_task(server.shutdown(grace=WAIT))
    await asyncio.sleep(0.05)
    assert await idle.closed()  # idle keep-alive connections go at once
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)  # no new connections
    assert not stopping.done()

    release.set()
    reply = await busy.reply()  # the in-flight request completes
    assert reply.status == 200
    assert reply.json() == {"done": True}
    assert reply.header("connection") == "close"
    assert await busy.closed()
    await asyncio.wait_for(stopping, WAIT)


async def test_shutdown_answers_pipelined_requests_already_received(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(post(b"1", path="/sleep/0.2") + post(b"2") + post(b"3"))
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(server.shutdown(grace=WAIT))
    replies = [await client.reply() for _ in range(3)]
    assert [r.json()["body"] for r in replies] == ["1", "2", "3"]
    assert [r.header("connection") for r in replies] == [None, None, "close"]
    assert await client.closed()
    await asyncio.wait_for(stopping, WAIT)


async def test_shutdown_grace_expires(serve: Start) -> None:
    async def handler(request: Request) -> Response:
        await asyncio.sleep(60)
        return Response(200, b"{}")

    server = await serve(handler)
    client = await Client.connect(server)
    await client.send(post())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(server.shutdown(grace=0.2), WAIT)
    assert await client.closed()
    assert server.stats.connections == 0


# -- response details -------------------------------------------------------------


async def test_head_has_headers_but_no_body(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(get(path="/x"))
    body_length = len((await client.reply()).body)
    await client.send(b"HEAD /x HTTP/1.1\r\nHost: kms\r\n\r\n")
    reply = await client.reply(head=True)
    assert reply.status == 200
    # The echo mentions the method, so HEAD's would-be body is one byte longer than GET's.
    assert int(reply.header("content-length") or 0) == body_length + 1
    # Had a body been sent, it would now be read as the start of the next answer.
    await client.send(get(path="/y"))
    assert (await client.reply()).json()["path"] == "/y"
    await client.close()


async def test_head_of_a_failing_handler_has_no_body(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(b"HEAD /boom HTTP/1.1\r\nHost: kms\r\n\r\n" + get(path="/after"))
    assert (await client.reply(head=True)).status == 500
    assert (await client.reply()).json()["path"] == "/after"
    await client.close()


async def test_date_header_is_present_and_current(serve: Start) -> None:
    server = await serve()
    client = await Client.connect(server)
    await client.send(post())
    reply = await client.reply()
    date = reply.header("date")
    assert date is not None and date.endswith(" GMT")
    assert abs(parsedate_to_datetime(date) - datetime.now(UTC)) < timedelta(seconds=5)
    assert reply.header("content-length") == str(len(reply.body))
    await client.close()


# -- flow control -----------------------------------------------------------------


async def test_pipelining_without_reading_pauses_the_server(serve: Start) -> None:
    """A client that pipelines without reading cannot make the server buffer without bound."""
    limit = 4
    server = await serve(max_pipelined=limit)
    client = await Client.connect(server)
    body = b"p" * 8192
    count = 4000  # 32 MiB: more than the kernel buffers both ways on loopback
    for i in range(count):
        client.writer.write(post(body, path=f"/{i}"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.writer.drain(), 1.0)
    stats = server.stats
    assert stats.read_pauses >= 1
    # A single socket read (at most 256 KiB here) may carry a few requests past the
    # limit before reading pauses; never more than that.
    per_read = (256 * 1024) // len(post(body)) + 1
    assert stats.queued <= limit + per_read
    assert stats.queued_high_water <= limit + per_read

    # Once the client reads, everything flows again, in order.
    for i in range(count):
        reply = await client.reply()
        assert reply.json()["path"] == f"/{i}"
    await client.writer.drain()
    await client.close()


async def test_queued_body_bytes_pause_reading_before_the_request_count_does(
    serve: Start,
) -> None:
    """Big pipelined bodies are bounded by bytes, not only by request count."""
    body = b"b" * 200_000
    server = await serve(max_pipelined=64, max_queued_bytes=len(body) * 3)
    client = await Client.connect(server)
    count = 200  # 40 MB of bodies
    for i in range(count):
        client.writer.write(post(body, path=f"/{i}"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.writer.drain(), 1.0)
    stats = server.stats
    assert stats.read_pauses >= 1
    per_read = (256 * 1024) // len(body) + 2
    assert stats.queued_high_water <= 3 + per_read, stats
    for i in range(count):
        reply = await client.reply()
        assert reply.json()["path"] == f"/{i}"
    await client.writer.drain()
    await client.close()


async def test_a_new_connection_evicts_the_oldest_idle_one_when_all_slots_are_taken(
    serve: Start,
) -> None:
    """Idle connections from one client must not shut everyone else out until
    they time out: a new client takes the slot of the oldest idle one."""
    server = await serve(max_connections=3)
    kept = []
    for _ in range(3):
        client = await Client.connect(server)
        await client.send(post())
        assert (await client.reply()).status == 200
        kept.append(client)
        await asyncio.sleep(0.01)  # distinct idle deadlines: kept[0] is the oldest
    newcomer = await Client.connect(server)
    await newcomer.send(post())
    assert (await newcomer.reply()).status == 200
    assert await kept[0].closed()  # the oldest idle connection made room
    assert server.stats.evictions == 1
    for client in kept[1:]:  # the others were left alone
        await client.send(post())
        assert (await client.reply()).status == 200
        await client.close()
    await newcomer.close()


async def test_a_full_server_frees_a_batch_of_slots_per_scan(serve: Start) -> None:
    """A flood of connects must not pay a scan of every connection per
    accept: each scan frees 1/32 of the slots, oldest first."""
    server = await serve(max_connections=64)
    idle = []
    for _ in range(64):
        client = await Client.connect(server)
        await client.send(post())
        assert (await client.reply()).status == 200
        idle.append(client)
    newcomers = []
    for _ in range(2):
        newcomer = await Client.connect(server)
        await newcomer.send(post())
        assert (await newcomer.reply()).status == 200
        newcomers.append(newcomer)
        # The first newcomer's scan freed two slots; the second needed none.
        assert server.stats.evictions == 2
    assert await idle[0].closed()
    assert await idle[1].closed()
    for client in [*idle, *newcomers]:
        await client.close()


async def test_connections_in_headers_or_silent_ones_are_evicted_too(serve: Start) -> None:
    """A slowloris (headers never finished) or a connection that never speaks
    (a TLS client that never sends its ClientHello looks the same) holds a
    slot no longer than a newcomer needs it."""
    server = await serve(max_connections=2)
    silent = await Client.connect(server)
    slow = await Client.connect(server)
    await slow.send(b"POST / HTTP/1.1\r\nHost: kms\r\nX-Slow: ")
    await asyncio.sleep(0.05)
    first = await Client.connect(server)
    await first.send(post())
    assert (await first.reply()).status == 200
    second = await Client.connect(server)
    await second.send(post())
    assert (await second.reply()).status == 200
    assert await silent.closed()
    assert await slow.closed()
    await first.close()
    await second.close()


async def test_connections_beyond_the_limit_are_closed_when_every_slot_is_busy(
    serve: Start,
) -> None:
    """Requests in flight are never dropped to make room: with every slot
    answering, a new connection is closed on accept, like a full backlog."""
    server = await serve(max_connections=3)
    kept = [await Client.connect(server) for _ in range(3)]
    for client in kept:
        await client.send(post(path="/sleep/0.5"))
    await asyncio.sleep(0.1)
    extra = await Client.connect(server)
    await extra.send(post())
    assert await extra.closed()
    for client in kept:
        assert (await client.reply()).status == 200
    again = await Client.connect(server)
    await again.send(post())
    assert (await again.reply()).status == 200
    for client in [*kept, again]:
        await client.close()


# -- hostile input ----------------------------------------------------------------

PIECES = [
    post(b"{}"),
    post(b"x" * 300),
    chunked([b"ab", b"cd"]),
    get(version="1.0"),
    get(extra="Connection: close\r\n"),
    b"HEAD / HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 99999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Expect: 100-continue\r\n",
    b"Upgrade: h2c\r\nConnection: Upgrade\r\n",
    b"X-Pad: " + b"p" * 700 + b"\r\n",
    b"\r\n",
    b"5\r\nhello\r\n",
    b"ffffffff\r\n",
    b"0\r\n\r\n",
    b"1;ext=" + b"e" * 500 + b"\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    proxy.build(("203.0.113.7", 1), ("127.0.0.1", 2)),
    proxy.build(("2001:db8::7", 1), ("2001:db8::1", 2)),
    proxy.SIGNATURE,
    proxy.SIGNATURE + b"\x20\x00\x00\x00",  # LOCAL
    proxy.SIGNATURE + b"\x21\x11\x04\x00",  # announces too much
]


async def _exchange(port: int, data: bytes, cuts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        for start, end in itertools.pairwise(edges):
            writer.write(data[start:end])
            await writer.drain()
        writer.write_eof()
        # Whatever was sent, the server answers what it can and closes: it never hangs.
        await asyncio.wait_for(reader.read(), WAIT)
    except ConnectionError:
        pass  # an abort is a fine answer to some of this
    finally:
        writer.close()


@pytest.mark.parametrize("behind_proxy", [False, True])
@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_hostile_byte_streams_never_crash_hang_or_leak(
    new_loop: Callable[[], asyncio.AbstractEventLoop], behind_proxy: bool
) -> None:
    """Arbitrary bytes, cut anywhere: from any client, and from a balancer
    trusted to send PROXY protocol v2 headers (as hostile as any)."""
    errors: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record)

    loop = new_loop()
    server = HttpServer(
        echo,
        Refusals(),
        limits=Limits(max_body=2048, max_header_bytes=2048, max_headers=8, max_pipelined=2),
        proxy_from=LOOPBACK if behind_proxy else (),
    )
    loop.run_until_complete(server.start("127.0.0.1", 0))
    collect = Collect(logging.ERROR)
    logging.getLogger("keycask.http").addHandler(collect)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.lists(st.sampled_from(PIECES) | st.binary(max_size=40), max_size=10).map(b"".join),
        st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=6),
    )
    def exchange(data: bytes, cuts: list[int]) -> None:
        loop.run_until_complete(_exchange(server.port, data, cuts))

    try:
        exchange()

        async def settled() -> None:
            for _ in range(300):
                if server.stats.connections == 0 and server.stats.workers == 0:
                    return
                await asyncio.sleep(0.01)

        loop.run_until_complete(settled())
        assert server.stats.connections == 0
        assert server.stats.workers == 0
        assert errors == []
    finally:
        logging.getLogger("keycask.http").removeHandler(collect)
        loop.run_until_complete(server.shutdown(grace=1.0))
        loop.close()


# -- on uvloop --------------------------------------------------------------------


async def _keep_alive_and_pipelining() -> None:
    server = HttpServer(echo, Refusals(), limits=Limits(keep_alive_timeout=0.2))
    await server.start("127.0.0.1", 0)
    try:
        client = await Client.connect(server)
        await client.send(post(b"a") + chunked([b"b", b"c"]) + post(b"d", path="/sleep/0"))
        assert [(await client.reply()).json()["body"] for _ in range(3)] == ["a", "bc", "d"]
        await client.send(b"\x00garbage\r\n\r\n")
        assert (await client.reply()).status == 400
        assert await client.closed()
        idle = await Client.connect(server)
        assert await idle.closed()
    finally:
        await server.shutdown(grace=1.0)


async def _shutdown_with_in_flight() -> None:
    release = asyncio.Event()

    async def handler(request: Request) -> Response:
        await release.wait()
        return Response(200, b"{}")

    server = HttpServer(handler, Refusals())
    await server.start("127.0.0.1", 0)
    client = await Client.connect(server)
    await client.send(post())
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(server.shutdown(grace=WAIT))
    await asyncio.sleep(0.05)
    release.set()
    reply = await client.reply()
    assert reply.header("connection") == "close"
    assert await client.closed()
    await asyncio.wait_for(stopping, WAIT)


def test_keep_alive_pipelining_and_errors_on_uvloop() -> None:
    uvloop.run(_keep_alive_and_pipelining())


def test_graceful_shutdown_on_uvloop() -> None:
    uvloop.run(_shutdown_with_in_flight())


# -- memory: nothing outlives its connection or its request -----------------------


def _held(marker: bytes) -> list[object]:
    """Objects the cyclic collector tracks that still hold ``marker`` (a body)."""

    def holds(obj: object) -> bool:
        if isinstance(obj, Request):
            return obj.body == marker
        if isinstance(obj, list):
            return any(x == marker for x in obj if isinstance(x, bytes))
        return isinstance(obj, http_connection.Connection)

    return [obj for obj in gc.get_objects() if holds(obj)]


async def test_a_closed_connection_and_its_last_body_are_freed_without_the_gc(
    serve: Start,
) -> None:
    """A closed connection must be freed by reference counting alone: with
    the cyclic collector off (as between its rare full passes), nothing of it
    or of the body it carried may stay, or strangers can fill the memory."""
    server = await serve()
    marker = b"m" * 200_000 + b"closed"
    gc.collect()
    gc.disable()
    try:
        client = await Client.connect(server)
        await client.send(post(marker))
        assert (await client.reply()).status == 200
        await client.close()
        for _ in range(300):
            if server.stats.connections == 0 and server.stats.workers == 0:
                break
            await asyncio.sleep(0.01)
        assert server.stats.connections == 0
        assert _held(marker) == []
    finally:
        gc.enable()


async def test_an_idle_connection_holds_nothing_of_its_last_request(serve: Start) -> None:
    """Between requests a keep-alive connection keeps no reference to the last
    body (which may be plaintext): memory is bounded by requests in flight."""
    server = await serve()
    marker = b"p" * 200_000 + b"idle"
    client = await Client.connect(server)
    await client.send(post(marker))
    assert (await client.reply()).status == 200
    await asyncio.sleep(0.05)  # the worker parks
    gc.collect()  # anything still held now is referenced, not merely uncollected
    held = [o for o in _held(marker) if not isinstance(o, http_connection.Connection)]
    assert held == []
    await client.close()


# -- the client's address ----------------------------------------------------------


async def test_ipv4_clients_of_a_dual_stack_listener_are_seen_as_ipv4(serve: Start) -> None:
    """``--listen [::]:PORT`` makes one socket for both families; an IPv4
    client then arrives as ``::ffff:127.0.0.1``, which no IPv4 IpAddress
    condition matches. The handler (and so aws:SourceIp and the audit record)
    must see ``127.0.0.1``."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 0))
    sock.listen(16)
    sock.setblocking(False)
    server = HttpServer(echo, Refusals())
    await server.start("::", 0, sock=sock)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        client = Client(reader, writer)
        await client.send(post())
        assert (await client.reply()).json()["client"] == "127.0.0.1"
        await client.close()
        reader, writer = await asyncio.open_connection("::1", server.port)
        client = Client(reader, writer)
        await client.send(post())
        assert (await client.reply()).json()["client"] == "::1"
        await client.close()
    finally:
        await server.shutdown(grace=1.0)


@pytest.mark.parametrize(
    ("peer", "seen"),
    [
        (("::ffff:10.1.2.3", 5, 0, 0), "10.1.2.3"),
        (("::FFFF:192.168.0.1", 5, 0, 0), "192.168.0.1"),
        (("10.1.2.3", 5), "10.1.2.3"),
        (("2001:db8::1", 5, 0, 0), "2001:db8::1"),
        (("::ffff:not.an.address", 5, 0, 0), "::ffff:not.an.address"),
        ("/run/keycask.sock", None),
        ((), None),
    ],
)
def test_client_address_normalises_ipv4_mapped_addresses(peer: object, seen: str | None) -> None:
    assert client_address(peer) == seen


# -- PROXY protocol v2 from a trusted balancer ---------------------------------------


async def test_a_trusted_balancer_names_the_client_with_a_proxy_v2_header(serve: Start) -> None:
    server = HttpServer(echo, Refusals(), proxy_from=LOOPBACK)
    await server.start("127.0.0.1", 0)
    try:
        client = await Client.connect(server)
        header = proxy.build(("203.0.113.7", 51000), ("127.0.0.1", server.port))
        await client.send(header + post(b"a"))
        assert (await client.reply()).json()["client"] == "203.0.113.7"
        await client.send(post(b"b"))  # the whole connection is that client's
        assert (await client.reply()).json()["client"] == "203.0.113.7"
        await client.close()
        # Byte by byte, header and request: the same.
        client = await Client.connect(server)
        header = proxy.build(("2001:db8::7", 1), ("2001:db8::1", 9567))
        for byte in header + post(b"c"):
            await client.send(bytes((byte,)))
        assert (await client.reply()).json()["client"] == "2001:db8::7"
        await client.close()
    finally:
        await server.shutdown(grace=1.0)


async def test_a_trusted_peer_without_a_valid_header_is_refused(serve: Start) -> None:
    refusals: list[tuple[str | None, int, str]] = []
    calls: list[Request] = []

    async def handler(request: Request) -> Response:
        calls.append(request)
        return Response(200, b"{}")

    async def on_refused(client: str | None, status: int, why: str) -> None:
        refusals.append((client, status, why))

    server = HttpServer(handler, Refusals(), proxy_from=LOOPBACK, on_refused=on_refused)
    await server.start("127.0.0.1", 0)
    try:
        for opening in (
            post(),  # no header at all
            b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n" + post(),  # version 1
            proxy.SIGNATURE + b"\x21\x11\xff\xff",  # announces 64 KiB of header
        ):
            client = await Client.connect(server)
            await client.send(opening)
            reply = await client.reply()
            assert reply.status == 400
            assert reply.json() == {"message": "invalid proxy protocol header"}
            assert await client.closed()
        assert calls == []
        assert refusals == [("127.0.0.1", 400, "invalid proxy protocol header")] * 3
    finally:
        await server.shutdown(grace=1.0)


async def test_an_untrusted_peer_cannot_name_another_client(serve: Start) -> None:
    """From a peer not named in proxy_from the header is just bytes: refused
    as malformed HTTP, never read as an address."""
    server = HttpServer(echo, Refusals(), proxy_from=(ipaddress.ip_network("10.0.0.0/8"),))
    await server.start("127.0.0.1", 0)
    try:
        client = await Client.connect(server)
        await client.send(proxy.build(("203.0.113.7", 1), ("127.0.0.1", 2)) + post())
        assert (await client.reply()).status == 400
        assert await client.closed()
        client = await Client.connect(server)
        await client.send(post())
        assert (await client.reply()).json()["client"] == "127.0.0.1"
        await client.close()
    finally:
        await server.shutdown(grace=1.0)


async def test_a_trusted_peer_that_never_sends_its_header_is_timed_out(serve: Start) -> None:
    server = HttpServer(echo, Refusals(), proxy_from=LOOPBACK, limits=Limits(header_timeout=0.2))
    await server.start("127.0.0.1", 0)
    try:
        client = await Client.connect(server)
        await client.send(proxy.SIGNATURE[:5])
        assert await client.closed()
    finally:
        await server.shutdown(grace=1.0)
