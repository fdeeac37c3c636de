"""The PostgreSQL coordinator on a real server: what makes a node's caches
stale, and what must not (another store in the same database, commits of
nothing cached)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from keycask.ports import Put
from keycask.storage.pgcoord import PostgresCoordinator
from keycask.storage.postgres import PostgresStorage

PG_DSN = os.environ.get("KEYCASK_TEST_PG_DSN")


@asynccontextmanager
async def _schema() -> AsyncIterator[str]:
    if not PG_DSN:
        pytest.skip("KEYCASK_TEST_PG_DSN is not set (CI sets it)")
    name = f"kc_test_{secrets.token_hex(8)}"
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield make_conninfo(PG_DSN, options=f"-csearch_path={name}")
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
            await peer.commit([Put("key/k", b"v")])
            assert await _stale_within(coordinator, 1.0)
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
