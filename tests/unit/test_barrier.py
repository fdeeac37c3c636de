"""The barrier over a real SQLite store: values at rest are sealed and bound to their path."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keycask.barrier import REKEYED_ELSEWHERE, Barrier
from keycask.barrier.keyring import KEYRING_PATH
from keycask.crypto import KeyMaterial
from keycask.errors import BarrierError, SealError
from keycask.ports import Put
from keycask.storage.sqlite import SQLiteStorage


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[Barrier, SQLiteStorage, KeyMaterial]]:
    storage = SQLiteStorage(tmp_path / "b.db")
    root = KeyMaterial.generate()
    barrier = await Barrier.open(storage, root)
    yield barrier, storage, root
    await storage.close()


async def test_round_trip_and_storage_sees_only_ciphertext(
    opened: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, storage, _ = opened
    secret = b"a distinctive secret value 0123456789"
    await barrier.commit([barrier.put("things/1", secret, expect=0)])
    got = await barrier.get("things/1")
    assert got is not None and got.value == secret and got.revision == 1
    raw = await storage.get("things/1")
    assert raw is not None and secret not in raw.value
    with sqlite3.connect(storage.path) as conn:
        for (value,) in conn.execute("SELECT value FROM kv"):
            assert secret not in bytes(value)


async def test_same_plaintext_seals_differently(
    opened: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, _, _ = opened
    assert barrier.encrypt("p", b"same") != barrier.encrypt("p", b"same")


async def test_value_moved_to_another_path_fails(
    opened: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, storage, _ = opened
    await barrier.commit([barrier.put("a", b"value of a", expect=0)])
    raw = await storage.get("a")
    assert raw is not None
    await storage.commit([Put("b", raw.value)])
    with pytest.raises(BarrierError):
        await barrier.get("b")


@pytest.mark.parametrize("position", [0, 1, 4, 5, 10, 17, -17, -1])
async def test_any_edited_byte_fails(
    opened: tuple[Barrier, SQLiteStorage, KeyMaterial], position: int
) -> None:
    barrier, storage, _ = opened
    await barrier.commit([barrier.put("edit/me", b"some stored value", expect=0)])
    raw = await storage.get("edit/me")
    assert raw is not None
    edited = bytearray(raw.value)
    edited[position] ^= 0x01
    await storage.commit([Put("edit/me", bytes(edited))])
    with pytest.raises(BarrierError):
        await barrier.get("edit/me")


async def test_truncated_value_fails(opened: tuple[Barrier, SQLiteStorage, KeyMaterial]) -> None:
    barrier, storage, _ = opened
    await barrier.commit([barrier.put("t", b"x" * 40, expect=0)])
    raw = await storage.get("t")
    assert raw is not None
    for cut in (0, 1, 5, 17, len(raw.value) - 1):
        await storage.commit([Put("t", raw.value[:cut])])
        with pytest.raises(BarrierError):
            await barrier.get("t")


async def test_reopen_with_same_root_reads_old_values(tmp_path: Path) -> None:
    root = KeyMaterial.generate()
    storage = SQLiteStorage(tmp_path / "r.db")
    barrier = await Barrier.open(storage, root)
    await barrier.commit([barrier.put("keep", b"kept", expect=0)])
    await storage.close()
    storage = SQLiteStorage(tmp_path / "r.db")
    again = await Barrier.open(storage, root)
    got = await again.get("keep")
    assert got is not None and got.value == b"kept"
    await storage.close()


async def test_wrong_root_key_cannot_open_the_keyring(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "w.db")
    await Barrier.open(storage, KeyMaterial.generate())
    with pytest.raises(SealError):
        await Barrier.open(storage, KeyMaterial.generate())
    await storage.close()


async def test_keyring_is_not_readable_through_the_barrier(
    opened: tuple[Barrier, SQLiteStorage, KeyMaterial],
) -> None:
    barrier, _, _ = opened
    with pytest.raises(SealError):
        await barrier.get(KEYRING_PATH)


async def test_tampered_keyring_refuses_to_open(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "k.db")
    root = KeyMaterial.generate()
    await Barrier.open(storage, root)
    raw = await storage.get(KEYRING_PATH)
    assert raw is not None
    edited = bytearray(raw.value)
    edited[-1] ^= 0x80
    await storage.commit([Put(KEYRING_PATH, bytes(edited))])
    with pytest.raises(SealError):
        await Barrier.open(storage, root)
    await storage.close()


async def test_a_rekey_elsewhere_seals_a_follower_once_without_a_traceback(
    opened: tuple[Barrier, SQLiteStorage, KeyMaterial], caplog: pytest.LogCaptureFixture
) -> None:
    """Two barriers on one store (two nodes): one moves the keyring to a new
    root; the other, told of a commit (``reload_soon``, as a commit notice
    does), seals as soon as its reload has read the keyring, says why once,
    and a request waiting for that reload (``current``) sees it sealed."""
    barrier, storage, root = opened
    follower = Barrier(storage)
    old = root.reveal()  # the barrier wipes its root when it moves off it
    await follower.unseal(KeyMaterial(old))
    await barrier.rekey(KeyMaterial.generate(), rotate=True)
    assert not follower.sealed  # nothing told it yet
    caplog.clear()
    follower.reload_soon()
    follower.reload_soon()  # a second notice while the first reload runs
    await follower.current(5.0)
    assert follower.sealed
    assert follower.sealed_because is not None
    assert follower.sealed_because.startswith(REKEYED_ELSEWHERE)
    warnings = [r for r in caplog.records if REKEYED_ELSEWHERE in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    follower.reload_soon()  # sealed: nothing to reload, nothing logged
    await follower.current(5.0)
    assert len([r for r in caplog.records if REKEYED_ELSEWHERE in r.getMessage()]) == 1
    # The rekeyed one serves on; the follower opens with the new root only.
    await barrier.commit([barrier.put("after", b"written after", expect=0)])
    with pytest.raises(SealError):
        await follower.unseal(KeyMaterial(old))
    assert follower.sealed_because is not None  # still sealed, still says why
