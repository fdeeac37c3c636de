"""Grants, through a real server: CreateGrant, ListGrants, ListRetirableGrants,
RetireGrant, RevokeGrant, grant tokens, constraints, and what a grant lets
its grantee do.

The grantees are principals without identity policies: whatever they can do
on a key, a grant let them. Grants are strongly consistent in keycask, so a
grant works (and a retired or revoked one stops working) on the very next
request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import DAY, Server
from keycask import config
from keycask.app import open_store
from keycask.errors import InvalidGrantTokenException
from keycask.keys.keystore import KeyStore
from keycask.service.core.authz import Authorizer

PLAINTEXT = b"grants e2e"


def _error(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    error = caught.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def _code(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    return _error(call, *args, **kwargs)[0]


class Principal:
    def __init__(self, server: Server, prefix: str) -> None:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        created = json.loads(server.cli("principals", "create", name, "--json").stdout)
        self.arn: str = created["Arn"]
        self.kms = server.client((created["AccessKeyId"], created["SecretAccessKey"]))


@pytest.fixture(scope="module")
def admin(server: Server) -> Any:
    return server.client()


# Shared grantees (made by the CLI, which takes a moment each). Every test
# uses keys of its own; tests that list grants by retiring principal make
# principals of their own.
@pytest.fixture(scope="module")
def bob(server: Server) -> Principal:
    return Principal(server, "bob")


@pytest.fixture(scope="module")
def carol(server: Server) -> Principal:
    return Principal(server, "carol")


def _key(admin: Any, **kwargs: Any) -> dict[str, str]:
    meta = admin.create_key(Description="grants e2e", **kwargs)["KeyMetadata"]
    return {"id": meta["KeyId"], "arn": meta["Arn"], "account": meta["AWSAccountId"]}


def _grant(admin: Any, key: dict[str, str], grantee: str, *ops: str, **kwargs: Any) -> Any:
    return admin.create_grant(KeyId=key["id"], GranteePrincipal=grantee, Operations=list(ops),
                              **kwargs)  # fmt: skip


def _list(admin: Any, key: dict[str, str], **kwargs: Any) -> list[dict[str, Any]]:
    grants: list[dict[str, Any]] = admin.list_grants(KeyId=key["id"], **kwargs)["Grants"]
    return grants


# -- what a grant allows --


def test_a_decrypt_grant_lets_the_grantee_decrypt_and_nothing_else(
    server: Server, admin: Any, bob: Principal, carol: Principal
) -> None:
    key = _key(admin)
    blob = admin.encrypt(KeyId=key["id"], Plaintext=PLAINTEXT)["CiphertextBlob"]
    assert _code(bob.kms.decrypt, CiphertextBlob=blob) == "AccessDeniedException"

    grant = _grant(admin, key, bob.arn, "Decrypt")
    assert len(grant["GrantId"]) == 64 and int(grant["GrantId"], 16) >= 0
    assert bob.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == PLAINTEXT
    code, message = _error(bob.kms.encrypt, KeyId=key["id"], Plaintext=b"x")
    assert code == "AccessDeniedException" and "kms:Encrypt" in message
    assert _code(bob.kms.describe_key, KeyId=key["id"]) == "AccessDeniedException"
    assert _code(bob.kms.list_grants, KeyId=key["id"]) == "AccessDeniedException"
    # Only bob: another principal gets nothing from bob's grant.
    assert _code(carol.kms.decrypt, CiphertextBlob=blob) == "AccessDeniedException"


def test_a_grant_works_at_once_with_its_token(server: Server, admin: Any, bob: Principal) -> None:
    key = _key(admin)
    grant = _grant(admin, key, bob.arn, "Encrypt", "Decrypt", "GenerateDataKey")
    token = grant["GrantToken"]
    # Straight after CreateGrant, before anything lists the grant.
    blob = bob.kms.encrypt(KeyId=key["id"], Plaintext=PLAINTEXT, GrantTokens=[token])
    assert (
        bob.kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], GrantTokens=[token])["Plaintext"]
        == PLAINTEXT
    )
    data_key = bob.kms.generate_data_key(KeyId=key["arn"], KeySpec="AES_256", GrantTokens=[token])
    assert len(data_key["Plaintext"]) == 32
    # A token is a single opaque string naming its key and grant.
    padded = token + "=" * (-len(token) % 4)
    raw = base64.urlsafe_b64decode(padded)
    assert uuid.UUID(bytes=raw[1:17]) == uuid.UUID(key["id"])
    assert raw[17:49].hex() == grant["GrantId"]


def test_grant_tokens_must_be_valid(server: Server, admin: Any, bob: Principal) -> None:
    key = _key(admin)
    grant = _grant(admin, key, bob.arn, "Encrypt")
    token = grant["GrantToken"]
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for bad in ("not-a-token", "x" * 8192, token[:-4], "A" * len(token), forged):
        for client in (admin, bob.kms):
            code = _code(client.encrypt, KeyId=key["id"], Plaintext=b"x", GrantTokens=[bad])
            assert code == "InvalidGrantTokenException", bad
    # One bad token among good ones is still refused.
    assert _code(admin.encrypt, KeyId=key["id"], Plaintext=b"x",
                 GrantTokens=[token, "bad"]) == "InvalidGrantTokenException"  # fmt: skip
    assert _code(admin.retire_grant, GrantToken="garbage") == "InvalidGrantTokenException"
    assert _code(admin.retire_grant, GrantToken=forged) == "InvalidGrantTokenException"
    # A valid token of a grant on another key changes nothing here.
    other = _key(admin)
    assert admin.encrypt(KeyId=other["id"], Plaintext=b"x", GrantTokens=[token])["KeyId"]
    assert _code(bob.kms.encrypt, KeyId=other["id"], Plaintext=b"x",
                 GrantTokens=[token]) == "AccessDeniedException"  # fmt: skip


def test_encryption_context_equals(server: Server, admin: Any, bob: Principal) -> None:
    key = _key(admin)
    _grant(admin, key, bob.arn, "Encrypt", "Decrypt",
           Constraints={"EncryptionContextEquals": {"Dept": "Finance", "Level": "2"}})  # fmt: skip

    def encrypts(context: dict[str, str] | None) -> bool:
        kwargs = {} if context is None else {"EncryptionContext": context}
        try:
            blob = bob.kms.encrypt(KeyId=key["id"], Plaintext=PLAINTEXT, **kwargs)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "AccessDeniedException"
            return False
        plain = bob.kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], **kwargs)["Plaintext"]
        assert plain == PLAINTEXT
        return True

    assert encrypts({"Dept": "Finance", "Level": "2"})
    assert encrypts({"Level": "2", "Dept": "Finance"})
    # AWS: in a grant constraint, keys compare without case; values exactly.
    assert encrypts({"dept": "Finance", "LEVEL": "2"})
    assert not encrypts({"Dept": "finance", "Level": "2"})
    assert not encrypts({"Dept": "Finance", "Level": "2", "Extra": "x"})
    assert not encrypts({"Dept": "Finance"})
    assert not encrypts({})
    assert not encrypts(None)
    # Keys that differ only by case never equal a constraint; since issue 13
    # (finding 8) such a context is not accepted for a new ciphertext at all.
    assert _code(bob.kms.encrypt, KeyId=key["id"], Plaintext=PLAINTEXT,
                 EncryptionContext={"Dept": "Finance", "dept": "Finance", "Level": "2"}
                 ) == "ValidationException"  # fmt: skip


def test_encryption_context_subset(server: Server, admin: Any, bob: Principal) -> None:
    key = _key(admin)
    _grant(admin, key, bob.arn, "Encrypt", "GenerateDataKey", "DescribeKey",
           Constraints={"EncryptionContextSubset": {"Dept": "Finance"}})  # fmt: skip

    def allowed(context: dict[str, str] | None) -> bool:
        kwargs = {} if context is None else {"EncryptionContext": context}
        try:
            bob.kms.generate_data_key(KeyId=key["id"], KeySpec="AES_256", **kwargs)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "AccessDeniedException"
            return False
        return True

    assert allowed({"Dept": "Finance"})
    assert allowed({"Dept": "Finance", "Project": "x", "Other": "y"})
    assert allowed({"DEPT": "Finance"})
    assert not allowed({"Dept": "FINANCE"})
    assert not allowed({"Department": "Finance"})
    assert not allowed({"Project": "x"})
    assert not allowed(None)
    # The constraint does not apply to operations without an encryption context.
    assert bob.kms.describe_key(KeyId=key["id"])["KeyMetadata"]["KeyId"] == key["id"]


def test_constraints_are_listed_and_validated(admin: Any, server: Server, bob: Principal) -> None:
    key = _key(admin)
    both = {"EncryptionContextEquals": {"a": "1"}, "EncryptionContextSubset": {"a": "1"}}
    nine = {"EncryptionContextSubset": {f"k{i}": "v" for i in range(9)}}
    long = {"EncryptionContextSubset": {"k": "v" * 385}}
    cased = {"EncryptionContextSubset": {"k": "1", "K": "2"}}
    for bad in (both, nine, long, cased):
        assert _code(_grant, admin, key, bob.arn, "Encrypt", Constraints=bad) == (
            "ValidationException"
        ), bad
    source = {"SourceArn": "arn:aws:ec2:us-east-1:111122223333:volume/vol-1"}
    code = _code(_grant, admin, key, bob.arn, "Encrypt", Constraints=source)
    assert code == "UnsupportedOperationException"
    longest = {"EncryptionContextSubset": {"k": "v" * 384}}
    grant_id = _grant(admin, key, bob.arn, "Encrypt", Constraints=longest)["GrantId"]
    (entry,) = _list(admin, key, GrantId=grant_id)
    assert entry["Constraints"] == {"EncryptionContextSubset": {"k": "v" * 384}}


# -- retiring and revoking --


def test_retire_by_token_by_id_and_revoke_take_effect_at_once(
    server: Server, admin: Any, carol: Principal
) -> None:
    key = _key(admin)
    blob = admin.encrypt(KeyId=key["id"], Plaintext=PLAINTEXT)["CiphertextBlob"]
    bob = Principal(server, "bob")

    # By token: bob is the retiring principal.
    grant = _grant(admin, key, bob.arn, "Decrypt", RetiringPrincipal=bob.arn)
    assert bob.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == PLAINTEXT
    bob.kms.retire_grant(GrantToken=grant["GrantToken"])
    assert _code(bob.kms.decrypt, CiphertextBlob=blob) == "AccessDeniedException"
    assert _code(bob.kms.retire_grant, GrantToken=grant["GrantToken"]) == "NotFoundException"
    # Its retiring index entry went with it.
    assert admin.list_retirable_grants(RetiringPrincipal=bob.arn)["Grants"] == []

    # By key and grant id: the grantee may retire a grant that allows RetireGrant.
    grant = _grant(admin, key, bob.arn, "Decrypt", "RetireGrant")
    assert bob.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == PLAINTEXT
    bob.kms.retire_grant(KeyId=key["arn"], GrantId=grant["GrantId"])
    assert _code(bob.kms.decrypt, CiphertextBlob=blob) == "AccessDeniedException"

    # Without RetireGrant, and not the retiring principal, the grantee may not;
    # neither may a stranger. The account that issued it may.
    grant = _grant(admin, key, bob.arn, "Decrypt")
    for who in (bob, carol):
        code, message = _error(who.kms.retire_grant, KeyId=key["arn"], GrantId=grant["GrantId"])
        assert code == "AccessDeniedException" and "kms:RetireGrant" in message
    assert bob.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == PLAINTEXT
    admin.retire_grant(KeyId=key["id"], GrantId=grant["GrantId"])
    assert _code(bob.kms.decrypt, CiphertextBlob=blob) == "AccessDeniedException"

    # Revoked by the key's administrator.
    grant = _grant(admin, key, bob.arn, "Decrypt")
    assert bob.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == PLAINTEXT
    code, message = _error(bob.kms.revoke_grant, KeyId=key["id"], GrantId=grant["GrantId"])
    assert code == "AccessDeniedException" and "kms:RevokeGrant" in message
    admin.revoke_grant(KeyId=key["id"], GrantId=grant["GrantId"])
    assert _code(bob.kms.decrypt, CiphertextBlob=blob) == "AccessDeniedException"
    assert _list(admin, key) == []

    # Gone is gone; a grant id that is not one is refused as such.
    missing = "0" * 64
    assert _code(admin.revoke_grant, KeyId=key["id"], GrantId=grant["GrantId"]) == (
        "NotFoundException"
    )
    assert _code(admin.retire_grant, KeyId=key["id"], GrantId=missing) == "NotFoundException"
    assert _code(admin.revoke_grant, KeyId=key["id"], GrantId="nope") == "InvalidGrantIdException"
    assert _code(admin.retire_grant, GrantId=missing) == "ValidationException"


def test_dry_run(server: Server, admin: Any, bob: Principal) -> None:
    key = _key(admin)
    code = _code(_grant, admin, key, bob.arn, "Decrypt", DryRun=True)
    assert code == "DryRunOperationException"
    assert _list(admin, key) == []
    # A dry run that would fail says why instead.
    assert _code(_grant, admin, key, bob.arn, "Sign", DryRun=True) == "ValidationException"
    assert _code(_grant, bob.kms, key, bob.arn, "Decrypt", DryRun=True) == "AccessDeniedException"
    grant = _grant(admin, key, bob.arn, "Decrypt", RetiringPrincipal=bob.arn)
    code = _code(bob.kms.retire_grant, GrantToken=grant["GrantToken"], DryRun=True)
    assert code == "DryRunOperationException"
    code = _code(admin.revoke_grant, KeyId=key["id"], GrantId=grant["GrantId"], DryRun=True)
    assert code == "DryRunOperationException"
    assert [g["GrantId"] for g in _list(admin, key)] == [grant["GrantId"]]


# -- CreateGrant's rules --


def test_name_makes_create_grant_idempotent(server: Server, admin: Any, bob: Principal) -> None:
    key = _key(admin)
    first = _grant(admin, key, bob.arn, "Encrypt", "Decrypt", Name="my-grant")
    again = _grant(admin, key, bob.arn, "Decrypt", "Encrypt", Name="my-grant")
    assert again["GrantId"] == first["GrantId"]
    assert again["GrantToken"] != first["GrantToken"]
    for token in (first["GrantToken"], again["GrantToken"]):
        assert bob.kms.encrypt(KeyId=key["id"], Plaintext=b"x", GrantTokens=[token])
    # Other parameters, or no name: a new grant.
    other = _grant(admin, key, bob.arn, "Encrypt", Name="my-grant")
    unnamed = _grant(admin, key, bob.arn, "Encrypt", "Decrypt")
    ids = {first["GrantId"], other["GrantId"], unnamed["GrantId"]}
    assert len(ids) == 3
    assert {g["GrantId"] for g in _list(admin, key)} == ids
    (entry,) = _list(admin, key, GrantId=first["GrantId"])
    assert entry["Name"] == "my-grant"
    # Either token retires it.
    admin.retire_grant(GrantToken=first["GrantToken"])
    assert _code(admin.retire_grant, GrantToken=again["GrantToken"]) == "NotFoundException"


def test_operations_must_suit_the_key(server: Server, admin: Any, bob: Principal) -> None:
    symmetric = _key(admin)
    signing = _key(admin, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    hmac = _key(admin, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    agreement = _key(admin, KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")
    wrong = [
        (symmetric, "Sign"), (symmetric, "GetPublicKey"), (symmetric, "GenerateMac"),
        (signing, "Decrypt"), (signing, "GenerateDataKey"), (signing, "VerifyMac"),
        (hmac, "GetPublicKey"), (hmac, "Encrypt"), (agreement, "Sign"),
        (symmetric, "Encapsulate"),
    ]  # fmt: skip
    for key, operation in wrong:
        code, message = _error(_grant, admin, key, bob.arn, operation)
        assert code == "ValidationException", (key, operation)
        assert operation in message
    right = [
        (symmetric, ["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
                     "GenerateDataKeyWithoutPlaintext", "GenerateDataKeyPair",
                     "GenerateDataKeyPairWithoutPlaintext", "CreateGrant", "RetireGrant",
                     "DescribeKey"]),
        (signing, ["Sign", "Verify", "GetPublicKey", "DescribeKey"]),
        (hmac, ["GenerateMac", "VerifyMac", "RetireGrant"]),
        (agreement, ["DeriveSharedSecret", "GetPublicKey", "CreateGrant"]),
    ]  # fmt: skip
    for key, operations in right:
        _grant(admin, key, bob.arn, *operations)
    # The grant on the signing key works.
    signature = bob.kms.sign(KeyId=signing["id"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    assert signature["Signature"]
    # Constraints only where an encryption context is taken.
    subset = {"EncryptionContextSubset": {"a": "b"}}
    code = _code(_grant, admin, signing, bob.arn, "Sign", Constraints=subset)
    assert code == "ValidationException"
    _grant(admin, signing, bob.arn, "DescribeKey", Constraints=subset)
    # Grantees and retiring principals are principal ARNs.
    for principal in ("bob", "arn:aws:kms:us-east-1:111122223333:key/x", "111122223333",
                      "arn:aws:iam::1:user/x", "arn:aws:iam::111122223333:group/x"):  # fmt: skip
        assert _code(_grant, admin, symmetric, principal, "Encrypt") == "ValidationException"
        code = _code(_grant, admin, symmetric, bob.arn, "Encrypt", RetiringPrincipal=principal)
        assert code == "ValidationException"
    for principal in ("arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:role/r",
                      "arn:aws:sts::111122223333:assumed-role/r/session"):  # fmt: skip
        assert _grant(admin, symmetric, principal, "Encrypt")["GrantId"]
    code = _code(admin.create_grant, KeyId=symmetric["id"], Operations=["Encrypt"],
                 GranteeServicePrincipal="s3.amazonaws.com")  # fmt: skip
    assert code == "UnsupportedOperationException"


def test_a_grant_to_create_grants_allows_only_narrower_ones(
    server: Server, admin: Any, bob: Principal, carol: Principal
) -> None:
    key = _key(admin)
    subset = {"EncryptionContextSubset": {"Dept": "Finance"}}
    _grant(admin, key, bob.arn, "Encrypt", "Decrypt", "CreateGrant", Constraints=subset)
    narrower = [
        {"Constraints": subset},
        {"Constraints": {"EncryptionContextSubset": {"dept": "Finance", "Team": "A"}}},
        {"Constraints": {"EncryptionContextEquals": {"Dept": "Finance", "Team": "A"}}},
    ]
    for kwargs in narrower:
        assert _grant(bob.kms, key, carol.arn, "Encrypt", **kwargs)["GrantId"]
    wider = [
        ("Encrypt", {}),
        ("Encrypt", {"Constraints": {"EncryptionContextSubset": {"Team": "A"}}}),
        ("Encrypt", {"Constraints": {"EncryptionContextSubset": {"Dept": "FINANCE"}}}),
        ("GenerateDataKey", {"Constraints": subset}),
    ]
    for operation, kwargs in wider:
        code, message = _error(_grant, bob.kms, key, carol.arn, operation, **kwargs)
        assert code == "AccessDeniedException" and "kms:CreateGrant" in message, kwargs
    # What carol got works, within its constraint.
    context = {"Dept": "Finance"}
    assert carol.kms.encrypt(KeyId=key["id"], Plaintext=b"x", EncryptionContext=context)
    assert _code(carol.kms.encrypt, KeyId=key["id"], Plaintext=b"x") == "AccessDeniedException"


def test_create_grant_condition_keys(admin: Any, bob: Principal, carol: Principal) -> None:
    """A key policy can limit the grants a principal makes with kms:GrantOperations,
    kms:GranteePrincipal, kms:RetiringPrincipal, kms:GrantConstraintType and
    kms:GrantIsForAWSResource."""
    key = _key(admin)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Admins",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{key['account']}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "BobGrantsDecryptToCarol",
                "Effect": "Allow",
                "Principal": {"AWS": bob.arn},
                "Action": "kms:CreateGrant",
                "Resource": "*",
                "Condition": {
                    "ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "Encrypt"]},
                    "StringEquals": {
                        "kms:GranteePrincipal": carol.arn,
                        "kms:GrantConstraintType": "EncryptionContextSubset",
                    },
                    "StringEqualsIfExists": {"kms:RetiringPrincipal": bob.arn},
                    "Bool": {"kms:GrantIsForAWSResource": "false"},
                },
            },
        ],
    }
    admin.put_key_policy(KeyId=key["id"], Policy=json.dumps(policy))
    subset = {"Constraints": {"EncryptionContextSubset": {"a": "b"}}}
    assert _grant(bob.kms, key, carol.arn, "Decrypt", **subset)["GrantId"]
    assert _grant(bob.kms, key, carol.arn, "Decrypt", "Encrypt", RetiringPrincipal=bob.arn,
                  **subset)["GrantId"]  # fmt: skip
    refused = [
        (carol.arn, ("Decrypt", "GenerateDataKey"), subset),
        (bob.arn, ("Decrypt",), subset),
        (carol.arn, ("Decrypt",), {}),
        (carol.arn, ("Decrypt",), {"Constraints": {"EncryptionContextEquals": {"a": "b"}}}),
        (carol.arn, ("Decrypt",), {**subset, "RetiringPrincipal": carol.arn}),
    ]
    for grantee, operations, kwargs in refused:
        code = _code(_grant, bob.kms, key, grantee, *operations, **kwargs)
        assert code == "AccessDeniedException", (grantee, operations, kwargs)


# -- listing --


def test_list_grants_filters_and_pages(
    server: Server, admin: Any, bob: Principal, carol: Principal
) -> None:
    key = _key(admin)
    made = [_grant(admin, key, bob.arn, "Decrypt")["GrantId"] for _ in range(3)]
    made += [_grant(admin, key, carol.arn, "Encrypt", RetiringPrincipal=bob.arn,
                    Constraints={"EncryptionContextEquals": {"a": "b"}},
                    Name=f"carols-{i}")["GrantId"] for i in range(2)]  # fmt: skip
    seen: list[str] = []
    kwargs: dict[str, Any] = {"Limit": 2}
    while True:
        page = admin.list_grants(KeyId=key["arn"], **kwargs)
        assert len(page["Grants"]) <= 2
        seen += [g["GrantId"] for g in page["Grants"]]
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        kwargs["Marker"] = page["NextMarker"]
    assert sorted(seen) == seen and set(seen) == set(made) and len(seen) == 5

    assert {g["GrantId"] for g in _list(admin, key, GranteePrincipal=carol.arn)} == set(made[3:])
    assert _list(admin, key, GranteePrincipal="arn:aws:iam::111122223333:root") == []
    (entry,) = _list(admin, key, GrantId=made[4])
    assert entry["KeyId"] == key["arn"]
    assert entry["GranteePrincipal"] == carol.arn
    assert entry["RetiringPrincipal"] == bob.arn
    assert entry["IssuingAccount"] == f"arn:aws:iam::{key['account']}:root"
    assert entry["Operations"] == ["Encrypt"]
    assert entry["Constraints"] == {"EncryptionContextEquals": {"a": "b"}}
    assert entry["Name"] == "carols-1"
    assert entry["CreationDate"].timestamp() > 0
    (plain,) = _list(admin, key, GrantId=made[0])
    assert "Constraints" not in plain and "Name" not in plain and "RetiringPrincipal" not in plain
    assert _list(admin, key, GrantId="f" * 64) == []
    assert _code(admin.list_grants, KeyId=key["id"], GrantId="x") == "InvalidGrantIdException"
    assert _code(admin.list_grants, KeyId=key["id"], Marker="x") == "InvalidMarkerException"
    assert _code(admin.list_grants, KeyId=str(uuid.uuid4())) == "NotFoundException"


def test_list_retirable_grants(server: Server, admin: Any, bob: Principal) -> None:
    keys = [_key(admin), _key(admin)]
    dave = Principal(server, "dave")
    made = {
        _grant(admin, key, bob.arn, "Decrypt", RetiringPrincipal=dave.arn)["GrantId"]
        for key in keys
        for _ in range(2)
    }
    _grant(admin, keys[0], bob.arn, "Decrypt", RetiringPrincipal=bob.arn)  # someone else's
    seen: list[str] = []
    kwargs: dict[str, Any] = {"Limit": 1}
    while True:
        page = admin.list_retirable_grants(RetiringPrincipal=dave.arn, **kwargs)
        assert len(page["Grants"]) <= 1
        for grant in page["Grants"]:
            assert grant["RetiringPrincipal"] == dave.arn
            assert grant["KeyId"] in {k["arn"] for k in keys}
            seen.append(grant["GrantId"])
        if not page["Truncated"]:
            break
        kwargs["Marker"] = page["NextMarker"]
    assert set(seen) == made and len(seen) == 4
    # dave may retire them all, and then has none.
    for grant in admin.list_retirable_grants(RetiringPrincipal=dave.arn)["Grants"]:
        dave.kms.retire_grant(KeyId=grant["KeyId"], GrantId=grant["GrantId"])
    assert admin.list_retirable_grants(RetiringPrincipal=dave.arn)["Grants"] == []
    # Identity policies decide, in the caller's own account.
    code, message = _error(bob.kms.list_retirable_grants, RetiringPrincipal=dave.arn)
    assert code == "AccessDeniedException" and "kms:ListRetirableGrants" in message
    code = _code(admin.list_retirable_grants, RetiringPrincipal="arn:aws:iam::111122223333:root")
    assert code == "AccessDeniedException"
    code = _code(admin.list_retirable_grants, RetiringPrincipal="nobody")
    assert code == "InvalidArnException"
    code = _code(admin.list_retirable_grants, RetiringPrincipal=dave.arn, Marker="x")
    assert code == "InvalidMarkerException"


# -- audit, deletion --


def test_audit_names_the_grant_that_allowed(server: Server, admin: Any, bob: Principal) -> None:
    key = _key(admin)
    grant_id = _grant(admin, key, bob.arn, "Encrypt")["GrantId"]
    answer = bob.kms.encrypt(KeyId=key["id"], Plaintext=b"x")
    request_id = answer["ResponseMetadata"]["RequestId"]
    records = [
        json.loads(line)
        for path in sorted(Path(server.data_dir, "audit").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    (record,) = [r for r in records if r["request_id"] == request_id]
    assert record["operation"] == "Encrypt"
    assert record["principal"] == bob.arn
    assert record["decision"] == "allow"
    assert record["decided_by"] == f"grant {grant_id}"
    (created,) = [
        r for r in records if r["operation"] == "CreateGrant" and r["detail"] == f"grant {grant_id}"
    ]
    assert created["key_arn"] == key["arn"]


def test_deleting_a_key_deletes_its_grants(fresh_server: Server) -> None:
    admin = fresh_server.client()
    key = _key(admin)
    dave = Principal(fresh_server, "dave")
    _grant(admin, key, dave.arn, "Decrypt", RetiringPrincipal=dave.arn)
    assert len(admin.list_retirable_grants(RetiringPrincipal=dave.arn)["Grants"]) == 1
    admin.schedule_key_deletion(KeyId=key["id"], PendingWindowInDays=7)
    fresh_server.advance_clock(8 * DAY)
    assert _code(admin.describe_key, KeyId=key["id"]) == "NotFoundException"
    assert admin.list_retirable_grants(RetiringPrincipal=dave.arn)["Grants"] == []


def test_a_token_counts_before_a_process_has_seen_its_grant(fresh_server: Server) -> None:
    """Another worker's view: its cached grants of a key predate the grant; the
    token makes the grant count at once, and is checked against the grant."""
    admin = fresh_server.client()
    key = _key(admin)
    bob = Principal(fresh_server, "bob")

    async def run() -> None:
        settings = config.load(dev=True, data_dir=str(fresh_server.data_dir), env={})
        storage, barrier = await open_store(settings)
        try:
            keys = KeyStore(barrier)
            authz = Authorizer(keys)
            stored = await keys.get(uuid.UUID(key["id"]))
            assert stored is not None
            assert await authz.grants(stored.value) == ()  # now cached, empty
            grant = _grant(admin, key, bob.arn, "Decrypt")  # committed by the server
            assert await authz.grants(stored.value) == ()  # this process has not seen it
            (view,) = await authz.grants(stored.value, [grant["GrantToken"]])
            assert view.grant_id == grant["GrantId"] and view.grantee == bob.arn
            assert view.covers("Decrypt", None) and not view.covers("Encrypt", None)
            raw = bytearray(base64.urlsafe_b64decode(grant["GrantToken"] + "=="))
            raw[-1] ^= 1
            forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
            with pytest.raises(InvalidGrantTokenException):
                await authz.grants(stored.value, [forged])
            keys.clear()
            assert [v.grant_id for v in await authz.grants(stored.value)] == [grant["GrantId"]]
            # What is stored: the token's hash, never the token.
            found = await keys.grant(uuid.UUID(key["id"]), grant["GrantId"])
            assert found is not None
            assert grant["GrantToken"] not in json.dumps(found.value.to_doc())
            assert len(found.value.token_hashes) == 1
        finally:
            await storage.close()

    asyncio.run(run())
