"""OpenID Connect identity providers: the operations behind the admin door
(``service/doors/admin.py`` has their wire shapes). Each takes the provider
store (``auth/identity_providers.py``), the ``Call`` and a typed request
(``core/idp_requests.py``) and answers a typed result or nothing. Like
every admin operation they are authorized and audited (operation
``KeycaskAdmin.<Op>``); the writes are staged and committed after the audit
record is durable.

Authorization is the principal operations' (``handlers/principals.py``):
the action ``keycask:<Op>`` on the provider's ARN
(``arn:aws:iam::<account>:oidc-provider/<host/path>``; for
ListIdentityProviders the account, ``arn:aws:iam::<account>:root``),
decided by the caller's identity policies (administrators are allowed by
their implicit allow-all), in the caller's own account only.

CreateIdentityProvider with a JWKS URL fetches it while the store's write
lock is held (the name must stay free until the provider is written): at
most 5 s (``auth/jwks_fetch.py``), for a rare administrative call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from keycask.auth.identity_providers import (
    IdentityProviders,
    StoredIdentityProvider,
    check_url,
    parse_arn,
    provider_arn,
)
from keycask.errors import AccessDeniedException, NotFoundException
from keycask.keys.model import iam_root_arn
from keycask.service.core.call import Call, Outcome
from keycask.service.core.idp_requests import (
    CreateIdentityProviderRequest,
    CreateIdentityProviderResult,
    GetIdentityProviderResult,
    IdentityProviderRequest,
    IdentityProviderSummary,
    ListIdentityProvidersRequest,
    ListIdentityProvidersResult,
)

Handler = Callable[[IdentityProviders, Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class IdentityProviderOperation:
    name: str
    request: type
    handler: Handler
    mutates: bool


def _refuse(call: Call, action: str, resource: str) -> NoReturn:
    assert call.caller is not None
    call.decision = "deny"
    call.decided_by = "another account: identity providers are managed in their own account"
    raise AccessDeniedException(
        f"User: {call.caller.principal.arn} is not authorized to perform: {action} "
        f"on resource: {resource} because it is in another account than "
        f"{call.caller.principal.account}"
    )


async def _allow(call: Call, operation: str, account: str, resource: str) -> None:
    action = "keycask:" + operation
    if account != call.account:
        _refuse(call, action, resource)
    await call.authorize(action, resource=resource)


async def _provider(
    store: IdentityProviders, call: Call, arn: str, operation: str
) -> StoredIdentityProvider:
    """The provider ``arn`` (checked by the door) names, once the caller may
    do ``operation`` on it. One that does not exist is NotFound after the
    authorization: a caller without the right learns nothing about which
    providers exist."""
    parsed = parse_arn(arn)
    assert parsed is not None
    await _allow(call, operation, parsed[0], arn)
    stored = await store.stored(*parsed)
    if stored is None:
        raise NotFoundException(f"The identity provider {arn[:300]!r} does not exist.")
    return stored


async def create_identity_provider(
    store: IdentityProviders, call: Call, req: CreateIdentityProviderRequest
) -> Outcome:
    account = req.account or call.account
    # Authorized before anything is checked or fetched: the server fetches
    # a JWKS URL for callers allowed to register it, and for nobody else.
    arn = provider_arn(account, check_url(req.url))
    await _allow(call, "CreateIdentityProvider", account, arn)
    provider, writes = await store.stage_create(
        account,
        req.url,
        req.audiences,
        jwks=req.jwks,
        jwks_url=req.jwks_url,
        now=call.time.timestamp(),
    )
    source = f"fetched from {provider.jwks_url}" if provider.jwks_url else "given"
    call.detail = (
        f"created {provider.arn} for audiences {', '.join(provider.audiences)}; JWKS {source}"
    )
    return Outcome(CreateIdentityProviderResult(provider.arn), writes)


async def list_identity_providers(
    store: IdentityProviders, call: Call, req: ListIdentityProvidersRequest
) -> Outcome:
    account = req.account or call.account
    await _allow(call, "ListIdentityProviders", account, iam_root_arn(account))
    found = await store.list_providers(account)
    call.detail = f"account {account}"
    return Outcome(
        ListIdentityProvidersResult(
            tuple(IdentityProviderSummary(p.arn, p.url, p.audiences) for p in found)
        )
    )


async def get_identity_provider(
    store: IdentityProviders, call: Call, req: IdentityProviderRequest
) -> Outcome:
    p = (await _provider(store, call, req.arn, "GetIdentityProvider")).provider
    call.detail = p.arn
    return Outcome(
        GetIdentityProviderResult(p.arn, p.url, p.audiences, p.jwks, p.jwks_url, p.created)
    )


async def delete_identity_provider(
    store: IdentityProviders, call: Call, req: IdentityProviderRequest
) -> Outcome:
    stored = await _provider(store, call, req.arn, "DeleteIdentityProvider")
    call.detail = f"deleted {stored.provider.arn}"
    return Outcome(None, store.stage_delete(stored))


OPERATIONS: Mapping[str, IdentityProviderOperation] = {
    op.name: op
    for op in (
        IdentityProviderOperation(
            "CreateIdentityProvider",
            CreateIdentityProviderRequest,
            create_identity_provider,
            True,
        ),
        IdentityProviderOperation(
            "ListIdentityProviders", ListIdentityProvidersRequest, list_identity_providers, False
        ),
        IdentityProviderOperation(
            "GetIdentityProvider", IdentityProviderRequest, get_identity_provider, False
        ),
        IdentityProviderOperation(
            "DeleteIdentityProvider", IdentityProviderRequest, delete_identity_provider, True
        ),
    )
}
