"""The callers of doors whose clients send a keycask bearer token
(``auth/tokens.py``) instead of signing: the Vault Transit door and the
Google Cloud KMS door resolve ``Authorization: Bearer`` (and Vault's
``X-Vault-Token``) the same way, through this one class.

A resolved token becomes the same ``Caller`` an access key would: its
principal, ``token:<token id>`` where an access key id stands (the audit
record names it), the region the door says, and the principal's policy
subject. Callers are remembered per (token id, region), and made again when
the token's principal changed (a commit that touched it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from keycask.auth.sigv4 import HttpRequest
from keycask.auth.tokens import TokenStore
from keycask.errors import DependencyTimeoutException, KMSError
from keycask.ports import Write
from keycask.service.core.authz import Authorizer
from keycask.service.core.call import Caller
from keycask.service.core.deps import Deps
from keycask.service.door import header

_CALLER_CACHE = 4096


def bearer_token(request: HttpRequest) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (None: no such header)."""
    auth = header(request, b"authorization")
    if auth is None or auth[:7].lower() != b"bearer ":
        return None
    return auth[7:].strip().decode("latin-1")


class BearerCallers:
    def __init__(self, tokens: TokenStore, authz: Authorizer) -> None:
        self._tokens = tokens
        self._authz = authz
        self._callers: dict[tuple[str, str], Caller] = {}

    async def caller(self, token: str, now: datetime, region: str) -> Caller | None:
        """The caller ``token`` stands for, in ``region``; None if the token
        does not resolve (unknown, expired, revoked, its principal gone)."""
        resolved = await self._tokens.resolve(token, now)
        if resolved is None:
            return None
        principal = resolved.principal
        key = (resolved.record.token_id, region)
        caller = self._callers.get(key)
        if caller is None or caller.principal is not principal:
            if len(self._callers) >= _CALLER_CACHE:
                self._callers.clear()
            subject = self._authz.subject(principal)
            caller = Caller(principal, "token:" + key[0], region, subject)
            self._callers[key] = caller
        return caller


class BearerDoorWrites:
    """What every bearer-token door does alike around a commit: commit
    through the key store, then forget the cached callers of any token the
    writes touched (a revoked token must not act again, even on a write that
    failed after landing), and answer a store that did not answer in time
    with a retryable error."""

    _deps: Deps
    _tokens: TokenStore

    def unavailable(self, operation: str | None) -> KMSError:
        return DependencyTimeoutException(
            "keycask's key store did not answer in time; the request had no effect. Retry it."
        )

    async def commit(self, writes: Sequence[Write]) -> None:
        try:
            await self._deps.keys.commit(writes)
        finally:
            self._tokens.forget(writes)

    def committed(self) -> None:
        """Nothing cached here goes stale with a commit."""
