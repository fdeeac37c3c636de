"""KeycaskAdmin: principals, their identity policies, tags and access keys,
managed over the KMS endpoint (the admin door, ``service/doors/admin.py``).

Not part of the AWS model, so these operations have their own target,
``X-Amz-Target: KeycaskAdmin.<Op>``, and small JSON shapes (below; the
table at the end gives each one's members). They exist in every mode. Like
every request they are signed, authorized and audited (operation
``KeycaskAdmin.<Op>``); the writes are staged and committed after the audit
record is durable.

Authorization is IAM's: the action is ``keycask:<Op>`` on the principal's ARN
(``arn:aws:iam::<account>:user/<name>`` or ``.../role/<name>``; for
ListPrincipals the account, ``arn:aws:iam::<account>:root``), decided by the
caller's identity policies. Administrators are allowed by their implicit
allow-all policy. Two rules come on top:

* Everything happens in the caller's own account: ``Account`` defaults to it,
  and naming another account is refused (admins are per account; an account's
  first administrator is made with ``keycask principals create --offline``).
* Only administrators create administrators or change one (its policies,
  tags, access keys, or deleting it): otherwise a delegated right such as
  ``keycask:CreateAccessKey`` would be a way to become an administrator.

A secret access key is in the answer of CreatePrincipal and CreateAccessKey
and nowhere else: never in a listing, never in the audit record (``detail``
names principals, policies and access key ids only).

Operations (``?`` = optional; Account defaults to the caller's account):

    CreatePrincipal       {Name, Account?, Role?, Tags?{k: v}, Admin?}
                          -> {Arn, UniqueId, AccessKeyId, SecretAccessKey}
    GetPrincipal          {Name, Account?} -> {Arn, UniqueId, Name, Account, Kind,
                          Admin, Tags, PolicyNames, AccessKeyCount, CreateDate}
    ListPrincipals        {Account?, Marker?, Limit?}
                          -> {Principals: [{Arn, Name, Kind, Admin}], Truncated, NextMarker?}
    DeletePrincipal       {Name, Account?}: the principal, its policies and all
                          its access keys, at once (a principal cannot delete itself)
    PutPrincipalPolicy    {Name, Account?, PolicyName, PolicyDocument}
    GetPrincipalPolicy    {Name, Account?, PolicyName} -> {PolicyName, PolicyDocument}
    DeletePrincipalPolicy {Name, Account?, PolicyName}
    TagPrincipal          {Name, Account?, Tags{k: v}}
    UntagPrincipal        {Name, Account?, TagKeys[k]}
    CreateAccessKey       {Name, Account?} -> {AccessKeyId, SecretAccessKey}
    ListAccessKeys        {Name, Account?} -> {AccessKeys: [{AccessKeyId, Status, CreateDate}]}
    UpdateAccessKey       {AccessKeyId, Status: Active|Inactive}
    DeleteAccessKey       {AccessKeyId}

Operations that answer nothing answer ``{}``.

Why one module of ~500 lines: the twelve operations share the two rules above
and one validation of names, policies and tags; each handler is a few lines
over those shared checks.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from keycask.auth.credentials import (
    CredentialStore,
    StoredAccessKey,
    StoredPrincipal,
    check_account,
    check_name,
)
from keycask.config import partition
from keycask.errors import (
    AccessDeniedException,
    InvalidMarkerException,
    LimitExceededException,
    NotFoundException,
    ValidationException,
)
from keycask.keys.model import iam_root_arn
from keycask.policy.document import parse_policy
from keycask.service.core.call import Call, Outcome

_POLICY_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,128}$")
MAX_POLICIES = 20
# IAM's tag rules: letters, digits, spaces and _ . : / = + - @; keys up to
# 128 characters, values up to 256; "aws:" is reserved; 50 tags at most.
_TAG_KEY = re.compile(r"^[\w .:/=+@-]{1,128}$")
_TAG_VALUE = re.compile(r"^[\w .:/=+@-]{0,256}$")
MAX_TAGS = 50
_DEFAULT_LIMIT = 100
_MAX_LIMIT = 1000

Fields = dict[str, Any]
Handler = Callable[[CredentialStore, Call, Fields], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class AdminOperation:
    name: str
    handler: Handler
    mutates: bool
    members: frozenset[str]
    required: frozenset[str]


# -- members --


def _string(fields: Fields, name: str) -> str:
    value = fields[name]
    if not isinstance(value, str):
        raise ValidationException(f"{name} must be a string.")
    return value


def _optional_string(fields: Fields, name: str) -> str | None:
    return None if fields.get(name) is None else _string(fields, name)


def _flag(fields: Fields, name: str) -> bool:
    value = fields.get(name, False)
    if not isinstance(value, bool):
        raise ValidationException(f"{name} must be true or false.")
    return value


def _tags(fields: Fields, name: str) -> dict[str, str]:
    value = fields.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationException(f'{name} must be an object of tags: {{"key": "value"}}.')
    for key, tag_value in value.items():
        if not isinstance(tag_value, str):
            raise ValidationException(f"The value of tag {key[:128]!r} must be a string.")
        _check_tag_key(key)
        if not _TAG_VALUE.match(tag_value):
            raise ValidationException(
                f"The value of tag {key!r} must be 0-256 letters, digits, spaces "
                "or _ . : / = + - @."
            )
    return value


def _check_tag_key(key: str) -> None:
    if not _TAG_KEY.match(key):
        raise ValidationException(
            f"Tag key {key[:128]!r} must be 1-128 letters, digits, spaces or _ . : / = + - @."
        )
    if key.lower().startswith("aws:"):
        raise ValidationException(f"Tag key {key!r}: the prefix aws: is reserved.")


def _account(call: Call, fields: Fields) -> str:
    account = _optional_string(fields, "Account") or call.account
    check_account(account)
    return account


def _date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- authorization --


def _refuse(call: Call, action: str, resource: str, decided_by: str, reason: str) -> NoReturn:
    assert call.caller is not None
    call.decision = "deny"
    call.decided_by = decided_by
    raise AccessDeniedException(
        f"User: {call.caller.principal.arn} is not authorized to perform: {action} "
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
    store: CredentialStore, call: Call, fields: Fields, operation: str, *, changes: bool
) -> StoredPrincipal:
    """The principal ``Name`` (and ``Account``) names, once the caller may
    do ``operation`` on it."""
    name = _string(fields, "Name")
    check_name(name)
    account = _account(call, fields)
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


async def create_principal(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    name = _string(fields, "Name")
    check_name(name)
    account = _account(call, fields)
    kind = "role" if _flag(fields, "Role") else "user"
    admin = _flag(fields, "Admin")
    tags = _tags(fields, "Tags")
    _check_tag_count(tags)
    arn = _arn(account, kind, name)
    await _allow(call, "CreatePrincipal", account, arn, changes_admin=admin)
    key, writes = await store.stage_create_principal(
        account, name, admin=admin, kind=kind, tags=tags
    )
    role = " (administrator)" if admin else ""
    call.detail = f"created {arn}{role} with access key {key.access_key_id}"
    result = {
        "Arn": arn,
        "UniqueId": key.principal.unique_id,
        "AccessKeyId": key.access_key_id,
        "SecretAccessKey": key.secret,
    }
    return Outcome(result, writes)


async def get_principal(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    stored = await _principal(store, call, fields, "GetPrincipal", changes=False)
    p = stored.principal
    call.detail = p.arn
    return Outcome(
        {
            "Arn": p.arn,
            "UniqueId": p.unique_id,
            "Name": p.name,
            "Account": p.account,
            "Kind": p.kind,
            "Admin": p.admin,
            "Tags": dict(p.tags),
            "PolicyNames": [name for name, _ in p.policies],
            "AccessKeyCount": len(stored.access_key_ids),
            "CreateDate": _date(stored.created),
        }
    )


async def list_principals(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    account = _account(call, fields)
    marker = _optional_string(fields, "Marker")
    limit = fields.get("Limit", _DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise ValidationException(f"Limit must be a whole number from 1 to {_MAX_LIMIT}.")
    if marker is not None:
        try:
            check_name(marker)
        except ValidationException:
            raise InvalidMarkerException("The marker is not valid.") from None
    await _allow(call, "ListPrincipals", account, iam_root_arn(account))
    found = await store.list_principals(account, marker or "", limit + 1)
    page = found[:limit]
    result: dict[str, Any] = {
        "Principals": [
            {"Arn": p.arn, "Name": p.name, "Kind": p.kind, "Admin": p.admin} for p in page
        ],
        "Truncated": len(found) > limit,
    }
    if len(found) > limit:
        result["NextMarker"] = page[-1].name
    call.detail = f"account {account}"
    return Outcome(result)


async def delete_principal(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    stored = await _principal(store, call, fields, "DeletePrincipal", changes=True)
    p = stored.principal
    assert call.caller is not None
    me = call.caller.principal
    if (p.account, p.name) == (me.account, me.name):
        raise ValidationException(
            "A principal cannot delete itself; ask another administrator to delete it."
        )
    keys = ", ".join(stored.access_key_ids) or "none"
    call.detail = f"deleted {p.arn} and its access keys: {keys}"
    return Outcome({}, store.stage_delete_principal(stored))


# -- identity policies --


def _policy_name(fields: Fields) -> str:
    name = _string(fields, "PolicyName")
    if not _POLICY_NAME.match(name):
        raise ValidationException("PolicyName must be 1-128 of A-Z a-z 0-9 and _ + = , . @ -.")
    return name


async def put_principal_policy(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    policy_name = _policy_name(fields)
    text = _string(fields, "PolicyDocument")
    stored = await _principal(store, call, fields, "PutPrincipalPolicy", changes=True)
    parse_policy(text, kind="identity")  # MalformedPolicyDocumentException
    policies = dict(stored.principal.policies)
    policies[policy_name] = text
    if len(policies) > MAX_POLICIES:
        raise LimitExceededException(
            f"{stored.principal.arn} has {MAX_POLICIES} identity policies, the limit."
        )
    call.detail = f"policy {policy_name} put on {stored.principal.arn}"
    return Outcome({}, store.stage_principal(stored, policies=policies.items()))


async def get_principal_policy(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    policy_name = _policy_name(fields)
    stored = await _principal(store, call, fields, "GetPrincipalPolicy", changes=False)
    policies = dict(stored.principal.policies)
    if policy_name not in policies:
        raise NotFoundException(
            f"{stored.principal.arn} has no identity policy named {policy_name}."
        )
    call.detail = f"policy {policy_name} of {stored.principal.arn}"
    return Outcome({"PolicyName": policy_name, "PolicyDocument": policies[policy_name]})


async def delete_principal_policy(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    policy_name = _policy_name(fields)
    stored = await _principal(store, call, fields, "DeletePrincipalPolicy", changes=True)
    policies = dict(stored.principal.policies)
    if policies.pop(policy_name, None) is None:
        raise NotFoundException(
            f"{stored.principal.arn} has no identity policy named {policy_name}."
        )
    call.detail = f"policy {policy_name} deleted from {stored.principal.arn}"
    return Outcome({}, store.stage_principal(stored, policies=policies.items()))


# -- tags --


def _check_tag_count(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise LimitExceededException(f"A principal has at most {MAX_TAGS} tags.")
    folded = {key.lower() for key in tags}
    if len(folded) != len(tags):
        raise ValidationException("Tag keys must differ in more than letter case.")


async def tag_principal(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    new = _tags(fields, "Tags")
    if not new:
        raise ValidationException("Tags must name at least one tag.")
    _check_tag_count(new)
    stored = await _principal(store, call, fields, "TagPrincipal", changes=True)
    # Keys are unique regardless of case (as in IAM, and as condition keys
    # compare them): a tag replaces the one its key names in any case.
    folded = {key.lower() for key in new}
    tags = {k: v for k, v in stored.principal.tags if k.lower() not in folded}
    tags.update(new)
    _check_tag_count(tags)
    call.detail = f"tags {', '.join(sorted(new))} set on {stored.principal.arn}"
    return Outcome({}, store.stage_principal(stored, tags=tags.items()))


async def untag_principal(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    keys = fields["TagKeys"]
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise ValidationException("TagKeys must be a list of tag keys.")
    for key in keys:
        _check_tag_key(key)
    stored = await _principal(store, call, fields, "UntagPrincipal", changes=True)
    folded = {key.lower() for key in keys}
    tags = [(k, v) for k, v in stored.principal.tags if k.lower() not in folded]
    call.detail = f"tags {', '.join(sorted(keys))} removed from {stored.principal.arn}"
    return Outcome({}, store.stage_principal(stored, tags=tags))


# -- access keys --


async def create_access_key(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    stored = await _principal(store, call, fields, "CreateAccessKey", changes=True)
    key, writes = store.stage_access_key(stored)
    call.detail = f"access key {key.access_key_id} created for {stored.principal.arn}"
    return Outcome({"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret}, writes)


async def list_access_keys(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    stored = await _principal(store, call, fields, "ListAccessKeys", changes=False)
    keys = await store.access_keys(stored)
    call.detail = stored.principal.arn
    return Outcome(
        {
            "AccessKeys": [
                {
                    "AccessKeyId": key.access_key_id,
                    "Status": "Active" if key.active else "Inactive",
                    "CreateDate": _date(key.created),
                }
                for key in keys
            ]
        }
    )


async def _owned_key(
    store: CredentialStore, call: Call, fields: Fields, operation: str
) -> tuple[StoredPrincipal, StoredAccessKey]:
    access_key_id = _string(fields, "AccessKeyId")
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


async def update_access_key(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    status = _string(fields, "Status")
    if status not in ("Active", "Inactive"):
        raise ValidationException("Status must be Active or Inactive.")
    owner, key = await _owned_key(store, call, fields, "UpdateAccessKey")
    active = status == "Active"
    call.detail = f"access key {key.access_key_id} of {owner.principal.arn} set {status}"
    if store.is_active(owner, key) == active:
        return Outcome({})
    return Outcome({}, store.stage_access_key_status(owner, key, active=active))


async def delete_access_key(store: CredentialStore, call: Call, fields: Fields) -> Outcome:
    owner, key = await _owned_key(store, call, fields, "DeleteAccessKey")
    call.detail = f"access key {key.access_key_id} of {owner.principal.arn} deleted"
    return Outcome({}, store.stage_delete_access_key(owner, key))


def _op(
    name: str,
    handler: Handler,
    *,
    mutates: bool,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> AdminOperation:
    return AdminOperation(
        name, handler, mutates, frozenset(required + optional), frozenset(required)
    )


_IN_ACCOUNT = ("Account",)
OPERATIONS: Mapping[str, AdminOperation] = {
    op.name: op
    for op in (
        _op("CreatePrincipal", create_principal, mutates=True, required=("Name",),
            optional=("Account", "Role", "Tags", "Admin")),
        _op("GetPrincipal", get_principal, mutates=False, required=("Name",),
            optional=_IN_ACCOUNT),
        _op("ListPrincipals", list_principals, mutates=False, required=(),
            optional=("Account", "Marker", "Limit")),
        _op("DeletePrincipal", delete_principal, mutates=True, required=("Name",),
            optional=_IN_ACCOUNT),
        _op("PutPrincipalPolicy", put_principal_policy, mutates=True,
            required=("Name", "PolicyName", "PolicyDocument"), optional=_IN_ACCOUNT),
        _op("GetPrincipalPolicy", get_principal_policy, mutates=False,
            required=("Name", "PolicyName"), optional=_IN_ACCOUNT),
        _op("DeletePrincipalPolicy", delete_principal_policy, mutates=True,
            required=("Name", "PolicyName"), optional=_IN_ACCOUNT),
        _op("TagPrincipal", tag_principal, mutates=True, required=("Name", "Tags"),
            optional=_IN_ACCOUNT),
        _op("UntagPrincipal", untag_principal, mutates=True, required=("Name", "TagKeys"),
            optional=_IN_ACCOUNT),
        _op("CreateAccessKey", create_access_key, mutates=True, required=("Name",),
            optional=_IN_ACCOUNT),
        _op("ListAccessKeys", list_access_keys, mutates=False, required=("Name",),
            optional=_IN_ACCOUNT),
        _op("UpdateAccessKey", update_access_key, mutates=True,
            required=("AccessKeyId", "Status")),
        _op("DeleteAccessKey", delete_access_key, mutates=True, required=("AccessKeyId",)),
    )
}  # fmt: skip
