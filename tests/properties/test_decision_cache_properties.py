"""The decision cache answers exactly as a fresh ``decide`` would: for random
key policies, identity policies, grants, encryption contexts and condition
keys (the clock's included), over sequences of requests that repeat, collide
on one cache slot with other subjects, policies and grants, and change one
input at a time."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_policy_fuzz import (
    ACCOUNT,
    condition_keys,
    context_scalars,
    mostly_valid,
    valid_conditions,
)

from keycask.errors import MalformedPolicyDocumentException
from keycask.policy.conditions import MAX_MATCH_WORK, RequestContext
from keycask.policy.decision_cache import MAX_ENTRIES, DecisionCache
from keycask.policy.document import Policy, parse_policy
from keycask.policy.evaluate import (
    WORK_LIMIT_DECIDER,
    Decision,
    GrantView,
    Request,
    Subject,
    decide,
)
from keycask.service.core.authz import StoredGrantView

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

USER = f"arn:aws:iam::{ACCOUNT}:user/u"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:PutKeyPolicy"]

identity_statements = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny"]),
        "Action": st.sampled_from(["*", "kms:*", "kms:Decrypt", "kms:Encrypt", "kms:Gen*"]),
        "Resource": st.sampled_from(["*", f"arn:aws:kms:*:{ACCOUNT}:key/*", "key/1"]),
        "Condition": valid_conditions(),
    }
)
identity_documents = st.fixed_dictionaries(
    {
        "Version": st.sampled_from(["2012-10-17", "2008-10-17"]),
        "Statement": st.lists(identity_statements, min_size=1, max_size=3),
    }
)
clock_conditions = st.sampled_from(
    [
        {"DateGreaterThan": {"aws:CurrentTime": "2025-01-01T00:00:01Z"}},
        {"NumericLessThan": {"aws:EpochTime": "1735689601"}},
        {"StringLike": {"aws:userid": "${aws:EpochTime}*"}},
    ]
)


def _parse(document: dict[str, Any], kind: str) -> Policy | None:
    try:
        return parse_policy(json.dumps(document), kind=kind)  # type: ignore[arg-type]
    except MalformedPolicyDocumentException:
        return None


@st.composite
def key_policies(draw: st.DrawFn) -> Policy | None:
    document = draw(mostly_valid)
    if draw(st.booleans()):
        document["Statement"].append(
            {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "kms:*", "Resource": "*"}
        )
    if draw(st.integers(0, 5)) == 0:
        document["Statement"][0]["Condition"] = draw(clock_conditions)
    return _parse(document, "key")


@st.composite
def subjects(draw: st.DrawFn) -> Subject:
    policies = []
    for n in range(draw(st.integers(0, 2))):
        parsed = _parse(draw(identity_documents), "identity")
        if parsed is not None:
            policies.append((f"p{n}", parsed))
    tags = draw(st.dictionaries(st.sampled_from(["tenant", "team"]), st.sampled_from(["a", "b"])))
    return Subject(
        draw(st.sampled_from([USER, f"arn:aws:iam::{ACCOUNT}:role/R"])),
        ACCOUNT,
        draw(st.booleans()),
        tags,
        tuple(policies),
        draw(st.sampled_from(["AIDAONE", "AIDATWO"])),
    )


pairs = st.dictionaries(st.sampled_from(["tenant", "Tenant", "app"]), st.sampled_from(["a", "b"]))
grants = st.builds(
    StoredGrantView,
    st.sampled_from(["g1", "g2"]),
    st.sampled_from([USER, f"arn:aws:iam::{ACCOUNT}:root"]),
    st.frozensets(st.sampled_from(["Encrypt", "Decrypt", "GenerateDataKey"])),
    st.none() | pairs,
    st.none() | pairs,
    st.sampled_from([None, "AIDAONE"]),
)
contexts = st.fixed_dictionaries(
    {
        "aws:CurrentTime": st.sampled_from(["2025-01-01T00:00:00Z", "2025-01-01T00:00:02Z"]),
        "aws:EpochTime": st.sampled_from(["1735689600", "1735689602"]),
    },
    optional={
        "aws:SourceIp": st.sampled_from(["10.0.0.1", "203.0.113.7"]),
        "aws:SecureTransport": st.booleans(),
        "kms:ViaService": st.sampled_from(["ec2.us-east-1.amazonaws.com", "x"]),
        "aws:username": st.sampled_from(["u", "v"]),
    },
).flatmap(
    lambda fixed: st.dictionaries(
        condition_keys, st.one_of(context_scalars, st.lists(context_scalars, max_size=2))
    ).map(lambda extra: {**extra, **fixed})
)


_VALUES = st.sampled_from(
    ["a", "u", "10.0.0.1", "::1", "true", "false", "1", "90", "2025-01-01T00:00:00Z", USER]
)


def _read_by(policy: Policy) -> set[str]:
    """The condition keys (as written) of a policy's conditions, and the keys
    its values name in ${...}."""
    keys = set()
    for statement in policy.statements:
        for condition in statement.conditions:
            keys.add(condition.key_as_written or condition.key)
            for value in condition.values:
                for name in value.split("${")[1:]:
                    keys.add(name.split("}")[0].split(",")[0].strip())
    return keys


@st.composite
def scenarios(draw: st.DrawFn) -> list[Request]:
    """Requests drawn from small pools, so that they repeat and collide."""
    subject_pool = draw(st.lists(subjects(), min_size=1, max_size=3))
    policy_pool = draw(st.lists(key_policies(), min_size=1, max_size=3))
    grant_pool = draw(st.lists(st.lists(grants, max_size=2).map(tuple), min_size=1, max_size=3))
    # Values for the very keys the policies read, so that the same slot sees
    # them change: a key missed by the cache shows as a wrong answer.
    read = sorted(
        {
            key
            for policy in [*policy_pool, *(p for s in subject_pool for _, p in s.policies)]
            if policy is not None
            for key in _read_by(policy)
        }
    )
    context_pool = []
    for base in draw(st.lists(contexts, min_size=1, max_size=3)):
        chosen = draw(st.lists(st.sampled_from(read), unique=True)) if read else []
        for key in chosen:
            base[key] = draw(_VALUES | st.lists(_VALUES, min_size=1, max_size=2))
        context_pool.append(base)
    encryption_pool = draw(st.lists(st.none() | pairs, min_size=1, max_size=3))
    requests = []
    for _ in range(draw(st.integers(1, 12))):
        raw = draw(st.sampled_from(context_pool))
        encryption = draw(st.sampled_from(encryption_pool))
        values = dict(raw)
        for name, value in (encryption or {}).items():
            values["kms:EncryptionContext:" + name] = value
        policy = draw(st.sampled_from(policy_pool))
        chosen = draw(st.sampled_from(grant_pool))
        if draw(st.booleans()):
            chosen = tuple(list(chosen))  # the same grants in another tuple
        requests.append(
            Request(
                draw(st.sampled_from(subject_pool)),
                draw(st.sampled_from(ACTIONS)),
                draw(st.sampled_from([KEY, KEY, "*"])),
                draw(st.sampled_from([ACCOUNT, ACCOUNT, "444455556666"])),
                lambda values=values: RequestContext.of(values),  # type: ignore[misc]
                key_policy=policy,
                grants=chosen,
                encryption_context=None if encryption is None else dict(encryption),
            )
        )
    return requests


@PROPERTY
@given(scenarios())
def test_a_cached_decision_is_the_fresh_decision(requests: list[Request]) -> None:
    cache = DecisionCache()
    for request in [*requests, *requests]:
        assert cache.decide(request) == decide(request)
    event("answered from memory" if cache.hits else "never remembered")
    cache.clear()
    assert len(cache) == 0
    for request in requests:
        assert cache.decide(request) == decide(request)


def _subject(policy: Policy | None = None) -> Subject:
    return Subject(USER, ACCOUNT, False, {}, (("p", policy),) if policy else (), "AIDAONE")


def _request(subject: Subject, key_policy: Policy, **context: str) -> Request:
    return Request(
        subject,
        "kms:Encrypt",
        KEY,
        ACCOUNT,
        lambda: RequestContext.of(context),
        key_policy=key_policy,
    )


def _policy(statement: dict[str, Any], kind: str = "key") -> Policy:
    document = {"Version": "2012-10-17", "Statement": [statement]}
    return parse_policy(json.dumps(document), kind=kind)  # type: ignore[arg-type]


ALLOW_USER = {"Effect": "Allow", "Principal": {"AWS": USER}, "Action": "kms:*", "Resource": "*"}


def test_a_repeated_request_is_answered_from_memory() -> None:
    cache = DecisionCache()
    request = _request(_subject(), _policy(ALLOW_USER))
    first = cache.decide(request)
    assert cache.decide(request) is first
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_new_key_policy_or_subject_is_decided_anew() -> None:
    cache = DecisionCache()
    subject = _subject()
    assert cache.decide(_request(subject, _policy(ALLOW_USER))).allowed
    deny = _policy({**ALLOW_USER, "Effect": "Deny"})
    assert cache.decide(_request(subject, deny)).decided_by.startswith("explicit deny")
    denied_identity = _policy(
        {"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*"}, kind="identity"
    )
    refused = cache.decide(_request(_subject(denied_identity), _policy(ALLOW_USER)))
    assert refused.decided_by == "explicit deny in identity policy p statement #1"
    assert cache.hits == 0


def test_a_condition_is_decided_anew_for_new_values_and_never_for_the_clock() -> None:
    cache = DecisionCache()
    by_ip = _policy({**ALLOW_USER, "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}})
    subject = _subject()
    inside = _request(subject, by_ip, **{"aws:SourceIp": "10.1.2.3", "aws:CurrentTime": "1"})
    outside = _request(subject, by_ip, **{"aws:SourceIp": "192.0.2.1", "aws:CurrentTime": "1"})
    later = _request(subject, by_ip, **{"aws:SourceIp": "10.1.2.3", "aws:CurrentTime": "2"})
    assert cache.decide(inside).allowed
    assert not cache.decide(outside).allowed
    assert cache.decide(inside).allowed
    assert cache.decide(later).allowed  # the clock's keys are not read: remembered
    assert cache.hits == 1

    clocked = _policy(
        {**ALLOW_USER, "Condition": {"DateLessThan": {"aws:CurrentTime": "2025-01-01T00:00:00Z"}}}
    )
    cache = DecisionCache()
    before = _request(subject, clocked, **{"aws:CurrentTime": "2024-12-31T23:59:59Z"})
    after = _request(subject, clocked, **{"aws:CurrentTime": "2025-01-01T00:00:01Z"})
    assert cache.decide(before).allowed
    assert not cache.decide(after).allowed
    assert len(cache) == 0


def test_a_grant_or_encryption_context_change_is_decided_anew() -> None:
    cache = DecisionCache()
    no_policy = _policy({**ALLOW_USER, "Action": "kms:DescribeKey"})
    grant = GrantView("g", USER, frozenset({"Encrypt"}), context_subset={"app": "a"})

    def request(grants: tuple[GrantView, ...], app: str) -> Request:
        return Request(
            _subject(),
            "kms:Encrypt",
            KEY,
            ACCOUNT,
            RequestContext,
            key_policy=no_policy,
            grants=grants,
            encryption_context={"app": app},
        )

    subject_request = request((grant,), "a")
    assert cache.decide(subject_request).decided_by == "grant g"
    assert not cache.decide(request((grant,), "b")).allowed
    assert not cache.decide(request((), "a")).allowed


def test_a_work_limit_deny_is_never_remembered() -> None:
    cache = DecisionCache()
    # Many patterns, each scanning the whole value: more matching work than
    # MAX_MATCH_WORK allows, with a value small enough to be remembered.
    value = "a" * 1900
    patterns = [f"*b{i}*" for i in range(2000)] + ["*"]
    assert len(patterns) * len(value) > MAX_MATCH_WORK
    slow = _policy({**ALLOW_USER, "Condition": {"StringLike": {"kms:ViaService": patterns}}})
    request = _request(_subject(), slow, **{"kms:ViaService": value})
    decision = cache.decide(request)
    assert decision == Decision(False, WORK_LIMIT_DECIDER, decision.message)
    assert len(cache) == 0
    assert cache.decide(request) == decision
    assert cache.hits == 0


def test_the_cache_is_bounded() -> None:
    cache = DecisionCache()
    policy = _policy(ALLOW_USER)
    subject = _subject()
    for n in range(MAX_ENTRIES + 10):
        resource = f"{KEY}{n}"
        cache.decide(
            Request(subject, "kms:Encrypt", resource, ACCOUNT, RequestContext, key_policy=policy)
        )
    assert len(cache) == MAX_ENTRIES


def test_an_encryption_context_no_policy_or_grant_reads_is_not_compared() -> None:
    # Neither the policies (no conditions) nor the grants (no constraints)
    # read the context: a new context per request is still remembered.
    cache = DecisionCache()
    policy = _policy(ALLOW_USER)
    subject = _subject()
    grant = (GrantView("g", USER, frozenset({"Encrypt"})),)
    for n in range(3):
        request = Request(
            subject,
            "kms:Encrypt",
            KEY,
            ACCOUNT,
            RequestContext,
            key_policy=policy,
            grants=grant,
            encryption_context={"object": str(n)},
        )
        assert cache.decide(request) == decide(request)
    assert (cache.hits, cache.misses) == (2, 1)


def test_only_the_condition_keys_read_are_compared() -> None:
    cache = DecisionCache()
    by_user = _policy(
        {**ALLOW_USER, "Condition": {"StringEquals": {"kms:ViaService": "${aws:username}.x"}}}
    )
    subject = _subject()
    answers = []
    for via, user, other in [("u.x", "u", "1"), ("u.x", "u", "2"), ("u.x", "v", "2")]:
        values = {"kms:ViaService": via, "aws:username": user, "kms:EncryptionContext:o": other}
        request = _request(subject, by_user, **values)
        assert cache.decide(request) == decide(request)
        answers.append(cache.decide(request).allowed)
    assert answers == [True, True, False]
    # The first is decided, the second remembered (only an unread key
    # changed), the third decided anew (the variable's key changed); each
    # second ask is remembered.
    assert (cache.misses, cache.hits) == (2, 4)
