"""Roles' trust policies: what the parser takes and refuses, and how the
evaluator reads them (the role is the resource, the caller or the web
identity the subject)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keycask.errors import MalformedPolicyDocumentException
from keycask.policy.conditions import RequestContext
from keycask.policy.document import parse_policy
from keycask.policy.evaluate import Request, Subject, decide

ACCOUNT = "111122223333"
OTHER = "444455556666"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.example.com/realms/prod"


def _trust(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(principal: object, action: object = "sts:AssumeRole", **more: object) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": action, **more}


@pytest.mark.parametrize(
    "text",
    [
        _trust(_allow({"AWS": ACCOUNT})),
        _trust(
            _allow({"AWS": f"arn:aws:iam::{OTHER}:user/ci"}, ["sts:AssumeRole", "sts:TagSession"])
        ),
        _trust(_allow({"AWS": f"arn:aws:iam::{ACCOUNT}:role/base"}, "sts:*")),
        _trust(
            _allow(
                {"Federated": PROVIDER},
                "sts:AssumeRoleWithWebIdentity",
                Condition={
                    "StringEquals": {"oidc.example.com/realms/prod:aud": "keycask"},
                    "StringLike": {"oidc.example.com/realms/prod:sub": "system:serviceaccount:*"},
                    "ForAnyValue:StringEquals": {"oidc.example.com/realms/prod:amr": "mfa"},
                },
            )
        ),
        _trust(
            _allow(
                {"AWS": f"arn:aws:iam::{OTHER}:root"},
                Condition={
                    "StringEquals": {"sts:ExternalId": "x-1"},
                    "StringLike": {"sts:RoleSessionName": "ci-*", "aws:RequestTag/team": "a"},
                    "ForAllValues:StringEquals": {"sts:TransitiveTagKeys": ["team"]},
                },
            )
        ),
        _trust(
            _allow(
                {"Federated": "arn:aws:iam::111122223333:oidc-provider/127.0.0.1:8443"},
                "sts:AssumeRoleWithWebIdentity",
                Condition={"StringEquals": {"127.0.0.1:8443:sub": "me"}},
            )
        ),
    ],
)
def test_trust_policies_that_parse(text: str) -> None:
    policy = parse_policy(text, kind="trust")
    # The role itself is each statement's resource.
    assert all(s.resources == ("*",) for s in policy.statements)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _trust(
                {"Effect": "Allow", "NotPrincipal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}
            ),
            "not NotPrincipal",
        ),
        (_trust({"Effect": "Allow", "Action": "sts:AssumeRole"}), "has no Principal"),
        (_trust(_allow({"AWS": ACCOUNT}, Resource="*")), "a trust policy has no Resource"),
        (_trust(_allow({"AWS": ACCOUNT}, "kms:Decrypt")), "allows only the sts: actions"),
        (_trust(_allow({"AWS": ACCOUNT}, "sts:GetCallerIdentity")), "not an action a trust"),
        (_trust(_allow({"AWS": ACCOUNT}, "sts:Get*")), "matches no action a trust policy"),
        (_trust(_allow({"Federated": "accounts.google.com"})), "is not an identity provider"),
        (
            _trust(_allow({"Federal": PROVIDER})),
            r"has the principal type \"Federal\" \(did you mean \"Federated\"\?\)",
        ),
        (
            _trust(_allow({"AWS": ACCOUNT}, Condition={"StringEquals": {"localhost:sub": "x"}})),
            "is not a known condition key",
        ),
        (
            _trust(_allow({"AWS": ACCOUNT}, Condition={"StringEquals": {"sts:externalid2": "x"}})),
            "is not a known condition key",
        ),
    ],
)
def test_trust_policies_that_are_refused(text: str, message: str) -> None:
    with pytest.raises(MalformedPolicyDocumentException, match=message):
        parse_policy(text, kind="trust")


def test_federated_principals_and_provider_keys_belong_to_trust_policies_only() -> None:
    key_policy = json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": {"Federated": PROVIDER},
                        "Action": "kms:Decrypt", "Resource": "*"}]}
    )  # fmt: skip
    with pytest.raises(
        MalformedPolicyDocumentException,
        match='principal type "Federated"; keycask supports "AWS", "Service"',
    ):
        parse_policy(key_policy, kind="key")
    identity = json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
                        "Condition": {"StringEquals": {"oidc.example.com:sub": "x"}}}]}
    )  # fmt: skip
    with pytest.raises(MalformedPolicyDocumentException, match="not a known condition key"):
        parse_policy(identity, kind="identity")


def _decide(
    trust: str,
    subject: Subject,
    action: str = "sts:AssumeRole",
    context: dict[str, Any] | None = None,
) -> bool:
    request = Request(
        subject=subject,
        action=action,
        resource=ROLE,
        resource_account=ACCOUNT,
        context=lambda: RequestContext.of(context or {}),
        key_policy=parse_policy(trust, kind="trust"),
    )
    return decide(request).allowed


def _user(account: str, name: str, *identity: str) -> Subject:
    policies = tuple((f"p{i}", parse_policy(t, kind="identity")) for i, t in enumerate(identity))
    return Subject(f"arn:aws:iam::{account}:user/{name}", account, False, {}, policies, "AIDA")


ASSUME_ANY = json.dumps(
    {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROLE}]}
)


def test_a_named_user_may_assume_and_an_account_delegates_to_its_identity_policies() -> None:
    named = _trust(_allow({"AWS": f"arn:aws:iam::{ACCOUNT}:user/ci"}))
    assert _decide(named, _user(ACCOUNT, "ci"))
    assert not _decide(named, _user(ACCOUNT, "other"))
    by_account = _trust(_allow({"AWS": ACCOUNT}))
    assert not _decide(by_account, _user(ACCOUNT, "ci"))
    assert _decide(by_account, _user(ACCOUNT, "ci", ASSUME_ANY))


def test_another_account_needs_both_sides() -> None:
    trust = _trust(_allow({"AWS": f"arn:aws:iam::{OTHER}:user/ci"}))
    assert not _decide(trust, _user(OTHER, "ci"))
    assert _decide(trust, _user(OTHER, "ci", ASSUME_ANY))
    assert not _decide(_trust(_allow({"AWS": ACCOUNT})), _user(OTHER, "ci", ASSUME_ANY))


def test_a_web_identity_matches_only_a_federated_principal_naming_its_provider() -> None:
    web = Subject(PROVIDER, ACCOUNT, False, federated=True)
    federated = _trust(_allow({"Federated": PROVIDER}, "sts:AssumeRoleWithWebIdentity"))
    assert _decide(federated, web, "sts:AssumeRoleWithWebIdentity")
    assert not _decide(federated, web, "sts:AssumeRole")
    other = _trust(_allow({"Federated": PROVIDER + "x"}, "sts:AssumeRoleWithWebIdentity"))
    assert not _decide(other, web, "sts:AssumeRoleWithWebIdentity")
    # "*" and AWS principals are for principals; a token is none.
    for principal in ("*", {"AWS": "*"}, {"AWS": ACCOUNT}):
        anyone = _trust(_allow(principal, "sts:AssumeRoleWithWebIdentity"))
        assert not _decide(anyone, web, "sts:AssumeRoleWithWebIdentity")
    # ... and a Federated principal matches no user.
    assert not _decide(federated, _user(ACCOUNT, "ci"), "sts:AssumeRoleWithWebIdentity")


def test_conditions_on_the_tokens_claims() -> None:
    web = Subject(PROVIDER, ACCOUNT, False, federated=True)
    trust = _trust(
        _allow(
            {"Federated": PROVIDER},
            "sts:AssumeRoleWithWebIdentity",
            Condition={
                "StringEquals": {"oidc.example.com/realms/prod:aud": "keycask"},
                "StringLike": {"oidc.example.com/realms/prod:sub": "system:serviceaccount:apps:*"},
            },
        )
    )
    good = {
        "oidc.example.com/realms/prod:aud": "keycask",
        "oidc.example.com/realms/prod:sub": "system:serviceaccount:apps:billing",
    }
    action = "sts:AssumeRoleWithWebIdentity"
    assert _decide(trust, web, action, good)
    assert not _decide(trust, web, action, {**good, "oidc.example.com/realms/prod:aud": "other"})
    assert not _decide(
        trust,
        web,
        action,
        {**good, "oidc.example.com/realms/prod:sub": "system:serviceaccount:x:y"},
    )
    # A claim the token lacks: the condition does not hold.
    assert not _decide(trust, web, action, {"oidc.example.com/realms/prod:aud": "keycask"})


def test_a_deny_to_everyone_binds_web_identities_too() -> None:
    web = Subject(PROVIDER, ACCOUNT, False, federated=True)
    action = "sts:AssumeRoleWithWebIdentity"
    trust = _trust(
        _allow({"Federated": PROVIDER}, action),
        {"Effect": "Deny", "Principal": "*", "Action": "sts:*",
         "Condition": {"StringEquals": {"sts:RoleSessionName": "blocked"}}},
    )  # fmt: skip
    assert _decide(trust, web, action, {"sts:RoleSessionName": "fine"})
    assert not _decide(trust, web, action, {"sts:RoleSessionName": "blocked"})
    aws_star = _trust(
        _allow({"Federated": PROVIDER}, action),
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:*"},
    )
    assert not _decide(aws_star, web, action)
