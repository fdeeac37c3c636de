"""Session tokens (auth/sessions.py) over a real barrier on a real SQLite
store: what a token carries comes back whole, and nothing else opens."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keycask.auth.sessions import (
    KEEP_AFTER_USE,
    MAX_TOKEN_CHARS,
    ROTATE_AFTER,
    TOKEN_KEYS_PATH,
    NewSession,
    SessionClaims,
    SessionTokens,
    decode_claims,
    encode_claims,
    is_session_access_key_id,
)
from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.errors import (
    ExpiredTokenException,
    PackedPolicyTooLargeException,
    Sealed,
    UnrecognizedClientException,
)
from keycask.storage.sqlite import SQLiteStorage

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "111122223333"


def new_session(**changes: object) -> NewSession:
    fields: dict[str, object] = {
        "account": ACCOUNT,
        "role_name": "app",
        "role_id": "AROAEXAMPLEEXAMPLE12",
        "session_name": "build-42",
        "expires": int(NOW.timestamp()) + 3600,
        "policy": '{"Version":"2012-10-17","Statement":[]}',
        "tags": (("team", "blue"), ("env", "prod")),
        "transitive_tag_keys": ("team",),
        "source_identity": "alice",
        "federated_provider": "arn:aws:iam::111122223333:oidc-provider/idp.example/x",
        "source_arn": "arn:aws:iam::111122223333:user/alice",
    }
    fields.update(changes)
    return NewSession(**fields)  # type: ignore[arg-type]


def session_at(when: datetime) -> NewSession:
    """A session of an hour, issued ``when``."""
    return new_session(expires=int(when.timestamp()) + 3600)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[Barrier, SQLiteStorage, KeyMaterial]]:
    storage = SQLiteStorage(tmp_path / "s.db")
    root = KeyMaterial.generate()
    barrier = await Barrier.open(storage, root)
    yield barrier, storage, root
    await storage.close()


async def issue(
    tokens: SessionTokens, barrier: Barrier, when: datetime = NOW
) -> tuple[SessionClaims, str]:
    issued = await tokens.issue(new_session(expires=int(when.timestamp()) + 3600), when)
    if issued.writes:
        await barrier.commit(issued.writes)
    return issued.claims, issued.token


async def test_round_trip(store: tuple[Barrier, SQLiteStorage, KeyMaterial]) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    issued = await tokens.issue(new_session(), NOW)
    assert len(issued.writes) == 1 and issued.writes[0].path == TOKEN_KEYS_PATH
    await barrier.commit(issued.writes)
    claims = issued.claims
    assert is_session_access_key_id(claims.access_key_id)
    assert len(claims.secret) == 40 and claims.secret not in repr(claims)
    assert claims.issued == int(NOW.timestamp())
    assert claims.arn == "arn:aws:sts::111122223333:assumed-role/app/build-42"
    assert claims.role_arn == "arn:aws:iam::111122223333:role/app"
    assert claims.user_id == "AROAEXAMPLEEXAMPLE12:build-42"
    # A fresh SessionTokens (no cache) opens it from the stored keys.
    opened = await SessionTokens(barrier).open(issued.token, NOW + timedelta(minutes=5))
    assert opened == claims
    # Tokens are plain base64: every character is allowed in a header value.
    assert base64.b64encode(base64.b64decode(issued.token)).decode() == issued.token
    # The secret is not readable from the token.
    assert claims.secret.encode() not in base64.b64decode(issued.token)


async def test_every_token_has_its_own_credentials(
    store: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    first, token1 = await issue(tokens, barrier)
    second, token2 = await issue(tokens, barrier)
    assert token1 != token2
    assert first.access_key_id != second.access_key_id and first.secret != second.secret


async def test_a_session_must_end_after_it_begins(
    store: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, _, _ = store
    with pytest.raises(ValueError, match="expire after"):
        await SessionTokens(barrier).issue(new_session(expires=int(NOW.timestamp())), NOW)


async def test_one_key_per_day(store: tuple[Barrier, SQLiteStorage, KeyMaterial]) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    await issue(tokens, barrier)
    later = await tokens.issue(session_at(NOW + timedelta(hours=23)), NOW + timedelta(hours=23))
    assert later.writes == ()
    rotated_at = NOW + timedelta(seconds=ROTATE_AFTER + 1)
    rotated = await tokens.issue(session_at(rotated_at), rotated_at)
    assert len(rotated.writes) == 1


async def test_every_flipped_bit_is_refused(
    store: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    _, token = await issue(tokens, barrier)
    raw = base64.b64decode(token)
    for index in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[index] ^= 1 << bit
            with pytest.raises(UnrecognizedClientException):
                await tokens.open(base64.b64encode(bytes(flipped)).decode(), NOW)


async def test_every_truncation_is_refused(
    store: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    _, token = await issue(tokens, barrier)
    raw = base64.b64decode(token)
    for cut in range(len(raw)):
        with pytest.raises(UnrecognizedClientException):
            await tokens.open(base64.b64encode(raw[:cut]).decode(), NOW)
    for cut in range(len(token)):
        with pytest.raises(UnrecognizedClientException):
            await tokens.open(token[:cut], NOW)
    with pytest.raises(UnrecognizedClientException):
        await tokens.open(token + "AAAA", NOW)


async def test_an_unknown_key_id_is_refused(
    store: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    _, token = await issue(tokens, barrier)
    raw = bytearray(base64.b64decode(token))
    raw[1:9] = b"\x00" * 8
    with pytest.raises(UnrecognizedClientException):
        await tokens.open(base64.b64encode(bytes(raw)).decode(), NOW)


async def test_a_token_of_another_store_is_refused(
    store: tuple[Barrier, SQLiteStorage, KeyMaterial], tmp_path: Path
) -> None:
    barrier, _, _ = store
    other_storage = SQLiteStorage(tmp_path / "other.db")
    try:
        other = await Barrier.open(other_storage, KeyMaterial.generate())
        _, token = await issue(SessionTokens(other), other)
        with pytest.raises(UnrecognizedClientException):
            await SessionTokens(barrier).open(token, NOW)
    finally:
        await other_storage.close()


async def test_expired(store: tuple[Barrier, SQLiteStorage, KeyMaterial]) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    claims, token = await issue(tokens, barrier)
    expiry = datetime.fromtimestamp(claims.expires, UTC)
    assert await tokens.open(token, expiry - timedelta(seconds=1)) == claims
    for when in (expiry, expiry + timedelta(days=30)):
        with pytest.raises(ExpiredTokenException) as caught:
            await tokens.open(token, when)
        assert caught.value.code == "ExpiredTokenException"
        # The same, whether the token was opened before (cached) or not.
        with pytest.raises(ExpiredTokenException):
            await SessionTokens(barrier).open(token, when)


async def test_two_barriers_on_one_store_open_each_others_tokens(
    store: tuple[Barrier, SQLiteStorage, KeyMaterial], tmp_path: Path
) -> None:
    barrier, _, root = store
    second_storage = SQLiteStorage(tmp_path / "s.db")
    try:
        second = await Barrier.open(second_storage, root)
        node_a, node_b = SessionTokens(barrier), SessionTokens(second)
        claims_a, token_a = await issue(node_a, barrier)
        assert await node_b.open(token_a, NOW) == claims_a
        # Node B's key is node A's (one key list in the store): no new key.
        issued_b = await node_b.issue(new_session(), NOW)
        assert issued_b.writes == ()
        assert await node_a.open(issued_b.token, NOW) == issued_b.claims
        # A day later node B rotates; node A, which holds only the old key,
        # reads the new one when a token names it.
        later = NOW + timedelta(seconds=ROTATE_AFTER + 60)
        claims_b, token_b = await issue(node_b, second, later)
        assert await node_a.open(token_b, later) == claims_b
    finally:
        await second_storage.close()


async def test_rotation_keeps_old_tokens_opening(
    store: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    old = new_session(expires=int(NOW.timestamp()) + 12 * 3600)
    issued = await tokens.issue(old, NOW)
    await barrier.commit(issued.writes)
    rotated_at = NOW + timedelta(seconds=ROTATE_AFTER + 1)
    newer = await tokens.issue(new_session(expires=int(rotated_at.timestamp()) + 3600), rotated_at)
    assert newer.writes
    await barrier.commit(newer.writes)
    reader = SessionTokens(barrier)
    # The old key still opens its token (12 h session, checked for expiry
    # at a time within it), and the new key its own.
    assert await reader.open(issued.token, NOW + timedelta(hours=11)) == issued.claims
    assert await reader.open(newer.token, rotated_at) == newer.claims
    # A key is dropped only KEEP_AFTER_USE after its successor was made.
    much_later = rotated_at + timedelta(seconds=KEEP_AFTER_USE + ROTATE_AFTER)
    latest = await tokens.issue(session_at(much_later), much_later)
    await barrier.commit(latest.writes)
    stored = await barrier.get(TOKEN_KEYS_PATH)
    assert stored is not None
    ids = [entry["id"] for entry in orjson.loads(stored.value)]
    first_id = base64.b64decode(issued.token)[1:9].hex()
    assert first_id not in ids and len(ids) == 2


async def test_a_failed_commit_leaves_no_token_under_an_unstored_key(
    store: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    lost = await tokens.issue(new_session(), NOW)  # its writes never commit
    assert lost.writes
    again = await tokens.issue(new_session(), NOW)
    assert again.writes  # not sealed under the key that was never stored
    await barrier.commit(again.writes)
    assert await SessionTokens(barrier).open(again.token, NOW) == again.claims
    with pytest.raises(UnrecognizedClientException):
        await SessionTokens(barrier).open(lost.token, NOW)


async def test_size_cap(store: tuple[Barrier, SQLiteStorage, KeyMaterial]) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    tags = tuple((f"key{i:03d}", "v" * 256) for i in range(50))
    with pytest.raises(PackedPolicyTooLargeException):
        await tokens.issue(new_session(tags=tags), NOW)
    fits = await tokens.issue(new_session(policy="x" * 2048, tags=tags[:10]), NOW)
    assert len(fits.token) <= MAX_TOKEN_CHARS
    with pytest.raises(UnrecognizedClientException):
        await tokens.open("A" * (MAX_TOKEN_CHARS + 4), NOW)


async def test_seal_forgets_keys_and_opened_tokens(
    store: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, _, _ = store
    tokens = SessionTokens(barrier)
    _, token = await issue(tokens, barrier)
    await tokens.open(token, NOW)
    tokens.forget()
    barrier.seal()
    # Not answered from memory: the sealed barrier reads nothing.
    with pytest.raises(Sealed):
        await tokens.open(token, NOW)


def test_claims_codec_refuses_other_shapes() -> None:
    claims = SessionClaims("ASIAAAAAAAAAAAAAAAAA", "s" * 40, ACCOUNT, "app", "AROAX", "n", 1, 2)
    assert decode_claims(encode_claims(claims)) == claims
    doc = orjson.loads(encode_claims(claims))
    broken: object
    for broken in (
        {**doc, "extra": 1},
        {k: v for k, v in doc.items() if k != "exp"},
        {**doc, "exp": "2"},
        {**doc, "exp": True},
        {**doc, "tags": [["a"]]},
        {**doc, "tags": {"a": "b"}},
        {**doc, "pol": 3},
        [],
    ):
        with pytest.raises((ValueError, TypeError)):
            decode_claims(orjson.dumps(broken))


# -- garbage: always UnrecognizedClientException, never another exception --


@pytest.fixture
def loop_and_tokens(
    tmp_path: Path,
) -> Iterator[tuple[asyncio.AbstractEventLoop, SessionTokens, str]]:
    loop = asyncio.new_event_loop()
    storage = SQLiteStorage(tmp_path / "g.db")

    async def setup() -> tuple[SessionTokens, str]:
        barrier = await Barrier.open(storage, KeyMaterial.generate())
        tokens = SessionTokens(barrier)
        _, token = await issue(tokens, barrier)
        return tokens, token

    tokens, token = loop.run_until_complete(setup())
    try:
        yield loop, tokens, token
    finally:
        loop.run_until_complete(storage.close())
        loop.close()


def _garbage(token: str) -> st.SearchStrategy[str]:
    raw = base64.b64decode(token)
    as_token = st.binary(max_size=2 * len(raw)).map(lambda b: base64.b64encode(b).decode())
    # Tokens with a genuine header (version and key id), so the AES-GCM
    # check is what refuses them, not the key lookup.
    with_header = st.binary(max_size=len(raw)).map(lambda b: base64.b64encode(raw[:9] + b).decode())
    return st.one_of(st.text(max_size=300), as_token, with_header)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_garbage_is_always_an_unrecognized_client(
    loop_and_tokens: tuple[asyncio.AbstractEventLoop, SessionTokens, str], data: st.DataObject
) -> None:
    loop, tokens, token = loop_and_tokens
    candidate = data.draw(_garbage(token))
    if candidate == token:
        return
    try:
        loop.run_until_complete(tokens.open(candidate, NOW))
    except UnrecognizedClientException as refused:
        assert refused.message == "The security token included in the request is invalid."
    else:
        raise AssertionError("garbage opened as a session token")
