"""Typed requests of the temporary-credential operations (AssumeRole,
AssumeRoleWithWebIdentity, GetCallerIdentity; handlers in
``handlers/sts.py``).

A door builds them once it has checked every value against its wire's
rules (the STS door: botocore's STS model, lengths, patterns, ranges), so
the handlers take them as they are; what only the core can judge (a role
that exists, a duration within the role's maximum, a session policy that
parses) the handlers check.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GetCallerIdentityRequest:
    pass


@dataclass(frozen=True, slots=True)
class AssumeRoleRequest:
    role_arn: str
    role_session_name: str
    duration_seconds: int | None = None  # None: 3600, as AWS
    policy: str | None = None  # an inline session policy (JSON text)
    # Managed session policies: keycask has no managed policies, so any is refused.
    policy_arns: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()  # session tags, in the caller's order
    transitive_tag_keys: tuple[str, ...] = ()
    external_id: str | None = None
    source_identity: str | None = None


@dataclass(frozen=True, slots=True)
class AssumeRoleWithWebIdentityRequest:
    role_arn: str
    role_session_name: str
    web_identity_token: str = ""
    duration_seconds: int | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
