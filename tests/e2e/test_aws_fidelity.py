"""AWS fidelity (issue 23): answers where keycask used to differ from AWS KMS.

Each test drives a real keycask through boto3, or through a raw signed request
where boto3 would hide the difference (the HTTP status, a header, a member
boto3 refuses to send). Every refusal sits next to the same call made right,
which succeeds, so a refusal for the wrong reason cannot pass.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawclient import RawKMS

if TYPE_CHECKING:
    from conftest import Server


def _error(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


@pytest.fixture(scope="module")
def raw(server: Server) -> RawKMS:
    return RawKMS(server.endpoint, server.credentials())


def _key_count(kms: Any) -> int:
    return sum(len(page["Keys"]) for page in kms.get_paginator("list_keys").paginate())


# --- CreateKey: KeyUsage is required for every key but a symmetric encryption key ---


@pytest.mark.parametrize(
    ("spec", "usage"),
    [
        ("RSA_2048", "SIGN_VERIFY"),
        ("RSA_2048", "ENCRYPT_DECRYPT"),
        ("ECC_NIST_P256", "SIGN_VERIFY"),
        ("ECC_NIST_EDWARDS25519", "SIGN_VERIFY"),
        ("HMAC_256", "GENERATE_VERIFY_MAC"),
        ("ML_DSA_44", "SIGN_VERIFY"),
        ("ML_KEM_512", "ENCAPSULATE_DECAPSULATE"),
    ],
)
def test_create_key_without_key_usage_needs_a_symmetric_key(
    kms: Any, spec: str, usage: str
) -> None:
    before = _key_count(kms)
    code, message = _error(kms.create_key, KeySpec=spec)
    assert (code, message) == (
        "ValidationException",
        "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.",
    )
    code, _ = _error(kms.create_key, CustomerMasterKeySpec=spec)
    assert code == "ValidationException"
    assert _key_count(kms) == before
    meta = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"]) == (spec, usage)


def test_symmetric_key_usage_still_defaults(kms: Any) -> None:
    for kwargs in ({}, {"KeySpec": "SYMMETRIC_DEFAULT"}):
        meta = kms.create_key(**kwargs)["KeyMetadata"]
        assert (meta["KeySpec"], meta["KeyUsage"]) == ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")


# --- tags ---


def _tags(count: int, prefix: str = "k") -> list[dict[str, str]]:
    return [{"TagKey": f"{prefix}{i}", "TagValue": "v"} for i in range(count)]


def test_more_than_50_tags_is_a_tag_exception(kms: Any) -> None:
    before = _key_count(kms)
    assert _error(kms.create_key, Tags=_tags(51)) == ("TagException", "Too many tags")
    assert _key_count(kms) == before
    key = kms.create_key(Tags=_tags(50))["KeyMetadata"]["KeyId"]
    # Counted over the key's tags, old and new: one more is the 51st.
    assert _error(kms.tag_resource, KeyId=key, Tags=_tags(1, "new")) == (
        "TagException",
        "Too many tags",
    )
    # A new value for a tag the key has is no new tag.
    kms.tag_resource(KeyId=key, Tags=[{"TagKey": "k0", "TagValue": "changed"}])
    assert len(kms.list_resource_tags(KeyId=key)["Tags"]) == 50


@pytest.mark.parametrize("prefix", ["aws:", "AWS:", "Aws:", "aWs:"])
def test_aws_prefix_is_reserved_in_any_case(kms: Any, prefix: str) -> None:
    reserved = [{"TagKey": prefix + "owner", "TagValue": "v"}]
    expected = ("TagException", "Tags beginning with aws: are reserved")
    assert _error(kms.create_key, Tags=reserved) == expected
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    assert _error(kms.tag_resource, KeyId=key, Tags=reserved) == expected
    assert kms.list_resource_tags(KeyId=key)["Tags"] == []
    # The prefix without its colon is an ordinary key.
    kms.tag_resource(KeyId=key, Tags=[{"TagKey": prefix[:3] + "owner", "TagValue": "v"}])


def test_duplicate_tag_keys_in_awss_words(kms: Any) -> None:
    twice = [{"TagKey": "k", "TagValue": "a"}, {"TagKey": "k", "TagValue": "b"}]
    assert _error(kms.create_key, Tags=twice) == ("TagException", "Duplicate tag keys")


# --- Limit bounds, as the API Reference states them per operation ---


def test_list_limits_as_the_service_bounds_them(kms: Any, raw: RawKMS) -> None:
    key = kms.create_key(Tags=_tags(3))["KeyMetadata"]["KeyId"]
    account = kms.describe_key(KeyId=key)["KeyMetadata"]["AWSAccountId"]
    calls: list[tuple[str, dict[str, Any], int]] = [
        ("ListAliases", {}, 100),
        ("ListGrants", {"KeyId": key}, 100),
        ("ListRetirableGrants", {"RetiringPrincipal": f"arn:aws:iam::{account}:root"}, 100),
        ("ListResourceTags", {"KeyId": key}, 50),
    ]
    for operation, body, high in calls:
        for limit in (1, high):
            assert raw.call(operation, {**body, "Limit": limit}).status == 200, operation
        for limit, rule in ((high + 1, f"less than or equal to {high}"), (0, "greater than")):
            doc = raw.call(operation, {**body, "Limit": limit}).assert_aws_error(
                "ValidationException", 400
            )
            assert doc["message"].startswith("1 validation error detected: Value"), doc
            assert (
                f"at 'limit' failed to satisfy constraint: Member must have value {rule}"
                in (doc["message"])
            ), doc
    # Operations whose documented bound is the model's own keep 1-1000.
    assert raw.call("ListKeys", {"Limit": 1000}).status == 200
    assert raw.call("ListKeyPolicies", {"KeyId": key, "Limit": 1000}).status == 200
    raw.call("ListKeys", {"Limit": 1001}).assert_aws_error("ValidationException", 400)


# --- DryRun ---


def test_dry_run_is_http_400(kms: Any, raw: RawKMS) -> None:
    key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    body = {"KeyId": key["KeyId"], "Message": "aGk=", "MacAlgorithm": "HMAC_SHA_256"}
    assert raw.call("GenerateMac", body).status == 200
    doc = raw.call("GenerateMac", {**body, "DryRun": True}).assert_aws_error(
        "DryRunOperationException", 400
    )
    assert doc["message"] == "The request would have succeeded, but the DryRun option is set."


# --- x-amzn-RequestId ---


def test_request_ids_are_random_uuids(server: Server, raw: RawKMS) -> None:
    ids = []
    for _ in range(20):
        answer = raw.call("ListKeys", {"Limit": 1})
        assert answer.status == 200
        assert answer.request_id is not None
        ids.append(uuid.UUID(answer.request_id))
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert len({str(i) for i in ids}) == len(ids)
    # A counter would leave every id but its last bits equal to its neighbour's.
    shared = {str(i)[:24] for i in ids}
    assert len(shared) == len(ids), "consecutive ids share a prefix: a counter?"
    # Each answer's id is its audit record's (written before the answer).
    audit = server.data_dir / "audit" / "server.jsonl"
    recorded = {json.loads(line)["request_id"] for line in audit.read_text().splitlines()}
    assert {str(i) for i in ids} <= recorded


# --- ReEncrypt names the materials on both sides ---


def test_re_encrypt_names_source_and_destination_material(kms: Any) -> None:
    source = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=source, Plaintext=b"moved")["CiphertextBlob"]
    first = kms.describe_key(KeyId=source)["KeyMetadata"]["CurrentKeyMaterialId"]
    kms.rotate_key_on_demand(KeyId=source)
    second = kms.describe_key(KeyId=source)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert first != second
    dest = kms.create_key()["KeyMetadata"]["KeyId"]
    dest_material = kms.describe_key(KeyId=dest)["KeyMetadata"]["CurrentKeyMaterialId"]

    out = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=dest)
    # The material that sealed the blob, not the key's current one.
    assert out["SourceKeyMaterialId"] == first
    assert out["DestinationKeyMaterialId"] == dest_material
    assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["KeyMaterialId"] == dest_material
    # Onto the same key: re-sealed under its current material.
    out = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=source)
    assert (out["SourceKeyMaterialId"], out["DestinationKeyMaterialId"]) == (first, second)

    # Present only for symmetric keys, as in AWS: an RSA destination has none.
    rsa = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    out = kms.re_encrypt(
        CiphertextBlob=blob,
        DestinationKeyId=rsa,
        DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256",
    )
    assert out["SourceKeyMaterialId"] == first
    assert "DestinationKeyMaterialId" not in out
    out = kms.re_encrypt(
        CiphertextBlob=out["CiphertextBlob"],
        SourceKeyId=rsa,
        SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
        DestinationKeyId=dest,
    )
    assert "SourceKeyMaterialId" not in out
    assert out["DestinationKeyMaterialId"] == dest_material


# --- DeleteImportedKeyMaterial: no material, no ExpirationModel ---
# (tests/e2e/test_import_e2e.py: test_delete_and_reimport_the_same_material and
# test_imported_material_expires check it with the import steps they already have.)


# --- error messages in AWS's words ---


def test_invalid_key_id_is_quoted(kms: Any) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.get_key_policy(KeyId=key)
    assert _error(kms.describe_key, KeyId="not-a-key") == (
        "NotFoundException",
        "Invalid keyId 'not-a-key'",
    )
    # An alias where the operation takes only a key.
    assert _error(kms.get_key_policy, KeyId="alias/some-alias") == (
        "NotFoundException",
        "Invalid keyId 'alias/some-alias'",
    )


def test_failed_checks_answer_with_no_message(kms: Any, raw: RawKMS) -> None:
    """AWS answers an invalid ciphertext, MAC or signature with its code alone:
    one answer for every cause, and nothing about the inputs."""
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"secret", EncryptionContext={"a": "b"})[
        "CiphertextBlob"
    ]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == (
        b"secret"
    )
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    for body in (
        {"CiphertextBlob": base64.b64encode(flipped).decode(), "EncryptionContext": {"a": "b"}},
        {"CiphertextBlob": base64.b64encode(blob).decode(), "EncryptionContext": {"a": "c"}},
        {"CiphertextBlob": base64.b64encode(b"\x01" + bytes(40)).decode()},
    ):
        raw.call("Decrypt", body).assert_aws_error("InvalidCiphertextException", 400, message=False)

    mac_key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    mac = kms.generate_mac(KeyId=mac_key["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
    assert kms.verify_mac(
        KeyId=mac_key["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256", Mac=mac["Mac"]
    )["MacValid"]
    assert _error(
        kms.verify_mac,
        KeyId=mac_key["KeyId"],
        Message=b"other",
        MacAlgorithm="HMAC_SHA_256",
        Mac=mac["Mac"],
    ) == ("KMSInvalidMacException", "")

    signer = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    signed = kms.sign(KeyId=signer["KeyId"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    assert kms.verify(
        KeyId=signer["KeyId"],
        Message=b"m",
        Signature=signed["Signature"],
        SigningAlgorithm="ECDSA_SHA_256",
    )["SignatureValid"]
    assert _error(
        kms.verify,
        KeyId=signer["KeyId"],
        Message=b"other",
        Signature=signed["Signature"],
        SigningAlgorithm="ECDSA_SHA_256",
    ) == ("KMSInvalidSignatureException", "")


# --- members keycask does not know are refused, never ignored ---


def test_unknown_members_are_refused_and_change_nothing(kms: Any, raw: RawKMS) -> None:
    before = _key_count(kms)
    answer = raw.call("CreateKey", {"Description": "x", "FutureMember": True})
    doc = answer.assert_aws_error("ValidationException", 400)
    assert "FutureMember" in doc["message"]
    assert _key_count(kms) == before
    assert raw.call("CreateKey", {"Description": "x"}).status == 200


def test_model_members_keycask_does_not_implement_are_refused(kms: Any, raw: RawKMS) -> None:
    """What a newer model brings before keycask implements it: DryRunModifiers
    would make a DryRun Decrypt skip the ciphertext check. Ignoring it would
    answer a different question than the caller asked."""
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = base64.b64encode(kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]).decode()
    raw.call("Decrypt", {"CiphertextBlob": blob, "DryRun": True}).assert_aws_error(
        "DryRunOperationException", 400
    )
    body = {"CiphertextBlob": blob, "DryRun": True, "DryRunModifiers": ["IGNORE_CIPHERTEXT"]}
    doc = raw.call("Decrypt", body).assert_aws_error("UnsupportedOperationException", 400)
    assert "DryRunModifiers" in doc["message"]
