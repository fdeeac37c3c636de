"""Attacks through a tampered backup or data dir (issue 26, finding 2), and
operator token rotation (finding 12), against real servers, the real CLI, real
SQLite files and a real SoftHSM2 token.

Before the fix a backup's checksums were plain SHA-256, which an attacker
recomputes, and restore checked only member names. So each attack below
restored cleanly and then worked: (a) ``seal.json`` naming a shared library
shipped in the backup as an audit segment made the restored server load it at
start, next to the PIN; (b) an ``operator.json`` of the attacker's gave them
the operator token; (c) a ``RAISE(IGNORE)`` trigger on ``accesskey/%`` rows
made DeleteAccessKey answer success while the key kept working. Now the
backup's MAC (a key derived from the root) refuses every edit before anything
is written, and independently the server loads PKCS#11 libraries only from
its own configuration, refuses foreign schema objects at open and fails a
commit whose write changed no row.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from production import (
    SOFTHSM_PIN,
    Production,
    SoftHsm,
    keycask,
    pkcs11_flags,
    secret_file,
    unsealed_shamir,
)
from test_production_backup import backup, restore

from keycask.storage.backup import MAGIC

pytestmark = pytest.mark.slow  # real servers, several starts each


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Production]:
    with unsealed_shamir(tmp_path / "data") as server:
        yield server


def _repacked(file: Path, edit: Callable[[dict[str, bytes]], None]) -> None:
    """What an attacker without the root does to a backup: unpack it, edit
    members, write it again with every SHA-256 recomputed."""
    raw = file.read_bytes()
    end = raw.index(b"\n", len(MAGIC)) + 1
    manifest = json.loads(raw[len(MAGIC) : end])
    offset, files = end, {}
    for entry in manifest["files"]:
        files[entry["name"]] = raw[offset : offset + entry["size"]]
        offset += entry["size"]
    edit(files)
    manifest["files"] = [
        {"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for n, b in files.items()
    ]
    trailer = raw[offset:]  # the old tag: the one thing the attacker cannot recompute
    body = MAGIC + json.dumps(manifest).encode() + b"\n" + b"".join(files.values())
    file.write_bytes(body + trailer)


def _refused(done: subprocess.CompletedProcess[str], target: Path, why: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert why in done.stderr, done.stderr
    assert not target.exists()


# -- (a) a planted PKCS#11 library --


def _planted_library(tmp_path: Path, marker: Path) -> bytes:
    """A shared library that leaves ``marker`` behind when it is loaded."""
    source = tmp_path / "planted.c"
    source.write_text(
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void planted(void) {\n"
        f'  FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("loaded", f); fclose(f); }}\n'
        "}\n"
    )
    library = tmp_path / "planted.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library.read_bytes()


def test_a_planted_pkcs11_library_is_never_loaded(tmp_path: Path) -> None:
    hsm = SoftHsm(tmp_path / "hsm")
    pin_file = secret_file(tmp_path / "pin", SOFTHSM_PIN)
    pin_env = {"KEYCASK_PKCS11_PIN": SOFTHSM_PIN}
    prod = Production(tmp_path / "data", extra_env=hsm.env())
    prod.initialise("--seal", "pkcs11", *pkcs11_flags(hsm, "backup-key", pin_file))
    marker = tmp_path / "library-was-loaded"
    library = _planted_library(tmp_path, marker)
    prod.start(env=pin_env)
    try:
        kms = prod.client()
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"kept")["CiphertextBlob"]
        kms.close()
        good = tmp_path / "good.backup"
        backup(prod, good)
    finally:
        prod.stop()

    # Through a backup: the library rides in as an audit segment, and the
    # seal file points at where restore will put it.
    target = tmp_path / "restored"
    tampered = tmp_path / "tampered.backup"
    tampered.write_bytes(good.read_bytes())

    def plant(files: dict[str, bytes]) -> None:
        files["audit/zz.jsonl"] = library
        seal = json.loads(files["seal.json"])
        seal["module"] = str(target / "audit" / "zz.jsonl")
        files["seal.json"] = json.dumps(seal).encode()

    _repacked(tampered, plant)
    done = keycask(
        "operator", "restore", str(tampered), "--data-dir", str(target),
        "--pin-file", str(pin_file), env=hsm.env(), check=False,
    )  # fmt: skip
    # The library is not one this restore may load to obtain the root, so it
    # is refused before the MAC is even computed.
    _refused(done, target, "not configured to load")
    assert not marker.exists()

    # Straight into a data dir: the server loads only libraries it was given.
    (prod.data_dir / "audit" / "zz.jsonl").write_bytes(library)
    seal_path = prod.data_dir / "seal.json"
    original_seal = seal_path.read_text()
    seal = json.loads(original_seal)
    seal["module"] = str(prod.data_dir / "audit" / "zz.jsonl")
    seal_path.write_text(json.dumps(seal))
    prod.start(expect_exit=True, env=pin_env)
    assert prod.proc is not None and prod.proc.wait(timeout=30) != 0
    prod.proc = None
    assert "not configured to load" in prod.log() and "zz.jsonl" in prod.log()
    assert not marker.exists()

    # The untouched backup restores with the PIN and the server's library.
    seal_path.write_text(original_seal)
    done = keycask(
        "operator", "restore", str(good), "--data-dir", str(target),
        "--pin-file", str(pin_file), "--pkcs11-module", hsm.module, check=False,
        env={"SOFTHSM2_CONF": str(hsm.conf)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "New operator token" in done.stdout
    shutil.copytree(prod.data_dir / "tls", target / "tls")  # never in a backup
    restored = Production(target, extra_env=hsm.env(), init=dict(prod.init))
    try:
        restored.start(env=pin_env)
        kms = restored.client()
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"
        kms.close()
    finally:
        if restored.proc is not None:
            restored.stop()
    assert not marker.exists()


# -- (b) a planted operator token; rotation --


def _token_works(prod: Production, token: str) -> bool:
    status, _ = prod.raw("KeycaskOperator.Status", {"Authorization": f"Bearer {token}"})
    return status == 200


def test_a_planted_operator_token_is_refused_and_restore_makes_a_new_one(
    prod: Production, tmp_path: Path
) -> None:
    file = tmp_path / "keycask.backup"
    backup(prod, file)
    attacker = "kco_" + "a" * 52
    tampered = tmp_path / "tampered.backup"
    tampered.write_bytes(file.read_bytes())

    def plant(files: dict[str, bytes]) -> None:
        digest = hashlib.sha256(attacker.encode()).hexdigest()
        files["operator.json"] = json.dumps({"sha256": digest}).encode()

    _repacked(tampered, plant)
    target = tmp_path / "restored-tampered"
    # A backup never holds operator.json any more, so the name alone is refused.
    _refused(restore(prod, tampered, target, False), target, "unexpected path: 'operator.json'")
    # Any other edit (here: a forged audit line) fails the MAC.
    tampered.write_bytes(file.read_bytes())

    def forge(files: dict[str, bytes]) -> None:
        files["audit/server.jsonl"] += b'{"forged": true}\n'

    _repacked(tampered, forge)
    _refused(restore(prod, tampered, target, False), target, "MAC does not verify")

    # The genuine backup: the token of backup time does not come back.
    old_token = prod.token
    prod.stop()
    target = tmp_path / "restored"
    restore(prod, file, target)
    assert prod.token != old_token
    assert stat.S_IMODE((tmp_path / "restored-token").stat().st_mode) == 0o600
    shutil.copytree(prod.data_dir / "tls", target / "tls")  # never in a backup
    restored = Production(target, init=prod.init)
    try:
        restored.start()
        assert not _token_works(restored, old_token)
        assert not _token_works(restored, attacker)
        assert _token_works(restored, restored.token)
    finally:
        if restored.proc is not None:
            restored.stop()


def test_operator_token_rotation(prod: Production, tmp_path: Path) -> None:
    old = prod.token
    out = tmp_path / "new-token"
    done = prod.operator("rotate-token", "--out", str(out))
    assert old not in done.stdout and str(out) in done.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    new = out.read_text().strip()
    assert new.startswith("kco_") and new != old
    assert not _token_works(prod, old)
    assert _token_works(prod, new)
    prod.init["operator_token"] = new

    # An administrator's signature alone cannot rotate it.
    admin = prod.init["admin"]
    status, answer = prod.signed(
        "KeycaskOperator.RotateToken", {}, (admin["access_key_id"], admin["secret_access_key"])
    )
    assert status == 400 and answer["__type"] == "AccessDeniedException", answer

    # Printed once when no file is asked for; survives a restart.
    done = prod.operator("rotate-token")
    newer = done.stdout.split("(shown once): ")[1].strip()
    assert not _token_works(prod, new)
    prod.init["operator_token"] = newer
    prod.stop()
    prod.start()
    assert _token_works(prod, newer)

    log = (prod.data_dir / "audit" / "server.jsonl").read_text()
    rotations = [json.loads(line) for line in log.splitlines() if "RotateToken" in line]
    assert any(r["outcome"] == "success" for r in rotations), rotations
    for secret in (new, newer):
        assert secret not in log


# -- (c) a trigger that swallows deletes --

TRIGGER = (
    "CREATE TRIGGER keep_keys BEFORE DELETE ON kv WHEN old.path LIKE 'accesskey/%'"
    " BEGIN SELECT RAISE(IGNORE); END"
)


def _plant_trigger(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute(TRIGGER)
        conn.commit()
    finally:
        conn.close()


def _second_principal(prod: Production) -> dict[str, Any]:
    admin = prod.init["admin"]
    creds = (admin["access_key_id"], admin["secret_access_key"])
    status, created = prod.signed("KeycaskAdmin.CreatePrincipal", {"Name": "app"}, creds)
    assert status == 200, created
    return created


def _works(prod: Production, created: dict[str, Any]) -> bool:
    """Whether the access key still signs (its principal has no policy, so
    the call itself is denied: that is authorization, after authentication)."""
    status, answer = prod.signed(
        "TrentService.ListKeys", {}, (created["AccessKeyId"], created["SecretAccessKey"])
    )
    return status == 400 and answer["__type"] == "AccessDeniedException"


def test_a_trigger_that_keeps_deleted_access_keys_is_refused(
    prod: Production, tmp_path: Path
) -> None:
    created = _second_principal(prod)
    admin = prod.init["admin"]
    creds = (admin["access_key_id"], admin["secret_access_key"])

    # Through a backup: refused before anything is written.
    file = tmp_path / "keycask.backup"
    backup(prod, file)

    def plant(files: dict[str, bytes]) -> None:
        db = tmp_path / "extracted.db"
        db.write_bytes(files["keycask.db"])
        _plant_trigger(db)
        files["keycask.db"] = db.read_bytes()

    _repacked(file, plant)
    target = tmp_path / "restored"
    _refused(restore(prod, file, target, False), target, "MAC does not verify")

    # Planted in the live store while the server runs: the delete does not
    # answer success, and says the commit failed in the audit log.
    _plant_trigger(prod.data_dir / "keycask.db")
    status, answer = prod.signed(
        "KeycaskAdmin.DeleteAccessKey", {"AccessKeyId": created["AccessKeyId"]}, creds
    )
    assert status == 500 and answer["__type"] == "KMSInternalException", answer
    log = (prod.data_dir / "audit" / "server.jsonl").read_text().splitlines()
    deletes = [json.loads(x) for x in log if "KeycaskAdmin.DeleteAccessKey" in x]
    assert deletes[-1]["detail"] == "commit failed", deletes
    # Nothing was deleted, and nobody was told it was.
    assert _works(prod, created)

    # And at the next start the server refuses the store, naming the trigger.
    prod.stop()
    before = len(prod.log())
    prod.start(expect_exit=True)
    assert prod.proc is not None and prod.proc.wait(timeout=30) != 0
    prod.proc = None
    refusal = prod.log()[before:]
    assert "trigger 'keep_keys'" in refusal and "Traceback" not in refusal, refusal
