"""Alias rules AWS enforces, through boto3: UpdateAlias keeps the key type and
key usage, and a key has at most 50 aliases."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server

# A Region of their own: the 50 aliases of one key must not crowd the pages
# other tests of the shared server read.
REGION = "eu-north-1"


def _name(prefix: str) -> str:
    return f"alias/{prefix}-{uuid.uuid4().hex[:8]}"


def _error(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    e = error.value.response["Error"]
    return str(e["Code"]), str(e["Message"])


def _target(kms: Any, name: str) -> str:
    pages = kms.get_paginator("list_aliases").paginate()
    found = [a for page in pages for a in page["Aliases"] if a["AliasName"] == name]
    return str(found[0]["TargetKeyId"])


KINDS = {
    "symmetric": {},
    "rsa-encrypt": {"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"},
    "rsa-sign": {"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"},
    "ec-sign": {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"},
    "ec-agree": {"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"},
    "hmac-256": {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"},
    "hmac-512": {"KeySpec": "HMAC_512", "KeyUsage": "GENERATE_VERIFY_MAC"},
}
# (from, to): allowed when both have the same type (symmetric, asymmetric,
# HMAC) and the same key usage.
MOVES = [
    ("symmetric", "symmetric", True),
    ("symmetric", "rsa-sign", False),
    ("symmetric", "rsa-encrypt", False),
    ("symmetric", "hmac-256", False),
    ("rsa-sign", "ec-sign", True),
    ("rsa-encrypt", "rsa-sign", False),
    ("ec-sign", "ec-agree", False),
    ("hmac-256", "hmac-512", True),
    ("hmac-256", "symmetric", False),
]


@pytest.fixture(scope="module")
def keys(server: Server) -> dict[str, str]:
    kms = server.client(region=REGION)
    return {kind: kms.create_key(**args)["KeyMetadata"]["KeyId"] for kind, args in KINDS.items()}


@pytest.mark.parametrize(("source", "dest", "allowed"), MOVES)
def test_update_alias_keeps_key_type_and_usage(
    server: Server, keys: dict[str, str], source: str, dest: str, allowed: bool
) -> None:
    kms = server.client(region=REGION)
    name = _name("move")
    kms.create_alias(AliasName=name, TargetKeyId=keys[source])
    new = keys[dest]
    if source == dest:
        new = kms.create_key(**KINDS[dest])["KeyMetadata"]["KeyId"]
    if allowed:
        kms.update_alias(AliasName=name, TargetKeyId=new)
        assert _target(kms, name) == new
        return
    with pytest.raises(ClientError) as error:
        kms.update_alias(AliasName=name, TargetKeyId=new)
    code, message = _error(error)
    assert code == "ValidationException", message
    assert "same type" in message and "key usage" in message
    assert _target(kms, name) == keys[source]


def test_at_most_fifty_aliases_per_key(server: Server) -> None:
    kms = server.client(region=REGION)
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(50):
        kms.create_alias(AliasName=_name("quota"), TargetKeyId=key)
    with pytest.raises(ClientError) as error:
        kms.create_alias(AliasName=_name("quota"), TargetKeyId=key)
    assert _error(error)[0] == "LimitExceededException"
    # Moving a 51st alias onto it is the same.
    moving = _name("quota-move")
    kms.create_alias(AliasName=moving, TargetKeyId=other)
    with pytest.raises(ClientError) as error:
        kms.update_alias(AliasName=moving, TargetKeyId=key)
    assert _error(error)[0] == "LimitExceededException"
    assert len(kms.list_aliases(KeyId=key, Limit=100)["Aliases"]) == 50
    # One less, and there is room again.
    first = kms.list_aliases(KeyId=key, Limit=1)["Aliases"][0]["AliasName"]
    kms.delete_alias(AliasName=first)
    kms.update_alias(AliasName=moving, TargetKeyId=key)
    assert _target(kms, moving) == key


def test_list_aliases_by_another_accounts_key_tells_nothing(server: Server, kms: Any) -> None:
    """ListAliases never lists another account's aliases and authorizes
    nothing on the key: another account's existing key and a key that does
    not exist get the same NotFoundException, so the call is no probe."""
    other = "333344445555"
    name = f"alias-probe-{uuid.uuid4().hex[:8]}"
    made = json.loads(
        server.cli(
            "principals", "create", name, "--json", "--admin", "--account", other, "--offline"
        ).stdout
    )
    outsider = server.client((made["AccessKeyId"], made["SecretAccessKey"]))
    real = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName=f"alias/{name}", TargetKeyId=real)
    missing = real.rsplit("/", 1)[0] + "/" + str(uuid.uuid4())
    answers = []
    for arn in (real, missing):
        with pytest.raises(ClientError) as caught:
            outsider.list_aliases(KeyId=arn)
        error = caught.value.response["Error"]
        answers.append((error["Code"], error["Message"].replace(arn, "<arn>")))
    assert answers[0] == answers[1] == ("NotFoundException", "Key '<arn>' does not exist")
