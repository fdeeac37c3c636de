"""Coordination of keycask nodes that share one PostgreSQL store.

The ``Coordinator`` port for a cluster, as ``storage/local.py`` is for the
worker processes of one host:

* ``stale`` (are my caches out of date?) is a flag raised by a dedicated
  connection that LISTENs on ``keycask_commits``: every commit notifies, in
  its own transaction, with the committing store's instance id, so a change
  reaches every other node's caches milliseconds after it is committed. A
  notification can be lost with its connection, so the flag is also raised
  when the listener reconnects, and a poll of the store's epoch (a counter
  every commit bumps) once a second catches anything else.
* ``exclusive`` takes a PostgreSQL advisory lock: one writer in the whole
  cluster at a time, as one per host before. Having it, the node compares the
  epoch with what it last saw and raises the flag when anyone committed
  since, so the pipeline's re-read under the lock never trusts a cache that a
  notification still in flight would have dropped.
* ``leads`` says whether this node holds the jobs lock, a session advisory
  lock on a connection of its own: the node that holds it runs the cluster's
  scheduled jobs; when it dies its session ends, the lock is free, and the
  next node to ask takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from keycask.errors import StorageUnavailable
from keycask.storage.postgres import PostgresStorage

log = logging.getLogger("keycask")

# Purposes of this store's advisory locks (PostgresStorage.lock_key).
WRITE_LOCK = 1
JOBS_LOCK = 2
POLL_INTERVAL = 1.0
RECONNECT_DELAY = 0.5


class PostgresCoordinator:
    def __init__(self, storage: PostgresStorage, *, uncached: frozenset[str] = frozenset()) -> None:
        """``uncached``: first path segments (``usage``, ``audit``) that no
        cache holds; a commit that touched only those drops no cache."""
        self._storage = storage
        self._uncached = uncached
        storage.on_commit = self._own_commit
        self._stale = False
        self._seen_epoch = storage.last_epoch
        self._local = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._jobs: Any = None  # the session that holds (or asks for) JOBS_LOCK
        self._leading = False
        self._leader_lock = asyncio.Lock()
        self.listening = False

    async def start(self) -> None:
        self._seen_epoch = await self._storage.epoch()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._poll())]

    # -- the port --

    def stale(self) -> bool:
        if self._stale:
            self._stale = False
            return True
        return False

    def committed(self) -> None:
        # The commit notified the other nodes itself, and told us its epoch.
        pass

    def _own_commit(self, epoch: int) -> None:
        """Our own commit needs no cache drop here (whoever committed updated
        the caches it touched), but only if nothing came between it and what
        we had seen: a commit of another node's in between is unknown yet."""
        if epoch == self._seen_epoch + 1:
            self._seen_epoch = epoch

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with (
            self._local,
            self._storage.advisory_lock(self._storage.lock_key(WRITE_LOCK)) as epoch,
        ):
            if epoch != self._seen_epoch:
                self._seen_epoch = epoch
                self._stale = True
            yield

    async def leads(self) -> bool:
        async with self._leader_lock:
            # One connection of its own, kept between ticks: asking again
            # costs a round trip, not a new connection a second.
            conn = self._jobs
            try:
                if conn is None or conn.closed:
                    conn = self._jobs = await self._storage.dedicated()
                    self._leading = False
                if self._leading:
                    await conn.execute("SELECT 1")  # the session (and the lock) lives
                    return True
                row = await (
                    await conn.execute(
                        "SELECT pg_try_advisory_lock(%s)", (self._storage.lock_key(JOBS_LOCK),)
                    )
                ).fetchone()
            except (psycopg.Error, StorageUnavailable):
                await self._drop_jobs()
                return False
            if row is not None and row[0]:
                self._leading = True
                log.info("this node now runs the cluster's scheduled jobs")
                return True
            return False

    async def resign(self) -> None:
        async with self._leader_lock:
            if self._leading:
                log.info("this node stops running the cluster's scheduled jobs")
            await self._drop_jobs()

    async def _drop_jobs(self) -> None:
        """Close the jobs session: PostgreSQL releases the lock with it."""
        conn, self._jobs, self._leading = self._jobs, None, False
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._jobs is not None:
            # Closing the session releases the jobs lock for the next node.
            self._tasks.append(asyncio.get_event_loop().create_task(self._drop_jobs()))

    async def aclose(self) -> None:
        self.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- background --

    async def _listen(self) -> None:
        while True:
            try:
                conn = await self._storage.dedicated()
                try:
                    await conn.execute(f"LISTEN {self._storage.channel}")
                    # Anything committed while we were not listening is unknown.
                    self._stale = True
                    self.listening = True
                    async for note in conn.notifies():
                        instance, _, rest = note.payload.partition(":")
                        epoch, _, touched = rest.partition(":")
                        if instance != self._storage.instance:
                            segments = set(touched.split(",")) if touched else set()
                            if not segments or not segments <= self._uncached:
                                self._stale = True
                        # Notifications come in commit order: every commit
                        # up to this one has been seen (and flagged) by now,
                        # our own included.
                        with contextlib.suppress(ValueError):
                            self._seen_epoch = max(self._seen_epoch, int(epoch))
                finally:
                    self.listening = False
                    with contextlib.suppress(psycopg.Error):
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, StorageUnavailable, OSError) as exc:
                log.warning("lost the PostgreSQL notification channel (%s); reconnecting", exc)
                self._stale = True
            await asyncio.sleep(RECONNECT_DELAY)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                epoch = await self._storage.epoch()
            except (StorageUnavailable, psycopg.Error):
                continue
            if epoch != self._seen_epoch:
                # A commit whose notification we have not seen (or our own,
                # which costs one needless cache drop).
                if epoch > self._seen_epoch:
                    self._stale = True
                self._seen_epoch = max(self._seen_epoch, epoch)
