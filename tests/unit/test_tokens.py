"""Bearer tokens (auth/tokens.py) against a real barrier: only the hash at
rest, expiry, revocation (and a revoked row put back from an older copy of
the store staying dead), the principal's deletion or re-creation, and the
cache dropped by the commits that touch a token."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keycask.auth.credentials import CredentialStore
from keycask.auth.tokens import MAX_TTL, TokenStore, token_hash
from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.errors import ValidationException
from keycask.ports import Put
from keycask.storage.sqlite import SQLiteStorage

ACCOUNT = "111122223333"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Barrier, CredentialStore, TokenStore]]:
    storage = SQLiteStorage(tmp_path / "tokens.db")
    barrier = await Barrier.open(storage, KeyMaterial.generate())
    credentials = CredentialStore(barrier)
    yield barrier, credentials, TokenStore(barrier, credentials)
    await storage.close()


async def _token(credentials: CredentialStore, tokens: TokenStore, name: str,
                 ttl: int = 3600) -> str:  # fmt: skip
    principal = await credentials.get_principal(ACCOUNT, name)
    if principal is None:
        principal = (await credentials.create_principal(ACCOUNT, name, admin=False)).principal
    token, _, writes = tokens.stage_create(principal, ttl, NOW, 0)
    await tokens.commit(writes)
    return token


async def test_a_token_resolves_to_its_principal_until_it_expires(
    stores: tuple[Barrier, CredentialStore, TokenStore],
) -> None:
    barrier, credentials, tokens = stores
    token = await _token(credentials, tokens, "alice", ttl=600)
    assert token.startswith("kct.") and len(token) == 47
    resolved = await tokens.resolve(token, NOW + timedelta(seconds=599))
    assert resolved is not None and resolved.principal.name == "alice"
    assert await tokens.resolve(token, NOW + timedelta(seconds=600)) is None
    # Stored by its hash, and the token is in no stored value.
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert token_hash(token) == digest
    assert await barrier.get("token/" + digest) is not None
    for _, entry in await barrier.list("token/", "", 1000):
        assert token.encode() not in entry.value
    # A token one character off, or not a token at all, resolves to nothing.
    assert await tokens.resolve(token[:-1] + ("A" if token[-1] != "A" else "B"), NOW) is None
    assert await tokens.resolve("kct.", NOW) is None


async def test_ttl_bounds(stores: tuple[Barrier, CredentialStore, TokenStore]) -> None:
    _, credentials, tokens = stores
    principal = (await credentials.create_principal(ACCOUNT, "bob", admin=False)).principal
    for ttl in (0, 59, MAX_TTL + 1):
        with pytest.raises(ValidationException):
            tokens.stage_create(principal, ttl, NOW, 0)
    with pytest.raises(ValidationException, match="limit"):
        tokens.stage_create(principal, 3600, NOW, 100)


async def test_revocation_holds_even_against_a_row_put_back(
    stores: tuple[Barrier, CredentialStore, TokenStore],
) -> None:
    barrier, credentials, tokens = stores
    token = await _token(credentials, tokens, "carol")
    assert await tokens.resolve(token, NOW) is not None  # now cached
    digest = token_hash(token)
    old = await barrier.storage.get("token/" + digest)
    assert old is not None
    record = await tokens.by_token(token)
    assert record is not None and (await tokens.by_id(record.token_id)) == record
    await tokens.commit(tokens.stage_revoke(record))
    assert await tokens.resolve(token, NOW) is None  # the cache was dropped
    # The untrusted store given the old row back: the tombstone keeps it dead.
    await barrier.storage.commit([Put("token/" + digest, old.value, expect=None)])
    tokens.clear()
    assert await tokens.resolve(token, NOW) is None


async def test_deleting_or_recreating_the_principal_revokes_its_tokens(
    stores: tuple[Barrier, CredentialStore, TokenStore],
) -> None:
    _, credentials, tokens = stores
    token = await _token(credentials, tokens, "dave")
    assert await tokens.resolve(token, NOW) is not None
    stored = await credentials.stored_principal(ACCOUNT, "dave")
    assert stored is not None
    await credentials.commit(credentials.stage_delete_principal(stored))
    assert await tokens.resolve(token, NOW) is None
    # Another principal of the same name is another principal.
    await credentials.create_principal(ACCOUNT, "dave", admin=False)
    assert await tokens.resolve(token, NOW) is None


async def test_another_process_commit_drops_the_cache(
    stores: tuple[Barrier, CredentialStore, TokenStore],
) -> None:
    barrier, credentials, tokens = stores
    token = await _token(credentials, tokens, "erin")
    assert await tokens.resolve(token, NOW) is not None
    record = await tokens.by_token(token)
    assert record is not None
    # Revoked by another process: straight to the barrier, no forget here...
    await barrier.commit(tokens.stage_revoke(record))
    assert await tokens.resolve(token, NOW) is not None  # ...so still cached,
    credentials.clear()  # until freshness sees the commit and clears
    assert await tokens.resolve(token, NOW) is None
