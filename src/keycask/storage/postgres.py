"""PostgreSQL: one store shared by several keycask nodes.

Same contract as the SQLite backend (``keycask.ports.Storage``), one table
``keycask_kv(path, value, revision)``. What differs is that several nodes may
commit at once, so the database itself must arbitrate:

* ``commit`` runs one READ COMMITTED transaction. Each conditional write locks
  its row with ``SELECT ... FOR UPDATE`` before checking ``expect``; a second
  committer blocks on that lock and, once the first commits, re-reads the new
  revision and fails its check, so an update is never lost. A row that does
  not exist yet cannot be locked, so creation is ``INSERT ... ON CONFLICT DO
  NOTHING``: if a racing transaction inserted the row first, no row is
  inserted and the commit is a ``StorageConflict``. Unconditional puts are one
  upsert that increments the revision in place.
* Rows are locked in path order, the same order in every transaction, so two
  commits touching the same paths cannot deadlock each other. A deadlock or
  serialization failure can still come from outside keycask (another client,
  a server forced to SERIALIZABLE); PostgreSQL has then rolled the whole
  transaction back, so nothing was applied and it is reported as
  ``StorageConflict``, whose meaning is exactly "did not happen, re-read and
  retry".
* Paths are ``TEXT COLLATE "C"``: in a UTF-8 database that orders by bytes,
  which is code point order, the same as SQLite's BINARY collation and
  Python's ``sorted``.
* keycask creates and migrates its own schema. ``keycask_schema`` holds one
  row with the version; migrations run at open inside a transaction holding a
  transaction-scoped advisory lock, so nodes starting together apply each
  migration once. The lock is the store's own (derived from the oid of the
  schema the tables live in), is taken only when there is something to
  migrate, and is waited for a bounded time: advisory locks need no
  privilege, so any role that can connect could otherwise hold it and keep
  every node from starting. A database whose version is newer than this code
  is refused rather than written with an older idea of the layout.
* A commit returns after PostgreSQL's COMMIT, which with ``synchronous_commit``
  on (forced if a DSN turned it off) has flushed the WAL.
* Every commit (but those of only ``quiet`` segments, which no node caches)
  also bumps ``keycask_epoch`` and sends ``NOTIFY keycask_commits_<oid>`` with
  ``<store instance>:<epoch>:<first path segments written>`` in the same
  transaction, so other nodes learn of it when (and only when) it is
  committed; ``storage/pgcoord.py`` turns that into cache invalidation, and
  the epoch read from the table is what it trusts.
* During an outage, operations fail with ``StorageUnavailable`` after the
  pool's timeout instead of waiting forever. A commit that failed that way
  may or may not have landed (the connection can drop after COMMIT was
  sent), which is why it is not a ``StorageConflict``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncCursor, IsolationLevel
from psycopg.errors import LockNotAvailable, TransactionRollback
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from keycask.errors import (
    LockTimeout,
    StorageConflict,
    StorageIntegrityError,
    StorageUnavailable,
)
from keycask.ports import Delete, Entry, Put, Write
from keycask.storage.pgdsn import (
    CONNECT_DEFAULTS,
    StorageConfigError,
    parse_dsn,
    redact,
    safe_dsn,
    transport_problem,
)
from keycask.storage.pgschema import (
    MIGRATION_LOCK_TIMEOUT,
    StorageSchemaError,
    check_objects,
    check_schema,
    migrate,
)

# Re-exported for the server and the command line, which import them from here.
__all__ = ["PostgresStorage", "StorageConfigError", "StorageSchemaError"]

log = logging.getLogger("keycask")


_Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]
CHANNEL_PREFIX = "keycask_commits_"


def _prefix_end(prefix: str) -> str:
    # Every path starting with ``prefix`` sorts below prefix + U+10FFFF.
    return prefix + "\U0010ffff"


async def _configure(conn: AsyncConnection[TupleRow]) -> None:
    # The row-locking protocol in ``commit`` assumes READ COMMITTED, whatever
    # the server's default_transaction_isolation says.
    await conn.set_isolation_level(IsolationLevel.READ_COMMITTED)
    # "off" would acknowledge commits before they are durable; stronger
    # settings (remote_apply for synchronous replicas) are left alone.
    await conn.execute(
        "SELECT set_config('synchronous_commit', 'on', false)"
        " WHERE current_setting('synchronous_commit') = 'off'"
    )


class PostgresStorage:
    """``Storage`` over a PostgreSQL database, safe to share between nodes."""

    def __init__(self, pool: _Pool, where: str, dsn: str, connect: dict[str, Any]) -> None:
        self._pool = pool
        self._where = where
        self._dsn = dsn
        self._connect = connect
        # Names this store's own commits in the notifications, so the node
        # that made a change does not drop its caches for it.
        self.instance = os.urandom(8).hex()
        self.last_epoch = 0
        # Told the epoch of each of our own commits (the coordinator listens).
        self.on_commit: Callable[[int], None] | None = None
        # First path segments no node caches: commits of only these are quiet.
        self.quiet: frozenset[str] = frozenset()
        self._table = 0

    @property
    def channel(self) -> str:
        """This store's notification channel: NOTIFY, like advisory locks, is
        per database, and two stores may share one in different schemas."""
        return f"{CHANNEL_PREFIX}{self._table}"

    def lock_key(self, purpose: int) -> int:
        """An advisory lock key for ``purpose`` that belongs to this store:
        advisory locks are per database, and two keycask stores may share a
        database in different schemas. The table's oid tells them apart."""
        return (self._table << 8) | purpose

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 10.0,
        insecure_transport: bool = False,
        create: bool = True,
        migration_timeout: float = MIGRATION_LOCK_TIMEOUT,
    ) -> PostgresStorage:
        """Connect, create or migrate the schema, and start a connection pool.

        ``dsn`` is any libpq connection string or URI; its ``options`` may set
        ``search_path`` to keep keycask's tables in a schema of their own. A
        host other than this one needs TLS that cannot fall back to plaintext
        unless ``insecure_transport``.
        ``create`` False (a reader such as ``audit verify``) creates and
        migrates nothing: a database without keycask's current schema is refused.
        ``migration_timeout`` bounds the wait for the migration lock.
        """
        where = safe_dsn(dsn)
        given = parse_dsn(dsn)
        problem = None if insecure_transport else transport_problem(dsn)
        if problem is not None:
            raise StorageConfigError(problem)
        kwargs: dict[str, Any] = {k: v for k, v in CONNECT_DEFAULTS.items() if k not in given}
        try:
            # A direct connection first: its errors say what is wrong (refused,
            # authentication), where the pool would only report a timeout.
            async with await AsyncConnection.connect(dsn, autocommit=True, **kwargs) as conn:
                # READ COMMITTED here too: each statement after the advisory
                # lock must see what a node that held it before committed.
                await _configure(conn)
                if create:
                    await migrate(conn, migration_timeout)
                else:
                    await check_schema(conn, where)
                await check_objects(conn)
                row = await (await conn.execute("SELECT 'keycask_kv'::regclass::oid")).fetchone()
                table = 0 if row is None else int(row[0])
            pool: _Pool = AsyncConnectionPool(
                dsn,
                kwargs={"autocommit": True, **kwargs},
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,
                # The pool retries a failed connection with exponential backoff
                # until this deadline; bounding it bounds how long the pool may
                # sleep after PostgreSQL is back (a waiting request then starts
                # a fresh attempt).
                reconnect_timeout=timeout,
                configure=_configure,
                # One round trip per checkout, so a connection broken by a
                # server restart is replaced instead of failing a request.
                check=AsyncConnectionPool.check_connection,
                open=False,
                name="keycask",
            )
            try:
                await pool.open(wait=True, timeout=timeout)
            except BaseException:
                await pool.close()
                raise
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"PostgreSQL at {where}: {redact(str(exc), dsn)}") from None
        store = cls(pool, where, dsn, {"autocommit": True, **kwargs})
        store._table = table
        return store

    @property
    def where(self) -> str:
        return self._where

    async def dedicated(self) -> AsyncConnection[TupleRow]:
        """A connection of its own, outside the pool (LISTEN, session locks)."""
        try:
            conn = await AsyncConnection.connect(self._dsn, **self._connect)
            await _configure(conn)
        except psycopg.OperationalError as exc:
            message = redact(str(exc), self._dsn)
            raise StorageUnavailable(f"PostgreSQL at {self._where}: {message}") from None
        return conn

    @asynccontextmanager
    async def advisory_lock(self, key: int, timeout: float) -> AsyncIterator[int]:
        """Hold PostgreSQL's session advisory lock ``key`` (every node waits
        for it); yields the store's epoch as of taking it. Raises
        ``LockTimeout`` after ``timeout`` seconds: advisory locks need no
        privilege, so whoever holds this one may not be keycask at all."""
        async with self._connection() as conn:
            wait = f"{max(1, int(timeout * 1000))}ms"
            await conn.execute("SELECT set_config('lock_timeout', %s, false)", (wait,))
            try:
                await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            except LockNotAvailable:
                raise LockTimeout(await self._holder(conn, key, timeout)) from None
            finally:
                # Only this wait is bounded, not the row locks of a commit.
                await conn.execute("RESET lock_timeout")
            try:
                row = await (await conn.execute("SELECT n FROM keycask_epoch")).fetchone()
                yield 0 if row is None else int(row[0])
            finally:
                try:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                except psycopg.Error as exc:
                    # What ran under the lock has happened (or failed) on its
                    # own terms; its answer must not become this error. The
                    # session may still hold the lock: close it, which frees it.
                    log.warning("could not release advisory lock %d (%s); closing", key, exc)
                    await conn.close()

    @staticmethod
    async def _holder(conn: AsyncConnection[TupleRow], key: int, timeout: float) -> str:
        """Who holds advisory lock ``key``, for the operator's log."""
        holder = "unknown"
        try:
            row = await (
                await conn.execute(
                    "SELECT l.pid, a.usename, a.application_name, a.client_addr::text"
                    " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                    " AND l.database = (SELECT oid FROM pg_database"
                    "  WHERE datname = current_database())"
                    " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s LIMIT 1",
                    (key,),
                )
            ).fetchone()
            if row is not None:
                pid, role, application, address = row
                holder = f"backend pid {pid}, role {role}, application {application!r}"
                holder += f", from {address}" if address else ""
        except psycopg.Error:
            pass
        return f"advisory lock {key} not free after {timeout:g} s; held by {holder}"

    async def epoch(self) -> int:
        async with self._connection() as conn:
            row = await (await conn.execute("SELECT n FROM keycask_epoch")).fetchone()
        return 0 if row is None else int(row[0])

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[TupleRow]]:
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            if isinstance(exc, TransactionRollback):
                raise StorageConflict(f"transaction rolled back by PostgreSQL: {exc}") from exc
            message = redact(str(exc), self._dsn)
            raise StorageUnavailable(f"PostgreSQL at {self._where}: {message}") from None

    async def get(self, path: str) -> Entry | None:
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT value, revision FROM keycask_kv WHERE path = %s", (path,), binary=True
            )
            row = await cur.fetchone()
        return None if row is None else Entry(bytes(row[0]), int(row[1]))

    async def list(
        self, prefix: str, after: str = "", limit: int = 1000
    ) -> Sequence[tuple[str, Entry]]:
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT path, value, revision FROM keycask_kv"
                " WHERE path >= %s AND path > %s AND path < %s ORDER BY path LIMIT %s",
                (prefix, after, _prefix_end(prefix), limit),
                binary=True,
            )
            rows = await cur.fetchall()
        return [(str(p), Entry(bytes(v), int(r))) for p, v, r in rows]

    async def commit(self, writes: Sequence[Write]) -> None:
        if not writes:
            return
        # A stable sort keeps several writes to one path in their given order.
        ordered = sorted(writes, key=lambda w: w.path)
        segments = {w.path.partition("/")[0] for w in ordered}
        # A commit of only what no node caches (``quiet``) moves no epoch and
        # notifies nobody, so every epoch a node has not made itself means
        # "drop your caches", with no need to believe a notification.
        loud = not (self.quiet and segments <= self.quiet)
        epoch = None
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            for write in ordered:
                await self._apply(cur, write)
            if loud:
                # Last, so the epoch row (which serialises these commits) is
                # held for as short a time as possible.
                await cur.execute("UPDATE keycask_epoch SET n = n + 1 RETURNING n")
                row = await cur.fetchone()
                if row is None:
                    raise StorageIntegrityError("the epoch row did not change (a trigger?)")
                epoch = int(row[0])
                # What the commit touched, by the first segment of each path,
                # so a node can ignore commits that change nothing it caches.
                touched = ",".join(sorted(segments))
                await cur.execute(
                    "SELECT pg_notify(%s, %s)",
                    (self.channel, f"{self.instance}:{epoch}:{touched}"[:7900]),
                )
        if epoch is None:
            return
        self.last_epoch = max(self.last_epoch, epoch)
        if self.on_commit is not None:
            self.on_commit(epoch)

    @staticmethod
    async def _apply(cur: AsyncCursor[TupleRow], write: Write) -> None:
        if write.expect is None:
            if isinstance(write, Put):
                await cur.execute(
                    "INSERT INTO keycask_kv (path, value, revision) VALUES (%s, %s, 1)"
                    " ON CONFLICT (path) DO UPDATE SET value = excluded.value,"
                    " revision = keycask_kv.revision + 1",
                    (write.path, write.value),
                )
                _changed(cur, write, 1)
            else:
                await cur.execute("DELETE FROM keycask_kv WHERE path = %s", (write.path,))
                # Whether the row existed is unknown here: check it is gone.
                await cur.execute("SELECT 1 FROM keycask_kv WHERE path = %s", (write.path,))
                if await cur.fetchone() is not None:
                    raise StorageIntegrityError(
                        f"{write.path}: still present after its delete (a trigger?); "
                        "nothing was committed"
                    )
            return
        await cur.execute(
            "SELECT revision FROM keycask_kv WHERE path = %s FOR UPDATE", (write.path,)
        )
        row = await cur.fetchone()
        current = 0 if row is None else int(row[0])
        if write.expect != current:
            raise StorageConflict(
                f"{write.path}: expected revision {write.expect}, found {current}"
            )
        if isinstance(write, Delete):
            if current:
                await cur.execute("DELETE FROM keycask_kv WHERE path = %s", (write.path,))
                _changed(cur, write, 1)
        elif current:
            await cur.execute(
                "UPDATE keycask_kv SET value = %s, revision = %s WHERE path = %s",
                (write.value, current + 1, write.path),
            )
            _changed(cur, write, 1)
        else:
            await cur.execute(
                "INSERT INTO keycask_kv (path, value, revision) VALUES (%s, %s, 1)"
                " ON CONFLICT (path) DO NOTHING",
                (write.path, write.value),
            )
            if cur.rowcount != 1:
                raise StorageConflict(f"{write.path}: expected revision 0, created concurrently")

    async def close(self) -> None:
        await self._pool.close()


def _changed(cur: AsyncCursor[TupleRow], write: Write, expected: int) -> None:
    """A statement that changed another number of rows than it must (a
    trigger returning NULL, a rule) fails the commit, which rolls back."""
    if cur.rowcount != expected:
        raise StorageIntegrityError(
            f"{write.path}: the write changed {cur.rowcount} rows instead of {expected}"
            " (a trigger or rule?); nothing was committed"
        )
