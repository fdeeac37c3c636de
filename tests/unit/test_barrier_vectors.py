"""Golden vectors for the barrier's stored-value format and the keyring format.

tests/vectors/barrier_v1.json and keyring_v1.json are NEVER edited or
regenerated: every value ever stored must keep opening. They were written once
by tests/vectors/make_barrier_v1.py from the documented formats with
`cryptography`'s AES-GCM directly; this test recomputes every stored byte
string the same independent way from the vector's inputs, opens the vectors
through keycask's own barrier on a real SQLite store, and opens what keycask
writes with the independent implementation.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keycask.barrier import Barrier
from keycask.barrier.keyring import KEYRING_PATH, Keyring
from keycask.crypto import KeyMaterial
from keycask.errors import BarrierError, SealError
from keycask.ports import Put
from keycask.storage.sqlite import SQLiteStorage

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
BARRIER: dict[str, Any] = json.loads((VECTORS / "barrier_v1.json").read_text(encoding="ascii"))
KEYRINGS: dict[str, Any] = json.loads((VECTORS / "keyring_v1.json").read_text(encoding="ascii"))
KEYRING_AAD = b"\x01keycask keyring|core/keyring"
ROOT = bytes.fromhex(KEYRINGS["root"])


def _keyring(name: str) -> dict[str, Any]:
    (found,) = [k for k in KEYRINGS["keyrings"] if k["name"] == name]
    return found


def _term_key(term: int) -> bytes:
    return bytes.fromhex(BARRIER["terms"][str(term)])


def test_vector_files_are_populated() -> None:
    assert len(BARRIER["values"]) == 5
    assert {v["term"] for v in BARRIER["values"]} == {1, 2}
    assert any(v["plaintext"] == "" for v in BARRIER["values"])
    assert [k["name"] for k in KEYRINGS["keyrings"]] == ["current", "legacy"]


@pytest.mark.parametrize("vector", BARRIER["values"], ids=lambda v: v["path"].split("/")[0])
def test_barrier_values_are_what_the_format_says(vector: dict[str, Any]) -> None:
    prefix = struct.pack(">BI", 1, vector["term"])
    nonce = bytes.fromhex(vector["nonce"])
    sealed = AESGCM(_term_key(vector["term"])).encrypt(
        nonce, bytes.fromhex(vector["plaintext"]), prefix + vector["path"].encode("utf-8")
    )
    assert (prefix + nonce + sealed).hex() == vector["stored"]


@pytest.mark.parametrize("name", ["current", "legacy"])
def test_keyrings_are_what_the_format_says(name: str) -> None:
    vector = _keyring(name)
    nonce = bytes.fromhex(vector["nonce"])
    sealed = AESGCM(ROOT).encrypt(nonce, vector["doc"].encode(), KEYRING_AAD)
    assert (b"\x01" + nonce + sealed).hex() == vector["stored"]


@pytest.mark.parametrize("name", ["current", "legacy"])
def test_keycask_opens_each_keyring(name: str) -> None:
    vector = _keyring(name)
    doc = json.loads(vector["doc"])
    keyring = Keyring.open_with(KeyMaterial(ROOT), bytes.fromhex(vector["stored"]))
    assert keyring.active_term == doc["active"]
    assert {t: k.reveal().hex() for t, k in keyring.terms.items()} == {
        int(t): k for t, k in doc["terms"].items()
    }
    # Fields a keyring of an older version lacks read as their starting values.
    assert keyring.reserved == {int(t): n for t, n in doc.get("reserved", {}).items()}
    assert keyring.rewrite is doc.get("rewrite", False)
    assert keyring.epoch == doc.get("epoch", 0)
    with pytest.raises(SealError):
        Keyring.open_with(KeyMaterial(bytes(32)), bytes.fromhex(vector["stored"]))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    storage = SQLiteStorage(tmp_path / "vectors.db")
    yield storage
    await storage.close()


async def test_keycasks_barrier_reads_every_vector(store: SQLiteStorage) -> None:
    current = _keyring("current")
    writes = [Put(KEYRING_PATH, bytes.fromhex(current["stored"]))]
    writes += [Put(v["path"], bytes.fromhex(v["stored"])) for v in BARRIER["values"]]
    await store.commit(writes)
    barrier = await Barrier.open(store, KeyMaterial(ROOT))
    for vector in BARRIER["values"]:
        got = await barrier.get(vector["path"])
        assert got is not None, vector["path"]
        assert got.value == bytes.fromhex(vector["plaintext"]), vector["path"]
    # Bound to its path: the same bytes under another path do not open.
    moved = BARRIER["values"][0]
    await store.commit([Put("key/elsewhere", bytes.fromhex(moved["stored"]))])
    with pytest.raises(BarrierError):
        await barrier.get("key/elsewhere")


async def test_what_keycask_writes_opens_with_the_independent_implementation(
    store: SQLiteStorage,
) -> None:
    barrier = await Barrier.open(store, KeyMaterial(ROOT))
    path, plaintext = "key/written-by-keycask", b'{"state":"Enabled"}'
    await barrier.commit([barrier.put(path, plaintext, expect=0)])

    stored_keyring = await store.get(KEYRING_PATH)
    assert stored_keyring is not None and stored_keyring.value[0] == 0x01
    blob = stored_keyring.value
    doc = json.loads(AESGCM(ROOT).decrypt(blob[1:13], blob[13:], KEYRING_AAD))
    assert set(doc) == {"active", "terms", "reserved", "rewrite", "epoch"}

    stored = await store.get(path)
    assert stored is not None
    fmt, term = struct.unpack_from(">BI", stored.value)
    assert fmt == 0x01 and str(term) in doc["terms"]
    key = bytes.fromhex(doc["terms"][str(term)])
    nonce, sealed = stored.value[5:17], stored.value[17:]
    assert AESGCM(key).decrypt(nonce, sealed, stored.value[:5] + path.encode()) == plaintext
