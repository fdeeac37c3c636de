"""Typed requests and results of the bearer-token operations (handlers in
``handlers/tokens.py``; tokens themselves in ``auth/tokens.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CreateTokenRequest:
    name: str
    account: str | None = None
    ttl: int = 3600


@dataclass(frozen=True, slots=True)
class TokenIdRequest:
    """RevokeToken: a token by its public id (the first 16 hex digits of its hash)."""

    token_id: str


@dataclass(frozen=True, slots=True)
class CreateTokenResult:
    token: str = field(repr=False)
    token_id: str
    expires: float


@dataclass(frozen=True, slots=True)
class TokenSummary:
    token_id: str
    created: float
    expires: float


@dataclass(frozen=True, slots=True)
class ListTokensResult:
    tokens: tuple[TokenSummary, ...]
