"""``GET /metrics``: the Prometheus text exposition (``keycask/metrics.py``
holds the series).

Who may scrape:

* a loopback peer, without authentication (the address is the client's as
  ``aws:SourceIp`` sees it: behind a balancer that sends PROXY headers, the
  real client's; a reverse proxy on the same host that sends none makes
  every scrape loopback, so do not publish /metrics through one);
* anyone reaching the separate listener of ``--metrics-listen ADDR``, which
  serves /metrics and nothing else (``open_handler``);
* elsewhere, a request signed (SigV4) by a principal allowed
  ``keycask:GetMetrics``: the pipeline authenticates, authorizes and audits
  it through the metrics door (``service/doors/metrics.py``). Anything else
  (no signature, a bad one, no permission, sealed) is 403, audited like any
  refused request.

``KeyCounts`` computes the keycask_keys series for a scrape: it lists the ``key/``
documents' paths and reads each through the key store (whose cache holds
them after the first scrape, so a later one reads only keys that changed).
It counts again only when a key document changed since (the key cache's
generation moved) or ``KEY_COUNT_MAX_AGE`` seconds passed; other scrapes
see the last counts. So a scrape costs a listing of key paths at most, and
nothing on a store whose keys did not change. While sealed there is nothing
to read: the series is absent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import uuid
from collections.abc import Awaitable, Callable

from keycask import metrics
from keycask.auth.sigv4 import HttpRequest
from keycask.http.messages import Request, Response
from keycask.keys.keystore import KeyStore
from keycask.ports import Storage
from keycask.service.door import Door
from keycask.service.pipeline import Pipeline

log = logging.getLogger("keycask")

KEY_COUNT_MAX_AGE = 30.0
_PAGE = 500
_NOT_HERE = Response(
    404, b"keycask serves only GET /metrics here\n", ((b"content-type", b"text/plain"),)
)


def loopback(client: str | None) -> bool:
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client.partition("%")[0]).is_loopback
    except ValueError:
        return False


def local_host(headers: tuple[tuple[bytes, bytes], ...]) -> bool:
    """Whether the request's Host names this machine by an address or as
    "localhost". A page of another site that rebinds its own name to
    127.0.0.1 (DNS rebinding) sends that name as Host: the unsigned
    loopback answer is refused to it (it goes the signed way instead,
    which such a page cannot sign). No Host at all is a client that is not
    a browser."""
    host = next((value for key, value in headers if key == b"host"), None)
    if host is None:
        return True
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        name = text[1 : text.find("]")] if "]" in text else text
    else:
        name = text.rpartition(":")[0] if text.count(":") == 1 else text
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class KeyCounts:
    """Keys by (state, key spec), recounted at most every ``max_age`` seconds."""

    def __init__(
        self,
        storage: Storage,
        keys: KeyStore,
        sealed: Callable[[], bool],
        *,
        max_age: float = KEY_COUNT_MAX_AGE,
    ) -> None:
        self._storage = storage
        self._keys = keys
        self._sealed = sealed
        self._max_age = max_age
        self._counts: dict[tuple[str, str], int] | None = None
        self._at: float | None = None
        self._generation = -1
        self._running: asyncio.Task[None] | None = None

    def current(self) -> dict[tuple[str, str], int] | None:
        return None if self._sealed() else self._counts

    async def refresh(self) -> None:
        if self._sealed():
            return
        loop = asyncio.get_running_loop()
        if (
            self._at is not None
            and self._generation == self._keys.keys_generation
            and loop.time() - self._at < self._max_age
        ):
            return
        if self._running is None:
            self._running = loop.create_task(self._recount())
        # Shielded: a scrape that gives up does not stop the count for the next.
        await asyncio.shield(self._running)

    async def _recount(self) -> None:
        self._generation = self._keys.keys_generation
        try:
            counts: dict[tuple[str, str], int] = {}
            after = ""
            while True:
                rows = await self._storage.list("key/", after, _PAGE)
                for path, _ in rows:
                    try:
                        key_id = uuid.UUID(path[len("key/") :])
                    except ValueError:
                        continue
                    stored = await self._keys.get(key_id)
                    if stored is not None:
                        key = stored.value
                        label = (key.state.value, key.key_spec.value)
                        counts[label] = counts.get(label, 0) + 1
                if len(rows) < _PAGE:
                    break
                after = rows[-1][0]
            self._counts = counts
        except Exception as exc:  # the last counts stay; the next scrape retries
            log.warning("could not count the keys for /metrics: %s", exc)
        finally:
            self._at = asyncio.get_running_loop().time()
            self._running = None


class MetricsRoute:
    """The ``/metrics`` answer of the KMS port (``handle``) and of the
    separate metrics listener (``open_handler``)."""

    def __init__(
        self, pipeline: Pipeline, door: Door, scrape: Callable[[], Awaitable[bytes]]
    ) -> None:
        self._pipeline = pipeline
        self._door = door
        self._scrape = scrape

    async def _exposition(self) -> Response:
        return Response(200, await self._scrape(), ((b"content-type", metrics.CONTENT_TYPE),))

    async def handle(self, request: Request) -> Response:
        if loopback(request.client) and local_host(request.headers):
            return await self._exposition()
        http = HttpRequest(
            request.method, request.raw_path, request.query_string, request.headers, request.body
        )
        reply = await self._pipeline.handle(
            http, request.client, secure_transport=request.secure, door=self._door
        )
        content_type = metrics.CONTENT_TYPE if reply.status == 200 else reply.content_type
        return Response(
            reply.status,
            reply.body,
            ((b"content-type", content_type), (b"x-amzn-requestid", reply.request_id.encode())),
        )

    async def open_handler(self, request: Request) -> Response:
        """The metrics listener: /metrics to anyone who reaches it, nothing else."""
        if request.path == "/metrics" and request.method in ("GET", "HEAD"):
            return await self._exposition()
        return _NOT_HERE

    async def refuse_too_large(self, request: Request) -> Response:
        return _NOT_HERE
