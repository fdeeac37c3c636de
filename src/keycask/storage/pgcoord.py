"""Coordination of keycask nodes that share one PostgreSQL store.

The ``Coordinator`` port for a cluster, as ``storage/local.py`` is for the
worker processes of one host:

* ``stale`` (are my caches out of date?) is a flag raised when the store's
  epoch (a counter every commit of something cached bumps) moved by a commit
  that was not this node's. A dedicated connection LISTENs on the store's
  channel: every such commit notifies in its own transaction, and a
  notification makes the node read the epoch at once, so a change reaches
  every other node's caches milliseconds after it is committed. Without one
  the epoch is read once a second; the flag is also raised when the
  listener reconnects. ``on_stale`` hooks run when another node's commit is
  seen, without waiting for a request: the barrier re-reads the keyring
  then, so a node whose root key a rekey elsewhere replaced seals at once.
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
does not hang), and a notification is only a hint to re-read the epoch from
the table at once; nothing it carries is believed. Commits of what no node
caches move no epoch (``quiet``), so every epoch this node did not make
itself means "drop the caches". A forged notification costs an epoch read;
it cannot make a node skip a cache drop.
(The scheduler reports jobs that do not run, whoever holds the jobs lock.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
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
# Our own commits' epochs not yet seen in the table (bounded: one that does
# not fit costs at most one cache drop).
_MAX_OWN = 4096


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
        storage.quiet = uncached
        self._stale = False
        self._seen_epoch = storage.last_epoch
        # Epochs above _seen_epoch that were our own commits.
        self._own: set[int] = set()
        self._poke = asyncio.Event()  # a notification: read the epoch now
        self._local = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._jobs: Any = None  # the session that holds (or asks for) JOBS_LOCK
        self._leading = False
        self._leader_lock = asyncio.Lock()
        self.listening = False
        # How late this node learnt of the last commit of another node it
        # saw: from the notification to the epoch read that applied it, or
        # the poll interval when the poll found it with no notification.
        self.notify_lag: float | None = None
        self._hinted: float | None = None
        # Called when another node's commit is seen (see the module docstring).
        self.on_stale: list[Callable[[], None]] = []

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
        the caches it touched): the epoch read from the table later counts it
        as seen, if every commit between was ours too."""
        if epoch > self._seen_epoch and len(self._own) < _MAX_OWN:
            self._own.add(epoch)

    def _advance(self, epoch: int) -> bool:
        """The table says the store is at ``epoch``: any commit up to it that
        was not ours changed something cached, so the caches are stale."""
        foreign = False
        if epoch > self._seen_epoch:
            missing = range(self._seen_epoch + 1, epoch + 1)
            foreign = len(missing) > len(self._own) or any(e not in self._own for e in missing)
            self._own = {e for e in self._own if e > epoch}
            self._seen_epoch = epoch
        elif epoch < self._seen_epoch:
            # Only a store restored from a backup goes back: its contents changed.
            foreign = True
            self._own.clear()
            self._seen_epoch = epoch
        if foreign:
            self._stale = True
            for hook in self.on_stale:
                try:
                    hook()
                except Exception:
                    log.exception("a hook on another node's commit failed")
        return foreign

    def lag(self) -> float | None:
        """``notify_lag``; without the notification channel, at least the
        poll interval (changes reach this node only by polling then)."""
        if not self.listening:
            return max(self.notify_lag or 0.0, POLL_INTERVAL)
        return self.notify_lag

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
            _still_running()
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
                _still_running()
                log.warning("lost the PostgreSQL notification channel (%s); reconnecting", exc)
                self._stale = True
            await asyncio.sleep(RECONNECT_DELAY)

    def _hint(self, payload: str) -> None:
        """A notification, ``<instance>:<epoch>:<segments>``, from anyone who
        can connect: only a hint to read the epoch from the table now (which
        drops the caches if another node committed). Nothing in it is
        believed; a forged one costs one epoch read."""
        instance, _, rest = payload.partition(":")
        _, _, touched = rest.partition(":")
        if instance == self._storage.instance:
            return  # our own commit: on_commit counts it
        segments = set(touched.split(",")) if touched else set()
        if segments and segments <= self._uncached:
            return  # an older node's commit of nothing cached
        if self._hinted is None:
            self._hinted = time.monotonic()
        self._poke.set()

    async def _poll(self) -> None:
        while True:
            _still_running()
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a
            # cancellation that meets the event, and the task never ends.
            try:
                async with asyncio.timeout(POLL_INTERVAL):
                    await self._poke.wait()
            except TimeoutError:
                pass
            poked = self._poke.is_set()
            self._poke.clear()
            try:
                epoch = await self._storage.epoch()
            except (StorageUnavailable, psycopg.Error):
                _still_running()
                if poked:
                    self._stale = True  # told of a commit we cannot check
                await asyncio.sleep(POLL_INTERVAL)
                continue
            self._apply(epoch)

    def _apply(self, epoch: int) -> None:
        """The poll read ``epoch``: follow it, and time how late a commit of
        another node was noticed (``notify_lag``)."""
        hinted, self._hinted = self._hinted, None
        if self._advance(epoch):
            self.notify_lag = POLL_INTERVAL if hinted is None else time.monotonic() - hinted


def _still_running() -> None:
    """Re-raise a cancellation that psycopg swallowed or turned into an
    error (a pool checkout cancelled mid-way): the loop must end."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
