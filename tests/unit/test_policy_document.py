"""parse_policy accepts the policies AWS documents and refuses, with a message
naming the problem, every malformed variant."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.loaders import Loader

from keycask.errors import MalformedPolicyDocumentException
from keycask.keys.model import default_key_policy
from keycask.policy.document import parse_policy
from keycask.policy.glob import action_matches
from keycask.policy.model import Condition, PrincipalSpec, Text, Variable
from keycask.policy.values import parse_instant, parse_template
from keycask.policy.vocabulary import KMS_ACTIONS, MAX_POLICY_BYTES

ACCOUNT = "111122223333"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ADMIN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ExampleAdminRole"
USER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ExampleUserRole"

# The KMS Developer Guide's default key policy for keys made in the console:
# the account, key administrators, key users, and grants for AWS resources.
CONSOLE_POLICY: dict[str, Any] = {
    "Id": "key-consolepolicy-3",
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": ROOT},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Sid": "Allow access for Key Administrators",
            "Effect": "Allow",
            "Principal": {"AWS": ADMIN_ROLE},
            "Action": [
                "kms:Create*",
                "kms:Describe*",
                "kms:Enable*",
                "kms:List*",
                "kms:Put*",
                "kms:Update*",
                "kms:Revoke*",
                "kms:Disable*",
                "kms:Get*",
                "kms:Delete*",
                "kms:TagResource",
                "kms:UntagResource",
                "kms:ScheduleKeyDeletion",
                "kms:CancelKeyDeletion",
                "kms:RotateKeyOnDemand",
            ],
            "Resource": "*",
        },
        {
            "Sid": "Allow use of the key",
            "Effect": "Allow",
            "Principal": {"AWS": USER_ROLE},
            "Action": [
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:DescribeKey",
            ],
            "Resource": "*",
        },
        {
            "Sid": "Allow attachment of persistent resources",
            "Effect": "Allow",
            "Principal": {"AWS": USER_ROLE},
            "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            "Resource": "*",
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        },
    ],
}

# Examples from the "AWS KMS condition keys" page: a service-restricted
# statement for every principal of the account, and a ForAllValues limit on
# the encryption context keys.
VIA_SERVICE_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Allow access through EBS for all principals in the account",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Condition": {
                "StringEquals": {
                    "kms:CallerAccount": ACCOUNT,
                    "kms:ViaService": "ec2.us-west-2.amazonaws.com",
                }
            },
            "Action": [
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:CreateGrant",
                "kms:DescribeKey",
            ],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/RoleForExampleApp"},
            "Action": "kms:GenerateDataKey",
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "kms:EncryptionContext:Department": "IT",
                    "kms:EncryptionContext:Project": "Alpha",
                },
                "ForAllValues:StringEquals": {
                    "kms:EncryptionContextKeys": ["Department", "Project"]
                },
            },
        },
        {
            "Sid": "Deny non-default algorithm",
            "Effect": "Deny",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/ExampleRole"},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*"],
            "Resource": "*",
            "Condition": {"StringNotEquals": {"kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}},
        },
    ],
}

IDENTITY_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "AllowOnlySymmetricAlgorithm",
            "Effect": "Deny",
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
            "Resource": f"arn:aws:kms:us-west-2:{ACCOUNT}:key/*",
            "Condition": {"StringNotEquals": {"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}},
        },
        {
            "Effect": "Allow",
            "Action": ["kms:CreateKey", "kms:PutKeyPolicy"],
            "Resource": "*",
            "Condition": {"Bool": {"kms:BypassPolicyLockoutSafetyCheck": False}},
        },
    ],
}


def _key_statement(**changes: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": "S1",
        "Effect": "Allow",
        "Principal": {"AWS": ROOT},
        "Action": "kms:Decrypt",
        "Resource": "*",
    }
    for name, value in changes.items():
        if value is None:
            statement.pop(name, None)
        else:
            statement[name] = value
    return statement


def _doc(*statements: dict[str, Any], **top: Any) -> str:
    document: dict[str, Any] = {"Version": "2012-10-17", "Statement": list(statements)}
    document.update(top)
    return json.dumps(document)


def _with_condition(condition: Any) -> str:
    return _doc(_key_statement(Condition=condition))


# -- accepted ---------------------------------------------------------------


def test_default_key_policy_parses() -> None:
    policy = parse_policy(default_key_policy(ACCOUNT), kind="key")
    assert policy.version == "2012-10-17"
    assert policy.id == "key-default-1"
    (statement,) = policy.statements
    assert statement.sid == "Enable IAM User Permissions"
    assert statement.effect == "Allow"
    assert statement.principal == PrincipalSpec(any=False, aws=(ROOT,))
    assert statement.actions == ("kms:*",)
    assert statement.resources == ("*",)
    assert statement.conditions == ()
    assert statement.index == 0


def test_console_key_policy_parses() -> None:
    policy = parse_policy(json.dumps(CONSOLE_POLICY), kind="key")
    assert [s.sid for s in policy.statements] == [
        "Enable IAM User Permissions",
        "Allow access for Key Administrators",
        "Allow use of the key",
        "Allow attachment of persistent resources",
    ]
    admins = policy.statements[1]
    assert admins.principal is not None and admins.principal.aws == (ADMIN_ROLE,)
    assert "kms:create*" in (admins.actions or ())
    grants = policy.statements[3]
    assert grants.conditions == (
        Condition("Bool", False, None, "kms:grantisforawsresource", ("true",)),
    )
    assert grants.conditions[0].key_as_written == "kms:GrantIsForAWSResource"


def test_condition_key_examples_parse() -> None:
    policy = parse_policy(json.dumps(VIA_SERVICE_POLICY), kind="key")
    first = policy.statements[0]
    assert first.principal == PrincipalSpec(any=True)
    assert [c.key for c in first.conditions] == ["kms:calleraccount", "kms:viaservice"]
    second = policy.statements[1]
    assert [(c.operator, c.set_operator, c.key) for c in second.conditions] == [
        ("StringEquals", None, "kms:encryptioncontext:department"),
        ("StringEquals", None, "kms:encryptioncontext:project"),
        ("StringEquals", "ForAllValues", "kms:encryptioncontextkeys"),
    ]
    assert second.conditions[2].values == ("Department", "Project")
    assert policy.statements[2].effect == "Deny"


def test_identity_policy_parses() -> None:
    policy = parse_policy(json.dumps(IDENTITY_POLICY), kind="identity")
    assert policy.statements[0].principal is None
    assert policy.statements[0].resources == (f"arn:aws:kms:us-west-2:{ACCOUNT}:key/*",)
    # A JSON boolean becomes the string AWS compares.
    assert policy.statements[1].conditions[0].values == ("false",)


def test_single_statement_object_and_no_version() -> None:
    text = json.dumps({"Statement": _key_statement()})
    policy = parse_policy(text, kind="key")
    assert policy.version is None
    assert len(policy.statements) == 1


def test_principal_forms() -> None:
    text = _doc(
        _key_statement(Principal="*", Sid="A"),
        _key_statement(Principal={"AWS": [ACCOUNT, ROOT, "*"]}, Sid="B"),
        _key_statement(
            Principal={
                "AWS": [
                    f"arn:aws:iam::{ACCOUNT}:user/path/alice",
                    f"arn:aws:sts::{ACCOUNT}:assumed-role/Role/session",
                ],
                "Service": "ec2.amazonaws.com",
            },
            Sid="C",
        ),
        _key_statement(Principal=None, NotPrincipal={"AWS": ROOT}, Sid="D"),
    )
    a, b, c, d = parse_policy(text, kind="key").statements
    assert a.principal == PrincipalSpec(any=True)
    # The bare account id means the account's root, and duplicates collapse.
    assert b.principal == PrincipalSpec(any=True, aws=(ROOT,))
    assert c.principal is not None and c.principal.services == ("ec2.amazonaws.com",)
    assert len(c.principal.aws) == 2
    assert d.principal is None and d.not_principal == PrincipalSpec(any=False, aws=(ROOT,))


def test_actions_are_lower_cased_and_other_services_kept() -> None:
    text = _doc(_key_statement(Action=["KMS:Decrypt", "kms:GenerateDataKey*", "iam:*", "*"]))
    (statement,) = parse_policy(text, kind="key").statements
    assert statement.actions == ("kms:decrypt", "kms:generatedatakey*", "iam:*", "*")


def test_not_action_and_not_resource() -> None:
    text = _doc(
        _key_statement(
            Action=None, NotAction="kms:ScheduleKeyDeletion", Resource=None, NotResource="*"
        )
    )
    (statement,) = parse_policy(text, kind="key").statements
    assert statement.actions is None and statement.not_actions == ("kms:schedulekeydeletion",)
    assert statement.resources is None and statement.not_resources == ("*",)


def test_condition_details() -> None:
    text = _with_condition(
        {
            "ForAnyValue:StringLikeIfExists": {"kms:EncryptionContextKeys": ["app*", "svc?"]},
            "NumericLessThanEquals": {"kms:RotationPeriodInDays": 365},
            "DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"},
            "IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8:1234:5678::/64"]},
            "Null": {"aws:PrincipalTag/Team": "false"},
            "StringEquals": {"kms:EncryptionContext:AppName": "${aws:username}"},
            "BinaryEquals": {"kms:EncryptionContext:blob": "QmluYXJ5"},
        }
    )
    conditions = parse_policy(text, kind="key").statements[0].conditions
    like, numeric, date, ip, null, variable, binary = conditions
    assert (like.set_operator, like.operator, like.if_exists) == (
        "ForAnyValue",
        "StringLike",
        True,
    )
    assert numeric.values == ("365",)
    assert date.operator == "DateGreaterThan"
    assert len(ip.values) == 2
    assert null.key == "aws:principaltag/team" and null.key_as_written == "aws:PrincipalTag/Team"
    # Only string and ARN operators substitute variables.
    assert variable.variables and not numeric.variables and not binary.variables
    assert variable.key == "kms:encryptioncontext:appname"


def test_variables_are_literal_before_2012() -> None:
    text = _doc(
        _key_statement(Condition={"StringEquals": {"aws:username": "${aws:nonsense"}}),
        Version="2008-10-17",
    )
    (condition,) = parse_policy(text, kind="key").statements[0].conditions
    assert not condition.variables


def test_json_numbers_keep_their_text() -> None:
    text = (
        '{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*",'
        '"Action":"kms:Decrypt","Resource":"*","Condition":{"NumericEquals":'
        '{"kms:RotationPeriodInDays":[90, 1.50, 1e2, 123456789012345678901234567890]}}}}'
    )
    (condition,) = parse_policy(text, kind="key").statements[0].conditions
    assert condition.values == ("90", "1.50", "1e2", "123456789012345678901234567890")


def test_condition_keys_are_case_insensitive_and_equal() -> None:
    a = parse_policy(
        _with_condition({"StringEquals": {"KMS:encryptionCONTEXT:AppName": "x"}}), kind="key"
    )
    b = parse_policy(
        _with_condition({"StringEquals": {"kms:EncryptionContext:appname": "x"}}), kind="key"
    )
    assert a.statements[0].conditions == b.statements[0].conditions


def test_empty_condition_object_is_no_condition() -> None:
    assert parse_policy(_with_condition({}), kind="key").statements[0].conditions == ()


def test_key_policy_sid_may_have_spaces_identity_may_not() -> None:
    parse_policy(_doc(_key_statement(Sid="Allow use of the key")), kind="key")
    with pytest.raises(MalformedPolicyDocumentException, match="letters and digits"):
        parse_policy(
            _doc({"Sid": "Has space", "Effect": "Allow", "Action": "kms:*", "Resource": "*"}),
            kind="identity",
        )


# -- refused ----------------------------------------------------------------

_STATEMENT = _key_statement()
_MALFORMED: list[tuple[str, str, str]] = [
    # (case id, policy text, fragment of the message)
    ("not-json", "{", "not valid JSON"),
    ("json-array", "[]", "must be a JSON object"),
    ("json-string", '"policy"', "must be a JSON object"),
    ("empty", "   ", "empty"),
    ("unknown-top", _doc(_STATEMENT, Statements=[]), 'unknown element "Statements"'),
    ("version-wrong", _doc(_STATEMENT, Version="2012-10-18"), "Version"),
    ("version-number", _doc(_STATEMENT, Version=2012), "Version must be the string"),
    ("id-not-string", _doc(_STATEMENT, Id=7), "Id must be a string"),
    ("no-statement", json.dumps({"Version": "2012-10-17"}), "no Statement"),
    ("statement-empty", _doc(), "at least one statement"),
    ("statement-string", json.dumps({"Statement": "Allow"}), "object or a list"),
    ("statement-not-object", json.dumps({"Statement": ["x"]}), "Statement 1 must be a JSON object"),
    ("unknown-element", _doc(_key_statement(Actions="kms:*")), 'did you mean "Action"'),
    ("effect-missing", _doc(_key_statement(Effect=None)), "no Effect"),
    ("effect-lower", _doc(_key_statement(Effect="allow")), 'exactly "Allow" or "Deny"'),
    ("effect-list", _doc(_key_statement(Effect=["Allow"])), 'exactly "Allow" or "Deny"'),
    (
        "action-and-notaction",
        _doc(_key_statement(NotAction="kms:Encrypt")),
        "both Action and NotAction",
    ),
    ("no-action", _doc(_key_statement(Action=None)), "no Action"),
    ("action-empty-list", _doc(_key_statement(Action=[])), "Action is an empty list"),
    ("action-number", _doc(_key_statement(Action=5)), "must be a string"),
    ("action-in-list-number", _doc(_key_statement(Action=["kms:Decrypt", 5])), "entry 2"),
    ("action-typo", _doc(_key_statement(Action="kms:Decrpyt")), 'did you mean "kms:Decrypt"'),
    ("action-reencrypt", _doc(_key_statement(Action="kms:ReEncrypt")), "kms:ReEncryptFrom"),
    ("action-wildcard-nothing", _doc(_key_statement(Action="kms:Decrpt*")), "matches no KMS"),
    ("action-no-colon", _doc(_key_statement(Action="Decrypt")), "is not an action"),
    ("action-prefix-wildcard", _doc(_key_statement(Action="km?:Decrypt")), "service prefix"),
    ("resource-and-notresource", _doc(_key_statement(NotResource="*")), "both Resource and"),
    ("no-resource", _doc(_key_statement(Resource=None)), "no Resource"),
    ("resource-not-arn", _doc(_key_statement(Resource="key/1234")), "neither"),
    ("resource-empty-list", _doc(_key_statement(Resource=[])), "Resource is an empty list"),
    ("principal-missing", _doc(_key_statement(Principal=None)), "no Principal"),
    (
        "principal-and-not",
        _doc(_key_statement(NotPrincipal="*")),
        "both Principal and NotPrincipal",
    ),
    ("principal-arn-string", _doc(_key_statement(Principal=ROOT)), 'must be "*" or an object'),
    ("principal-empty", _doc(_key_statement(Principal={})), "empty object"),
    ("principal-federated", _doc(_key_statement(Principal={"Federated": "x"})), "Federated"),
    (
        "principal-bad-arn",
        _doc(_key_statement(Principal={"AWS": "arn:aws:iam::12:root"})),
        "not a principal",
    ),
    (
        "principal-bad-kind",
        _doc(_key_statement(Principal={"AWS": "arn:aws:s3:::bucket"})),
        "not a principal",
    ),
    (
        "principal-wildcard",
        _doc(_key_statement(Principal={"AWS": "arn:aws:iam::111122223333:role/*"})),
        "wildcards",
    ),
    (
        "principal-short-account",
        _doc(_key_statement(Principal={"AWS": "11112222333"})),
        "not a principal",
    ),
    (
        "principal-service-bad",
        _doc(_key_statement(Principal={"Service": "not a service"})),
        "service principal",
    ),
    ("sid-number", _doc(_key_statement(Sid=1)), "Sid must be a string"),
    ("sid-duplicate", _doc(_key_statement(), _key_statement()), "share the Sid"),
    ("duplicate-name", '{"Statement": [], "Statement": []}', 'repeats the name "Statement"'),
    ("nan", '{"Version": NaN}', "NaN"),
    ("condition-not-object", _with_condition([]), "object of condition operators"),
    (
        "operator-unknown",
        _with_condition({"StringEqual": {"aws:username": "a"}}),
        'did you mean "StringEquals"',
    ),
    (
        "operator-case",
        _with_condition({"stringequals": {"aws:username": "a"}}),
        "not a condition operator",
    ),
    (
        "operator-bad-set",
        _with_condition({"ForSomeValues:StringEquals": {"aws:username": "a"}}),
        "not a condition operator",
    ),
    ("null-ifexists", _with_condition({"NullIfExists": {"aws:username": "true"}}), "IfExists"),
    (
        "null-set-operator",
        _with_condition({"ForAnyValue:Null": {"aws:tagkeys": "true"}}),
        "cannot qualify Null",
    ),
    ("operator-block-list", _with_condition({"StringEquals": ["a"]}), "object of condition keys"),
    ("operator-block-empty", _with_condition({"StringEquals": {}}), "names no condition key"),
    (
        "key-misspelled",
        _with_condition({"StringEquals": {"kms:EncryptionContxt:a": "b"}}),
        "not a known condition key",
    ),
    (
        "key-unknown-service",
        _with_condition({"StringEquals": {"s3:prefix": "a"}}),
        '"s3:prefix" is not a known',
    ),
    (
        "key-suggestion",
        _with_condition({"StringEquals": {"kms:CallerAcount": "1"}}),
        'did you mean "kms:calleraccount"',
    ),
    (
        "key-prefix-only",
        _with_condition({"StringEquals": {"kms:EncryptionContext:": "b"}}),
        "needs a name",
    ),
    (
        "tag-prefix-only",
        _with_condition({"StringEquals": {"aws:PrincipalTag/": "b"}}),
        "needs a name",
    ),
    (
        "forallvalues-context",
        _with_condition({"ForAllValues:StringEquals": {"kms:EncryptionContext:a": "b"}}),
        "OverlyPermissiveCondition",
    ),
    (
        "forallvalues-requesttag",
        _with_condition({"ForAllValues:StringEquals": {"aws:RequestTag/a": "b"}}),
        "OverlyPermissiveCondition",
    ),
    ("value-null", _with_condition({"StringEquals": {"aws:username": None}}), "not null"),
    (
        "value-object",
        _with_condition({"StringEquals": {"aws:username": {"a": 1}}}),
        "not an object",
    ),
    (
        "value-nested-list",
        _with_condition({"StringEquals": {"aws:username": [["a"]]}}),
        "not a list",
    ),
    ("value-empty-list", _with_condition({"StringEquals": {"aws:username": []}}), "empty list"),
    (
        "bad-number",
        _with_condition({"NumericLessThan": {"kms:RotationPeriodInDays": "ninety"}}),
        "is not a number",
    ),
    (
        "number-nan-string",
        _with_condition({"NumericEquals": {"kms:RotationPeriodInDays": "NaN"}}),
        "is not a number",
    ),
    (
        "bad-date",
        _with_condition({"DateLessThan": {"aws:CurrentTime": "2020-13-01T00:00:00Z"}}),
        "is not a date",
    ),
    (
        "bad-date-text",
        _with_condition({"DateLessThan": {"aws:CurrentTime": "yesterday"}}),
        "is not a date",
    ),
    (
        "bad-bool",
        _with_condition({"Bool": {"aws:SecureTransport": "yes"}}),
        'is not "true" or "false"',
    ),
    (
        "bad-bool-number",
        _with_condition({"Bool": {"aws:SecureTransport": 1}}),
        'is not "true" or "false"',
    ),
    ("bad-null", _with_condition({"Null": {"aws:username": "maybe"}}), 'is not "true" or "false"'),
    (
        "bad-cidr",
        _with_condition({"IpAddress": {"aws:SourceIp": "203.0.113.0/33"}}),
        "not an IP address",
    ),
    (
        "bad-ip",
        _with_condition({"NotIpAddress": {"aws:SourceIp": "example.com"}}),
        "not an IP address",
    ),
    (
        "bad-base64",
        _with_condition({"BinaryEquals": {"kms:EncryptionContext:b": "not base64!"}}),
        "not base64",
    ),
    ("bad-arn", _with_condition({"ArnLike": {"aws:PrincipalArn": "role/admin"}}), "is not an ARN"),
    (
        "variable-in-numeric",
        _with_condition({"NumericEquals": {"kms:RotationPeriodInDays": "${aws:username}"}}),
        "only with String and ARN",
    ),
    (
        "variable-unknown",
        _with_condition({"StringEquals": {"aws:username": "${aws:usrname}"}}),
        "names no known condition key",
    ),
    (
        "variable-multivalued",
        _with_condition({"StringEquals": {"aws:username": "${aws:TagKeys}"}}),
        "multivalued",
    ),
    (
        "variable-unclosed",
        _with_condition({"StringEquals": {"aws:username": "${aws:username"}}),
        "never closed",
    ),
    ("identity-principal", "", "identity policy cannot have a Principal"),
    ("identity-notprincipal", "", "identity policy cannot have a NotPrincipal"),
    ("control-character", '{"Statement": []}\x00', "U+0000"),
    ("non-latin1", '{"Id": "\u4e2d", "Statement": []}', "U+4E2D"),
    ("surrogate-escape", '{"Id": "\\ud800", "Statement": [{}]}', "surrogate"),
    ("too-deep", "[" * 50 + "]" * 50, "nests"),
    ("too-large", "", "bytes; the limit is 131072"),
]


def _case_text(case: str, text: str) -> tuple[str, str]:
    if case == "identity-principal":
        return _doc(_key_statement()), "identity"
    if case == "identity-notprincipal":
        return _doc(_key_statement(Principal=None, NotPrincipal="*")), "identity"
    if case == "too-large":
        padding = "x" * MAX_POLICY_BYTES
        return _doc(_key_statement(), Id=padding), "key"
    return text, "key"


@pytest.mark.parametrize(("case", "text", "fragment"), _MALFORMED, ids=[c[0] for c in _MALFORMED])
def test_malformed_policy_is_refused(case: str, text: str, fragment: str) -> None:
    text, kind = _case_text(case, text)
    with pytest.raises(MalformedPolicyDocumentException) as caught:
        parse_policy(text, kind=kind)  # type: ignore[arg-type]
    assert fragment in caught.value.message, caught.value.message


def test_at_least_forty_malformed_cases() -> None:
    assert len(_MALFORMED) >= 40


def test_messages_name_the_statement_by_sid_or_position() -> None:
    text = _doc(_key_statement(Sid="First"), _key_statement(Sid=None, Effect="Permit"))
    with pytest.raises(MalformedPolicyDocumentException, match=r"^Statement 2: Effect"):
        parse_policy(text, kind="key")
    text = _doc(_key_statement(Sid="Mine", Action="kms:Nope"))
    with pytest.raises(MalformedPolicyDocumentException, match=r'^Statement 1 \(Sid "Mine"\)'):
        parse_policy(text, kind="key")


def test_size_limit_is_inclusive() -> None:
    base = _doc(_key_statement(), Id="")
    text = _doc(_key_statement(), Id="x" * (MAX_POLICY_BYTES - len(base)))
    assert len(text.encode()) == MAX_POLICY_BYTES
    parse_policy(text, kind="key")


def test_kind_must_be_known() -> None:
    with pytest.raises(ValueError, match="kind"):
        parse_policy(_doc(_key_statement()), kind="resource")  # type: ignore[arg-type]


# -- actions, templates and dates -------------------------------------------


def test_kms_actions_match_botocore_model() -> None:
    operations = Loader().load_service_model("kms", "service-2")["operations"]
    expected = {f"kms:{name}" for name in operations} - {"kms:ReEncrypt"}
    # Permissions that are not API names: ReEncrypt is authorized as
    # ReEncryptFrom and ReEncryptTo; SynchronizeMultiRegionKey is internal.
    expected |= {"kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:SynchronizeMultiRegionKey"}
    assert expected == KMS_ACTIONS


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("kms:*", "kms:Decrypt", True),
        ("*", "kms:Decrypt", True),
        ("kms:decrypt", "kms:Decrypt", True),
        ("KMS:DECRYPT", "kms:decrypt", True),
        ("kms:GenerateDataKey*", "kms:GenerateDataKeyPairWithoutPlaintext", True),
        ("kms:GenerateDataKey*", "kms:GenerateDataKey", True),
        ("kms:ReEncrypt*", "kms:ReEncryptFrom", True),
        ("kms:Re?ncryptTo", "kms:ReEncryptTo", True),
        ("kms:Re?ncryptTo", "kms:ReEncryptFrom", False),
        ("kms:Encrypt", "kms:Encrypted", False),
        ("kms:*Key", "kms:CreateKey", True),
        ("kms:*Key", "kms:CreateKeyX", False),
        ("iam:*", "kms:Decrypt", False),
        ("kms:*a*a*a*b", "kms:" + "a" * 200, False),
    ],
)
def test_action_matches(pattern: str, action: str, expected: bool) -> None:
    assert action_matches(pattern, action) is expected


def test_parse_template() -> None:
    assert parse_template("plain", variables=True) == ("plain",)
    assert parse_template("${aws:username}", variables=False) == ("${aws:username}",)
    assert parse_template("home/${aws:username}/*", variables=True) == (
        "home/",
        Variable("aws:username"),
        "/*",
    )
    assert parse_template("${aws:PrincipalTag/Team, 'none'}${*}${$}", variables=True) == (
        Variable("aws:principaltag/team", "none"),
        Text("*"),
        Text("$"),
    )
    with pytest.raises(ValueError, match="never closed"):
        parse_template("${aws:username", variables=True)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("1700000000", 1700000000),
        ("1700000000.5", 1700000000.5),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-02", 86400),
        ("1970-02", 31 * 86400),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1970-01-01T00:00:00-0130", 5400),
        ("1970-01-01T00:01Z", 60),
        ("1970-01-01T00:00:00.25Z", 0.25),
        ("1970-01-01T00:00:00", 0),
    ],
)
def test_parse_instant(text: str, seconds: float) -> None:
    assert parse_instant(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "2020-1-1", "2020-02-30", "2020-01-01T24:00:00Z", "2020-01-01T00:00:00+24:00", "x"]
)
def test_parse_instant_refuses(text: str) -> None:
    assert parse_instant(text) is None


def test_an_over_long_condition_value_is_refused() -> None:
    from keycask.policy.vocabulary import MAX_CONDITION_VALUE_CHARS

    def policy(value: str) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "kms:Encrypt",
            "Resource": "*",
            "Condition": {"StringLike": {"kms:EncryptionContext:x": ["ok", value]}}}]})  # fmt: skip

    parse_policy(policy("*" + "a" * (MAX_CONDITION_VALUE_CHARS - 2) + "b"), kind="key")
    with pytest.raises(MalformedPolicyDocumentException, match="the limit is 4096"):
        parse_policy(policy("*" + "a" * (MAX_CONDITION_VALUE_CHARS - 1) + "b"), kind="key")
