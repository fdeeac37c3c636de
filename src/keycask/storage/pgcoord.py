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

Advisory locks and LISTEN/NOTIFY need no privilege: any role that can
connect to the database can take these locks or send on the channel. So the
wait for the write lock is bounded (``LockTimeout``: the request fails, it
does not hang), and a notification is only a hint: its epoch is a claim
that the epoch read from the table must confirm, never a value to adopt. A
forged notification can cost a needless cache drop; it cannot make a node
skip one. (The scheduler reports jobs that do not run, whoever holds the
jobs lock.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from keycask.errors import LockTimeout, StorageUnavailable
from keycask.storage.postgres import PostgresStorage

log = logging.getLogger("keycask")

# Purposes of this store's advisory locks (PostgresStorage.lock_key).
WRITE_LOCK = 1
JOBS_LOCK = 2
POLL_INTERVAL = 1.0
RECONNECT_DELAY = 0.5
# How long a write waits for the cluster's write lock before it fails.
LOCK_TIMEOUT = 10.0
# Epochs claimed by notifications (uncached commits of other nodes, our own
# commits) and not yet confirmed by the table: bounded, since anyone may send
# notifications. A claim that does not fit costs at most one cache drop.
_MAX_CLAIMS = 4096


class PostgresCoordinator:
    def __init__(
        self,
        storage: PostgresStorage,
        *,
        uncached: frozenset[str] = frozenset(),
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        """``uncached``: first path segments (``usage``, ``audit``) that no
        cache holds; a commit that touched only those drops no cache.
        ``lock_timeout``: how long ``exclusive`` waits, in all."""
        self._storage = storage
        self._uncached = uncached
        self._lock_timeout = lock_timeout
        storage.on_commit = self._own_commit
        self._stale = False
        self._seen_epoch = storage.last_epoch
        # Epochs above _seen_epoch accounted for: our own commits, and those a
        # notification told of (which touched nothing cached, or raised the flag).
        self._harmless: set[int] = set()
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
        the caches it touched); the epoch read from the table later counts it
        as seen if every commit between is accounted for too."""
        self._claim(epoch)

    def _claim(self, epoch: int) -> None:
        if epoch > self._seen_epoch and len(self._harmless) < _MAX_CLAIMS:
            self._harmless.add(epoch)

    def _advance(self, epoch: int) -> None:
        """The table says the store is at ``epoch``: every commit up to it
        that we cannot account for (own, or notified as touching nothing
        cached) makes the caches stale."""
        if epoch > self._seen_epoch:
            missing = range(self._seen_epoch + 1, epoch + 1)
            if len(missing) > len(self._harmless) or any(e not in self._harmless for e in missing):
                self._stale = True
            # Claims far ahead of the table are forged: no node is that far on.
            self._harmless = {e for e in self._harmless if epoch < e <= epoch + _MAX_CLAIMS}
            self._seen_epoch = epoch
        elif epoch < self._seen_epoch:
            # Only a store restored from a backup goes back: its contents changed.
            self._stale = True
            self._harmless.clear()
            self._seen_epoch = epoch

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_timeout
        try:
            async with asyncio.timeout(self._lock_timeout):
                await self._local.acquire()
        except TimeoutError:
            raise LockTimeout(
                f"the write lock was not free after {self._lock_timeout:g} s"
                " (this node's own writers queued behind one that waits for it)"
            ) from None
        try:
            left = max(0.001, deadline - loop.time())
            lock = self._storage.advisory_lock(self._storage.lock_key(WRITE_LOCK), left)
            async with lock as epoch:
                self._advance(epoch)
                yield
        finally:
            self._local.release()

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
                        self._hint(note.payload)
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

    def _hint(self, payload: str) -> None:
        """A notification: ``<instance>:<epoch>:<segments>``, from anyone who
        can connect. Another node's commit of something cached drops the
        caches at once; either way its epoch is only recorded as a claim,
        which counts once the epoch read from the table reaches it
        (``_advance``), and a forged one is pruned."""
        instance, _, rest = payload.partition(":")
        claimed, _, touched = rest.partition(":")
        try:
            epoch = int(claimed)
        except ValueError:
            self._stale = True
            return
        if instance == self._storage.instance:
            return  # our own commit: on_commit claimed it already
        segments = set(touched.split(",")) if touched else set()
        if not segments or not segments <= self._uncached:
            self._stale = True
        # Accounted for: it touched nothing cached, or the caches drop for it.
        self._claim(epoch)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                epoch = await self._storage.epoch()
            except (StorageUnavailable, psycopg.Error):
                continue
            self._advance(epoch)
