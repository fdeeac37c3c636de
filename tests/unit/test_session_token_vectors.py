"""Golden vectors for session token v1 (auth/sessions.py).

tests/vectors/session_token_v1.json is NEVER edited or regenerated: a token
issued must open on every node until it expires, whichever release issued
it. It was written once by tests/vectors/make_session_token_v1.py from the
documented format with `cryptography`'s AES-GCM and the standard library's
HMAC; this test recomputes every token the same independent way, opens the
vectors through keycask's SessionTokens on a real barrier, and opens what
keycask issues with the independent implementation.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keycask.auth.sessions import TOKEN_KEYS_PATH, NewSession, SessionTokens
from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.storage.sqlite import SQLiteStorage

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "session_token_v1.json").read_text(
        encoding="ascii"
    )
)
CLAIM_FIELDS = {
    "a": "access_key_id",
    "s": "secret",
    "acct": "account",
    "role": "role_name",
    "rid": "role_id",
    "name": "session_name",
    "iat": "issued",
    "exp": "expires",
    "pol": "policy",
    "sid": "source_identity",
    "idp": "federated_provider",
    "src": "source_arn",
}


def message_key(key: bytes, salt: bytes) -> bytes:
    fixed = b"keycask message key v1" + b"\x00" + salt + (256).to_bytes(4, "big")
    return hmac.digest(key, (1).to_bytes(4, "big") + fixed, "sha256")


def token_key(key_id: str) -> bytes:
    (found,) = [k for k in VECTORS["token_keys"] if k["id"] == key_id]
    return base64.b64decode(found["key"])


def independent_open(keys: dict[bytes, bytes], token: str) -> bytes:
    raw = base64.b64decode(token, validate=True)
    assert raw[0] == 0x01
    header, salt, nonce = raw[:9], raw[9:25], raw[25:37]
    key = message_key(keys[raw[1:9]], salt)
    return AESGCM(key).decrypt(nonce, raw[37:], header + salt + nonce)


@pytest.fixture
async def barrier(tmp_path: Path) -> AsyncIterator[Barrier]:
    storage = SQLiteStorage(tmp_path / "v.db")
    opened = await Barrier.open(storage, KeyMaterial.generate())
    yield opened
    await storage.close()


@pytest.mark.parametrize("vector", VECTORS["tokens"], ids=lambda v: v["name"])
def test_tokens_recompute_from_the_documented_format(vector: dict[str, Any]) -> None:
    key = token_key(vector["key_id"])
    salt, nonce = bytes.fromhex(vector["salt"]), bytes.fromhex(vector["nonce"])
    header = b"\x01" + bytes.fromhex(vector["key_id"])
    sealed = AESGCM(message_key(key, salt)).encrypt(
        nonce, vector["claims"].encode("utf-8"), header + salt + nonce
    )
    assert base64.b64encode(header + salt + nonce + sealed).decode() == vector["token"]


@pytest.mark.parametrize("vector", VECTORS["tokens"], ids=lambda v: v["name"])
async def test_keycask_opens_the_vectors(barrier: Barrier, vector: dict[str, Any]) -> None:
    stored = orjson.dumps(VECTORS["token_keys"])
    await barrier.commit([barrier.put(TOKEN_KEYS_PATH, stored, expect=0)])
    expected = json.loads(vector["claims"])
    during = datetime.fromtimestamp(expected["iat"] + 1, UTC)
    claims = await SessionTokens(barrier).open(vector["token"], during)
    for short, name in CLAIM_FIELDS.items():
        assert getattr(claims, name) == expected[short], name
    assert claims.tags == tuple((k, v) for k, v in expected["tags"])
    assert claims.transitive_tag_keys == tuple(expected["ttk"])


async def test_what_keycask_issues_opens_independently(barrier: Barrier) -> None:
    tokens = SessionTokens(barrier)
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    issued = await tokens.issue(
        NewSession(
            account="111122223333",
            role_name="deploy",
            role_id="AROAKEYCASKEXAMPLE234",
            session_name="ci",
            expires=int(now.timestamp()) + 900,
            tags=(("team", "blue"),),
        ),
        now,
    )
    await barrier.commit(issued.writes)
    stored = await barrier.get(TOKEN_KEYS_PATH)
    assert stored is not None
    keys = {bytes.fromhex(k["id"]): base64.b64decode(k["key"]) for k in orjson.loads(stored.value)}
    claims = json.loads(independent_open(keys, issued.token))
    assert set(claims) == {*CLAIM_FIELDS, "tags", "ttk"}
    assert claims["a"] == issued.claims.access_key_id
    assert claims["s"] == issued.claims.secret
    assert claims["tags"] == [["team", "blue"]]
