"""keycask's backups of a server with an HSM-backed key (issue 19, Done-when:
"no byte of the key appears in the keycask store, backups or audit"). The key
was generated inside a SoftHSM2 token and cannot be read out of it, so what is
shown is that nothing in the backup opens its ciphertexts: restored into a new
data dir, an ordinary key's ciphertext decrypts, the HSM key's does not
without its token (none configured, or an empty token of the same label and
PIN), and does again once the original token is configured: the backup and
the token together restore it. The backup's store holds no material row for
the key, and neither the backup nor the audit log holds the token's PIN."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from production import SOFTHSM_TOKEN, SoftHsm, secret_file
from test_hsm_key_store_e2e import (
    CLUSTER,
    PIN,
    _certificate,
    _code,
    _connected_key,
    _store,
    _token_keys,
)

from conftest import Server

HSM_PLAINTEXT = b"hsm-backed secret 7f3a"
PLAIN_PLAINTEXT = b"ordinary secret 91c2"


def _members(backup: Path) -> dict[str, bytes]:
    """The files of a backup (storage/backup.py's format 2: a magic line, a
    manifest line, the files back to back in manifest order, a trailer)."""
    data = backup.read_bytes()
    magic, manifest, body = data.split(b"\n", 2)
    assert magic == b"KEYCASK-BACKUP 2"
    members, offset = {}, 0
    for entry in json.loads(manifest)["files"]:
        members[entry["name"]] = body[offset : offset + entry["size"]]
        offset += entry["size"]
    assert body[offset:].startswith(b"HMAC-SHA256 ")
    return members


def _hsm_server(data_dir: Path, hsm: SoftHsm | None, pin_file: Path) -> Server:
    if hsm is None:
        return Server(data_dir)
    return Server(
        data_dir,
        args=("--hsm", f"{CLUSTER}={hsm.module}:{SOFTHSM_TOKEN}", "--hsm-pin-file", str(pin_file)),
        env_extra={"SOFTHSM2_CONF": str(hsm.conf)},
    )


def test_a_backup_holds_nothing_that_opens_an_hsm_key(tmp_path: Path) -> None:
    hsm = SoftHsm(tmp_path / "softhsm", pin=PIN)
    pin_file = secret_file(tmp_path / "pin", PIN)
    server = _hsm_server(tmp_path / "data", hsm, pin_file).start()
    try:
        kms = server.client()
        store_id, hsm_key = _connected_key(kms, _certificate(tmp_path))
        plain_key = kms.create_key()["KeyMetadata"]["KeyId"]
        hsm_blob = kms.encrypt(KeyId=hsm_key, Plaintext=HSM_PLAINTEXT)["CiphertextBlob"]
        plain_blob = kms.encrypt(KeyId=plain_key, Plaintext=PLAIN_PLAINTEXT)["CiphertextBlob"]
        assert len(_token_keys(hsm)) == 1
        # A --dev data dir is backed up online, MACed with its root key.
        backup = tmp_path / "keycask.backup"
        done = server.cli("operator", "backup", str(backup), check=False)
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()

    # What the backup holds: the store and the audit, no material for the HSM key.
    members = _members(backup)
    assert "keycask.db" in members and any(name.startswith("audit/") for name in members)
    db_copy = tmp_path / "backup-copy.db"
    db_copy.write_bytes(members["keycask.db"])
    with sqlite3.connect(db_copy) as db:
        paths = [path for (path,) in db.execute("SELECT path FROM kv")]
    assert not [p for p in paths if p.startswith(f"mat/{hsm_key}/")]
    assert [p for p in paths if p.startswith(f"mat/{plain_key}/")]
    assert f"cksidx/{store_id}/{hsm_key}" in paths
    whole = backup.read_bytes()
    for secret in (PIN.encode(), HSM_PLAINTEXT, PLAIN_PLAINTEXT):
        assert secret not in whole
    assert PIN not in (server.data_dir / "audit" / "server.jsonl").read_text()

    restored = tmp_path / "restored"
    done = subprocess.run(
        [sys.executable, "-m", "keycask.cli", "operator", "restore", str(backup),
         "--data-dir", str(restored), "--dev-root-key", str(server.data_dir / "dev-root.key")],
        capture_output=True, text=True, env=server.env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    # 1. No token configured: the ordinary key's ciphertext opens, the HSM key's not.
    second = _hsm_server(restored, None, pin_file).start()
    try:
        kms = second.client()
        assert kms.decrypt(CiphertextBlob=plain_blob)["Plaintext"] == PLAIN_PLAINTEXT
        assert kms.describe_key(KeyId=hsm_key)["KeyMetadata"]["KeyState"] == "Unavailable"
        entry = _store(kms, store_id)
        # Restored CONNECTED, its token not there: as a token that does not answer.
        assert (entry["ConnectionState"], entry["ConnectionErrorCode"]) == (
            "FAILED", "NETWORK_ERRORS",
        )  # fmt: skip
        with pytest.raises(ClientError) as error:
            kms.decrypt(CiphertextBlob=hsm_blob)
        assert _code(error) == "KMSInvalidStateException"
    finally:
        second.stop()

    # 2. A fresh token of the same label and PIN: it logs in, but holds no key.
    empty = SoftHsm(tmp_path / "empty-softhsm", pin=PIN)
    third = _hsm_server(restored, empty, pin_file).start()
    try:
        kms = third.client()
        assert kms.decrypt(CiphertextBlob=plain_blob)["Plaintext"] == PLAIN_PLAINTEXT
        with pytest.raises(ClientError) as error:
            kms.decrypt(CiphertextBlob=hsm_blob)
        assert _code(error) == "KMSInvalidStateException"
        assert "not in its HSM" in str(error.value)
    finally:
        third.stop()
    assert _token_keys(empty) == {}

    # 3. The original token again: the backup and the token together restore it.
    fourth = _hsm_server(restored, hsm, pin_file).start()
    try:
        kms = fourth.client()
        assert kms.describe_key(KeyId=hsm_key)["KeyMetadata"]["KeyState"] == "Enabled"
        assert kms.decrypt(CiphertextBlob=hsm_blob)["Plaintext"] == HSM_PLAINTEXT
        assert kms.decrypt(CiphertextBlob=plain_blob)["Plaintext"] == PLAIN_PLAINTEXT
    finally:
        fourth.stop()
    for log in (server.data_dir / "audit").glob("*.jsonl"):
        assert PIN not in log.read_text()
    for log in (restored / "audit").glob("*.jsonl"):
        assert PIN not in log.read_text()
