"""Rolling the untrusted store back, through a real --dev server and its real
SQLite file (review issue 13, finding 10).

The barrier binds a value to its path, not to a version, so old rows put back
still authenticate. What keycask defends:

- an ``accesskey/`` row put back (a deleted or deactivated key) does not bring
  the key back: the owner's document lists its keys and which are inactive,
  and a deleted key leaves a tombstone, so even the owner's rows of a deleted
  principal put back with the key's row stay dead;
- a whole store rolled back below what a node saw is refused: at start with a
  clear error (an operator who restored on purpose removes ``store-epoch``),
  and under a running node, which seals itself within a tick.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import Cluster, pg_schema
from test_principals_e2e import Cli

from conftest import Server

ACCOUNT = "000000000000"
LIST_KEYS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "kms:ListKeys", "Resource": "*"}],
}


def _code(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


def _answer(call: Callable[[], Any]) -> str:
    """The error code of ``call``, or "ok"."""
    try:
        call()
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "ok"


def _db(server: Server) -> Path:
    return server.data_dir / "keycask.db"


def _rows(server: Server, paths: list[str]) -> dict[str, tuple[bytes, int]]:
    conn = sqlite3.connect(_db(server))
    try:
        found = {}
        for path in paths:
            row = conn.execute("SELECT value, revision FROM kv WHERE path = ?", (path,)).fetchone()
            assert row is not None, path
            found[path] = (bytes(row[0]), int(row[1]))
        return found
    finally:
        conn.close()


def _put_back(server: Server, rows: dict[str, tuple[bytes, int]]) -> None:
    """What an attacker with write access to the file does: old rows, as they were."""
    conn = sqlite3.connect(_db(server), isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("BEGIN IMMEDIATE")
        for path, (value, revision) in rows.items():
            conn.execute(
                "INSERT INTO kv (path, value, revision) VALUES (?, ?, ?) ON CONFLICT(path)"
                " DO UPDATE SET value = excluded.value, revision = excluded.revision",
                (path, value, revision),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _principal(cli: Cli, tmp_path: Path, name: str) -> dict[str, Any]:
    made: dict[str, Any] = cli.json("CreatePrincipal", "create", name, "--json")
    policy = tmp_path / f"{name}.json"
    policy.write_text(json.dumps(LIST_KEYS))
    cli.ok("PutPrincipalPolicy", "put-policy", name, "--policy-name", "lk", "--file", str(policy))
    return made


@pytest.mark.slow
def test_access_key_rows_put_back_stay_dead(fresh_server: Server, tmp_path: Path) -> None:
    server, cli = fresh_server, Cli(fresh_server)
    name = f"replay-{uuid.uuid4().hex[:6]}"
    first = _principal(cli, tmp_path, name)
    second = cli.json("CreateAccessKey", "access-keys", "create", name, "--json")
    key1 = server.client((first["AccessKeyId"], first["SecretAccessKey"]))
    key2 = server.client((second["AccessKeyId"], second["SecretAccessKey"]))
    assert key1.list_keys()["Keys"] == key2.list_keys()["Keys"]
    row1 = f"accesskey/{first['AccessKeyId']}"
    row2 = f"accesskey/{second['AccessKeyId']}"
    owner = f"principal/{ACCOUNT}/{name}"
    before = _rows(server, [row1, row2, owner])

    # A deactivated key whose old (active) row is put back stays inactive.
    # (Put back before the key's next use: no cache holds it then.)
    cli.ok("UpdateAccessKey", "access-keys", "deactivate", first["AccessKeyId"])
    _put_back(server, {row1: before[row1]})
    assert _code(key1.list_keys) == "UnrecognizedClientException"
    listed = cli.json("ListAccessKeys", "access-keys", "list", name, "--json")
    assert {k["AccessKeyId"]: k["Status"] for k in listed}[first["AccessKeyId"]] == "Inactive"

    # A deleted key whose row is put back stays deleted.
    cli.ok("DeleteAccessKey", "access-keys", "delete", second["AccessKeyId"])
    assert _code(key2.list_keys) == "UnrecognizedClientException"
    _put_back(server, {row2: before[row2]})
    assert _code(key2.list_keys) == "UnrecognizedClientException"

    # A deleted principal whose rows (owner and keys, as they were when both
    # keys worked) are put back together stays deleted.
    cli.ok("DeletePrincipal", "delete", name)
    _put_back(server, before)
    assert _code(key1.list_keys) == "UnrecognizedClientException"
    assert _code(key2.list_keys) == "UnrecognizedClientException"

    # And after a restart (no cache at all), the same.
    server.restart()
    assert _code(key1.list_keys) == "UnrecognizedClientException"
    assert _code(key2.list_keys) == "UnrecognizedClientException"


def _copy_store(server: Server, to: Path) -> None:
    """A consistent copy of the live store (SQLite's online backup)."""
    source = sqlite3.connect(_db(server))
    target = sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _roll_back(server: Server, copy: Path) -> None:
    """The whole kv table replaced by the copy's, in one transaction."""
    conn = sqlite3.connect(_db(server), isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("ATTACH DATABASE ? AS old", (str(copy),))
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM main.kv")
        conn.execute("INSERT INTO main.kv SELECT * FROM old.kv")
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE old")
    finally:
        conn.close()


def _epoch_seen(server: Server) -> int:
    return int((server.data_dir / "store-epoch").read_text())


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_whole_store_rolled_back_under_a_running_server_seals_it(
    fresh_server: Server, tmp_path: Path
) -> None:
    server, cli = fresh_server, Cli(fresh_server)
    made = _principal(cli, tmp_path, "leaver")
    leaver = server.client((made["AccessKeyId"], made["SecretAccessKey"]))
    assert leaver.list_keys()["Keys"] == []
    copy = tmp_path / "copy.db"
    _copy_store(server, copy)
    seen = _epoch_seen(server)

    cli.ok("DeletePrincipal", "delete", "leaver")
    assert _code(leaver.list_keys) == "UnrecognizedClientException"
    # The deletion moves the store's epoch (in the background) past the copy's.
    _wait(lambda: _epoch_seen(server) > seen, "the epoch to move after the deletion")

    _roll_back(server, copy)
    # The node notices on its next tick (the revived principal may slip in
    # before it: a second at most) and seals: nothing is answered from the
    # rolled-back store, the revived principal least of all.
    _wait(lambda: _answer(leaver.list_keys) == "KMSInvalidStateException", "the node to seal")
    assert _code(server.client().list_keys) == "KMSInvalidStateException"
    assert server.log_path is not None
    assert "the store was rolled back" in server.log_path.read_text()


@pytest.mark.slow
def test_whole_store_rolled_back_while_stopped_is_refused_at_start(
    fresh_server: Server, tmp_path: Path
) -> None:
    server, cli = fresh_server, Cli(fresh_server)
    made = _principal(cli, tmp_path, "leaver")
    leaver = server.client((made["AccessKeyId"], made["SecretAccessKey"]))
    assert leaver.list_keys()["Keys"] == []
    copy = tmp_path / "copy.db"
    _copy_store(server, copy)
    cli.ok("DeletePrincipal", "delete", "leaver")
    server.stop()

    # The older store put in place of the newer one, file and all.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{_db(server)}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, _db(server))
    with pytest.raises(RuntimeError) as refused:
        server.start()
    message = str(refused.value)
    assert "the store was rolled back" in message, message
    assert str(server.data_dir / "store-epoch") in message, message
    server.proc = None

    # An operator who restored the older store on purpose says so.
    (server.data_dir / "store-epoch").unlink()
    server.start()
    assert leaver.list_keys()["Keys"] == []


@pytest.mark.slow
def test_postgres_store_rolled_back_under_a_cluster_seals_every_node(tmp_path: Path) -> None:
    with pg_schema() as dsn:
        cluster = Cluster(tmp_path, dsn, size=2).start()
        try:
            first, second = cluster.nodes
            cli = Cli(first)
            made = _principal(cli, tmp_path, "leaver")
            keys = [
                node.client((made["AccessKeyId"], made["SecretAccessKey"]))
                for node in (first, second)
            ]
            assert all(k.list_keys()["Keys"] == [] for k in keys)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE TABLE old_kv AS SELECT * FROM keycask_kv")
            seen = [_epoch_seen(node) for node in cluster.nodes]

            cli.ok("DeletePrincipal", "delete", "leaver")
            # Both nodes see the store move past the copy (the second on its tick).
            for node, before in zip(cluster.nodes, seen, strict=True):
                _wait(lambda n=node, b=before: _epoch_seen(n) > b, "the epoch to move")

            with psycopg.connect(dsn) as conn:
                conn.execute("DELETE FROM keycask_kv")
                conn.execute("INSERT INTO keycask_kv SELECT * FROM old_kv")
            for k in keys:
                _wait(lambda k=k: _answer(k.list_keys) == "KMSInvalidStateException", "a seal")
        finally:
            cluster.stop()
