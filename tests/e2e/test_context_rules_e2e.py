"""Encryption contexts and tags an attacker shapes (issue 13, findings 4 and 8),
against a real server driven by boto3."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server

ACCOUNT = "000000000000"
SUFFIX = uuid.uuid4().hex[:6]


def _principal(server: Server, name: str, *tags: str) -> tuple[str, Any]:
    args = ["principals", "create", f"{name}-{SUFFIX}", "--json"]
    for tag in tags:
        args += ["--tag", tag]
    created = json.loads(server.cli(*args).stdout)
    return created["Arn"], server.client((created["AccessKeyId"], created["SecretAccessKey"]))


@pytest.fixture(scope="module")
def tenants(server: Server) -> Iterator[dict[str, Any]]:
    """A key shared by two tenants, with the guardrail of finding 8: allow
    both tenants, deny any request whose context names another tenant."""
    arn_a, kms_a = _principal(server, "tenant-a", "tenant=a")
    arn_b, kms_b = _principal(server, "tenant-b", "tenant=b")
    admin = server.client()
    key_id = admin.create_key(Description="shared by tenants")["KeyMetadata"]["KeyId"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admin", "Effect": "Allow",
             "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
             "Resource": "*"},
            {"Sid": "Tenants", "Effect": "Allow", "Principal": {"AWS": [arn_a, arn_b]},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
             "Resource": "*"},
            {"Sid": "OwnTenantOnly", "Effect": "Deny", "Principal": {"AWS": [arn_a, arn_b]},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
             "Resource": "*",
             "Condition": {"StringNotEquals": {
                 "kms:EncryptionContext:tenant": "${aws:PrincipalTag/tenant}"}}},
        ],
    }  # fmt: skip
    admin.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))
    yield {"key": key_id, "a": kms_a, "b": kms_b, "admin": admin}


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def test_the_guardrail_holds_for_plain_contexts(tenants: dict[str, Any]) -> None:
    key = tenants["key"]
    blob = tenants["a"].encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "a"})
    assert tenants["a"].decrypt(CiphertextBlob=blob["CiphertextBlob"],
                                EncryptionContext={"tenant": "a"})["Plaintext"] == b"x"  # fmt: skip
    with pytest.raises(ClientError) as denied:
        tenants["a"].encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "b"})
    assert _code(denied) == "AccessDeniedException"


@pytest.mark.parametrize(
    "context",
    [
        {"tenant": "b", "TENANT": "a"},
        {"TENANT": "a", "tenant": "b"},
        {"Tenant": "b", "tenant": "a"},
    ],
)
def test_case_twins_cannot_mint_another_tenants_data_key(
    tenants: dict[str, Any], context: dict[str, str]
) -> None:
    # Finding 8: tenant a asks for a data key whose context tenant b's
    # guardrail also accepts. Before the fix this returned a data key.
    for operation, params in [
        ("generate_data_key", {"KeySpec": "AES_256"}),
        ("generate_data_key_without_plaintext", {"KeySpec": "AES_256"}),
        ("encrypt", {"Plaintext": b"x"}),
    ]:
        with pytest.raises(ClientError) as refused:
            getattr(tenants["a"], operation)(KeyId=tenants["key"], EncryptionContext=context,
                                             **params)  # fmt: skip
        assert _code(refused) == "ValidationException", operation
        assert "differ only by case" in refused.value.response["Error"]["Message"]
    blob = tenants["a"].encrypt(KeyId=tenants["key"], Plaintext=b"x",
                                EncryptionContext={"tenant": "a"})["CiphertextBlob"]  # fmt: skip
    with pytest.raises(ClientError) as refused:
        tenants["a"].re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"tenant": "a"},
                                DestinationKeyId=tenants["key"],
                                DestinationEncryptionContext=context)  # fmt: skip
    assert _code(refused) == "ValidationException"


def test_case_twin_tags_are_refused(tenants: dict[str, Any]) -> None:
    admin = tenants["admin"]
    with pytest.raises(ClientError) as refused:
        admin.create_key(Tags=[{"TagKey": "Owner", "TagValue": "a"},
                               {"TagKey": "owner", "TagValue": "b"}])  # fmt: skip
    assert _code(refused) == "TagException"
    key = admin.create_key(Tags=[{"TagKey": "Owner", "TagValue": "a"}])["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as refused:
        admin.tag_resource(KeyId=key, Tags=[{"TagKey": "OWNER", "TagValue": "b"}])
    assert _code(refused) == "TagException"
    # The same key again still replaces its value.
    admin.tag_resource(KeyId=key, Tags=[{"TagKey": "Owner", "TagValue": "b"}])
    assert admin.list_resource_tags(KeyId=key)["Tags"] == [{"TagKey": "Owner", "TagValue": "b"}]


def _audit_bytes(server: Server) -> int:
    return sum(path.stat().st_size for path in (server.data_dir / "audit").glob("*.jsonl"))


def _audit_record(server: Server, request_id: str) -> tuple[int, dict[str, Any]]:
    for path in sorted(Path(server.data_dir / "audit").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["request_id"] == request_id:
                return len(line), record
    raise AssertionError(f"no audit record for {request_id}")


def test_a_huge_context_from_a_principal_with_no_permission_writes_little(
    server: Server, tenants: dict[str, Any]
) -> None:
    # Finding 4: ~1 MiB of context per denied request made the audit log
    # write (and fsync) ~1 MiB per request.
    _arn, nobody = _principal(server, "nobody")
    huge = {f"k{i}": "v" * 1000 for i in range(900)}  # ~0.9 MB, 900 pairs
    one_value = {"k": "v" * 900_000}
    blob = tenants["admin"].encrypt(KeyId=tenants["key"], Plaintext=b"x")["CiphertextBlob"]
    before = _audit_bytes(server)
    for context in (huge, one_value):
        with pytest.raises(ClientError) as refused:
            nobody.encrypt(KeyId=tenants["key"], Plaintext=b"x", EncryptionContext=context)
        assert _code(refused) == "ValidationException"
        # Decrypt cannot refuse a context (a ciphertext made earlier with it
        # must stay decryptable); its record is bounded instead.
        with pytest.raises(ClientError) as denied:
            nobody.decrypt(CiphertextBlob=blob, EncryptionContext=context)
        assert _code(denied) == "AccessDeniedException"
        length, record = _audit_record(
            server, denied.value.response["ResponseMetadata"]["RequestId"]
        )
        assert length < 8192
        marker = record["encryption_context"]["keycask:truncated"]
        assert marker.endswith(tuple("0123456789abcdef")) and "sha256" in marker
    # Four requests of ~0.9 MB each: a few KiB of audit log, not ~3.6 MB.
    assert _audit_bytes(server) - before < 4 * 8192


def test_contexts_at_the_bounds_are_accepted(tenants: dict[str, Any]) -> None:
    from keycask.service.core.contexts import MAX_CONTEXT_BYTES, MAX_CONTEXT_PAIRS

    admin = tenants["admin"]
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    pairs = {f"k{i:03}": "v" for i in range(MAX_CONTEXT_PAIRS)}
    blob = admin.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=pairs)["CiphertextBlob"]
    assert admin.decrypt(CiphertextBlob=blob, EncryptionContext=pairs)["Plaintext"] == b"x"
    with pytest.raises(ClientError) as refused:
        admin.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={**pairs, "one": "more"})
    assert _code(refused) == "ValidationException"
    # 2 (count) + 4 (two lengths) + 1 (key) + value = MAX_CONTEXT_BYTES.
    largest = {"k": "v" * (MAX_CONTEXT_BYTES - 7)}
    blob = admin.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=largest)["CiphertextBlob"]
    assert admin.decrypt(CiphertextBlob=blob, EncryptionContext=largest)["Plaintext"] == b"x"
    with pytest.raises(ClientError) as refused:
        admin.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"k": largest["k"] + "v"})
    assert _code(refused) == "ValidationException"
