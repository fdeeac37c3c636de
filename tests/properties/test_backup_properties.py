"""Any damage to a backup file is refused: one flipped byte at any offset, or a
truncation at any length, makes verify and restore raise ``BackupError`` and
leaves the restore target absent."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keycask.crypto import KeyMaterial
from keycask.crypto.backup_mac import backup_tag
from keycask.ports import Put
from keycask.storage.backup import BackupError, create_backup, restore_backup, verify_backup
from keycask.storage.sqlite import SQLiteStorage

DAMAGE = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_names = itertools.count()

ROOT = KeyMaterial.generate(32)


def TAG(digest: bytes) -> bytes:
    return backup_tag(ROOT, digest)


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    root = tmp_path_factory.mktemp("backup")
    data = root / "data"
    store = SQLiteStorage(data / "keycask.db")
    store.commit_sync([Put(f"keys/{i:03d}", bytes([i]) * 50) for i in range(40)])
    store.close_sync()
    (data / "seal.json").write_text('{"kind": "shamir", "threshold": 2, "shares": 3}')
    (data / "audit").mkdir()
    (data / "audit" / "server-0.jsonl").write_text('{"n":1}\n{"n":2}\n')
    create_backup(data, root / "good", TAG)
    work = root / "work"
    work.mkdir()
    return work, (root / "good").read_bytes()


def _assert_refused(work: Path, damaged: bytes) -> None:
    n = next(_names)
    path = work / f"damaged-{n}"
    path.write_bytes(damaged)
    with pytest.raises(BackupError):
        verify_backup(path, TAG)
    target = work / f"target-{n}"
    with pytest.raises(BackupError):
        restore_backup(path, target, TAG)
    assert not target.exists()
    empty = work / f"empty-{n}"
    empty.mkdir()
    with pytest.raises(BackupError):
        restore_backup(path, empty, TAG)
    assert list(empty.iterdir()) == []
    # No restore staging directory left beside the targets either.
    assert not [p for p in work.iterdir() if p.name.startswith(".")]


def test_the_undamaged_backup_restores(backup: tuple[Path, bytes]) -> None:
    work, good = backup
    path = work / "undamaged"
    path.write_bytes(good)
    verify_backup(path, TAG)
    restore_backup(path, work / "undamaged-target", TAG)
    assert (work / "undamaged-target" / "keycask.db").exists()


@DAMAGE
@given(data=st.data())
def test_one_flipped_byte_anywhere_is_refused(
    backup: tuple[Path, bytes], data: st.DataObject
) -> None:
    work, good = backup
    offset = data.draw(st.integers(min_value=0, max_value=len(good) - 1), label="offset")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="xor mask")
    damaged = bytearray(good)
    damaged[offset] ^= mask
    _assert_refused(work, bytes(damaged))


@DAMAGE
@given(data=st.data())
def test_truncation_anywhere_is_refused(backup: tuple[Path, bytes], data: st.DataObject) -> None:
    work, good = backup
    length = data.draw(st.integers(min_value=0, max_value=len(good) - 1), label="length")
    _assert_refused(work, good[:length])


@DAMAGE
@given(data=st.data())
def test_inserted_bytes_are_refused(backup: tuple[Path, bytes], data: st.DataObject) -> None:
    work, good = backup
    offset = data.draw(st.integers(min_value=0, max_value=len(good)), label="offset")
    extra = data.draw(st.binary(min_size=1, max_size=8), label="inserted")
    _assert_refused(work, good[:offset] + extra + good[offset:])


def test_every_single_byte_flip_fails_verification(backup: tuple[Path, bytes]) -> None:
    # Exhaustive over offsets (verify only, to stay fast): no blind spot in the
    # magic, the manifest, the body or the trailer.
    work, good = backup
    path = work / "exhaustive"
    for offset in range(len(good)):
        damaged = bytearray(good)
        damaged[offset] ^= 0x01 if offset % 2 else 0x80
        path.write_bytes(damaged)
        with pytest.raises(BackupError):
            verify_backup(path, TAG)
