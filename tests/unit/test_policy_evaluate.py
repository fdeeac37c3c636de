"""KMS's evaluation order on hand-built requests: deny wins, the key policy is
the root, delegation to identity policies, grants (to a principal or to an
account), default deny. The boto3-driven table is tests/e2e/test_policy_table.py."""

from __future__ import annotations

import json
from typing import Any

from keycask.policy.conditions import RequestContext
from keycask.policy.document import parse_policy
from keycask.policy.evaluate import GrantView, Request, SessionFacts, Subject, decide

ACCOUNT, OTHER = "000000000000", "111122223333"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/11111111-1111-1111-1111-111111111111"
ALICE = Subject(f"arn:aws:iam::{ACCOUNT}:user/alice", ACCOUNT, admin=False)
OLGA_NO_POLICY = Subject(f"arn:aws:iam::{OTHER}:user/olga", OTHER, admin=False)


def _key_policy(*statements: dict[str, Any]) -> Any:
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
                        kind="key")  # fmt: skip


def _identity(*statements: dict[str, Any]) -> Any:
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
                        kind="identity")  # fmt: skip


def _request(
    subject: Subject,
    policy: Any,
    grants: tuple[GrantView, ...] = (),
    action: str = "kms:Decrypt",
    context: dict[str, str] | None = None,
) -> Request:
    return Request(
        subject,
        action,
        KEY,
        ACCOUNT,
        lambda: RequestContext.of({}),
        key_policy=policy,
        grants=grants,
        encryption_context=context,
    )


NOTHING = _key_policy({"Sid": "Nobody", "Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nobody"},
                       "Action": "kms:*", "Resource": "*"})  # fmt: skip


def test_default_deny() -> None:
    decision = decide(_request(ALICE, NOTHING))
    assert not decision.allowed
    assert decision.decided_by == "implicit deny"
    assert "is not authorized to perform: kms:Decrypt" in decision.message


def test_grant_to_the_principal() -> None:
    grant = GrantView("g1", ALICE.arn, frozenset({"Decrypt"}))
    assert decide(_request(ALICE, NOTHING, (grant,))).decided_by == "grant g1"
    assert not decide(_request(ALICE, NOTHING, (grant,), action="kms:Encrypt")).allowed


def test_grant_constraints() -> None:
    grant = GrantView("g1", ALICE.arn, frozenset({"Decrypt"}), context_subset={"tenant": "a"})
    assert decide(_request(ALICE, NOTHING, (grant,), context={"tenant": "a", "x": "y"})).allowed
    assert not decide(_request(ALICE, NOTHING, (grant,), context={"tenant": "b"})).allowed
    equals = GrantView("g2", ALICE.arn, frozenset({"Decrypt"}), context_equals={"tenant": "a"})
    assert decide(_request(ALICE, NOTHING, (equals,), context={"tenant": "a"})).allowed
    assert not decide(
        _request(ALICE, NOTHING, (equals,), context={"tenant": "a", "x": "y"})
    ).allowed


def test_grant_to_an_account_needs_its_identity_policy() -> None:
    grant = GrantView("g3", f"arn:aws:iam::{OTHER}:root", frozenset({"Decrypt"}))
    assert not decide(_request(OLGA_NO_POLICY, NOTHING, (grant,))).allowed
    olga = Subject(OLGA_NO_POLICY.arn, OTHER, admin=False, policies=(
        ("use", _identity({"Sid": "UseShared", "Effect": "Allow", "Action": "kms:Decrypt",
                           "Resource": KEY})),))  # fmt: skip
    decision = decide(_request(olga, NOTHING, (grant,)))
    assert decision.allowed
    assert decision.decided_by.startswith("grant g3 (identity policy use statement UseShared")


def test_explicit_deny_beats_a_grant() -> None:
    policy = _key_policy({"Sid": "NoDecrypt", "Effect": "Deny", "Principal": "*",
                          "Action": "kms:Decrypt", "Resource": "*"})  # fmt: skip
    grant = GrantView("g1", ALICE.arn, frozenset({"Decrypt"}))
    decision = decide(_request(ALICE, policy, (grant,)))
    assert not decision.allowed
    assert decision.decided_by == "explicit deny in key policy statement NoDecrypt"


def test_admin_needs_a_delegating_key_policy() -> None:
    admin = Subject(f"arn:aws:iam::{ACCOUNT}:user/admin", ACCOUNT, admin=True)
    assert not decide(_request(admin, NOTHING)).allowed
    delegating = _key_policy({"Sid": "EnableIAM", "Effect": "Allow",
                              "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                              "Action": "kms:*", "Resource": "*"})  # fmt: skip
    decision = decide(_request(admin, delegating))
    assert decision.allowed
    assert "key policy statement EnableIAM" in decision.decided_by


def test_a_policy_written_to_be_slow_is_denied_within_the_work_limit() -> None:
    # Finding 3: thousands of patterns, each needing a full scan of a long
    # context value. Matching stops at MAX_MATCH_WORK and the request is
    # denied, even though a later pattern would have matched.
    from keycask.policy.conditions import MAX_MATCH_WORK

    value = "a" * 8000
    patterns = [f"*b{i}*" for i in range(1000)] + ["*"]
    condition = {"StringLike": {"kms:EncryptionContext:x": patterns}}
    policy = _key_policy({"Sid": "Slow", "Effect": "Allow", "Principal": {"AWS": ALICE.arn},
                          "Action": "kms:*", "Resource": "*", "Condition": condition})  # fmt: skip
    assert len(patterns) * len(value) > MAX_MATCH_WORK
    request = Request(
        ALICE, "kms:Decrypt", KEY, ACCOUNT,
        lambda: RequestContext.of({"kms:EncryptionContext:x": value}), key_policy=policy,
    )  # fmt: skip
    decision = decide(request)
    assert not decision.allowed
    assert decision.decided_by == "condition matching exceeded its work limit"
    # The same policy with a short value is well within the limit and allows.
    short = Request(
        ALICE, "kms:Decrypt", KEY, ACCOUNT,
        lambda: RequestContext.of({"kms:EncryptionContext:x": "a"}), key_policy=policy,
    )  # fmt: skip
    assert decide(short).allowed


# -- role sessions: the session policy's intersection --

ROLE = f"arn:aws:iam::{OTHER}:role/app"
SESSION_ARN = f"arn:aws:sts::{OTHER}:assumed-role/app/s1"


def _session(policy: Any = None, identity: tuple[tuple[str, Any], ...] = ()) -> Subject:
    return Subject(
        ROLE,
        OTHER,
        admin=False,
        policies=identity,
        unique_id="AROAAPPEXAMPLE",
        session=SessionFacts(SESSION_ARN, "AROAAPPEXAMPLE:s1", 0, policy),
    )


def test_across_accounts_a_key_policy_naming_the_session_still_needs_its_identity_side() -> None:
    key_policy = _key_policy({"Sid": "Session", "Effect": "Allow",
                              "Principal": {"AWS": SESSION_ARN},
                              "Action": "kms:Decrypt", "Resource": "*"})  # fmt: skip
    decrypt = {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}
    encrypt_only = _identity({"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"})
    # The role (account OTHER) on a key of ACCOUNT: both sides must agree.
    assert not decide(_request(_session(), key_policy)).allowed
    allowed = decide(_request(_session(identity=(("use", _identity(decrypt)),)), key_policy))
    assert allowed.decided_by == "key policy statement Session (identity policy use statement #1)"
    # The identity side of a session is the intersection with its session policy.
    narrowed = _session(encrypt_only, identity=(("use", _identity(decrypt)),))
    assert not decide(_request(narrowed, key_policy)).allowed


def test_not_principal_naming_the_session_excludes_it() -> None:
    same_account = Subject(
        f"arn:aws:iam::{ACCOUNT}:role/app",
        ACCOUNT,
        admin=False,
        unique_id="AROAAPPEXAMPLE",
        session=SessionFacts(f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s1", "AROAAPPEXAMPLE:s1", 0),
    )
    key_policy = _key_policy(
        {"Sid": "All", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": "kms:Decrypt", "Resource": "*"},
        {"Sid": "NotThisSession", "Effect": "Deny",
         "NotPrincipal": {"AWS": f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s1"},
         "Action": "kms:Decrypt", "Resource": "*"},
    )  # fmt: skip
    assert decide(_request(same_account, key_policy)).decided_by == "key policy statement All"
    other_session = Subject(
        same_account.arn,
        ACCOUNT,
        admin=False,
        unique_id="AROAAPPEXAMPLE",
        session=SessionFacts(f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s2", "AROAAPPEXAMPLE:s2", 0),
    )
    assert decide(_request(other_session, key_policy)).decided_by == (
        "explicit deny in key policy statement NotThisSession"
    )


def test_an_admin_roles_session_is_limited_by_its_session_policy() -> None:
    key_policy = _key_policy({"Sid": "Account", "Effect": "Allow",
                              "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                              "Action": "kms:*", "Resource": "*"})  # fmt: skip
    admin_session = Subject(
        f"arn:aws:iam::{ACCOUNT}:role/ops",
        ACCOUNT,
        admin=True,
        unique_id="AROAOPSEXAMPLE",
        session=SessionFacts(
            f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/s",
            "AROAOPSEXAMPLE:s",
            0,
            _identity(
                {"Sid": "ReadOnly", "Effect": "Allow", "Action": "kms:Describe*", "Resource": "*"}
            ),
        ),
    )
    assert not decide(_request(admin_session, key_policy)).allowed
    described = decide(_request(admin_session, key_policy, action="kms:DescribeKey"))
    assert described.decided_by == (
        "identity policy keycask administrator statement AdministratorAccess and "
        "session policy statement ReadOnly (key policy statement Account)"
    )
    assert "assumed-role/ops/s" in decide(_request(admin_session, key_policy)).message


def test_a_grant_to_the_sessions_own_arn_is_that_sessions_alone() -> None:
    encrypt_only = _identity({"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"})
    to_session = GrantView("g-session", SESSION_ARN, frozenset({"Decrypt"}))
    to_other = GrantView(
        "g-other", f"arn:aws:sts::{OTHER}:assumed-role/app/s2", frozenset({"Decrypt"})
    )
    allowed = decide(_request(_session(encrypt_only), NOTHING, (to_session,)))
    # Named exactly, like a key policy statement naming the session: the
    # session policy does not limit it.
    assert (allowed.allowed, allowed.decided_by) == (True, "grant g-session (to the session)")
    assert not decide(_request(_session(encrypt_only), NOTHING, (to_other,))).allowed
    # The role itself (no session) is not the session's grantee.
    role = Subject(ROLE, OTHER, admin=False, unique_id="AROAAPPEXAMPLE")
    assert not decide(_request(role, NOTHING, (to_session,))).allowed
