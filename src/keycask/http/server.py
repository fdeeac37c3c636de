"""keycask's own HTTP/1.1 server: the listening socket and its connections.

uvicorn's ASGI machinery cost more per request than the KMS work behind it, so
the edge speaks HTTP itself, over httptools. ``HttpServer`` accepts
connections (at most ``Limits.max_connections``, evicting the idle ones
nearest their deadlines when full), keeps the ``date`` header current and
shuts down gracefully; each connection's parsing, pipelining, limits and
timeouts are ``Connection``'s (``http/connection.py``, where the measurements
behind the design are too).
"""

from __future__ import annotations

import asyncio
import heapq
import socket
import ssl
import time
from dataclasses import dataclass

from keycask.http.connection import Connection, http_date
from keycask.http.messages import Handler, Refuse, Refused
from keycask.http.peer import Network

# Re-exported for the command line, which builds the context it hands HttpServer.
from keycask.http.tls import tls_context

__all__ = ["HttpServer", "Limits", "ServerStats", "tls_context"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    keep_alive_timeout: float = 30.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_pipelined: int = 64
    # Parsed bodies waiting on one connection: with max_body 1 MiB, 64 pipelined
    # requests could otherwise hold 64 MiB per connection.
    max_queued_bytes: int = 2 * 1024 * 1024
    # Connections open at once; more are closed on accept. Together with the
    # two limits above this bounds what strangers can make the server hold.
    max_connections: int = 1024


@dataclass(frozen=True, slots=True)
class ServerStats:
    """A snapshot for tests and diagnostics."""

    connections: int
    workers: int
    queued: int
    queued_high_water: int
    read_pauses: int
    evictions: int = 0


_DEFAULT_LIMITS = Limits()


class HttpServer:
    """Serves ``handler`` over HTTP/1.1; ``refuse_too_large`` answers oversized bodies."""

    def __init__(
        self,
        handler: Handler,
        refuse_too_large: Refuse,
        *,
        limits: Limits = _DEFAULT_LIMITS,
        tls: ssl.SSLContext | None = None,
        on_refused: Refused | None = None,
        proxy_from: tuple[Network, ...] = (),
    ) -> None:
        self._handler = handler
        self._refuse = refuse_too_large
        self._on_refused = on_refused
        # Peers whose connections start with a PROXY v2 header (load balancers).
        self._proxy_from = proxy_from
        self._limits = limits
        # With a context every connection speaks TLS (asyncio does the
        # handshake, bounded by header_timeout) and its requests are secure.
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._shutting_down = False
        self._idle: asyncio.Future[None] | None = None
        self._date = http_date()
        self._date_timer: asyncio.TimerHandle | None = None
        self._queued_high_water = 0
        self._read_pauses = 0
        self._evictions = 0

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

        def factory() -> Connection:
            return Connection(self, loop)

        # With TLS each connection does its own handshake (start_tls, bounded
        # by header_timeout), so it holds a slot from accept. Closing a TLS
        # connection waits for the client's close_notify, which an idle
        # keep-alive client never sends: that wait is bounded too, or shutdown
        # waits its whole grace period for nothing.
        if sock is not None:
            self._server = await loop.create_server(factory, sock=sock, backlog=2048)
        else:
            self._server = await loop.create_server(
                factory,
                host,
                port,
                reuse_address=True,
                reuse_port=reuse_port,
                backlog=2048,
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
            workers=len(self._tasks),
            queued=sum(len(c._queue) for c in self._connections),
            queued_high_water=self._queued_high_water,
            read_pauses=self._read_pauses,
            evictions=self._evictions,
        )

    def _tick_date(self) -> None:
        self._date = http_date()
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

    def _evict(self) -> bool:
        """Make room for a new connection: close the evictable connections
        nearest their deadlines (the oldest idle ones, the slowest handshakes
        or headers). Without it, 1,024 idle connections from one client would
        shut everyone else out until they time out.

        Runs only when every slot is taken, so it costs nothing on the request
        path; it frees a batch (1/32 of the slots) per scan, so a flood of
        connects pays for one scan per batch, not one per accept.
        """
        batch = max(1, self._limits.max_connections // 32)
        candidates = [
            (conn._deadline, id(conn), conn) for conn in self._connections if conn.evictable()
        ]
        if not candidates:
            return False
        for _, _, victim in heapq.nsmallest(batch, candidates):
            self._evictions += 1
            self._connections.discard(victim)
            if victim._lingering:
                victim._abort()
            else:
                victim._close()  # an idle client sees a plain close, as on its idle timeout
        return True

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._maybe_done()

    def _maybe_done(self) -> None:
        idle = self._idle
        if idle is not None and not idle.done() and not self._connections and not self._tasks:
            idle.set_result(None)
