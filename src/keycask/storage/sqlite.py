"""The embedded default: one SQLite file in WAL mode.

Reads run on the caller's thread through a dedicated read connection (WAL lets
them proceed while a write commits); writes go to one writer thread because a
commit with ``synchronous=FULL`` waits for fsync, which must not block the
event loop.

Deleted means gone from the files: the writer runs with ``secure_delete``
(SQLite zeroes a deleted row's bytes in its page, and pages it frees), and a
commit that deletes is followed by a ``TRUNCATE`` checkpoint, which copies the
zeroed pages into the database file and empties the WAL, where the row's
earlier frames would otherwise stay until overwritten. So whoever later holds
the data dir and the root key finds no deleted key material in it. Backups
taken before the deletion still hold it (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from keycask.errors import StorageConflict, StorageIntegrityError
from keycask.ports import Delete, Entry, Put, Write

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    path TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
"""


def _normal(sql: str) -> str:
    return " ".join(sql.replace("IF NOT EXISTS ", "").split())


_KV_SQL = _normal(_SCHEMA.strip().rstrip(";"))


def check_schema(conn: sqlite3.Connection, where: object) -> None:
    """Refuse a database holding any schema object keycask did not make.

    A trigger (``RAISE(IGNORE)`` on a delete), a view or an index changes what
    a write or a read does without touching a single barrier value, so the
    barrier cannot see it: a deleted access key would stay, reported deleted.
    keycask's store is one table, ``kv``, exactly as ``_SCHEMA`` creates it;
    SQLite's own statistics tables (ANALYZE, PRAGMA optimize) only guide the
    query planner.
    """
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    for kind, name, table, sql in rows:
        if kind == "table" and name == "kv" and _normal(str(sql or "")) == _KV_SQL:
            continue
        if kind == "table" and str(name).startswith("sqlite_stat"):
            continue
        raise StorageIntegrityError(
            f"{where} holds a schema object keycask did not create: {kind} {name!r}"
            f" on {table!r}; keycask refuses to open it (remove it, or restore a backup)"
        )


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA secure_delete=ON")
    # FULL: a commit that acknowledges a client survives power loss.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _prefix_end(prefix: str) -> str:
    # Every path starting with ``prefix`` sorts below prefix + U+10FFFF.
    return prefix + "\U0010ffff"


class SQLiteStorage:
    """``Storage`` over a single SQLite database file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Create the file private before SQLite opens it: SQLite gives the
        # -wal and -shm files the database file's mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        path.chmod(0o600)
        self._writer = _connect(path)
        self._writer.executescript(_SCHEMA)
        try:
            check_schema(self._writer, path)
        except BaseException:
            self._writer.close()
            raise
        self._reader = _connect(path)
        self._read_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keycask-sqlite")
        # A deletion whose WAL frames are not yet truncated away (a reader in
        # another process held an old snapshot): retried after later commits.
        self._scrub_due = False

    @property
    def path(self) -> Path:
        return self._path

    async def get(self, path: str) -> Entry | None:
        return self.get_sync(path)

    def get_sync(self, path: str) -> Entry | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT value, revision FROM kv WHERE path = ?", (path,)
            ).fetchone()
        return None if row is None else Entry(bytes(row[0]), int(row[1]))

    async def list(
        self, prefix: str, after: str = "", limit: int = 1000
    ) -> Sequence[tuple[str, Entry]]:
        return self.list_sync(prefix, after, limit)

    def list_sync(
        self, prefix: str, after: str = "", limit: int = 1000
    ) -> Sequence[tuple[str, Entry]]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT path, value, revision FROM kv WHERE path >= ? AND path > ? AND path < ?"
                " ORDER BY path LIMIT ?",
                (prefix, after, _prefix_end(prefix), limit),
            ).fetchall()
        return [(str(p), Entry(bytes(v), int(r))) for p, v, r in rows]

    async def commit(self, writes: Sequence[Write]) -> None:
        if not writes:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.commit_sync, writes)

    def commit_sync(self, writes: Sequence[Write]) -> None:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in writes:
                self._apply(conn, write)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if self._scrub_due or any(isinstance(w, Delete) for w in writes):
            self._scrub()

    def _scrub(self) -> None:
        """Empty the WAL of frames that may hold deleted rows. Best effort
        after the commit (which stands either way): if another process's
        reader holds the WAL, the next commit tries again."""
        try:
            busy = self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            busy = 1
        self._scrub_due = bool(busy)

    @staticmethod
    def _apply(conn: sqlite3.Connection, write: Write) -> None:
        row = conn.execute("SELECT revision FROM kv WHERE path = ?", (write.path,)).fetchone()
        current = 0 if row is None else int(row[0])
        if write.expect is not None and write.expect != current:
            raise StorageConflict(
                f"{write.path}: expected revision {write.expect}, found {current}"
            )
        if isinstance(write, Put):
            changed = conn.execute(
                "INSERT INTO kv (path, value, revision) VALUES (?, ?, ?)"
                " ON CONFLICT(path) DO UPDATE SET value = excluded.value,"
                " revision = excluded.revision",
                (write.path, write.value, current + 1),
            ).rowcount
            expected = 1
        elif isinstance(write, Delete):
            changed = conn.execute("DELETE FROM kv WHERE path = ?", (write.path,)).rowcount
            expected = 0 if row is None else 1
        else:
            return
        # A trigger planted after open (RAISE(IGNORE)) makes a statement
        # succeed having changed nothing: the commit must not claim it did.
        if changed != expected:
            raise StorageIntegrityError(
                f"{write.path}: the write changed {changed} rows instead of {expected}"
                " (a trigger in the database?); nothing was committed"
            )

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        self._executor.shutdown(wait=True)
        with self._read_lock:
            self._reader.close()
        self._writer.close()
