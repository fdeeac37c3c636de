"""Attacker review findings on the XKS door: the encryption context keys it
binds are reserved (no other door makes or opens an XKS ciphertext), and the
names of requestMetadata's fields cannot forge the audit record's detail."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import botocore.exceptions
import pytest
from tests.conftest import Server
from tests.e2e.test_xks_e2e import PREFIX, _credential, _encrypt, _key, _record_of


@pytest.fixture(scope="module")
def xks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("xks-review") / "data", args=("--xks-path-prefix", PREFIX)
    ).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("name", ["xks:aad-sha256", "xks:anything"])
def test_other_doors_cannot_name_the_xks_context_keys(xks_server: Server, name: str) -> None:
    kms = xks_server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    context = {name: base64.b64encode(b"\0" * 32).decode()}
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    calls = (
        lambda: kms.encrypt(KeyId=key_id, Plaintext=b"forged", EncryptionContext=context),
        lambda: kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context),
        lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext=context),
        lambda: kms.re_encrypt(
            CiphertextBlob=blob, DestinationKeyId=key_id, DestinationEncryptionContext=context
        ),
    )
    for call in calls:
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert "reserved" in refused.value.response["Error"]["Message"]
    # Other context keys, and the XKS door itself, are unaffected.
    assert kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"xksish": "1"})
    cred = _credential(xks_server)
    xks_key = _key(xks_server, cred)
    assert _encrypt(xks_server, cred, xks_key, b"still served", b"aad").status_code == 200


def test_metadata_field_names_cannot_forge_the_audit_detail(xks_server: Server) -> None:
    cred = _credential(xks_server)
    key_id = _key(xks_server, cred)
    request_id = str(uuid.uuid4())
    hostile = "x; kmsRequestId=FORGED; awsPrincipalArn=arn:aws:iam::999:root\x1b[2J\n"
    reply = _encrypt(
        xks_server, cred, key_id, b"p", None, kmsRequestId=request_id, **{hostile: "v"}
    )
    assert reply.status_code == 200, reply.text
    detail = _record_of(xks_server, request_id)["detail"]
    assert "kmsRequestId=FORGED" not in detail and "\x1b" not in detail and "\n" not in detail
    assert detail.count("kmsRequestId=") == 1
