"""keycask's own HTTP/1.1 server: one protocol class over httptools.

uvicorn's ASGI machinery costs several times more per request than the KMS
work behind it, so the edge speaks HTTP itself. It keeps what uvicorn gave us:
keep-alive, pipelining (responses strictly in request order), chunked request
bodies, ``Expect: 100-continue``, body and header limits, idle and slow-client
timeouts and graceful shutdown. It is the part of a KMS that strangers talk to
first, so no input may crash it, hang it or make it buffer without bound:

* a connection holds at most ``max_pipelined`` parsed requests (plus what one
  socket read can carry) before it stops reading, and stops running handlers
  while the peer does not read the answers;
* header bytes are counted as they arrive, so a header that never ends is
  cut off at ``max_header_bytes`` plus one read;
* every phase of a connection has a deadline, checked by one lazily
  rescheduled timer per connection (no timer churn per request);
* after an error answer the server half-closes and briefly drains what the
  client is still sending, so the answer reaches it instead of a reset.
"""

from __future__ import annotations

import asyncio
import http
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import NoReturn, cast
from urllib.parse import unquote_to_bytes

import httptools

__all__ = [
    "Handler",
    "HttpServer",
    "Limits",
    "Refuse",
    "Request",
    "Response",
    "ServerStats",
    "TooLarge",
]

_log = logging.getLogger("keycask.http")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    client: str | None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


class TooLarge(Exception):
    """Raised inside the parser callbacks to stop reading an oversized body."""


Handler = Callable[[Request], Awaitable[Response]]
Refuse = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    keep_alive_timeout: float = 30.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_pipelined: int = 64


@dataclass(frozen=True, slots=True)
class ServerStats:
    """A snapshot for tests and diagnostics."""

    connections: int
    queued: int
    queued_high_water: int
    read_pauses: int


_DEFAULT_LIMITS = Limits()

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
_PER_BURST = False

_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in http.HTTPStatus
}
_METHODS: dict[bytes, str] = {
    m: m.decode("ascii") for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS")
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"
_JSON_ERROR = b"content-type: application/json\r\n"
_AMZ_JSON = b"content-type: application/x-amz-json-1.1\r\n"
_INTERNAL = b'{"__type": "KMSInternalException", "message": "internal error"}'


class _Stop(Exception):
    """Raised inside the parser callbacks once the connection takes no more input."""


def _http_date() -> bytes:
    return b"date: " + formatdate(usegmt=True).encode("ascii") + b"\r\n"


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is not None:
        return line
    if not 200 <= status <= 599:
        raise ValueError("status out of range")
    return b"HTTP/1.1 %d \r\n" % status


def _check_header(name: bytes, value: bytes) -> None:
    # The app builds these, but a CR or LF would let a value forge headers.
    if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value or b":" in name:
        raise ValueError("invalid response header")


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_accepting",
        "_body_parts",
        "_body_size",
        "_busy",
        "_chunks",
        "_client",
        "_content_length",
        "_dead",
        "_deadline",
        "_deadline_phase",
        "_draining",
        "_expect",
        "_final",
        "_framing",
        "_hdr_bytes",
        "_hdr_count",
        "_hdr_overflow",
        "_headers",
        "_keep_alive",
        "_limits",
        "_lingering",
        "_loop",
        "_lost",
        "_method",
        "_parser",
        "_path",
        "_phase",
        "_query",
        "_queue",
        "_raw_path",
        "_read_paused",
        "_send_continue",
        "_seq",
        "_server",
        "_stopped",
        "_task",
        "_timer",
        "_timer_when",
        "_transfer_encoding",
        "_transport",
        "_url",
        "_waiter",
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
        self._queue: deque[tuple[Request, bool, bool]] = deque()
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._accepting = True
        self._dead = False
        self._draining = False
        self._lost = False
        self._stopped = False
        self._lingering = False
        self._final: bytes | None = None
        self._read_paused = False
        self._write_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._send_continue = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = _INF
        self._deadline = _INF
        self._deadline_phase = _IDLE
        self._phase = _IDLE
        self._seq = 0
        self._reset_message()
        self._method = "GET"
        self._path = "/"
        self._raw_path = b"/"
        self._query = b""
        self._keep_alive = True

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._hdr_bytes = 0
        self._hdr_count = 0
        self._hdr_overflow = 0
        self._content_length: bytes | None = None
        self._transfer_encoding = False
        self._expect = False
        self._chunks = 0
        self._framing = 0

    # -- asyncio.Protocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._client = str(peer[0])
        self._server._connections.add(self)
        if self._server._shutting_down:
            transport.close()
            return
        self._set_deadline(self._loop.time() + self._limits.keep_alive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._dead = True
        self._transport = None
        self._queue.clear()
        self._final = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)
        server = self._server
        server._connections.discard(self)
        server._maybe_done()

    def pause_writing(self) -> None:
        self._write_paused = True
        # A peer that stops reading answers is a slow client too.
        self._set_deadline(self._loop.time() + self._limits.body_timeout)

    def resume_writing(self) -> None:
        self._write_paused = False
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._dead:
            # Stopped parsing: either closing, or lingering after an error answer.
            return
        phase = self._phase
        seq = self._seq
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The upgraded request was parsed; we speak nothing else, so it is the last one.
            self._dead = True
            self._accepting = False
        except httptools.HttpParserError:
            self._dead = True
            self._accepting = False
            if not self._stopped:
                # Not one of our own stops (those set their answer first): bad HTTP.
                self._final = self._error(400, b"malformed request")
        except Exception as exc:  # a bug of ours; never let it out of a callback
            _log.error("http connection failed: %s", type(exc).__name__)
            self._abort()
            return
        if self._phase and not self._dead:
            self._partial(phase, seq, len(data))
        if self._queue or self._final is not None:
            if (self._phase == _IDLE or self._dead) and not self._write_paused:
                self._deadline = _INF  # busy answering: our own time, not the peer's
            if not self._busy:
                self._start_worker()
            if len(self._queue) > self._limits.max_pipelined:
                self._pause_reading()
        if self._dead and not self._read_paused:
            # Don't keep reading what we will throw away (a giant body, say).
            self._pause_reading()

    def eof_received(self) -> bool | None:
        # The client half-closed: answer what it sent completely, then close.
        self._accepting = False
        self._send_continue = False
        if self._phase != _IDLE:
            self._phase = _IDLE
            self._dead = True
        if not self._busy and not self._queue and self._final is None:
            self._close()
        return True

    # -- httptools callbacks ---------------------------------------------

    def on_message_begin(self) -> None:
        if not self._accepting:
            # Input after the last request we will answer: ignore it.
            self._stopped = True
            raise _Stop
        self._phase = _HEADERS
        self._seq += 1
        self._deadline_phase = _IDLE
        self._reset_message()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._hdr_bytes += len(url)
        if self._hdr_bytes > self._limits.max_header_bytes:
            self._reject(431, b"request line and headers too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._hdr_bytes += len(name) + len(value) + 4
        self._hdr_count += 1
        limits = self._limits
        if self._hdr_bytes > limits.max_header_bytes or self._hdr_count > limits.max_headers:
            self._reject(431, b"request headers too large")
        if self._phase == _BODY:
            return  # trailers of a chunked body: counted, not kept
        name = name.lower()
        self._headers.append((name, value))
        if name == b"content-length":
            self._content_length = value
        elif name == b"transfer-encoding":
            self._transfer_encoding = True
        elif name == b"expect":
            self._expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        parser = self._parser
        method = parser.get_method()
        self._method = _METHODS.get(method) or method.decode("ascii", "replace")
        self._keep_alive = parser.should_keep_alive()
        self._parse_target()
        length = self._content_length
        if length is not None:
            if self._transfer_encoding:
                # Two framings for one body is how requests get smuggled.
                self._reject(400, b"both content-length and transfer-encoding")
            if not length.isdigit():
                self._reject(400, b"invalid content-length")
            if int(length) > self._limits.max_body:
                self._refuse()
        if self._expect and parser.get_http_version() == "1.1":
            self._send_continue = True

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
        parts = self._body_parts
        request = Request(
            self._method,
            self._path,
            self._raw_path,
            self._query,
            tuple(self._headers),
            b"".join(parts) if parts else b"",
            self._client,
        )
        queue = self._queue
        queue.append((request, self._keep_alive, False))
        if not self._keep_alive or self._draining:
            self._accepting = False
        server = self._server
        server._queued_high_water = max(server._queued_high_water, len(queue))

    # -- parsing helpers -------------------------------------------------

    def _parse_target(self) -> None:
        url = self._url
        if url[:1] == b"/":
            q = url.find(b"?")
            if q < 0:
                raw_path, query = url, b""
            else:
                raw_path, query = url[:q], url[q + 1 :]
        elif url == b"*":
            raw_path, query = url, b""
        else:
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                self._reject(400, b"invalid request target")
            raw_path = parsed.path or b"/"
            query = parsed.query or b""
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
        """Hand an oversized request, without its body, to the app's refusal."""
        self._stopped = True
        self._accepting = False
        request = Request(
            self._method,
            self._path,
            self._raw_path,
            self._query,
            tuple(self._headers),
            b"",
            self._client,
        )
        self._queue.append((request, False, True))
        raise TooLarge

    def _partial(self, phase_before: int, seq_before: int, size: int) -> None:
        """Bookkeeping after a read that left a request incomplete."""
        phase = self._phase
        if phase != self._deadline_phase:
            timeout = (
                self._limits.header_timeout if phase == _HEADERS else self._limits.body_timeout
            )
            self._deadline_phase = phase
            self._set_deadline(self._loop.time() + timeout)
        if phase_before == phase and seq_before == self._seq:
            # The whole read belonged to this request's headers (or body), so a
            # header httptools is still buffering counts against the limits too.
            limits = self._limits
            if phase == _HEADERS:
                self._hdr_overflow += size
                if self._hdr_overflow > limits.max_header_bytes:
                    self._final = self._error(431, b"request line and headers too large")
                    self._die()
                    return
            else:
                self._framing += size
                allowance = limits.max_header_bytes + _CHUNK_FRAMING * (self._chunks + 1)
                if self._framing - self._body_size > allowance:
                    self._final = self._error(431, b"chunk extensions or trailers too large")
                    self._die()
                    return
        elif phase == _BODY:
            # The body started in this read; count from here on.
            self._framing = self._body_size
        if self._send_continue and not self._busy and not self._queue:
            self._send_continue = False
            self._write(_CONTINUE)

    def _die(self) -> None:
        self._dead = True
        self._accepting = False
        self._send_continue = False
        if not self._write_paused:
            self._deadline = _INF
        if not self._busy:
            self._start_worker()

    # -- answering -------------------------------------------------------

    def _start_worker(self) -> None:
        self._busy = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self._task is None:
            task = self._loop.create_task(self._work())
            self._task = task
            self._server._tasks.add(task)
            task.add_done_callback(self._server._task_done)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _work(self) -> None:
        """Answer queued requests one at a time, in order, for the connection's life."""
        server = self._server
        handler = server._handler
        refuse = server._refuse
        queue = self._queue
        resume_at = self._limits.max_pipelined // 2
        try:
            while not self._lost:
                while queue:
                    request, keep_alive, refused = queue.popleft()
                    if self._read_paused and len(queue) <= resume_at and not self._dead:
                        self._resume_reading()
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
                    data = None
                    if response is not None:
                        try:
                            data = self._encode(response, request.method == "HEAD", last)
                        except Exception as exc:
                            _log.error("handler returned a bad response: %s", type(exc).__name__)
                    self._write(self._encode_internal(last) if data is None else data)
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
                    self._write(final)
                    self._linger()
                    return
                if not self._accepting and self._phase == _IDLE:
                    self._close()
                    return
                if self._send_continue:
                    self._send_continue = False
                    self._write(_CONTINUE)
                self._busy = False
                if self._phase == _IDLE:
                    self._set_deadline(self._loop.time() + self._limits.keep_alive_timeout)
                if _PER_BURST:
                    return
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
        if self._phase == _IDLE:
            self._deadline = _INF  # still busy answering: no deadline of the peer's applies

    def _encode(self, response: Response, head: bool, close: bool) -> bytes:
        status = response.status
        body = response.body
        if status in {204, 304}:
            # These never carry a body, so no framing either.
            parts = [_status_line(status), self._server._date]
            body = b""
        else:
            parts = [
                _status_line(status),
                b"content-length: %d\r\n" % len(body),
                self._server._date,
            ]
        for name, value in response.headers:
            _check_header(name, value)
            parts += (name, b": ", value, b"\r\n")
        if close:
            parts.append(_CLOSE)
        parts.append(b"\r\n")
        if not head:
            parts.append(body)
        return b"".join(parts)

    def _encode_internal(self, close: bool) -> bytes:
        return b"".join(
            (
                _STATUS_LINES[500],
                b"content-length: %d\r\n" % len(_INTERNAL),
                self._server._date,
                _AMZ_JSON,
                _CLOSE if close else b"",
                b"\r\n",
                _INTERNAL,
            )
        )

    def _error(self, status: int, message: bytes) -> bytes:
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
        if transport is not None and not self._read_paused and not transport.is_closing():
            self._read_paused = True
            self._server._read_pauses += 1
            transport.pause_reading()

    def _set_deadline(self, when: float) -> None:
        self._deadline = when
        # Moving a deadline later costs nothing: the timer fires, sees the new
        # deadline and sleeps again. Only an earlier deadline reschedules.
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
        try:
            self._timed_out()
        except Exception as exc:
            _log.error("http connection failed: %s", type(exc).__name__)
            self._abort()

    def _timed_out(self) -> None:
        self._deadline = _INF
        if self._write_paused or self._lingering:
            self._abort()
        elif self._phase != _IDLE and not self._dead:
            # A slow client: whatever it has not finished sending is dropped.
            self._final = self._error(408, b"request timed out")
            self._die()
        elif not self._busy and not self._queue and self._final is None:
            self._close()  # idle keep-alive: close silently

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
            self._read_paused = False
            transport.resume_reading()
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

    def _resume_reading(self) -> None:
        self._read_paused = False
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def begin_shutdown(self) -> None:
        """Close at once if idle; otherwise finish what was received, then close."""
        self._draining = True
        if self._lingering:
            self._abort()
            return
        if self._phase == _HEADERS:
            # Headers not yet in: nothing started, the client may retry elsewhere.
            self._dead = True
            self._phase = _IDLE
        if self._phase == _IDLE:
            # A request whose body is arriving is in flight: read it, the rest is not.
            self._accepting = False
            self._pause_reading()
            if not self._busy and not self._queue and self._final is None:
                self._close()


class HttpServer:
    """Serves ``handler`` over HTTP/1.1; ``refuse_too_large`` answers oversized bodies."""

    def __init__(
        self, handler: Handler, refuse_too_large: Refuse, *, limits: Limits = _DEFAULT_LIMITS
    ) -> None:
        self._handler = handler
        self._refuse = refuse_too_large
        self._limits = limits
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._shutting_down = False
        self._idle: asyncio.Future[None] | None = None
        self._date = _http_date()
        self._date_timer: asyncio.TimerHandle | None = None
        self._queued_high_water = 0
        self._read_pauses = 0

    async def start(
        self,
        host: str,
        port: int,
        *,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
    ) -> None:
        if self._server is not None:
            raise RuntimeError("server already started")
        loop = asyncio.get_running_loop()

        def factory() -> _Connection:
            return _Connection(self, loop)

        if sock is not None:
            self._server = await loop.create_server(factory, sock=sock, backlog=2048)
        else:
            self._server = await loop.create_server(
                factory, host, port, reuse_address=True, reuse_port=reuse_port, backlog=2048
            )
        self._tick_date()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def stats(self) -> ServerStats:
        return ServerStats(
            connections=len(self._connections),
            queued=sum(len(c._queue) for c in self._connections),
            queued_high_water=self._queued_high_water,
            read_pauses=self._read_pauses,
        )

    def _tick_date(self) -> None:
        self._date = _http_date()
        # Land just after the next wall-clock second so the header is never a second stale.
        delay = 1.001 - time.time() % 1.0
        self._date_timer = asyncio.get_running_loop().call_later(delay, self._tick_date)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, close idle connections, let in-flight requests finish.

        Requests already received are answered (the last answer on each
        connection says ``connection: close``) for up to ``grace`` seconds;
        then every remaining connection is aborted and its handler cancelled.
        """
        if self._server is None or self._shutting_down:
            return
        self._shutting_down = True
        loop = asyncio.get_running_loop()
        self._server.close()
        for conn in list(self._connections):
            conn.begin_shutdown()
        if self._connections or self._tasks:
            idle = loop.create_future()
            self._idle = idle
            await asyncio.wait([idle], timeout=grace)
            self._idle = None
        for conn in list(self._connections):
            conn._abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        if self._date_timer is not None:
            self._date_timer.cancel()
            self._date_timer = None
        await self._server.wait_closed()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._maybe_done()

    def _maybe_done(self) -> None:
        idle = self._idle
        if idle is not None and not idle.done() and not self._connections and not self._tasks:
            idle.set_result(None)
