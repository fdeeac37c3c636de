"""Typed requests of the principal operations (principals, their identity
policies, tags and access keys; handlers in ``handlers/principals.py``).

A door builds them once it has checked every value: names and accounts
(``auth.credentials.check_name`` / ``check_account``), tags (the rules in
``handlers/principals.py``), policy names, limits; so the handlers take them
as they are, as the KMS handlers take requests the codec checked against the
model. ``account`` None is the caller's own account.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PrincipalRequest:
    """Operations that name only a principal (GetPrincipal, DeletePrincipal,
    CreateAccessKey, ListAccessKeys)."""

    name: str
    account: str | None = None


@dataclass(frozen=True, slots=True)
class CreatePrincipalRequest:
    name: str
    account: str | None = None
    kind: str = "user"  # "user" | "role", as in the ARN
    admin: bool = False
    tags: tuple[tuple[str, str], ...] = ()
    # A role assumed through STS (no access key is made for it).
    trust_policy: str | None = None
    max_session_duration: int | None = None


@dataclass(frozen=True, slots=True)
class UpdateRoleRequest:
    """A role's trust policy and/or maximum session duration."""

    name: str
    account: str | None = None
    trust_policy: str | None = None
    max_session_duration: int | None = None


@dataclass(frozen=True, slots=True)
class ListPrincipalsRequest:
    account: str | None = None
    marker: str | None = None  # the name of the last principal of the page before
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class PutPrincipalPolicyRequest:
    name: str
    policy_name: str
    policy_document: str
    account: str | None = None


@dataclass(frozen=True, slots=True)
class PrincipalPolicyRequest:
    """GetPrincipalPolicy, DeletePrincipalPolicy."""

    name: str
    policy_name: str
    account: str | None = None


@dataclass(frozen=True, slots=True)
class TagPrincipalRequest:
    name: str
    tags: tuple[tuple[str, str], ...]
    account: str | None = None


@dataclass(frozen=True, slots=True)
class UntagPrincipalRequest:
    name: str
    tag_keys: tuple[str, ...]
    account: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateAccessKeyRequest:
    access_key_id: str
    active: bool


@dataclass(frozen=True, slots=True)
class AccessKeyRequest:
    """DeleteAccessKey."""

    access_key_id: str
