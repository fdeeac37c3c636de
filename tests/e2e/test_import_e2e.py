"""Imported key material (BYOK), end to end: boto3 against a real server.

The client side is a real client library and nothing of keycask's: material is
wrapped with ``cryptography``'s RSA-OAEP (MGF1 of the same hash) and, for the
RSA_AES_KEY_WRAP algorithms, an ephemeral 256-bit AES key under RSA-OAEP
followed by AES Key Wrap with Padding (RFC 5649) of the material, all to the
PublicKey (DER SubjectPublicKeyInfo) that GetParametersForImport returned.

Covered: the round trip for every wrapping algorithm and key size, delete and
re-import of the same material, every refusal with AWS's error code (and the
key unchanged after it), expiry of material by keycask's lifecycle clock,
rotation to newly imported material, and that no imported material (nor the
ephemeral AES key, nor the server's wrapping private key) is at rest in the
clear. Tests that move the clock have a server of their own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from test_no_plaintext_at_rest import Needle, _binary, _prove_scan_works, scan

from conftest import DAY, Server
from keycask import config
from keycask.app import open_store
from keycask.keys.keystore import KeyStore

HOUR = 3600.0
MATERIAL_ID = re.compile(r"^[0-9a-f]{64}$")
ALGORITHMS = (
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
)
_HASHES: dict[str, type[hashes.SHA1 | hashes.SHA256]] = {
    "RSAES_OAEP_SHA_1": hashes.SHA1,
    "RSAES_OAEP_SHA_256": hashes.SHA256,
    "RSA_AES_KEY_WRAP_SHA_1": hashes.SHA1,
    "RSA_AES_KEY_WRAP_SHA_256": hashes.SHA256,
}
DOES_NOT_EXPIRE = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}


# -- the client side: cryptography only --


def wrap(
    public_der: bytes, algorithm: str, material: bytes, ephemeral: bytes | None = None
) -> bytes:
    """``material`` wrapped to ``public_der`` as AWS's instructions say."""
    public = serialization.load_der_public_key(public_der)
    assert isinstance(public, rsa.RSAPublicKey)
    hash_type = _HASHES[algorithm]
    oaep = padding.OAEP(mgf=padding.MGF1(hash_type()), algorithm=hash_type(), label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep)
    aes_key = ephemeral if ephemeral is not None else os.urandom(32)
    return public.encrypt(aes_key, oaep) + aes_key_wrap_with_padding(aes_key, material)


def code_of(call: Callable[..., Any], **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return str(caught.value.response["Error"]["Code"])


class Client:
    """A boto3 KMS client and the few steps every BYOK test repeats."""

    def __init__(self, kms: Any) -> None:
        self.kms = kms

    def external_key(self, description: str = "byok") -> dict[str, Any]:
        meta = self.kms.create_key(Origin="EXTERNAL", Description=description)["KeyMetadata"]
        assert meta["Origin"] == "EXTERNAL"
        assert meta["KeyState"] == "PendingImport"
        assert meta["Enabled"] is False
        assert "CurrentKeyMaterialId" not in meta
        return dict(meta)

    def params(
        self, key_id: str, algorithm: str = "RSAES_OAEP_SHA_256", spec: str = "RSA_2048"
    ) -> dict[str, Any]:
        return dict(
            self.kms.get_parameters_for_import(
                KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec=spec
            )
        )

    def import_(
        self,
        key_id: str,
        material: bytes,
        *,
        algorithm: str = "RSAES_OAEP_SHA_256",
        spec: str = "RSA_2048",
        params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str:
        """Import ``material`` with fresh parameters; the KeyMaterialId."""
        if params is None:
            params = self.params(key_id, algorithm, spec)
        kwargs = kwargs or dict(DOES_NOT_EXPIRE)
        out = self.kms.import_key_material(
            KeyId=key_id,
            ImportToken=params["ImportToken"],
            EncryptedKeyMaterial=wrap(params["PublicKey"], algorithm, material),
            **kwargs,
        )
        assert out["KeyId"].endswith(key_id)
        assert MATERIAL_ID.match(out["KeyMaterialId"]), out["KeyMaterialId"]
        return str(out["KeyMaterialId"])

    def describe(self, key_id: str) -> dict[str, Any]:
        return dict(self.kms.describe_key(KeyId=key_id)["KeyMetadata"])

    def materials(self, key_id: str) -> list[dict[str, Any]]:
        out = self.kms.list_key_rotations(KeyId=key_id, IncludeKeyMaterial="ALL_KEY_MATERIAL")
        assert not out["Truncated"]
        return list(out["Rotations"])

    def snapshot(self, key_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Everything the API says about a key's state and its materials."""
        return self.describe(key_id), self.materials(key_id)

    def encrypt(self, key_id: str, plaintext: bytes) -> bytes:
        return bytes(self.kms.encrypt(KeyId=key_id, Plaintext=plaintext)["CiphertextBlob"])

    def decrypt(self, blob: bytes) -> bytes:
        return bytes(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"])


def blob_version(blob: bytes, key_id: str) -> int:
    """The key version a ciphertext blob v1 names (docs/architecture.md)."""
    assert blob[0] == 0x01
    assert blob[1:17] == uuid.UUID(key_id).bytes
    return int.from_bytes(blob[17:21], "big")


def keycask_now(server: Server) -> datetime:
    """keycask's lifecycle clock: what a tiny advance of it answers."""
    return datetime.fromisoformat(server.advance_clock(0.001)["Now"])


def stored_paths(server: Server, prefix: str) -> list[str]:
    uri = (server.data_dir / "keycask.db").as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        rows = conn.execute(
            "SELECT path FROM kv WHERE path >= ? AND path < ? ORDER BY path",
            (prefix, prefix + "\uffff"),
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture(scope="module")
def import_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This module's server for tests that never move its clock."""
    srv = Server(tmp_path_factory.mktemp("imports") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(import_server: Server) -> Client:
    return Client(import_server.client())


# -- 1. the round trip --


@pytest.mark.parametrize(
    ("algorithm", "spec"),
    [
        *((algorithm, "RSA_2048") for algorithm in ALGORITHMS),
        ("RSA_AES_KEY_WRAP_SHA_256", "RSA_3072"),
        ("RSAES_OAEP_SHA_1", "RSA_4096"),
    ],
)
def test_byok_round_trip(client: Client, algorithm: str, spec: str) -> None:
    kms = client.kms
    key = client.external_key(f"round trip {algorithm} {spec}")
    key_id = key["KeyId"]
    assert code_of(kms.encrypt, KeyId=key_id, Plaintext=b"x") == "KMSInvalidStateException"

    params = client.params(key_id, algorithm, spec)
    assert params["KeyId"] == key["Arn"]
    public = serialization.load_der_public_key(params["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == int(spec.removeprefix("RSA_"))
    assert public.public_numbers().e == 65537
    valid_for = params["ParametersValidTo"] - datetime.now(UTC)
    assert timedelta(hours=23, minutes=55) < valid_for <= timedelta(hours=24, minutes=1)

    material = os.urandom(32)
    material_id = client.import_(
        key_id, material, algorithm=algorithm, spec=spec, params=params, **DOES_NOT_EXPIRE
    )

    meta = client.describe(key_id)
    assert meta["KeyState"] == "Enabled"
    assert meta["Enabled"] is True
    assert meta["Origin"] == "EXTERNAL"
    assert meta["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert "ValidTo" not in meta
    assert meta["CurrentKeyMaterialId"] == material_id

    [entry] = client.materials(key_id)
    assert entry["KeyMaterialId"] == material_id
    assert entry["KeyMaterialState"] == "CURRENT"
    assert entry["ImportState"] == "IMPORTED"
    assert entry["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert "ValidTo" not in entry
    assert "RotationType" not in entry

    plaintext = os.urandom(100)
    context = {"byok": algorithm}
    blob = kms.encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext=context)[
        "CiphertextBlob"
    ]
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
    assert out["Plaintext"] == plaintext
    assert out["KeyId"] == key["Arn"]
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert client.decrypt(data_key["CiphertextBlob"]) == data_key["Plaintext"]


def test_material_id_is_per_key(client: Client) -> None:
    """The same material in two keys has two ids (a PRF of material and key id),
    and ciphertexts of one key do not open under the other."""
    material = os.urandom(32)
    a = client.external_key("same material a")["KeyId"]
    b = client.external_key("same material b")["KeyId"]
    id_a = client.import_(a, material)
    id_b = client.import_(b, material, algorithm="RSA_AES_KEY_WRAP_SHA_256")
    assert id_a != id_b
    blob = client.encrypt(a, b"per key")
    assert client.decrypt(blob) == b"per key"
    code = code_of(client.kms.decrypt, CiphertextBlob=blob, KeyId=b)
    assert code == "IncorrectKeyException"


# -- 2. delete and import again --


def test_delete_and_reimport_the_same_material(client: Client) -> None:
    kms = client.kms
    key_id = client.external_key("delete and reimport")["KeyId"]
    material = os.urandom(32)
    first_id = client.import_(key_id, material, algorithm="RSAES_OAEP_SHA_1")
    before = client.encrypt(key_id, b"sealed before the delete")

    assert client.describe(key_id)["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    out = kms.delete_imported_key_material(KeyId=key_id)
    assert out["KeyMaterialId"] == first_id
    meta = client.describe(key_id)
    assert meta["KeyState"] == "PendingImport"
    # As AWS: no material, no ExpirationModel (until material comes again).
    assert "ExpirationModel" not in meta
    assert meta["Enabled"] is False
    assert meta["CurrentKeyMaterialId"] == first_id
    [entry] = client.materials(key_id)
    assert entry["ImportState"] == "PENDING_IMPORT"
    assert entry["KeyMaterialState"] == "CURRENT"
    assert code_of(kms.encrypt, KeyId=key_id, Plaintext=b"x") == "KMSInvalidStateException"
    assert code_of(kms.decrypt, CiphertextBlob=before) == "KMSInvalidStateException"
    assert code_of(kms.generate_data_key, KeyId=key_id, KeySpec="AES_256") == (
        "KMSInvalidStateException"
    )
    # Deleting again has nothing to delete, and changes nothing.
    state = client.snapshot(key_id)
    kms.delete_imported_key_material(KeyId=key_id)
    assert client.snapshot(key_id) == state

    # New parameters, another algorithm, the same material: the same id.
    again_id = client.import_(key_id, material, algorithm="RSA_AES_KEY_WRAP_SHA_1")
    assert again_id == first_id
    meta = client.describe(key_id)
    assert meta["KeyState"] == "Enabled"
    assert meta["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert meta["CurrentKeyMaterialId"] == first_id
    assert client.decrypt(before) == b"sealed before the delete"
    after = client.encrypt(key_id, b"sealed after")
    assert blob_version(after, key_id) == blob_version(before, key_id)

    # Once more, naming the material explicitly.
    kms.delete_imported_key_material(KeyId=key_id, KeyMaterialId=first_id)
    assert client.describe(key_id)["KeyState"] == "PendingImport"
    named_id = client.import_(
        key_id,
        material,
        ImportType="EXISTING_KEY_MATERIAL",
        KeyMaterialId=first_id,
        **DOES_NOT_EXPIRE,
    )
    assert named_id == first_id
    assert client.decrypt(before) == b"sealed before the delete"
    assert client.decrypt(after) == b"sealed after"


def test_reimport_while_enabled_changes_expiration(client: Client) -> None:
    """Re-importing the material a key has (no delete) is how its expiration
    changes; ciphertexts are unaffected."""
    key_id = client.external_key("reimport enabled")["KeyId"]
    material = os.urandom(32)
    material_id = client.import_(key_id, material)
    blob = client.encrypt(key_id, b"kept")
    valid_to = datetime.now(UTC) + timedelta(days=30)
    again = client.import_(
        key_id, material, ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to
    )
    assert again == material_id
    meta = client.describe(key_id)
    assert meta["KeyState"] == "Enabled"
    assert meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs(meta["ValidTo"] - valid_to) < timedelta(seconds=1)
    [entry] = client.materials(key_id)
    assert entry["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs(entry["ValidTo"] - valid_to) < timedelta(seconds=1)
    assert client.decrypt(blob) == b"kept"


# -- 3. refusals: AWS's error codes, and the key as it was --


@pytest.fixture
def pending_key(client: Client) -> str:
    return client.external_key("refusals, pending import")["KeyId"]


@pytest.fixture
def enabled_key(client: Client) -> tuple[str, bytes]:
    key_id = client.external_key("refusals, enabled")["KeyId"]
    material = os.urandom(32)
    client.import_(key_id, material)
    return key_id, material


def _refused(
    client: Client, key_id: str, code: str, call: Callable[..., Any], **kwargs: Any
) -> None:
    before = client.snapshot(key_id)
    assert code_of(call, **kwargs) == code
    assert client.snapshot(key_id) == before


def _flipped(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_tampered_import_token(client: Client, pending_key: str) -> None:
    params = client.params(pending_key)
    token = params["ImportToken"]
    wrapped = wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    # Every byte of the token (format, key id, token id, expiry) and its length.
    for tampered in [
        *(_flipped(token, i) for i in range(len(token))),
        token[:-1],
        token + b"\x00",
    ]:
        _refused(
            client,
            pending_key,
            "InvalidImportTokenException",
            client.kms.import_key_material,
            KeyId=pending_key,
            ImportToken=tampered,
            EncryptedKeyMaterial=wrapped,
            **DOES_NOT_EXPIRE,
        )
    # The untampered token still works afterwards.
    client.import_(pending_key, os.urandom(32), params=params)
    assert client.describe(pending_key)["KeyState"] == "Enabled"


def test_token_of_another_key(client: Client, pending_key: str) -> None:
    other = client.external_key("token owner")["KeyId"]
    params = client.params(other)
    _refused(
        client,
        pending_key,
        "InvalidImportTokenException",
        client.kms.import_key_material,
        KeyId=pending_key,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)),
        **DOES_NOT_EXPIRE,
    )
    assert client.describe(other)["KeyState"] == "PendingImport"


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_256"])
def test_material_wrapped_to_another_wrapping_key(
    client: Client, pending_key: str, algorithm: str
) -> None:
    first = client.params(pending_key, algorithm)
    second = client.params(pending_key, algorithm)
    assert first["PublicKey"] != second["PublicKey"]
    material = os.urandom(32)
    wrong_algorithm = algorithm.replace("SHA_256", "SHA_1")
    wrapped = wrap(first["PublicKey"], algorithm, material)
    for encrypted in [
        wrap(second["PublicKey"], algorithm, material),  # another call's public key
        wrap(first["PublicKey"], wrong_algorithm, material),  # another hash
        _flipped(wrapped, 10),  # the RSA block changed
        _flipped(wrapped, len(wrapped) - 1),  # its last byte changed
        wrapped[:-8],  # cut short
    ]:
        _refused(
            client,
            pending_key,
            "InvalidCiphertextException",
            client.kms.import_key_material,
            KeyId=pending_key,
            ImportToken=first["ImportToken"],
            EncryptedKeyMaterial=encrypted,
            **DOES_NOT_EXPIRE,
        )
    # Each token opens what was wrapped to its own public key.
    client.import_(pending_key, material, algorithm=algorithm, params=second)
    assert client.describe(pending_key)["KeyState"] == "Enabled"


def test_different_material_is_refused(client: Client, enabled_key: tuple[str, bytes]) -> None:
    key_id, material = enabled_key
    kms = client.kms
    blob = client.encrypt(key_id, b"under the first material")
    other = os.urandom(32)
    params = client.params(key_id)
    # While the key is enabled (ImportType defaults to EXISTING_KEY_MATERIAL) ...
    _refused(
        client,
        key_id,
        "IncorrectKeyMaterialException",
        kms.import_key_material,
        KeyId=key_id,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", other),
        **DOES_NOT_EXPIRE,
    )
    # ... and after a delete, with new parameters.
    kms.delete_imported_key_material(KeyId=key_id)
    params = client.params(key_id, "RSA_AES_KEY_WRAP_SHA_256")
    for extra in ({}, {"ImportType": "EXISTING_KEY_MATERIAL"}):
        _refused(
            client,
            key_id,
            "IncorrectKeyMaterialException",
            kms.import_key_material,
            KeyId=key_id,
            ImportToken=params["ImportToken"],
            EncryptedKeyMaterial=wrap(params["PublicKey"], "RSA_AES_KEY_WRAP_SHA_256", other),
            **DOES_NOT_EXPIRE,
            **extra,
        )
    assert client.describe(key_id)["KeyState"] == "PendingImport"
    # The right material with a KeyMaterialId that is not its own.
    first_id = client.describe(key_id)["CurrentKeyMaterialId"]
    _refused(
        client,
        key_id,
        "IncorrectKeyMaterialException",
        kms.import_key_material,
        KeyId=key_id,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrap(params["PublicKey"], "RSA_AES_KEY_WRAP_SHA_256", material),
        ImportType="EXISTING_KEY_MATERIAL",
        KeyMaterialId="0" * 64,
        **DOES_NOT_EXPIRE,
    )
    # The same token still takes the right material.
    again = client.import_(key_id, material, algorithm="RSA_AES_KEY_WRAP_SHA_256", params=params)
    assert again == first_id
    assert client.decrypt(blob) == b"under the first material"


@pytest.mark.parametrize(
    ("algorithm", "size"),
    [
        ("RSAES_OAEP_SHA_256", 16),
        ("RSAES_OAEP_SHA_1", 0),
        ("RSAES_OAEP_SHA_256", 31),
        ("RSAES_OAEP_SHA_256", 33),
        ("RSA_AES_KEY_WRAP_SHA_256", 16),
        ("RSA_AES_KEY_WRAP_SHA_256", 64),
    ],
)
def test_material_of_the_wrong_length(
    client: Client, pending_key: str, algorithm: str, size: int
) -> None:
    params = client.params(pending_key, algorithm)
    _refused(
        client,
        pending_key,
        "IncorrectKeyMaterialException",
        client.kms.import_key_material,
        KeyId=pending_key,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrap(params["PublicKey"], algorithm, os.urandom(size)),
        **DOES_NOT_EXPIRE,
    )


def test_import_operations_on_an_aws_kms_key(client: Client) -> None:
    kms = client.kms
    key_id = kms.create_key(Description="made by keycask")["KeyMetadata"]["KeyId"]
    external = client.external_key("token donor")["KeyId"]
    params = client.params(external)
    wrapped = wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    for call, kwargs in [
        (
            kms.get_parameters_for_import,
            {"WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"},
        ),
        (
            kms.import_key_material,
            {
                "ImportToken": params["ImportToken"],
                "EncryptedKeyMaterial": wrapped,
                **DOES_NOT_EXPIRE,
            },
        ),
        (kms.delete_imported_key_material, {}),
    ]:
        _refused(client, key_id, "UnsupportedOperationException", call, KeyId=key_id, **kwargs)
    assert client.describe(key_id)["KeyState"] == "Enabled"
    assert client.decrypt(client.encrypt(key_id, b"still fine")) == b"still fine"


def test_pkcs1_v15_wrapping_is_refused(client: Client, pending_key: str) -> None:
    _refused(
        client,
        pending_key,
        "ValidationException",
        client.kms.get_parameters_for_import,
        KeyId=pending_key,
        WrappingAlgorithm="RSAES_PKCS1_V1_5",
        WrappingKeySpec="RSA_2048",
    )


def test_expiration_parameters_are_validated(client: Client, pending_key: str) -> None:
    params = client.params(pending_key)
    material = os.urandom(32)
    wrapped = wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", material)
    now = datetime.now(UTC)  # this module's server never moves its clock
    for expiration in [
        {"ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": now - timedelta(hours=1)},
        {"ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": now + timedelta(days=366)},
        {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "ValidTo": now + timedelta(days=1)},
        {"ExpirationModel": "KEY_MATERIAL_EXPIRES"},
        {},  # the model's default is KEY_MATERIAL_EXPIRES, which needs ValidTo
    ]:
        _refused(
            client,
            pending_key,
            "ValidationException",
            client.kms.import_key_material,
            KeyId=pending_key,
            ImportToken=params["ImportToken"],
            EncryptedKeyMaterial=wrapped,
            **expiration,
        )
    # Just inside the bound is fine.
    valid_to = datetime.now(UTC) + timedelta(days=364)
    client.import_(
        pending_key,
        material,
        params=params,
        ExpirationModel="KEY_MATERIAL_EXPIRES",
        ValidTo=valid_to,
    )
    meta = client.describe(pending_key)
    assert meta["KeyState"] == "Enabled"
    assert abs(meta["ValidTo"] - valid_to) < timedelta(seconds=1)


def test_expired_import_token(fresh_server: Server) -> None:
    client = Client(fresh_server.client())
    late = client.external_key("late")["KeyId"]
    in_time = client.external_key("in time")["KeyId"]
    late_params = client.params(late, "RSA_AES_KEY_WRAP_SHA_256")
    in_time_params = client.params(in_time)

    fresh_server.advance_clock(23 * HOUR)
    client.import_(in_time, os.urandom(32), params=in_time_params)
    assert client.describe(in_time)["KeyState"] == "Enabled"

    fresh_server.advance_clock(2 * HOUR)  # 25 hours after GetParametersForImport
    _refused(
        client,
        late,
        "ExpiredImportTokenException",
        client.kms.import_key_material,
        KeyId=late,
        ImportToken=late_params["ImportToken"],
        EncryptedKeyMaterial=wrap(
            late_params["PublicKey"], "RSA_AES_KEY_WRAP_SHA_256", os.urandom(32)
        ),
        **DOES_NOT_EXPIRE,
    )
    # New parameters work, at keycask's time.
    params = client.params(late)
    assert params["ParametersValidTo"] - keycask_now(fresh_server) > timedelta(hours=23)
    client.import_(late, os.urandom(32), params=params)
    assert client.describe(late)["KeyState"] == "Enabled"


# -- 4. expiry --


def test_imported_material_expires(fresh_server: Server) -> None:
    client = Client(fresh_server.client())
    kms = client.kms
    key_id = client.external_key("expires")["KeyId"]
    material = os.urandom(32)
    valid_to = keycask_now(fresh_server) + timedelta(days=10)
    material_id = client.import_(
        key_id,
        material,
        algorithm="RSA_AES_KEY_WRAP_SHA_1",
        ExpirationModel="KEY_MATERIAL_EXPIRES",
        ValidTo=valid_to,
    )
    meta = client.describe(key_id)
    assert meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs(meta["ValidTo"] - valid_to) < timedelta(seconds=1)
    blob = client.encrypt(key_id, b"before expiry")
    assert stored_paths(fresh_server, f"mat/{key_id}/") == [f"mat/{key_id}/0000000001"]

    # Nine days on, the material is still there.
    fresh_server.advance_clock(9 * DAY)
    assert client.describe(key_id)["KeyState"] == "Enabled"
    assert client.decrypt(blob) == b"before expiry"

    answer = fresh_server.advance_clock(2 * DAY)
    assert answer["JobsRun"] >= 1
    meta = client.describe(key_id)
    assert meta["KeyState"] == "PendingImport"
    assert meta["CurrentKeyMaterialId"] == material_id
    assert "ValidTo" not in meta
    assert "ExpirationModel" not in meta
    assert stored_paths(fresh_server, f"mat/{key_id}/") == []
    [entry] = client.materials(key_id)
    assert entry["ImportState"] == "PENDING_IMPORT"
    assert code_of(kms.decrypt, CiphertextBlob=blob) == "KMSInvalidStateException"
    assert code_of(kms.encrypt, KeyId=key_id, Plaintext=b"x") == "KMSInvalidStateException"

    # The same material again, with new parameters (the old ones expired).
    assert client.import_(key_id, material) == material_id
    meta = client.describe(key_id)
    assert meta["KeyState"] == "Enabled"
    assert meta["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert "ValidTo" not in meta
    assert client.decrypt(blob) == b"before expiry"
    assert stored_paths(fresh_server, f"mat/{key_id}/") == [f"mat/{key_id}/0000000001"]
    # Material that does not expire stays however far the clock goes.
    fresh_server.advance_clock(400 * DAY)
    assert client.decrypt(blob) == b"before expiry"


# -- 5. rotation to imported material --


def test_rotation_to_imported_material(client: Client) -> None:
    kms = client.kms
    key = client.external_key("rotates")
    key_id = key["KeyId"]
    assert code_of(kms.rotate_key_on_demand, KeyId=key_id) == "KMSInvalidStateException"

    first, second = os.urandom(32), os.urandom(32)
    first_id = client.import_(key_id, first)
    _refused(client, key_id, "UnsupportedOperationException", kms.enable_key_rotation, KeyId=key_id)
    # Nothing is pending: the error keycask gives.
    _refused(client, key_id, "KMSInvalidStateException", kms.rotate_key_on_demand, KeyId=key_id)
    blob1 = client.encrypt(key_id, b"first material")

    second_id = client.import_(
        key_id,
        second,
        algorithm="RSA_AES_KEY_WRAP_SHA_256",
        ImportType="NEW_KEY_MATERIAL",
        KeyMaterialDescription="the second",
        **DOES_NOT_EXPIRE,
    )
    assert second_id != first_id
    entries = {e["KeyMaterialId"]: e for e in client.materials(key_id)}
    assert entries[first_id]["KeyMaterialState"] == "CURRENT"
    assert entries[second_id]["KeyMaterialState"] == "PENDING_ROTATION"
    assert entries[second_id]["ImportState"] == "IMPORTED"
    assert entries[second_id]["KeyMaterialDescription"] == "the second"
    assert "RotationType" not in entries[second_id]
    assert client.describe(key_id)["CurrentKeyMaterialId"] == first_id
    still_first = client.encrypt(key_id, b"still the first")
    assert blob_version(still_first, key_id) == blob_version(blob1, key_id)
    # The first material again as NEW: it is not new.
    _refused(
        client,
        key_id,
        "IncorrectKeyMaterialException",
        kms.import_key_material,
        KeyId=key_id,
        **_wrapped_kwargs(client, key_id, first),
        ImportType="NEW_KEY_MATERIAL",
        **DOES_NOT_EXPIRE,
    )

    assert kms.rotate_key_on_demand(KeyId=key_id)["KeyId"] == key["Arn"]
    entries = {e["KeyMaterialId"]: e for e in client.materials(key_id)}
    assert entries[first_id]["KeyMaterialState"] == "NON_CURRENT"
    assert entries[second_id]["KeyMaterialState"] == "CURRENT"
    assert entries[second_id]["RotationType"] == "ON_DEMAND"
    assert "RotationDate" in entries[second_id]
    [rotation] = kms.list_key_rotations(KeyId=key_id)["Rotations"]
    assert rotation["KeyMaterialId"] == second_id
    assert client.describe(key_id)["CurrentKeyMaterialId"] == second_id
    blob2 = client.encrypt(key_id, b"second material")
    assert blob_version(blob2, key_id) != blob_version(blob1, key_id)
    assert client.decrypt(blob1) == b"first material"
    assert client.decrypt(still_first) == b"still the first"
    assert client.decrypt(blob2) == b"second material"
    # And again nothing is pending.
    _refused(client, key_id, "KMSInvalidStateException", kms.rotate_key_on_demand, KeyId=key_id)

    # Without any one of its materials the key is unusable, and the same
    # material brings it back.
    kms.delete_imported_key_material(KeyId=key_id, KeyMaterialId=first_id)
    assert client.describe(key_id)["KeyState"] == "PendingImport"
    assert code_of(kms.decrypt, CiphertextBlob=blob2) == "KMSInvalidStateException"
    assert client.import_(key_id, first, KeyMaterialId=first_id, **DOES_NOT_EXPIRE) == first_id
    assert client.describe(key_id)["KeyState"] == "Enabled"
    assert client.decrypt(blob1) == b"first material"
    assert client.decrypt(blob2) == b"second material"


def test_expired_pending_material_can_be_replaced(fresh_server: Server) -> None:
    """Material pending rotation "is not permanently associated with the KMS
    key. You can delete this key material and import different key material
    in its place" (AWS, RotationsListEntry): also once it has expired."""
    client = Client(fresh_server.client())
    kms = client.kms
    key_id = client.external_key("pending expires")["KeyId"]
    first_id = client.import_(key_id, os.urandom(32))
    blob = client.encrypt(key_id, b"first")
    pending_id = client.import_(
        key_id,
        os.urandom(32),
        ImportType="NEW_KEY_MATERIAL",
        ExpirationModel="KEY_MATERIAL_EXPIRES",
        ValidTo=keycask_now(fresh_server) + timedelta(days=1),
    )
    fresh_server.advance_clock(2 * DAY)
    # Only current material makes the key unusable when it goes.
    assert client.describe(key_id)["KeyState"] == "Enabled"
    states = {e["KeyMaterialId"]: e for e in client.materials(key_id)}
    assert states[pending_id]["KeyMaterialState"] == "PENDING_ROTATION"
    assert states[pending_id]["ImportState"] == "PENDING_IMPORT"
    assert stored_paths(fresh_server, f"mat/{key_id}/") == [f"mat/{key_id}/0000000001"]
    _refused(client, key_id, "KMSInvalidStateException", kms.rotate_key_on_demand, KeyId=key_id)

    out = kms.delete_imported_key_material(KeyId=key_id, KeyMaterialId=pending_id)
    assert out["KeyMaterialId"] == pending_id
    assert [e["KeyMaterialId"] for e in client.materials(key_id)] == [first_id]
    replacement_id = client.import_(
        key_id, os.urandom(32), ImportType="NEW_KEY_MATERIAL", **DOES_NOT_EXPIRE
    )
    kms.rotate_key_on_demand(KeyId=key_id)
    assert client.describe(key_id)["CurrentKeyMaterialId"] == replacement_id
    assert client.decrypt(blob) == b"first"
    assert client.decrypt(client.encrypt(key_id, b"replacement")) == b"replacement"


def _wrapped_kwargs(client: Client, key_id: str, material: bytes) -> dict[str, Any]:
    params = client.params(key_id)
    return {
        "ImportToken": params["ImportToken"],
        "EncryptedKeyMaterial": wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", material),
    }


# -- 6. nothing secret at rest --


async def _wrapping_private_keys(data_dir: Path, key_ids: list[str]) -> list[bytes]:
    """The servers' wrapping private keys (PKCS#8 DER), read with keycask's own code."""
    settings = config.load(dev=True, data_dir=str(data_dir), env={})
    storage, barrier = await open_store(settings)
    try:
        keys = KeyStore(barrier)
        found = []
        for key_id in key_ids:
            for _, entry in await keys.import_tokens(uuid.UUID(key_id)):
                found.append(base64.b64decode(orjson.loads(entry.value)["private"]))
        return found
    finally:
        await storage.close()


def test_no_imported_material_at_rest(fresh_server: Server) -> None:
    server = fresh_server
    client = Client(server.client())
    kms = client.kms
    needles: list[Needle] = []
    key_ids = []
    for algorithm in ("RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_256"):
        key_id = client.external_key(f"at rest {algorithm}")["KeyId"]
        key_ids.append(key_id)
        material = os.urandom(32)
        ephemeral = os.urandom(32)
        params = client.params(key_id, algorithm)
        kms.import_key_material(
            KeyId=key_id,
            ImportToken=params["ImportToken"],
            EncryptedKeyMaterial=wrap(params["PublicKey"], algorithm, material, ephemeral),
            **DOES_NOT_EXPIRE,
        )
        blob = client.encrypt(key_id, b"at rest")
        # Deleted and imported again: every copy that ever passed through.
        kms.delete_imported_key_material(KeyId=key_id)
        client.import_(key_id, material, algorithm=algorithm)
        assert client.decrypt(blob) == b"at rest"
        needles.append(_binary(f"material {algorithm}", material))
        if algorithm.startswith("RSA_AES"):
            needles.append(_binary(f"ephemeral AES key {algorithm}", ephemeral))
        # Material waiting for rotation, and material that expires.
        pending = os.urandom(32)
        client.import_(key_id, pending, ImportType="NEW_KEY_MATERIAL", **DOES_NOT_EXPIRE)
        needles.append(_binary(f"pending material {algorithm}", pending))
    expiring_key = client.external_key("at rest, expiring")["KeyId"]
    key_ids.append(expiring_key)
    expiring = os.urandom(32)
    client.import_(
        expiring_key,
        expiring,
        ExpirationModel="KEY_MATERIAL_EXPIRES",
        ValidTo=keycask_now(server) + timedelta(days=1),
    )
    needles.append(_binary("expiring material", expiring))
    private_keys = asyncio.run(_wrapping_private_keys(server.data_dir, key_ids))
    assert len(private_keys) >= 5
    server.advance_clock(2 * DAY)  # expired and deleted
    assert client.describe(expiring_key)["KeyState"] == "PendingImport"
    # Expired import parameters were swept with the clock: their private keys
    # are gone from the store (the scan below proves it, byte for byte).
    assert asyncio.run(_wrapping_private_keys(server.data_dir, key_ids)) == []
    # A token that was never used keeps its wrapping key at rest (sealed) too.
    client.params(expiring_key, "RSA_AES_KEY_WRAP_SHA_1", "RSA_3072")
    private_keys += asyncio.run(_wrapping_private_keys(server.data_dir, key_ids))
    assert len(private_keys) >= 6
    for i, der in enumerate(private_keys):
        assert serialization.load_der_private_key(der, password=None)
        needles.append(_binary(f"wrapping private key {i}", der))

    assert (server.data_dir / "keycask.db-wal").stat().st_size > 0
    assert (server.data_dir / "audit" / "server.jsonl").is_file()
    _prove_scan_works(server, needles)
    assert scan(server, needles) == []
    assert server.stop(signal.SIGTERM) == 0
    _prove_scan_works(server, needles)
    assert scan(server, needles) == []


def test_version_numbers_are_never_reused(client: Client) -> None:
    """A version number names one material forever: material that waited for
    a rotation and was deleted leaves its number behind, and a ciphertext
    naming a version that was never current opens nothing."""
    kms = client.kms
    key_id = client.external_key("version numbers")["KeyId"]
    client.import_(key_id, os.urandom(32))
    blob = client.encrypt(key_id, b"v1")
    assert blob_version(blob, key_id) == 1
    client.import_(key_id, os.urandom(32), ImportType="NEW_KEY_MATERIAL", **DOES_NOT_EXPIRE)
    pending = [m for m in client.materials(key_id) if m["KeyMaterialState"] == "PENDING_ROTATION"]
    assert len(pending) == 1
    # A forged ciphertext naming the pending version (2) is refused as any bad ciphertext.
    forged = blob[:17] + (2).to_bytes(4, "big") + blob[21:]
    assert code_of(kms.decrypt, CiphertextBlob=forged) == "InvalidCiphertextException"
    kms.delete_imported_key_material(KeyId=key_id, KeyMaterialId=pending[0]["KeyMaterialId"])
    client.import_(key_id, os.urandom(32), ImportType="NEW_KEY_MATERIAL", **DOES_NOT_EXPIRE)
    kms.rotate_key_on_demand(KeyId=key_id)
    new_blob = client.encrypt(key_id, b"v3")
    assert blob_version(new_blob, key_id) == 3
    assert client.decrypt(blob) == b"v1"
    assert client.decrypt(new_blob) == b"v3"
    assert code_of(kms.decrypt, CiphertextBlob=forged) == "InvalidCiphertextException"
