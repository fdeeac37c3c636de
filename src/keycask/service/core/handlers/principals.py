"""Principals, their identity policies, tags and access keys: the
operations behind the admin door (``service/doors/admin.py``, which has
their wire shapes). Each takes the credential store, the ``Call`` and a
typed request (``core/principal_requests.py``) and answers a typed result
(``core/principal_results.py``) or nothing. They exist in every mode. Like
every request they are authorized and audited (operation
``KeycaskAdmin.<Op>``); the writes are staged and committed after the audit
record is durable.

Authorization is IAM's: the action is ``keycask:<Op>`` on the principal's ARN
(``arn:aws:iam::<account>:user/<name>`` or ``.../role/<name>``; for
ListPrincipals the account, ``arn:aws:iam::<account>:root``), decided by the
caller's identity policies. Administrators are allowed by their implicit
allow-all policy. Two rules come on top:

* Everything happens in the caller's own account: the account defaults to
  it, and naming another account is refused (admins are per account; an
  account's first administrator is made with ``keycask principals create
  --offline``).
* Only administrators create administrators or change one (its policies,
  tags, access keys, or deleting it): otherwise a delegated right such as
  ``keycask:CreateAccessKey`` would be a way to become an administrator.

A secret access key is in the result of CreatePrincipal and CreateAccessKey
and nowhere else: never in a listing, never in the audit record (``detail``
names principals, policies and access key ids only).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from keycask.auth.credentials import (
    DEFAULT_MAX_SESSION_DURATION,
    CredentialStore,
    StoredAccessKey,
    StoredPrincipal,
    is_xks_access_key_id,
)
from keycask.config import partition
from keycask.errors import (
    AccessDeniedException,
    LimitExceededException,
    NotFoundException,
    ValidationException,
)
from keycask.keys.model import iam_root_arn
from keycask.policy.document import parse_policy
from keycask.policy.model import Policy
from keycask.service.core.authz import principal_arns
from keycask.service.core.call import Call, Outcome
from keycask.service.core.principal_requests import (
    AccessKeyRequest,
    CreatePrincipalRequest,
    ListPrincipalsRequest,
    PrincipalPolicyRequest,
    PrincipalRequest,
    PutPrincipalPolicyRequest,
    TagPrincipalRequest,
    UntagPrincipalRequest,
    UpdateAccessKeyRequest,
    UpdateRoleRequest,
)
from keycask.service.core.principal_results import (
    AccessKeySummary,
    CreateAccessKeyResult,
    CreatePrincipalResult,
    GetPrincipalPolicyResult,
    GetPrincipalResult,
    ListAccessKeysResult,
    ListPrincipalsResult,
    PrincipalSummary,
)

MAX_POLICIES = 20
# IAM's tag rules: letters, digits, spaces and _ . : / = + - @; keys up to
# 128 characters, values up to 256; "aws:" is reserved; 50 tags at most.
_TAG_KEY = re.compile(r"^[\w .:/=+@-]{1,128}$")
_TAG_VALUE = re.compile(r"^[\w .:/=+@-]{0,256}$")
MAX_TAGS = 50
DEFAULT_LIMIT = 100

Handler = Callable[[CredentialStore, Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class AdminOperation:
    name: str
    request: type
    handler: Handler
    mutates: bool


# -- tag rules (a door checks a request's tags with them before building it) --


def check_tag_key(key: str) -> None:
    if not _TAG_KEY.match(key):
        raise ValidationException(
            f"Tag key {key[:128]!r} must be 1-128 letters, digits, spaces or _ . : / = + - @."
        )
    if key.lower().startswith("aws:"):
        raise ValidationException(f"Tag key {key!r}: the prefix aws: is reserved.")


def check_tag_value(key: str, value: str) -> None:
    if not _TAG_VALUE.match(value):
        raise ValidationException(
            f"The value of tag {key!r} must be 0-256 letters, digits, spaces or _ . : / = + - @."
        )


def check_tag_count(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise LimitExceededException(f"A principal has at most {MAX_TAGS} tags.")
    folded = {key.lower() for key in tags}
    if len(folded) != len(tags):
        raise ValidationException("Tag keys must differ in more than letter case.")


# -- authorization --


def _refuse(call: Call, action: str, resource: str, decided_by: str, reason: str) -> NoReturn:
    assert call.caller is not None
    call.decision = "deny"
    call.decided_by = decided_by
    raise AccessDeniedException(
        f"User: {call.caller.arn} is not authorized to perform: {action} "
        f"on resource: {resource} {reason}"
    )


async def _allow(
    call: Call, operation: str, account: str, resource: str, *, changes_admin: bool = False
) -> None:
    """Identity policies decide ``keycask:<operation>`` on ``resource``,
    within the caller's own account; administrators change administrators."""
    assert call.caller is not None
    action = "keycask:" + operation
    caller = call.caller.principal
    if account != caller.account:
        _refuse(
            call,
            action,
            resource,
            "another account: principals are managed in their own account",
            f"because it is in another account than {caller.account}",
        )
    await call.authorize(action, resource=resource)
    if changes_admin and not caller.admin:
        _refuse(
            call,
            action,
            resource,
            "only administrators create or change administrators",
            "because only administrators create or change administrators",
        )


def _arn(account: str, kind: str, name: str) -> str:
    return f"arn:{partition()}:iam::{account}:{kind}/{name}"


async def _principal(
    store: CredentialStore,
    call: Call,
    name: str,
    account: str | None,
    operation: str,
    *,
    changes: bool,
) -> StoredPrincipal:
    """The principal ``name`` of ``account`` (None: the caller's), once the
    caller may do ``operation`` on it."""
    account = account or call.account
    stored = await store.stored_principal(account, name)
    # A principal that does not exist is authorized as a user of that name,
    # so a caller without the right learns nothing about which names exist.
    resource = stored.principal.arn if stored else _arn(account, "user", name)
    target_admin = stored is not None and stored.principal.admin
    await _allow(call, operation, account, resource, changes_admin=changes and target_admin)
    if stored is None:
        raise NotFoundException(f"Principal {name} does not exist in account {account}.")
    return stored


# -- principals --


async def create_principal(
    store: CredentialStore, call: Call, req: CreatePrincipalRequest
) -> Outcome:
    account = req.account or call.account
    arn = _arn(account, req.kind, req.name)
    await _allow(call, "CreatePrincipal", account, arn, changes_admin=req.admin)
    if req.trust_policy is not None:
        trust = parse_policy(req.trust_policy, kind="trust")  # MalformedPolicyDocumentException
        principal, writes = await store.stage_create_role(
            account,
            req.name,
            trust_policy=req.trust_policy,
            trust_principals=await _named_now(store, trust),
            max_session_duration=req.max_session_duration or DEFAULT_MAX_SESSION_DURATION,
            tags=dict(req.tags),
        )
        call.detail = f"created {arn} with a trust policy (assumed through STS, no access key)"
        return Outcome(CreatePrincipalResult(arn, principal.unique_id, None, None), writes)
    key, writes = await store.stage_create_principal(
        account, req.name, admin=req.admin, kind=req.kind, tags=dict(req.tags)
    )
    role = " (administrator)" if req.admin else ""
    call.detail = f"created {arn}{role} with access key {key.access_key_id}"
    result = CreatePrincipalResult(
        arn=arn,
        unique_id=key.principal.unique_id,
        access_key_id=key.access_key_id,
        secret_access_key=key.secret,
    )
    return Outcome(result, writes)


async def get_principal(store: CredentialStore, call: Call, req: PrincipalRequest) -> Outcome:
    stored = await _principal(store, call, req.name, req.account, "GetPrincipal", changes=False)
    p = stored.principal
    call.detail = p.arn
    return Outcome(
        GetPrincipalResult(
            arn=p.arn,
            unique_id=p.unique_id,
            name=p.name,
            account=p.account,
            kind=p.kind,
            admin=p.admin,
            tags=p.tags,
            policy_names=tuple(name for name, _ in p.policies),
            # Its access keys; XKS credentials are listed by ListXksCredentials.
            access_key_count=sum(not is_xks_access_key_id(i) for i in stored.access_key_ids),
            created=stored.created,
            trust_policy=p.trust_policy or None,
            max_session_duration=p.max_session_duration if p.trust_policy else None,
        )
    )


async def list_principals(
    store: CredentialStore, call: Call, req: ListPrincipalsRequest
) -> Outcome:
    account = req.account or call.account
    limit = req.limit if req.limit is not None else DEFAULT_LIMIT
    await _allow(call, "ListPrincipals", account, iam_root_arn(account))
    found = await store.list_principals(account, req.marker or "", limit + 1)
    page = found[:limit]
    truncated = len(found) > limit
    call.detail = f"account {account}"
    return Outcome(
        ListPrincipalsResult(
            principals=tuple(PrincipalSummary(p.arn, p.name, p.kind, p.admin) for p in page),
            truncated=truncated,
            next_marker=page[-1].name if truncated else None,
        )
    )


async def delete_principal(store: CredentialStore, call: Call, req: PrincipalRequest) -> Outcome:
    stored = await _principal(store, call, req.name, req.account, "DeletePrincipal", changes=True)
    p = stored.principal
    assert call.caller is not None
    me = call.caller.principal
    if (p.account, p.name) == (me.account, me.name):
        raise ValidationException(
            "A principal cannot delete itself; ask another administrator to delete it."
        )
    keys = ", ".join(stored.access_key_ids) or "none"
    call.detail = f"deleted {p.arn} and its access keys: {keys}"
    return Outcome(None, store.stage_delete_principal(stored))


# -- identity policies --


async def put_principal_policy(
    store: CredentialStore, call: Call, req: PutPrincipalPolicyRequest
) -> Outcome:
    stored = await _principal(
        store, call, req.name, req.account, "PutPrincipalPolicy", changes=True
    )
    parse_policy(req.policy_document, kind="identity")  # MalformedPolicyDocumentException
    policies = dict(stored.principal.policies)
    policies[req.policy_name] = req.policy_document
    if len(policies) > MAX_POLICIES:
        raise LimitExceededException(
            f"{stored.principal.arn} has {MAX_POLICIES} identity policies, the limit."
        )
    call.detail = f"policy {req.policy_name} put on {stored.principal.arn}"
    return Outcome(None, store.stage_principal(stored, policies=policies.items()))


async def get_principal_policy(
    store: CredentialStore, call: Call, req: PrincipalPolicyRequest
) -> Outcome:
    stored = await _principal(
        store, call, req.name, req.account, "GetPrincipalPolicy", changes=False
    )
    policies = dict(stored.principal.policies)
    if req.policy_name not in policies:
        raise NotFoundException(
            f"{stored.principal.arn} has no identity policy named {req.policy_name}."
        )
    call.detail = f"policy {req.policy_name} of {stored.principal.arn}"
    return Outcome(GetPrincipalPolicyResult(req.policy_name, policies[req.policy_name]))


async def delete_principal_policy(
    store: CredentialStore, call: Call, req: PrincipalPolicyRequest
) -> Outcome:
    stored = await _principal(
        store, call, req.name, req.account, "DeletePrincipalPolicy", changes=True
    )
    policies = dict(stored.principal.policies)
    if policies.pop(req.policy_name, None) is None:
        raise NotFoundException(
            f"{stored.principal.arn} has no identity policy named {req.policy_name}."
        )
    call.detail = f"policy {req.policy_name} deleted from {stored.principal.arn}"
    return Outcome(None, store.stage_principal(stored, policies=policies.items()))


# -- roles --


async def _named_now(store: CredentialStore, trust: Policy) -> tuple[tuple[str, str], ...]:
    """(ARN, unique id) of each user or role the trust policy names that
    exists now: recorded with it, as a key policy's are."""
    found = []
    for arn in principal_arns(trust):
        unique_id = await store.unique_id(arn)
        if unique_id is not None:
            found.append((arn, unique_id))
    return tuple(sorted(found))


async def update_role(store: CredentialStore, call: Call, req: UpdateRoleRequest) -> Outcome:
    stored = await _principal(store, call, req.name, req.account, "UpdateRole", changes=True)
    if stored.principal.kind != "role":
        raise ValidationException(
            f"{stored.principal.arn} is a user; only a role has a trust policy."
        )
    named: tuple[tuple[str, str], ...] = ()
    if req.trust_policy is not None:
        trust = parse_policy(req.trust_policy, kind="trust")  # MalformedPolicyDocumentException
        named = await _named_now(store, trust)
    elif not stored.principal.trust_policy:
        raise ValidationException(
            f"{stored.principal.arn} has no trust policy; give one (TrustPolicy) first."
        )
    changed = [
        what
        for what, value in (
            ("trust policy", req.trust_policy),
            ("maximum session duration", req.max_session_duration),
        )
        if value is not None
    ]
    if not changed:
        raise ValidationException("Give TrustPolicy, MaxSessionDuration or both.")
    call.detail = f"{' and '.join(changed)} of {stored.principal.arn} updated"
    writes = store.stage_principal(
        stored,
        trust_policy=req.trust_policy,
        trust_principals=named,
        max_session_duration=req.max_session_duration,
    )
    return Outcome(None, writes)


# -- tags --


async def tag_principal(store: CredentialStore, call: Call, req: TagPrincipalRequest) -> Outcome:
    new = dict(req.tags)
    stored = await _principal(store, call, req.name, req.account, "TagPrincipal", changes=True)
    # Keys are unique regardless of case (as in IAM, and as condition keys
    # compare them): a tag replaces the one its key names in any case.
    folded = {key.lower() for key in new}
    tags = {k: v for k, v in stored.principal.tags if k.lower() not in folded}
    tags.update(new)
    check_tag_count(tags)
    call.detail = f"tags {', '.join(sorted(new))} set on {stored.principal.arn}"
    return Outcome(None, store.stage_principal(stored, tags=tags.items()))


async def untag_principal(
    store: CredentialStore, call: Call, req: UntagPrincipalRequest
) -> Outcome:
    stored = await _principal(store, call, req.name, req.account, "UntagPrincipal", changes=True)
    folded = {key.lower() for key in req.tag_keys}
    tags = [(k, v) for k, v in stored.principal.tags if k.lower() not in folded]
    call.detail = f"tags {', '.join(sorted(req.tag_keys))} removed from {stored.principal.arn}"
    return Outcome(None, store.stage_principal(stored, tags=tags))


# -- access keys --


async def create_access_key(store: CredentialStore, call: Call, req: PrincipalRequest) -> Outcome:
    stored = await _principal(store, call, req.name, req.account, "CreateAccessKey", changes=True)
    key, writes = store.stage_access_key(stored)
    call.detail = f"access key {key.access_key_id} created for {stored.principal.arn}"
    return Outcome(CreateAccessKeyResult(key.access_key_id, key.secret), writes)


async def list_access_keys(store: CredentialStore, call: Call, req: PrincipalRequest) -> Outcome:
    stored = await _principal(store, call, req.name, req.account, "ListAccessKeys", changes=False)
    keys = await store.access_keys(stored)
    call.detail = stored.principal.arn
    return Outcome(
        ListAccessKeysResult(
            tuple(AccessKeySummary(key.access_key_id, key.active, key.created) for key in keys)
        )
    )


async def _owned_key(
    store: CredentialStore, call: Call, access_key_id: str, operation: str
) -> tuple[StoredPrincipal, StoredAccessKey]:
    key = await store.access_key(access_key_id)
    # Another account's keys are as good as absent.
    owner = None
    if key is not None and key.account == call.account:
        owner = await store.stored_principal(key.account, key.name)
    if key is None or owner is None:
        raise NotFoundException(f"The access key {access_key_id[:32]!r} does not exist.")
    p = owner.principal
    await _allow(call, operation, p.account, p.arn, changes_admin=p.admin)
    return owner, key


async def update_access_key(
    store: CredentialStore, call: Call, req: UpdateAccessKeyRequest
) -> Outcome:
    owner, key = await _owned_key(store, call, req.access_key_id, "UpdateAccessKey")
    status = "Active" if req.active else "Inactive"
    call.detail = f"access key {key.access_key_id} of {owner.principal.arn} set {status}"
    if store.is_active(owner, key) == req.active:
        return Outcome()
    return Outcome(None, store.stage_access_key_status(owner, key, active=req.active))


async def delete_access_key(store: CredentialStore, call: Call, req: AccessKeyRequest) -> Outcome:
    owner, key = await _owned_key(store, call, req.access_key_id, "DeleteAccessKey")
    call.detail = f"access key {key.access_key_id} of {owner.principal.arn} deleted"
    return Outcome(None, store.stage_delete_access_key(owner, key))


OPERATIONS: Mapping[str, AdminOperation] = {
    op.name: op
    for op in (
        AdminOperation("CreatePrincipal", CreatePrincipalRequest, create_principal, True),
        AdminOperation("GetPrincipal", PrincipalRequest, get_principal, False),
        AdminOperation("ListPrincipals", ListPrincipalsRequest, list_principals, False),
        AdminOperation("DeletePrincipal", PrincipalRequest, delete_principal, True),
        AdminOperation("PutPrincipalPolicy", PutPrincipalPolicyRequest, put_principal_policy, True),
        AdminOperation("GetPrincipalPolicy", PrincipalPolicyRequest, get_principal_policy, False),
        AdminOperation(
            "DeletePrincipalPolicy", PrincipalPolicyRequest, delete_principal_policy, True
        ),
        AdminOperation("TagPrincipal", TagPrincipalRequest, tag_principal, True),
        AdminOperation("UntagPrincipal", UntagPrincipalRequest, untag_principal, True),
        AdminOperation("CreateAccessKey", PrincipalRequest, create_access_key, True),
        AdminOperation("ListAccessKeys", PrincipalRequest, list_access_keys, False),
        AdminOperation("UpdateAccessKey", UpdateAccessKeyRequest, update_access_key, True),
        AdminOperation("DeleteAccessKey", AccessKeyRequest, delete_access_key, True),
        AdminOperation("UpdateRole", UpdateRoleRequest, update_role, True),
    )
}
