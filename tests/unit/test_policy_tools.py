"""policy/lint.py, simulate.py, who_can.py: lint finds every planted problem in deliberately broad
policies and nothing in the least-privilege examples of docs/; simulate and
who_can answer table cases the way the evaluator decides them."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keycask.keys.model import Key, KeyState, Tag, default_key_policy
from keycask.policy.document import Policy, parse_policy
from keycask.policy.evaluate import GrantView, Subject
from keycask.policy.lint import (
    RULES,
    LintFinding,
    at_least,
    home_account,
    lint_identity_policy,
    lint_key_policy,
    lint_trust_policy,
)
from keycask.policy.request_context import Transport
from keycask.policy.simulate import simulate
from keycask.policy.statements import normalize_action
from keycask.policy.who_can import Finding, who_can

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
ACCOUNT = "111122223333"
OTHER = "444455556666"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ADMIN = f"arn:aws:iam::{ACCOUNT}:user/admin"
APP = f"arn:aws:iam::{ACCOUNT}:user/app"
SERVICE = f"arn:aws:iam::{ACCOUNT}:user/tenant-service"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{KEY_ID}"
MULTI_TENANT = {"multi-tenant": "true"}


def a_key(**tags: str) -> Key:
    """The key KEY_ARN names, with ``tags``."""
    return Key(
        uuid.UUID(KEY_ID),
        ACCOUNT,
        "us-east-1",
        datetime(2024, 1, 1, tzinfo=UTC),
        "",
        KeyState.ENABLED,
        "{}",
        tags=tuple(Tag(k, v) for k, v in tags.items()),
    )


KEY = a_key()


def key_policy(*statements: dict[str, Any]) -> Policy:
    return parse_policy(
        json.dumps({"Version": "2012-10-17", "Statement": list(statements)}), kind="key"
    )


def identity_policy(*statements: dict[str, Any]) -> Policy:
    return parse_policy(
        json.dumps({"Version": "2012-10-17", "Statement": list(statements)}), kind="identity"
    )


def allow(principal: Any, action: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": action, "Resource": "*", **extra}


# A statement that keeps the key manageable, so cases plant only their own problem.
MANAGED = {"Sid": "Admin", **allow({"AWS": ROOT}, "kms:*")}
CONTEXT_CONDITION = {"StringEquals": {"kms:EncryptionContext:tenant": "${aws:PrincipalTag/tenant}"}}


# (name, policy statements, lint keyword arguments, the rules it must raise)
BROAD_KEY_POLICIES: list[tuple[str, list[dict[str, Any]], dict[str, Any], set[str]]] = [
    (
        "public principal, no condition",
        [MANAGED, allow("*", "kms:Decrypt")],
        {},
        {"public-principal"},
    ),
    (
        'public principal {"AWS": "*"} with every action',
        [MANAGED, allow({"AWS": "*"}, "kms:*")],
        {},
        {"public-principal", "kms-star-to-non-admin"},
    ),
    (
        "public principal with a condition that says nothing about the caller",
        [MANAGED, allow("*", "kms:Encrypt", Condition={"Bool": {"aws:SecureTransport": "true"}})],
        {},
        {"public-principal-weak-condition"},
    ),
    (
        "public principal scoped only by a negated operator",
        [
            MANAGED,
            allow(
                "*",
                "kms:Encrypt",
                Condition={"StringNotEquals": {"aws:PrincipalAccount": OTHER}},
            ),
        ],
        {},
        {"public-principal-weak-condition"},
    ),
    (
        "kms:* to an application",
        [MANAGED, allow({"AWS": APP}, "kms:*")],
        {},
        {"kms-star-to-non-admin"},
    ),
    (
        '"*" to an application',
        [MANAGED, allow({"AWS": APP}, "*")],
        {},
        {"kms-star-to-non-admin"},
    ),
    (
        "Decrypt without a context condition on a multi-tenant key",
        [MANAGED, allow({"AWS": SERVICE}, "kms:Decrypt")],
        {"key_tags": MULTI_TENANT},
        {"decrypt-without-context"},
    ),
    (
        "Decrypt with an IfExists context condition (requests without context pass)",
        [
            MANAGED,
            allow(
                {"AWS": SERVICE},
                "kms:Decrypt",
                Condition={"StringEqualsIfExists": {"kms:EncryptionContext:tenant": "a"}},
            ),
        ],
        {"key_tags": MULTI_TENANT},
        {"decrypt-without-context"},
    ),
    (
        "ReEncrypt* and GenerateDataKey* with a condition on something else",
        [
            MANAGED,
            allow(
                {"AWS": SERVICE},
                ["kms:ReEncrypt*", "kms:GenerateDataKey*"],
                Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            ),
        ],
        {"key_tags": {"multi-tenant": "TRUE"}},
        {"decrypt-without-context"},
    ),
    (
        "ForAllValues on the context keys matches a request without context",
        [
            MANAGED,
            allow(
                {"AWS": SERVICE},
                "kms:Decrypt",
                Condition={"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": "tenant"}},
            ),
        ],
        {"key_tags": MULTI_TENANT},
        {"decrypt-without-context"},
    ),
    (
        "a custom multi-tenant tag name",
        [MANAGED, allow({"AWS": SERVICE}, "kms:Decrypt")],
        {"key_tags": {"shared": "true"}, "multi_tenant_tag": "shared"},
        {"decrypt-without-context"},
    ),
    (
        "Allow with NotPrincipal",
        [
            MANAGED,
            {
                "Effect": "Allow",
                "NotPrincipal": {"AWS": APP},
                "Action": "kms:DescribeKey",
                "Resource": "*",
            },
        ],
        {},
        {"allow-with-notprincipal"},
    ),
    (
        "Allow with NotAction",
        [
            MANAGED,
            {
                "Effect": "Allow",
                "Principal": {"AWS": APP},
                "NotAction": "kms:ScheduleKeyDeletion",
                "Resource": "*",
            },
        ],
        {},
        {"notaction-allow"},
    ),
    (
        "nobody may change the policy",
        [allow({"AWS": APP}, ["kms:Encrypt", "kms:Decrypt"])],
        {},
        {"lockout"},
    ),
    (
        "PutKeyPolicy denied to everyone",
        [MANAGED, {"Effect": "Deny", "Principal": "*", "Action": "kms:Put*", "Resource": "*"}],
        {},
        {"lockout"},
    ),
    (
        "only a principal that does not exist may change the policy",
        [allow({"AWS": f"arn:aws:iam::{ACCOUNT}:user/nobody"}, "kms:PutKeyPolicy")],
        {"existing_principals": {ADMIN, APP}},
        {"lockout"},
    ),
    (
        "every action to another account's root",
        [MANAGED, allow({"AWS": f"arn:aws:iam::{OTHER}:root"}, "kms:*")],
        {},
        {"cross-account-wildcard"},
    ),
    (
        "every action to another account's user, the key's account given",
        [allow({"AWS": [ADMIN, f"arn:aws:iam::{OTHER}:user/x"]}, "kms:*")],
        {"key_account": ACCOUNT, "admins": {ADMIN}},
        {"cross-account-wildcard"},
    ),
    (
        "everything at once",
        [
            allow("*", "kms:*"),
            {
                "Effect": "Allow",
                "NotPrincipal": {"AWS": APP},
                "NotAction": "kms:Encrypt",
                "Resource": "*",
            },
            {"Effect": "Deny", "Principal": "*", "Action": "kms:PutKeyPolicy", "Resource": "*"},
        ],
        {"key_tags": MULTI_TENANT},
        {
            "public-principal",
            "kms-star-to-non-admin",
            "allow-with-notprincipal",
            "notaction-allow",
            "decrypt-without-context",
            "lockout",
        },
    ),
]


@pytest.mark.parametrize(
    ("statements", "kwargs", "rules"),
    [case[1:] for case in BROAD_KEY_POLICIES],
    ids=[case[0] for case in BROAD_KEY_POLICIES],
)
def test_lint_finds_every_planted_problem(
    statements: list[dict[str, Any]], kwargs: dict[str, Any], rules: set[str]
) -> None:
    findings = lint_key_policy(key_policy(*statements), **kwargs)
    assert {f.rule for f in findings} == rules, findings
    for finding in findings:
        assert finding.severity == RULES[finding.rule][0]
        assert finding.message


def test_there_are_enough_planted_cases() -> None:
    assert len(BROAD_KEY_POLICIES) >= 10
    planted = set().union(*(case[3] for case in BROAD_KEY_POLICIES))
    trust_rules = {"trust-public-principal", "web-identity-any-subject"}
    assert planted == set(RULES) - {"malformed-policy"} - trust_rules


_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.example.com/ci"
_ROLE = f"arn:aws:iam::{ACCOUNT}:role/deploy"


def _trust(*statements: dict[str, Any]) -> Any:
    text = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    return parse_policy(text, kind="trust")


def _assume(principal: Any, action: str = "sts:AssumeRole", **condition: Any) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Principal": principal, "Action": action}
    if condition:
        statement["Condition"] = condition
    return statement


@pytest.mark.parametrize(
    ("statement", "rules"),
    [
        (_assume("*"), {"trust-public-principal"}),
        (_assume({"AWS": "*"}), {"trust-public-principal"}),
        (
            _assume("*", StringEquals={"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:user/ci"}),
            set(),
        ),
        (_assume({"AWS": ACCOUNT}), set()),
        (
            _assume({"Federated": _PROVIDER}, "sts:AssumeRoleWithWebIdentity"),
            {"web-identity-any-subject"},
        ),
        (
            _assume(
                {"Federated": _PROVIDER},
                "sts:AssumeRoleWithWebIdentity",
                StringEquals={"token.example.com/ci:aud": "keycask"},
            ),
            {"web-identity-any-subject"},
        ),
        (
            # IfExists lets a token without the claim through: no restriction.
            _assume(
                {"Federated": _PROVIDER},
                "sts:AssumeRoleWithWebIdentity",
                StringLikeIfExists={"token.example.com/ci:sub": "repo:x/*"},
            ),
            {"web-identity-any-subject"},
        ),
        (
            _assume(
                {"Federated": _PROVIDER},
                "sts:AssumeRoleWithWebIdentity",
                StringLike={"token.example.com/ci:sub": "repo:x/y:ref:refs/heads/main"},
            ),
            set(),
        ),
    ],
)
def test_trust_policy_lint(statement: dict[str, Any], rules: set[str]) -> None:
    findings = lint_trust_policy(_ROLE, _trust(statement))
    assert {f.rule for f in findings} == rules, findings
    for finding in findings:
        assert finding.severity == RULES[finding.rule][0] and _ROLE in finding.message


def test_findings_name_the_statement() -> None:
    findings = lint_key_policy(
        key_policy(MANAGED, {"Sid": "Public", **allow("*", "kms:Decrypt")}, allow("*", "kms:Sign"))
    )
    assert [(f.statement, f.rule, f.severity) for f in findings] == [
        ("Public", "public-principal", "high"),
        ("#3", "public-principal", "high"),
    ]
    lockout = lint_key_policy(key_policy(allow({"AWS": APP}, "kms:Decrypt")))
    assert [(f.statement, f.rule) for f in lockout] == [("(policy)", "lockout")]
    assert "lock everyone out" in lockout[0].message


def test_conditions_that_do_scope_a_public_principal_pass() -> None:
    policy = key_policy(
        MANAGED,
        allow(
            "*",
            ["kms:Encrypt", "kms:Decrypt"],
            Condition={
                "StringEquals": {"kms:CallerAccount": ACCOUNT, "kms:ViaService": "x.amazonaws.com"}
            },
        ),
    )
    assert lint_key_policy(policy) == []


def test_trusted_principals_may_have_everything() -> None:
    policy = key_policy(allow({"AWS": [ROOT, ADMIN]}, "kms:*"))
    assert [f.rule for f in lint_key_policy(policy)] == ["kms-star-to-non-admin"]
    assert lint_key_policy(policy, admins={ADMIN}) == []
    # ... and use a multi-tenant key without context conditions.
    assert lint_key_policy(policy, admins={ADMIN}, key_tags=MULTI_TENANT) == []


def test_home_account_is_the_first_root_or_the_given_account() -> None:
    policy = key_policy(
        allow({"AWS": f"arn:aws:iam::{ACCOUNT}:user/a"}, "kms:Decrypt"),
        allow({"AWS": [ROOT, f"arn:aws:iam::{OTHER}:root"]}, "kms:*"),
    )
    assert home_account(policy) == ACCOUNT
    assert [f.rule for f in lint_key_policy(policy)] == ["cross-account-wildcard"]
    # Told the key lives in the other account, the roles swap.
    assert [f.rule for f in lint_key_policy(policy, key_account=OTHER)] == [
        "cross-account-wildcard"
    ]
    assert ROOT in lint_key_policy(policy, key_account=OTHER)[0].message


def test_the_default_key_policy_is_clean() -> None:
    policy = parse_policy(default_key_policy(ACCOUNT), kind="key")
    assert lint_key_policy(policy, key_account=ACCOUNT, key_tags=MULTI_TENANT) == []


def test_an_existing_root_keeps_the_key_manageable() -> None:
    policy = key_policy(allow({"AWS": ROOT}, "kms:PutKeyPolicy"))
    assert lint_key_policy(policy, existing_principals=set()) == []


@pytest.mark.parametrize(
    ("statements", "admin", "rules"),
    [
        (
            [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}],
            False,
            {"kms-star-to-non-admin"},
        ),
        (
            [{"Effect": "Allow", "Action": "*", "Resource": KEY_ARN}],
            False,
            {"kms-star-to-non-admin"},
        ),
        ([{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}], True, set()),
        (
            [{"Effect": "Allow", "NotAction": "kms:Decrypt", "Resource": "*"}],
            False,
            {"notaction-allow"},
        ),
        (
            # Every action but another service's: every KMS action.
            [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}],
            False,
            {"notaction-allow", "kms-star-to-non-admin"},
        ),
        (
            [{"Effect": "Allow", "NotAction": "kms:Decrypt", "Resource": "*"}],
            True,
            {"notaction-allow"},
        ),
        ([{"Effect": "Deny", "Action": "kms:*", "Resource": "*"}], False, set()),
    ],
)
def test_lint_identity_policies(
    statements: list[dict[str, Any]], admin: bool, rules: set[str]
) -> None:
    findings = lint_identity_policy("p", identity_policy(*statements), principal_is_admin=admin)
    assert {f.rule for f in findings} == rules


def _examples(suffix: str) -> list[Path]:
    found = sorted(EXAMPLES.glob(f"*{suffix}"))
    assert found, f"no docs/examples/*{suffix}"
    return found


def test_every_example_is_one_kind_or_the_other() -> None:
    every = sorted(EXAMPLES.glob("*.json"))
    assert every == sorted(_examples(".key-policy.json") + _examples(".identity-policy.json"))


@pytest.mark.parametrize("path", _examples(".key-policy.json"), ids=lambda p: p.name)
def test_least_privilege_key_policies_lint_clean(path: Path) -> None:
    policy = parse_policy(path.read_text(), kind="key")
    # Even on a multi-tenant key, and with every finding counted.
    findings = lint_key_policy(policy, key_tags=MULTI_TENANT)
    assert findings == [], findings
    assert lint_key_policy(policy, key_account=ACCOUNT) == []


@pytest.mark.parametrize("path", _examples(".identity-policy.json"), ids=lambda p: p.name)
def test_least_privilege_identity_policies_lint_clean(path: Path) -> None:
    policy = parse_policy(path.read_text(), kind="identity")
    assert lint_identity_policy(path.name, policy, principal_is_admin=False) == []


def test_at_least_filters_by_severity() -> None:
    findings = [
        LintFinding("low", "#1", "r", "m"),
        LintFinding("medium", "#1", "r", "m"),
        LintFinding("high", "#1", "r", "m"),
    ]
    assert [f.severity for f in at_least(findings, "medium")] == ["medium", "high"]
    assert [f.severity for f in at_least(findings, "high")] == ["high"]
    assert len(at_least(findings, "low")) == 3


# -- simulate ------------------------------------------------------------------

TENANT_POLICY = parse_policy((EXAMPLES / "tenant-data.key-policy.json").read_text(), kind="key")
DEFAULT_POLICY = parse_policy(default_key_policy(ACCOUNT), kind="key")


def subject(name: str, *, admin: bool = False, **tags: str) -> Subject:
    return Subject(f"arn:aws:iam::{ACCOUNT}:user/{name}", ACCOUNT, admin, tags)


@pytest.mark.parametrize(
    ("who", "action", "policy", "context", "allowed", "decided_by"),
    [
        (
            subject("admin", admin=True),
            "kms:Decrypt",
            DEFAULT_POLICY,
            None,
            True,
            "identity policy keycask administrator statement AdministratorAccess "
            "(key policy statement Enable IAM User Permissions)",
        ),
        (subject("app"), "kms:Decrypt", DEFAULT_POLICY, None, False, "implicit deny"),
        (
            subject("tenant-service", tenant="acme"),
            "Decrypt",
            TENANT_POLICY,
            {"tenant": "acme"},
            True,
            "key policy statement DecryptOnlyOwnTenant",
        ),
        (
            subject("tenant-service", tenant="acme"),
            "kms:decrypt",
            TENANT_POLICY,
            {"tenant": "globex"},
            False,
            "implicit deny",
        ),
        (
            subject("tenant-service", tenant="acme"),
            "kms:Decrypt",
            TENANT_POLICY,
            None,
            False,
            "implicit deny",
        ),
        (
            subject("tenant-service"),  # no tenant tag: the variable matches nothing
            "kms:Decrypt",
            TENANT_POLICY,
            {"tenant": ""},
            False,
            "implicit deny",
        ),
        (
            subject("tenant-service", tenant="acme"),
            "kms:Encrypt",
            TENANT_POLICY,
            {"tenant": "acme"},
            False,
            "implicit deny",
        ),
        (
            subject("ingest-app", tenant="acme"),
            "kms:GenerateDataKey",
            TENANT_POLICY,
            {"tenant": "acme"},
            True,
            "key policy statement EncryptOnlyForOwnTenant",
        ),
        (
            subject("auditor"),
            "kms:GetKeyPolicy",
            TENANT_POLICY,
            None,
            True,
            "key policy statement ReadMetadataOnly",
        ),
        (subject("auditor"), "kms:Decrypt", TENANT_POLICY, None, False, "implicit deny"),
        (
            subject("admin", admin=True),
            "kms:Decrypt",
            TENANT_POLICY,
            {"tenant": "acme"},
            False,
            "implicit deny",
        ),
    ],
)
def test_simulate(  # noqa: PLR0917 - one parameter per table column
    who: Subject,
    action: str,
    policy: Policy,
    context: dict[str, str] | None,
    allowed: bool,
    decided_by: str,
) -> None:
    decision = simulate(who, action, KEY, policy, (), encryption_context=context)
    assert (decision.allowed, decision.decided_by) == (allowed, decided_by)


def test_simulate_explicit_deny_and_extra_condition_keys() -> None:
    policy = key_policy(
        MANAGED,
        {
            "Sid": "OnlyFromTheOffice",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "kms:*",
            "Resource": "*",
            "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        },
    )
    admin = subject("admin", admin=True)
    inside = simulate(
        admin, "kms:Encrypt", KEY, policy, (), parameters={"aws:SourceIp": "10.1.2.3"}
    )
    outside = simulate(
        admin, "kms:Encrypt", KEY, policy, (), transport=Transport(source_ip="1.2.3.4")
    )
    assert inside.allowed
    assert not outside.allowed
    assert outside.decided_by == "explicit deny in key policy statement OnlyFromTheOffice"
    assert "explicit deny" in outside.message


def test_simulate_grants_and_resource_tags() -> None:
    app = subject("app")
    grant = GrantView("g1", app.arn, frozenset({"Decrypt"}), context_subset={"tenant": "acme"})
    decided = simulate(
        app,
        "kms:Decrypt",
        KEY,
        DEFAULT_POLICY,
        [grant],
        encryption_context={"tenant": "acme", "x": "y"},
    )
    assert (decided.allowed, decided.decided_by) == (True, "grant g1")
    refused = simulate(
        app,
        "kms:Decrypt",
        KEY,
        DEFAULT_POLICY,
        [grant],
        encryption_context={"tenant": "b"},
    )
    assert not refused.allowed
    tagged = key_policy(
        MANAGED,
        allow(
            {"AWS": app.arn},
            "kms:Sign",
            Condition={"StringEquals": {"aws:ResourceTag/team": "payments"}},
        ),
    )
    assert simulate(app, "kms:Sign", a_key(team="payments"), tagged).allowed
    assert not simulate(app, "kms:Sign", KEY, tagged).allowed


def test_normalize_action() -> None:
    assert normalize_action("decrypt") == "kms:Decrypt"
    assert normalize_action("KMS:GenerateDataKey") == "kms:GenerateDataKey"
    with pytest.raises(ValueError, match="not a KMS action"):
        normalize_action("kms:Frobnicate")


# -- who can -------------------------------------------------------------------


def test_who_can_on_the_default_policy() -> None:
    admin, app = subject("admin", admin=True), subject("app")
    findings = who_can("kms:Decrypt", KEY, DEFAULT_POLICY, [app, admin])
    assert findings == [
        Finding(
            admin.arn,
            "principal",
            "identity policy keycask administrator statement AdministratorAccess "
            "(key policy statement Enable IAM User Permissions)",
        ),
        Finding(ROOT, "account", "key policy statement Enable IAM User Permissions"),
    ]


def test_who_can_reports_the_conditions_principals_need() -> None:
    acme = subject("tenant-service", tenant="acme")
    untagged = Subject(f"arn:aws:iam::{ACCOUNT}:user/ingest-app", ACCOUNT, False)
    auditor = subject("auditor")
    findings = who_can("kms:Decrypt", KEY, TENANT_POLICY, [acme, untagged, auditor])
    assert [f.principal for f in findings] == [acme.arn]
    (only,) = findings
    assert only.via == "key policy statement DecryptOnlyOwnTenant"
    assert only.conditions == (
        'kms:EncryptionContext:tenant = ${aws:PrincipalTag/tenant} (= "acme")',
    )
    assert "if kms:EncryptionContext:tenant = ${aws:PrincipalTag/tenant}" in only.describe()

    # ingest-app is named, but without a tenant tag its condition never holds.
    assert who_can("kms:Encrypt", KEY, TENANT_POLICY, [acme, untagged]) == []
    tagged = subject("ingest-app", tenant="globex")
    assert who_can("kms:Encrypt", KEY, TENANT_POLICY, [tagged]) == [
        Finding(
            tagged.arn,
            "principal",
            "key policy statement EncryptOnlyForOwnTenant",
            ('kms:EncryptionContext:tenant = ${aws:PrincipalTag/tenant} (= "globex")',),
        )
    ]


def test_who_can_lists_public_statements_grants_and_denies() -> None:
    app, other = subject("app"), subject("other")
    policy = key_policy(
        MANAGED,
        {
            "Sid": "Anyone",
            **allow(
                "*", "kms:Decrypt", Condition={"StringEquals": {"kms:EncryptionContext:a": "b"}}
            ),
        },
        {
            "Sid": "NotOther",
            "Effect": "Deny",
            "Principal": {"AWS": other.arn},
            "Action": "kms:Decrypt",
            "Resource": "*",
        },
        {
            "Sid": "NotFromOutside",
            "Effect": "Deny",
            "Principal": {"AWS": app.arn},
            "Action": "kms:*",
            "Resource": "*",
            "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        },
    )
    grants = [
        GrantView("g-app", app.arn, frozenset({"Decrypt"}), context_equals={"k": "v"}),
        GrantView("g-other", other.arn, frozenset({"Decrypt"})),
        GrantView("g-sign", app.arn, frozenset({"Sign"})),
    ]
    findings = who_can("kms:Decrypt", KEY, policy, [app, other], grants)
    outside = (
        'not (aws:SourceIp NotIpAddress "10.0.0.0/8") '
        "[explicit deny in key policy statement NotFromOutside]"
    )
    # other is denied outright: neither it nor its grant is listed; g-sign
    # does not cover Decrypt.
    assert findings == [
        Finding(
            app.arn,
            "principal",
            "key policy statement Anyone",
            ('kms:EncryptionContext:a = "b"', outside),
        ),
        Finding(ROOT, "account", "key policy statement Admin"),
        Finding("*", "any", "key policy statement Anyone", ('kms:EncryptionContext:a = "b"',)),
        Finding(app.arn, "grant", "grant g-app", ('encryption context equals {"k": "v"}', outside)),
    ]


def test_who_can_decides_key_conditions() -> None:
    app = subject("app")
    policy = key_policy(
        MANAGED,
        allow(
            {"AWS": app.arn},
            "kms:Decrypt",
            Condition={"StringEquals": {"aws:ResourceTag/env": "prod"}},
        ),
    )
    prod = who_can("kms:Decrypt", a_key(env="prod"), policy, [app])
    dev = who_can("kms:Decrypt", a_key(env="dev"), policy, [app])
    assert [(f.principal, f.conditions) for f in prod if f.kind == "principal"] == [(app.arn, ())]
    assert [f for f in dev if f.kind == "principal"] == []


def test_the_guide_shows_the_example_files() -> None:
    """Every JSON block of docs/least-privilege.md is a statement of an
    example file (or a whole one), so the guide and the linted files agree."""
    guide = (EXAMPLES.parent / "least-privilege.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", guide, re.DOTALL)
    assert len(blocks) >= 4
    files = [json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("*.json"))]
    statements = [s for doc in files for s in doc["Statement"]]
    for block in blocks:
        shown = json.loads(block)
        assert shown in files or shown in statements, block


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEquals": {"aws:ResourceAccount": ACCOUNT}},
        {"StringEquals": {"aws:userid": "AIDAEXAMPLEEXAMPLE1"}},
        {"Bool": {"aws:PrincipalIsAWSService": "false"}},
        {"Bool": {"aws:ViaAWSService": "false"}},
        {"StringEquals": {"aws:PrincipalType": "User", "aws:username": "app"}},
        {"StringEquals": {"aws:RequestedRegion": "us-east-1"}},
    ],
)
def test_simulate_sets_the_keys_the_server_sets(condition: dict[str, Any]) -> None:
    """The keys `policy simulate` once left out (issue 14): one builder
    (policy/request_context.py) now sets them for the server and the tools."""
    app = Subject(APP, ACCOUNT, False, unique_id="AIDAEXAMPLEEXAMPLE1")
    policy = key_policy(
        MANAGED, {"Sid": "Cond", **allow({"AWS": APP}, "kms:Encrypt", Condition=condition)}
    )
    decision = simulate(app, "kms:Encrypt", KEY, policy)
    assert (decision.allowed, decision.decided_by) == (True, "key policy statement Cond")


def test_management_never_crosses_accounts() -> None:
    """As the server: a principal of another account may use a key its
    policies let it use, never manage it, whatever the policies say."""
    outsider = Subject(f"arn:aws:iam::{OTHER}:user/olga", OTHER, False)
    everything = identity_policy({"Effect": "Allow", "Action": "kms:*", "Resource": "*"})
    outsider = Subject(outsider.arn, OTHER, False, policies=(("all", everything),))
    policy = key_policy(MANAGED, {"Sid": "Olga", **allow({"AWS": outsider.arn}, "kms:*")})
    used = simulate(outsider, "kms:Encrypt", KEY, policy)
    assert (used.allowed, used.decided_by) == (
        True,
        "key policy statement Olga (identity policy all statement #1)",
    )
    managed = simulate(outsider, "kms:GetKeyPolicy", KEY, policy)
    assert (managed.allowed, managed.decided_by) == (
        False,
        "cross-account use is not allowed for kms:GetKeyPolicy",
    )
    assert "cannot be used across accounts" in managed.message
    assert [f.principal for f in who_can("kms:Encrypt", KEY, policy, [outsider])] == [
        outsider.arn,
        ROOT,
    ]
    assert [f.principal for f in who_can("kms:GetKeyPolicy", KEY, policy, [outsider])] == [ROOT]
