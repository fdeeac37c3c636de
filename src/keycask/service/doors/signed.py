"""SigV4 authentication, for every door whose callers sign as AWS clients do
(the KMS API, the admin and dev APIs, and operator calls by an administrator)."""

from __future__ import annotations

from keycask.auth import sigv4
from keycask.auth.credentials import CredentialStore
from keycask.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from keycask.service.core.authz import Authorizer
from keycask.service.core.call import Call, Caller

_CALLER_CACHE = 4096

# What a failed SigV4 authentication raises (sigv4.parse, the key lookup,
# sigv4.verify).
AUTHENTICATION_FAILURES = (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)


class SignedCallers:
    def __init__(self, credentials: CredentialStore, authz: Authorizer) -> None:
        self._credentials = credentials
        self._authz = authz
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
        key = self._credentials.cached(signed.access_key_id)
        if key is None:
            key = await self._credentials.lookup(signed.access_key_id)
        if key is None or not key.active:
            raise UnrecognizedClientException(
                "The security token included in the request is invalid."
            )
        sigv4.verify(signed, key.secret, cache=self._signing_keys)
        # One Caller per access key and region, built once: it is immutable.
        caller = self._callers.get((key.access_key_id, signed.region))
        if caller is None or caller.principal is not key.principal:
            subject = self._authz.subject(key.principal)
            caller = Caller(key.principal, key.access_key_id, signed.region, subject)
            if len(self._callers) >= _CALLER_CACHE:
                self._callers.clear()
            self._callers[(key.access_key_id, signed.region)] = caller
        call.caller = caller

    def forget(self) -> None:
        """Drop every derived signing key and caller (on seal)."""
        self._callers.clear()
        self._signing_keys = sigv4.SigningKeyCache()
