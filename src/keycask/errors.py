"""Errors the KMS answers with, named exactly as AWS names them.

Nothing here knows about HTTP: the edge maps ``status`` onto the response and
``code`` onto ``__type``. Messages are shown to callers, so they must never
carry key material, plaintext or secrets.
"""

from __future__ import annotations

from typing import ClassVar


class KMSError(Exception):
    """Base of every error a caller may see."""

    code: ClassVar[str] = "KMSInternalException"
    status: ClassVar[int] = 400

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


# -- protocol and authentication errors (common to every AWS JSON service) --


class SerializationException(KMSError):
    code = "SerializationException"


class ValidationException(KMSError):
    code = "ValidationException"


class UnknownOperationException(KMSError):
    code = "UnknownOperationException"


class RequestEntityTooLargeException(KMSError):
    code = "RequestEntityTooLargeException"
    status = 413


class MissingAuthenticationTokenException(KMSError):
    code = "MissingAuthenticationTokenException"
    status = 403


class IncompleteSignatureException(KMSError):
    code = "IncompleteSignatureException"


class InvalidSignatureException(KMSError):
    code = "InvalidSignatureException"


class UnrecognizedClientException(KMSError):
    code = "UnrecognizedClientException"


class AccessDeniedException(KMSError):
    code = "AccessDeniedException"


class NotAuthorizedException(KMSError):
    """Not in botocore's KMS model, but what AWS answers for an alias name
    under the reserved ``alias/aws/`` prefix (keycask answers the same for
    its other reserved prefixes, ``aliases.RESERVED_ALIAS_PREFIXES``)."""

    code = "NotAuthorizedException"


# -- errors from the KMS model --


class AlreadyExistsException(KMSError):
    code = "AlreadyExistsException"


class DisabledException(KMSError):
    code = "DisabledException"


class IncorrectKeyException(KMSError):
    code = "IncorrectKeyException"


class InvalidAliasNameException(KMSError):
    code = "InvalidAliasNameException"


class InvalidArnException(KMSError):
    code = "InvalidArnException"


class InvalidCiphertextException(KMSError):
    code = "InvalidCiphertextException"


class ExpiredImportTokenException(KMSError):
    code = "ExpiredImportTokenException"


class IncorrectKeyMaterialException(KMSError):
    code = "IncorrectKeyMaterialException"


class InvalidImportTokenException(KMSError):
    code = "InvalidImportTokenException"


class InvalidGrantIdException(KMSError):
    code = "InvalidGrantIdException"


class InvalidGrantTokenException(KMSError):
    code = "InvalidGrantTokenException"


class InvalidKeyUsageException(KMSError):
    code = "InvalidKeyUsageException"


class InvalidMarkerException(KMSError):
    code = "InvalidMarkerException"


class DependencyTimeoutException(KMSError):
    """AWS's answer when a system KMS depends on did not answer in time: here,
    the shared store (PostgreSQL). Retryable."""

    code = "DependencyTimeoutException"
    status = 500


class KMSInternalException(KMSError):
    code = "KMSInternalException"
    status = 500


class KMSInvalidMacException(KMSError):
    code = "KMSInvalidMacException"


class KMSInvalidSignatureException(KMSError):
    code = "KMSInvalidSignatureException"


class KMSInvalidStateException(KMSError):
    code = "KMSInvalidStateException"


class LimitExceededException(KMSError):
    code = "LimitExceededException"


class MalformedPolicyDocumentException(KMSError):
    code = "MalformedPolicyDocumentException"


class NotFoundException(KMSError):
    code = "NotFoundException"


class ThrottlingException(KMSError):
    """AWS's answer when a caller asks for more than the service will queue."""

    code = "ThrottlingException"


class TagException(KMSError):
    code = "TagException"


class UnsupportedOperationException(KMSError):
    code = "UnsupportedOperationException"


# -- errors of temporary credentials (STS's model; the STS door writes their
# Query-protocol codes, a JSON door the class's ``code``) --


class ExpiredTokenException(KMSError):
    """A session token past its expiration, or a web identity token past its
    ``exp``. AWS answers KMS calls made with an expired session so too."""

    code = "ExpiredTokenException"


class InvalidIdentityTokenException(KMSError):
    """A web identity token that cannot be trusted: malformed, unsigned or
    wrongly signed, from an issuer no provider is registered for."""

    code = "InvalidIdentityToken"


class IDPRejectedClaimException(KMSError):
    """A web identity token whose claims the registered provider refuses
    (an audience not registered, a token not yet valid)."""

    code = "IDPRejectedClaim"
    status = 403


class IDPCommunicationErrorException(KMSError):
    """The provider's signing keys (JWKS) could not be fetched."""

    code = "IDPCommunicationError"


class PackedPolicyTooLargeException(KMSError):
    """Session policies and tags that do not fit in a session token."""

    code = "PackedPolicyTooLarge"


# -- internal conditions that are not KMS answers --


class StorageConflict(Exception):
    """A conditional write lost a race: the expected revision did not hold."""


class StorageUnavailable(Exception):
    """The store could not be reached or the connection was lost."""


class StorageIntegrityError(Exception):
    """The store is not what keycask made: an object keycask did not create
    (a trigger, a view, a rule), or a write that changed a different number
    of rows than it should have. Nothing was applied."""


class LockTimeout(StorageUnavailable):
    """The store's write lock (or another lock keycask waits for) was not
    free in time: whatever held it, the request had no effect."""


class AuditUnavailable(Exception):
    """The audit log could not durably record; the request must not proceed."""


class BarrierError(Exception):
    """A value at rest failed to authenticate: tampered, moved, or wrong keyring."""


class SealError(Exception):
    """The root key could not be obtained from the seal."""


class StoreRolledBack(SealError):
    """The store's keyring is older than one this node saw: the store was
    rolled back (or restored from a backup without telling this node)."""


class WeakPassphrase(SealError):
    """A new passphrase too weak to seal the root key with (bad input)."""


class Sealed(KMSInvalidStateException):
    """The barrier holds no keys: nothing behind it can be read or written
    until an operator unseals keycask."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "keycask is sealed: no key can be used until an operator unseals it"
            " (keycask operator unseal)"
        )


class BarrierBusy(ThrottlingException):
    """The barrier has used every seal it reserved and is reserving more."""


class DryRunOperationException(KMSError):
    """The request would have succeeded. HTTP 400 like every KMS error: the
    model gives it no status of its own (an SDK that maps statuses would
    otherwise read a 412 as a failed precondition)."""

    code = "DryRunOperationException"


# -- custom key stores (issue 19) --


class CustomKeyStoreNotFoundException(KMSError):
    code = "CustomKeyStoreNotFoundException"


class CustomKeyStoreNameInUseException(KMSError):
    code = "CustomKeyStoreNameInUseException"


class CustomKeyStoreInvalidStateException(KMSError):
    code = "CustomKeyStoreInvalidStateException"


class CustomKeyStoreHasCMKsException(KMSError):
    code = "CustomKeyStoreHasCMKsException"


class CloudHsmClusterNotFoundException(KMSError):
    code = "CloudHsmClusterNotFoundException"


class CloudHsmClusterInUseException(KMSError):
    code = "CloudHsmClusterInUseException"


class CloudHsmClusterNotActiveException(KMSError):
    code = "CloudHsmClusterNotActiveException"


class CloudHsmClusterNotRelatedException(KMSError):
    code = "CloudHsmClusterNotRelatedException"


class CloudHsmClusterInvalidConfigurationException(KMSError):
    code = "CloudHsmClusterInvalidConfigurationException"


class IncorrectTrustAnchorException(KMSError):
    code = "IncorrectTrustAnchorException"


class XksProxyUriInUseException(KMSError):
    code = "XksProxyUriInUseException"


class XksProxyInvalidConfigurationException(KMSError):
    code = "XksProxyInvalidConfigurationException"


class XksProxyUriUnreachableException(KMSError):
    code = "XksProxyUriUnreachableException"


class XksProxyIncorrectAuthenticationCredentialException(KMSError):
    code = "XksProxyIncorrectAuthenticationCredentialException"


class XksProxyInvalidResponseException(KMSError):
    code = "XksProxyInvalidResponseException"


class XksKeyNotFoundException(KMSError):
    code = "XksKeyNotFoundException"


class XksKeyInvalidConfigurationException(KMSError):
    code = "XksKeyInvalidConfigurationException"


class XksKeyAlreadyInUseException(KMSError):
    code = "XksKeyAlreadyInUseException"
