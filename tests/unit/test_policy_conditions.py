"""Condition evaluation, table-driven against the IAM and KMS documentation:
every operator, IfExists, negation with absent keys, Null, the set operators,
policy variables and the case rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keycask.policy.conditions import RequestContext, condition_matches, conditions_match
from keycask.policy.document import Condition, parse_policy

ACCOUNT = "111122223333"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/Admin"
EC_TENANT = "kms:EncryptionContext:tenant"
TENANT_TAG = "aws:PrincipalTag/tenant"


def _condition(operator: str, key: str, value: Any, version: str = "2012-10-17") -> Condition:
    """The one condition of a policy, parsed as keycask will see it."""
    document = {
        "Version": version,
        "Statement": {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {operator: {key: value}},
        },
    }
    (condition,) = parse_policy(json.dumps(document), kind="key").statements[0].conditions
    return condition


# ARN operators compare segment by segment; StringLike's "*" crosses colons.
SPLIT_ARN = f"arn:aws:someservice:us-east-2:999999999999:store/abc:{ACCOUNT}:finance/document.txt"

# (case id, operator, condition key, policy value, request context, expected)
_TABLE: list[tuple[str, str, str, Any, dict[str, Any], bool]] = [
    # -- string -----------------------------------------------------------
    (
        "StringEquals/match",
        "StringEquals",
        "aws:username",
        "alice",
        {"aws:username": "alice"},
        True,
    ),
    (
        "StringEquals/case-sensitive",
        "StringEquals",
        "aws:username",
        "Alice",
        {"aws:username": "alice"},
        False,
    ),
    (
        "StringEquals/any-policy-value",
        "StringEquals",
        "aws:username",
        ["bob", "alice"],
        {"aws:username": "alice"},
        True,
    ),
    ("StringEquals/absent", "StringEquals", "aws:username", "alice", {}, False),
    (
        "StringEquals/star-is-literal",
        "StringEquals",
        "aws:username",
        "a*",
        {"aws:username": "ab"},
        False,
    ),
    (
        "StringEquals/star-literal-match",
        "StringEquals",
        "aws:username",
        "a*",
        {"aws:username": "a*"},
        True,
    ),
    ("StringEqualsIfExists/absent", "StringEqualsIfExists", "aws:username", "alice", {}, True),
    (
        "StringEqualsIfExists/mismatch",
        "StringEqualsIfExists",
        "aws:username",
        "alice",
        {"aws:username": "bob"},
        False,
    ),
    (
        "StringNotEquals/different",
        "StringNotEquals",
        "aws:username",
        "alice",
        {"aws:username": "bob"},
        True,
    ),
    (
        "StringNotEquals/same",
        "StringNotEquals",
        "aws:username",
        "alice",
        {"aws:username": "alice"},
        False,
    ),
    ("StringNotEquals/absent", "StringNotEquals", "aws:username", "alice", {}, True),
    (
        "StringNotEquals/in-value-list",
        "StringNotEquals",
        "aws:username",
        ["a", "b"],
        {"aws:username": "b"},
        False,
    ),
    ("StringNotEqualsIfExists/absent", "StringNotEqualsIfExists", "aws:username", "a", {}, True),
    (
        "StringEqualsIgnoreCase/match",
        "StringEqualsIgnoreCase",
        "aws:username",
        "ALICE",
        {"aws:username": "alice"},
        True,
    ),
    (
        "StringNotEqualsIgnoreCase/same",
        "StringNotEqualsIgnoreCase",
        "aws:username",
        "ALICE",
        {"aws:username": "alice"},
        False,
    ),
    (
        "StringNotEqualsIgnoreCase/absent",
        "StringNotEqualsIgnoreCase",
        "aws:username",
        "x",
        {},
        True,
    ),
    (
        "StringLike/star",
        "StringLike",
        "kms:ViaService",
        "ec2.*.amazonaws.com",
        {"kms:ViaService": "ec2.us-west-2.amazonaws.com"},
        True,
    ),
    (
        "StringLike/question",
        "StringLike",
        "aws:username",
        "app-?",
        {"aws:username": "app-12"},
        False,
    ),
    (
        "StringLike/question-match",
        "StringLike",
        "aws:username",
        "app-??",
        {"aws:username": "app-12"},
        True,
    ),
    (
        "StringLike/case-sensitive",
        "StringLike",
        "aws:username",
        "APP*",
        {"aws:username": "app"},
        False,
    ),
    ("StringLike/no-wildcard", "StringLike", "aws:username", "abc", {"aws:username": "abc"}, True),
    (
        "StringLike/escaped-star",
        "StringLike",
        "aws:username",
        "a${*}",
        {"aws:username": "a*"},
        True,
    ),
    (
        "StringLike/escaped-star-literal",
        "StringLike",
        "aws:username",
        "a${*}",
        {"aws:username": "ab"},
        False,
    ),
    (
        "StringNotLike/outside",
        "StringNotLike",
        "aws:username",
        "test*",
        {"aws:username": "prod"},
        True,
    ),
    (
        "StringNotLike/inside",
        "StringNotLike",
        "aws:username",
        "test*",
        {"aws:username": "testing"},
        False,
    ),
    ("StringNotLike/absent", "StringNotLike", "aws:username", "test*", {}, True),
    # -- numeric ----------------------------------------------------------
    (
        "NumericEquals/json-number",
        "NumericEquals",
        "kms:RotationPeriodInDays",
        90,
        {"kms:RotationPeriodInDays": "90"},
        True,
    ),
    (
        "NumericEquals/decimal",
        "NumericEquals",
        "kms:RotationPeriodInDays",
        "90",
        {"kms:RotationPeriodInDays": "90.0"},
        True,
    ),
    (
        "NumericEquals/negative",
        "NumericEquals",
        "kms:RotationPeriodInDays",
        "-1.5",
        {"kms:RotationPeriodInDays": "-1.50"},
        True,
    ),
    (
        "NumericNotEquals/different",
        "NumericNotEquals",
        "kms:RotationPeriodInDays",
        90,
        {"kms:RotationPeriodInDays": "30"},
        True,
    ),
    ("NumericNotEquals/absent", "NumericNotEquals", "kms:RotationPeriodInDays", 90, {}, True),
    (
        "NumericLessThan/below",
        "NumericLessThan",
        "kms:RotationPeriodInDays",
        90,
        {"kms:RotationPeriodInDays": "89"},
        True,
    ),
    (
        "NumericLessThan/equal",
        "NumericLessThan",
        "kms:RotationPeriodInDays",
        90,
        {"kms:RotationPeriodInDays": "90"},
        False,
    ),
    ("NumericLessThan/absent", "NumericLessThan", "kms:RotationPeriodInDays", 90, {}, False),
    (
        "NumericLessThan/not-a-number",
        "NumericLessThan",
        "kms:RotationPeriodInDays",
        90,
        {"kms:RotationPeriodInDays": "abc"},
        False,
    ),
    (
        "NumericLessThanEquals/equal",
        "NumericLessThanEquals",
        "kms:RotationPeriodInDays",
        90,
        {"kms:RotationPeriodInDays": "90"},
        True,
    ),
    (
        "NumericGreaterThan/above",
        "NumericGreaterThan",
        "kms:ScheduleKeyDeletionPendingWindowInDays",
        7,
        {"kms:ScheduleKeyDeletionPendingWindowInDays": "30"},
        True,
    ),
    (
        "NumericGreaterThanEquals/below",
        "NumericGreaterThanEquals",
        "kms:ScheduleKeyDeletionPendingWindowInDays",
        7,
        {"kms:ScheduleKeyDeletionPendingWindowInDays": "6"},
        False,
    ),
    (
        "NumericLessThanIfExists/absent",
        "NumericLessThanIfExists",
        "kms:RotationPeriodInDays",
        90,
        {},
        True,
    ),
    # -- date -------------------------------------------------------------
    (
        "DateLessThan/iso",
        "DateLessThan",
        "aws:CurrentTime",
        "2030-01-01T00:00:00Z",
        {"aws:CurrentTime": "2025-06-01T12:00:00Z"},
        True,
    ),
    (
        "DateGreaterThan/epoch-policy",
        "DateGreaterThan",
        "aws:CurrentTime",
        "1700000000",
        {"aws:CurrentTime": "2024-01-01T00:00:00Z"},
        True,
    ),
    (
        "DateEquals/offset",
        "DateEquals",
        "aws:CurrentTime",
        "2025-01-01T01:00:00+01:00",
        {"aws:CurrentTime": "2025-01-01T00:00:00Z"},
        True,
    ),
    (
        "DateNotEquals/same-instant",
        "DateNotEquals",
        "aws:CurrentTime",
        "2025-01-01T01:00:00+01:00",
        {"aws:CurrentTime": "2025-01-01T00:00:00Z"},
        False,
    ),
    ("DateNotEquals/absent", "DateNotEquals", "aws:CurrentTime", "2025-01-01", {}, True),
    (
        "DateLessThanEquals/date-only",
        "DateLessThanEquals",
        "aws:CurrentTime",
        "2025-01-01",
        {"aws:CurrentTime": "2025-01-01T00:00:00Z"},
        True,
    ),
    (
        "DateGreaterThanEquals/epoch-context",
        "DateGreaterThanEquals",
        "aws:EpochTime",
        "2025-01-01T00:00:00Z",
        {"aws:EpochTime": "1735689600"},
        True,
    ),
    (
        "DateGreaterThan/fractions",
        "DateGreaterThan",
        "aws:CurrentTime",
        "2025-01-01T00:00:00.5Z",
        {"aws:CurrentTime": "2025-01-01T00:00:00.25Z"},
        False,
    ),
    (
        "DateLessThan/garbage-context",
        "DateLessThan",
        "aws:CurrentTime",
        "2030-01-01",
        {"aws:CurrentTime": "soon"},
        False,
    ),
    (
        "DateLessThan/kms-validto",
        "DateLessThan",
        "kms:ValidTo",
        "2030-01-01T00:00:00Z",
        {"kms:ValidTo": "1893455999"},
        True,
    ),
    # -- bool -------------------------------------------------------------
    (
        "Bool/true",
        "Bool",
        "kms:GrantIsForAWSResource",
        "true",
        {"kms:GrantIsForAWSResource": "true"},
        True,
    ),
    (
        "Bool/case-insensitive",
        "Bool",
        "kms:GrantIsForAWSResource",
        "true",
        {"kms:GrantIsForAWSResource": "TRUE"},
        True,
    ),
    (
        "Bool/json-true-vs-false",
        "Bool",
        "aws:SecureTransport",
        True,
        {"aws:SecureTransport": "false"},
        False,
    ),
    (
        "Bool/python-bool-context",
        "Bool",
        "aws:SecureTransport",
        "false",
        {"aws:SecureTransport": False},
        True,
    ),
    ("Bool/absent", "Bool", "aws:SecureTransport", "true", {}, False),
    ("BoolIfExists/absent", "BoolIfExists", "aws:MultiFactorAuthPresent", "false", {}, True),
    (
        "Bool/not-boolean-context",
        "Bool",
        "aws:SecureTransport",
        "true",
        {"aws:SecureTransport": "yes"},
        False,
    ),
    # -- binary -----------------------------------------------------------
    (
        "BinaryEquals/match",
        "BinaryEquals",
        "kms:EncryptionContext:blob",
        "QmluYXJ5",
        {"kms:EncryptionContext:blob": "QmluYXJ5"},
        True,
    ),
    (
        "BinaryEquals/different",
        "BinaryEquals",
        "kms:EncryptionContext:blob",
        "QmluYXJ5",
        {"kms:EncryptionContext:blob": "QmluYXJ6"},
        False,
    ),
    (
        "BinaryEquals/not-base64",
        "BinaryEquals",
        "kms:EncryptionContext:blob",
        "QmluYXJ5",
        {"kms:EncryptionContext:blob": "B!nary"},
        False,
    ),
    # -- IP address -------------------------------------------------------
    (
        "IpAddress/in-v4",
        "IpAddress",
        "aws:SourceIp",
        "203.0.113.0/24",
        {"aws:SourceIp": "203.0.113.7"},
        True,
    ),
    (
        "IpAddress/out-v4",
        "IpAddress",
        "aws:SourceIp",
        "203.0.113.0/24",
        {"aws:SourceIp": "203.0.114.1"},
        False,
    ),
    (
        "IpAddress/bare-address",
        "IpAddress",
        "aws:SourceIp",
        "203.0.113.7",
        {"aws:SourceIp": "203.0.113.7"},
        True,
    ),
    (
        "IpAddress/in-v6",
        "IpAddress",
        "aws:SourceIp",
        "2001:DB8:1234:5678::/64",
        {"aws:SourceIp": "2001:db8:1234:5678::1"},
        True,
    ),
    (
        "IpAddress/out-v6",
        "IpAddress",
        "aws:SourceIp",
        "2001:DB8:1234:5678::/64",
        {"aws:SourceIp": "2001:db8:1234:5679::1"},
        False,
    ),
    (
        "IpAddress/v4-policy-v6-request",
        "IpAddress",
        "aws:SourceIp",
        "0.0.0.0/0",
        {"aws:SourceIp": "::1"},
        False,
    ),
    (
        "IpAddress/mixed-list",
        "IpAddress",
        "aws:SourceIp",
        ["10.0.0.0/8", "::1"],
        {"aws:SourceIp": "::1"},
        True,
    ),
    ("IpAddress/absent", "IpAddress", "aws:SourceIp", "10.0.0.0/8", {}, False),
    (
        "IpAddress/garbage-context",
        "IpAddress",
        "aws:SourceIp",
        "10.0.0.0/8",
        {"aws:SourceIp": "localhost"},
        False,
    ),
    (
        "NotIpAddress/outside",
        "NotIpAddress",
        "aws:SourceIp",
        "10.0.0.0/8",
        {"aws:SourceIp": "192.0.2.1"},
        True,
    ),
    (
        "NotIpAddress/inside",
        "NotIpAddress",
        "aws:SourceIp",
        "10.0.0.0/8",
        {"aws:SourceIp": "10.1.2.3"},
        False,
    ),
    ("NotIpAddress/absent", "NotIpAddress", "aws:SourceIp", "10.0.0.0/8", {}, True),
    # -- ARN --------------------------------------------------------------
    ("ArnEquals/exact", "ArnEquals", "aws:PrincipalArn", ADMIN, {"aws:PrincipalArn": ADMIN}, True),
    (
        "ArnEquals/globs-like-ArnLike",
        "ArnEquals",
        "aws:PrincipalArn",
        "arn:aws:iam::*:role/*",
        {"aws:PrincipalArn": ADMIN},
        True,
    ),
    (
        "ArnLike/segment-glob",
        "ArnLike",
        "aws:PrincipalArn",
        "arn:aws:iam::*:role/Admin*",
        {"aws:PrincipalArn": ADMIN + "X"},
        True,
    ),
    (
        "ArnLike/case-sensitive",
        "ArnLike",
        "aws:PrincipalArn",
        f"arn:aws:iam::{ACCOUNT}:role/admin",
        {"aws:PrincipalArn": ADMIN},
        False,
    ),
    (
        "ArnLike/star-stays-in-segment",
        "ArnLike",
        "aws:SourceArn",
        f"arn:aws:someservice:*:{ACCOUNT}:finance/*",
        {"aws:SourceArn": SPLIT_ARN},
        False,
    ),
    (
        "StringLike/star-crosses-segments",
        "StringLike",
        "aws:SourceArn",
        f"arn:aws:someservice:*:{ACCOUNT}:finance/*",
        {"aws:SourceArn": SPLIT_ARN},
        True,
    ),
    (
        "ArnLike/resource-with-colons",
        "ArnLike",
        "aws:SourceArn",
        f"arn:aws:logs:us-east-1:{ACCOUNT}:*",
        {"aws:SourceArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:x:*"},
        True,
    ),
    (
        "ArnLike/not-an-arn",
        "ArnLike",
        "aws:PrincipalArn",
        "arn:aws:iam::*:role/*",
        {"aws:PrincipalArn": "Admin"},
        False,
    ),
    (
        "ArnNotLike/mismatch",
        "ArnNotLike",
        "aws:PrincipalArn",
        "arn:aws:iam::*:user/*",
        {"aws:PrincipalArn": ADMIN},
        True,
    ),
    ("ArnNotEquals/absent", "ArnNotEquals", "aws:PrincipalArn", ADMIN, {}, True),
    (
        "ArnLikeIfExists/mismatch",
        "ArnLikeIfExists",
        "aws:PrincipalArn",
        "arn:aws:iam::*:user/*",
        {"aws:PrincipalArn": ADMIN},
        False,
    ),
    # -- Null -------------------------------------------------------------
    ("Null/true-absent", "Null", "kms:BypassPolicyLockoutSafetyCheck", "true", {}, True),
    (
        "Null/true-present",
        "Null",
        "kms:BypassPolicyLockoutSafetyCheck",
        True,
        {"kms:BypassPolicyLockoutSafetyCheck": "false"},
        False,
    ),
    (
        "Null/false-present",
        "Null",
        "aws:PrincipalTag/team",
        "false",
        {"aws:PrincipalTag/team": "x"},
        True,
    ),
    ("Null/false-absent", "Null", "aws:PrincipalTag/team", "false", {}, False),
    ("Null/upper-case-value", "Null", "aws:PrincipalTag/team", "TRUE", {}, True),
    ("Null/empty-set-is-absent", "Null", "aws:TagKeys", "true", {"aws:TagKeys": []}, True),
    # -- set operators ----------------------------------------------------
    (
        "ForAllValues/subset",
        "ForAllValues:StringEquals",
        "kms:EncryptionContextKeys",
        ["a", "b", "c"],
        {"kms:EncryptionContextKeys": ["a", "b"]},
        True,
    ),
    (
        "ForAllValues/extra-value",
        "ForAllValues:StringEquals",
        "kms:EncryptionContextKeys",
        ["a", "b"],
        {"kms:EncryptionContextKeys": ["a", "d"]},
        False,
    ),
    (
        "ForAllValues/absent-is-true",
        "ForAllValues:StringEquals",
        "kms:EncryptionContextKeys",
        ["a"],
        {},
        True,
    ),
    (
        "ForAllValues/empty-set-is-true",
        "ForAllValues:StringEquals",
        "kms:EncryptionContextKeys",
        ["a"],
        {"kms:EncryptionContextKeys": []},
        True,
    ),
    (
        "ForAllValues/empty-string-is-true",
        "ForAllValues:StringEquals",
        "aws:TagKeys",
        ["a"],
        {"aws:TagKeys": ""},
        True,
    ),
    (
        "ForAnyValue/one-matches",
        "ForAnyValue:StringEquals",
        "kms:GrantOperations",
        "Decrypt",
        {"kms:GrantOperations": ["Encrypt", "Decrypt"]},
        True,
    ),
    (
        "ForAnyValue/none-matches",
        "ForAnyValue:StringEquals",
        "kms:GrantOperations",
        "Decrypt",
        {"kms:GrantOperations": ["Encrypt", "Sign"]},
        False,
    ),
    (
        "ForAnyValue/absent-is-false",
        "ForAnyValue:StringEquals",
        "kms:GrantOperations",
        "Decrypt",
        {},
        False,
    ),
    (
        "ForAnyValue/empty-set-is-false",
        "ForAnyValue:StringEquals",
        "kms:ResourceAliases",
        "alias/x",
        {"kms:ResourceAliases": []},
        False,
    ),
    (
        "ForAnyValue/empty-string-is-false",
        "ForAnyValue:StringEquals",
        "aws:TagKeys",
        "",
        {"aws:TagKeys": ""},
        False,
    ),
    (
        "ForAllValues:StringNotEquals/none-listed",
        "ForAllValues:StringNotEquals",
        "aws:TagKeys",
        ["Project"],
        {"aws:TagKeys": ["Owner", "Stage"]},
        True,
    ),
    (
        "ForAllValues:StringNotEquals/one-listed",
        "ForAllValues:StringNotEquals",
        "aws:TagKeys",
        ["Project"],
        {"aws:TagKeys": ["Owner", "Project"]},
        False,
    ),
    (
        "ForAllValues:StringNotEquals/absent",
        "ForAllValues:StringNotEquals",
        "aws:TagKeys",
        ["Project"],
        {},
        True,
    ),
    (
        "ForAnyValue:StringNotEquals/one-unlisted",
        "ForAnyValue:StringNotEquals",
        "aws:TagKeys",
        ["Project"],
        {"aws:TagKeys": ["Project", "Owner"]},
        True,
    ),
    (
        "ForAnyValue:StringNotEquals/all-listed",
        "ForAnyValue:StringNotEquals",
        "aws:TagKeys",
        ["Project"],
        {"aws:TagKeys": ["Project"]},
        False,
    ),
    (
        "ForAnyValue:StringLike/org-path",
        "ForAnyValue:StringLike",
        "aws:PrincipalOrgPaths",
        "o-1/*",
        {"aws:PrincipalOrgPaths": ["o-1/r-1/ou-2/"]},
        True,
    ),
    (
        "ForAllValues:StringLike/tag-keys",
        "ForAllValues:StringLike",
        "aws:TagKeys",
        "Created*",
        {"aws:TagKeys": ["CreatedBy", "CreatedAt"]},
        True,
    ),
    (
        "ForAnyValue/single-valued-key",
        "ForAnyValue:StringEquals",
        EC_TENANT,
        "acme",
        {EC_TENANT: "acme"},
        True,
    ),
    (
        "ForAnyValue-IfExists/absent",
        "ForAnyValue:StringEqualsIfExists",
        "kms:GrantOperations",
        "Decrypt",
        {},
        True,
    ),
    (
        "ForAnyValue:NumericLessThan",
        "ForAnyValue:NumericLessThan",
        "aws:TagKeys",
        5,
        {"aws:TagKeys": ["9", "3"]},
        True,
    ),
    (
        "no-set-operator/multi-any",
        "StringEquals",
        "kms:EncryptionContextKeys",
        "a",
        {"kms:EncryptionContextKeys": ["x", "a"]},
        True,
    ),
    (
        "no-set-operator/multi-negated",
        "StringNotEquals",
        "kms:EncryptionContextKeys",
        "a",
        {"kms:EncryptionContextKeys": ["x", "a"]},
        False,
    ),
    # -- policy variables -------------------------------------------------
    (
        "variable/principal-tag-match",
        "StringEquals",
        EC_TENANT,
        "${aws:PrincipalTag/tenant}",
        {EC_TENANT: "acme", TENANT_TAG: "acme"},
        True,
    ),
    (
        "variable/principal-tag-other",
        "StringEquals",
        EC_TENANT,
        "${aws:PrincipalTag/tenant}",
        {EC_TENANT: "acme", TENANT_TAG: "umbrella"},
        False,
    ),
    (
        "variable/absent-never-matches",
        "StringEquals",
        EC_TENANT,
        "${aws:PrincipalTag/tenant}",
        {EC_TENANT: "acme"},
        False,
    ),
    (
        "variable/absent-negated-holds",
        "StringNotEquals",
        EC_TENANT,
        "${aws:PrincipalTag/tenant}",
        {EC_TENANT: "acme"},
        True,
    ),
    (
        "variable/absent-not-even-empty",
        "StringEquals",
        EC_TENANT,
        "${aws:PrincipalTag/tenant}",
        {EC_TENANT: ""},
        False,
    ),
    (
        "variable/default",
        "StringEquals",
        EC_TENANT,
        "${aws:PrincipalTag/tenant, 'none'}",
        {EC_TENANT: "none"},
        True,
    ),
    (
        "variable/default-unused",
        "StringEquals",
        EC_TENANT,
        "${aws:PrincipalTag/tenant, 'none'}",
        {EC_TENANT: "none", TENANT_TAG: "acme"},
        False,
    ),
    (
        "variable/in-like-pattern",
        "StringLike",
        "kms:EncryptionContext:path",
        "home/${aws:username}/*",
        {"kms:EncryptionContext:path": "home/alice/docs", "aws:username": "alice"},
        True,
    ),
    (
        "variable/other-user",
        "StringLike",
        "kms:EncryptionContext:path",
        "home/${aws:username}/*",
        {"kms:EncryptionContext:path": "home/bob/docs", "aws:username": "alice"},
        False,
    ),
    (
        "variable/substituted-star-is-literal",
        "StringLike",
        EC_TENANT,
        "${aws:username}",
        {EC_TENANT: "abc", "aws:username": "a*"},
        False,
    ),
    (
        "variable/ignore-case",
        "StringEqualsIgnoreCase",
        EC_TENANT,
        "${aws:userid}",
        {EC_TENANT: "AIDAEXAMPLE", "aws:userid": "aidaexample"},
        True,
    ),
    (
        "variable/account",
        "StringEquals",
        "kms:CallerAccount",
        "${aws:PrincipalAccount}",
        {"kms:CallerAccount": ACCOUNT, "aws:PrincipalAccount": ACCOUNT},
        True,
    ),
    (
        "variable/whole-arn",
        "ArnEquals",
        "kms:GranteePrincipal",
        "${aws:PrincipalArn}",
        {"kms:GranteePrincipal": ADMIN, "aws:PrincipalArn": ADMIN},
        True,
    ),
    (
        "variable/arn-segment",
        "ArnLike",
        "kms:GranteePrincipal",
        "arn:aws:iam::${aws:PrincipalAccount}:role/*",
        {"kms:GranteePrincipal": ADMIN, "aws:PrincipalAccount": ACCOUNT},
        True,
    ),
    (
        "variable/multivalued-at-runtime",
        "StringEquals",
        EC_TENANT,
        "${aws:PrincipalTag/tenant}",
        {EC_TENANT: "a", TENANT_TAG: ["a", "b"]},
        False,
    ),
    # -- case rules -------------------------------------------------------
    (
        "case/context-key-any-case",
        "StringEquals",
        "kms:EncryptionContext:appname",
        "x",
        {"KMS:ENCRYPTIONCONTEXT:AppName": "x"},
        True,
    ),
    (
        "case/policy-key-any-case",
        "StringEquals",
        "kms:EncryptionContext:Appname",
        "ExampleApp",
        {"kms:EncryptionContext:AppName": "ExampleApp"},
        True,
    ),
    (
        "case/value-still-sensitive",
        "StringEquals",
        "kms:EncryptionContext:Appname",
        "ExampleApp",
        {"kms:EncryptionContext:AppName": "exampleapp"},
        False,
    ),
    (
        "case/context-keys-values-sensitive",
        "ForAnyValue:StringEquals",
        "kms:EncryptionContextKeys",
        "AppName",
        {"kms:EncryptionContextKeys": ["appname"]},
        False,
    ),
    (
        "case/tag-key-any-case",
        "StringEquals",
        "aws:ResourceTag/Owner",
        "alice",
        {"aws:ResourceTag/owner": "alice"},
        True,
    ),
    (
        # Finding 8: keys that differ only by case make the key ambiguous; an
        # Allow's condition must then hold for every value.
        "case/colliding-keys-all",
        "StringEquals",
        "kms:EncryptionContext:dept",
        "IT",
        {"kms:EncryptionContext:Dept": "IT", "kms:EncryptionContext:dept": "HR"},
        False,
    ),
    (
        "case/colliding-keys-negated",
        "StringNotEquals",
        "kms:EncryptionContext:dept",
        "IT",
        {"kms:EncryptionContext:Dept": "IT", "kms:EncryptionContext:dept": "HR"},
        False,
    ),
]


CASES = [pytest.param(*row, id=name) for name, *row in _TABLE]


@pytest.mark.parametrize(("operator", "key", "value", "context", "expected"), CASES)
def test_condition(
    operator: str, key: str, value: Any, context: dict[str, Any], expected: bool
) -> None:
    condition = _condition(operator, key, value)
    assert condition_matches(condition, RequestContext.of(context)) is expected


def test_case_table_is_large_enough() -> None:
    assert len(CASES) >= 80


def test_variables_are_literal_in_2008_policies() -> None:
    condition = _condition("StringEquals", "aws:username", "${aws:username}", "2008-10-17")
    literal = RequestContext.of({"aws:username": "${aws:username}"})
    assert condition_matches(condition, literal)
    assert not condition_matches(condition, RequestContext.of({"aws:username": "alice"}))


def test_conditions_match_is_and() -> None:
    a = _condition("StringEquals", "aws:username", "alice")
    b = _condition("Bool", "aws:SecureTransport", "true")
    context = RequestContext.of({"aws:username": "alice", "aws:SecureTransport": True})
    assert conditions_match((a, b), context)
    assert not conditions_match((a, b), context.with_values({"aws:SecureTransport": False}))
    assert conditions_match((), RequestContext.of({}))


def test_tenant_isolation_policy() -> None:
    """The access-control issue's case: a tenant's principals use only their
    own tenant's encryption context, written once for every tenant."""
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Tenant data only",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/TenantWorker"},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:EncryptionContext:tenant": "${aws:PrincipalTag/tenant}"}
                },
            }
        ],
    }
    (statement,) = parse_policy(json.dumps(document), kind="key").statements
    conditions = statement.conditions
    own = RequestContext.of({TENANT_TAG: "acme", EC_TENANT: "acme"})
    other = RequestContext.of({TENANT_TAG: "acme", EC_TENANT: "umbrella"})
    untagged = RequestContext.of({EC_TENANT: "acme"})
    no_context = RequestContext.of({TENANT_TAG: "acme"})
    assert conditions_match(conditions, own)
    assert not conditions_match(conditions, other)
    assert not conditions_match(conditions, untagged)
    assert not conditions_match(conditions, no_context)


def test_hand_built_conditions_never_raise() -> None:
    context = RequestContext.of({"k": "v", "aws:username": "alice"})
    odd = [
        Condition("NumericEquals", False, None, "k", ("abc",)),
        Condition("DateEquals", False, None, "k", ("never",)),
        Condition("IpAddress", False, None, "k", ("nowhere",)),
        Condition("BinaryEquals", False, None, "k", ("!!",)),
        Condition("ArnLike", False, None, "k", ("not-an-arn",)),
        Condition("StringEquals", False, None, "k", ("${unclosed",), variables=True),
        Condition("Frobnicate", False, None, "k", ("v",)),
    ]
    for condition in odd:
        assert condition_matches(condition, context) is False


# -- RequestContext -----------------------------------------------------------


def test_request_context_conversions() -> None:
    context = RequestContext.of(
        {
            "aws:SecureTransport": True,
            "kms:RotationPeriodInDays": 90,
            "aws:TagKeys": ["b", "a", "b"],
            "kms:EncryptionContextKeys": [],
            "aws:username": "alice",
        }
    )
    assert context["aws:securetransport"] == "true"
    assert context["AWS:SecureTransport"] == "true"
    assert context["kms:rotationperiodindays"] == "90"
    assert context["aws:tagkeys"] == ("b", "a")
    assert "kms:encryptioncontextkeys" not in context
    assert sorted(context) == [
        "aws:securetransport",
        "aws:tagkeys",
        "aws:username",
        "kms:rotationperiodindays",
    ]
    assert len(context) == 4


def test_request_context_is_read_only_and_copies() -> None:
    context = RequestContext.of({"aws:username": "alice"})
    with pytest.raises(TypeError):
        context["aws:username"] = "bob"  # type: ignore[index]
    changed = context.with_values({"AWS:USERNAME": "bob"})
    assert context["aws:username"] == "alice"
    assert changed["aws:username"] == "bob"


def test_request_context_refuses_non_strings() -> None:
    with pytest.raises(TypeError):
        RequestContext.of({"aws:TagKeys": [1, 2]})  # type: ignore[list-item]


def test_an_ambiguous_key_never_helps_the_caller() -> None:
    # Finding 8: {"tenant": "b", "TENANT": "a"} read by a tenant-a guardrail.
    context = RequestContext.of(
        {
            "kms:EncryptionContext:tenant": "b",
            "kms:EncryptionContext:TENANT": "a",
            "aws:PrincipalTag/tenant": "a",
        }
    )
    guardrail = _condition(
        "StringNotEquals", "kms:EncryptionContext:tenant", "${aws:PrincipalTag/tenant}"
    )
    allow = _condition("StringEquals", "kms:EncryptionContext:tenant", "${aws:PrincipalTag/tenant}")
    # The Deny applies (one reading is not tenant a) ...
    assert condition_matches(guardrail, context, deny=True)
    # ... and the Allow does not (one reading is not tenant a).
    assert not condition_matches(allow, context)
    # A single value behaves as before, whatever the effect.
    clean = RequestContext.of({"kms:EncryptionContext:tenant": "a", "aws:PrincipalTag/tenant": "a"})
    assert not condition_matches(guardrail, clean, deny=True)
    assert condition_matches(allow, clean)
    # A multivalued key keeps AWS's any-value reading without a set operator.
    keys = RequestContext.of({"kms:EncryptionContextKeys": ("a", "b")})
    assert condition_matches(_condition("StringEquals", "kms:EncryptionContextKeys", "a"), keys)
