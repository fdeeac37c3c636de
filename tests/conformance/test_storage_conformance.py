"""The storage port's contract. Every backend must pass every test here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keycask.errors import StorageConflict
from keycask.ports import Delete, Put, Storage
from keycask.storage.sqlite import SQLiteStorage

BACKENDS = ["sqlite"]


async def _open(kind: str, tmp_path: Path) -> Storage:
    assert kind == "sqlite"
    return SQLiteStorage(tmp_path / "store.db")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    s = await _open(request.param, tmp_path)
    yield s
    await s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> SQLiteStorage:
    return SQLiteStorage(tmp_path / "store.db")


async def test_get_missing_is_none(store: Storage) -> None:
    assert await store.get("nothing/here") is None


async def test_put_then_get_with_revisions(store: Storage) -> None:
    await store.commit([Put("a/1", b"one", expect=0)])
    first = await store.get("a/1")
    assert first is not None and first.value == b"one" and first.revision == 1
    await store.commit([Put("a/1", b"two", expect=1)])
    second = await store.get("a/1")
    assert second is not None and second.value == b"two" and second.revision == 2


async def test_unconditional_put_overwrites(store: Storage) -> None:
    await store.commit([Put("p", b"x")])
    await store.commit([Put("p", b"y")])
    entry = await store.get("p")
    assert entry is not None and entry.value == b"y" and entry.revision == 2


async def test_expect_absent_fails_when_present(store: Storage) -> None:
    await store.commit([Put("k", b"v", expect=0)])
    with pytest.raises(StorageConflict):
        await store.commit([Put("k", b"w", expect=0)])
    entry = await store.get("k")
    assert entry is not None and entry.value == b"v"


async def test_stale_revision_is_a_conflict(store: Storage) -> None:
    await store.commit([Put("k", b"v1", expect=0)])
    await store.commit([Put("k", b"v2", expect=1)])
    with pytest.raises(StorageConflict):
        await store.commit([Put("k", b"lost update", expect=1)])
    entry = await store.get("k")
    assert entry is not None and entry.value == b"v2"


async def test_multi_write_is_all_or_nothing(store: Storage) -> None:
    await store.commit([Put("x", b"1", expect=0)])
    with pytest.raises(StorageConflict):
        await store.commit([Put("y", b"2", expect=0), Put("x", b"3", expect=0)])
    assert await store.get("y") is None
    entry = await store.get("x")
    assert entry is not None and entry.value == b"1"


async def test_delete_with_and_without_expect(store: Storage) -> None:
    await store.commit([Put("d1", b"a", expect=0), Put("d2", b"b", expect=0)])
    with pytest.raises(StorageConflict):
        await store.commit([Delete("d1", expect=5)])
    await store.commit([Delete("d1", expect=1), Delete("d2")])
    assert await store.get("d1") is None
    assert await store.get("d2") is None


async def test_list_prefix_after_limit(store: Storage) -> None:
    await store.commit([Put(f"list/{i:03d}", bytes([i])) for i in range(25)])
    await store.commit([Put("lisu/0", b"outside"), Put("lis", b"outside")])
    rows = await store.list("list/", limit=10)
    assert [p for p, _ in rows] == [f"list/{i:03d}" for i in range(10)]
    rows = await store.list("list/", after="list/009", limit=10)
    assert [p for p, _ in rows] == [f"list/{i:03d}" for i in range(10, 20)]
    rows = await store.list("list/", after="list/019", limit=100)
    assert [p for p, _ in rows] == [f"list/{i:03d}" for i in range(20, 25)]
    assert rows[0][1].value == bytes([20])
    assert await store.list("nope/") == []


async def test_list_handles_non_ascii_paths(store: Storage) -> None:
    await store.commit([Put("u/é", b"1"), Put("u/\U0001f511", b"2"), Put("u/z", b"3")])
    rows = await store.list("u/")
    assert sorted(p for p, _ in rows) == sorted(["u/é", "u/\U0001f511", "u/z"])


async def test_concurrent_conditional_writes_one_wins(store: Storage) -> None:
    await store.commit([Put("race", b"0", expect=0)])
    results = await asyncio.gather(
        *(store.commit([Put("race", bytes([i]), expect=1)]) for i in range(10)),
        return_exceptions=True,
    )
    wins = [r for r in results if r is None]
    assert len(wins) == 1
    assert all(isinstance(r, StorageConflict) for r in results if r is not None)
    entry = await store.get("race")
    assert entry is not None and entry.revision == 2


async def test_committed_writes_survive_reopen(tmp_path: Path) -> None:
    first = SQLiteStorage(tmp_path / "durable.db")
    await first.commit([Put("keep", b"me", expect=0)])
    await first.close()
    second = SQLiteStorage(tmp_path / "durable.db")
    entry = await second.get("keep")
    assert entry is not None and entry.value == b"me"
    await second.close()


async def test_sqlite_files_are_private(sqlite_store: SQLiteStorage) -> None:
    await sqlite_store.commit([Put("x", b"y")])
    files = list(sqlite_store.path.parent.glob(sqlite_store.path.name + "*"))
    assert {f.name for f in files} >= {"store.db", "store.db-wal", "store.db-shm"}
    for f in files:
        assert f.stat().st_mode & 0o077 == 0, f
    await sqlite_store.close()
