"""PostgreSQL DSNs: no password on the command line, none in any message, and
TLS that cannot fall back to plaintext to a store on another host (finding 12).
Nothing here connects anywhere: every refusal comes before a connection."""

from __future__ import annotations

import pytest

from keycask import config
from keycask.storage.pgdsn import StorageConfigError, transport_problem
from keycask.storage.postgres import PostgresStorage

SECRET = "s3cret-Pw-91"


@pytest.mark.parametrize(
    ("dsn", "env"),
    [
        ("postgresql://keycask@db.example.invalid:5432/keycask", {}),
        ("postgresql://keycask@db.example.invalid/keycask?sslmode=prefer", {}),
        ("postgresql://keycask@db.example.invalid/keycask?sslmode=allow", {}),
        ("postgresql://keycask@/keycask", {"PGHOST": "db.example.invalid"}),
        ("postgresql://keycask@127.0.0.1,db.example.invalid/keycask", {}),
        ("postgresql://keycask@localhost/keycask?hostaddr=192.0.2.10", {}),
    ],
)
def test_a_remote_store_without_tls_is_refused(dsn: str, env: dict[str, str]) -> None:
    problem = transport_problem(dsn, env)
    assert problem is not None
    assert "sslmode=require" in problem and "--storage-insecure" in problem


@pytest.mark.parametrize(
    ("dsn", "env"),
    [
        ("postgresql://keycask@127.0.0.1:5432/keycask", {}),
        ("postgresql://keycask@[::1]:5432/keycask", {}),
        ("postgresql://keycask@localhost/keycask", {}),
        ("postgresql://keycask@/keycask", {}),  # libpq's default Unix socket
        ("postgresql://keycask@/keycask?host=/var/run/postgresql", {}),
        ("postgresql://keycask@db.example.invalid/keycask?sslmode=require", {}),
        ("postgresql://keycask@db.example.invalid/keycask?sslmode=verify-full", {}),
        ("postgresql://keycask@db.example.invalid/keycask", {"PGSSLMODE": "verify-ca"}),
    ],
)
def test_local_or_tls_stores_are_allowed(dsn: str, env: dict[str, str]) -> None:
    assert transport_problem(dsn, env) is None


async def test_open_refuses_before_connecting_unless_told() -> None:
    # db.example.invalid never resolves: a connection attempt would fail with
    # another message, so this proves the refusal comes first.
    with pytest.raises(StorageConfigError, match="is not on this host"):
        await PostgresStorage.open("postgresql://keycask@db.example.invalid/keycask")


async def test_a_dsn_that_does_not_parse_is_not_echoed() -> None:
    with pytest.raises(StorageConfigError) as caught:
        await PostgresStorage.open(f"postgresql://keycask:{SECRET}@[::1/keycask")
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_password_on_the_command_line_is_refused_without_repeating_it() -> None:
    for dsn in (
        f"postgresql://keycask:{SECRET}@127.0.0.1/keycask",
        f"postgresql://keycask@127.0.0.1/keycask?password={SECRET}",
    ):
        with pytest.raises(config.ConfigError, match="PGPASSWORD") as caught:
            config.load(dev=True, storage=dsn, env={})
        assert SECRET not in str(caught.value)
    # The environment is private to the process: a DSN there may hold one.
    settings = config.load(
        dev=True, env={"KEYCASK_STORAGE": f"postgresql://keycask:{SECRET}@127.0.0.1/keycask"}
    )
    assert settings.storage is not None and not settings.storage_insecure
    insecure = config.load(dev=True, env={"KEYCASK_STORAGE_INSECURE": "1"})
    assert insecure.storage_insecure
