"""keycask's tables in PostgreSQL: the migrations that make them, the checks
that refuse a schema keycask cannot trust or does not know.

Migrations run at open inside a transaction holding the store's own
advisory lock (see ``postgres.py``'s module notes for why it is bounded).
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.errors import LockNotAvailable
from psycopg.rows import TupleRow

from keycask.errors import LockTimeout, StorageIntegrityError

__all__ = [
    "MIGRATION_LOCK_TIMEOUT",
    "SCHEMA_VERSION",
    "StorageSchemaError",
    "check_objects",
    "check_schema",
    "migrate",
]


class StorageSchemaError(Exception):
    """The database holds a schema this version of keycask cannot use."""


# Migration n (1-based) takes the schema from version n-1 to n. Append only.
_MIGRATIONS: tuple[str, ...] = (
    'CREATE TABLE keycask_kv (path TEXT COLLATE "C" PRIMARY KEY,'
    " value BYTEA NOT NULL, revision BIGINT NOT NULL)",
    "CREATE TABLE keycask_epoch (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),"
    " n BIGINT NOT NULL); INSERT INTO keycask_epoch (n) VALUES (0)",
)
SCHEMA_VERSION = len(_MIGRATIONS)

# The purpose bits of the migration lock (see ``PostgresStorage.lock_key``;
# pgcoord.py uses 1, 2).
_MIGRATION_LOCK = 3
# How long a node waits for another's migration (or for whoever holds its lock).
MIGRATION_LOCK_TIMEOUT = 30.0


async def _schema_version(conn: AsyncConnection[TupleRow]) -> int | None:
    """The keycask schema version in the current schema, or None: no table yet."""
    found = await (await conn.execute("SELECT to_regclass('keycask_schema')")).fetchone()
    if found is None or found[0] is None:
        return None
    row = await (await conn.execute("SELECT version FROM keycask_schema")).fetchone()
    return None if row is None else int(row[0])


def _check_version(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StorageSchemaError(
            f"the database's keycask schema is version {version}, but this keycask"
            f" knows only up to version {SCHEMA_VERSION}: upgrade keycask"
        )


async def migrate(conn: AsyncConnection[TupleRow], lock_timeout: float) -> None:
    encoding = await (await conn.execute("SHOW server_encoding")).fetchone()
    if encoding is None or encoding[0] != "UTF8":
        # Only UTF-8 gives code point ordering under COLLATE "C".
        raise StorageSchemaError(f"the database encoding must be UTF8, not {encoding}")
    current = await _schema_version(conn)
    if current == SCHEMA_VERSION:
        return  # nothing to do, and so no lock that anybody could keep from us
    _check_version(current or 0)
    async with conn.transaction():
        row = await (
            await conn.execute("SELECT oid FROM pg_namespace WHERE nspname = current_schema()")
        ).fetchone()
        if row is None:
            raise StorageSchemaError(
                "no schema of the search_path exists to hold keycask's tables: create it"
            )
        # The store's own lock, as for the locks of pgcoord.py: keyed by the
        # schema the tables are (or will be) in, since the table may not
        # exist yet. Another store in another schema never waits for it.
        key = (int(row[0]) << 8) | _MIGRATION_LOCK
        await conn.execute(
            "SELECT set_config('lock_timeout', %s, true)", (f"{int(lock_timeout * 1000)}ms",)
        )
        try:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        except LockNotAvailable:
            raise LockTimeout(
                f"another session held this store's schema migration lock for over"
                f" {lock_timeout:g} s (a node migrating, or a role that should not be"
                " able to connect to keycask's database: see docs/deployment.md)"
            ) from None
        await conn.execute("SELECT set_config('lock_timeout', '0', true)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS keycask_schema ("
            " one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),"
            " version INTEGER NOT NULL)"
        )
        await conn.execute("INSERT INTO keycask_schema (version) VALUES (0) ON CONFLICT DO NOTHING")
        version = await _schema_version(conn) or 0
        _check_version(version)
        for statement in _MIGRATIONS[version:]:
            await conn.execute(statement)
        if version != SCHEMA_VERSION:
            await conn.execute("UPDATE keycask_schema SET version = %s", (SCHEMA_VERSION,))


_OWN_TABLES = ("keycask_kv", "keycask_epoch", "keycask_schema")


async def check_objects(conn: AsyncConnection[TupleRow]) -> None:
    """Refuse keycask's tables when something keycask did not make acts on
    them: a trigger (``RETURN NULL`` on a delete would make DeleteAccessKey
    report success and change nothing), a rule, or row-level security. The
    barrier authenticates values, not whether a write happened."""
    found = await (
        await conn.execute(
            "SELECT 'trigger', c.relname, t.tgname FROM pg_trigger t"
            " JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE NOT t.tgisinternal AND t.tgrelid = ANY(%(own)s::regclass[])"
            " UNION ALL SELECT 'rule', c.relname, r.rulename FROM pg_rewrite r"
            " JOIN pg_class c ON c.oid = r.ev_class"
            " WHERE r.rulename <> '_RETURN' AND r.ev_class = ANY(%(own)s::regclass[])"
            " UNION ALL SELECT 'row-level security', c.relname, c.relname FROM pg_class c"
            " WHERE c.oid = ANY(%(own)s::regclass[]) AND (c.relrowsecurity OR c.relkind <> 'r')",
            {"own": list(_OWN_TABLES)},
        )
    ).fetchall()
    if found:
        kind, table, name = found[0]
        raise StorageIntegrityError(
            f"keycask's table {table} has a {kind} keycask did not create ({name!r}); "
            "refusing to use the store (drop it, then start again)"
        )


async def check_schema(conn: AsyncConnection[TupleRow], where: str) -> None:
    found = await (
        await conn.execute("SELECT to_regclass('keycask_schema'), to_regclass('keycask_kv')")
    ).fetchone()
    if found is None or found[0] is None or found[1] is None:
        raise StorageSchemaError(f"PostgreSQL at {where} holds no keycask store")
    row = await (await conn.execute("SELECT version FROM keycask_schema")).fetchone()
    if row is None or int(row[0]) != SCHEMA_VERSION:
        raise StorageSchemaError(
            f"the keycask schema at {where} is version {None if row is None else row[0]}, "
            f"not {SCHEMA_VERSION}: start a keycask server of this version on it first"
        )
