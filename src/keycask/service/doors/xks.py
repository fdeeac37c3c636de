"""The XKS proxy API (aws/aws-kms-xksproxy-api-spec, v1): keycask as the
external key store proxy of AWS KMS, or of another keycask (docs/xks.md).

    POST {prefix}/kms/xks/v1/health                         GetHealthStatus
    POST {prefix}/kms/xks/v1/keys/{externalKeyId}/metadata  GetKeyMetadata
    POST {prefix}/kms/xks/v1/keys/{externalKeyId}/encrypt   Encrypt
    POST {prefix}/kms/xks/v1/keys/{externalKeyId}/decrypt   Decrypt

``{prefix}`` is ``keycask server --xks-path-prefix`` (none by default). The
door claims every path with ``/kms/xks/`` in it, so a request under another
prefix, or for an operation the API lacks, gets the specification's
``InvalidUriPathException`` (404); a known path asked with another method
than POST, 405. Callers sign with SigV4, service ``kms-xks-proxy``, with an
XKS credential (``keycask xks credentials create``), which signs for this
door only (and an access key of the other doors never signs here). The
scope's region is AWS KMS's own and is not checked: the keys are this
server's region's. Bodies are the specification's JSON (base64 fields,
``requestMetadata``); errors ``{"errorName", "errorMessage"}`` with its
statuses. The operations are ``service/core/xks.py``'s; GetHealthStatus's
answer (this node as the fleet) is written here around the core's check
(authenticated, not authorized: the specification excludes it from
secondary authorization).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar, Final

import orjson
import pybase64

from keycask import __version__
from keycask.auth import sigv4
from keycask.auth.credentials import CredentialStore
from keycask.auth.sigv4 import HttpRequest
from keycask.config import XKS_API_PATH, check_xks_path_prefix
from keycask.errors import (
    AccessDeniedException,
    DependencyTimeoutException,
    DisabledException,
    IncorrectKeyException,
    InvalidCiphertextException,
    InvalidKeyUsageException,
    KMSError,
    KMSInvalidStateException,
    LimitExceededException,
    NotFoundException,
    RequestEntityTooLargeException,
    SerializationException,
    ThrottlingException,
    UnknownOperationException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.ports import Write
from keycask.service.core import xks
from keycask.service.core.authz import Authorizer
from keycask.service.core.call import Call, Caller, Outcome
from keycask.service.core.deps import Deps
from keycask.service.door import Action
from keycask.service.doors.signed import AUTHENTICATION_FAILURES

SERVICE: Final = "kms-xks-proxy"
MARKER: Final = b"/kms/xks/"
API_PATH: Final = XKS_API_PATH
# The largest body the door reads: two 8 KiB fields in base64 and three ARNs
# of 2,048 characters fit with room to spare.
MAX_BODY = 64 * 1024
# Any one requestMetadata value (ARNs are at most 2,048 characters).
_MAX_METADATA_VALUE = 4096
_CALLER_CACHE = 4096
_OPERATIONS = {"metadata": "Xks.GetKeyMetadata", "encrypt": "Xks.Encrypt", "decrypt": "Xks.Decrypt"}
_HEALTH = "Xks.GetHealthStatus"

Doc = dict[str, Any]


class AuthenticationFailed(KMSError):
    code = "AuthenticationFailedException"
    status = 401


class InvalidUriPath(UnknownOperationException):
    """A path this door claims but does not serve."""


class MethodNotAllowed(UnknownOperationException):
    """A known path asked with another method than POST (405)."""


# (errorName, status) of each error keycask raises, by its code; what is
# not here is an InternalException (500).
_ERRORS: dict[str, tuple[str, int]] = {
    ValidationException.code: ("ValidationException", 400),
    SerializationException.code: ("ValidationException", 400),
    RequestEntityTooLargeException.code: ("ValidationException", 413),
    KMSInvalidStateException.code: ("InvalidStateException", 400),
    DisabledException.code: ("InvalidStateException", 400),
    InvalidCiphertextException.code: ("InvalidCiphertextException", 400),
    IncorrectKeyException.code: ("InvalidCiphertextException", 400),
    InvalidKeyUsageException.code: ("InvalidKeyUsageException", 400),
    AuthenticationFailed.code: ("AuthenticationFailedException", 401),
    AccessDeniedException.code: ("AccessDeniedException", 403),
    NotFoundException.code: ("KeyNotFoundException", 404),
    ThrottlingException.code: ("ThrottlingException", 429),
    LimitExceededException.code: ("ThrottlingException", 429),
    UnsupportedOperationException.code: ("UnsupportedOperationException", 501),
    DependencyTimeoutException.code: ("DependencyTimeoutException", 503),
}
_AUTHENTICATION_CODES = frozenset(error.code for error in AUTHENTICATION_FAILURES)


def error_name(error: KMSError) -> tuple[str, int]:
    if isinstance(error, MethodNotAllowed):
        return "ValidationException", 405
    if isinstance(error, UnknownOperationException):
        return "InvalidUriPathException", 404
    if error.code in _AUTHENTICATION_CODES:
        return "AuthenticationFailedException", 401
    return _ERRORS.get(error.code, ("InternalException", 500))


def error_body(error: KMSError) -> bytes:
    name, _ = error_name(error)
    # The specification: under 512 characters, printable ASCII only.
    message = "".join(c if " " <= c <= "~" else "?" for c in error.message[:511])
    return orjson.dumps({"errorName": name, "errorMessage": message or name})


# -- the wire --


def route(raw_path: bytes, prefix: bytes) -> tuple[str | None, str]:
    """(operation, external key id) of a path; operation None: not a path
    this API has (or another prefix's)."""
    if not raw_path.startswith(prefix + API_PATH.encode() + b"/"):
        return None, ""
    rest = raw_path[len(prefix) + len(API_PATH) + 1 :].decode("latin-1")
    if rest == "health":
        return _HEALTH, ""
    parts = rest.split("/")
    if (
        len(parts) == 3
        and parts[0] == "keys"
        and parts[2] in _OPERATIONS
        and xks.EXTERNAL_KEY_ID.fullmatch(parts[1])
    ):
        return _OPERATIONS[parts[2]], parts[1]
    return None, ""


def _body(request: HttpRequest) -> Doc:
    if len(request.body) > MAX_BODY:
        raise ValidationException(f"the request body is over {MAX_BODY} bytes")
    try:
        doc = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise ValidationException("the request body is not JSON") from None
    if not isinstance(doc, dict):
        raise ValidationException("the request body is not a JSON object")
    return doc


def _string(doc: Doc, name: str, *, where: str = "") -> str:
    value = doc.get(name)
    if value is None:
        raise ValidationException(f"{where}{name} is required")
    if not isinstance(value, str):
        raise ValidationException(f"{where}{name} must be a string")
    return value


def _metadata(doc: Doc, *required: str) -> xks.RequestMetadata:
    meta = doc.get("requestMetadata")
    if not isinstance(meta, dict):
        raise ValidationException("requestMetadata is required (an object)")
    where = "requestMetadata."
    for name in ("kmsRequestId", "kmsOperation", *required):
        _string(meta, name, where=where)
    fields = []
    for name, value in meta.items():
        # Fields AWS KMS may add later (Appendix B) are kept if they are strings.
        if not isinstance(value, str):
            raise ValidationException(f"{where}{name[:64]} must be a string")
        if len(value) > _MAX_METADATA_VALUE:
            raise ValidationException(f"{where}{name[:64]} is over {_MAX_METADATA_VALUE} chars")
        if name not in ("kmsRequestId", "kmsOperation"):
            fields.append((name, value))
    return xks.RequestMetadata(meta["kmsRequestId"], meta["kmsOperation"], tuple(fields))


def _bytes(doc: Doc, name: str, *, required: bool = True, limit: int | None = None) -> bytes:
    value = doc.get(name)
    if value is None and not required:
        return b""
    text = _string(doc, name)
    try:
        raw = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationException(f"{name} is not base64") from None
    if limit is not None and len(raw) > limit:
        raise UnsupportedOperationException(f"{name} over {limit} bytes is not supported")
    return raw


def _algorithm(doc: Doc) -> None:
    if _string(doc, "encryptionAlgorithm") != "AES_GCM":
        raise UnsupportedOperationException("encryptionAlgorithm must be AES_GCM")


def _decode_health(doc: Doc, key_id: str) -> object:
    return xks.XksHealthRequest(_metadata(doc))


def _decode_metadata(doc: Doc, key_id: str) -> object:
    return xks.XksKeyRequest(key_id, _metadata(doc, "awsPrincipalArn"))


def _decode_encrypt(doc: Doc, key_id: str) -> object:
    meta = _metadata(doc, "awsPrincipalArn", "kmsKeyArn")
    _algorithm(doc)
    integrity = doc.get("ciphertextDataIntegrityValueAlgorithm")
    if integrity is not None and integrity != "SHA_256":
        raise UnsupportedOperationException("ciphertextDataIntegrityValueAlgorithm must be SHA_256")
    plaintext = _bytes(doc, "plaintext", limit=xks.MAX_PLAINTEXT)
    aad = _bytes(doc, "additionalAuthenticatedData", required=False, limit=xks.MAX_AAD)
    return xks.XksEncryptRequest(key_id, meta, plaintext, aad, integrity is not None)


def _decode_decrypt(doc: Doc, key_id: str) -> object:
    meta = _metadata(doc, "awsPrincipalArn", "kmsKeyArn")
    _algorithm(doc)
    return xks.XksDecryptRequest(
        key_id,
        meta,
        _bytes(doc, "ciphertext", limit=xks.MAX_PLAINTEXT),
        # Any length (the body's bounds them): one that is not this proxy's
        # is an InvalidCiphertextException, as a changed byte is.
        _bytes(doc, "ciphertextMetadata", required=False),
        _bytes(doc, "initializationVector"),
        _bytes(doc, "authenticationTag"),
        _bytes(doc, "additionalAuthenticatedData", required=False, limit=xks.MAX_AAD),
    )


def _b64(data: bytes) -> str:
    return pybase64.b64encode(data).decode()


def _encode(result: object) -> Doc:
    if isinstance(result, xks.XksMetadataResult):
        return {
            "keySpec": result.key_spec,
            "keyUsage": list(result.key_usage),
            "keyStatus": result.key_status,
        }
    if isinstance(result, xks.XksEncryptResult):
        doc = {
            "ciphertext": _b64(result.ciphertext),
            "ciphertextMetadata": _b64(result.metadata_bytes),
            "initializationVector": _b64(result.iv),
            "authenticationTag": _b64(result.tag),
        }
        if result.integrity_value is not None:
            doc["ciphertextDataIntegrityValue"] = _b64(result.integrity_value)
        return doc
    if isinstance(result, xks.XksDecryptResult):
        return {"plaintext": _b64(result.plaintext)}
    assert isinstance(result, dict)
    return result


_DECODERS: dict[str, Callable[[Doc, str], object]] = {
    _HEALTH: _decode_health,
    "Xks.GetKeyMetadata": _decode_metadata,
    "Xks.Encrypt": _decode_encrypt,
    "Xks.Decrypt": _decode_decrypt,
}


class XksDoor:
    name = "xks"
    prefixes: tuple[str, ...] = ()
    media_types: tuple[bytes, ...] = ()
    path_prefixes: tuple[bytes, ...] = ()
    path_markers = (MARKER,)
    content_type = b"application/json"
    serves_sealed = False
    required_signed_headers: ClassVar[tuple[str, ...]] = ("host", "x-amz-date")

    def __init__(
        self,
        deps: Deps,
        credentials: CredentialStore,
        authz: Authorizer,
        *,
        region: str,
        path_prefix: str = "",
        node: str = "keycask",
        client_certificate: bool = False,
        client_subject: str | None = None,
    ) -> None:
        self._deps = deps
        self._credentials = credentials
        self._authz = authz
        self._region = region
        self._prefix = check_xks_path_prefix(path_prefix).encode()
        self._node = node
        self._client_certificate = client_certificate
        self._client_subject = client_subject
        self._signing_keys = sigv4.SigningKeyCache()
        self._callers: dict[str, Caller] = {}
        self._actions = {
            _HEALTH: Action(_HEALTH, self._health),
            "Xks.GetKeyMetadata": Action("Xks.GetKeyMetadata", partial(xks.metadata, deps)),
            "Xks.Encrypt": Action("Xks.Encrypt", partial(xks.encrypt, deps)),
            "Xks.Decrypt": Action("Xks.Decrypt", partial(xks.decrypt, deps)),
        }

    @property
    def uri_path(self) -> str:
        """The XksProxyUriPath to give AWS KMS."""
        return self._prefix.decode() + API_PATH

    def operation(self, target: str) -> str | None:
        method, _, rest = target.partition(" ")
        path = rest.partition("?")[0]
        name, _ = route(path.encode("latin-1"), self._prefix)
        return name if method == "POST" else None

    async def authenticate(self, call: Call, request: HttpRequest) -> None:
        if request.method != "POST" and route(request.raw_path, self._prefix)[0]:
            # The specification: a GET (any other method) at one of the API's
            # URIs is 405, signed or not; the paths are public, nothing is told.
            raise MethodNotAllowed(f"{request.method} is not allowed here; use POST")
        if self._client_certificate:
            self._check_client_certificate(request.client_subject)
        try:
            signed = sigv4.parse(
                request,
                now=call.time,
                service=SERVICE,
                required_signed_headers=self.required_signed_headers,
            )
            if sigv4.security_token(request) is not None:
                raise AuthenticationFailed("XKS credentials have no session token")
            key = self._credentials.cached_xks(signed.access_key_id)
            if key is None:
                key = await self._credentials.lookup_xks(signed.access_key_id)
            if key is None or not key.active:
                raise AuthenticationFailed("the access key id is not an active XKS credential")
            sigv4.verify(signed, key.secret, cache=self._signing_keys)
            if key.principal.admin:
                # Never made for an administrator; one made administrator since
                # would carry every right to a door meant for one narrow use.
                raise AuthenticationFailed("XKS credentials of administrators do not sign")
        except AUTHENTICATION_FAILURES as error:
            raise AuthenticationFailed(error.message) from None
        caller = self._callers.get(key.access_key_id)
        if caller is None or caller.principal is not key.principal:
            if len(self._callers) >= _CALLER_CACHE:
                self._callers.clear()
            subject = self._authz.subject(key.principal)
            # The server's region: AWS KMS signs with its own.
            caller = Caller(key.principal, key.access_key_id, self._region, subject)
            self._callers[key.access_key_id] = caller
        call.caller = caller

    def _check_client_certificate(self, subject: str | None) -> None:
        """Mutual TLS (--xks-client-ca): the handshake verified the chain; the
        subject's common name is checked here, per request."""
        if subject is None:
            raise AuthenticationFailed("this XKS proxy requires a TLS client certificate")
        if self._client_subject is not None and subject != self._client_subject:
            raise AuthenticationFailed(
                "the TLS client certificate's subject is not the one this XKS proxy accepts"
            )

    def action(self, call: Call, request: HttpRequest) -> Action:
        name = call.operation
        if name is None:
            known, _ = route(request.raw_path, self._prefix)
            if known is not None:
                raise MethodNotAllowed(f"{request.method} is not allowed here; use POST")
            raise InvalidUriPath(f"no XKS API at this path; this proxy's is {self.uri_path}")
        return self._actions[name]

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        _, key_id = route(request.raw_path, self._prefix)
        return _DECODERS[action.name](_body(request), key_id)

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        return orjson.dumps(_encode(result))

    def encode_error(self, error: KMSError, request_id: str) -> bytes:
        return error_body(error)

    def error_status(self, error: KMSError) -> int:
        return error_name(error)[1]

    def unavailable(self, operation: str | None) -> KMSError:
        return DependencyTimeoutException("keycask's key store did not answer in time")

    async def commit(self, writes: Sequence[Write]) -> None:
        await self._deps.keys.commit(writes)

    def committed(self) -> None:
        """Nothing cached here goes stale with a commit."""

    def forget(self) -> None:
        """Drop derived signing keys and callers (on seal)."""
        self._callers.clear()
        self._signing_keys = sigv4.SigningKeyCache()

    async def _health(self, call: Call, req: xks.XksHealthRequest) -> Outcome:
        checked = (await xks.health(self._deps, call, req)).result
        assert isinstance(checked, xks.XksHealthResult)
        model = f"keycask {__version__}"
        return Outcome(
            {
                "xksProxyFleetSize": 1,
                "xksProxyVendor": "keycask",
                "xksProxyModel": model,
                "ekmVendor": "keycask",
                "ekmFleetDetails": [
                    {"id": self._node, "model": model, "healthStatus": checked.status}
                ],
            }
        )
