"""Online backup and restore of a data dir: round trip, consistency under a
concurrent writer process, what is refused, and what never leaves the data dir."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.sharedctypes
import multiprocessing.synchronize
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from keycask.crypto import KeyMaterial
from keycask.crypto.backup_mac import backup_tag
from keycask.ports import Delete, Put
from keycask.storage.backup import (
    MAGIC,
    BackupError,
    create_backup,
    restore_backup,
    verify_backup,
)
from keycask.storage.sqlite import SQLiteStorage

ROOT = KeyMaterial.generate(32)


def TAG(digest: bytes) -> bytes:
    return backup_tag(ROOT, digest)


def _rows(db: Path) -> dict[str, tuple[bytes, int]]:
    store = SQLiteStorage(db)
    try:
        return {p: (e.value, e.revision) for p, e in store.list_sync("", limit=10**9)}
    finally:
        store.close_sync()


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    store = SQLiteStorage(d / "keycask.db")
    try:
        store.commit_sync([Put(f"keys/{i:04d}", os.urandom(40)) for i in range(50)])
        store.commit_sync([Put("keys/0001", b"second"), Put("keys/0002", b"second")])
        store.commit_sync([Put("keys/0001", b"third"), Delete("keys/0003")])
    finally:
        store.close_sync()
    (d / "seal.json").write_text('{"kind": "passphrase", "wrapped": "AAAA"}')
    (d / "operator.json").write_text('{"sha256": "00"}')
    (d / "audit").mkdir()
    (d / "audit" / "server-0.jsonl").write_text('{"n":1}\n{"n":2}\n')
    (d / "audit" / "cli.jsonl").write_text('{"n":1}\n')
    return d


def test_round_trip(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "b.kcbak"
    info = create_backup(data_dir, out, TAG)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not out.with_name("b.kcbak.tmp").exists()
    # Never operator.json: a restore makes a new token.
    assert info.files == ("keycask.db", "seal.json", "audit/cli.jsonl", "audit/server-0.jsonl")
    assert info.db_bytes > 0
    assert out.read_bytes().startswith(MAGIC)
    assert verify_backup(out, TAG) == info

    target = tmp_path / "restored"
    assert restore_backup(out, target, TAG) == info
    original = _rows(data_dir / "keycask.db")
    restored = _rows(target / "keycask.db")
    assert restored == original
    assert restored["keys/0001"] == (b"third", 3)
    assert restored["keys/0002"] == (b"second", 2)
    assert "keys/0003" not in restored
    for name in info.files[1:]:
        assert (target / name).read_bytes() == (data_dir / name).read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert stat.S_IMODE((target / "audit").stat().st_mode) == 0o700
    for name in info.files:
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o600
    assert _integrity(target / "keycask.db") == "ok"
    # Nothing but the manifest's names, and no staging directories left behind.
    assert sorted(p.name for p in target.iterdir()) == sorted(["keycask.db", "seal.json", "audit"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.kcbak", "data", "restored"]


def test_restore_into_existing_empty_dir(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "b.kcbak"
    create_backup(data_dir, out, TAG)
    target = tmp_path / "empty"
    target.mkdir(mode=0o755)
    restore_backup(out, target, TAG)
    assert _rows(target / "keycask.db") == _rows(data_dir / "keycask.db")
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_minimal_dev_data_dir(tmp_path: Path) -> None:
    d = tmp_path / "data"
    store = SQLiteStorage(d / "keycask.db")
    store.close_sync()
    info = create_backup(d, tmp_path / "b", TAG)
    assert info.files == ("keycask.db",)
    assert any("seal.json" in note for note in info.notes)
    restore_backup(tmp_path / "b", tmp_path / "r", TAG)
    assert _rows(tmp_path / "r" / "keycask.db") == {}


# -- concurrency ----------------------------------------------------------------------

PREFILL = 2000


def _writer(
    db: str,
    acked: multiprocessing.sharedctypes.Synchronized[int],
    stop: multiprocessing.synchronize.Event,
) -> None:
    store = SQLiteStorage(Path(db))
    i = 0
    try:
        while not stop.is_set():
            # The counter row shares each transaction with its row, so a
            # consistent snapshot has counter == its highest row.
            store.commit_sync([Put(f"w/{i:08d}", os.urandom(64)), Put("counter", str(i).encode())])
            i += 1
            acked.value = i
    finally:
        store.close_sync()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_backup_under_concurrent_writes(tmp_path: Path) -> None:
    d = tmp_path / "data"
    db = d / "keycask.db"
    store = SQLiteStorage(db)
    # Big enough that the snapshot takes a while, so writes land during it.
    for batch in range(PREFILL // 200):
        store.commit_sync([Put(f"p/{batch * 200 + i:06d}", os.urandom(8192)) for i in range(200)])
    store.close_sync()

    ctx = multiprocessing.get_context("fork")
    acked = ctx.Value("q", 0)
    stop = ctx.Event()
    proc = ctx.Process(target=_writer, args=(str(db), acked, stop))
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while acked.value < 20:
            assert proc.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        before = acked.value
        create_backup(d, tmp_path / "b", TAG)
        during = acked.value
        print(f"acknowledged before backup: {before}, after: {during}")
        time.sleep(0.05)
        assert proc.is_alive()
    finally:
        stop.set()
        proc.join(30)
    assert proc.exitcode == 0
    assert acked.value > during or during > before  # the writer kept going

    target = tmp_path / "restored"
    restore_backup(tmp_path / "b", target, TAG)
    assert _integrity(target / "keycask.db") == "ok"
    rows = _rows(target / "keycask.db")
    written = sorted(p for p in rows if p.startswith("w/"))
    # Every write acknowledged before the backup began is in it ...
    assert len(written) >= before
    # ... and the snapshot is a transaction boundary: rows 0..n-1, counter n-1.
    assert written == [f"w/{i:08d}" for i in range(len(written))]
    assert rows["counter"][0] == str(len(written) - 1).encode()
    assert sum(p.startswith("p/") for p in rows) == PREFILL


def test_audit_segment_partial_line_left_out(tmp_path: Path, data_dir: Path) -> None:
    # A record half-appended while the backup reads must not be cut in half.
    with (data_dir / "audit" / "server-0.jsonl").open("ab") as f:
        f.write(b'{"n":3, "half')
    create_backup(data_dir, tmp_path / "b", TAG)
    restore_backup(tmp_path / "b", tmp_path / "r", TAG)
    assert (tmp_path / "r" / "audit" / "server-0.jsonl").read_bytes() == b'{"n":1}\n{"n":2}\n'


# -- refusals -------------------------------------------------------------------------


def test_restore_into_non_empty_dir_refused(tmp_path: Path, data_dir: Path) -> None:
    create_backup(data_dir, tmp_path / "b", TAG)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(tmp_path / "b", target, TAG)
    assert [p.name for p in target.iterdir()] == ["keep"]
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(tmp_path / "b", data_dir, TAG)


def test_existing_out_refused(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "b"
    out.write_bytes(b"precious")
    with pytest.raises(BackupError, match="already exists"):
        create_backup(data_dir, out, TAG)
    assert out.read_bytes() == b"precious"
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(BackupError, match="already exists"):
        create_backup(data_dir, tmp_path / "link", TAG)
    (tmp_path / "c.tmp").write_bytes(b"leftover")
    with pytest.raises(BackupError, match="tmp exists"):
        create_backup(data_dir, tmp_path / "c", TAG)
    assert not (tmp_path / "c").exists()


def test_no_data_dir_refused(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match=r"keycask\.db"):
        create_backup(tmp_path / "nothing", tmp_path / "b", TAG)
    assert not (tmp_path / "nothing").exists()


def test_secrets_never_backed_up(tmp_path: Path, data_dir: Path) -> None:
    dev_key = os.urandom(32)
    (data_dir / "dev-root.key").write_bytes(dev_key)
    (data_dir / "credentials").write_text(
        "[keycask]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = SeCrEt-c4f3\n"
    )
    (data_dir / "config").write_text("[profile keycask]\nregion = SeCrEt-region-77\n")
    (data_dir / "tls").mkdir()
    (data_dir / "tls" / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nTLSKEY-9f9f\n")
    (data_dir / "run").mkdir()
    (data_dir / "dev-clock").write_text("3600")

    info = create_backup(data_dir, tmp_path / "b", TAG)
    raw = (tmp_path / "b").read_bytes()
    for secret in (dev_key, dev_key.hex().encode(), b"SeCrEt-c4f3", b"SeCrEt-region-77", b"TLSKEY"):
        assert secret not in raw
    assert set(info.files) == {"keycask.db", "seal.json", "audit/cli.jsonl", "audit/server-0.jsonl"}
    assert any("dev-root.key" in note for note in info.notes)
    assert any("operator.json" in note for note in info.notes)
    assert any("credentials" in note for note in info.notes)
    assert verify_backup(tmp_path / "b", TAG).notes == info.notes
    restore_backup(tmp_path / "b", tmp_path / "r", TAG)
    for name in (
        "dev-root.key",
        "credentials",
        "config",
        "tls",
        "run",
        "dev-clock",
        "operator.json",
    ):
        assert not (tmp_path / "r" / name).exists()


def test_symlinked_source_refused(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "elsewhere").write_text("{}")
    (data_dir / "seal.json").unlink()
    (data_dir / "seal.json").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(BackupError, match="symlink"):
        create_backup(data_dir, tmp_path / "b", TAG)
    assert not (tmp_path / "b").exists()
    assert not (tmp_path / "b.tmp").exists()


def craft(
    path: Path,
    files: list[tuple[str, bytes]],
    override: dict[str, object] | None = None,
    tag: Callable[[bytes], bytes] = TAG,
) -> None:
    """Write a backup with valid checksums around whatever manifest is asked for."""
    manifest = {
        "format": 2,
        "created": "2025-01-01T00:00:00+00:00",
        "files": [
            {"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in files
        ],
        "notes": [],
        **(override or {}),
    }
    body = MAGIC + json.dumps(manifest).encode() + b"\n" + b"".join(b for _, b in files)
    mac = tag(hashlib.sha256(body).digest())
    path.write_bytes(body + b"HMAC-SHA256 " + mac.hex().encode() + b"\n")


@pytest.fixture
def db_bytes(tmp_path: Path, data_dir: Path) -> bytes:
    create_backup(data_dir, tmp_path / "real", TAG)
    restore_backup(tmp_path / "real", tmp_path / "real-r", TAG)
    return (tmp_path / "real-r" / "keycask.db").read_bytes()


def test_crafted_backup_is_accepted(tmp_path: Path, db_bytes: bytes) -> None:
    # The helper itself is right, so the refusals below are about the names.
    craft(tmp_path / "ok", [("keycask.db", db_bytes), ("audit/x.jsonl", b"{}\n")])
    restore_backup(tmp_path / "ok", tmp_path / "t", TAG)
    assert (tmp_path / "t" / "audit" / "x.jsonl").read_bytes() == b"{}\n"


@pytest.mark.parametrize(
    "name",
    [
        "../evil",
        "/tmp/evil",
        "audit/../../evil",
        "audit/../evil.jsonl",
        "./seal.json",
        "audit//x.jsonl",
        "audit/sub/x.jsonl",
        "audit/.hidden.jsonl",
        "audit\\..\\evil.jsonl",
        "dev-root.key",
        "credentials",
        "tls/key.pem",
        "seal.json\x00",
        "",
        "keycask.db",  # a second keycask.db
        "operator.json",  # a restore makes its own token
    ],
)
def test_unsafe_names_refused(tmp_path: Path, db_bytes: bytes, name: str) -> None:
    bad = tmp_path / "bad"
    craft(bad, [("keycask.db", db_bytes), (name, b"pwned\n")])
    with pytest.raises(BackupError):
        verify_backup(bad, TAG)
    target = tmp_path / "sub" / "target"
    with pytest.raises(BackupError):
        restore_backup(bad, target, TAG)
    assert not target.exists()
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "sub" / "evil").exists()
    # Refused at verification, before anything was created.
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize(
    "files",
    [
        [("seal.json", b"{}")],  # no database
        [("keycask.db", b"not a database, but the checksums are fine")],
    ],
)
def test_bad_contents_refused(tmp_path: Path, files: list[tuple[str, bytes]]) -> None:
    craft(tmp_path / "bad", files)
    target = tmp_path / "target"
    with pytest.raises(BackupError):
        restore_backup(tmp_path / "bad", target, TAG)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_malformed_manifest_refused(tmp_path: Path, db_bytes: bytes) -> None:
    overrides: list[dict[str, object]] = [
        {"format": 1},
        {"notes": "x"},
        {"notes": [1]},
        {"files": "x"},
        {"files": [{"name": "keycask.db", "size": -1, "sha256": "0" * 64}]},
        {"files": [{"name": "keycask.db", "size": True, "sha256": "0" * 64}]},
        {"files": [{"name": "keycask.db", "size": 0, "sha256": "0" * 64, "mode": 0o4755}]},
        {"created": 5},
    ]
    for override in overrides:
        craft(tmp_path / "bad", [("keycask.db", db_bytes)], override)
        with pytest.raises(BackupError):
            verify_backup(tmp_path / "bad", TAG)
    (tmp_path / "junk").write_bytes(b"hello\n")
    with pytest.raises(BackupError, match="not a keycask backup"):
        verify_backup(tmp_path / "junk", TAG)
    with pytest.raises(BackupError, match="cannot open"):
        verify_backup(tmp_path / "missing", TAG)


# -- authentication: a MAC under a key derived from the root --


def _recomputed(path: Path, edit: Callable[[dict[str, bytes]], None]) -> None:
    """What an attacker without the root can do: unpack, edit, and write the
    backup again with every SHA-256 recomputed and the old trailer kept."""
    raw = path.read_bytes()
    first = raw.index(b"\n", len(MAGIC)) + 1
    manifest = json.loads(raw[len(MAGIC) : first])
    offset, files = first, {}
    for entry in manifest["files"]:
        files[entry["name"]] = raw[offset : offset + entry["size"]]
        offset += entry["size"]
    edit(files)
    old_tag = bytes.fromhex(raw[-65:-1].decode())
    craft(path, list(files.items()), tag=lambda _: old_tag)


def test_a_backup_edited_with_recomputed_checksums_is_refused(
    tmp_path: Path, data_dir: Path
) -> None:
    out = tmp_path / "b"
    create_backup(data_dir, out, TAG)

    def plant(files: dict[str, bytes]) -> None:
        files["seal.json"] = b'{"type": "pkcs11", "module": "/tmp/evil.so"}'

    _recomputed(out, plant)
    with pytest.raises(BackupError, match="MAC does not verify"):
        verify_backup(out, TAG)
    with pytest.raises(BackupError, match="MAC does not verify"):
        restore_backup(out, tmp_path / "r", TAG)
    assert not (tmp_path / "r").exists()


def test_another_root_does_not_verify_and_nothing_is_written(
    tmp_path: Path, data_dir: Path
) -> None:
    out = tmp_path / "b"
    create_backup(data_dir, out, TAG)
    other = KeyMaterial.generate(32)
    with pytest.raises(BackupError, match="seal's secret given is not this backup's"):
        restore_backup(out, tmp_path / "r", lambda digest: backup_tag(other, digest))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "data"]


def test_a_format_1_backup_is_refused_as_unauthenticated(tmp_path: Path, db_bytes: bytes) -> None:
    body = (
        b"KEYCASK-BACKUP 1\n"
        + json.dumps({"format": 1, "created": "x", "files": [], "notes": []}).encode()
        + b"\n"
    )
    old = tmp_path / "old"
    old.write_bytes(body + b"SHA256 " + hashlib.sha256(body).hexdigest().encode() + b"\n")
    with pytest.raises(BackupError, match="format 1 backup, which carries no MAC"):
        restore_backup(old, tmp_path / "r", TAG)


def test_a_tagged_database_with_a_trigger_is_still_refused(tmp_path: Path, db_bytes: bytes) -> None:
    db = tmp_path / "planted.db"
    db.write_bytes(db_bytes)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TRIGGER keep BEFORE DELETE ON kv BEGIN SELECT RAISE(IGNORE); END")
    conn.commit()
    conn.close()
    craft(tmp_path / "b", [("keycask.db", db.read_bytes())])
    with pytest.raises(BackupError, match="trigger 'keep'"):
        restore_backup(tmp_path / "b", tmp_path / "r", TAG)
    assert not (tmp_path / "r").exists()
