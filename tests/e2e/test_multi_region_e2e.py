"""Multi-Region keys as one region sees them (issue 22): CreateKey with
MultiRegion, how the key is named and described, and its ciphertexts.
Replication and the rest of a set's lifecycle are in the lifecycle tests."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.conftest import Server

from keycask.keys.ids import parse_mrk, record_id

MRK = re.compile(r"mrk-[0-9a-f]{32}")


def _code(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return str(caught.value.response["Error"]["Code"])


def _listed(kms: Any) -> list[str]:
    pages = kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2})
    return [k["KeyId"] for page in pages for k in page["Keys"]]


@pytest.mark.parametrize(
    ("spec", "usage"),
    [
        ("SYMMETRIC_DEFAULT", None),
        ("ECC_NIST_P256", "SIGN_VERIFY"),
        ("RSA_2048", "ENCRYPT_DECRYPT"),
        ("HMAC_256", "GENERATE_VERIFY_MAC"),
    ],
)
def test_create_key_multi_region_is_a_primary_of_one(
    kms: Any, spec: str, usage: str | None
) -> None:
    args: dict[str, Any] = {"MultiRegion": True, "KeySpec": spec, "Description": "mrk"}
    if usage is not None:
        args["KeyUsage"] = usage
    made = kms.create_key(**args)["KeyMetadata"]
    assert MRK.fullmatch(made["KeyId"]), made["KeyId"]
    assert made["Arn"] == f"arn:aws:kms:us-east-1:{made['AWSAccountId']}:key/{made['KeyId']}"
    assert made["MultiRegion"] is True
    assert made["MultiRegionConfiguration"] == {
        "MultiRegionKeyType": "PRIMARY",
        "PrimaryKey": {"Arn": made["Arn"], "Region": "us-east-1"},
        "ReplicaKeys": [],
    }
    described = kms.describe_key(KeyId=made["KeyId"])["KeyMetadata"]
    assert described["KeyId"] == made["KeyId"]
    assert described["MultiRegionConfiguration"] == made["MultiRegionConfiguration"]
    assert kms.describe_key(KeyId=made["Arn"])["KeyMetadata"]["Arn"] == made["Arn"]
    assert made["KeyId"] in _listed(kms)


def test_single_region_keys_are_unchanged(kms: Any) -> None:
    made = kms.create_key(MultiRegion=False)["KeyMetadata"]
    assert made["MultiRegion"] is False
    assert "MultiRegionConfiguration" not in made
    uuid.UUID(made["KeyId"])


def test_multi_region_with_imported_material_is_refused(kms: Any) -> None:
    with pytest.raises(ClientError) as caught:
        kms.create_key(MultiRegion=True, Origin="EXTERNAL")
    assert _code(caught) == "UnsupportedOperationException"


def test_ciphertext_round_trip_and_format(kms: Any) -> None:
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]
    sealed = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"hello", EncryptionContext={"a": "b"})
    assert sealed["KeyId"] == key["Arn"]
    blob = sealed["CiphertextBlob"]
    # Format v2 names the set, not a region's copy.
    assert blob[0] == 2
    mrk = parse_mrk(key["KeyId"])
    assert mrk is not None and blob[1:17] == mrk
    opened = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert opened["Plaintext"] == b"hello"
    assert opened["KeyId"] == key["Arn"]
    assert (
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"}, KeyId=key["Arn"])[
            "Plaintext"
        ]
        == b"hello"
    )
    with pytest.raises(ClientError) as caught:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "c"})
    assert _code(caught) == "InvalidCiphertextException"
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as caught:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"}, KeyId=other)
    assert _code(caught) == "IncorrectKeyException"
    data = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
    assert kms.decrypt(CiphertextBlob=data["CiphertextBlob"])["Plaintext"] == data["Plaintext"]
    # ReEncrypt between a single-Region key and a multi-Region one, both ways.
    moved = kms.re_encrypt(CiphertextBlob=data["CiphertextBlob"], DestinationKeyId=other)[
        "CiphertextBlob"
    ]
    back = kms.re_encrypt(CiphertextBlob=moved, DestinationKeyId=key["KeyId"])
    assert back["KeyId"] == key["Arn"] and back["CiphertextBlob"][0] == 2
    assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"] == data["Plaintext"]


def test_another_region_without_a_copy_answers_access_denied(server: Server, kms: Any) -> None:
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    west = server.client(region="us-west-2")
    with pytest.raises(ClientError) as caught:
        west.decrypt(CiphertextBlob=blob)
    # As AWS: a key that exists elsewhere, not garbage.
    assert _code(caught) == "AccessDeniedException"
    with pytest.raises(ClientError) as caught:
        west.describe_key(KeyId=key["KeyId"])
    assert _code(caught) == "NotFoundException"
    assert key["KeyId"] in str(caught.value)
    with pytest.raises(ClientError) as caught:
        west.describe_key(KeyId=key["Arn"])
    assert _code(caught) == "NotFoundException"


def test_v2_blob_of_no_set_is_invalid_ciphertext(kms: Any) -> None:
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]
    blob = bytearray(kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"])
    blob[1] ^= 0xFF  # another set's id, one that never existed
    with pytest.raises(ClientError) as caught:
        kms.decrypt(CiphertextBlob=bytes(blob))
    assert _code(caught) == "InvalidCiphertextException"


def test_record_ids_never_resolve(kms: Any) -> None:
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]
    mrk = parse_mrk(key["KeyId"])
    assert mrk is not None
    hidden = str(record_id(mrk, "us-east-1"))
    for ref in (hidden, key["Arn"].replace(key["KeyId"], hidden)):
        with pytest.raises(ClientError) as caught:
            kms.describe_key(KeyId=ref)
        assert _code(caught) == "NotFoundException"
    with pytest.raises(ClientError) as caught:
        kms.describe_key(KeyId=key["KeyId"].upper().replace("MRK-", "mrk-"))
    assert _code(caught) == "NotFoundException"
    assert hidden not in _listed(kms)


def test_aliases_show_the_public_id(kms: Any) -> None:
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]
    name = "alias/mrk-" + uuid.uuid4().hex[:8]
    kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    found = [a for a in kms.list_aliases(KeyId=key["KeyId"])["Aliases"]]
    assert [(a["AliasName"], a["TargetKeyId"]) for a in found] == [(name, key["KeyId"])]
    assert kms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == key["KeyId"]
    blob = kms.encrypt(KeyId=name, Plaintext=b"x")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["KeyId"] == key["Arn"]
    kms.update_alias(
        AliasName=name, TargetKeyId=kms.create_key(MultiRegion=True)["KeyMetadata"]["Arn"]
    )


def test_asymmetric_and_hmac_multi_region_keys_work(kms: Any) -> None:
    signer = kms.create_key(MultiRegion=True, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    key_id = signer["KeyMetadata"]["KeyId"]
    sig = kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    assert sig["KeyId"] == signer["KeyMetadata"]["Arn"]
    assert kms.verify(
        KeyId=key_id, Message=b"m", Signature=sig["Signature"], SigningAlgorithm="ECDSA_SHA_256"
    )["SignatureValid"]
    assert kms.get_public_key(KeyId=key_id)["KeyId"] == signer["KeyMetadata"]["Arn"]
    mac_key = kms.create_key(MultiRegion=True, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    mac_id = mac_key["KeyMetadata"]["KeyId"]
    mac = kms.generate_mac(KeyId=mac_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert kms.verify_mac(KeyId=mac_id, Message=b"m", Mac=mac, MacAlgorithm="HMAC_SHA_256")[
        "MacValid"
    ]
    rsa = kms.create_key(MultiRegion=True, KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")
    rsa_id = rsa["KeyMetadata"]["KeyId"]
    ct = kms.encrypt(KeyId=rsa_id, Plaintext=b"p", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    out = kms.decrypt(
        KeyId=rsa_id, CiphertextBlob=ct["CiphertextBlob"], EncryptionAlgorithm="RSAES_OAEP_SHA_256"
    )
    assert out["Plaintext"] == b"p" and out["KeyId"] == rsa["KeyMetadata"]["Arn"]


def test_multi_region_condition_keys(kms: Any) -> None:
    account = kms.create_key()["KeyMetadata"]["AWSAccountId"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "kms:Encrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:MultiRegionKeyType": "PRIMARY"}},
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "kms:GenerateDataKeyWithoutPlaintext",
                "Resource": "*",
                "Condition": {"Bool": {"kms:MultiRegion": "true"}},
            },
        ],
    }

    text = json.dumps(policy)
    mrk = kms.create_key(MultiRegion=True, Policy=text)["KeyMetadata"]["KeyId"]
    single = kms.create_key(Policy=text)["KeyMetadata"]["KeyId"]
    for denied in (
        lambda: kms.encrypt(KeyId=mrk, Plaintext=b"x"),
        lambda: kms.generate_data_key_without_plaintext(KeyId=mrk, KeySpec="AES_256"),
    ):
        with pytest.raises(ClientError) as caught:
            denied()
        assert _code(caught) == "AccessDeniedException"
    kms.generate_data_key(KeyId=mrk, KeySpec="AES_256")
    kms.encrypt(KeyId=single, Plaintext=b"x")
    kms.generate_data_key_without_plaintext(KeyId=single, KeySpec="AES_256")
