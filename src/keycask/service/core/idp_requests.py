"""Typed requests and results of the identity provider operations
(``handlers/identity_providers.py``).

A door builds the requests once it has checked the shape of every value
(types, the ARN's form, the account); what needs the provider rules (the
URL, the audiences, the JWKS) ``auth/identity_providers.py`` checks when
the handler stages the change. ``account`` None is the caller's own
account. Times in results are epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CreateIdentityProviderRequest:
    url: str
    audiences: tuple[str, ...]
    # Exactly one of the two: the JWK Set as JSON text, or where to fetch it.
    jwks: str | None = None
    jwks_url: str | None = None
    account: str | None = None


@dataclass(frozen=True, slots=True)
class ListIdentityProvidersRequest:
    account: str | None = None


@dataclass(frozen=True, slots=True)
class IdentityProviderRequest:
    """GetIdentityProvider, DeleteIdentityProvider."""

    arn: str


@dataclass(frozen=True, slots=True)
class CreateIdentityProviderResult:
    arn: str


@dataclass(frozen=True, slots=True)
class IdentityProviderSummary:
    arn: str
    url: str
    audiences: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListIdentityProvidersResult:
    providers: tuple[IdentityProviderSummary, ...]


@dataclass(frozen=True, slots=True)
class GetIdentityProviderResult:
    arn: str
    url: str
    audiences: tuple[str, ...]
    jwks: str  # as stored: public keys only
    jwks_url: str | None
    created: float
