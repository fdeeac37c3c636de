"""Typed results of the temporary-credential operations; the STS door
writes them as STS's XML answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str  # ASIA...
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime  # timezone-aware, UTC


@dataclass(frozen=True, slots=True)
class AssumedRoleUser:
    assumed_role_id: str  # "<role unique id>:<session name>"
    arn: str  # arn:aws:sts::<account>:assumed-role/<role>/<session>


@dataclass(frozen=True, slots=True)
class GetCallerIdentityResult:
    user_id: str
    account: str
    arn: str


@dataclass(frozen=True, slots=True)
class AssumeRoleResult:
    credentials: Credentials
    assumed_role_user: AssumedRoleUser
    # What the session policy and tags take of the token's room, in percent
    # (AWS's PackedPolicySize).
    packed_policy_size: int
    source_identity: str | None = None


@dataclass(frozen=True, slots=True)
class AssumeRoleWithWebIdentityResult:
    credentials: Credentials
    assumed_role_user: AssumedRoleUser
    packed_policy_size: int
    subject_from_web_identity_token: str
    provider: str  # the provider's issuer, as AWS answers it (host and path)
    audience: str
    source_identity: str | None = None
