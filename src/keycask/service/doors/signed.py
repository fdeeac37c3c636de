"""SigV4 authentication, for every door whose callers sign as AWS clients do
(the KMS API, the admin and dev APIs, and operator calls by an administrator).

Two kinds of access key sign: a principal's own (``AKKC...``, looked up in
the credential store) and a role session's (``ASIA...``), whose secret and
claims travel in the signed ``x-amz-security-token`` header
(auth/sessions.py). A session counts only while its role exists with the
unique id it had at issuance: deleting the role, or re-creating one of the
same name, revokes every session of it.
"""

from __future__ import annotations

import hmac

from keycask.auth import sigv4
from keycask.auth.credentials import CredentialStore, Principal
from keycask.auth.sessions import SessionClaims, SessionTokens, is_session_access_key_id
from keycask.errors import (
    ExpiredTokenException,
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from keycask.service.core.authz import Authorizer
from keycask.service.core.call import Call, Caller

_CALLER_CACHE = 4096
_INVALID = "The security token included in the request is invalid."

# What a failed SigV4 authentication raises (sigv4.parse, the key lookup,
# sigv4.verify, a session token that does not open or has expired).
AUTHENTICATION_FAILURES = (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
    ExpiredTokenException,
)


class SignedCallers:
    def __init__(
        self,
        credentials: CredentialStore,
        authz: Authorizer,
        sessions: SessionTokens | None = None,
    ) -> None:
        self._credentials = credentials
        self._authz = authz
        self._sessions = sessions
        self._signing_keys = sigv4.SigningKeyCache()
        self._callers: dict[tuple[str, str], Caller] = {}

    async def authenticate(
        self,
        call: Call,
        request: sigv4.HttpRequest,
        *,
        service: str = "kms",
        required_signed_headers: tuple[str, ...] = ("host", "x-amz-target"),
    ) -> None:
        """``service``: the credential scope's service (``sts`` for the STS
        door, whose requests carry no X-Amz-Target to sign)."""
        signed = sigv4.parse(
            request, now=call.time, service=service, required_signed_headers=required_signed_headers
        )
        token = sigv4.security_token(request)
        if is_session_access_key_id(signed.access_key_id):
            call.caller = await self._session_caller(call, signed, token)
            return
        if token is not None:
            # A long-term key has no session token; AWS refuses the pair.
            raise UnrecognizedClientException(_INVALID)
        key = self._credentials.cached(signed.access_key_id)
        if key is None:
            key = await self._credentials.lookup(signed.access_key_id)
        if key is None or not key.active:
            raise UnrecognizedClientException(_INVALID)
        sigv4.verify(signed, key.secret, cache=self._signing_keys)
        # One Caller per access key and region, built once: it is immutable.
        caller = self._callers.get((key.access_key_id, signed.region))
        if caller is None or caller.principal is not key.principal:
            subject = self._authz.subject(key.principal)
            caller = Caller(key.principal, key.access_key_id, signed.region, subject)
            self._remember(caller)
        call.caller = caller

    async def _session_caller(
        self, call: Call, signed: sigv4.SignedRequest, token: str | None
    ) -> Caller:
        if token is None or self._sessions is None:
            raise UnrecognizedClientException(_INVALID)
        claims = await self._sessions.open(token, call.time)
        # The token must be the one issued with this access key id: another
        # session's token (with its own secret) must not stand in for it.
        if not hmac.compare_digest(claims.access_key_id, signed.access_key_id):
            raise UnrecognizedClientException(_INVALID)
        sigv4.verify(signed, claims.secret, cache=self._signing_keys)
        role = await self._role(claims)
        caller = self._callers.get((signed.access_key_id, signed.region))
        if caller is None or caller.principal is not role or caller.session is not claims:
            subject = self._authz.session_subject(role, claims)
            caller = Caller(role, claims.access_key_id, signed.region, subject, session=claims)
            self._remember(caller)
        return caller

    async def _role(self, claims: SessionClaims) -> Principal:
        """The session's role as it is now; a deleted role, or another role
        under the same name, revokes the session."""
        role = await self._credentials.current_principal(claims.account, claims.role_name)
        if role is None or role.kind != "role" or role.unique_id != claims.role_id:
            raise UnrecognizedClientException(_INVALID)
        return role

    def _remember(self, caller: Caller) -> None:
        if len(self._callers) >= _CALLER_CACHE:
            self._callers.clear()
        self._callers[(caller.access_key_id, caller.region)] = caller

    def forget(self) -> None:
        """Drop every derived signing key and caller (on seal)."""
        self._callers.clear()
        self._signing_keys = sigv4.SigningKeyCache()
        if self._sessions is not None:
            self._sessions.forget()
