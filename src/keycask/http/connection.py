"""One client connection of keycask's own HTTP/1.1 server (``http/server.py``).

Why one module of ~1,050 lines: the protocol class, its per-connection state
machine (parse, queue, answer in order, time out, evict) and the limits that
bound each stranger are one piece: every limit is enforced at a transition of
that state machine, and reviewing the edge means reading them together. What
is not part of that state machine lives beside it: the request and response
types (``messages.py``), the client's address (``peer.py``), the TLS context
(``tls.py``) and the listening socket with its connection set (``server.py``).

It keeps what uvicorn, which served keycask before, gave us: keep-alive (HTTP/1.1
by default, HTTP/1.0 on request), pipelining with answers strictly in request
order, chunked request bodies, ``Expect: 100-continue``, body and header limits,
idle and slow-client timeouts, and graceful shutdown. It is the part of a KMS
that strangers talk to first, so no input may crash it, hang it or make it
buffer without bound:

* a connection stops reading once more than ``max_pipelined`` parsed requests
  wait (one socket read, at most 256 KiB, may carry a few more: httptools
  cannot stop mid-buffer), and stops running handlers while the peer does not
  read the answers; a peer stalled that way is dropped after ``body_timeout``;
* header bytes count as they arrive, so a header that never ends is cut off
  at ``max_header_bytes`` plus one read; trailers and chunk extensions, which
  httptools would buffer, count against the same allowance;
* every phase of a connection has a deadline, kept by one lazily rescheduled
  timer per connection (no timer made or cancelled per request);
* after an error answer the server half-closes and drains what the client is
  still sending for a moment, so the answer reaches it instead of a reset;
* an exception from the handler becomes a 500 for that request only: the
  answer is complete and correctly framed, so the connection carries on.

Requests are answered by one long-lived task per connection, parked on a
future between requests. Measured on the 2-core benchmark machine (uvloop,
keep-alive, 64 connections): waking a parked task costs ~2.2 us against ~3.2 us
for creating and awaiting a task per request, and end to end the parked task
served 57-74k requests/s against 45-63k for a task per request. The whole
server, with a handler answering ``{}``, served ~70k requests/s where uvicorn
with a bare ASGI callable served ~34k, and in-process the Python side of one
keep-alive request (parse, queue, wake, answer) costs ~8.5 us.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections import deque
from collections.abc import Generator
from email.utils import formatdate
from typing import TYPE_CHECKING, NoReturn, cast
from urllib.parse import unquote_to_bytes

import httptools

from keycask.http import proxy
from keycask.http.messages import Request, Response, new_request
from keycask.http.peer import client_address, trusted
from keycask.http.tls import SHUTDOWN_TIMEOUT as TLS_SHUTDOWN_TIMEOUT
from keycask.http.tls import peer_subject

if TYPE_CHECKING:
    from keycask.http.server import HttpServer

__all__ = ["Connection", "TooLarge", "http_date"]

_log = logging.getLogger("keycask.http")


class TooLarge(Exception):
    """Raised inside the parser callbacks to stop reading an oversized body."""


# What a closed connection's parser is replaced by: it calls back nothing
# (data_received ignores input once a connection is dead anyway).
_DEAD_PARSER = httptools.HttpRequestParser(object())


def _queued_bytes(queue: deque[tuple[Request, int, bool]]) -> int:
    return sum(len(entry[0].body) for entry in queue)


# Phases of the request being parsed on a connection.
_IDLE = 0
_HEADERS = 1
_BODY = 2

_INF = float("inf")
# Long enough for an error answer to reach a client that is still sending,
# short enough that a hostile client cannot keep the socket.
_LINGER = 1.0
# Per chunk of a chunked body, bytes of framing we expect at most (size line,
# CRLFs); anything beyond it, and beyond the header allowance, is an attack
# through chunk extensions or trailers, which httptools would buffer.
_CHUNK_FRAMING = 32

# Only final statuses: an app answering 1xx would desynchronise the client.
_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii")
    for s in http.HTTPStatus
    if 200 <= s.value <= 599
}
_METHODS: dict[bytes, str] = {
    m: m.decode("ascii") for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS")
}
_NO_BODY = frozenset((204, 304))
# Request headers the server itself acts on; spotting them costs one set lookup.
_WATCHED_HEADERS = frozenset(
    (b"content-length", b"transfer-encoding", b"expect", b"connection", b"host")
)
# Values of a queued request's keep-alive flag.
_CLOSE_AFTER = 0
_KEEP_ALIVE = 1
_KEEP_ALIVE_SAY = 2  # an HTTP/1.0 client asked for keep-alive and must be told it got it
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"
_KEEP = b"connection: keep-alive\r\n"
_JSON_ERROR = b"content-type: application/json\r\n"
_INTERNAL_ERROR = Response(
    500,
    b'{"__type": "KMSInternalException", "message": "internal error"}',
    ((b"content-type", b"application/x-amz-json-1.1"),),
)


class _Stop(Exception):
    """Raised inside the parser callbacks once the connection takes no more input."""


def http_date() -> bytes:
    return b"date: " + formatdate(usegmt=True).encode("ascii") + b"\r\n"


def _status_line(status: int) -> bytes:
    if not 200 <= status <= 599:
        raise ValueError("status out of range")
    return b"HTTP/1.1 %d \r\n" % status


class _Resumed:
    """Awaits the rest of a coroutine whose first step was taken by hand."""

    __slots__ = ("_first", "_steps")

    def __init__(self, steps: Generator[object, None, object], first: object) -> None:
        self._steps = steps
        self._first = first

    def __await__(self) -> Generator[object, None, asyncio.Transport | None]:
        steps, value = self._steps, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # cancellation: the coroutine handles it
                try:
                    value = steps.throw(exc)
                except StopIteration as stop:
                    return cast(asyncio.Transport | None, stop.value)
            else:
                try:
                    value = steps.send(sent)
                except StopIteration as stop:
                    return cast(asyncio.Transport | None, stop.value)


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Hand ``data`` to ``protocol`` as if the socket had just delivered it."""
    if isinstance(protocol, asyncio.Protocol):
        protocol.data_received(data)
        return
    buffered = cast(asyncio.BufferedProtocol, protocol)  # asyncio's and uvloop's TLS layers
    view = memoryview(data)
    while view:
        buffer = memoryview(buffered.get_buffer(len(view)))
        n = min(len(buffer), len(view))
        buffer[:n] = view[:n]
        buffered.buffer_updated(n)
        view = view[n:]


class Connection(asyncio.Protocol):
    """One client connection: parses requests, queues them, answers them in order."""

    __slots__ = (
        "_accepting",
        "_body_parts",
        "_body_size",
        "_busy",
        "_chunked",
        "_chunks",
        "_client",
        "_connection_keep_alive",
        "_content_length",
        "_dead",
        "_deadline",
        "_deadline_phase",
        "_draining",
        "_expect",
        "_final",
        "_framing",
        "_handshaking",
        "_hdr_overflow",
        "_hdr_span",
        "_headers",
        "_hosts",
        "_keep_alive",
        "_limits",
        "_lingering",
        "_list_method",
        "_loop",
        "_lost",
        "_method",
        "_n_headers",
        "_parser",
        "_path",
        "_phase",
        "_proxy",
        "_query",
        "_queue",
        "_raw_path",
        "_read_paused",
        "_read_size",
        "_refusal",
        "_secure",
        "_send_continue",
        "_seq",
        "_server",
        "_stopped",
        "_subject",
        "_task",
        "_te_values",
        "_timer",
        "_timer_when",
        "_transport",
        "_url",
        "_waiter",
        "_watched_seen",
        "_writable",
        "_write_paused",
    )

    def __init__(self, server: HttpServer, loop: asyncio.AbstractEventLoop) -> None:
        self._server = server
        self._loop = loop
        self._limits = server._limits
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._client: str | None = None
        self._secure = server._tls is not None
        # The verified client certificate's common name, once the handshake is done.
        self._subject: str | None = None
        self._handshaking = False
        # The PROXY v2 header read so far, while one is awaited; else None.
        self._proxy: bytes | None = None
        # (request, keep-alive flag, refused for size): parsed, waiting for the worker.
        self._queue: deque[tuple[Request, int, bool]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._busy = False  # the worker is answering, not parked on _waiter
        self._accepting = True  # a further request may still be answered
        self._dead = False  # the parser takes no more input
        self._stopped = False  # ... because we stopped it, not because the input was bad
        self._draining = False
        self._lingering = False
        self._lost = False
        self._final: bytes | None = None  # an error answer to send after the queue, then close
        self._refusal: tuple[int, str] | None = None  # what _final says, for the app's record
        self._read_paused = False
        self._write_paused = False
        self._send_continue = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = _INF
        self._deadline = _INF
        self._deadline_phase = _IDLE
        self._phase = _IDLE
        self._seq = 0
        self._read_size = 0
        # The request being parsed.
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._n_headers = 0
        self._hdr_span = 0
        self._hdr_overflow = 0
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._framing = 0
        self._chunks = 0
        self._watched_seen = False
        self._content_length: bytes | None = None
        self._chunked = False
        self._te_values = 0
        self._hosts = 0
        self._expect = False
        self._connection_keep_alive = False
        self._method = "GET"
        # The request began LIST (Vault's), fed to httptools as GET.
        self._list_method = False
        self._path = "/"
        self._raw_path = b"/"
        self._query = b""
        self._keep_alive = _KEEP_ALIVE

    # -- asyncio.Protocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._client = client_address(transport.get_extra_info("peername"))
        server = self._server
        if len(server._connections) >= self._limits.max_connections and not server._evict():
            self._lost = True
            self._transport.close()  # every slot is answering a request: like a full backlog
            return
        # Counted from accept: over TLS the handshake is ours too (start_tls,
        # not the listener's ssl=, whose handshakes no protocol sees).
        server._connections.add(self)
        if server._shutting_down:
            self._close()
            return
        if server._proxy_from and trusted(self._client, server._proxy_from):
            # A balancer that passes TLS through: its header comes first.
            self._proxy = b""
            self._set_deadline(self._loop.time() + self._limits.header_timeout)
            return
        if self._secure:
            self._start_tls(self._transport)
            return
        self._set_deadline(self._loop.time() + self._limits.keep_alive_timeout)

    def _proxy_received(self, data: bytes) -> None:
        buffered = cast(bytes, self._proxy) + data
        try:
            header = proxy.parse(buffered)
        except proxy.ProxyHeaderError:
            self._proxy = None
            self._fail(400, b"invalid proxy protocol header")
            return
        if header is None:
            self._proxy = buffered  # at most proxy.MAX_HEADER bytes: parse says so
            return
        self._proxy = None
        if header.source is not None:
            self._client = header.source
        rest = buffered[header.size :]
        transport = self._transport
        if transport is None:
            return
        if self._secure:
            self._start_tls(transport, rest)
            return
        self._set_deadline(self._loop.time() + self._limits.keep_alive_timeout)
        if rest:
            self.data_received(rest)

    def _start_tls(self, plain: asyncio.Transport, early: bytes = b"") -> None:
        tls = self._server._tls
        assert tls is not None
        self._handshaking = True
        self._set_deadline(self._loop.time() + self._limits.header_timeout)
        steps = self._loop.start_tls(
            plain,
            self,
            tls,
            server_side=True,
            ssl_handshake_timeout=self._limits.header_timeout,
            ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT,
        ).__await__()
        # Its first step hands the socket to the TLS layer now, inside
        # connection_made: uvloop reads right after connection_made whatever
        # we pause, and a ClientHello read into this protocol would be lost.
        try:
            first = steps.send(None)
            if early:
                # The start of the ClientHello came with the PROXY header:
                # the TLS layer (now the socket's protocol) must read it first.
                _feed(plain.get_protocol(), early)
        except StopIteration:  # pragma: no cover - start_tls always waits for the handshake
            plain.abort()
            return
        except Exception:
            plain.abort()
            self.connection_lost(None)
            return
        server = self._server
        task = self._loop.create_task(self._handshake(_Resumed(steps, first)))
        server._tasks.add(task)
        task.add_done_callback(server._task_done)

    async def _handshake(self, started: _Resumed) -> None:
        try:
            transport = await started
        except (OSError, ConnectionError, TimeoutError, asyncio.CancelledError):
            # A plaintext client, a failed or slow handshake, an eviction: dropped quietly.
            self.connection_lost(None)
            return
        self._handshaking = False
        if self._lost or transport is None or transport.is_closing():
            # Closed during the handshake (an eviction, shutdown): the TLS
            # layer may report that as a handshake that finished.
            if transport is not None:
                transport.abort()
            self.connection_lost(None)
            return
        self._transport = transport
        self._subject = peer_subject(transport)
        self._set_deadline(self._loop.time() + self._limits.keep_alive_timeout)

    def evictable(self) -> bool:
        """Whether closing this connection loses no request: it is idle between
        requests, still in its TLS handshake or headers, or lingering after an
        error answer. A request being received or answered is never dropped."""
        return (
            self._handshaking
            or self._lingering
            or (self._phase != _BODY and not self._busy and not self._queue and self._final is None)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost and self._transport is None:
            return  # already gone (a failed handshake may tell us twice)
        self._lost = True
        self._handshaking = False
        self._dead = True
        self._accepting = False
        self._transport = None
        self._queue.clear()
        self._final = None
        self._refusal = None
        # The parser holds this protocol (its callbacks) and this protocol the
        # parser: a cycle only the cyclic collector would free, keeping the
        # last request's headers and body (maybe plaintext, up to max_body)
        # alive long after the close. Break it, and drop the request being
        # parsed, so a closed connection is freed by reference counting.
        self._parser = _DEAD_PARSER
        self._drop_partial()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Let a parked worker exit; one running a handler sees _lost when it returns.
        self._wake()
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)
        server = self._server
        server._connections.discard(self)
        server._maybe_done()

    def _drop_partial(self) -> None:
        self._url = b""
        self._headers = []
        self._body_parts = []
        self._content_length = None

    def pause_writing(self) -> None:
        self._write_paused = True
        # A peer that does not read its answers is a slow client too.
        self._set_deadline(self._loop.time() + self._limits.body_timeout)

    def resume_writing(self) -> None:
        self._write_paused = False
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._dead:
            return  # closing, or draining the client's input after an error answer
        if self._proxy is not None:
            self._proxy_received(data)
            return
        try:
            phase = self._phase
            if phase == _IDLE and data[:5] == b"LIST ":
                # Vault's LIST method, which httptools refuses (it knows the
                # WebDAV methods, not Vault's): parsed as GET and named LIST
                # again at the request head. Only a request that starts a
                # read: a LIST pipelined behind another in one read is refused.
                data = b"GET" + data[4:]
                self._list_method = True
            seq = self._seq
            size = len(data)
            self._read_size = size
            if phase == _HEADERS:
                self._hdr_span += size
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                # The upgrade request itself was parsed and queued; we speak nothing
                # else, so it is the last request on this connection.
                self._dead = True
                self._accepting = False
            except httptools.HttpParserError as exc:
                self._dead = True
                self._accepting = False
                if not self._stopped:
                    if isinstance(exc, httptools.HttpParserCallbackError):
                        # One of our callbacks failed on this input: a bug of ours.
                        cause = type(exc.__context__).__name__
                        _log.error("http parser callback failed: %s", cause)
                    self._final = self._error(400, b"malformed request")
            if self._phase and not self._dead:
                self._partial(phase, seq, size)
            queue = self._queue
            if queue or self._final is not None:
                if not self._busy:
                    self._start_worker()
                queued = len(queue)
                server = self._server
                server._queued_high_water = max(server._queued_high_water, queued)
                if (
                    queued > self._limits.max_pipelined
                    or _queued_bytes(queue) > self._limits.max_queued_bytes
                ):
                    self._pause_reading()
            if self._dead:
                self._pause_reading()  # don't read what will be thrown away, a giant body say
        except Exception as exc:  # a bug of ours: never let it out of the protocol
            _log.error("http connection failed: %s", type(exc).__name__)
            self._abort()

    def eof_received(self) -> bool | None:
        # The client half-closed: answer what it sent completely, then close.
        self._accepting = False
        self._send_continue = False
        if self._phase != _IDLE:
            self._phase = _IDLE
            self._dead = True
        if not self._busy and not self._queue and self._final is None:
            self._close()
        # Keep the transport open to write the answers. Over TLS asyncio closes
        # it regardless (and warns if asked not to): no half-close there.
        return None if self._secure else True

    # -- httptools callbacks ---------------------------------------------

    def on_message_begin(self) -> None:
        if not self._accepting:
            # Input after the last request we will answer: ignore it.
            self._stopped = True
            raise _Stop
        self._phase = _HEADERS
        self._seq += 1
        self._deadline_phase = _IDLE
        # Until the headers end, this read is all we know of their size.
        self._hdr_span = self._read_size
        self._hdr_overflow = 0
        self._url = b""
        self._headers = []
        self._body_parts = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self._headers.append((name, value))
        if name in _WATCHED_HEADERS:
            self._watched_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        limits = self._limits
        headers = self._headers
        self._n_headers = len(headers)
        if self._n_headers > limits.max_headers:
            self._reject(431, b"too many request headers")
        if self._hdr_span > limits.max_header_bytes:
            # More bytes than the limit arrived with the headers: count them exactly.
            self._check_header_size()
        parser = self._parser
        method = parser.get_method()
        self._method = _METHODS.get(method) or method.decode("ascii", "replace")
        if self._list_method:
            self._method = "LIST"
            self._list_method = False
        self._keep_alive = _KEEP_ALIVE if parser.should_keep_alive() else _CLOSE_AFTER
        url = self._url
        if url == b"/":  # every KMS call
            self._path = "/"
            self._raw_path = url
            self._query = b""
        else:
            self._parse_target(url)
        if self._watched_seen:
            self._check_watched()
        else:
            self._check_bare()

    def on_body(self, body: bytes) -> None:
        size = self._body_size + len(body)
        if size > self._limits.max_body:
            self._refuse()
        self._body_size = size
        self._body_parts.append(body)

    def on_chunk_header(self) -> None:
        self._chunks += 1

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._send_continue = False
        headers = self._headers
        if len(headers) != self._n_headers:
            headers = self._strip_trailers()
        parts = self._body_parts
        self._queue.append(
            (
                new_request(
                    self._method,
                    self._path,
                    self._raw_path,
                    self._query,
                    tuple(headers),
                    b"".join(parts) if parts else b"",
                    self._client,
                    self._secure,
                    self._subject,
                ),
                self._keep_alive,
                False,
            )
        )
        # The queued Request owns the body from here: keep no second reference
        # (clearing, not replacing, the list: no allocation per request).
        parts.clear()
        if not self._keep_alive or self._draining:
            self._accepting = False

    # -- parsing helpers -------------------------------------------------

    def _watched_header(self, name: bytes, value: bytes) -> None:
        if self._phase == _BODY:
            return  # a trailer: too late to frame anything
        self._watched_seen = True
        if name == b"host":
            self._hosts += 1
        elif name == b"content-length":
            self._content_length = value
        elif name == b"transfer-encoding":
            self._chunked = True
            # Only "chunked" alone is a framing both we and every proxy agree
            # on; "identity, chunked" or a second header is how smuggling starts.
            self._te_values += 1
            if value.strip().lower() != b"chunked":
                self._te_values += 1
        elif name == b"expect":
            self._expect = value.lower() == b"100-continue"
        else:
            # Sticky across repeated headers, as llhttp's flag is: the version
            # shortcut in _check_watched relies on never missing a keep-alive.
            self._connection_keep_alive |= b"keep-alive" in value.lower()

    def _check_watched(self) -> None:
        length = self._content_length
        chunked = self._chunked
        expect = self._expect
        keep_alive = self._connection_keep_alive
        hosts = self._hosts
        te_values = self._te_values
        self._watched_seen = self._chunked = self._expect = self._connection_keep_alive = False
        self._content_length = None
        self._chunks = self._hosts = self._te_values = 0
        # llhttp accepts 0.9, 1.0, 1.1 and 2.0, and keeps alive unasked only
        # for 1.1: the common case is known without the 0.7 us call.
        unasked = self._keep_alive and not keep_alive
        version = "1.1" if unasked else self._parser.get_http_version()
        if version not in {"1.1", "1.0"}:
            self._reject(400, b"unsupported HTTP version")
        if hosts != 1 and (hosts or version == "1.1"):
            # RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in 1.0;
            # a proxy and this server could otherwise disagree on the target.
            self._reject(400, b"missing or repeated host header")
        if te_values > 1:
            self._reject(400, b"unsupported transfer-encoding")
        if length is not None:
            if chunked:
                # Two framings for one body is how requests get smuggled
                # (httptools refuses it too; this does not depend on that).
                self._reject(400, b"both content-length and transfer-encoding")
            if not length.isdigit():
                self._reject(400, b"invalid content-length")
            if int(length) > self._limits.max_body:
                self._refuse()  # before reading any of the body
        if expect and version == "1.1":
            # Sent once the earlier answers on this connection are out, and
            # before authentication: SigV4 signs the body's hash, so nothing
            # can be verified without it, and withholding 100 would protect
            # nothing (a client may send its body without waiting for it;
            # the body limit is what bounds a stranger either way).
            self._send_continue = True
        if keep_alive and self._keep_alive and version == "1.0":
            self._keep_alive = _KEEP_ALIVE_SAY

    def _check_bare(self) -> None:
        """A request with none of the watched headers, so no Host: only
        HTTP/1.0 may omit it."""
        if self._parser.get_http_version() != "1.0":
            self._reject(400, b"missing or repeated host header")

    def _check_header_size(self) -> None:
        size = len(self._url) + sum([len(n) + len(v) + 4 for n, v in self._headers])
        if size > self._limits.max_header_bytes:
            self._reject(431, b"request line and headers too large")

    def _strip_trailers(self) -> list[tuple[bytes, bytes]]:
        # Trailers are counted against the header limits, then dropped: nothing
        # below the edge may depend on fields that arrive after the body.
        if len(self._headers) > self._limits.max_headers:
            self._reject(431, b"too many request headers")
        self._check_header_size()
        return self._headers[: self._n_headers]

    def _parse_target(self, url: bytes) -> None:
        if url[:1] == b"/":
            q = url.find(b"?")
            if q < 0:
                raw_path, query = url, b""
            else:
                raw_path, query = url[:q], url[q + 1 :]
        elif url == b"*":
            raw_path, query = url, b""
        else:
            # Absolute-form is for requests to proxies; behind one, a target
            # naming another host than Host would be read two ways.
            self._reject(400, b"invalid request target")
        if raw_path.isascii() and b"%" not in raw_path:
            self._path = raw_path.decode("ascii")
        else:
            self._path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        self._raw_path = raw_path
        self._query = query

    def _reject(self, status: int, message: bytes) -> NoReturn:
        self._final = self._error(status, message)
        self._accepting = False
        self._stopped = True
        raise _Stop

    def _refuse(self) -> NoReturn:
        """Queue an oversized request, without its body, for the app's refusal."""
        self._stopped = True
        self._accepting = False
        request = Request(
            self._method,
            self._path,
            self._raw_path,
            self._query,
            tuple(self._headers[: self._n_headers]),
            b"",
            self._client,
            self._secure,
            self._subject,
        )
        self._queue.append((request, _CLOSE_AFTER, True))
        raise TooLarge

    def _partial(self, phase_before: int, seq_before: int, size: int) -> None:
        """Bookkeeping after a read that left a request incomplete."""
        phase = self._phase
        limits = self._limits
        if phase != self._deadline_phase:
            self._deadline_phase = phase
            timeout = limits.header_timeout if phase == _HEADERS else limits.body_timeout
            self._set_deadline(self._loop.time() + timeout)
        continuing = phase_before == phase and seq_before == self._seq
        if phase == _HEADERS:
            if continuing:
                # The whole read was header bytes that httptools may still be
                # buffering (a header that never ends): they count too.
                self._hdr_overflow += size
                if self._hdr_overflow > limits.max_header_bytes:
                    self._fail(431, b"request line and headers too large")
            return
        if continuing:
            self._framing += size
            allowance = limits.max_header_bytes + _CHUNK_FRAMING * (self._chunks + 1)
            if self._framing - self._body_size > allowance:
                self._fail(431, b"chunk extensions or trailers too large")
                return
        else:
            self._framing = self._body_size  # the body began in this read: count from here
        if self._send_continue and not self._busy and not self._queue:
            self._send_continue = False
            self._write(_CONTINUE)

    def _fail(self, status: int, message: bytes) -> None:
        """Drop the request being received and answer ``status`` once the earlier ones are out."""
        self._final = self._error(status, message)
        self._dead = True
        self._accepting = False
        self._send_continue = False
        if not self._busy:
            self._start_worker()

    # -- answering -------------------------------------------------------

    def _start_worker(self) -> None:
        self._busy = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():  # else cancelled by shutdown, the worker is leaving
                waiter.set_result(None)
        elif self._task is None:
            server = self._server
            task = self._loop.create_task(self._work())
            self._task = task
            server._tasks.add(task)
            task.add_done_callback(server._task_done)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _work(self) -> None:
        """Answer queued requests one at a time, in order, for the connection's life.

        One long-lived task per connection, parked on a future between
        requests, costs less per request than a task per request (measured:
        see the module docstring).
        """
        server = self._server
        handler = server._handler
        refuse = server._refuse
        queue = self._queue
        resume_at = self._limits.max_pipelined // 2
        try:
            while not self._lost:
                while queue:
                    request, keep_alive, refused = queue.popleft()
                    if (
                        self._read_paused
                        and not self._dead
                        and len(queue) <= resume_at
                        and _queued_bytes(queue) <= self._limits.max_queued_bytes // 2
                    ):
                        self._resume_reading()
                        if self._phase != _IDLE:
                            self._restart_phase_clock()
                    response: Response | None
                    try:
                        response = await (refuse(request) if refused else handler(request))
                    except Exception as exc:
                        _log.error("handler raised %s", type(exc).__name__)
                        response = None
                    if self._lost:
                        return
                    last = not keep_alive or (
                        not self._accepting and not queue and self._final is None
                    )
                    head = request.method == "HEAD"
                    data = None
                    if response is not None:
                        try:
                            data = self._encode(response, head, keep_alive, last)
                        except Exception as exc:
                            _log.error("handler returned a bad response: %s", type(exc).__name__)
                    self._write(
                        self._internal_error(head, keep_alive, last) if data is None else data
                    )
                    if last:
                        if refused:
                            self._linger()
                        else:
                            self._close()
                        return
                    if self._write_paused:
                        await self._wait_writable()
                        if self._lost:
                            return
                final = self._final
                if final is not None:
                    self._final = None
                    refusal, self._refusal = self._refusal, None
                    on_refused = server._on_refused
                    if refusal is not None and on_refused is not None:
                        try:
                            await on_refused(self._client, *refusal)
                        except Exception as exc:
                            _log.error("recording a refusal failed: %s", type(exc).__name__)
                        if self._lost:
                            return
                    self._write(final)
                    self._linger()
                    return
                if not self._accepting and self._phase == _IDLE:
                    self._close()
                    return
                if self._send_continue:
                    self._send_continue = False
                    self._write(_CONTINUE)
                # Parked for as long as the client stays idle: hold nothing of
                # the last request (its body may be plaintext) meanwhile.
                request = response = data = None  # type: ignore[assignment]
                self._busy = False
                if self._phase == _IDLE:
                    self._set_deadline(self._loop.time() + self._limits.keep_alive_timeout)
                waiter = self._loop.create_future()
                self._waiter = waiter
                await waiter
        except asyncio.CancelledError:
            self._abort()
            raise
        except Exception as exc:  # a bug of ours: lose the connection, not the server
            _log.error("http connection failed: %s", type(exc).__name__)
            self._abort()
        finally:
            self._busy = False
            self._task = None
            self._waiter = None

    async def _wait_writable(self) -> None:
        writable = self._loop.create_future()
        self._writable = writable
        try:
            await writable
        finally:
            self._writable = None

    def _encode(self, response: Response, head: bool, keep_alive: int, close: bool) -> bytes:
        status = response.status
        body = response.body
        headers = response.headers
        line = _STATUS_LINES.get(status) or _status_line(status)
        if status in _NO_BODY:
            body = b""
            parts = [line, self._server._date]
            lines = 2
        else:
            parts = [line, b"content-length: %d\r\n" % len(body), self._server._date]
            lines = 3
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if close:
            parts.append(_CLOSE)
            lines += 1
        elif keep_alive == _KEEP_ALIVE_SAY:
            parts.append(_KEEP)
            lines += 1
        parts.append(b"\r\n")
        block = b"".join(parts)
        # A CR or LF inside a name or value would let it forge headers or a
        # second response: cheaper to count line ends once than to scan each field.
        lines += len(headers) + 1
        if block.count(b"\n") != lines or block.count(b"\r") != lines:
            raise ValueError("CR or LF in a response header")
        return block if head else block + body

    def _internal_error(self, head: bool, keep_alive: int, close: bool) -> bytes:
        return self._encode(_INTERNAL_ERROR, head, keep_alive, close)

    def _error(self, status: int, message: bytes) -> bytes:
        self._refusal = (status, message.decode("ascii"))
        body = b'{"message": "' + message + b'"}'
        return b"".join(
            (
                _STATUS_LINES[status],
                b"content-length: %d\r\n" % len(body),
                self._server._date,
                _JSON_ERROR,
                _CLOSE,
                b"\r\n",
                body,
            )
        )

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    # -- flow control, timers, closing -----------------------------------

    def _pause_reading(self) -> None:
        transport = self._transport
        if not self._read_paused and transport is not None and not transport.is_closing():
            self._read_paused = True
            self._server._read_pauses += 1
            transport.pause_reading()

    def _resume_reading(self) -> None:
        self._read_paused = False
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _set_deadline(self, when: float) -> None:
        """Arm the connection's one timer for the state just entered.

        ``_deadline`` is the deadline of the latest timed state (idle, headers,
        body, write stall, linger); the timer may be early, never late: it
        fires, finds a later deadline and sleeps again, so pushing a deadline
        back costs nothing and no timer is made or cancelled per request.
        """
        self._deadline = when
        if when < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(when, self._on_timer)
            self._timer_when = when

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = _INF
        if self._lost:
            return
        deadline = self._deadline
        if deadline == _INF:
            return
        if deadline > self._loop.time():
            self._set_deadline(deadline)
            return
        self._deadline = _INF
        try:
            self._timed_out()
        except Exception as exc:  # a bug of ours: never let it out of a callback
            _log.error("http connection failed: %s", type(exc).__name__)
            self._abort()

    def _timed_out(self) -> None:
        # The deadline may belong to a state already left; act on the state now.
        if self._write_paused or self._lingering:
            self._abort()
        elif self._phase != _IDLE and not self._dead:
            if self._read_paused:
                # We stopped reading (too many queued), not the client: its clock
                # restarts when the queue drains.
                self._restart_phase_clock()
                return
            # A slow client: what it has not finished sending is dropped.
            self._fail(408, b"request timed out")
        elif not self._busy and not self._queue and self._final is None:
            self._close()  # idle keep-alive: close silently
        # else: busy answering, which is our time, not the client's.

    def _restart_phase_clock(self) -> None:
        limits = self._limits
        timeout = limits.header_timeout if self._phase == _HEADERS else limits.body_timeout
        self._set_deadline(self._loop.time() + timeout)

    def _linger(self) -> None:
        """Half-close after an error answer and drain the client's input briefly."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._dead = True
        self._accepting = False
        self._lingering = True
        if transport.can_write_eof():
            transport.write_eof()
        if self._read_paused:
            self._resume_reading()
        self._set_deadline(self._loop.time() + _LINGER)

    def _close(self) -> None:
        self._dead = True
        self._accepting = False
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _abort(self) -> None:
        self._dead = True
        self._accepting = False
        transport = self._transport
        if transport is not None:
            transport.abort()

    def begin_shutdown(self) -> None:
        """Close at once if idle; otherwise finish what was received, then close."""
        self._draining = True
        if self._lingering:
            self._abort()
            return
        if self._phase == _HEADERS:
            # Headers not yet in: nothing has started, the client may retry elsewhere.
            self._dead = True
            self._phase = _IDLE
        if self._phase == _IDLE:
            # A request whose body is arriving is in flight and gets read; nothing else.
            self._accepting = False
            self._pause_reading()
            if not self._busy and not self._queue and self._final is None:
                self._close()
