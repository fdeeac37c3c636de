"""Helpers for tests of several keycask nodes sharing one PostgreSQL store.

Tests import it as ``from cluster import ...`` (pytest's default import mode
puts this directory on ``sys.path``, as for ``rawclient``).

* ``pg_schema()``: a DSN whose ``search_path`` is a fresh schema of its own
  (as the storage conformance suite does), dropped afterwards, in the
  database of ``pgserver.shared_dsn()``: ``KEYCASK_TEST_PG_DSN`` when set,
  else the test run's private PostgreSQL.
* ``Cluster``: ``--dev`` nodes on one store. The first node creates the
  keyring with its dev root key and writes the admin profile; the others get
  copies of both before they start, so they open the same keyring as the
  same admin. Each node keeps its own audit segment and dev clock.
* ``TcpProxy``: a TCP relay in a thread of its own, which can be cut (every
  connection closed, new ones refused) and restored on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import psycopg
from botocore.config import Config
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from conftest import Server, dev_call
from pgserver import shared_dsn

LEADER_LINE = "this node now runs the cluster's scheduled jobs"

# What a client sees when the node it talks to is gone (or goes mid-call).
CONNECTION_ERRORS: tuple[type[Exception], ...] = (BotoConnectionError, HTTPClientError)

T = TypeVar("T")


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped afterwards."""
    dsn = shared_dsn()
    schema = f"kc_cluster_{secrets.token_hex(8)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_query(dsn, options=f"-csearch_path={schema}")
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def with_query(uri: str, *, netloc: str | None = None, **params: str) -> str:
    """``uri`` (``keycask --storage`` takes URIs only) with other query
    parameters, or another host:port."""
    parts = urllib.parse.urlsplit(uri)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(params)
    if netloc is not None:
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@{netloc}" if user else netloc
    return urllib.parse.urlunsplit(
        parts._replace(netloc=netloc or parts.netloc, query=urllib.parse.urlencode(query))
    )


def client(
    node: Server,
    access_key: tuple[str, str] | None = None,
    *,
    read_timeout: float = 60,
    connect_timeout: float = 5,
) -> Any:
    """A boto3 KMS client of ``node`` that never retries by itself (botocore's
    ``max_attempts`` counts retries; ``total_max_attempts`` counts attempts)."""
    akid, secret = access_key or node.credentials()
    return boto3.client(
        "kms",
        endpoint_url=node.endpoint,
        region_name="us-east-1",
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=read_timeout,
            connect_timeout=connect_timeout,
            max_pool_connections=4,
        ),
    )


class Cluster:
    """``--dev`` keycask nodes sharing the store named by ``dsn``."""

    def __init__(self, root: Path, dsn: str, size: int = 3) -> None:
        self.dsn = dsn
        self.nodes = [
            Server(root / f"node{chr(ord('a') + i)}", env_extra={"KEYCASK_STORAGE": dsn})
            for i in range(size)
        ]

    def start(self) -> Cluster:
        first, *others = self.nodes
        first.start()
        for node in others:
            node.data_dir.mkdir(mode=0o700, parents=True)
            for name in ("dev-root.key", "credentials"):
                shutil.copy2(first.data_dir / name, node.data_dir / name)
                (node.data_dir / name).chmod(0o600)
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                node.stop(signal.SIGKILL)

    @property
    def admin(self) -> tuple[str, str]:
        return self.nodes[0].credentials()

    def call(self, node: Server, target: str, body: dict[str, Any]) -> dict[str, Any]:
        """A signed call of a keycask-only target (KeycaskAdmin.*, KeycaskDev.*)."""
        return dev_call(node.endpoint, self.admin, body, target=target)

    def advance(self, node: Server, seconds: float, *, run_jobs: bool = False) -> dict[str, Any]:
        return dev_call(node.endpoint, self.admin, {"Seconds": seconds, "RunJobs": run_jobs})

    def leaders(self) -> list[Server]:
        """Nodes whose log says they took the jobs lock (since they last started)."""
        found = []
        for node in self.nodes:
            if node.log_path is not None and node.log_path.exists():
                text = node.log_path.read_text(errors="replace")
                if LEADER_LINE in text:
                    found.append(node)
        return found


def audit_records(data_dir: Path) -> list[dict[str, Any]]:
    """Every record in every audit segment of a node's data dir."""
    records = []
    for segment in sorted((data_dir / "audit").glob("*.jsonl")):
        for line in segment.read_text().splitlines():
            line = line.strip()
            if line:
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
    return records


def readyz(node: Server, timeout: float = 5) -> tuple[int, str]:
    """GET /readyz: (status, body); (0, reason) when nothing answered."""
    try:
        with urllib.request.urlopen(node.endpoint + "/readyz", timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError as error:
        return 0, str(error)


def poll(what: str, probe: Callable[[], T | None], deadline: float, interval: float = 0.1) -> T:
    """``probe()``'s first non-None result, or fail with ``what`` at ``deadline`` s."""
    end = time.monotonic() + deadline
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline} s waiting for {what}")
        time.sleep(interval)


class TcpProxy:
    """A TCP relay to ``target`` on 127.0.0.1:<port>, run by an event loop in
    a thread of its own. ``cut()`` aborts every connection and stops
    listening (new connections are refused); ``restore()`` listens again on
    the same port."""

    def __init__(self, target_dsn: str) -> None:
        params = conninfo_to_dict(target_dsn)
        self._host = str(params.get("host") or "127.0.0.1")
        self._upstream_port = int(str(params.get("port") or 5432))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self.port = 0

    def dsn(self, dsn: str) -> str:
        """``dsn`` (a URI) through this proxy."""
        return with_query(dsn, netloc=f"127.0.0.1:{self.port}")

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._run(self._listen())
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._links.discard(writer)
            self._links.discard(up_writer)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.transport.abort()
        self._links.clear()

    def cut(self) -> None:
        self._run(self._cut())

    def restore(self) -> None:
        self._run(self._listen())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
