"""A PostgreSQL role with nothing but CONNECT against a keycask node.

Advisory locks need no privilege, so such a role can take the store's write
lock or its jobs lock (their keys follow from the table's oid, which the
catalogs show anyone). The node must answer writes with AWS's retryable
error instead of hanging, and say when scheduled jobs stop running.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import ClientError
from cluster import Cluster, audit_records, client, pg_schema, poll
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import dev_call
from pgserver import shared_dsn

WRITE_LOCK, JOBS_LOCK = 1, 2  # storage/pgcoord.py


@contextlib.contextmanager
def connect_only_role() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    role = f"kc_hostile_{secrets.token_hex(6)}"
    dsn = shared_dsn()
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        try:
            with psycopg.connect(make_conninfo(dsn, user=role), autocommit=True) as conn:
                yield conn
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def lock_key(hostile: psycopg.Connection[tuple[object, ...]], dsn: str, purpose: int) -> int:
    """The store's advisory lock key, as anyone can work it out."""
    schema = str(conninfo_to_dict(dsn)["options"]).split("=", 1)[1]
    row = hostile.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = 'keycask_kv'",
        (schema,),
    ).fetchone()
    assert row is not None
    return (int(str(row[0])) << 8) | purpose


def _code(call: object) -> str:
    with pytest.raises(ClientError) as caught:
        call()  # type: ignore[operator]
    return str(caught.value.response["Error"]["Code"])


@pytest.mark.slow
def test_a_held_write_lock_makes_writes_fail_retryably_not_hang(tmp_path: Path) -> None:
    with pg_schema() as dsn, connect_only_role() as hostile:
        cluster = Cluster(tmp_path, dsn, size=1)
        node = cluster.nodes[0]
        node.env_extra["KEYCASK_LOCK_TIMEOUT"] = "1"
        cluster.start()
        try:
            kms = client(node, read_timeout=30)
            key = kms.create_key()["KeyMetadata"]["KeyId"]
            hostile.execute("SELECT pg_advisory_lock(%s)", (lock_key(hostile, dsn, WRITE_LOCK),))
            # The model lists DependencyTimeoutException for DisableKey and
            # PutKeyPolicy; TagResource has none, so KMSInternalException.
            assert _code(lambda: kms.disable_key(KeyId=key)) == "DependencyTimeoutException"
            policy = kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
            assert (
                _code(lambda: kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy))
                == "DependencyTimeoutException"
            )
            assert (
                _code(lambda: kms.tag_resource(KeyId=key, Tags=[{"TagKey": "a", "TagValue": "b"}]))
                == "KMSInternalException"
            )
            # Reads do not need the lock.
            kms.encrypt(KeyId=key, Plaintext=b"still serving")
            records = audit_records(node.data_dir)
            failed = {r["operation"]: r["error_code"] for r in records if r["outcome"] == "error"}
            assert failed == {
                "DisableKey": "DependencyTimeoutException",
                "PutKeyPolicy": "DependencyTimeoutException",
                "TagResource": "KMSInternalException",
            }
            assert node.log_path is not None
            assert "kc_hostile_" in node.log_path.read_text()  # who held it
            hostile.execute("SELECT pg_advisory_unlock_all()")
            kms.disable_key(KeyId=key)
            assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
        finally:
            cluster.stop()


@pytest.mark.slow
def test_jobs_that_nobody_runs_are_reported(tmp_path: Path) -> None:
    with pg_schema() as dsn, connect_only_role() as hostile:
        cluster = Cluster(tmp_path, dsn, size=1)
        node = cluster.nodes[0]
        cluster.start()
        try:
            # Taken while the node is down: it never gets to run jobs.
            node.stop(signal.SIGKILL)
            hostile.execute("SELECT pg_advisory_lock(%s)", (lock_key(hostile, dsn, JOBS_LOCK),))
            node.start()
            kms = client(node)
            key = kms.create_key()["KeyMetadata"]["KeyId"]
            kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
            cluster.advance(node, 91 * 86400)

            def jobs() -> str:
                answer = dev_call(node.endpoint, cluster.admin, {}, target="KeycaskOperator.Status")
                return str(answer["jobs"])

            late = poll(
                "Status to report overdue jobs",
                lambda: j if (j := jobs()).startswith("overdue by ") else None,
                30,
                interval=1,
            )
            assert int(late.split()[2]) >= 86000  # came due a day of lifecycle time ago
            assert node.log_path is not None
            assert "scheduled jobs do not run: rotate for key " + key in node.log_path.read_text()
            assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
            # Freed, the node takes the jobs over, rotates, and says so.
            hostile.execute("SELECT pg_advisory_unlock_all()")
            poll("jobs to run again", lambda: True if jobs() == "ok" else None, 30, interval=1)
            assert len(kms.list_key_rotations(KeyId=key)["Rotations"]) == 1
        finally:
            cluster.stop()
