"""The XKS door over HSM-backed keys (issue 19, item 4: "the external key is
a keycask key, possibly HSM-backed"), against a real keycask server with a
SoftHSM2 token (``--hsm``) and ``--xks-path-prefix``: a key created through
boto3 in an AWS_CLOUDHSM custom key store, requests signed by botocore's
SigV4Auth with an XKS credential. The AES-GCM runs inside the token; the XKS
fields are the pieces of the key's blob v3 (docs/xks.md)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import pytest
import requests
from production import SOFTHSM_TOKEN, SoftHsm, secret_file
from test_hsm_key_store_e2e import CLUSTER, PIN, _certificate, _create_store
from test_xks_e2e import (
    ACCOUNT,
    KMS_KEY_ARN,
    PREFIX,
    _b64,
    _call,
    _credential,
    _decrypt_doc,
    _error,
    _metadata,
    _record_of,
)
from test_xks_e2e import _encrypt as _xks_encrypt

from conftest import Server

FIELDS = ("ciphertext", "ciphertextMetadata", "initializationVector", "authenticationTag")


@pytest.fixture
def hsm(tmp_path: Path) -> SoftHsm:
    return SoftHsm(tmp_path / "softhsm", pin=PIN)


@pytest.fixture
def server(tmp_path: Path, hsm: SoftHsm) -> Iterator[Server]:
    pin_file = secret_file(tmp_path / "pin", PIN)
    server = Server(
        tmp_path / "data",
        args=(
            "--hsm", f"{CLUSTER}={hsm.module}:{SOFTHSM_TOKEN}", "--hsm-pin-file", str(pin_file),
            "--xks-path-prefix", PREFIX,
        ),
        env_extra={"SOFTHSM2_CONF": str(hsm.conf)},
    )  # fmt: skip
    server.start()
    yield server
    if server.proc is not None:
        server.stop()


def _hsm_key(
    server: Server,
    cred: dict[str, str],
    store_id: str,
    actions: tuple[str, ...] = ("kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"),
) -> str:
    """An HSM-backed key (made through boto3) whose policy lets the XKS
    credential's principal do ``actions``."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": cred["Arn"]},
                "Action": list(actions),
                "Resource": "*",
            },
        ],
    }
    meta = server.client().create_key(
        CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM", Policy=json.dumps(policy)
    )["KeyMetadata"]
    assert meta["Origin"] == "AWS_CLOUDHSM"
    return str(meta["KeyId"])


def _connected_store(server: Server, tmp_path: Path) -> str:
    kms = server.client()
    store_id = _create_store(kms, _certificate(tmp_path))
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    return store_id


def _encrypt(
    server: Server,
    cred: dict[str, str],
    key_id: str,
    plaintext: bytes,
    aad: bytes | None,
    *,
    cdiv: bool = False,
    **meta: str,
) -> requests.Response:
    """test_xks_e2e's encrypt request, without a CDIV unless asked."""
    return _xks_encrypt(server, cred, key_id, plaintext, aad, cdiv=cdiv, **meta)


def _decrypt(
    server: Server, cred: dict[str, str], key_id: str, sealed: dict[str, str], aad: bytes | None
) -> requests.Response:
    return _call(server, f"/keys/{key_id}/decrypt", _decrypt_doc(sealed, aad), cred)


def _key_metadata(server: Server, cred: dict[str, str], key_id: str) -> requests.Response:
    doc = {"requestMetadata": _metadata("DescribeKey")}
    return _call(server, f"/keys/{key_id}/metadata", doc, cred)


def _object_id(server: Server, key_id: str) -> bytes:
    """The token object id the key's record names (what a boto3 Encrypt's v3
    blob carries after the key id)."""
    blob = server.client().encrypt(KeyId=key_id, Plaintext=b"probe")["CiphertextBlob"]
    assert blob[0] == 0x03 and blob[1:17] == uuid.UUID(key_id).bytes
    return bytes(blob[17:33])


def _list_objects(hsm: SoftHsm) -> str:
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.fail("pkcs11-tool is not installed: run `make opensc` or install opensc")
    return subprocess.run(
        [tool, "--module", hsm.module, "--token-label", SOFTHSM_TOKEN, "--login", "--pin", PIN,
         "--list-objects"],
        check=True, capture_output=True, text=True, env={"SOFTHSM2_CONF": str(hsm.conf)},
    ).stdout  # fmt: skip


def test_round_trip_inside_the_token_with_the_blob_v3_mapping(
    server: Server, tmp_path: Path
) -> None:
    cred = _credential(server)
    key_id = _hsm_key(server, cred, _connected_store(server, tmp_path))
    meta = _key_metadata(server, cred, key_id)
    assert meta.status_code == 200, meta.text
    assert meta.json() == {
        "keySpec": "AES_256",
        "keyUsage": ["ENCRYPT", "DECRYPT"],
        "keyStatus": "ENABLED",
    }

    plaintext, aad = b"a data key of 32 bytes, plainly.", b"project=nile,department=marketing"
    request_id = str(uuid.uuid4())
    reply = _encrypt(server, cred, key_id, plaintext, aad, kmsRequestId=request_id)
    assert reply.status_code == 200, reply.text
    sealed = reply.json()
    assert set(sealed) == set(FIELDS)
    raw = {name: base64.b64decode(sealed[name]) for name in FIELDS}
    # ciphertextMetadata is the token object id; IV 12, tag 16, and the
    # ciphertext as long as the plaintext.
    assert raw["ciphertextMetadata"] == _object_id(server, key_id)
    assert len(raw["initializationVector"]) == 12 and len(raw["authenticationTag"]) == 16
    assert len(raw["ciphertext"]) == len(plaintext) and raw["ciphertext"] != plaintext
    opened = _decrypt(server, cred, key_id, sealed, aad)
    assert opened.status_code == 200, opened.text
    assert base64.b64decode(opened.json()["plaintext"]) == plaintext

    # The fields are the pieces of the key's v3 blob; put back together, the
    # AWS door still does not open it: the AAD's context key is reserved for
    # the XKS door (an XKS ciphertext opens through that door only).
    blob = (
        b"\x03"
        + uuid.UUID(key_id).bytes
        + raw["ciphertextMetadata"]
        + raw["initializationVector"]
        + raw["ciphertext"]
        + raw["authenticationTag"]
    )
    context = {"xks:aad-sha256": base64.b64encode(hashlib.sha256(aad).digest()).decode()}
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        server.client().decrypt(CiphertextBlob=blob, EncryptionContext=context)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "reserved" in refused.value.response["Error"]["Message"]

    # No AAD and empty AAD are the same.
    bare = _encrypt(server, cred, key_id, b"no aad", None)
    assert bare.status_code == 200, bare.text
    opened = _decrypt(server, cred, key_id, bare.json(), b"")
    assert base64.b64decode(opened.json()["plaintext"]) == b"no aad"

    # Audited as every XKS call: the door, principal, key, deciding statement
    # and kmsRequestId; no plaintext in the log.
    record = _record_of(server, request_id)
    assert record["door"] == "xks" and record["operation"] == "Xks.Encrypt"
    assert record["principal"] == cred["Arn"] and record["outcome"] == "success"
    assert record["decided_by"] == "key policy statement #2"
    assert key_id in record["key_arn"] and f"kmsKeyArn={KMS_KEY_ARN}" in record["detail"]
    text = "".join(p.read_text() for p in (server.data_dir / "audit").glob("*.jsonl"))
    assert _b64(plaintext) not in text and plaintext.decode() not in text


def test_aad_mismatch_and_tampering_are_refused(server: Server, tmp_path: Path) -> None:
    cred = _credential(server)
    key_id = _hsm_key(server, cred, _connected_store(server, tmp_path))
    reply = _encrypt(server, cred, key_id, b"secret", b"the aad")
    assert reply.status_code == 200, reply.text
    sealed = reply.json()
    refused = (400, "InvalidCiphertextException")
    for aad in (b"other aad", None, b"the aaD"):
        assert _error(_decrypt(server, cred, key_id, sealed, aad)) == refused, aad
    for name in FIELDS:
        raw = bytearray(base64.b64decode(sealed[name]))
        raw[-1] ^= 0x01
        tampered = {**sealed, name: _b64(bytes(raw))}
        assert _error(_decrypt(server, cred, key_id, tampered, b"the aad")) == refused, name
    # A v1 ciphertext's shape of metadata (20 bytes), a short tag, no metadata.
    for name, value in (
        ("ciphertextMetadata", _b64(bytes(20))),
        ("authenticationTag", _b64(bytes(12))),
        ("ciphertextMetadata", ""),
    ):
        shaped = {**sealed, name: value}
        assert _error(_decrypt(server, cred, key_id, shaped, b"the aad")) == refused, name
    # Another HSM-backed key does not open it.
    other = _hsm_key(server, cred, _connected_store_of(server, key_id))
    assert _error(_decrypt(server, cred, other, sealed, b"the aad")) == refused
    # The untouched answer still opens.
    opened = _decrypt(server, cred, key_id, sealed, b"the aad")
    assert base64.b64decode(opened.json()["plaintext"]) == b"secret"


def _connected_store_of(server: Server, key_id: str) -> str:
    meta = server.client().describe_key(KeyId=key_id)["KeyMetadata"]
    return str(meta["CustomKeyStoreId"])


def test_cdiv_and_no_repeated_iv(server: Server, tmp_path: Path) -> None:
    cred = _credential(server)
    key_id = _hsm_key(server, cred, _connected_store(server, tmp_path))
    aad = b"aad for the integrity value"
    reply = _encrypt(server, cred, key_id, b"checked", aad, cdiv=True)
    assert reply.status_code == 200, reply.text
    sealed = reply.json()
    raw = {name: base64.b64decode(sealed[name]) for name in FIELDS}
    expected = hashlib.sha256(
        aad
        + raw["ciphertextMetadata"]
        + raw["initializationVector"]
        + raw["ciphertext"]
        + raw["authenticationTag"]
    ).digest()
    assert base64.b64decode(sealed["ciphertextDataIntegrityValue"]) == expected
    assert "ciphertextDataIntegrityValue" not in _encrypt(server, cred, key_id, b"x", aad).json()
    opened = _decrypt(server, cred, key_id, sealed, aad)
    assert base64.b64decode(opened.json()["plaintext"]) == b"checked"
    # The CDIV's verifying open is the proxy's own: a principal allowed
    # kms:Encrypt only still gets one.
    encrypt_only = _hsm_key(
        server, cred, _connected_store_of(server, key_id), actions=("kms:Encrypt",)
    )
    assert _encrypt(server, cred, encrypt_only, b"y", aad, cdiv=True).status_code == 200
    assert _error(_decrypt(server, cred, encrypt_only, sealed, aad)) == (
        403,
        "AccessDeniedException",
    )
    # The token's AES-GCM under one key: no IV twice in 100 encryptions of
    # one plaintext.
    ivs = {
        _encrypt(server, cred, key_id, b"same", None).json()["initializationVector"]
        for _ in range(100)
    }
    assert len(ivs) == 100


def test_a_disconnected_store_is_invalid_state_until_reconnected(
    server: Server, tmp_path: Path
) -> None:
    cred = _credential(server)
    store_id = _connected_store(server, tmp_path)
    key_id = _hsm_key(server, cred, store_id)
    sealed = _encrypt(server, cred, key_id, b"kept", b"aad").json()
    kms = server.client()
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Unavailable"
    request_id = str(uuid.uuid4())
    state = (400, "InvalidStateException")
    assert _error(_encrypt(server, cred, key_id, b"x", b"aad", kmsRequestId=request_id)) == state
    assert _error(_encrypt(server, cred, key_id, b"x", b"aad", cdiv=True)) == state
    assert _error(_decrypt(server, cred, key_id, sealed, b"aad")) == state
    assert _record_of(server, request_id)["error_code"] == "KMSInvalidStateException"
    meta = _key_metadata(server, cred, key_id)
    assert meta.status_code == 200 and meta.json()["keyStatus"] == "DISABLED"

    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert _key_metadata(server, cred, key_id).json()["keyStatus"] == "ENABLED"
    opened = _decrypt(server, cred, key_id, sealed, b"aad")
    assert opened.status_code == 200, opened.text
    assert base64.b64decode(opened.json()["plaintext"]) == b"kept"
    assert _encrypt(server, cred, key_id, b"x", b"aad", cdiv=True).status_code == 200


def test_a_missing_token_is_invalid_state_until_it_is_back(
    server: Server, hsm: SoftHsm, tmp_path: Path
) -> None:
    cred = _credential(server)
    key_id = _hsm_key(server, cred, _connected_store(server, tmp_path))
    sealed = _encrypt(server, cred, key_id, b"kept", None).json()
    # The server now looks in an empty token directory.
    empty = tmp_path / "empty"
    (empty / "tokens").mkdir(parents=True)
    (empty / "softhsm2.conf").write_text(
        f"directories.tokendir = {empty / 'tokens'}\nobjectstore.backend = file\n"
    )
    server.stop()
    server.env_extra["SOFTHSM2_CONF"] = str(empty / "softhsm2.conf")
    server.start()
    state = (400, "InvalidStateException")
    assert _error(_encrypt(server, cred, key_id, b"x", None)) == state
    assert _error(_decrypt(server, cred, key_id, sealed, None)) == state
    assert _key_metadata(server, cred, key_id).json()["keyStatus"] == "DISABLED"
    server.stop()
    server.env_extra["SOFTHSM2_CONF"] = str(hsm.conf)
    server.start()
    assert _key_metadata(server, cred, key_id).json()["keyStatus"] == "ENABLED"
    opened = _decrypt(server, cred, key_id, sealed, None)
    assert base64.b64decode(opened.json()["plaintext"]) == b"kept"


def test_the_token_gets_no_new_object_and_the_key_stays_unextractable(
    server: Server, hsm: SoftHsm, tmp_path: Path
) -> None:
    cred = _credential(server)
    key_id = _hsm_key(server, cred, _connected_store(server, tmp_path))
    object_id = _object_id(server, key_id)
    before = _list_objects(hsm)
    for cdiv in (False, True):
        sealed = _encrypt(server, cred, key_id, b"x" * 1024, b"aad", cdiv=cdiv).json()
        assert _decrypt(server, cred, key_id, sealed, b"aad").status_code == 200
    assert _key_metadata(server, cred, key_id).status_code == 200
    after = _list_objects(hsm)
    assert after == before
    # One object, the key: sensitive, never extractable, named by its id.
    assert after.count("Object;") == 1 and "Secret Key Object; AES length 32" in after
    assert f"label:      keycask-{object_id.hex()}" in after
    (access,) = [line for line in after.splitlines() if line.strip().startswith("Access:")]
    flags = {flag.strip() for flag in access.split(":", 1)[1].split(",")}
    assert {"sensitive", "always sensitive", "never extractable"} <= flags
    assert "extractable" not in flags
