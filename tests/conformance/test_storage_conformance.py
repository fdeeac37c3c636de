"""The storage port's contract. Every backend must pass every test here.

The PostgreSQL backend runs on ``KEYCASK_TEST_PG_DSN`` when set (CI sets it),
else on the test run's private PostgreSQL (``tests/pgserver.py``); each test
gets a schema of its own, so tests may run in parallel against one database.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from keycask.errors import StorageConflict, StorageUnavailable
from keycask.ports import Delete, Put, Storage
from keycask.storage.pgschema import SCHEMA_VERSION, StorageSchemaError
from keycask.storage.postgres import PostgresStorage
from keycask.storage.sqlite import SQLiteStorage
from pgserver import shared_dsn

BACKENDS = ["sqlite", "postgres"]


Opener = Callable[[], Awaitable[Storage]]


@asynccontextmanager
async def _pg_schema() -> AsyncIterator[str]:
    """A DSN whose search_path is a fresh schema, dropped afterwards."""
    dsn = shared_dsn()
    schema = f"kc_test_{secrets.token_hex(8)}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield make_conninfo(dsn, options=f"-csearch_path={schema}")
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@asynccontextmanager
async def _backend(kind: str, tmp_path: Path) -> AsyncIterator[Opener]:
    """A place to keep a store, and a way to open (or reopen) a store there."""
    if kind == "sqlite":

        async def open_sqlite() -> Storage:
            return SQLiteStorage(tmp_path / "store.db")

        yield open_sqlite
        return
    assert kind == "postgres"
    async with _pg_schema() as dsn:

        async def open_postgres() -> Storage:
            return await PostgresStorage.open(dsn, max_size=4)

        yield open_postgres


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with _backend(request.param, tmp_path) as open_store:
        s = await open_store()
        yield s
        await s.close()


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    async with _pg_schema() as dsn:
        yield dsn


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


@pytest.mark.parametrize("kind", BACKENDS)
async def test_committed_writes_survive_reopen(kind: str, tmp_path: Path) -> None:
    async with _backend(kind, tmp_path) as open_store:
        first = await open_store()
        await first.commit([Put("keep", b"me", expect=0)])
        await first.close()
        second = await open_store()
        entry = await second.get("keep")
        assert entry is not None and entry.value == b"me" and entry.revision == 1
        await second.close()


async def test_every_byte_value_round_trips(store: Storage) -> None:
    every = bytes(range(256))
    await store.commit([Put("bytes/all", every, expect=0), Put("bytes/empty", b"")])
    entry = await store.get("bytes/all")
    assert entry is not None and entry.value == every
    rows = await store.list("bytes/")
    assert [(p, e.value) for p, e in rows] == [("bytes/all", every), ("bytes/empty", b"")]


async def test_list_orders_by_code_point(store: Storage) -> None:
    names = [
        "a",
        "B",
        "~",
        "\x7f",
        "é",
        "ÿ",
        "Ā",
        "a\u0301",
        "中",
        "\ue000",
        "\uffee",
        "\U00010000",
        "\U0001f511",
        "Z",
        "0",
        " ",
    ]
    paths = [f"u/{n}" for n in names]
    await store.commit([Put(p, p.encode()) for p in paths])
    await store.commit([Put("u", b"prefix itself"), Put("v/x", b"outside")])
    rows = await store.list("u/")
    assert [p for p, _ in rows] == sorted(paths)
    first = await store.list("u/", limit=5)
    rest = await store.list("u/", after=first[-1][0])
    assert [p for p, _ in [*first, *rest]] == sorted(paths)


async def test_repeated_path_in_one_commit_applies_in_order(store: Storage) -> None:
    await store.commit([Put("z", b"1", expect=0), Put("a", b"x"), Put("z", b"2", expect=1)])
    entry = await store.get("z")
    assert entry is not None and entry.value == b"2" and entry.revision == 2


async def test_sqlite_files_are_private(sqlite_store: SQLiteStorage) -> None:
    await sqlite_store.commit([Put("x", b"y")])
    files = list(sqlite_store.path.parent.glob(sqlite_store.path.name + "*"))
    assert {f.name for f in files} >= {"store.db", "store.db-wal", "store.db-shm"}
    for f in files:
        assert f.stat().st_mode & 0o077 == 0, f
    await sqlite_store.close()


# -- PostgreSQL only: several nodes on one database --


@asynccontextmanager
async def _two_nodes(dsn: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    a = await PostgresStorage.open(dsn, min_size=2, max_size=8)
    b = await PostgresStorage.open(dsn, min_size=2, max_size=8)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_pg_two_nodes_conflicting_writes_one_winner_per_round(pg_dsn: str) -> None:
    paths = ["race/a", "race/b"]
    async with _two_nodes(pg_dsn) as (a, b):
        await a.commit([Put(p, b"start", expect=0) for p in paths])
        wins = 1
        rounds = 50
        for r in range(rounds):
            expect = r + 1
            # Four writers per round (200 writes in all), half of them naming
            # the paths in the opposite order: locking must not deadlock.
            attempts = [
                (node, [Put(p, f"{r}/{i}".encode(), expect=expect) for p in order])
                for i, (node, order) in enumerate(
                    [(a, paths), (b, paths[::-1]), (b, paths), (a, paths[::-1])]
                )
            ]
            results = await asyncio.gather(
                *(node.commit(writes) for node, writes in attempts), return_exceptions=True
            )
            won = [i for i, res in enumerate(results) if res is None]
            assert len(won) == 1, results
            assert all(isinstance(res, StorageConflict) for res in results if res is not None)
            wins += 1
            for p in paths:
                entry = await b.get(p)
                assert entry is not None
                assert entry.revision == wins
                assert entry.value == f"{r}/{won[0]}".encode()


async def test_pg_two_nodes_read_modify_write_loses_no_update(pg_dsn: str) -> None:
    async with _two_nodes(pg_dsn) as (a, b):
        await a.commit([Put("counter", b"0", expect=0)])

        async def bump(node: PostgresStorage) -> bool:
            entry = await node.get("counter")
            assert entry is not None
            value = int(entry.value) + 1
            try:
                await node.commit([Put("counter", str(value).encode(), expect=entry.revision)])
            except StorageConflict:
                return False
            return True

        results = await asyncio.gather(*(bump(a if i % 2 else b) for i in range(200)))
        successes = 1 + sum(results)
        entry = await a.get("counter")
        assert entry is not None
        assert entry.revision == successes
        assert int(entry.value) == successes - 1


async def test_pg_two_nodes_unconditional_puts_all_count(pg_dsn: str) -> None:
    async with _two_nodes(pg_dsn) as (a, b):
        await asyncio.gather(
            *(
                (a if i % 2 else b).commit([Put("blind", bytes([i])), Put("blind2", b"")])
                for i in range(100)
            )
        )
        for p in ("blind", "blind2"):
            entry = await a.get(p)
            assert entry is not None and entry.revision == 100


async def test_pg_two_nodes_create_race_exactly_one_wins(pg_dsn: str) -> None:
    async with _two_nodes(pg_dsn) as (a, b):
        for i in range(30):
            path = f"new/{i}"
            results = await asyncio.gather(
                a.commit([Put(path, b"a", expect=0)]),
                b.commit([Put(path, b"b", expect=0)]),
                return_exceptions=True,
            )
            assert sorted(r is None for r in results) == [False, True], results
            loser = next(r for r in results if r is not None)
            assert isinstance(loser, StorageConflict)
            entry = await a.get(path)
            winner = b"a" if results[0] is None else b"b"
            assert entry is not None and entry.revision == 1 and entry.value == winner


async def test_pg_schema_version_is_recorded(pg_dsn: str) -> None:
    # Several nodes starting at once on an empty schema: the advisory lock
    # lets one create the tables and the others find them.
    nodes = await asyncio.gather(*(PostgresStorage.open(pg_dsn) for _ in range(4)))
    await nodes[0].commit([Put("k", b"v", expect=0)])
    for node in nodes:
        await node.close()
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        rows = await (await conn.execute("SELECT version FROM keycask_schema")).fetchall()
        assert rows == [(SCHEMA_VERSION,)] and SCHEMA_VERSION == 2
        cur = await conn.execute(
            "SELECT column_name, data_type, collation_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'keycask_kv'"
            " ORDER BY ordinal_position"
        )
        assert await cur.fetchall() == [
            ("path", "text", "C"),
            ("value", "bytea", None),
            ("revision", "bigint", None),
        ]


async def test_pg_newer_schema_is_refused(pg_dsn: str) -> None:
    s = await PostgresStorage.open(pg_dsn)
    await s.commit([Put("k", b"v")])
    await s.close()
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute("UPDATE keycask_schema SET version = 999")
    with pytest.raises(StorageSchemaError, match="version 999"):
        await PostgresStorage.open(pg_dsn)


async def test_pg_unreachable_server_is_a_clear_error_without_password() -> None:
    dsn = "postgresql://keycask:s3cret-pw@127.0.0.1:1/test?connect_timeout=2"
    with pytest.raises(StorageUnavailable) as info:
        await PostgresStorage.open(dsn)
    assert "s3cret-pw" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


async def test_pg_outage_fails_fast_and_recovers(pg_dsn: str) -> None:
    """Operations during an outage raise StorageUnavailable; afterwards they work."""
    target = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    host, port = str(target.get("host", "127.0.0.1")), int(str(target.get("port", 5432)))
    links: set[asyncio.StreamWriter] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, port)
        links.update((writer, up_writer))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    dsn = make_conninfo(pg_dsn, host="127.0.0.1", port=str(proxy_port))
    s = await PostgresStorage.open(dsn, max_size=2, timeout=2.0)
    try:
        await s.commit([Put("k", b"v", expect=0)])
        proxy.close()
        for w in links:
            w.transport.abort()
        await asyncio.sleep(0.1)
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(s.get("k"), 10)
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(s.commit([Put("k", b"w", expect=1)]), 10)
        proxy = await asyncio.start_server(handle, "127.0.0.1", proxy_port)
        # Back within a few pool timeouts, without reopening the store.
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            try:
                entry = await asyncio.wait_for(s.get("k"), 10)
                break
            except StorageUnavailable:
                assert asyncio.get_running_loop().time() < deadline
        assert entry is not None and entry.value == b"v" and entry.revision == 1
    finally:
        await s.close()
        proxy.close()
        for w in links:
            w.transport.abort()
