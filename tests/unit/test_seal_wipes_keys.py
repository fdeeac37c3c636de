"""Sealing overwrites the keys the barrier held (the root key and every
term key of its keyring) before dropping them, so a reference left anywhere
(a keyring copy held by work in flight, the object an unseal handed in)
holds zeros; a rekey overwrites the root it replaced."""

from __future__ import annotations

from pathlib import Path

from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.storage.sqlite import SQLiteStorage


async def test_seal_zeroes_the_root_and_every_term_key(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "s.db")
    root = KeyMaterial.generate()
    spare = KeyMaterial(root.reveal())
    barrier = await Barrier.open(storage, root)
    await barrier.rotate()
    await barrier.commit([barrier.put("a", b"secret", expect=0)])
    keyring = barrier.keyring
    terms = list(keyring.terms.values())
    assert len(terms) == 2 and not any(key.wiped for key in terms)
    assert not root.wiped

    barrier.seal()
    assert barrier.sealed
    assert root.wiped and root.reveal() == bytes(32)
    assert all(key.wiped and key.reveal() == bytes(32) for key in terms)
    # The same store opens again with the key from the seal.
    await barrier.unseal(spare)
    got = await barrier.get("a")
    assert got is not None and got.value == b"secret"
    await storage.close()


async def test_rekey_zeroes_the_replaced_root(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "s.db")
    old = KeyMaterial.generate()
    barrier = await Barrier.open(storage, old)
    new = KeyMaterial.generate()
    await barrier.rekey(new, rotate=True)
    assert old.wiped and not new.wiped
    assert barrier.holds(new)
    await storage.close()
