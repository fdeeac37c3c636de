"""``keycask policy simulate``: what keycask would decide for a request,
with the server's own condition keys (request_context.py) and evaluator:
on a key (its key policy, grants and the caller's identity policies), or
assuming a role (its trust policy, as STS's AssumeRole decides)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keycask.keys.model import Key
from keycask.policy.conditions import ContextInput, RequestContext
from keycask.policy.evaluate import Decision, GrantView, Request, Subject, decide
from keycask.policy.model import Policy
from keycask.policy.request_context import (
    NO_TRANSPORT,
    Transport,
    condition_keys,
    request_context,
)
from keycask.policy.statements import normalize_action


def simulate(
    subject: Subject,
    action: str,
    key: Key,
    key_policy: Policy | None,
    grants: Sequence[GrantView] = (),
    *,
    region: str | None = None,
    parameters: Mapping[str, ContextInput] | None = None,
    encryption_context: Mapping[str, str] | None = None,
    transport: Transport = NO_TRANSPORT,
) -> Decision:
    """What keycask would decide if ``subject`` asked for ``action`` on
    ``key`` from ``region`` (default: the key's): the same condition keys
    (request_context.py) and the same ``decide`` the server runs.
    ``parameters`` are the operation's own condition keys
    (``kms:EncryptionAlgorithm``, ``kms:RequestAlias``, ...);
    ``encryption_context`` is also what grants' constraints see."""
    action = normalize_action(action)

    def build() -> RequestContext:
        return request_context(
            subject,
            region=region or key.region,
            key=key,
            encryption_context=encryption_context,
            parameters=parameters,
            transport=transport,
        )

    return decide(
        Request(
            subject,
            action,
            key.arn,
            key.account,
            build,
            key_policy=key_policy,
            grants=tuple(grants),
            encryption_context=encryption_context,
        )
    )


def simulate_assume(
    subject: Subject,
    action: str,
    role_arn: str,
    role_account: str,
    trust_policy: Policy,
    *,
    region: str,
    parameters: Mapping[str, ContextInput] | None = None,
    transport: Transport = NO_TRANSPORT,
) -> Decision:
    """What keycask would decide if ``subject`` asked to assume the role
    (``action`` sts:AssumeRole, sts:TagSession, ...): its trust policy in
    the key policy's place, as ``handlers/sts.py`` decides. ``parameters``
    are the request's own keys (sts:ExternalId, sts:RoleSessionName,
    aws:RequestTag/..., ...)."""

    def build() -> RequestContext:
        return RequestContext.of(
            condition_keys(subject, region=region, parameters=parameters, transport=transport)
        )

    return decide(Request(subject, action, role_arn, role_account, build, key_policy=trust_policy))
