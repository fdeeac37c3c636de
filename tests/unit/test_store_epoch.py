"""The store's epoch and a node's high-water mark of it (storage/watermark.py):
a keyring put back from an older copy of the store is refused at unseal and
seals a running barrier on its next tick."""

from __future__ import annotations

from pathlib import Path

import pytest

from keycask.barrier import Barrier
from keycask.barrier.keyring import KEYRING_PATH
from keycask.crypto import KeyMaterial
from keycask.errors import Sealed, StoreRolledBack
from keycask.ports import Entry, Put
from keycask.storage.sqlite import SQLiteStorage
from keycask.storage.watermark import Watermark


async def _keyring(storage: SQLiteStorage) -> Entry:
    entry = await storage.get(KEYRING_PATH)
    assert entry is not None
    return entry


async def _put_back(storage: SQLiteStorage, old: Entry) -> None:
    await storage.commit([Put(KEYRING_PATH, old.value)])


async def test_commits_move_the_epoch_on_the_next_tick(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "s.db")
    watermark = Watermark(tmp_path)
    barrier = await Barrier.open(storage, KeyMaterial.generate(), watermark=watermark)
    start = barrier.keyring.epoch
    assert watermark.seen() == start >= 1
    await barrier.tick()  # nothing committed: nothing written
    assert barrier.keyring.epoch == start
    await barrier.commit([barrier.put("usage/x", b"quiet", expect=None)])
    await barrier.tick()
    assert barrier.keyring.epoch == start  # last-use records do not count
    await barrier.commit([barrier.put("key/x", b"1", expect=0)])
    await barrier.commit([barrier.put("key/y", b"2", expect=0)])
    await barrier.tick()
    assert barrier.keyring.epoch == start + 1  # one write for both
    assert Watermark(tmp_path).seen() == start + 1  # durable, in the data dir
    await storage.close()


async def test_an_older_keyring_is_refused_at_unseal(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "s.db")
    root = KeyMaterial.generate()
    barrier = await Barrier.open(storage, root, watermark=Watermark(tmp_path))
    old = await _keyring(storage)
    await barrier.commit([barrier.put("principal/a", b"doomed", expect=0)])
    await barrier.tick()
    await _put_back(storage, old)

    again = Barrier(storage, watermark=Watermark(tmp_path))
    with pytest.raises(StoreRolledBack, match="the store was rolled back"):
        await again.unseal(root)
    assert again.sealed
    # The operator's override for a deliberate restore: forget the mark, start again.
    (tmp_path / "store-epoch").unlink()
    restarted = Barrier(storage, watermark=Watermark(tmp_path))
    await restarted.unseal(root)
    assert not restarted.sealed
    await storage.close()


async def test_an_older_keyring_seals_a_running_barrier(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "s.db")
    barrier = await Barrier.open(storage, KeyMaterial.generate(), watermark=Watermark(tmp_path))
    old = await _keyring(storage)
    await barrier.commit([barrier.put("principal/a", b"doomed", expect=0)])
    await barrier.tick()
    await _put_back(storage, old)
    await barrier.tick()
    assert barrier.sealed
    with pytest.raises(Sealed):
        await barrier.get("principal/a")
    await storage.close()
