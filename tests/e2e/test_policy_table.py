# ruff: noqa: E501 - the case table reads best one row per line
"""Access control, case by case, through boto3 against a running server.

Each case is a row: who calls, which operation (with its parameters), the
key policy on a fresh key, the caller's identity policies (fixed per
principal), the encryption context, and the expected decision with the
statement that must decide it (read back from the audit record of that very
request). A second test removes, one at a time, every Allow statement of
every allowed case and shows the call is then denied: no statement in the
table is decorative.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server, dev_call

ACCOUNT = "000000000000"
OTHER = "111122223333"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
SUFFIX = uuid.uuid4().hex[:6]


def user(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:iam::{account}:user/{name}-{SUFFIX}"


def role(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:iam::{account}:role/{name}-{SUFFIX}"


# -- principals: (name, account, role?, tags, identity policy or None) --

ENCRYPT_DECRYPT_ANY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "UseAnyKey", "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"],
         "Resource": "*"}
    ],
}  # fmt: skip
ALL_BUT_DELETE = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Everything", "Effect": "Allow", "Action": "kms:*", "Resource": "*"},
        {"Sid": "NeverDelete", "Effect": "Deny", "Action": "kms:ScheduleKeyDeletion",
         "Resource": "*"},
    ],
}  # fmt: skip
DECRYPT_WITH_CONTEXT = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "DecryptForOrders", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:app": "orders"}}}
    ],
}  # fmt: skip
OTHER_ACCOUNT_USE = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "UseSharedKeys", "Effect": "Allow", "Action": ["kms:Encrypt", "kms:DescribeKey"],
         "Resource": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/*"}
    ],
}  # fmt: skip


@dataclass(frozen=True)
class P:
    name: str
    account: str = ACCOUNT
    is_role: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    policy: dict[str, Any] | None = None

    @property
    def arn(self) -> str:
        return (role if self.is_role else user)(self.name, self.account)


PRINCIPALS = {
    "alice": P("alice", tags={"tenant": "a", "team": "blue"}),
    "bob": P("bob", tags={"tenant": "b", "team": "red"}),
    "ivan": P("ivan", policy=ENCRYPT_DECRYPT_ANY),
    "dora": P("dora", policy=ALL_BUT_DELETE),
    "app": P("app", is_role=True, policy=DECRYPT_WITH_CONTEXT),
    "olga": P("olga", account=OTHER, policy=OTHER_ACCOUNT_USE),
}


# -- statements --


def allow(
    principal: str | list[str] | dict[str, Any],
    actions: str | list[str],
    sid: str,
    condition: dict[str, Any] | None = None,
    *,
    not_action: bool = False,
    resource: str | list[str] = "*",
    not_principal: bool = False,
    effect: str = "Allow",
) -> dict[str, Any]:
    stmt: dict[str, Any] = {"Sid": sid, "Effect": effect}
    who = principal if isinstance(principal, dict) else {"AWS": principal}
    if principal == "*":
        who = "*"
    stmt["NotPrincipal" if not_principal else "Principal"] = who
    stmt["NotAction" if not_action else "Action"] = actions
    stmt["Resource"] = resource
    if condition:
        stmt["Condition"] = condition
    return stmt


def deny(
    principal: Any, actions: Any, sid: str, condition: Any = None, **kw: Any
) -> dict[str, Any]:
    return allow(principal, actions, sid, condition, effect="Deny", **kw)


def delegate(sid: str = "EnableIAM") -> dict[str, Any]:
    return allow(ROOT, "kms:*", sid)


# -- cases --


@dataclass(frozen=True)
class Case:
    id: str
    who: str  # a PRINCIPALS name, or "admin"
    op: str  # a boto3 method name
    statements: list[dict[str, Any]]
    expect: bool
    decided_by: str  # a substring of the audit record's decided_by
    context: dict[str, str] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    by_alias: bool = False
    key_tags: dict[str, str] = field(default_factory=dict)


CASES: list[Case] = []


def case(*args: Any, **kwargs: Any) -> None:
    CASES.append(Case(*args, **kwargs))


A, B = user("alice"), user("bob")
CTX_A = {"tenant": "a"}
CTX_B = {"tenant": "b"}

# 1. A statement naming the caller allows exactly its actions.
SIMPLE_OPS = [
    ("encrypt", "kms:Encrypt"),
    ("decrypt", "kms:Decrypt"),
    ("generate_data_key", "kms:GenerateDataKey"),
    ("generate_data_key_without_plaintext", "kms:GenerateDataKeyWithoutPlaintext"),
    ("describe_key", "kms:DescribeKey"),
    ("re_encrypt", "kms:ReEncryptFrom"),
    ("get_key_policy", "kms:GetKeyPolicy"),
    ("list_resource_tags", "kms:ListResourceTags"),
    ("get_key_rotation_status", "kms:GetKeyRotationStatus"),
    ("list_key_rotations", "kms:ListKeyRotations"),
    ("list_grants", "kms:ListGrants"),
    ("tag_resource", "kms:TagResource"),
    ("update_key_description", "kms:UpdateKeyDescription"),
    ("get_key_last_usage", "kms:GetKeyLastUsage"),
]
for op, action in SIMPLE_OPS:
    extra = [allow(A, "kms:ReEncryptTo", "ReEncryptTo")] if op == "re_encrypt" else []
    case(f"direct-{op}", "alice", op, [allow(A, action, "AliceOnly"), *extra], True, "AliceOnly")
    case(f"other-principal-{op}", "bob", op, [allow(A, action, "AliceOnly"), *extra], False,
         "implicit deny")  # fmt: skip
    case(f"other-action-{op}", "alice", op, [allow(A, "kms:ListAliases", "Unrelated")], False,
         "implicit deny")  # fmt: skip

# 2. Action wildcards and NotAction.
for pattern, op, expect in [
    ("kms:*", "encrypt", True),
    ("kms:*", "describe_key", True),
    ("*", "decrypt", True),
    ("kms:Encrypt*", "encrypt", True),
    ("kms:Encrypt*", "decrypt", False),
    ("kms:GenerateDataKey*", "generate_data_key", True),
    ("kms:GenerateDataKey*", "generate_data_key_without_plaintext", True),
    ("kms:Describe*", "describe_key", True),
    ("kms:Describe*", "encrypt", False),
    ("kms:*Key", "describe_key", True),
    ("kms:*Key", "decrypt", False),
    ("kms:?ecrypt", "decrypt", True),
    ("kms:?ecrypt", "encrypt", False),
    ("KMS:DECRYPT", "decrypt", True),
]:
    case(f"pattern-{pattern}-{op}", "alice", op, [allow(A, pattern, "Pattern")], expect,
         "Pattern" if expect else "implicit deny")  # fmt: skip
for op, expect in [("encrypt", True), ("decrypt", False), ("describe_key", True)]:
    case(f"notaction-{op}", "alice", op, [allow(A, "kms:Decrypt", "AllButDecrypt", not_action=True)],
         expect, "AllButDecrypt" if expect else "implicit deny")  # fmt: skip

# 3. Resources in a key policy: "*" is this key; another key's ARN is not.
case("resource-star", "alice", "encrypt", [allow(A, "kms:Encrypt", "Star")], True, "Star")
case("resource-other-key", "alice", "encrypt",
     [allow(A, "kms:Encrypt", "Other", resource=f"arn:aws:kms:us-east-1:{ACCOUNT}:key/"
            "00000000-0000-0000-0000-000000000000")], False, "implicit deny")  # fmt: skip
case("resource-wildcard-arn", "alice", "encrypt",
     [allow(A, "kms:Encrypt", "AnyKeyOfAccount", resource=f"arn:aws:kms:us-east-1:{ACCOUNT}:key/*")],
     True, "AnyKeyOfAccount")  # fmt: skip
case("resource-other-region", "alice", "encrypt",
     [allow(A, "kms:Encrypt", "West", resource=f"arn:aws:kms:us-west-2:{ACCOUNT}:key/*")],
     False, "implicit deny")  # fmt: skip
case("notresource-other", "alice", "encrypt",
     [{"Sid": "NotOther", "Effect": "Allow", "Principal": {"AWS": A}, "Action": "kms:Encrypt",
       "NotResource": f"arn:aws:kms:us-west-2:{ACCOUNT}:key/*"}], True, "NotOther")  # fmt: skip

# 4. Explicit deny wins, from the key policy or the identity policy.
case("deny-over-allow", "alice", "encrypt",
     [allow(A, "kms:*", "AliceAll"), deny(A, "kms:Encrypt", "NoEncrypt")], False,
     "explicit deny in key policy statement NoEncrypt")  # fmt: skip
case("deny-other-action", "alice", "decrypt",
     [allow(A, "kms:*", "AliceAll"), deny(A, "kms:Encrypt", "NoEncrypt")], True, "AliceAll")  # fmt: skip
case("deny-star-principal", "alice", "encrypt",
     [allow(A, "kms:*", "AliceAll"), deny("*", "kms:Encrypt", "NobodyEncrypts")], False,
     "NobodyEncrypts")  # fmt: skip
case("deny-account-root", "alice", "describe_key",
     [allow(A, "kms:*", "AliceAll"), deny(ROOT, "kms:DescribeKey", "AccountMayNotDescribe")],
     False, "AccountMayNotDescribe")  # fmt: skip
case("deny-notprincipal-others", "bob", "encrypt",
     [allow("*", "kms:Encrypt", "Anyone"), deny(A, "kms:*", "OnlyAlice", not_principal=True)],
     False, "OnlyAlice")  # fmt: skip
case("deny-notprincipal-spares", "alice", "encrypt",
     [allow("*", "kms:Encrypt", "Anyone"), deny(A, "kms:*", "OnlyAlice", not_principal=True)],
     True, "Anyone")  # fmt: skip
case("identity-deny-over-key-allow", "dora", "schedule_key_deletion",
     [allow(user("dora"), "kms:*", "DoraAll")], False,
     "explicit deny in identity policy")  # fmt: skip
case("identity-deny-other-action", "dora", "describe_key",
     [allow(user("dora"), "kms:*", "DoraAll")], True, "DoraAll")  # fmt: skip
case("deny-with-unmet-condition", "alice", "encrypt",
     [allow(A, "kms:*", "AliceAll"),
      deny(A, "kms:Encrypt", "NoTenantB", {"StringEquals": {"kms:EncryptionContext:tenant": "b"}})],
     True, "AliceAll", context=CTX_A)  # fmt: skip
case("deny-with-met-condition", "alice", "encrypt",
     [allow(A, "kms:*", "AliceAll"),
      deny(A, "kms:Encrypt", "NoTenantB", {"StringEquals": {"kms:EncryptionContext:tenant": "b"}})],
     False, "NoTenantB", context=CTX_B)  # fmt: skip

# 5. Delegation: the account root lets identity policies decide.
case("delegated-identity-allows", "ivan", "encrypt", [delegate()], True,
     "identity policy")  # fmt: skip
case("delegated-identity-allows-decrypt", "ivan", "decrypt", [delegate()], True,
     "identity policy")  # fmt: skip
case("delegated-identity-silent", "ivan", "describe_key", [delegate()], False,
     "implicit deny")  # fmt: skip
case("not-delegated-identity-ignored", "ivan", "encrypt", [allow(A, "kms:*", "AliceOnly")],
     False, "implicit deny")  # fmt: skip
case("delegation-for-other-action", "ivan", "encrypt", [allow(ROOT, "kms:Describe*", "OnlyDescribe")],
     False, "implicit deny")  # fmt: skip
case("delegation-with-condition-met", "ivan", "encrypt",
     [allow(ROOT, "kms:*", "IAMWithContext", {"StringEquals": {"kms:EncryptionContext:app": "x"}})],
     True, "identity policy", context={"app": "x"})  # fmt: skip
case("delegation-with-condition-unmet", "ivan", "encrypt",
     [allow(ROOT, "kms:*", "IAMWithContext", {"StringEquals": {"kms:EncryptionContext:app": "x"}})],
     False, "implicit deny", context={"app": "y"})  # fmt: skip
case("no-identity-policy-delegated", "alice", "encrypt", [delegate()], False, "implicit deny")
case("role-identity-with-context", "app", "decrypt", [delegate()], True, "identity policy",
     context={"app": "orders"})  # fmt: skip
case("role-identity-wrong-context", "app", "decrypt", [delegate()], False, "implicit deny",
     context={"app": "billing"})  # fmt: skip
case("role-identity-no-context", "app", "decrypt", [delegate()], False, "implicit deny")
case("role-by-arn", "app", "decrypt", [allow(role("app"), "kms:Decrypt", "TheRole")], True,
     "TheRole")  # fmt: skip
case("admin-via-default-delegation", "admin", "describe_key", [delegate()], True,
     "identity policy keycask administrator")  # fmt: skip
case("admin-without-delegation", "admin", "describe_key", [allow(A, "kms:*", "AliceOnly")],
     False, "implicit deny")  # fmt: skip
case("admin-denied-explicitly", "admin", "encrypt",
     [delegate(), deny(ROOT, "kms:Encrypt", "NoOneEncrypts")], False, "NoOneEncrypts")  # fmt: skip

# 6. Principal "*" with conditions that pin it down.
case("star-with-caller-account", "alice", "encrypt",
     [allow("*", "kms:Encrypt", "OurAccount", {"StringEquals": {"kms:CallerAccount": ACCOUNT}})],
     True, "OurAccount")  # fmt: skip
case("star-with-other-caller-account", "alice", "encrypt",
     [allow("*", "kms:Encrypt", "TheirAccount", {"StringEquals": {"kms:CallerAccount": OTHER}})],
     False, "implicit deny")  # fmt: skip
case("star-with-principal-arn-like", "bob", "encrypt",
     [allow("*", "kms:Encrypt", "BobsOnly", {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/bob-*"}})],
     True, "BobsOnly")  # fmt: skip
case("star-with-principal-arn-like-miss", "alice", "encrypt",
     [allow("*", "kms:Encrypt", "BobsOnly", {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/bob-*"}})],
     False, "implicit deny")  # fmt: skip
case("star-with-principal-account", "bob", "describe_key",
     [allow("*", "kms:DescribeKey", "Acct", {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}})],
     True, "Acct")  # fmt: skip

# 7. Conditions on the request.
for name, condition, ctx, expect in [
    ("ctx-equals", {"StringEquals": {"kms:EncryptionContext:tenant": "a"}}, CTX_A, True),
    ("ctx-equals-other", {"StringEquals": {"kms:EncryptionContext:tenant": "a"}}, CTX_B, False),
    ("ctx-equals-absent", {"StringEquals": {"kms:EncryptionContext:tenant": "a"}}, None, False),
    (
        "ctx-equals-value-case",
        {"StringEquals": {"kms:EncryptionContext:tenant": "A"}},
        CTX_A,
        False,
    ),
    (
        "ctx-key-case-insensitive",
        {"StringEquals": {"kms:EncryptionContext:TENANT": "a"}},
        CTX_A,
        True,
    ),
    (
        "ctx-ignorecase",
        {"StringEqualsIgnoreCase": {"kms:EncryptionContext:tenant": "A"}},
        CTX_A,
        True,
    ),
    ("ctx-like", {"StringLike": {"kms:EncryptionContext:tenant": "?"}}, CTX_A, True),
    ("ctx-like-miss", {"StringLike": {"kms:EncryptionContext:tenant": "a?"}}, CTX_A, False),
    ("ctx-not-equals", {"StringNotEquals": {"kms:EncryptionContext:tenant": "b"}}, CTX_A, True),
    (
        "ctx-not-equals-absent",
        {"StringNotEquals": {"kms:EncryptionContext:tenant": "b"}},
        None,
        True,
    ),
    (
        "ctx-not-equals-hit",
        {"StringNotEquals": {"kms:EncryptionContext:tenant": "b"}},
        CTX_B,
        False,
    ),
    (
        "ctx-ifexists-absent",
        {"StringEqualsIfExists": {"kms:EncryptionContext:tenant": "a"}},
        None,
        True,
    ),
    (
        "ctx-ifexists-other",
        {"StringEqualsIfExists": {"kms:EncryptionContext:tenant": "a"}},
        CTX_B,
        False,
    ),
    ("ctx-null-true-absent", {"Null": {"kms:EncryptionContext:tenant": "true"}}, None, True),
    ("ctx-null-true-present", {"Null": {"kms:EncryptionContext:tenant": "true"}}, CTX_A, False),
    ("ctx-null-false-present", {"Null": {"kms:EncryptionContext:tenant": "false"}}, CTX_A, True),
    ("ctx-null-false-absent", {"Null": {"kms:EncryptionContext:tenant": "false"}}, None, False),
    (
        "ctx-keys-anyvalue",
        {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "tenant"}},
        {"tenant": "a", "x": "y"},
        True,
    ),
    (
        "ctx-keys-anyvalue-miss",
        {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "tenant"}},
        {"x": "y"},
        False,
    ),
    (
        "ctx-keys-allvalues",
        {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant", "x"]}},
        {"tenant": "a", "x": "y"},
        True,
    ),
    (
        "ctx-keys-allvalues-extra",
        {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant"]}},
        {"tenant": "a", "x": "y"},
        False,
    ),
    (
        "ctx-keys-allvalues-absent",
        {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant"]}},
        None,
        True,
    ),
    (
        "ctx-two-keys-and",
        {"StringEquals": {"kms:EncryptionContext:tenant": "a", "kms:EncryptionContext:x": "y"}},
        {"tenant": "a", "x": "y"},
        True,
    ),
    (
        "ctx-two-keys-and-miss",
        {"StringEquals": {"kms:EncryptionContext:tenant": "a", "kms:EncryptionContext:x": "y"}},
        CTX_A,
        False,
    ),
    ("ctx-values-or", {"StringEquals": {"kms:EncryptionContext:tenant": ["a", "b"]}}, CTX_B, True),
    ("source-ip", {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, None, True),
    ("source-ip-miss", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, None, False),
    ("not-source-ip", {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, None, True),
    (
        "current-time-after",
        {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
        None,
        True,
    ),
    (
        "current-time-before",
        {"DateLessThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
        None,
        False,
    ),
    ("epoch-time", {"NumericGreaterThan": {"aws:EpochTime": "1577836800"}}, None, True),
    ("secure-transport-false", {"Bool": {"aws:SecureTransport": "false"}}, None, True),
    ("secure-transport-true", {"Bool": {"aws:SecureTransport": "true"}}, None, False),
    ("algorithm", {"StringEquals": {"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}}, None, True),
    (
        "algorithm-miss",
        {"StringEquals": {"kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}},
        None,
        False,
    ),
    ("key-spec", {"StringEquals": {"kms:KeySpec": "SYMMETRIC_DEFAULT"}}, None, True),
    ("key-usage-miss", {"StringEquals": {"kms:KeyUsage": "SIGN_VERIFY"}}, None, False),
    ("key-origin", {"StringEquals": {"kms:KeyOrigin": "AWS_KMS"}}, None, True),
    # Keys `policy simulate` once left out (issue 14): the differential test
    # below shows the tool now sets them as the server does.
    ("resource-account", {"StringEquals": {"aws:ResourceAccount": ACCOUNT}}, None, True),
    ("resource-account-miss", {"StringEquals": {"aws:ResourceAccount": OTHER}}, None, False),
    ("userid", {"StringLike": {"aws:userid": "AIDA*"}}, None, True),
    ("userid-null", {"Null": {"aws:userid": "true"}}, None, False),
    ("not-aws-service", {"Bool": {"aws:PrincipalIsAWSService": "false"}}, None, True),
    ("not-via-aws-service", {"Bool": {"aws:ViaAWSService": "false"}}, None, True),
    ("via-aws-service", {"Bool": {"aws:ViaAWSService": "true"}}, None, False),
    ("principal-type", {"StringEquals": {"aws:PrincipalType": "User"}}, None, True),
    ("requested-region", {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}, None, True),
    ("principal-tag", {"StringEquals": {"aws:PrincipalTag/team": "blue"}}, None, True),
    ("principal-tag-miss", {"StringEquals": {"aws:PrincipalTag/team": "red"}}, None, False),
    ("principal-tag-absent-null", {"Null": {"aws:PrincipalTag/missing": "true"}}, None, True),
    (
        "username-variable",
        {"StringEquals": {"kms:EncryptionContext:owner": "${aws:username}"}},
        {"owner": f"alice-{SUFFIX}"},
        True,
    ),
    (
        "username-variable-miss",
        {"StringEquals": {"kms:EncryptionContext:owner": "${aws:username}"}},
        {"owner": f"bob-{SUFFIX}"},
        False,
    ),
]:
    case(name, "alice", "encrypt", [allow(A, "kms:Encrypt", "Cond", condition)], expect,
         "Cond" if expect else "implicit deny", context=ctx)  # fmt: skip

# 8. Tenant isolation: one statement, each principal only its tenant.
TENANT = [allow([A, B], "kms:Decrypt", "TenantIsolation",
                {"StringEquals": {"kms:EncryptionContext:tenant": "${aws:PrincipalTag/tenant}"}})]  # fmt: skip
for who, ctx, expect in [
    ("alice", CTX_A, True), ("alice", CTX_B, False), ("bob", CTX_B, True), ("bob", CTX_A, False),
    ("alice", None, False), ("bob", {"tenant": "B"}, False), ("ivan", CTX_A, False),
]:  # fmt: skip
    label = "-".join(f"{k}{v}" for k, v in (ctx or {}).items()) or "none"
    case(f"tenant-{who}-{label}", who, "decrypt", TENANT, expect,
         "TenantIsolation" if expect else "implicit deny", context=ctx)  # fmt: skip

# 9. Resource tags and the alias a key is named by.
case("resource-tag", "alice", "encrypt",
     [allow(A, "kms:Encrypt", "TaggedProd", {"StringEquals": {"aws:ResourceTag/env": "prod"}})],
     True, "TaggedProd", key_tags={"env": "prod"})  # fmt: skip
case("resource-tag-miss", "alice", "encrypt",
     [allow(A, "kms:Encrypt", "TaggedProd", {"StringEquals": {"aws:ResourceTag/env": "prod"}})],
     False, "implicit deny", key_tags={"env": "dev"})  # fmt: skip
case("resource-tag-absent", "alice", "encrypt",
     [allow(A, "kms:Encrypt", "TaggedProd", {"StringEquals": {"aws:ResourceTag/env": "prod"}})],
     False, "implicit deny")  # fmt: skip
case("request-alias", "alice", "encrypt",
     [allow(A, "kms:Encrypt", "ViaAlias", {"StringLike": {"kms:RequestAlias": "alias/policy-table-*"}})],
     True, "ViaAlias", by_alias=True)  # fmt: skip
case("request-alias-by-id", "alice", "encrypt",
     [allow(A, "kms:Encrypt", "ViaAlias", {"StringLike": {"kms:RequestAlias": "alias/policy-table-*"}})],
     False, "implicit deny")  # fmt: skip
case("resource-aliases", "alice", "encrypt",
     [allow(A, "kms:Encrypt", "AliasedKeys", {"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/policy-table-*"}})],
     True, "AliasedKeys", by_alias=True)  # fmt: skip
case("resource-aliases-none", "alice", "encrypt",
     [allow(A, "kms:Encrypt", "AliasedKeys", {"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/policy-table-*"}})],
     False, "implicit deny")  # fmt: skip
case("request-tag-on-tag-resource", "alice", "tag_resource",
     [allow(A, "kms:TagResource", "OnlyEnvTags", {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}})],
     True, "OnlyEnvTags", params={"Tags": [{"TagKey": "env", "TagValue": "x"}]})  # fmt: skip
case("request-tag-on-tag-resource-miss", "alice", "tag_resource",
     [allow(A, "kms:TagResource", "OnlyEnvTags", {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}})],
     False, "implicit deny", params={"Tags": [{"TagKey": "owner", "TagValue": "x"}]})  # fmt: skip

# 10. Numeric conditions on lifecycle parameters.
case("rotation-period-max", "alice", "enable_key_rotation",
     [allow(A, "kms:EnableKeyRotation", "ShortPeriods", {"NumericLessThanEquals": {"kms:RotationPeriodInDays": "180"}})],
     True, "ShortPeriods", params={"RotationPeriodInDays": 90})  # fmt: skip
case("rotation-period-too-long", "alice", "enable_key_rotation",
     [allow(A, "kms:EnableKeyRotation", "ShortPeriods", {"NumericLessThanEquals": {"kms:RotationPeriodInDays": "180"}})],
     False, "implicit deny", params={"RotationPeriodInDays": 365})  # fmt: skip
case("deletion-window-min", "alice", "schedule_key_deletion",
     [allow(A, "kms:ScheduleKeyDeletion", "LongWindows", {"NumericGreaterThanEquals": {"kms:ScheduleKeyDeletionPendingWindowInDays": "30"}})],
     True, "LongWindows", params={"PendingWindowInDays": 30})  # fmt: skip
case("deletion-window-too-short", "alice", "schedule_key_deletion",
     [allow(A, "kms:ScheduleKeyDeletion", "LongWindows", {"NumericGreaterThanEquals": {"kms:ScheduleKeyDeletionPendingWindowInDays": "30"}})],
     False, "implicit deny", params={"PendingWindowInDays": 7})  # fmt: skip

# 11. Another account: the key policy names the account, its identity policy decides.
OLGA = user("olga", OTHER)
case("cross-account-delegated", "olga", "encrypt", [allow(f"arn:aws:iam::{OTHER}:root", "kms:*", "PartnerAccount")],
     True, "identity policy")  # fmt: skip
case("cross-account-describe", "olga", "describe_key",
     [allow(f"arn:aws:iam::{OTHER}:root", "kms:*", "PartnerAccount")], True, "identity policy")  # fmt: skip
case("cross-account-not-in-identity", "olga", "decrypt",
     [allow(f"arn:aws:iam::{OTHER}:root", "kms:*", "PartnerAccount")], False, "implicit deny")  # fmt: skip
case("cross-account-not-named", "olga", "encrypt", [delegate()], False, "implicit deny")
# Naming a principal of another account directly still needs its own
# account's identity policy (both sides must agree).
case("cross-account-direct-without-identity", "olga", "decrypt",
     [allow(OLGA, "kms:Decrypt", "OlgaDirect")], False, "implicit deny")  # fmt: skip
case("cross-account-direct-with-identity", "olga", "encrypt",
     [allow(OLGA, "kms:Encrypt", "OlgaDirect")], True, "OlgaDirect")  # fmt: skip
case("cross-account-star-without-identity", "olga", "decrypt",
     [allow("*", "kms:Decrypt", "Anyone")], False, "implicit deny")  # fmt: skip
# Managing a key never crosses accounts, whatever the policies say.
case("cross-account-management", "olga", "get_key_policy",
     [allow(f"arn:aws:iam::{OTHER}:root", "kms:*", "PartnerAccount"), allow(OLGA, "kms:*", "OlgaAll")],
     False, "cross-account use is not allowed for kms:GetKeyPolicy")  # fmt: skip
case("cross-account-tagging", "olga", "tag_resource",
     [allow(f"arn:aws:iam::{OTHER}:root", "kms:*", "PartnerAccount"), allow(OLGA, "kms:*", "OlgaAll")],
     False, "cross-account use is not allowed for kms:TagResource")  # fmt: skip

# 12. DryRun: the decision, not the work.
case("dry-run-allowed", "alice", "encrypt", [allow(A, "kms:Encrypt", "DryAllowed")], True,
     "DryAllowed", params={"DryRun": True})  # fmt: skip
case("dry-run-denied", "bob", "encrypt", [allow(A, "kms:Encrypt", "DryAllowed")], False,
     "implicit deny", params={"DryRun": True})  # fmt: skip


# -- running a case --


class World:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.admin = server.client()
        self.clients: dict[str, Any] = {"admin": self.admin}
        # Principals of another account are managed by that account's own
        # administrator (admins are per account): made offline, like the
        # first admin of any account.
        boss = json.loads(
            server.cli("principals", "create", f"boss-{SUFFIX}", "--admin", "--account", OTHER,
                       "--offline", "--json").stdout
        )  # fmt: skip
        boss_creds = (boss["AccessKeyId"], boss["SecretAccessKey"])
        for name, p in PRINCIPALS.items():
            args = ["principals", "create", f"{p.name}-{SUFFIX}", "--json", "--account", p.account]
            if p.account != ACCOUNT:
                args.append("--offline")
            if p.is_role:
                args.append("--role")
            for k, v in p.tags.items():
                args += ["--tag", f"{k}={v}"]
            created = json.loads(server.cli(*args).stdout)
            assert created["Arn"] == p.arn, created
            if p.policy is not None and p.account == ACCOUNT:
                path = server.data_dir.parent / f"{name}-{SUFFIX}.json"
                path.write_text(json.dumps(p.policy))
                server.cli("principals", "put-policy", f"{p.name}-{SUFFIX}", "--account",
                           p.account, "--policy-name", "main", "--file", str(path))  # fmt: skip
            elif p.policy is not None:
                dev_call(
                    server.endpoint,
                    boss_creds,
                    {"Name": f"{p.name}-{SUFFIX}", "Account": p.account, "PolicyName": "main",
                     "PolicyDocument": json.dumps(p.policy)},
                    target="KeycaskAdmin.PutPrincipalPolicy",
                )  # fmt: skip
            self.clients[name] = server.client((created["AccessKeyId"], created["SecretAccessKey"]))

    def key(self, c: Case, statements: list[dict[str, Any]]) -> tuple[str, bytes]:
        tags = [{"TagKey": k, "TagValue": v} for k, v in c.key_tags.items()]
        meta = self.admin.create_key(Description=c.id, Tags=tags)["KeyMetadata"]
        blob = self.admin.encrypt(
            KeyId=meta["KeyId"], Plaintext=b"policy table", EncryptionContext=c.context or {}
        )["CiphertextBlob"]
        if c.by_alias:
            self.admin.create_alias(AliasName=f"alias/policy-table-{uuid.uuid4().hex[:8]}",
                                    TargetKeyId=meta["KeyId"])  # fmt: skip
        policy = {"Version": "2012-10-17", "Statement": statements}
        self.admin.put_key_policy(KeyId=meta["KeyId"], Policy=json.dumps(policy),
                                  BypassPolicyLockoutSafetyCheck=True)  # fmt: skip
        return meta["Arn"], blob

    def call(self, c: Case, key_arn: str, blob: bytes) -> tuple[bool, str]:
        kms = self.clients[c.who]
        ref = key_arn
        if c.by_alias:
            aliases = self.admin.list_aliases(KeyId=key_arn)["Aliases"]
            ref = aliases[0]["AliasName"]
        ctx = {"EncryptionContext": c.context} if c.context else {}
        params: dict[str, Any] = {
            "encrypt": {"KeyId": ref, "Plaintext": b"x", **ctx},
            "decrypt": {"CiphertextBlob": blob, **ctx},
            "generate_data_key": {"KeyId": ref, "KeySpec": "AES_256", **ctx},
            "generate_data_key_without_plaintext": {"KeyId": ref, "KeySpec": "AES_256", **ctx},
            "describe_key": {"KeyId": ref},
            "re_encrypt": {"CiphertextBlob": blob, "DestinationKeyId": key_arn,
                           **({"SourceEncryptionContext": c.context} if c.context else {})},
            "get_key_policy": {"KeyId": key_arn, "PolicyName": "default"},
            "tag_resource": {"KeyId": key_arn, "Tags": [{"TagKey": "t", "TagValue": "v"}]},
            "update_key_description": {"KeyId": key_arn, "Description": "changed"},
            "schedule_key_deletion": {"KeyId": key_arn, "PendingWindowInDays": 7},
        }.get(c.op, {"KeyId": key_arn})  # fmt: skip
        params.update(c.params)
        if c.op == "decrypt" and "CiphertextBlob" not in params:
            params["CiphertextBlob"] = blob
        try:
            answer = getattr(kms, c.op)(**params)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            request_id = error.response["ResponseMetadata"]["RequestId"]
            if code == "DryRunOperationException":
                return True, request_id
            assert code == "AccessDeniedException", (c.id, code, error.response["Error"])
            return False, request_id
        return True, answer["ResponseMetadata"]["RequestId"]

    def decided_by(self, request_id: str) -> str:
        for path in sorted((self.server.data_dir / "audit").glob("*.jsonl")):
            for line in reversed(path.read_text().splitlines()):
                record = json.loads(line)
                if record["request_id"] == request_id:
                    return str(record["decided_by"])
        raise AssertionError(f"no audit record for {request_id}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = Server(tmp_path_factory.mktemp("policy-table") / "data").start()
    try:
        yield World(server)
    finally:
        server.stop()


def test_the_table_is_large() -> None:
    assert len(CASES) >= 150, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES), "case ids are unique"


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_case(world: World, c: Case) -> None:
    key_arn, blob = world.key(c, c.statements)
    allowed, request_id = world.call(c, key_arn, blob)
    decided_by = world.decided_by(request_id)
    assert allowed is c.expect, f"{c.id}: expected {'allow' if c.expect else 'deny'} ({decided_by})"
    assert c.decided_by in decided_by, f"{c.id}: decided by {decided_by!r}"


# -- the same rows through `keycask policy simulate` --

ALGORITHM = ("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT")
# The operations the table calls that name their key by ``ref`` (an alias
# for by_alias rows); the others by the key's ARN or by the ciphertext.
BY_REF = {"encrypt", "generate_data_key", "generate_data_key_without_plaintext", "describe_key"}


def authorizations(c: Case) -> list[tuple[str, dict[str, str] | None, list[tuple[str, str]]]]:
    """What the server authorizes for the row, in order: the action, the
    encryption context it sees, and the operation's own condition keys that
    the handler derives from the parameters World.call sends (AWS's KMS
    condition key reference), as `policy simulate --condition` takes them."""
    params = c.params
    if c.op in ("encrypt", "decrypt", "generate_data_key", "generate_data_key_without_plaintext"):
        action = "kms:" + "".join(word.capitalize() for word in c.op.split("_"))
        return [(action, c.context, [ALGORITHM])]
    if c.op == "re_encrypt":
        return [
            ("kms:ReEncryptFrom", c.context, [ALGORITHM]),
            ("kms:ReEncryptTo", None, [ALGORITHM, ("kms:ReEncryptOnSameKey", "true")]),
        ]
    conditions: list[tuple[str, str]] = []
    if c.op == "tag_resource":
        tags = params.get("Tags", [{"TagKey": "t", "TagValue": "v"}])
        conditions += [(f"aws:RequestTag/{t['TagKey']}", t["TagValue"]) for t in tags]
        conditions += [("aws:TagKeys", t["TagKey"]) for t in tags]
    if c.op == "enable_key_rotation" and "RotationPeriodInDays" in params:
        conditions.append(("kms:RotationPeriodInDays", str(params["RotationPeriodInDays"])))
    if c.op == "schedule_key_deletion":
        days = params.get("PendingWindowInDays", 7)
        conditions.append(("kms:ScheduleKeyDeletionPendingWindowInDays", str(days)))
    action = "kms:" + "".join(word.capitalize() for word in c.op.split("_"))
    return [(action, None, conditions)]


def simulated(
    world: World, c: Case, key_arn: str, capsys: pytest.CaptureFixture[str]
) -> tuple[bool, str]:
    """The row through `keycask policy simulate`, in this process, on the
    running server's data directory: the decision, and what decided it as
    the audit record names it (both deciders for ReEncrypt)."""
    from keycask.cli.main import main

    principal = f"arn:aws:iam::{ACCOUNT}:user/admin" if c.who == "admin" else PRINCIPALS[c.who].arn
    ref = key_arn
    if c.by_alias and c.op in BY_REF:
        ref = world.admin.list_aliases(KeyId=key_arn)["Aliases"][0]["AliasName"]
    deciders: list[str] = []
    for action, context, conditions in authorizations(c):
        args = ["policy", "simulate", "--principal", principal, "--action", action, "--key", ref]
        args += ["--data-dir", str(world.server.data_dir), "--json"]
        # What the server's connection says: plain HTTP (the builder's
        # default) from the loopback address.
        for name, value in [*conditions, ("aws:SourceIp", "127.0.0.1")]:
            args += ["--condition", f"{name}={value}"]
        for name, value in (context or {}).items():
            args += ["--context", f"{name}={value}"]
        capsys.readouterr()
        code = main(args)
        out, err = capsys.readouterr()
        assert code in (0, 1), err
        answer = json.loads(out)
        deciders.append(answer["DecidedBy"])
        if answer["Decision"] != "allow":
            return False, "; ".join(deciders)
    return True, "; ".join(deciders)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_simulate_agrees_with_the_server(
    world: World, c: Case, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Differential: every row decided by the server and by `keycask policy
    simulate` (which builds the request's condition keys with the same
    function, resolves the key with the same resolver and runs the same
    evaluator) gives the same decision, decided by the same statement."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "KEYCASK_")):
            monkeypatch.delenv(name)  # the server's environment (Server.env)
    key_arn, blob = world.key(c, c.statements)
    allowed, request_id = world.call(c, key_arn, blob)
    server = (allowed, world.decided_by(request_id))
    assert simulated(world, c, key_arn, capsys) == server, c.id


ALLOWED_BY_KEY_POLICY = [
    c for c in CASES if c.expect and any(s["Effect"] == "Allow" for s in c.statements)
]


@pytest.mark.parametrize("c", ALLOWED_BY_KEY_POLICY, ids=[c.id for c in ALLOWED_BY_KEY_POLICY])
def test_removing_any_allow_statement_denies(world: World, c: Case) -> None:
    """Mutation: without any one of its Allow statements, an allowed case is denied."""
    for index, statement in enumerate(c.statements):
        if statement["Effect"] != "Allow":
            continue
        rest = [s for i, s in enumerate(c.statements) if i != index]
        if not rest:
            rest = [allow(user("nobody"), "kms:DescribeKey", "Placeholder")]
        key_arn, blob = world.key(c, rest)
        allowed, request_id = world.call(c, key_arn, blob)
        assert not allowed, f"{c.id} still allowed without {statement['Sid']}"
        assert world.decided_by(request_id) == "implicit deny" or "deny" in world.decided_by(
            request_id
        )


def test_repointing_or_deleting_an_alias_needs_the_key_it_points_to(world: World) -> None:
    """UpdateAlias and DeleteAlias need the permission on the alias and on the
    key the alias names now, not only on the new target: otherwise whoever
    controls one key could redirect another key's users to it."""
    admin, dora = world.admin, world.clients["dora"]
    guarded = admin.create_key(Description="guarded")["KeyMetadata"]["KeyId"]
    mine = admin.create_key(Description="dora's")["KeyMetadata"]["KeyId"]
    name = f"alias/guarded-{uuid.uuid4().hex[:8]}"
    admin.create_alias(AliasName=name, TargetKeyId=guarded)
    # The guarded key lets only the account's administrators in: no statement
    # for dora, no delegation to the account's identity policies.
    only_admins = {"Version": "2012-10-17", "Statement": [
        allow(f"arn:aws:iam::{ACCOUNT}:user/admin", "kms:*", "AdminsOnly")]}  # fmt: skip
    admin.put_key_policy(KeyId=guarded, Policy=json.dumps(only_admins),
                         BypassPolicyLockoutSafetyCheck=True)  # fmt: skip
    with pytest.raises(ClientError) as refused:
        dora.update_alias(AliasName=name, TargetKeyId=mine)
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "kms:UpdateAlias" in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as refused:
        dora.delete_alias(AliasName=name)
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    pages = admin.get_paginator("list_aliases").paginate()
    aliases = {a["AliasName"]: a for page in pages for a in page["Aliases"]}
    assert name in aliases
    # Dora may move an alias between keys that both let her.
    other = f"alias/mine-{uuid.uuid4().hex[:8]}"
    admin.create_alias(AliasName=other, TargetKeyId=mine)
    second = admin.create_key(Description="dora's second")["KeyMetadata"]["KeyId"]
    dora.update_alias(AliasName=other, TargetKeyId=second)
    dora.delete_alias(AliasName=other)
