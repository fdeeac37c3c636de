"""Temporary credentials: GetCallerIdentity, AssumeRole and
AssumeRoleWithWebIdentity, whichever door asks (the STS door,
``service/doors/sts.py``, writes STS's Query protocol).

Assuming a role is authorized as IAM does it: the role is the resource and
its trust policy the resource policy (``parse_policy(kind="trust")``), read
by the same evaluator as key policies. A trust policy naming a principal
decides alone within its account; naming an account (its root) delegates to
that account's identity policies; across accounts both sides must allow
(``evaluate.CROSS_ACCOUNT``). A web identity is no principal: it matches
only a ``Federated`` principal naming the provider that vouched for it, and
the trust policy's conditions read the token's claims as
``<provider>:<claim>``.

A role that does not exist, has no trust policy, or is not a role answers
exactly as a refusal does (AccessDenied naming the ARN), so a caller learns
nothing about which roles exist. Sessions (``auth/sessions.py``) are
self-contained tokens under a key behind the barrier: nothing is stored per
session, and a session dies with its role (its unique id is checked on
every call).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from keycask.arn import Arn
from keycask.auth.credentials import CredentialStore, Principal
from keycask.auth.identity_providers import IdentityProviders, WebIdentity
from keycask.auth.sessions import MAX_TOKEN_CHARS, Issued, NewSession, SessionClaims, SessionTokens
from keycask.config import partition
from keycask.errors import (
    AccessDeniedException,
    InvalidIdentityTokenException,
    MalformedPolicyDocumentException,
    ValidationException,
)
from keycask.policy.conditions import ContextInput, RequestContext
from keycask.policy.document import parse_policy
from keycask.policy.evaluate import Decision, Request, Subject, decide
from keycask.policy.model import Policy
from keycask.policy.request_context import Transport, condition_keys
from keycask.service.core.authz import bind_policy
from keycask.service.core.call import Call, Outcome
from keycask.service.core.sts_requests import (
    AssumeRoleRequest,
    AssumeRoleWithWebIdentityRequest,
    GetCallerIdentityRequest,
)
from keycask.service.core.sts_results import (
    AssumedRoleUser,
    AssumeRoleResult,
    AssumeRoleWithWebIdentityResult,
    Credentials,
    GetCallerIdentityResult,
)

# AWS's defaults and bounds: one hour unless asked; a session made by a
# session (role chaining) lasts at most one hour whatever the role allows.
DEFAULT_DURATION = 3600
CHAINED_MAX_DURATION = 3600
# IAM's session tag limits.
MAX_SESSION_TAGS = 50


@dataclass(frozen=True, slots=True)
class Sts:
    """What the STS handlers use."""

    credentials: CredentialStore
    sessions: SessionTokens
    providers: IdentityProviders


# -- GetCallerIdentity --


async def get_caller_identity(sts: Sts, call: Call, req: GetCallerIdentityRequest) -> Outcome:
    """Who the credentials belong to. As in AWS no permission is needed and
    no policy can refuse it: an explicit deny of sts:GetCallerIdentity is
    ignored, so an application can always learn who it runs as."""
    assert call.caller is not None
    caller = call.caller
    call.decision = "allow"
    call.decided_by = "GetCallerIdentity needs no permission"
    result = GetCallerIdentityResult(caller.user_id, caller.principal.account, caller.arn)
    call.detail = result.arn
    return Outcome(result)


# -- AssumeRole --


async def assume_role(sts: Sts, call: Call, req: AssumeRoleRequest) -> Outcome:
    assert call.caller is not None
    caller = call.caller
    account, name = _role_name(req.role_arn)
    role = await _role(sts, account, name)
    session = caller.session
    tags, transitive = _session_tags(req.tags, req.transitive_tag_keys, session)
    source_identity = _source_identity(req.source_identity, session)
    # What the new session carries, inherited from a calling session
    # included: the next role's trust policy decides on all of it (AWS asks
    # sts:TagSession and sts:SetSourceIdentity of a chained session too).
    parameters: dict[str, ContextInput] = {
        "sts:RoleSessionName": req.role_session_name,
        **_tag_keys(tags, transitive),
    }
    if req.external_id is not None:
        parameters["sts:ExternalId"] = req.external_id
    if source_identity is not None:
        parameters["sts:SourceIdentity"] = source_identity
    actions = ["sts:AssumeRole"]
    if tags or transitive:
        actions.append("sts:TagSession")
    if source_identity is not None:
        actions.append("sts:SetSourceIdentity")
    _authorize(
        call,
        caller.subject,
        role_arn=req.role_arn,
        account=account,
        role=role,
        actions=actions,
        parameters=parameters,
    )
    assert role is not None
    new = _new_session(call, role, req, chained=session is not None)
    issued = await sts.sessions.issue(
        replace(
            new,
            tags=tags,
            transitive_tag_keys=transitive,
            source_identity=source_identity,
            source_arn=caller.arn,
        ),
        call.time,
    )
    user = _assumed(issued.claims)
    call.detail = f"{user.arn} assumed by {caller.arn} until {_expiry(issued.claims)}"
    result = AssumeRoleResult(
        credentials=_credentials(issued),
        assumed_role_user=user,
        packed_policy_size=_packed(issued),
        source_identity=source_identity,
    )
    return Outcome(result, list(issued.writes))


# -- AssumeRoleWithWebIdentity --


async def authenticate_web_identity(sts: Sts, call: Call, *, token: str, role_arn: str) -> None:
    """Who an AssumeRoleWithWebIdentity comes from: its token, verified
    against the provider of its issuer in the role's account. Called by the
    door as authentication, outside the write lock; the handler reads the
    result. A request lacking the token or the role is left to the decoder,
    which refuses it."""
    if not token or not role_arn:
        return
    account, _ = _role_name(role_arn)
    identity = await sts.providers.verify(token, account=account, now=call.time.timestamp())
    _check_claims(identity)
    # The audit record's principal: the provider and the token's subject, as
    # CloudTrail names a WebIdentityUser.
    call.principal_name = f"{identity.provider.arn}:{identity.subject}"
    call.web_identity = identity


async def assume_role_with_web_identity(
    sts: Sts, call: Call, req: AssumeRoleWithWebIdentityRequest
) -> Outcome:
    identity = call.web_identity
    if identity is None:  # the door authenticates every such request first
        raise InvalidIdentityTokenException("The request carries no verified web identity token.")
    account, name = _role_name(req.role_arn)
    provider = identity.provider
    role = await _role(sts, account, name)
    subject = Subject(provider.arn, provider.account, False, federated=True)
    parameters: dict[str, ContextInput] = {
        "sts:RoleSessionName": req.role_session_name,
        "aws:FederatedProvider": provider.arn,
        **_claim_keys(identity),
    }
    _authorize(
        call,
        subject,
        role_arn=req.role_arn,
        account=account,
        role=role,
        actions=["sts:AssumeRoleWithWebIdentity"],
        parameters=parameters,
    )
    assert role is not None
    new = _new_session(call, role, req, chained=False)
    issued = await sts.sessions.issue(replace(new, federated_provider=provider.arn), call.time)
    user = _assumed(issued.claims)
    call.detail = (
        f"{user.arn} assumed by web identity {identity.subject} of {provider.arn} "
        f"until {_expiry(issued.claims)}"
    )
    result = AssumeRoleWithWebIdentityResult(
        credentials=_credentials(issued),
        assumed_role_user=user,
        packed_policy_size=_packed(issued),
        subject_from_web_identity_token=identity.subject,
        provider=provider.url,
        audience=identity.audience,
    )
    return Outcome(result, list(issued.writes))


# -- shared --


def _new_session(
    call: Call,
    role: Principal,
    req: AssumeRoleRequest | AssumeRoleWithWebIdentityRequest,
    *,
    chained: bool,
) -> NewSession:
    """What both AssumeRoles decide alike: the role, the session's name,
    when it ends, and its session policy."""
    duration = _duration(req.duration_seconds, role, chained=chained)
    return NewSession(
        account=role.account,
        role_name=role.name,
        role_id=role.unique_id,
        session_name=req.role_session_name,
        expires=int(call.time.timestamp()) + duration,
        policy=_session_policy(req.policy, req.policy_arns),
    )


def _role_name(role_arn: str) -> tuple[str, str]:
    """(account, name) of a role ARN in the partition keycask serves. A role
    name with a path (``role/team/app``) names no keycask role, which have no
    paths: it is looked up as written and found missing."""
    arn = Arn.parse_or_none(role_arn)
    if (
        arn is None
        or arn.partition != partition()
        or arn.service != "iam"
        or arn.region
        or arn.resource_type != "role"
        or not arn.resource_name
    ):
        raise ValidationException(
            f"{role_arn!r} is not a role ARN (arn:aws:iam::<account>:role/<name>)."
        )
    return arn.account, arn.resource_name


async def _role(sts: Sts, account: str, name: str) -> Principal | None:
    """The role that may be assumed, or None (absent, a user, or no trust policy)."""
    try:
        principal = await sts.credentials.get_principal(account, name)
    except ValidationException:
        return None  # a name no principal can have
    if principal is None or principal.kind != "role" or not principal.trust_policy:
        return None
    return principal


def _authorize(
    call: Call,
    subject: Subject,
    *,
    role_arn: str,
    account: str,
    role: Principal | None,
    actions: list[str],
    parameters: Mapping[str, ContextInput],
) -> None:
    """Every action the request needs, decided on the role's trust policy;
    the first refusal is recorded and raised."""
    trust = _trust_policy(role)
    transport = Transport(call.time, call.source_ip, call.secure_transport)
    region = call.caller.region if call.caller is not None else ""

    def context() -> RequestContext:
        keys = condition_keys(
            None if subject.federated else subject,
            region=region,
            parameters=parameters,
            transport=transport,
        )
        return RequestContext.of(keys)

    decision: Decision | None = None
    for action in actions:
        if trust is None:
            decision = Decision(
                False,
                "the role does not exist or has no trust policy",
                f"User: {_shown(call, subject)} is not authorized to perform: {action} "
                f"on resource: {role_arn}",
            )
        else:
            request = Request(subject, action, role_arn, account, context, key_policy=trust)
            decision = decide(request)
        if not decision.allowed:
            break
    assert decision is not None
    call.decision = "allow" if decision.allowed else "deny"
    call.decided_by = decision.decided_by
    if not decision.allowed:
        # AWS's message names the caller and the role, never why.
        raise AccessDeniedException(
            f"User: {_shown(call, subject)} is not authorized to perform: {action} "
            f"on resource: {role_arn}"
        )


def _trust_policy(role: Principal | None) -> Policy | None:
    if role is None:
        return None
    try:
        policy = parse_policy(role.trust_policy, kind="trust")
    except MalformedPolicyDocumentException:
        return None  # stored before a stricter parser: it never allows
    # Names tied to the principals they named when the policy was put.
    return bind_policy(policy, dict(role.trust_principals))


def _shown(call: Call, subject: Subject) -> str:
    return call.caller.arn if call.caller is not None else subject.arn


def _duration(asked: int | None, role: Principal, *, chained: bool) -> int:
    duration = DEFAULT_DURATION if asked is None else asked
    if chained and duration > CHAINED_MAX_DURATION:
        raise ValidationException(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles "
            "assumed by role chaining."
        )
    if duration > role.max_session_duration:
        raise ValidationException(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
        )
    return duration


def _session_policy(text: str | None, arns: tuple[str, ...]) -> str | None:
    if arns:
        raise ValidationException(
            "PolicyArns: keycask has no managed policies; give the session policy inline (Policy)."
        )
    if text is None:
        return None
    parse_policy(text, kind="identity")  # MalformedPolicyDocumentException
    return text


def _session_tags(
    tags: tuple[tuple[str, str], ...],
    transitive: tuple[str, ...],
    session: SessionClaims | None,
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The new session's tags: the caller's transitive tags (a chained
    session keeps them and may not replace them), then the request's."""
    inherited = dict(session.tags) if session is not None else {}
    inherited_keys = {k.lower() for k in (session.transitive_tag_keys if session else ())}
    kept = {k: v for k, v in inherited.items() if k.lower() in inherited_keys}
    folded: set[str] = set()
    for key, _ in tags:
        if key.lower() in folded:
            raise ValidationException(
                f"Duplicate tag keys found: {key} (tag keys are case-insensitive)."
            )
        folded.add(key.lower())
        if key.lower() in inherited_keys:
            raise ValidationException(
                f"The tag {key} is transitive from the calling session and cannot be replaced."
            )
    for key in transitive:
        if key.lower() not in folded:
            raise ValidationException(f"TransitiveTagKeys names {key}, which is not a session tag.")
    merged = (*kept.items(), *tags)
    if len(merged) > MAX_SESSION_TAGS:
        raise ValidationException(f"A session has at most {MAX_SESSION_TAGS} tags.")
    keys = (*(k for k in kept), *transitive)
    return tuple(merged), tuple(keys)


def _source_identity(asked: str | None, session: SessionClaims | None) -> str | None:
    """Set once, then carried: a chained session keeps its caller's."""
    held = session.source_identity if session is not None else None
    if held is not None and asked is not None and asked != held:
        raise ValidationException(
            "The source identity is already set on the calling session and cannot be changed."
        )
    return held if held is not None else asked


def _tag_keys(
    tags: tuple[tuple[str, str], ...], transitive: tuple[str, ...]
) -> dict[str, ContextInput]:
    keys: dict[str, ContextInput] = {f"aws:RequestTag/{k}": v for k, v in tags}
    if tags:
        keys["aws:TagKeys"] = tuple(k for k, _ in tags)
    if transitive:
        keys["sts:TransitiveTagKeys"] = transitive
    return keys


# XML 1.0's Char production: what an answer (and the audit log's JSON, kept
# printable) can carry of a token's subject and audience.
_XML_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _check_claims(identity: WebIdentity) -> None:
    """Claims a condition or an answer could misread are refused. Two claims
    whose names differ only in case would be one condition key with two
    values (``RequestContext`` merges case variants, and a trust policy's
    ``StringEquals`` on ``<provider>:sub`` could then match the other one);
    a subject or audience with characters XML cannot carry would fail the
    answer after the session was issued."""
    seen: set[str] = set()
    for claim in identity.claims:
        folded = claim.lower()
        if folded in seen:
            raise InvalidIdentityTokenException(
                "The token has two claims whose names differ only in letter case."
            )
        seen.add(folded)
    for what, value in (("sub", identity.subject), ("aud", identity.audience)):
        if _XML_UNSAFE.search(value):
            raise InvalidIdentityTokenException(f"The token's {what} has control characters.")


def _claim_keys(identity: WebIdentity) -> dict[str, ContextInput]:
    """``<provider>:<claim>`` for each claim a condition can compare: strings,
    and lists of strings (amr); the audience is the one the token matched."""
    prefix = identity.provider.name
    keys: dict[str, ContextInput] = {}
    for claim, value in identity.claims.items():
        if isinstance(value, str):
            keys[f"{prefix}:{claim}"] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            keys[f"{prefix}:{claim}"] = tuple(value)
    keys[f"{prefix}:aud"] = identity.audience
    keys[f"{prefix}:sub"] = identity.subject
    return keys


def _assumed(claims: SessionClaims) -> AssumedRoleUser:
    return AssumedRoleUser(assumed_role_id=claims.user_id, arn=claims.arn)


def _credentials(issued: Issued) -> Credentials:
    return Credentials(
        access_key_id=issued.claims.access_key_id,
        secret_access_key=issued.claims.secret,
        session_token=issued.token,
        expiration=datetime.fromtimestamp(issued.claims.expires, UTC),
    )


def _packed(issued: Issued) -> int:
    """PackedPolicySize: the share of the token's room the session policy
    and tags took, in percent (what AWS reports), rounded up."""
    return -(-len(issued.token) * 100 // MAX_TOKEN_CHARS)


def _expiry(claims: SessionClaims) -> str:
    return datetime.fromtimestamp(claims.expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Handler = Callable[[Sts, Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class StsOperation:
    name: str
    request: type
    handler: Handler
    # Writes (a session token key made on first use, or rotated): run under
    # the write lock, so two nodes never race to make one.
    mutates: bool = False


OPERATIONS: Mapping[str, StsOperation] = {
    op.name: op
    for op in (
        StsOperation("GetCallerIdentity", GetCallerIdentityRequest, get_caller_identity),
        StsOperation("AssumeRole", AssumeRoleRequest, assume_role, mutates=True),
        StsOperation(
            "AssumeRoleWithWebIdentity",
            AssumeRoleWithWebIdentityRequest,
            assume_role_with_web_identity,
            mutates=True,
        ),
    )
}
