"""keycask as an XKS proxy (service/doors/xks.py, docs/xks.md) against a real
server started with ``--xks-path-prefix``: requests signed by botocore's
SigV4Auth and by ``curl --aws-sigv4`` with service ``kms-xks-proxy``,
credentials from ``keycask xks credentials create``, and the specification's
answers for every failure, each audited with its kmsRequestId."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.conftest import Server

PREFIX = "/tenant-1"
ACCOUNT = "000000000000"
KMS_KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KMS_KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def xks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("xks") / "data", args=("--xks-path-prefix", PREFIX)
    ).start()
    yield srv
    if srv.proc is not None:
        srv.stop(signal.SIGKILL)


def _credential(server: Server, name: str | None = None) -> dict[str, str]:
    name = name or f"awskms-{uuid.uuid4().hex[:8]}"
    out = server.cli("xks", "credentials", "create", name, "--json").stdout
    created: dict[str, str] = json.loads(out)
    return created


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _metadata(operation: str = "Encrypt", key_arn: str = KMS_KEY_ARN) -> dict[str, str]:
    return {
        "awsPrincipalArn": "arn:aws:iam::111122223333:user/Alice",
        "kmsKeyArn": key_arn,
        "kmsOperation": operation,
        "kmsRequestId": str(uuid.uuid4()),
        "kmsViaService": "ebs",
    }


def _signed(
    server: Server,
    path: str,
    body: bytes,
    cred: dict[str, str],
    *,
    region: str = "eu-west-1",
    service: str = "kms-xks-proxy",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> requests.Response:
    url = server.endpoint + path
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    SigV4Auth(Credentials(cred["AccessKeyId"], cred["SecretAccessKey"]), service, region).add_auth(
        request
    )
    return requests.request(method, url, data=body, headers=dict(request.headers), timeout=30)


def _call(
    server: Server, path: str, doc: Any, cred: dict[str, str], **kw: Any
) -> requests.Response:
    return _signed(server, PREFIX + "/kms/xks/v1" + path, json.dumps(doc).encode(), cred, **kw)


def _error(reply: requests.Response) -> tuple[int, str]:
    doc = reply.json()
    assert set(doc) <= {"errorName", "errorMessage"}
    message = doc.get("errorMessage", "")
    assert len(message) < 512 and all(" " <= c <= "~" for c in message)
    return reply.status_code, doc["errorName"]


def _key(
    server: Server,
    cred: dict[str, str],
    *,
    extra: list[dict[str, Any]] | None = None,
    actions: tuple[str, ...] = ("kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"),
    condition: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """A key whose policy lets the XKS credential's principal do ``actions``."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": cred["Arn"]},
        "Action": list(actions),
        "Resource": "*",
    }
    if condition is not None:
        statement["Condition"] = condition
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            statement,
            *(extra or []),
        ],
    }
    kwargs: dict[str, Any] = {"Policy": json.dumps(policy)}
    if tags:
        kwargs["Tags"] = [{"TagKey": k, "TagValue": v} for k, v in tags.items()]
    key_id: str = server.client().create_key(**kwargs)["KeyMetadata"]["KeyId"]
    return key_id


def _encrypt(
    server: Server,
    cred: dict[str, str],
    key_id: str,
    plaintext: bytes,
    aad: bytes | None,
    *,
    cdiv: bool = True,
    **meta: str,
) -> requests.Response:
    doc: dict[str, Any] = {
        "requestMetadata": {**_metadata("Encrypt"), **meta},
        "plaintext": _b64(plaintext),
        "encryptionAlgorithm": "AES_GCM",
    }
    if cdiv:
        doc["ciphertextDataIntegrityValueAlgorithm"] = "SHA_256"
    if aad is not None:
        doc["additionalAuthenticatedData"] = _b64(aad)
    return _call(server, f"/keys/{key_id}/encrypt", doc, cred)


def _decrypt_doc(sealed: dict[str, str], aad: bytes | None, **meta: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "requestMetadata": {**_metadata("Decrypt"), **meta},
        "encryptionAlgorithm": "AES_GCM",
        **{
            name: sealed[name]
            for name in (
                "ciphertext",
                "ciphertextMetadata",
                "initializationVector",
                "authenticationTag",
            )
        },
    }
    if aad is not None:
        doc["additionalAuthenticatedData"] = _b64(aad)
    return doc


def _records(server: Server) -> list[dict[str, Any]]:
    records = []
    for segment in sorted((server.data_dir / "audit").glob("*.jsonl")):
        records += [json.loads(line) for line in segment.read_text().splitlines() if line]
    return records


def _record_of(server: Server, request_id: str) -> dict[str, Any]:
    found = [r for r in _records(server) if f"kmsRequestId={request_id}" in (r.get("detail") or "")]
    assert len(found) == 1, found
    return found[0]


# -- credentials --


def test_credentials_are_shaped_as_aws_kms_requires_two_at_once_and_revocable(
    xks_server: Server,
) -> None:
    name = f"awskms-{uuid.uuid4().hex[:8]}"
    first = _credential(xks_server, name)
    assert set(first) == {"Arn", "AccessKeyId", "SecretAccessKey", "XksProxyUriPath"}
    assert first["XksProxyUriPath"] == PREFIX + "/kms/xks/v1"
    assert first["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{name}"
    # The XKS specification's access key id (20-30 of A-Z 2-7, within the KMS
    # API's A-Za-z0-9/_-) and secret (43-64 of A-Za-z0-9/+=).
    assert re.fullmatch(r"[A-Z2-7]{20,30}", first["AccessKeyId"])
    assert re.fullmatch(r"[A-Za-z0-9/+=]{43,64}", first["SecretAccessKey"])
    second = _credential(xks_server, name)
    third = xks_server.cli("xks", "credentials", "create", name, "--json", check=False)
    assert third.returncode == 1 and "LimitExceeded" in third.stderr
    listed = json.loads(xks_server.cli("xks", "credentials", "list", name, "--json").stdout)
    assert sorted(k["AccessKeyId"] for k in listed) == sorted(
        [first["AccessKeyId"], second["AccessKeyId"]]
    )
    assert {k["Status"] for k in listed} == {"Active"}
    health = {"requestMetadata": {"kmsRequestId": "h", "kmsOperation": "KmsHealthCheck"}}
    for cred in (first, second):  # both sign during a rotation
        assert _call(xks_server, "/health", health, cred).status_code == 200
    xks_server.cli("xks", "credentials", "revoke", first["AccessKeyId"])
    assert _error(_call(xks_server, "/health", health, first)) == (
        401,
        "AuthenticationFailedException",
    )
    assert _call(xks_server, "/health", health, second).status_code == 200
    # Stored behind the barrier: the secret is in no file of the data dir.
    files = [p for p in xks_server.data_dir.rglob("*") if p.is_file()]
    assert not any(second["SecretAccessKey"].encode() in p.read_bytes() for p in files)


def test_an_existing_principal_gets_one_but_an_administrator_never(xks_server: Server) -> None:
    name = f"app-{uuid.uuid4().hex[:8]}"
    made = json.loads(xks_server.cli("principals", "create", name, "--json").stdout)
    cred = _credential(xks_server, name)
    assert cred["Arn"] == made["Arn"]
    # Its access key still signs for the AWS door, and is not an XKS credential.
    aws = {"AccessKeyId": made["AccessKeyId"], "SecretAccessKey": made["SecretAccessKey"]}
    health = {"requestMetadata": {"kmsRequestId": "a", "kmsOperation": "KmsHealthCheck"}}
    assert _call(xks_server, "/health", health, aws).status_code == 401
    assert _call(xks_server, "/health", health, cred).status_code == 200
    listed = xks_server.cli("principals", "access-keys", "list", name, "--json").stdout
    assert [k["AccessKeyId"] for k in json.loads(listed)] == [made["AccessKeyId"]]
    shown = json.loads(xks_server.cli("principals", "get", name, "--json").stdout)
    assert shown["AccessKeyCount"] == 1
    admin = f"admin-{uuid.uuid4().hex[:8]}"
    xks_server.cli("principals", "create", admin, "--admin", "--json")
    refused = xks_server.cli("xks", "credentials", "create", admin, check=False)
    assert refused.returncode != 0 and "administrator" in refused.stderr
    # Deleting the principal revokes its XKS credentials with it.
    xks_server.cli("principals", "delete", name)
    assert _error(_call(xks_server, "/health", health, cred)) == (
        401,
        "AuthenticationFailedException",
    )


def test_the_aws_kms_console_file(xks_server: Server, tmp_path: Path) -> None:
    target = tmp_path / "xks-proxy.json"
    out = xks_server.cli(
        "xks", "credentials", "create", f"console-{uuid.uuid4().hex[:6]}", "--json",
        "--console-file", str(target),
    ).stdout  # fmt: skip
    printed = json.loads(out)
    assert "SecretAccessKey" not in printed  # in the file only
    assert target.stat().st_mode & 0o777 == 0o600
    # The specification's "XKS Proxy Configuration File Syntax".
    doc = json.loads(target.read_text())
    assert doc == {
        "XksProxyUriPath": PREFIX + "/kms/xks/v1",
        "XksProxyAuthenticationCredential": {
            "AccessKeyId": printed["AccessKeyId"],
            "RawSecretAccessKey": doc["XksProxyAuthenticationCredential"]["RawSecretAccessKey"],
        },
    }
    cred = {
        "AccessKeyId": printed["AccessKeyId"],
        "SecretAccessKey": doc["XksProxyAuthenticationCredential"]["RawSecretAccessKey"],
    }
    health = {"requestMetadata": {"kmsRequestId": "f", "kmsOperation": "KmsHealthCheck"}}
    assert _call(xks_server, "/health", health, cred).status_code == 200
    # Never over an existing file (and then nothing is made).
    again = xks_server.cli("xks", "credentials", "create", "x-" + uuid.uuid4().hex[:6],
                           "--console-file", str(target), check=False)  # fmt: skip
    assert again.returncode == 2 and "exists" in again.stderr


def test_xks_credentials_and_access_keys_each_sign_for_their_own_door_only(
    xks_server: Server,
) -> None:
    cred = _credential(xks_server)
    health = {"requestMetadata": {"kmsRequestId": "h", "kmsOperation": "KmsHealthCheck"}}
    # An access key of the AWS door (the dev administrator's), even signing
    # with the XKS service name, is not an XKS credential.
    akid, secret = xks_server.credentials()
    aws = {"AccessKeyId": akid, "SecretAccessKey": secret}
    assert _error(_call(xks_server, "/health", health, aws)) == (
        401,
        "AuthenticationFailedException",
    )
    # And an XKS credential does not sign for the AWS door.
    kms = xks_server.client((cred["AccessKeyId"], cred["SecretAccessKey"]))
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        kms.list_keys()
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    # Nor does a request signed for another service (the AWS door's kms).
    assert _error(_call(xks_server, "/health", health, cred, service="kms")) == (
        401,
        "AuthenticationFailedException",
    )


# -- the operations --


def test_health_metadata_and_an_encrypt_decrypt_round_trip(xks_server: Server) -> None:
    cred = _credential(xks_server)
    health = _call(
        xks_server,
        "/health",
        {"requestMetadata": {"kmsRequestId": str(uuid.uuid4()), "kmsOperation": "KmsHealthCheck"}},
        cred,
    )
    assert health.status_code == 200
    doc = health.json()
    assert doc["xksProxyFleetSize"] >= 1 and doc["xksProxyVendor"] == "keycask"
    assert 1 <= len(doc["ekmFleetDetails"]) <= 10
    assert doc["ekmFleetDetails"][0]["healthStatus"] == "ACTIVE"
    assert doc["ekmVendor"] and doc["xksProxyModel"]

    key_id = _key(xks_server, cred)
    meta = _call(
        xks_server, f"/keys/{key_id}/metadata", {"requestMetadata": _metadata("CreateKey")}, cred
    )
    assert meta.status_code == 200
    assert meta.json() == {
        "keySpec": "AES_256",
        "keyUsage": ["ENCRYPT", "DECRYPT"],
        "keyStatus": "ENABLED",
    }

    plaintext, aad = b"\x00" * 32 + bytes(range(256)), b"project=nile,department=marketing"
    reply = _encrypt(xks_server, cred, key_id, plaintext, aad)
    assert reply.status_code == 200, reply.text
    sealed = reply.json()
    ciphertext = base64.b64decode(sealed["ciphertext"])
    metadata = base64.b64decode(sealed["ciphertextMetadata"])
    iv = base64.b64decode(sealed["initializationVector"])
    tag = base64.b64decode(sealed["authenticationTag"])
    assert len(ciphertext) == len(plaintext) and ciphertext != plaintext
    assert len(iv) == 12 and len(tag) == 16 and len(metadata) <= 20
    # The specification's Appendix C, computed here independently.
    cdiv = hashlib.sha256(aad + metadata + iv + ciphertext + tag).digest()
    assert base64.b64decode(sealed["ciphertextDataIntegrityValue"]) == cdiv

    opened = _call(xks_server, f"/keys/{key_id}/decrypt", _decrypt_doc(sealed, aad), cred)
    assert opened.status_code == 200, opened.text
    assert base64.b64decode(opened.json()["plaintext"]) == plaintext

    # Two encryptions of the same plaintext share no IV, salt or ciphertext.
    again = _encrypt(xks_server, cred, key_id, plaintext, aad).json()
    assert again["initializationVector"] != sealed["initializationVector"]
    assert again["ciphertextMetadata"] != sealed["ciphertextMetadata"]
    assert again["ciphertext"] != sealed["ciphertext"]
    # Salts and nonces never repeat (random 128 and 96 bits): none in 100 calls.
    many = [_encrypt(xks_server, cred, key_id, b"same", None).json() for _ in range(100)]
    salts = {base64.b64decode(m["ciphertextMetadata"])[4:] for m in many}  # after the version
    assert len(salts) == 100
    assert len({m["initializationVector"] for m in many}) == 100
    # Without AAD and without a CDIV request: no CDIV in the answer.
    bare = _call(
        xks_server,
        f"/keys/{key_id}/encrypt",
        {"requestMetadata": _metadata(), "plaintext": _b64(b"x"), "encryptionAlgorithm": "AES_GCM"},
        cred,
    )
    assert bare.status_code == 200 and "ciphertextDataIntegrityValue" not in bare.json()
    back = _call(xks_server, f"/keys/{key_id}/decrypt", _decrypt_doc(bare.json(), None), cred)
    assert base64.b64decode(back.json()["plaintext"]) == b"x"


def test_rotating_the_key_changes_nothing_for_aws_kms(xks_server: Server) -> None:
    cred = _credential(xks_server)
    key_id = _key(xks_server, cred)
    before = _encrypt(xks_server, cred, key_id, b"old", b"a").json()
    xks_server.client().rotate_key_on_demand(KeyId=key_id)
    after = _encrypt(xks_server, cred, key_id, b"new", b"a").json()
    versions = [base64.b64decode(d["ciphertextMetadata"])[:4] for d in (before, after)]
    assert versions == [(1).to_bytes(4, "big"), (2).to_bytes(4, "big")]
    for sealed, plaintext in ((before, b"old"), (after, b"new")):
        opened = _call(xks_server, f"/keys/{key_id}/decrypt", _decrypt_doc(sealed, b"a"), cred)
        assert base64.b64decode(opened.json()["plaintext"]) == plaintext
    # A version the key never had is not a ciphertext of it.
    forged = bytearray(base64.b64decode(after["ciphertextMetadata"]))
    forged[:4] = (9).to_bytes(4, "big")
    doc = _decrypt_doc({**after, "ciphertextMetadata": _b64(bytes(forged))}, b"a")
    reply = _call(xks_server, f"/keys/{key_id}/decrypt", doc, cred)
    assert _error(reply) == (400, "InvalidCiphertextException")


def test_a_changed_aad_iv_tag_metadata_or_ciphertext_is_invalid_ciphertext(
    xks_server: Server,
) -> None:
    cred = _credential(xks_server)
    key_id = _key(xks_server, cred)
    aad = b"context"
    sealed = _encrypt(xks_server, cred, key_id, b"data key bytes", aad).json()

    def flipped(name: str) -> dict[str, str]:
        raw = bytearray(base64.b64decode(sealed[name]))
        raw[0] ^= 1
        return {**sealed, name: _b64(bytes(raw))}

    cases: list[tuple[dict[str, str], bytes | None]] = [
        (sealed, b"contexT"),
        (sealed, None),
        *(
            (flipped(name), aad)
            for name in (
                "ciphertext",
                "ciphertextMetadata",
                "initializationVector",
                "authenticationTag",
            )
        ),
        ({**sealed, "initializationVector": _b64(b"\x00" * 16)}, aad),
        ({**sealed, "authenticationTag": _b64(b"\x00" * 12)}, aad),
        ({k: v for k, v in sealed.items() if k != "ciphertextMetadata"}, aad),
    ]
    for changed, changed_aad in cases:
        doc = _decrypt_doc({"ciphertextMetadata": "", **changed}, changed_aad)
        if "ciphertextMetadata" not in changed:
            del doc["ciphertextMetadata"]
        reply = _call(xks_server, f"/keys/{key_id}/decrypt", doc, cred)
        assert _error(reply) == (400, "InvalidCiphertextException"), (changed, changed_aad)
    # Another key's ciphertext does not open under this one.
    other = _key(xks_server, cred)
    reply = _call(xks_server, f"/keys/{other}/decrypt", _decrypt_doc(sealed, aad), cred)
    assert _error(reply) == (400, "InvalidCiphertextException")


def test_unknown_disabled_and_non_aes_keys(xks_server: Server) -> None:
    cred = _credential(xks_server)
    missing = _call(
        xks_server,
        f"/keys/{uuid.uuid4()}/metadata",
        {"requestMetadata": _metadata("CreateKey")},
        cred,
    )
    assert _error(missing) == (404, "KeyNotFoundException")
    alias_like = _call(
        xks_server, "/keys/alias-name/metadata", {"requestMetadata": _metadata("CreateKey")}, cred
    )
    assert _error(alias_like) == (404, "KeyNotFoundException")
    key_id = _key(xks_server, cred)
    xks_server.client().disable_key(KeyId=key_id)
    meta = _call(
        xks_server, f"/keys/{key_id}/metadata", {"requestMetadata": _metadata("DescribeKey")}, cred
    )
    assert meta.json()["keyStatus"] == "DISABLED"
    assert _error(_encrypt(xks_server, cred, key_id, b"x", None)) == (400, "InvalidStateException")
    # Not an AES key: the proxy serves none but single-Region symmetric keys.
    admin = xks_server.client()
    for spec, usage in (("RSA_2048", "ENCRYPT_DECRYPT"), ("HMAC_256", "GENERATE_VERIFY_MAC")):
        policy = admin.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
        other = admin.create_key(KeySpec=spec, KeyUsage=usage, Policy=policy)
        other_id = other["KeyMetadata"]["KeyId"]
        meta = _call(xks_server, f"/keys/{other_id}/metadata",
                     {"requestMetadata": _metadata("CreateKey")}, cred)  # fmt: skip
        assert _error(meta) == (501, "UnsupportedOperationException"), spec
    # A key of this account the credential's principal is not allowed: 403.
    plain = xks_server.client().create_key()["KeyMetadata"]["KeyId"]
    assert _error(_encrypt(xks_server, cred, plain, b"x", None)) == (403, "AccessDeniedException")


def test_a_key_of_imported_material_is_served_once_imported(xks_server: Server) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    cred = _credential(xks_server)
    both = _key(xks_server, cred)
    admin = xks_server.client()
    policy = admin.get_key_policy(KeyId=both, PolicyName="default")["Policy"]
    key_id = admin.create_key(Origin="EXTERNAL", Policy=policy)["KeyMetadata"]["KeyId"]
    pending = _encrypt(xks_server, cred, key_id, b"x", None)
    assert _error(pending) == (400, "InvalidStateException")
    params = admin.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    public = serialization.load_der_public_key(params["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    admin.import_key_material(
        KeyId=key_id,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=public.encrypt(bytes(range(32)), oaep),
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
    )
    sealed = _encrypt(xks_server, cred, key_id, b"byok", b"aad")
    assert sealed.status_code == 200, sealed.text
    opened = _call(xks_server, f"/keys/{key_id}/decrypt", _decrypt_doc(sealed.json(), b"aad"), cred)
    assert base64.b64decode(opened.json()["plaintext"]) == b"byok"


def test_an_encrypt_only_key_reports_its_usage_and_refuses_decrypt(xks_server: Server) -> None:
    cred = _credential(xks_server)
    both = _key(xks_server, cred)
    sealed = _encrypt(xks_server, cred, both, b"secret", None).json()
    only = _key(xks_server, cred, tags={"XksKeyUsage": "ENCRYPT"})
    meta = _call(
        xks_server, f"/keys/{only}/metadata", {"requestMetadata": _metadata("DescribeKey")}, cred
    )
    assert meta.json()["keyUsage"] == ["ENCRYPT"]
    assert _encrypt(xks_server, cred, only, b"secret", None, cdiv=False).status_code == 200
    # A CDIV is an assurance that Decrypt will work (Appendix C: the proxy
    # decrypts before it answers), which an encrypt-only key cannot give.
    with_cdiv = _encrypt(xks_server, cred, only, b"secret", b"aad")
    assert _error(with_cdiv) == (400, "InvalidKeyUsageException")
    reply = _call(xks_server, f"/keys/{only}/decrypt", _decrypt_doc(sealed, None), cred)
    assert _error(reply) == (400, "InvalidKeyUsageException")
    # The CDIV's verifying decryption is the proxy's own check, not a kms:Decrypt:
    # a policy that allows only Encrypt still gets CDIVs, and no Decrypt.
    encrypt_allowed = _key(xks_server, cred, actions=("kms:Encrypt",))
    cdiv = _encrypt(xks_server, cred, encrypt_allowed, b"secret", b"aad")
    assert cdiv.status_code == 200 and "ciphertextDataIntegrityValue" in cdiv.json()
    denied = _call(
        xks_server, f"/keys/{encrypt_allowed}/decrypt", _decrypt_doc(cdiv.json(), b"aad"), cred
    )
    assert _error(denied) == (403, "AccessDeniedException")
    decrypt_only = _key(xks_server, cred, tags={"XksKeyUsage": "DECRYPT"})
    assert _error(_encrypt(xks_server, cred, decrypt_only, b"x", None)) == (
        400,
        "InvalidKeyUsageException",
    )


def test_a_key_policy_can_allow_one_kms_key_arn_only(xks_server: Server) -> None:
    cred = _credential(xks_server)
    key_id = _key(
        xks_server, cred, condition={"StringEquals": {"keycask:XksKmsKeyArn": KMS_KEY_ARN}}
    )
    assert _encrypt(xks_server, cred, key_id, b"x", None).status_code == 200
    refused = _encrypt(xks_server, cred, key_id, b"x", None, kmsKeyArn=OTHER_KMS_KEY_ARN)
    assert _error(refused) == (403, "AccessDeniedException")
    # keycask policy simulate decides the same, given the condition key.
    for arn, decision in ((KMS_KEY_ARN, "allow"), (OTHER_KMS_KEY_ARN, "deny")):
        simulated = xks_server.cli(
            "policy", "simulate", "--principal", cred["Arn"], "--action", "kms:Encrypt",
            "--key", key_id, "--condition", f"keycask:XksKmsKeyArn={arn}", "--json", check=False,
        )  # fmt: skip
        assert json.loads(simulated.stdout)["Decision"] == decision
    # docs/xks.md's statement: IfExists, so CreateKey's metadata call (no
    # kmsKeyArn yet) is allowed, and Encrypt for another KMS key is not.
    doc_key = _key(
        xks_server, cred, condition={"StringEqualsIfExists": {"keycask:XksKmsKeyArn": KMS_KEY_ARN}}
    )
    create_key_meta = {k: v for k, v in _metadata("CreateKey").items() if k != "kmsKeyArn"}
    meta_doc = {"requestMetadata": create_key_meta}
    meta = _call(xks_server, f"/keys/{doc_key}/metadata", meta_doc, cred)
    assert meta.status_code == 200, meta.text
    assert _encrypt(xks_server, cred, doc_key, b"x", None).status_code == 200
    other = _encrypt(xks_server, cred, doc_key, b"x", None, kmsKeyArn=OTHER_KMS_KEY_ARN)
    assert _error(other) == (403, "AccessDeniedException")
    # And one AWS principal, by the same means.
    by_caller = _key(
        xks_server,
        cred,
        condition={
            "StringLike": {"keycask:XksAwsPrincipalArn": "arn:aws:iam::111122223333:user/A*"}
        },
    )
    assert _encrypt(xks_server, cred, by_caller, b"x", None).status_code == 200
    # And some AWS KMS operations only (here: no ReEncrypt).
    no_reencrypt = _key(
        xks_server,
        cred,
        condition={"StringNotEquals": {"keycask:XksKmsOperation": "ReEncrypt"}},
    )
    assert _encrypt(xks_server, cred, no_reencrypt, b"x", None).status_code == 200
    reencrypt = _encrypt(xks_server, cred, no_reencrypt, b"x", None, kmsOperation="ReEncrypt")
    assert _error(reencrypt) == (403, "AccessDeniedException")
    bob = _encrypt(
        xks_server,
        cred,
        by_caller,
        b"x",
        None,
        awsPrincipalArn="arn:aws:iam::111122223333:user/Bob",
    )
    assert _error(bob) == (403, "AccessDeniedException")


def test_policies_see_the_algorithm_and_the_aads_context_key(xks_server: Server) -> None:
    cred = _credential(xks_server)
    condition = {
        "StringEquals": {"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"},
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["xks:aad-sha256"]},
    }
    key_id = _key(xks_server, cred, condition=condition)
    sealed = _encrypt(xks_server, cred, key_id, b"x", b"aad")
    assert sealed.status_code == 200, sealed.text
    opened = _call(xks_server, f"/keys/{key_id}/decrypt", _decrypt_doc(sealed.json(), b"aad"), cred)
    assert opened.status_code == 200, opened.text


def test_every_call_is_audited_with_its_kms_request_id(xks_server: Server) -> None:
    cred = _credential(xks_server)
    key_id = _key(xks_server, cred)
    request_id = str(uuid.uuid4())
    reply = _encrypt(
        xks_server, cred, key_id, b"top secret plaintext", b"aad", kmsRequestId=request_id
    )
    assert reply.status_code == 200
    record = _record_of(xks_server, request_id)
    assert record["door"] == "xks" and record["operation"] == "Xks.Encrypt"
    assert record["principal"] == cred["Arn"] and record["outcome"] == "success"
    assert record["decided_by"] == "key policy statement #2"
    assert f"kmsKeyArn={KMS_KEY_ARN}" in record["detail"]
    assert "kmsOperation=Encrypt" in record["detail"]
    assert key_id in record["key_arn"]
    denied_id = str(uuid.uuid4())
    _encrypt(xks_server, cred, key_id, b"x", None, kmsRequestId=denied_id, kmsKeyArn="not an arn")
    bad = _call(
        xks_server,
        f"/keys/{uuid.uuid4()}/decrypt",
        _decrypt_doc(reply.json(), None, kmsRequestId=denied_id + "-2"),
        cred,
    )
    assert _error(bad) == (404, "KeyNotFoundException")
    assert _record_of(xks_server, denied_id + "-2")["error_code"] == "NotFoundException"
    # No plaintext in any audit line.
    text = "".join(p.read_text() for p in (xks_server.data_dir / "audit").glob("*.jsonl"))
    assert "top secret plaintext" not in text and _b64(b"top secret plaintext") not in text
    assert xks_server.cli("audit", "verify").returncode == 0


# -- curl --aws-sigv4 --


def test_curl_signs_as_aws_kms_does(xks_server: Server, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    assert curl is not None
    cred = _credential(xks_server)
    key_id = _key(xks_server, cred)
    base = xks_server.endpoint + PREFIX + "/kms/xks/v1"

    def run(path: str, doc: Any, user: str, *, at: str = base) -> tuple[int, Any]:
        body = tmp_path / "body.json"
        body.write_text(json.dumps(doc))
        out = subprocess.run(
            [
                curl,
                "-s",
                "-w",
                "\n%{http_code}",
                "--aws-sigv4",
                "aws:amz:us-east-1:kms-xks-proxy",
                "--user",
                user,
                "-X",
                "POST",
                "-H",
                "Content-Type:application/json",
                "--data",
                f"@{body}",
                at + path,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        text, _, code = out.rpartition("\n")
        return int(code), json.loads(text)

    user = f"{cred['AccessKeyId']}:{cred['SecretAccessKey']}"
    code, health = run(
        "/health",
        {"requestMetadata": {"kmsRequestId": "c", "kmsOperation": "KmsHealthCheck"}},
        user,
    )
    assert code == 200 and health["ekmFleetDetails"]
    plaintext = _b64(b"Hello World!")
    code, sealed = run(
        f"/keys/{key_id}/encrypt",
        {
            "requestMetadata": _metadata("GenerateDataKey"),
            "plaintext": plaintext,
            "encryptionAlgorithm": "AES_GCM",
        },
        user,
    )
    assert code == 200
    code, opened = run(f"/keys/{key_id}/decrypt", _decrypt_doc(sealed, None), user)
    assert code == 200 and opened == {"plaintext": plaintext}
    code, wrong_prefix = run(
        "/health",
        {"requestMetadata": {"kmsRequestId": "c", "kmsOperation": "x"}},
        user,
        at=xks_server.endpoint + "/tenant-2/kms/xks/v1",
    )
    assert code == 404 and wrong_prefix["errorName"] == "InvalidUriPathException"
    code, malformed = run(f"/keys/{key_id}/encrypt", {"requestMetadata": {}}, user)
    assert code == 400 and malformed["errorName"] == "ValidationException"
    code, refused = run(
        "/health",
        {"requestMetadata": {"kmsRequestId": "c", "kmsOperation": "x"}},
        f"{cred['AccessKeyId']}:{'A' * 44}",
    )
    assert (code, refused["errorName"]) == (401, "AuthenticationFailedException")


# -- paths, methods and bodies --


def test_a_wrong_prefix_or_path_is_invalid_uri_path_and_get_is_405(xks_server: Server) -> None:
    cred = _credential(xks_server)
    health = json.dumps({"requestMetadata": {"kmsRequestId": "p", "kmsOperation": "x"}}).encode()
    key = f"/keys/{uuid.uuid4()}"
    for path in (
        "/kms/xks/v1/health",
        "/tenant-2/kms/xks/v1/health",
        f"{PREFIX}/kms/xks/v2/health",
        f"{PREFIX}/kms/xks/v1/healthz",
        f"{PREFIX}/kms/xks/v1{key}/sign",
        f"{PREFIX}/kms/xks/v1{key}",
        f"{PREFIX}/kms/xks/v1/keys/a%2Fb/encrypt",
        f"{PREFIX}/kms/xks/v1/keys//encrypt",
        f"{PREFIX}/x{PREFIX}/kms/xks/v1/health",
    ):
        reply = _signed(xks_server, path, health, cred)
        assert _error(reply) == (404, "InvalidUriPathException"), path
    for path in ("/health", f"{key}/metadata", f"{key}/encrypt"):
        reply = _signed(xks_server, PREFIX + "/kms/xks/v1" + path, b"", cred, method="GET")
        assert reply.status_code == 405, path
    # Unsigned GET: still 405 (the specification's MUST); unsigned POST: 401.
    unsigned_get = requests.get(xks_server.endpoint + PREFIX + "/kms/xks/v1/health", timeout=30)
    assert unsigned_get.status_code == 405
    # Unsigned: refused before anything else.
    plain = requests.post(
        xks_server.endpoint + PREFIX + "/kms/xks/v1/health", data=health, timeout=30
    )
    assert _error(plain) == (401, "AuthenticationFailedException")


def test_malformed_bodies_are_validation_exceptions(xks_server: Server) -> None:
    cred = _credential(xks_server)
    key_id = _key(xks_server, cred)
    path = f"{PREFIX}/kms/xks/v1/keys/{key_id}/encrypt"
    good = {"requestMetadata": _metadata(), "plaintext": "eA==", "encryptionAlgorithm": "AES_GCM"}
    bodies: list[bytes] = [
        b"",
        b"{",
        b"[]",
        b"null",
        b'"x"',
        json.dumps({}).encode(),
        json.dumps({**good, "requestMetadata": "x"}).encode(),
        json.dumps({**good, "requestMetadata": {}}).encode(),
        json.dumps({**good, "requestMetadata": {**_metadata(), "kmsRequestId": 7}}).encode(),
        json.dumps({**good, "requestMetadata": {**_metadata(), "kmsKeyArn": None}}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "plaintext"}).encode(),
        json.dumps({**good, "plaintext": "not base64!"}).encode(),
        json.dumps({**good, "plaintext": ["eA=="]}).encode(),
        json.dumps({**good, "additionalAuthenticatedData": 5}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "encryptionAlgorithm"}).encode(),
        b"\xff\xfe{}",
    ]
    for body in bodies:
        reply = _signed(xks_server, path, body, cred)
        assert _error(reply) == (400, "ValidationException"), body
    unsupported = [
        {**good, "encryptionAlgorithm": "AES_CBC"},
        {**good, "ciphertextDataIntegrityValueAlgorithm": "MD5"},
        {**good, "plaintext": _b64(b"x" * 8193)},
    ]
    for doc in unsupported:
        reply = _signed(xks_server, path, json.dumps(doc).encode(), cred)
        assert _error(reply) == (501, "UnsupportedOperationException"), doc
    # The specification's sizes are served: 4,300 bytes of plaintext, 8 KiB of AAD.
    big = {**good, "plaintext": _b64(b"p" * 4300), "additionalAuthenticatedData": _b64(b"a" * 8192)}
    assert _signed(xks_server, path, json.dumps(big).encode(), cred).status_code == 200
    # An oversized body is refused, in the XKS wire.
    huge = _signed(xks_server, path, b"{" + b" " * (70 * 1024) + b"}", cred)
    assert _error(huge) == (400, "ValidationException")
    over_http_limit = _signed(xks_server, path, b"{" + b" " * (1024 * 1024) + b"}", cred)
    assert _error(over_http_limit) == (413, "ValidationException")
    # Fields AWS KMS may add to requestMetadata later are accepted.
    extra = {**good, "requestMetadata": {**_metadata(), "kmsFutureField": "x"}}
    assert _signed(xks_server, path, json.dumps(extra).encode(), cred).status_code == 200


# -- hostile callers --


class _SignedAt(SigV4Auth):
    """botocore's SigV4Auth.add_auth, at a chosen time (its own reads the clock)."""

    def __init__(self, when: str, *args: Any) -> None:
        super().__init__(*args)
        self._when = when

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._when
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, signature)


def test_an_old_or_future_x_amz_date_is_refused(xks_server: Server) -> None:
    cred = _credential(xks_server)
    health = json.dumps({"requestMetadata": {"kmsRequestId": "t", "kmsOperation": "x"}}).encode()
    for skew in (timedelta(minutes=-6), timedelta(minutes=6), timedelta(days=-1), timedelta()):
        when = (datetime.now(UTC) + skew).strftime("%Y%m%dT%H%M%SZ")
        url = xks_server.endpoint + PREFIX + "/kms/xks/v1/health"
        request = AWSRequest(
            method="POST", url=url, data=health, headers={"Content-Type": "application/json"}
        )
        _SignedAt(
            when,
            Credentials(cred["AccessKeyId"], cred["SecretAccessKey"]),
            "kms-xks-proxy",
            "us-east-1",
        ).add_auth(request)
        assert request.headers["X-Amz-Date"] == when
        reply = requests.post(url, data=health, headers=dict(request.headers), timeout=30)
        if not skew:
            assert reply.status_code == 200  # the same signer, at the right time
            continue
        assert _error(reply) == (401, "AuthenticationFailedException"), skew


def test_a_replayed_request_body_or_path_does_not_verify(xks_server: Server) -> None:
    cred = _credential(xks_server)
    key_id = _key(xks_server, cred)
    url = xks_server.endpoint + PREFIX + f"/kms/xks/v1/keys/{key_id}/encrypt"
    doc = {"requestMetadata": _metadata(), "plaintext": "eA==", "encryptionAlgorithm": "AES_GCM"}
    body = json.dumps(doc).encode()
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(
        Credentials(cred["AccessKeyId"], cred["SecretAccessKey"]), "kms-xks-proxy", "us-east-1"
    ).add_auth(request)
    headers = dict(request.headers)
    other_body = json.dumps({**doc, "plaintext": "eQ=="}).encode()
    assert _error(requests.post(url, data=other_body, headers=headers, timeout=30)) == (
        401,
        "AuthenticationFailedException",
    )
    decrypt = url.replace("/encrypt", "/decrypt")
    assert _error(requests.post(decrypt, data=body, headers=headers, timeout=30)) == (
        401,
        "AuthenticationFailedException",
    )
    # x-amz-date must be signed (AWS KMS signs host;x-amz-date).
    unsigned_date = dict(headers)
    unsigned_date["Authorization"] = re.sub(
        r"SignedHeaders=[^,]+", "SignedHeaders=host", headers["Authorization"]
    )
    assert _error(requests.post(url, data=body, headers=unsigned_date, timeout=30)) == (
        401,
        "AuthenticationFailedException",
    )


def _raw_http(server: Server, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def test_header_injection_and_duplicated_auth_headers_never_pass(xks_server: Server) -> None:
    cred = _credential(xks_server)
    body = json.dumps({"requestMetadata": {"kmsRequestId": "i", "kmsOperation": "x"}}).encode()
    path = PREFIX + "/kms/xks/v1/health"
    signed = dict(_prepared(xks_server, path, body, cred).headers)
    # A second Authorization header (a smuggled identity) or x-amz-date.
    for extra in (f"Authorization: {signed['Authorization']}", "X-Amz-Date: 20200101T000000Z"):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{xks_server.port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in signed.items() if k.lower() != "host")
            + f"{extra}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        answer = _raw_http(xks_server, head.encode(), body)
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 401), answer[:200]
    # A header value with a bare CR or an LF inside: refused by the HTTP layer.
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Date: 1\rInjected: yes\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    answer = _raw_http(xks_server, head.encode(), body)
    assert int(answer.split(b" ", 2)[1]) in (400, 401)


def _prepared(server: Server, path: str, body: bytes, cred: dict[str, str]) -> AWSRequest:
    request = AWSRequest(
        method="POST",
        url=server.endpoint + path,
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(
        Credentials(cred["AccessKeyId"], cred["SecretAccessKey"]), "kms-xks-proxy", "us-east-1"
    ).add_auth(request)
    return request


def test_worker_processes_serve_the_same_prefix_and_credentials(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", workers=2, args=("--xks-path-prefix", PREFIX)).start()
    try:
        cred = _credential(srv)
        key_id = _key(srv, cred)
        # Several connections: the kernel spreads them over both workers, and
        # each must know the prefix, the credential and the key.
        sealed = [_encrypt(srv, cred, key_id, b"w", b"a") for _ in range(6)]
        assert {reply.status_code for reply in sealed} == {200}
        for reply in sealed:
            doc = _decrypt_doc(reply.json(), b"a")
            assert _call(srv, f"/keys/{key_id}/decrypt", doc, cred).status_code == 200
        srv.cli("xks", "credentials", "revoke", cred["AccessKeyId"])
        health = {"requestMetadata": {"kmsRequestId": "w", "kmsOperation": "KmsHealthCheck"}}
        refused = [_call(srv, "/health", health, cred).status_code for _ in range(6)]
        assert set(refused) == {401}
    finally:
        srv.stop(signal.SIGKILL)
