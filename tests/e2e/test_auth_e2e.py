"""Authentication and authorization, through a real server.

SigV4 failures (unknown key, wrong secret, stale or future time, unsigned or
altered parts) are refused before anything happens; a principal without
permission is denied every operation, naming the action; keys are scoped to a
region and an account.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawclient import RawKMS, b64

from keycask.service.core.operations import OPERATIONS

PLAINTEXT = b"auth e2e plaintext"


def _error(call: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error: dict[str, Any] = caught.value.response["Error"]
    return error


def _own_aliases(kms: Any) -> list[dict[str, Any]]:
    """The account's aliases but the predefined alias/aws/<service> ones
    (listed in every account, as AWS lists them)."""
    pages = kms.get_paginator("list_aliases").paginate()
    aliases = [a for page in pages for a in page["Aliases"]]
    return [a for a in aliases if not a["AliasName"].startswith("alias/aws/")]


def _principal(server: Any, name: str, *extra: str) -> dict[str, str]:
    created: dict[str, str] = json.loads(
        server.cli("principals", "create", name, "--json", *extra).stdout
    )
    return created


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def key(server: Any) -> dict[str, Any]:
    kms = server.client()
    meta = kms.create_key(Description="auth e2e")["KeyMetadata"]
    return {"id": meta["KeyId"], "arn": meta["Arn"], "account": meta["AWSAccountId"]}


# -- SigV4 --


def test_unknown_access_key_is_unrecognized(server: Any, key: dict[str, Any]) -> None:
    for akid in ("AKKC" + "A" * 16, "AKIAIOSFODNN7EXAMPLE", "nobody"):
        client = server.client((akid, secrets.token_urlsafe(30)))
        error = _error(client.describe_key, KeyId=key["id"])
        assert error["Code"] == "UnrecognizedClientException"
        assert _error(client.list_keys)["Code"] == "UnrecognizedClientException"


def test_wrong_secret_is_invalid_signature(server: Any, key: dict[str, Any]) -> None:
    akid, secret = server.credentials()
    for wrong in (secret[:-1] + ("A" if secret[-1] != "A" else "B"), "", secret + "x"):
        client = server.client((akid, wrong))
        error = _error(client.describe_key, KeyId=key["id"])
        assert error["Code"] == "InvalidSignatureException"
    # The right secret, for contrast.
    assert server.client((akid, secret)).describe_key(KeyId=key["id"])["KeyMetadata"]


@pytest.mark.parametrize("minutes", [-6, 6, -60, 24 * 60])
def test_signature_outside_five_minutes_is_refused(
    server: Any, key: dict[str, Any], minutes: int
) -> None:
    raw = RawKMS(server.endpoint, server.credentials())
    when = datetime.now(UTC) + timedelta(minutes=minutes)
    request = raw.prepare("DescribeKey", {"KeyId": key["id"]}, when=when)
    assert request.header("X-Amz-Date") == when.strftime("%Y%m%dT%H%M%SZ")
    doc = raw.send(request).assert_aws_error("InvalidSignatureException", 400)
    assert ("expired" if minutes < 0 else "not yet current") in doc["message"], doc


@pytest.mark.parametrize("minutes", [-4, 4])
def test_signature_within_five_minutes_is_accepted(
    server: Any, key: dict[str, Any], minutes: int
) -> None:
    """The skewed signer itself signs correctly: only the distance matters."""
    raw = RawKMS(server.endpoint, server.credentials())
    when = datetime.now(UTC) + timedelta(minutes=minutes)
    answer = raw.send(raw.prepare("DescribeKey", {"KeyId": key["id"]}, when=when))
    assert answer.status == 200, answer.body
    assert answer.json()["KeyMetadata"]["KeyId"] == key["id"]


def test_unsigned_target_is_refused(server: Any, key: dict[str, Any]) -> None:
    raw = RawKMS(server.endpoint, server.credentials())
    request = raw.prepare("DescribeKey", {"KeyId": key["id"]}, unsigned=["X-Amz-Target"])
    authorization = request.header("Authorization") or ""
    assert "SignedHeaders=" in authorization
    assert "x-amz-target" not in authorization
    doc = raw.send(request).assert_aws_error("IncompleteSignatureException", 400)
    assert "x-amz-target" in doc["message"]


def test_target_changed_after_signing_is_refused(server: Any) -> None:
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    raw = RawKMS(server.endpoint, server.credentials())
    signed = raw.prepare("DescribeKey", {"KeyId": key_id})
    forged = signed.with_header("X-Amz-Target", "TrentService.DisableKey")
    raw.send(forged).assert_aws_error("InvalidSignatureException", 400)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert raw.send(signed).status == 200  # the untouched request is fine


def test_body_changed_after_signing_is_refused(server: Any) -> None:
    kms = server.client()
    key_id = kms.create_key(Description="original")["KeyMetadata"]["KeyId"]
    raw = RawKMS(server.endpoint, server.credentials())
    signed = raw.prepare("UpdateKeyDescription", {"KeyId": key_id, "Description": "signed!"})
    forged = signed.with_body(signed.body.replace(b"signed!", b"forged!"))
    assert forged.body != signed.body and len(forged.body) == len(signed.body)
    raw.send(forged).assert_aws_error("InvalidSignatureException", 400)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "original"
    # Appending a byte is as bad as changing one.
    raw.send(signed.with_body(signed.body + b" ")).assert_aws_error(
        "InvalidSignatureException", 400
    )
    assert raw.send(signed).status == 200
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "signed!"


def test_no_authorization_header_is_missing_token(server: Any, key: dict[str, Any]) -> None:
    raw = RawKMS(server.endpoint, server.credentials())
    unsigned = raw.prepare("DescribeKey", {"KeyId": key["id"]}).without_header("Authorization")
    raw.send(unsigned).assert_aws_error("MissingAuthenticationTokenException", 403)


# -- authorization --


def test_non_admin_is_denied_every_operation(server: Any) -> None:
    kms = server.client()
    meta = kms.create_key(Description="guarded")["KeyMetadata"]
    key_id, key_arn = meta["KeyId"], meta["Arn"]
    alias = f"alias/{_unique('guarded')}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "owner", "TagValue": "admin"}])
    blob = b64(kms.encrypt(KeyId=key_id, Plaintext=PLAINTEXT)["CiphertextBlob"])
    sign_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"][
        "KeyId"
    ]
    mac_id = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"][
        "KeyId"
    ]
    agree_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"][
        "KeyId"
    ]
    peer = kms.get_public_key(KeyId=agree_id)["PublicKey"]
    bob = _principal(server, _unique("bob"))
    # A grant for someone else (the admin), which bob may neither retire nor revoke.
    admin_arn = f"arn:aws:iam::{meta['AWSAccountId']}:root"
    grant_id = kms.create_grant(KeyId=key_id, GranteePrincipal=admin_arn,
                                Operations=["Decrypt"])["GrantId"]  # fmt: skip
    raw = RawKMS(server.endpoint, (bob["AccessKeyId"], bob["SecretAccessKey"]))

    # operation -> (request, the IAM action the denial must name)
    calls: dict[str, tuple[dict[str, Any], str]] = {
        "CreateKey": ({}, "kms:CreateKey"),
        "DescribeKey": ({"KeyId": key_id}, "kms:DescribeKey"),
        "ListKeys": ({}, "kms:ListKeys"),
        "UpdateKeyDescription": ({"KeyId": key_id, "Description": "bob"},
                                 "kms:UpdateKeyDescription"),
        "EnableKey": ({"KeyId": key_id}, "kms:EnableKey"),
        "DisableKey": ({"KeyId": key_id}, "kms:DisableKey"),
        "GetKeyPolicy": ({"KeyId": key_id, "PolicyName": "default"}, "kms:GetKeyPolicy"),
        "PutKeyPolicy": ({"KeyId": key_id, "Policy": kms.get_key_policy(KeyId=key_id)["Policy"]},
                         "kms:PutKeyPolicy"),
        "ListKeyPolicies": ({"KeyId": key_id}, "kms:ListKeyPolicies"),
        "Encrypt": ({"KeyId": key_id, "Plaintext": b64(PLAINTEXT)}, "kms:Encrypt"),
        "Decrypt": ({"CiphertextBlob": blob}, "kms:Decrypt"),
        "ReEncrypt": ({"CiphertextBlob": blob, "DestinationKeyId": key_id}, "kms:ReEncryptFrom"),
        "GenerateDataKey": ({"KeyId": key_id, "KeySpec": "AES_256"}, "kms:GenerateDataKey"),
        "GenerateDataKeyWithoutPlaintext": (
            {"KeyId": key_id, "KeySpec": "AES_256"}, "kms:GenerateDataKeyWithoutPlaintext"
        ),
        "GenerateRandom": ({"NumberOfBytes": 16}, "kms:GenerateRandom"),
        "CreateAlias": ({"AliasName": f"alias/{_unique('bob')}", "TargetKeyId": key_id},
                        "kms:CreateAlias"),
        "UpdateAlias": ({"AliasName": alias, "TargetKeyId": key_id}, "kms:UpdateAlias"),
        "DeleteAlias": ({"AliasName": alias}, "kms:DeleteAlias"),
        "ListAliases": ({}, "kms:ListAliases"),
        "TagResource": ({"KeyId": key_id, "Tags": [{"TagKey": "owner", "TagValue": "bob"}]},
                        "kms:TagResource"),
        "UntagResource": ({"KeyId": key_id, "TagKeys": ["owner"]}, "kms:UntagResource"),
        "ListResourceTags": ({"KeyId": key_id}, "kms:ListResourceTags"),
        "EnableKeyRotation": ({"KeyId": key_id, "RotationPeriodInDays": 90},
                              "kms:EnableKeyRotation"),
        "DisableKeyRotation": ({"KeyId": key_id}, "kms:DisableKeyRotation"),
        "GetKeyRotationStatus": ({"KeyId": key_id}, "kms:GetKeyRotationStatus"),
        "RotateKeyOnDemand": ({"KeyId": key_id}, "kms:RotateKeyOnDemand"),
        "ListKeyRotations": ({"KeyId": key_id}, "kms:ListKeyRotations"),
        "ScheduleKeyDeletion": ({"KeyId": key_id, "PendingWindowInDays": 7},
                                "kms:ScheduleKeyDeletion"),
        "CancelKeyDeletion": ({"KeyId": key_id}, "kms:CancelKeyDeletion"),
        "GetKeyLastUsage": ({"KeyId": key_id}, "kms:GetKeyLastUsage"),
        "GetParametersForImport": ({"KeyId": key_id, "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
                                    "WrappingKeySpec": "RSA_2048"}, "kms:GetParametersForImport"),
        "ImportKeyMaterial": ({"KeyId": key_id, "ImportToken": b64(b"x" * 33),
                               "EncryptedKeyMaterial": b64(b"y" * 256),
                               "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"},
                              "kms:ImportKeyMaterial"),
        "DeleteImportedKeyMaterial": ({"KeyId": key_id}, "kms:DeleteImportedKeyMaterial"),
        "Sign": ({"KeyId": sign_id, "Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256"},
                 "kms:Sign"),
        "Verify": ({"KeyId": sign_id, "Message": b64(b"m"), "Signature": b64(b"s" * 64),
                    "SigningAlgorithm": "ECDSA_SHA_256"}, "kms:Verify"),
        "GetPublicKey": ({"KeyId": sign_id}, "kms:GetPublicKey"),
        "GenerateMac": ({"KeyId": mac_id, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256"},
                        "kms:GenerateMac"),
        "VerifyMac": ({"KeyId": mac_id, "Message": b64(b"m"), "Mac": b64(b"x" * 32),
                       "MacAlgorithm": "HMAC_SHA_256"}, "kms:VerifyMac"),
        "DeriveSharedSecret": ({"KeyId": agree_id, "KeyAgreementAlgorithm": "ECDH",
                                "PublicKey": b64(peer)}, "kms:DeriveSharedSecret"),
        "GenerateDataKeyPair": ({"KeyId": key_id, "KeyPairSpec": "ECC_NIST_P256"},
                                "kms:GenerateDataKeyPair"),
        "GenerateDataKeyPairWithoutPlaintext": (
            {"KeyId": key_id, "KeyPairSpec": "ECC_NIST_P256"},
            "kms:GenerateDataKeyPairWithoutPlaintext",
        ),
        "CreateGrant": ({"KeyId": key_id, "GranteePrincipal": bob["Arn"],
                         "Operations": ["Decrypt"]}, "kms:CreateGrant"),
        "ListGrants": ({"KeyId": key_id}, "kms:ListGrants"),
        "ListRetirableGrants": ({"RetiringPrincipal": bob["Arn"]}, "kms:ListRetirableGrants"),
        "RetireGrant": ({"KeyId": key_arn, "GrantId": grant_id}, "kms:RetireGrant"),
        "RevokeGrant": ({"KeyId": key_id, "GrantId": grant_id}, "kms:RevokeGrant"),
        # Authorized before the key's kind is looked at: a single-Region key
        # answers AccessDenied too.
        "ReplicateKey": ({"KeyId": key_id, "ReplicaRegion": "us-west-2"}, "kms:ReplicateKey"),
        "UpdatePrimaryRegion": ({"KeyId": key_id, "PrimaryRegion": "us-west-2"},
                                "kms:UpdatePrimaryRegion"),
        # Authorized before the key's usage is looked at, as every use.
        "CreateCustomKeyStore": ({"CustomKeyStoreName": "bob", "CloudHsmClusterId":
                                  "cluster-keycaskhsm234", "TrustAnchorCertificate": "x",
                                  "KeyStorePassword": "password"}, "kms:CreateCustomKeyStore"),
        "DescribeCustomKeyStores": ({}, "kms:DescribeCustomKeyStores"),
        "UpdateCustomKeyStore": ({"CustomKeyStoreId": "cks-1234567890abcdef0",
                                  "NewCustomKeyStoreName": "bob"}, "kms:UpdateCustomKeyStore"),
        "ConnectCustomKeyStore": ({"CustomKeyStoreId": "cks-1234567890abcdef0"},
                                  "kms:ConnectCustomKeyStore"),
        "DisconnectCustomKeyStore": ({"CustomKeyStoreId": "cks-1234567890abcdef0"},
                                     "kms:DisconnectCustomKeyStore"),
        "DeleteCustomKeyStore": ({"CustomKeyStoreId": "cks-1234567890abcdef0"},
                                 "kms:DeleteCustomKeyStore"),
        "Encapsulate": ({"KeyId": key_id, "EncapsulationAlgorithm": "ML_KEM"},
                        "kms:Encapsulate"),
        "Decapsulate": ({"KeyId": key_id, "EncapsulationAlgorithm": "ML_KEM",
                         "SharedSecretCiphertextBlob": "AAAA"}, "kms:Decapsulate"),
    }  # fmt: skip
    assert calls.keys() == OPERATIONS.keys(), "every operation keycask serves is covered"

    for operation, (body, action) in calls.items():
        answer = raw.call(operation, body)
        doc = answer.assert_aws_error("AccessDeniedException", 400)
        assert action in doc["message"], (operation, doc["message"])
        assert bob["Arn"] in doc["message"], (operation, doc["message"])
        assert b64(PLAINTEXT).encode() not in answer.body and PLAINTEXT not in answer.body

    # Nothing bob tried had any effect.
    after = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert after["KeyState"] == "Enabled"
    assert "DeletionDate" not in after
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is False
    assert kms.list_key_rotations(KeyId=key_id)["Rotations"] == []
    assert after["Description"] == "guarded"
    assert [g["GrantId"] for g in kms.list_grants(KeyId=key_id)["Grants"]] == [grant_id]
    aliases = {a["AliasName"]: a for a in kms.list_aliases(KeyId=key_id)["Aliases"]}
    assert set(aliases) == {alias}
    tags = kms.list_resource_tags(KeyId=key_id)["Tags"]
    assert tags == [{"TagKey": "owner", "TagValue": "admin"}]
    assert kms.decrypt(CiphertextBlob=base64.b64decode(blob))["KeyId"] == key_arn


def test_key_is_not_found_from_another_region(server: Any, key: dict[str, Any]) -> None:
    east = server.client(region="us-east-1")
    west = server.client(region="us-west-2")
    blob = east.encrypt(KeyId=key["id"], Plaintext=PLAINTEXT)["CiphertextBlob"]
    assert east.describe_key(KeyId=key["id"])["KeyMetadata"]["Arn"] == key["arn"]
    for ref in (key["id"], key["arn"]):
        assert _error(west.describe_key, KeyId=ref)["Code"] == "NotFoundException"
        error = _error(west.encrypt, KeyId=ref, Plaintext=PLAINTEXT)
        assert error["Code"] == "NotFoundException"
    # AWS: "The ciphertext refers to a customer master key that does not exist, does not
    # exist in this region, or you are not allowed to access."
    assert _error(west.decrypt, CiphertextBlob=blob)["Code"] == "AccessDeniedException"
    listed = [k["KeyId"] for p in west.get_paginator("list_keys").paginate() for k in p["Keys"]]
    assert key["id"] not in listed
    # Keys made in us-west-2 are listed there and not in us-east-1.
    west_key = west.create_key()["KeyMetadata"]
    assert west_key["Arn"].startswith("arn:aws:kms:us-west-2:")
    east_listed = [
        k["KeyId"] for p in east.get_paginator("list_keys").paginate() for k in p["Keys"]
    ]
    assert west_key["KeyId"] not in east_listed
    assert key["id"] in east_listed


def test_other_account_cannot_see_or_use_keys(fresh_server: Any) -> None:
    server = fresh_server
    mine = server.client()
    meta = mine.create_key(Description="account one")["KeyMetadata"]
    key_id, key_arn, account = meta["KeyId"], meta["Arn"], meta["AWSAccountId"]
    alias = "alias/shared-name"
    mine.create_alias(AliasName=alias, TargetKeyId=key_id)
    blob = mine.encrypt(KeyId=key_id, Plaintext=PLAINTEXT)["CiphertextBlob"]

    other_account = "111111111111"
    assert other_account != account
    other_creds = _principal(server, "other", "--admin", "--account", other_account, "--offline")
    assert other_creds["Arn"] == f"arn:aws:iam::{other_account}:user/other"
    other = server.client((other_creds["AccessKeyId"], other_creds["SecretAccessKey"]))

    # By id (or alias): it is not in the other account, so it does not exist.
    assert _error(other.describe_key, KeyId=key_id)["Code"] == "NotFoundException"
    assert _error(other.encrypt, KeyId=key_id, Plaintext=PLAINTEXT)["Code"] == "NotFoundException"
    assert _error(other.describe_key, KeyId=alias)["Code"] == "NotFoundException"
    assert _error(other.disable_key, KeyId=key_id)["Code"] == "NotFoundException"
    # Aliases never cross accounts, even by ARN: NotFound, so names cannot be probed.
    alias_arn = key_arn.split(":key/")[0] + ":" + alias
    for ref in (alias_arn, alias_arn.replace("shared-name", "no-such-alias")):
        error = _error(other.encrypt, KeyId=ref, Plaintext=PLAINTEXT)
        assert error["Code"] == "NotFoundException", error
        assert key_id not in error["Message"]
    # By ARN: the key exists in another account, whose policy does not let it in.
    for call, kwargs in (
        (other.describe_key, {"KeyId": key_arn}),
        (other.encrypt, {"KeyId": key_arn, "Plaintext": PLAINTEXT}),
        (other.generate_data_key, {"KeyId": key_arn, "KeySpec": "AES_256"}),
        (other.disable_key, {"KeyId": key_arn}),
        (other.decrypt, {"CiphertextBlob": blob}),
        (other.decrypt, {"CiphertextBlob": blob, "KeyId": key_arn}),
    ):
        error = _error(call, **kwargs)
        assert error["Code"] == "AccessDeniedException", (call, error)
        assert other_creds["Arn"] in error["Message"]
    # Nor can it point an alias of its own at the key.
    error = _error(other.create_alias, AliasName="alias/stolen", TargetKeyId=key_arn)
    assert error["Code"] in ("NotFoundException", "AccessDeniedException"), error

    # Its lists hold only its own.
    assert other.list_keys()["Keys"] == []
    assert _own_aliases(other) == []
    own = other.create_key(Description="account two")["KeyMetadata"]
    assert own["AWSAccountId"] == other_account
    other.create_alias(AliasName=alias, TargetKeyId=own["KeyId"])  # same name, its own account
    assert [k["KeyId"] for k in other.list_keys()["Keys"]] == [own["KeyId"]]
    assert [(a["AliasName"], a["TargetKeyId"]) for a in _own_aliases(other)] == [
        (alias, own["KeyId"])
    ]

    # And the first account is untouched, and cannot see the second's key either.
    assert mine.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert mine.decrypt(CiphertextBlob=blob)["Plaintext"] == PLAINTEXT
    assert [k["KeyId"] for k in mine.list_keys()["Keys"]] == [key_id]
    assert [(a["AliasName"], a["TargetKeyId"]) for a in _own_aliases(mine)] == [(alias, key_id)]
    assert _error(mine.describe_key, KeyId=own["KeyId"])["Code"] == "NotFoundException"
    assert _error(mine.describe_key, KeyId=own["Arn"])["Code"] == "AccessDeniedException"
