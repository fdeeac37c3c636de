"""Bearer tokens of principals (``auth/tokens.py``): CreateToken, ListTokens
and RevokeToken, behind the admin door (``KeycaskAdmin.<Op>``), authorized
as the principal operations are (``keycask:<Op>`` on the principal's ARN,
in the caller's own account; only administrators make tokens for, or revoke
those of, administrators) and audited with the token's public id, never the
token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keycask.auth.tokens import TokenStore
from keycask.errors import NotFoundException
from keycask.service.core.call import Call, Outcome
from keycask.service.core.handlers.principals import _allow, _arn, _principal
from keycask.service.core.principal_requests import PrincipalRequest
from keycask.service.core.token_requests import (
    CreateTokenRequest,
    CreateTokenResult,
    ListTokensResult,
    TokenIdRequest,
    TokenSummary,
)

Handler = Callable[[TokenStore, Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class TokenOperation:
    name: str
    request: type
    handler: Handler
    mutates: bool


async def create_token(tokens: TokenStore, call: Call, req: CreateTokenRequest) -> Outcome:
    store = tokens.credentials
    stored = await _principal(store, call, req.name, req.account, "CreateToken", changes=True)
    p = stored.principal
    existing = await tokens.tokens_of(p.account, p.name, p.unique_id)
    # Expired tokens go in the same commit, so they never hold places of the
    # limit that live ones need (nothing else would ever remove them).
    expired = [r for r in existing if r.expired(call.time)]
    live = len(existing) - len(expired)
    token, record, writes = tokens.stage_create(p, req.ttl, call.time, live)
    writes.extend(tokens.stage_forget_expired(old) for old in expired)
    call.detail = f"token {record.token_id} created for {p.arn}, ttl {req.ttl}s" + (
        f"; {len(expired)} expired token(s) removed" if expired else ""
    )
    return Outcome(CreateTokenResult(token, record.token_id, record.expires), writes)


async def list_tokens(tokens: TokenStore, call: Call, req: PrincipalRequest) -> Outcome:
    store = tokens.credentials
    stored = await _principal(store, call, req.name, req.account, "ListTokens", changes=False)
    p = stored.principal
    call.detail = p.arn
    found = await tokens.tokens_of(p.account, p.name, p.unique_id)
    return Outcome(
        ListTokensResult(tuple(TokenSummary(r.token_id, r.created, r.expires) for r in found))
    )


async def revoke_token(tokens: TokenStore, call: Call, req: TokenIdRequest) -> Outcome:
    record = await tokens.by_id(req.token_id)
    # Another account's tokens are as good as absent.
    owner = None
    if record is not None and record.account == call.account:
        owner = await tokens.credentials.stored_principal(record.account, record.name)
    if record is None or owner is None or owner.principal.unique_id != record.unique_id:
        # Authorized first, on every principal of the account: only a caller
        # who could revoke any token learns that this one does not exist;
        # any other gets the refusal it would get for someone else's token.
        await _allow(call, "RevokeToken", call.account, _arn(call.account, "user", "*"))
        raise NotFoundException(f"The token {req.token_id[:32]!r} does not exist.")
    p = owner.principal
    await _allow(call, "RevokeToken", p.account, p.arn, changes_admin=p.admin)
    call.detail = f"token {record.token_id} of {p.arn} revoked"
    return Outcome(None, tokens.stage_revoke(record))


OPERATIONS: Mapping[str, TokenOperation] = {
    op.name: op
    for op in (
        TokenOperation("CreateToken", CreateTokenRequest, create_token, True),
        TokenOperation("ListTokens", PrincipalRequest, list_tokens, False),
        TokenOperation("RevokeToken", TokenIdRequest, revoke_token, True),
    )
}
