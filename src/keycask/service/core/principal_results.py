"""Typed results of the principal operations (``handlers/principals.py``);
the operations that answer nothing have none. Times are epoch seconds."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CreatePrincipalResult:
    arn: str
    unique_id: str
    # None for a role assumed through STS, which has no access key.
    access_key_id: str | None
    # Shown in this answer only: never listed, never audited.
    secret_access_key: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class GetPrincipalResult:
    arn: str
    unique_id: str
    name: str
    account: str
    kind: str
    admin: bool
    tags: tuple[tuple[str, str], ...]
    policy_names: tuple[str, ...]
    access_key_count: int
    created: float
    trust_policy: str | None = None  # a role assumed through STS
    max_session_duration: int | None = None


@dataclass(frozen=True, slots=True)
class PrincipalSummary:
    arn: str
    name: str
    kind: str
    admin: bool


@dataclass(frozen=True, slots=True)
class ListPrincipalsResult:
    principals: tuple[PrincipalSummary, ...]
    truncated: bool
    next_marker: str | None = None  # set when truncated


@dataclass(frozen=True, slots=True)
class GetPrincipalPolicyResult:
    policy_name: str
    policy_document: str


@dataclass(frozen=True, slots=True)
class CreateAccessKeyResult:
    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AccessKeySummary:
    access_key_id: str
    active: bool
    created: float


@dataclass(frozen=True, slots=True)
class ListAccessKeysResult:
    access_keys: tuple[AccessKeySummary, ...]
