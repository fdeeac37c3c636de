"""A closed-loop HTTP/1.1 load generator for signed KMS requests.

Each connection sends one request, waits for its answer, and sends the next
(keep-alive, no pipelining), cycling through a pool of requests signed with
SigV4 before the run. The signatures stay valid for five minutes, longer than
any run, so the client spends its CPU on the wire, not on HMACs: on a 2-core
machine the load generator shares the cores with the server it measures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httptools
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    # A role session's token (x-amz-security-token), signed with the rest.
    session_token: str | None = None


def sign(endpoint: Endpoint, operation: str, body: bytes) -> bytes:
    """One complete HTTP/1.1 request, signed as botocore signs it."""
    url = f"http://{endpoint.host}:{endpoint.port}/"
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"TrentService.{operation}",
        },
    )
    SigV4Auth(
        Credentials(endpoint.access_key, endpoint.secret_key, endpoint.session_token),
        "kms",
        endpoint.region,
    ).add_auth(request)
    lines = ["POST / HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}"]
    for name, value in request.headers.items():
        if name.lower() != "host":
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    completed: int = 0  # every answer, warm-up included (for CPU per request)
    seconds: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Latency in milliseconds at percentile ``p`` (0-100)."""
        if not self.latencies_ns:
            return float("nan")
        ordered = sorted(self.latencies_ns)
        index = min(len(ordered) - 1, int(len(ordered) * p / 100))
        return ordered[index] / 1e6


class _Connection(asyncio.Protocol):
    def __init__(
        self,
        pool: Sequence[bytes],
        start: int,
        state: _RunState,
        interval: float | None,
        phase: float = 0.0,
    ) -> None:
        self._pool = pool
        self._next = start
        self._state = state
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._sent_at = 0
        self._loop = asyncio.get_running_loop()
        # Open loop: each connection sends on a fixed schedule, and latency is
        # counted from the scheduled time, so a stalled server is not hidden by
        # a client that politely waited (coordinated omission).
        self._interval_ns = None if interval is None else int(interval * 1e9)
        # Connections start spread evenly over one interval (phase in [0, 1)):
        # started together, they would arrive in bursts of all of them at once.
        self._due_ns = time.perf_counter_ns() + int(phase * (self._interval_ns or 0))
        self.closed = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self._state.stopping:
            assert self._transport is not None
            self._transport.close()
            return
        if self._interval_ns is not None:
            now = time.perf_counter_ns()
            if now < self._due_ns:
                self._loop.call_later((self._due_ns - now) / 1e9, self._write)
                return
        self._write()

    def _write(self) -> None:
        request = self._pool[self._next % len(self._pool)]
        self._next += 1
        if self._interval_ns is None:
            self._sent_at = time.perf_counter_ns()
        else:
            self._sent_at = self._due_ns
            self._due_ns += self._interval_ns
        assert self._transport is not None
        self._transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._state.result.errors += 1
            assert self._transport is not None
            self._transport.close()

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        self._state.record(status, time.perf_counter_ns() - self._sent_at)
        if not self._parser.should_keep_alive():
            # The server said Connection: close; the run opens a new one.
            assert self._transport is not None
            self._transport.close()
            return
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _RunState:
    def __init__(self) -> None:
        self.result = Result()
        self.measuring = False
        self.stopping = False

    def record(self, status: int, latency_ns: int) -> None:
        self.result.completed += 1
        if not self.measuring:
            return
        r = self.result
        r.requests += 1
        r.statuses[status] = r.statuses.get(status, 0) + 1
        if status != 200:
            r.errors += 1
        r.latencies_ns.append(latency_ns)


async def run(
    host: str,
    port: int,
    pool: Sequence[bytes],
    *,
    connections: int,
    duration: float,
    warmup: float = 1.0,
    rate: float | None = None,
) -> Result:
    """Closed loop by default; with ``rate`` (requests/s over all connections),
    open loop at that rate."""
    return await run_spread(
        [(host, port, pool)], connections=connections, duration=duration, warmup=warmup, rate=rate
    )


async def run_spread(
    destinations: Sequence[tuple[str, int, Sequence[bytes]]],
    *,
    connections: int,
    duration: float,
    warmup: float = 1.0,
    rate: float | None = None,
) -> Result:
    """``run`` over several servers: connection ``i`` goes to destination
    ``i % len(destinations)`` (round robin) and cycles through that
    destination's own pool (each signed for its own Host)."""
    loop = asyncio.get_running_loop()
    state = _RunState()
    interval = None if rate is None else connections / rate

    async def slot(i: int) -> None:
        host, port, pool = destinations[i % len(destinations)]
        # A server that closes after each answer (HTTP/1.0 style, as moto_server's
        # does) gets a new connection: reconnecting is part of what it costs.
        while not state.stopping:
            try:
                _, proto = await loop.create_connection(
                    lambda: _Connection(pool, i, state, interval, i / connections), host, port
                )
            except OSError:
                state.result.errors += 1
                await asyncio.sleep(0.01)
                continue
            await proto.closed

    slots = [loop.create_task(slot(i)) for i in range(connections)]
    await asyncio.sleep(warmup)
    state.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    state.measuring = False
    state.result.seconds = time.perf_counter() - started
    state.stopping = True
    await asyncio.wait(slots, timeout=10)
    return state.result
