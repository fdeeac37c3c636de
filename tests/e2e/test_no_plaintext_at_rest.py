"""Nothing secret is at rest in the clear.

Every secret that passed through a running server (plaintexts, data keys,
random bytes, a principal's secret access key) and every secret it holds (the
KMS keys' material and the barrier's keyring keys) is searched for, raw and in
the text encodings a careless writer would use, in every byte of every file
under the data dir and in the server's log: once while the server runs (WAL
not yet checkpointed) and once after it stopped.

Two files hold a secret by design and are left out of the search:

* ``<data>/credentials``: the AWS shared-credentials file ``--dev`` writes so
  the user's CLI works out of the box. It holds the dev admin's secret access
  key, and only that: the test checks no other principal's secret is there.
* ``<data>/dev-root.key``: the dev seal's root key, in plain form by design
  (the server says so on every start). It opens the keyring and nothing else,
  so the keyring's own keys are searched for like any other secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from keycask import config
from keycask.app import open_store
from keycask.barrier import Barrier
from keycask.keys.keystore import KeyStore

if TYPE_CHECKING:
    from conftest import Server

BY_DESIGN = frozenset({"credentials", "dev-root.key"})


@dataclass(frozen=True)
class Needle:
    name: str
    forms: dict[str, bytes]  # encoding -> bytes to look for


def _binary(name: str, secret: bytes) -> Needle:
    assert len(secret) >= 16, f"{name} is too short to search for without false hits"
    b64 = base64.b64encode(secret).rstrip(b"=")
    url = base64.urlsafe_b64encode(secret).rstrip(b"=")
    return Needle(
        name,
        {
            "raw": secret,
            "hex": secret.hex().encode(),
            "HEX": secret.hex().upper().encode(),
            "base64": b64,
            "base64url": url,
        },
    )


def _text(name: str, secret: str) -> Needle:
    raw = secret.encode()
    return Needle(
        name,
        {
            "raw": raw,
            "base64": base64.b64encode(raw).rstrip(b"="),
            "utf-16": secret.encode("utf-16-le"),
        },
    )


def _plaintext(name: str, secret: bytes) -> Needle:
    # Plaintexts: raw and base64 (the wire form), as the brief of this test says.
    needle = _binary(name, secret)
    return Needle(name, {k: needle.forms[k] for k in ("raw", "base64", "base64url", "hex")})


def _files(server: Server) -> list[Path]:
    found = [p for p in server.data_dir.rglob("*") if p.is_file()]
    assert server.log_path is not None
    found.append(server.log_path)
    return found


def scan(server: Server, needles: list[Needle]) -> list[tuple[str, str, str]]:
    """(file, needle, encoding) for every needle found in a searched file."""
    hits = []
    for path in _files(server):
        if path.parent == server.data_dir and path.name in BY_DESIGN:
            continue
        data = path.read_bytes()
        for needle in needles:
            for form, value in needle.forms.items():
                if value in data:
                    hits.append((str(path.relative_to(server.data_dir.parent)), needle.name, form))
    return hits


def _prove_scan_works(server: Server, needles: list[Needle]) -> None:
    """The scanner finds a secret planted, encoded, deep in the data dir."""
    probe_dir = server.data_dir / "scan-probe" / "nested"
    probe_dir.mkdir(parents=True)
    probe = probe_dir / "planted.bin"
    target = needles[0]
    probe.write_bytes(os.urandom(100) + target.forms["base64"] + os.urandom(100))
    try:
        hits = scan(server, needles)
    finally:
        probe.unlink()
        probe_dir.rmdir()
        probe_dir.parent.rmdir()
    planted = str(probe.relative_to(server.data_dir.parent))
    assert (planted, target.name, "base64") in hits


async def _read_secrets_at_rest(data_dir: Path, key_ids: list[uuid.UUID]) -> list[Needle]:
    """Key material and keyring keys, read with keycask's own code."""
    settings = config.load(dev=True, data_dir=str(data_dir), env={})
    storage, barrier = await open_store(settings)
    try:
        keys = KeyStore(barrier)
        needles = []
        for key_id in key_ids:
            material = await keys.material(key_id, 1)
            assert material is not None, f"no material for {key_id}"
            assert len(material) == 32
            needles.append(_binary(f"key material {key_id}", material.reveal()))
        # The barrier's term keys: reached through the private keyring, since
        # no public API should (or does) hand them out.
        terms = _keyring_terms(barrier)
        assert terms
        needles += [_binary(f"barrier term {t}", k.reveal()) for t, k in terms.items()]
        return needles
    finally:
        await storage.close()


async def _read_kem_seed(data_dir: Path, key_id: uuid.UUID) -> Needle:
    """An ML-KEM key's 64-byte seed, the end of its stored seed-only PKCS#8."""
    settings = config.load(dev=True, data_dir=str(data_dir), env={})
    storage, barrier = await open_store(settings)
    try:
        material = await KeyStore(barrier).material(key_id, 1)
        assert material is not None, f"no material for {key_id}"
        der = material.reveal()
        assert len(der) == 86 and der[-66:-64] == b"\x80\x40"  # [0] IMPLICIT seed (RFC 9935)
        return _binary(f"ML-KEM seed {key_id}", der[-64:])
    finally:
        await storage.close()


def _keyring_terms(barrier: Barrier) -> dict[int, Any]:
    return dict(barrier._keyring.terms)


def test_no_secret_at_rest_in_the_clear(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    # The dev admin's secret is in <data>/credentials by design, and nowhere else.
    needles: list[Needle] = [_text("secret access key of the dev admin", server.credentials()[1])]

    key_a = kms.create_key(Description="at rest a")["KeyMetadata"]
    key_b = kms.create_key(Description="at rest b")["KeyMetadata"]
    kms.create_alias(AliasName="alias/at-rest", TargetKeyId=key_b["KeyId"])

    # Plaintexts: random bytes, a recognisable ASCII marker, and a long one.
    random32 = os.urandom(32)
    marker = b"KEYCASK-PLAINTEXT-MARKER-" + os.urandom(8).hex().encode() + b"-DO-NOT-STORE"
    long_text = os.urandom(3000)
    context = {"purpose": "at-rest-scan"}  # contexts are logged by design: not secret
    for i, (ref, plaintext) in enumerate(
        [(key_a["KeyId"], random32), ("alias/at-rest", marker), (key_a["Arn"], long_text)]
    ):
        blob = kms.encrypt(KeyId=ref, Plaintext=plaintext, EncryptionContext=context)[
            "CiphertextBlob"
        ]
        assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == plaintext
        needles.append(_plaintext(f"plaintext {i}", plaintext))
    needles.append(_text("ascii marker", marker.decode()))

    # Data keys, with and without a key spec, and one re-encrypted.
    for i, kwargs in enumerate([{"KeySpec": "AES_256"}, {"NumberOfBytes": 64}]):
        out = kms.generate_data_key(KeyId=key_b["Arn"], EncryptionContext=context, **kwargs)
        kms.re_encrypt(
            CiphertextBlob=out["CiphertextBlob"],
            SourceEncryptionContext=context,
            DestinationKeyId=key_a["KeyId"],
        )
        needles.append(_binary(f"data key {i}", out["Plaintext"]))
    needles.append(_binary("random bytes", kms.generate_random(NumberOfBytes=48)["Plaintext"]))

    # A second principal, made by the operator CLI offline while the server
    # runs (audited to cli.jsonl), used for allowed and refused calls; and one
    # more that is not an admin, made through the server.
    principals = {}
    for name, flags in (("scan-admin", ["--admin", "--offline"]), ("scan-reader", [])):
        proc = server.cli("principals", "create", name, *flags, "--json")
        created = json.loads(proc.stdout)
        assert created["Arn"].endswith(f":user/{name}")
        principals[name] = (created["AccessKeyId"], created["SecretAccessKey"])
        needles.append(_text(f"secret access key of {name}", created["SecretAccessKey"]))
    other = server.client(access_key=principals["scan-admin"])
    blob = other.encrypt(KeyId="alias/at-rest", Plaintext=marker)["CiphertextBlob"]
    assert other.decrypt(CiphertextBlob=blob)["Plaintext"] == marker
    assert other.list_keys()["Keys"]
    reader = server.client(access_key=principals["scan-reader"])
    with pytest.raises(ClientError) as denied:
        reader.encrypt(KeyId=key_a["KeyId"], Plaintext=random32)
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"

    # ML-KEM: the shared secret Encapsulate and Decapsulate answer, and the key's seed.
    kem = kms.create_key(KeySpec="ML_KEM_768", KeyUsage="ENCAPSULATE_DECAPSULATE")["KeyMetadata"]
    out = kms.encapsulate(KeyId=kem["KeyId"], EncapsulationAlgorithm="ML_KEM")
    back = kms.decapsulate(
        KeyId=kem["Arn"],
        SharedSecretCiphertextBlob=out["SharedSecretCiphertextBlob"],
        EncapsulationAlgorithm="ML_KEM",
    )
    assert back["SharedSecret"] == out["SharedSecret"]
    needles.append(_binary("ML-KEM shared secret", out["SharedSecret"]))
    needles.append(asyncio.run(_read_kem_seed(server.data_dir, uuid.UUID(kem["KeyId"]))))

    # What keycask holds at rest, read with its own code.
    key_ids = [uuid.UUID(key_a["KeyId"]), uuid.UUID(key_b["KeyId"])]
    needles += asyncio.run(_read_secrets_at_rest(server.data_dir, key_ids))

    # While running: the WAL (and -shm) hold recent writes.
    data = server.data_dir
    assert (data / "keycask.db-wal").stat().st_size > 0
    assert (data / "audit" / "server.jsonl").is_file()
    assert (data / "audit" / "cli.jsonl").is_file()
    _prove_scan_works(server, needles)
    assert scan(server, needles) == []

    # After a graceful stop: whatever was checkpointed or flushed.
    assert server.stop(signal.SIGTERM) == 0
    _prove_scan_works(server, needles)
    assert scan(server, needles) == []

    # The by-design exclusions hold only what they are meant to hold.
    admin_secret = server.credentials()[1]
    credentials_file = (data / "credentials").read_text()
    assert admin_secret in credentials_file
    for akid, secret in principals.values():
        assert secret not in credentials_file
        assert akid not in credentials_file
    assert (data / "dev-root.key").stat().st_size == 32
    searched = {p.name for p in _files(server)}
    assert {"keycask.db", "server.jsonl", "cli.jsonl", "config"} <= searched
