"""XKS proxy credentials (docs/xks.md): CreateXksCredential,
ListXksCredentials and DeleteXksCredential, behind the admin door
(``KeycaskAdmin.<Op>``), authorized as the principal operations are
(``keycask:<Op>`` on the principal's ARN, in the caller's own account).

An XKS credential is an access key of a principal that signs for the XKS
door only (``auth/credentials.py``: its own id prefix and length, and a
``purpose`` in its record), shaped as AWS KMS requires of an external key
store's ``XksProxyAuthenticationCredential``. Its principal is what key
policies name to let AWS KMS use a key through this proxy. A principal
that does not exist yet is made (a user with no access key), so one
command gives AWS KMS all it needs; administrators never get one (an XKS
credential should be able to do nothing but the XKS door's calls). Two
may be active at once, the old and the new while a key store's credential
is rotated. The secret is in CreateXksCredential's result and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keycask.auth.credentials import CredentialStore
from keycask.errors import NotFoundException, ValidationException
from keycask.service.core.call import Call, Outcome
from keycask.service.core.handlers.principals import _allow, _arn
from keycask.service.core.principal_requests import AccessKeyRequest, PrincipalRequest
from keycask.service.core.principal_results import AccessKeySummary, ListAccessKeysResult


@dataclass(frozen=True, slots=True)
class XksCredentials:
    """What the handlers work with: the credential store, and the
    XksProxyUriPath of this server (``--xks-path-prefix`` + ``/kms/xks/v1``),
    which CreateXksCredential answers with the credential."""

    store: CredentialStore
    uri_path: str


Handler = Callable[[XksCredentials, Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class XksOperation:
    name: str
    request: type
    handler: Handler
    mutates: bool


@dataclass(frozen=True, slots=True)
class CreateXksCredentialResult:
    arn: str
    access_key_id: str
    secret_access_key: str
    uri_path: str

    def __repr__(self) -> str:
        return f"CreateXksCredentialResult({self.arn!r}, {self.access_key_id!r}, <redacted>)"


_NO_ADMINS = (
    "is an administrator; an XKS credential belongs to a principal that can do "
    "nothing but what its key policies allow"
)


async def create_xks_credential(xks: XksCredentials, call: Call, req: PrincipalRequest) -> Outcome:
    store = xks.store
    account = req.account or call.account
    stored = await store.stored_principal(account, req.name)
    arn = stored.principal.arn if stored is not None else _arn(account, "user", req.name)
    await _allow(call, "CreateXksCredential", account, arn)
    if stored is None:
        await _allow(call, "CreatePrincipal", account, arn)
    elif stored.principal.admin:
        raise ValidationException(f"{arn} {_NO_ADMINS}.")
    key, before, writes = await store.stage_xks_credential(account, req.name)
    made = "" if before is not None else " (principal created)"
    call.detail = f"XKS credential {key.access_key_id} created for {arn}{made}"
    result = CreateXksCredentialResult(arn, key.access_key_id, key.secret, xks.uri_path)
    return Outcome(result, writes)


async def list_xks_credentials(xks: XksCredentials, call: Call, req: PrincipalRequest) -> Outcome:
    store = xks.store
    account = req.account or call.account
    stored = await store.stored_principal(account, req.name)
    arn = stored.principal.arn if stored is not None else _arn(account, "user", req.name)
    await _allow(call, "ListXksCredentials", account, arn)
    if stored is None:
        raise NotFoundException(f"Principal {req.name} does not exist in account {account}.")
    call.detail = arn
    keys = await store.xks_credentials(stored)
    return Outcome(
        ListAccessKeysResult(
            tuple(AccessKeySummary(key.access_key_id, key.active, key.created) for key in keys)
        )
    )


async def delete_xks_credential(xks: XksCredentials, call: Call, req: AccessKeyRequest) -> Outcome:
    store = xks.store
    key = await store.xks_credential(req.access_key_id)
    owner = None
    if key is not None and key.account == call.account:  # another account's: absent
        owner = await store.stored_principal(key.account, key.name)
    if key is None or owner is None or key.access_key_id not in owner.access_key_ids:
        # Authorized first, on every principal of the account, as RevokeToken:
        # only a caller who could delete any credential learns it is absent.
        await _allow(call, "DeleteXksCredential", call.account, _arn(call.account, "user", "*"))
        raise NotFoundException(f"The XKS credential {req.access_key_id[:32]!r} does not exist.")
    p = owner.principal
    await _allow(call, "DeleteXksCredential", p.account, p.arn, changes_admin=p.admin)
    call.detail = f"XKS credential {key.access_key_id} of {p.arn} revoked"
    return Outcome(None, store.stage_delete_access_key(owner, key))


OPERATIONS: Mapping[str, XksOperation] = {
    op.name: op
    for op in (
        XksOperation("CreateXksCredential", PrincipalRequest, create_xks_credential, True),
        XksOperation("ListXksCredentials", PrincipalRequest, list_xks_credentials, False),
        XksOperation("DeleteXksCredential", AccessKeyRequest, delete_xks_credential, True),
    )
}
