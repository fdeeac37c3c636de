"""``keycask operator backup`` / ``restore`` on a production data dir, end to end.

* A backup taken while clients keep writing restores into a new data dir that
  a production server unseals with three shares; everything acknowledged
  before the backup started decrypts. ``keycask audit verify`` passes on it.
* A backup with flipped bytes is refused and nothing is restored.
* Without the seal, the data dir and the backup hold no secret: imported key
  material, a data key, a plaintext, the root key, the barrier's term keys,
  the admin's secret access key and the operator token are found nowhere, in
  any encoding, in any byte of any file.
"""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from production import Production, keycask, unsealed_shamir

from keycask.barrier.keyring import KEYRING_PATH, Keyring
from keycask.crypto import Share, combine_shares


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Production]:
    with unsealed_shamir(tmp_path / "data") as server:
        yield server


def backup(prod: Production, file: Path) -> None:
    # The running server MACs the backup: it needs the operator token.
    done = prod.operator("backup", str(file), "--data-dir", str(prod.data_dir), check=False)
    assert done.returncode == 0, done.stderr
    assert file.is_file()


def restore(prod: Production, file: Path, data_dir: Path, check: bool = True, *extra: str) -> Any:
    """Restore with three of ``prod``'s shares (the proof that opens the MAC)
    and take the new operator token it makes."""
    shares = data_dir.parent / f"{data_dir.name}-shares"
    shares.write_text("\n".join(prod.shares[:3]) + "\n")
    token = data_dir.parent / f"{data_dir.name}-token"
    token.unlink(missing_ok=True)
    done = keycask(
        "operator", "restore", str(file), "--data-dir", str(data_dir),
        "--shares-file", str(shares), "--token-out", str(token), *extra, check=False,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr
    if done.returncode == 0:
        prod.init["operator_token"] = token.read_text().strip()
    return done


# -- a backup under write load --


class Writers:
    """Threads that create keys and encrypt under them until stopped."""

    def __init__(self, prod: Production, count: int) -> None:
        self._clients = [prod.client() for _ in range(count)]
        self._stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[str, bytes, bytes]] = []  # (key ARN, plaintext, ciphertext)
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._run, args=(k,)) for k in self._clients]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
        for kms in self._clients:
            kms.close()  # an idle keep-alive TLS connection holds up a stop for 10 s

    def _run(self, kms: Any) -> None:
        key = ""
        i = 0
        while not self._stop.wait(0.005):
            try:
                if i % 10 == 0:
                    key = kms.create_key()["KeyMetadata"]["Arn"]
                plaintext = os.urandom(20)
                blob = kms.encrypt(KeyId=key, Plaintext=plaintext)["CiphertextBlob"]
            except Exception as error:  # every failure counts
                with self.lock:
                    self.errors.append(repr(error))
                continue
            with self.lock:
                self.acked.append((key, plaintext, blob))
            i += 1


def test_backup_under_write_load_restores_everything_acknowledged(
    prod: Production, tmp_path: Path
) -> None:
    file = tmp_path / "keycask.backup"
    writers = Writers(prod, 3)
    writers.start()
    try:
        time.sleep(2)
        with writers.lock:
            before = list(writers.acked)  # all acknowledged before the backup starts
        backup(prod, file)
        time.sleep(0.5)  # writes go on after the snapshot too
    finally:
        writers.stop()
    assert writers.errors == []
    assert len(before) > 20 and len(writers.acked) > len(before)
    term_before = prod.status()["term"]

    # The TLS key is never in a backup: an operator keeps it apart.
    tls = tmp_path / "tls-kept-apart"
    shutil.copytree(prod.data_dir / "tls", tls)
    prod.stop()
    shutil.rmtree(prod.data_dir)
    restore(prod, file, prod.data_dir)
    assert not (prod.data_dir / "tls").exists()
    shutil.copytree(tls, prod.data_dir / "tls")

    prod.start()
    assert prod.status()["sealed"] is True
    prod.unseal_with(prod.shares[1:4])
    # A restored copy starts its own barrier term: it must not count its
    # AES-GCM seals from the original's reservation.
    assert prod.status()["term"] == term_before + 1
    assert not (prod.data_dir / "restored").exists()
    kms = prod.client(retries=3)
    try:
        for key, plaintext, blob in before:
            answer = kms.decrypt(CiphertextBlob=blob)
            assert answer["Plaintext"] == plaintext and answer["KeyId"] == key
    finally:
        kms.close()

    # The anchors too: the Shamir seal's shares on stdin open the store to read.
    verified = keycask(
        "audit", "verify", "--data-dir", str(prod.data_dir), "--shares-file", "-",
        stdin="\n".join(prod.shares[:3]) + "\n", check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("ok:"), verified.stdout


# -- a damaged backup --


def _flipped(source: Path, target: Path, *offsets: int) -> Path:
    data = bytearray(source.read_bytes())
    for offset in offsets:
        data[offset] ^= 0x01
    target.write_bytes(bytes(data))
    return target


def test_a_damaged_backup_is_refused(prod: Production, tmp_path: Path) -> None:
    kms = prod.client()
    for _ in range(3):
        kms.create_key()
    kms.close()
    good = tmp_path / "good.backup"
    backup(prod, good)
    size = good.stat().st_size
    damaged = {
        "middle": _flipped(good, tmp_path / "middle.backup", size // 2),
        "end": _flipped(good, tmp_path / "end.backup", size - 100),
        "both": _flipped(good, tmp_path / "both.backup", size // 2, size - 100),
    }
    empty = tmp_path / "empty-target"
    empty.mkdir()
    for name, file in damaged.items():
        for target in (tmp_path / f"restored-{name}", empty):
            done = restore(prod, file, target, False)
            assert done.returncode != 0, name
            assert "checksum mismatch" in done.stderr and "damaged" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
            assert not target.exists() or list(target.iterdir()) == [], name
        assert not (tmp_path / f"restored-{name}").exists()
    # Nothing was left behind beside the targets either (staging dirs).
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # The intact backup restores.
    restore(prod, good, tmp_path / "restored-good")
    assert (tmp_path / "restored-good" / "keycask.db").is_file()


# -- no secret without the seal --

SECRET_SIZE = 32


def _forms(secret: bytes) -> dict[str, bytes]:
    forms = {"raw": secret, "hex": secret.hex().encode(), "HEX": secret.hex().upper().encode()}
    # Base64 at each of the three alignments the secret may have in a longer
    # encoded value, minus the edge characters that depend on its neighbours.
    for shift in range(3):
        encoded = base64.b64encode(b"\x00" * shift + secret)
        inner = encoded[4 if shift else 0 : -4]
        forms[f"base64+{shift}"] = inner
        forms[f"base64url+{shift}"] = inner.replace(b"+", b"-").replace(b"/", b"_")
    return forms


def _text_forms(secret: str) -> dict[str, bytes]:
    raw = secret.encode()
    return {"raw": raw, "base64": base64.b64encode(raw).rstrip(b"="), "hex": raw.hex().encode()}


def _hits(files: list[Path], needles: dict[str, dict[str, bytes]]) -> list[tuple[str, str, str]]:
    found = []
    for path in files:
        data = path.read_bytes()
        for name, forms in needles.items():
            for form, value in forms.items():
                if value in data:
                    found.append((path.name, name, form))
    return found


def _import_known_material(kms: Any, material: bytes) -> str:
    key = kms.create_key(Origin="EXTERNAL", Description="byok")["KeyMetadata"]["KeyId"]
    params = kms.get_parameters_for_import(
        KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    public = serialization.load_der_public_key(params["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    kms.import_key_material(
        KeyId=key,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=public.encrypt(material, oaep),
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
    )
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    return str(key)


def _keyring_blob(db: Path) -> bytes:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM kv WHERE path = ?", (KEYRING_PATH,)).fetchone()
    finally:
        conn.close()
    assert row is not None
    return bytes(row[0])


def test_without_the_seal_no_secret_is_in_the_data_dir_or_the_backup(
    prod: Production, tmp_path: Path
) -> None:
    kms = prod.client()
    material = os.urandom(SECRET_SIZE)
    imported = _import_known_material(kms, material)
    plaintext = os.urandom(SECRET_SIZE)
    blob = kms.encrypt(KeyId=imported, Plaintext=plaintext)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    data_key = kms.generate_data_key(KeyId=other, KeySpec="AES_256")["Plaintext"]
    # A second term, so the keyring holds more than one key; and values under both.
    prod.operator("rotate")
    kms.encrypt(KeyId=imported, Plaintext=b"after the rotation")
    kms.close()
    file = tmp_path / "keycask.backup"
    backup(prod, file)

    root = combine_shares([Share.decode(s) for s in prod.shares[:3]])
    keyring = Keyring.open_with(root, _keyring_blob(prod.data_dir / "keycask.db"))
    # Term 1 may already be retired, if the rewrite finished meanwhile.
    assert keyring.active_term == 2 and set(keyring.terms) <= {1, 2}
    needles = {
        "imported key material": _forms(material),
        "encrypted plaintext": _forms(plaintext),
        "data key": _forms(data_key),
        "root key": _forms(root.reveal()),
        **{f"barrier term {t}": _forms(k.reveal()) for t, k in keyring.terms.items()},
        "admin secret access key": _text_forms(prod.init["admin"]["secret_access_key"]),
        "operator token": _text_forms(prod.token),
        **{f"share {n}": _text_forms(s.split("-")[3]) for n, s in enumerate(prod.shares)},
    }

    # The scanner finds what it looks for, in every form.
    probe = tmp_path / "probe.bin"
    for name, forms in needles.items():
        for form, value in forms.items():
            probe.write_bytes(os.urandom(64) + value + os.urandom(64))
            assert _hits([probe], {name: {form: value}}) == [("probe.bin", name, form)]
    probe.unlink()

    # While the server runs: the WAL and its index are there too.
    files = [p for p in prod.data_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"keycask.db", "keycask.db-wal", "keycask.db-shm", "seal.json"} <= names, names
    assert _hits([*files, file], needles) == []

    prod.stop()
    files = [p for p in prod.data_dir.rglob("*") if p.is_file()]
    assert _hits([*files, file], needles) == []
