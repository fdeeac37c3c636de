"""Hostile and random policies: parse_policy fails only with
MalformedPolicyDocumentException, and whatever it accepts evaluates against any
request context without raising."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keycask.errors import MalformedPolicyDocumentException
from keycask.policy.conditions import RequestContext, condition_matches, conditions_match
from keycask.policy.document import Policy, parse_policy
from keycask.policy.vocabulary import CONDITION_KEY_PREFIXES, CONDITION_KEYS, OPERATORS

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ACCOUNT = "111122223333"
# Printable Latin-1 plus a few characters a policy may not contain.
_ALPHABET = st.characters(min_codepoint=0x20, max_codepoint=0xFF) | st.sampled_from(
    ["\x00", "\t", "\u4e2d", "\U0001f600", "\\", '"', "$", "{", "}", "*", "?", ":"]
)
short_text = st.text(alphabet=_ALPHABET, max_size=12)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    short_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_text, inner, max_size=4),
    max_leaves=12,
)

# -- pieces of policies, mostly valid --------------------------------------

KEY_NAMES = [
    *sorted(CONDITION_KEYS),
    "kms:EncryptionContext:Tenant",
    "aws:PrincipalTag/tenant",
    "aws:ResourceTag/Owner",
    "aws:RequestTag/Stage",
    "kms:CallerAccount",
    "KMS:ViaService",
]
STRING_VALUES = [
    "",
    "a",
    "A*",
    "a?c",
    "${aws:username}",
    "${aws:PrincipalTag/tenant, 'none'}",
    "home/${aws:userid}/${*}",
    f"arn:aws:iam::{ACCOUNT}:role/x",
    "arn:aws:iam::*:role/*",
    "${aws:PrincipalArn}",
    "arn:aws:kms:*:${aws:PrincipalAccount}:key/*",
]
TYPED_VALUES: list[Any] = [
    "1",
    "-2.5",
    "1e3",
    90,
    0.5,
    "2025-01-01T00:00:00Z",
    "1700000000",
    "2025-01-01",
    "2025-01-01T01:00:00+01:00",
    "true",
    "false",
    True,
    False,
    "QmluYXJ5",
    "10.0.0.0/8",
    "::1",
    "2001:db8::/32",
]
condition_keys = st.sampled_from(KEY_NAMES) | st.builds(
    lambda prefix, name: prefix + name, st.sampled_from(CONDITION_KEY_PREFIXES), short_text
)
operator_names = st.builds(
    lambda prefix, base, suffix: prefix + base + suffix,
    st.sampled_from(["", "", "", "ForAllValues:", "ForAnyValue:"]),
    st.sampled_from(sorted(OPERATORS)),
    st.sampled_from(["", "", "IfExists"]),
)
policy_scalars = st.sampled_from(STRING_VALUES + TYPED_VALUES) | short_text
condition_values = policy_scalars | st.lists(policy_scalars, min_size=1, max_size=3)
conditions = st.dictionaries(
    operator_names,
    st.dictionaries(condition_keys, condition_values, min_size=1, max_size=3),
    max_size=3,
)
principals = st.one_of(
    st.just("*"),
    st.fixed_dictionaries(
        {},
        optional={
            "AWS": st.sampled_from(
                ["*", ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", f"arn:aws:iam::{ACCOUNT}:role/R"]
            )
            | st.lists(
                st.sampled_from(["*", ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/u"]), max_size=3
            ),
            "Service": st.sampled_from(["ec2.amazonaws.com", "logs.us-east-1.amazonaws.com"]),
        },
    ),
)
actions = st.sampled_from(
    ["*", "kms:*", "kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "iam:*", "kms:Nope"]
)
resources = st.sampled_from(["*", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/*", "key/1"])


def _maybe_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the plausible value, sometimes anything at all."""
    return st.one_of(strategy, strategy, strategy, json_values)


statements = st.fixed_dictionaries(
    {"Effect": _maybe_junk(st.sampled_from(["Allow", "Deny"]))},
    optional={
        "Sid": _maybe_junk(st.sampled_from(["S1", "S2", "Allow use", ""])),
        "Principal": _maybe_junk(principals),
        "NotPrincipal": _maybe_junk(principals),
        "Action": _maybe_junk(actions | st.lists(actions, min_size=1, max_size=3)),
        "NotAction": _maybe_junk(actions),
        "Resource": _maybe_junk(resources | st.lists(resources, max_size=2)),
        "NotResource": _maybe_junk(resources),
        "Condition": _maybe_junk(conditions),
        "Actions": json_values,
    },
)
policy_shaped = st.fixed_dictionaries(
    {"Statement": _maybe_junk(statements | st.lists(statements, max_size=3))},
    optional={
        "Version": _maybe_junk(st.sampled_from(["2012-10-17", "2008-10-17"])),
        "Id": _maybe_junk(st.just("key-policy-1")),
        "Extra": json_values,
    },
)

# Policies that parse far more often than not: a principal, an action and a
# resource always, and conditions whose values suit their operator.
FAMILY_VALUES: dict[str, list[Any]] = {
    "String": STRING_VALUES,
    "Numeric": ["1", "-2.5", "1e3", 90, 0.5],
    "Date": ["2025-01-01T00:00:00Z", "1700000000", "2025-01-01", "2025-01-01T01:00:00+01:00"],
    "Bool": ["true", "false", True, False],
    "Null": ["true", "false", True],
    "Binary": ["QmluYXJ5", "AAEC"],
    "Ip": ["10.0.0.0/8", "::1", "2001:db8::/32", "203.0.113.7"],
    "NotIp": ["10.0.0.0/8", "::1"],
    "Arn": ["arn:aws:iam::*:role/*", f"arn:aws:kms:*:{ACCOUNT}:key/*", "${aws:PrincipalArn}"],
}


def _family(base: str) -> str:
    return next(family for family in FAMILY_VALUES if base.startswith(family))


@st.composite
def valid_conditions(draw: st.DrawFn) -> dict[str, Any]:
    block: dict[str, Any] = {}
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        base = draw(st.sampled_from(sorted(OPERATORS)))
        prefix = suffix = ""
        if base != "Null":
            prefix = draw(st.sampled_from(["", "", "ForAllValues:", "ForAnyValue:"]))
            suffix = draw(st.sampled_from(["", "IfExists"]))
        pool = st.sampled_from(FAMILY_VALUES[_family(base)])
        keys = st.dictionaries(
            condition_keys, pool | st.lists(pool, min_size=1, max_size=3), min_size=1, max_size=2
        )
        block[prefix + base + suffix] = draw(keys)
    return block


valid_statements = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny"]),
        "Principal": principals.filter(bool),
        "Action": st.sampled_from(["*", "kms:*", "kms:Decrypt", "kms:GenerateDataKey*"]),
        "Resource": st.just("*"),
        "Condition": valid_conditions(),
    }
)
mostly_valid = st.fixed_dictionaries(
    {
        "Version": st.sampled_from(["2012-10-17", "2012-10-17", "2008-10-17"]),
        "Statement": st.lists(valid_statements, min_size=1, max_size=3),
    }
)

context_scalars = st.sampled_from(STRING_VALUES + [str(v) for v in TYPED_VALUES]) | short_text
request_contexts = st.dictionaries(
    condition_keys,
    st.one_of(context_scalars, st.booleans(), st.lists(context_scalars, max_size=3)),
    max_size=6,
)


def _parse(text: str, kind: str) -> Policy | None:
    try:
        return parse_policy(text, kind=kind)  # type: ignore[arg-type]
    except MalformedPolicyDocumentException as exc:
        assert exc.message
        return None


@FUZZ
@given(json_values, st.booleans(), st.sampled_from(["key", "identity"]))
def test_any_json_fails_only_as_malformed(document: Any, ascii_only: bool, kind: str) -> None:
    _parse(json.dumps(document, ensure_ascii=ascii_only), kind)


@FUZZ
@given(policy_shaped, st.booleans(), st.sampled_from(["key", "identity"]))
def test_policy_shaped_json_fails_only_as_malformed(
    document: dict[str, Any], ascii_only: bool, kind: str
) -> None:
    policy = _parse(json.dumps(document, ensure_ascii=ascii_only), kind)
    event("accepted" if policy is not None else "refused")


@FUZZ
@given(policy_shaped, st.data())
def test_damaged_text_fails_only_as_malformed(
    document: dict[str, Any], data: st.DataObject
) -> None:
    text = json.dumps(document)
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    insert = data.draw(short_text)
    _parse(text[:cut] + insert + text[cut + 1 :], "key")


@FUZZ
@given(mostly_valid, st.lists(request_contexts, min_size=1, max_size=3))
def test_accepted_policies_evaluate_without_raising(
    document: dict[str, Any], contexts: list[dict[str, Any]]
) -> None:
    policy = _parse(json.dumps(document), "key")
    event("accepted" if policy is not None else "refused")
    if policy is None:
        return
    for raw in contexts:
        context = RequestContext.of(raw)
        for statement in policy.statements:
            results = [condition_matches(c, context) for c in statement.conditions]
            assert all(isinstance(result, bool) for result in results)
            assert conditions_match(statement.conditions, context) is all(results)
