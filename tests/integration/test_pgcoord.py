"""The PostgreSQL coordinator on a real server: what makes a node's caches
stale, and what must not (another store in the same database, commits of
nothing cached)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from keycask.errors import LockTimeout
from keycask.ports import Put
from keycask.storage.pgcoord import POLL_INTERVAL, WRITE_LOCK, PostgresCoordinator
from keycask.storage.postgres import PostgresStorage
from pgserver import shared_dsn


@asynccontextmanager
async def _schema() -> AsyncIterator[str]:
    dsn = shared_dsn()
    name = f"kc_test_{secrets.token_hex(8)}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield make_conninfo(dsn, options=f"-csearch_path={name}")
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


async def _listening(coordinator: PostgresCoordinator) -> None:
    for _ in range(200):
        if coordinator.listening:
            coordinator.stale()  # the flag raised on (re)connecting
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the coordinator never started listening")


async def _stale_within(coordinator: PostgresCoordinator, seconds: float) -> bool:
    for _ in range(int(seconds / 0.02)):
        if coordinator.stale():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_only_this_stores_cached_commits_make_a_node_stale() -> None:
    async with _schema() as one_dsn, _schema() as other_dsn:
        node = await PostgresStorage.open(one_dsn, max_size=2)
        peer = await PostgresStorage.open(one_dsn, max_size=2)  # another node, same store
        other = await PostgresStorage.open(other_dsn, max_size=2)  # another store, same database
        coordinator = PostgresCoordinator(node, uncached=frozenset({"usage", "audit"}))
        peer.quiet = frozenset({"usage", "audit"})  # as the peer's own coordinator says
        await coordinator.start()
        try:
            await _listening(coordinator)
            assert node.channel != other.channel and node.lock_key(1) != other.lock_key(1)
            # Another store's commits, and this store's uncached ones, change nothing here.
            for i in range(5):
                await other.commit([Put(f"key/{i}", b"x")])
                await peer.commit([Put(f"usage/{i}", b"x"), Put(f"audit/anchor/{i}", b"y")])
            assert not await _stale_within(coordinator, 1.5)  # the poll runs once a second
            # A peer's change to a cached path does, at once.
            assert coordinator.notify_lag is None
            await peer.commit([Put("key/k", b"v")])
            assert await _stale_within(coordinator, 1.0)
            # keycask_cluster_notify_lag_seconds: noticed by its notification.
            assert coordinator.notify_lag is not None and coordinator.notify_lag < POLL_INTERVAL
            assert coordinator.lag() == coordinator.notify_lag
            # Our own commits do not.
            await node.commit([Put("key/mine", b"v")])
            assert not await _stale_within(coordinator, 1.5)
            # Under the write lock, an unseen commit is caught even before its
            # notification would be: the epoch is compared on taking the lock.
            await peer.commit([Put("alias/a", b"v")])
            async with coordinator.exclusive():
                assert coordinator.stale()
        finally:
            await coordinator.aclose()
            for store in (node, peer, other):
                await store.close()


# -- a role that may only connect (advisory locks and NOTIFY need no privilege) --


@asynccontextmanager
async def _connect_only_role() -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """A raw connection as a fresh role with nothing but CONNECT (PUBLIC's
    default): what any other application's account on the server has."""
    dsn = shared_dsn()
    role = f"kc_hostile_{secrets.token_hex(6)}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        try:
            conn = await psycopg.AsyncConnection.connect(
                make_conninfo(dsn, user=role), autocommit=True
            )
            try:
                yield conn
            finally:
                await conn.close()
        finally:
            await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def _store_oid(hostile: psycopg.AsyncConnection[tuple[object, ...]], dsn: str) -> int:
    """What a CONNECT-only role learns from the catalogs: the table's oid,
    hence every lock key and the channel name of the store."""
    schema = str(psycopg.conninfo.conninfo_to_dict(dsn)["options"]).split("=", 1)[1]
    row = await (
        await hostile.execute(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = 'keycask_kv'",
            (schema,),
        )
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


async def test_a_write_lock_held_by_another_role_times_out_instead_of_hanging() -> None:
    async with _schema() as dsn, _connect_only_role() as hostile:
        node = await PostgresStorage.open(dsn, max_size=2)
        coordinator = PostgresCoordinator(node, lock_timeout=0.5)
        try:
            oid = await _store_oid(hostile, dsn)
            assert node.lock_key(WRITE_LOCK) == (oid << 8) | WRITE_LOCK
            await hostile.execute("SELECT pg_advisory_lock(%s)", (node.lock_key(WRITE_LOCK),))
            # Writers queued on this node behind the one waiting are bounded too.
            first, second = await asyncio.wait_for(
                asyncio.gather(_try_exclusive(coordinator), _try_exclusive(coordinator)), 10
            )
            for error in (first, second):
                assert isinstance(error, LockTimeout), error
            assert "kc_hostile_" in str(first)  # the log names who holds it
            # Released, writes go on as before.
            await hostile.execute("SELECT pg_advisory_unlock_all()")
            async with coordinator.exclusive():
                pass
        finally:
            await coordinator.aclose()
            await node.close()


async def _try_exclusive(coordinator: PostgresCoordinator) -> BaseException | None:
    try:
        async with coordinator.exclusive():
            return None
    except LockTimeout as error:
        return error


async def test_a_forged_notification_does_not_stop_invalidation() -> None:
    async with _schema() as dsn, _connect_only_role() as hostile:
        node = await PostgresStorage.open(dsn, max_size=2)
        peer = await PostgresStorage.open(dsn, max_size=2)
        coordinator = PostgresCoordinator(node, uncached=frozenset({"usage", "audit"}))
        await coordinator.start()
        try:
            await _listening(coordinator)
            channel = f"keycask_commits_{await _store_oid(hostile, dsn)}"
            assert channel == node.channel
            # The role can watch the commit stream: which segments change, when.
            await hostile.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            await peer.commit([Put("key/watched", b"v")])
            note = await anext(hostile.notifies(timeout=5))
            assert note.payload.endswith(":key")
            assert await _stale_within(coordinator, 1.0)
            # A forged notification with a huge epoch, as an uncached commit
            # of some node, and as a cached one.
            for touched in ("usage", "key"):
                forged = f"{secrets.token_hex(8)}:{2**62}:{touched}"
                await hostile.execute("SELECT pg_notify(%s, %s)", (channel, forged))
            await asyncio.sleep(0.2)
            coordinator.stale()  # the forged cached one may drop caches: harmless
            # A later real commit of another node whose notification this
            # node does not get (as when the listener's connection drops): the
            # epoch poll must still catch it, forged epoch or not.
            raw = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            async with raw, raw.transaction():
                await raw.execute("INSERT INTO keycask_kv VALUES ('key/unnoticed', 'x', 1)")
                await raw.execute("UPDATE keycask_epoch SET n = n + 1")
            assert await _stale_within(coordinator, 2.5)
            # A forged claim that the next commit is an uncached one, then
            # that commit (a DisableKey, say) before its notification is in:
            # taking the write lock must still see it.
            epoch = await node.epoch()
            await hostile.execute(
                "SELECT pg_notify(%s, %s)", (channel, f"{peer.instance}:{epoch + 1}:usage")
            )
            await asyncio.sleep(0.2)
            raw = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            async with raw, raw.transaction():
                await raw.execute("INSERT INTO keycask_kv VALUES ('key/raced', 'x', 1)")
                await raw.execute("UPDATE keycask_epoch SET n = n + 1")
            async with coordinator.exclusive():
                assert coordinator.stale()
            # And a real commit with its notification, as always.
            await peer.commit([Put("alias/b", b"v")])
            assert await _stale_within(coordinator, 1.0)
            # Our own commits still count as seen (the forged epoch is ignored).
            await node.commit([Put("key/mine", b"v")])
            assert not await _stale_within(coordinator, 1.5)
        finally:
            await coordinator.aclose()
            for store in (node, peer):
                await store.close()


async def test_the_migration_lock_is_the_stores_own_and_bounded() -> None:
    async with _schema() as dsn, _schema() as fresh_dsn, _connect_only_role() as hostile:
        # keycask 0.x's lock, one key for every store in the database.
        await hostile.execute("SELECT pg_advisory_lock(%s)", (0x6B65796361736B,))
        first = await asyncio.wait_for(PostgresStorage.open(dsn, max_size=1), 15)
        await first.close()
        # Holding this store's own migration lock keeps no node of a store
        # that needs no migration from starting...
        schema = str(psycopg.conninfo.conninfo_to_dict(dsn)["options"]).split("=", 1)[1]
        row = await (
            await hostile.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", (schema,))
        ).fetchone()
        assert row is not None
        await hostile.execute("SELECT pg_advisory_lock(%s)", ((int(str(row[0])) << 8) | 3,))
        again = await asyncio.wait_for(PostgresStorage.open(dsn, max_size=1), 15)
        await again.close()
        # ... and one that does fails with a clear error in bounded time.
        fresh = str(psycopg.conninfo.conninfo_to_dict(fresh_dsn)["options"]).split("=", 1)[1]
        row = await (
            await hostile.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", (fresh,))
        ).fetchone()
        assert row is not None
        await hostile.execute("SELECT pg_advisory_lock(%s)", ((int(str(row[0])) << 8) | 3,))
        with pytest.raises(LockTimeout, match="migration lock"):
            await asyncio.wait_for(
                PostgresStorage.open(fresh_dsn, max_size=1, migration_timeout=0.5), 15
            )
        await hostile.execute("SELECT pg_advisory_unlock_all()")
        done = await asyncio.wait_for(PostgresStorage.open(fresh_dsn, max_size=1), 15)
        await done.close()
