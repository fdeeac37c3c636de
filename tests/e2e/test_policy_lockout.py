"""The policy lockout safety check, on PutKeyPolicy and CreateKey."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from conftest import Server

ACCOUNT = "000000000000"


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ONLY_NOBODY = _policy(
    {
        "Sid": "OnlyNobody",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nobody"},
        "Action": "kms:*",
        "Resource": "*",
    }
)
KEEPS_ACCOUNT = _policy(
    {
        "Sid": "EnableIAM",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*",
        "Resource": "*",
    },
    {
        "Sid": "NoDeletion",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "kms:ScheduleKeyDeletion",
        "Resource": "*",
    },
)
DENIES_POLICY_CHANGES = _policy(
    {
        "Sid": "EnableIAM",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*",
        "Resource": "*",
    },
    {
        "Sid": "Frozen",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "kms:PutKeyPolicy",
        "Resource": "*",
    },
)


def _code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return str(raised.value.response["Error"]["Code"])


@pytest.mark.parametrize("policy", [ONLY_NOBODY, DENIES_POLICY_CHANGES])
def test_put_key_policy_refuses_to_lock_the_caller_out(server: Server, policy: str) -> None:
    kms = server.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    before = kms.get_key_policy(KeyId=key)["Policy"]
    assert _code(kms.put_key_policy, KeyId=key, Policy=policy) == (
        "MalformedPolicyDocumentException"
    )
    assert kms.get_key_policy(KeyId=key)["Policy"] == before
    # The same policy with the check bypassed is taken, and then means what it says.
    kms.put_key_policy(KeyId=key, Policy=policy, BypassPolicyLockoutSafetyCheck=True)
    assert _code(kms.put_key_policy, KeyId=key, Policy=before) == "AccessDeniedException"


def test_a_policy_that_keeps_the_caller_in_is_taken(server: Server) -> None:
    kms = server.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.put_key_policy(KeyId=key, Policy=KEEPS_ACCOUNT)
    assert kms.get_key_policy(KeyId=key)["Policy"] == KEEPS_ACCOUNT
    assert _code(kms.schedule_key_deletion, KeyId=key) == "AccessDeniedException"
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"


def test_create_key_with_a_lockout_policy(server: Server) -> None:
    kms = server.client()
    before = len(kms.list_keys(Limit=1000)["Keys"])
    assert _code(kms.create_key, Policy=ONLY_NOBODY) == "MalformedPolicyDocumentException"
    assert len(kms.list_keys(Limit=1000)["Keys"]) == before
    key = kms.create_key(Policy=ONLY_NOBODY, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]
    assert _code(kms.describe_key, KeyId=key["KeyId"]) == "AccessDeniedException"


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        "{}",
        '{"Statement": []}',
        _policy({"Effect": "Allow", "Action": "kms:*", "Resource": "*"}),  # no Principal
        _policy({"Effect": "Permit", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*"}),
        _policy(
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "kms:Encrypt",
                "Resource": "*",
                "Condition": {"StringEqualz": {"kms:CallerAccount": ACCOUNT}},
            }
        ),
        _policy(
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "kms:Encrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:CallerAcount": ACCOUNT}},
            }
        ),
        _policy({"Effect": "Allow", "Principal": "*", "Action": "kms:Encrpyt", "Resource": "*"}),
    ],
)
def test_malformed_policies_are_refused_not_stored(server: Server, document: str) -> None:
    kms = server.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    before = kms.get_key_policy(KeyId=key)["Policy"]
    code = _code(
        kms.put_key_policy, KeyId=key, Policy=document, BypassPolicyLockoutSafetyCheck=True
    )
    assert code == "MalformedPolicyDocumentException"
    assert kms.get_key_policy(KeyId=key)["Policy"] == before
