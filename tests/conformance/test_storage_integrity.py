"""The store refuses schema objects keycask did not make, and a write that
changed another number of rows than it must fails its whole commit.

The attack: a trigger planted in the database (``RAISE(IGNORE)`` in SQLite,
``RETURN NULL`` in PostgreSQL) on ``accesskey/%`` rows makes a delete
"succeed" while the row stays; the barrier authenticates values, not whether
a write happened. Real SQLite files and a real PostgreSQL schema.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from keycask.errors import StorageIntegrityError
from keycask.ports import Delete, Put
from keycask.storage.postgres import PostgresStorage
from keycask.storage.sqlite import SQLiteStorage
from pgserver import shared_dsn

SQLITE_TRIGGER = (
    "CREATE TRIGGER keep_keys BEFORE DELETE ON kv WHEN old.path LIKE 'accesskey/%'"
    " BEGIN SELECT RAISE(IGNORE); END"
)
PG_TRIGGER = (
    "CREATE FUNCTION keep_keys() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN IF old.path LIKE 'accesskey/%' THEN RETURN NULL; END IF; RETURN old; END $$;"
    " CREATE TRIGGER keep_keys BEFORE DELETE ON keycask_kv FOR EACH ROW"
    " EXECUTE FUNCTION keep_keys()"
)


def _plant(db: Path, statement: str) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.executescript(statement)
    finally:
        conn.close()


async def _seeded_sqlite(db: Path) -> None:
    store = SQLiteStorage(db)
    await store.commit([Put("accesskey/AKIAEXAMPLE", b"sealed", expect=0)])
    await store.close()


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        (SQLITE_TRIGGER, "trigger 'keep_keys'"),
        ("CREATE VIEW keys AS SELECT path FROM kv", "view 'keys'"),
        ("CREATE INDEX by_value ON kv (value)", "index 'by_value'"),
        ("CREATE TABLE extra (x)", "table 'extra'"),
    ],
)
async def test_sqlite_refuses_foreign_schema_objects_at_open(
    tmp_path: Path, statement: str, named: str
) -> None:
    db = tmp_path / "keycask.db"
    await _seeded_sqlite(db)
    _plant(db, statement)
    with pytest.raises(StorageIntegrityError, match=named):
        SQLiteStorage(db)


async def test_sqlite_reopens_its_own_store_after_analyze(tmp_path: Path) -> None:
    db = tmp_path / "keycask.db"
    await _seeded_sqlite(db)
    _plant(db, "ANALYZE")  # sqlite_stat1: the planner's, not an attack
    store = SQLiteStorage(db)
    assert await store.get("accesskey/AKIAEXAMPLE") is not None
    await store.close()


async def test_sqlite_delete_ignored_by_a_trigger_fails_the_whole_commit(tmp_path: Path) -> None:
    db = tmp_path / "keycask.db"
    store = SQLiteStorage(db)
    await store.commit([Put("accesskey/AKIAEXAMPLE", b"sealed", expect=0)])
    _plant(db, SQLITE_TRIGGER)  # after open: only the row count can tell
    with pytest.raises(StorageIntegrityError, match="changed 0 rows instead of 1"):
        await store.commit(
            [Put("principal/a/x", b"new", expect=0), Delete("accesskey/AKIAEXAMPLE", expect=1)]
        )
    assert await store.get("accesskey/AKIAEXAMPLE") is not None
    assert await store.get("principal/a/x") is None  # rolled back with it
    # A delete of a path that is not there changes nothing, legitimately.
    await store.commit([Delete("nothing/here")])
    await store.close()


@asynccontextmanager
async def _pg_schema() -> AsyncIterator[tuple[str, psycopg.AsyncConnection[tuple[object, ...]]]]:
    dsn = shared_dsn()
    schema = f"kc_test_{secrets.token_hex(8)}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        await admin.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
        try:
            yield make_conninfo(dsn, options=f"-csearch_path={schema}"), admin
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        (PG_TRIGGER, "trigger keycask did not create \\('keep_keys'\\)"),
        (
            "CREATE RULE keep_keys AS ON DELETE TO keycask_kv"
            " WHERE old.path LIKE 'accesskey/%' DO INSTEAD NOTHING",
            "rule keycask did not create \\('keep_keys'\\)",
        ),
        ("ALTER TABLE keycask_kv ENABLE ROW LEVEL SECURITY", "row-level security"),
    ],
)
async def test_postgres_refuses_triggers_and_rules_at_open(statement: str, named: str) -> None:
    async with _pg_schema() as (dsn, admin):
        store = await PostgresStorage.open(dsn, max_size=2)
        await store.commit([Put("accesskey/AKIAEXAMPLE", b"sealed", expect=0)])
        await store.close()
        await admin.execute(statement)
        with pytest.raises(StorageIntegrityError, match=named):
            await PostgresStorage.open(dsn, max_size=2)


@pytest.mark.parametrize("expect", [None, 1])
async def test_postgres_delete_ignored_by_a_trigger_fails_the_whole_commit(
    expect: int | None,
) -> None:
    async with _pg_schema() as (dsn, admin):
        store = await PostgresStorage.open(dsn, max_size=2)
        try:
            await store.commit([Put("accesskey/AKIAEXAMPLE", b"sealed", expect=0)])
            await admin.execute(PG_TRIGGER)  # after open: only the row count can tell
            with pytest.raises(StorageIntegrityError, match="nothing was committed"):
                await store.commit(
                    [
                        Put("principal/a/x", b"new", expect=0),
                        Delete("accesskey/AKIAEXAMPLE", expect=expect),
                    ]
                )
            assert await store.get("accesskey/AKIAEXAMPLE") is not None
            assert await store.get("principal/a/x") is None
        finally:
            await store.close()
