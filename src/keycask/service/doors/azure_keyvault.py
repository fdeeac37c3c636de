"""Azure Key Vault's keys data plane (``/keys``, ``/deletedkeys``,
``/rng``): a front door claimed by path, served over TLS only,
authenticated by a keycask bearer token (``Authorization: Bearer``,
resolved as the other bearer doors resolve it: ``doors/bearer.py``).

A request without a token is answered 401 with the challenge the Azure
SDK expects (``WWW-Authenticate: Bearer authorization="...",
resource="..."``): its resource is the request's Host minus its first
label (kms.example.com:443 -> https://example.com:443, as Azure's
https://vault.azure.net is for myvault.vault.azure.net), so the
SDK's check that the resource is a parent domain of the vault's passes
with its default settings.

Each route maps to a core operation of ``service/core/azure.py`` and
``azure_crypto.py``, which run the AWS door's handlers under their
``kms:`` actions (docs/azure-keyvault.md has the table). Bodies are Key
Vault's JSON (``doors/azure_codec.py``); errors are Key Vault's
``{"error": {"code": "KeyNotFound", "message": ...}}`` with its statuses.
The vault is named by the Host's first label (kms for
kms.example.com); an IP address or a one-label host is the vault
``default``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from keycask.auth.sigv4 import HttpRequest
from keycask.auth.tokens import TokenStore
from keycask.errors import (
    AccessDeniedException,
    AlreadyExistsException,
    DependencyTimeoutException,
    DisabledException,
    IncorrectKeyException,
    InvalidCiphertextException,
    KMSError,
    KMSInternalException,
    KMSInvalidStateException,
    LimitExceededException,
    NotFoundException,
    RequestEntityTooLargeException,
    Sealed,
    ThrottlingException,
    UnknownOperationException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.service.core import (
    azure,
    azure_backup,
    azure_crypto,
    azure_deletion,
    azure_rotation,
)
from keycask.service.core.authz import Authorizer
from keycask.service.core.azure_requests import KeyRef, PolicyRequest
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.door import Action, header
from keycask.service.doors import azure_codec as codec
from keycask.service.doors.bearer import BearerCallers, BearerDoorWrites, bearer_token

PATH_PREFIXES: Final = (b"/keys", b"/deletedkeys", b"/rng", b"/secrets", b"/deletedsecrets",
                        b"/certificates", b"/deletedcertificates")  # fmt: skip
DEFAULT_VAULT: Final = "default"
# Key Vault's requests are small (the largest, an RSA-4096 key to import,
# is a few KiB): anything over this is refused before it is parsed, but a
# restore (a backup holds every version's key), up to the server's 1 MiB.
MAX_BODY: Final = 64 * 1024
_P = "AzureKeyVault."
_HOST: Final = re.compile(r"(\[[0-9a-fA-F:.]{2,45}\]|[A-Za-z0-9.-]{1,253})(:\d{1,5})?")
_LABEL: Final = re.compile(r"[A-Za-z0-9-]{1,63}")
_IPV4: Final = re.compile(r"[0-9.]+")

Doc = dict[str, Any]


class Unauthenticated(AccessDeniedException):
    """No token, or one that does not resolve: 401 Unauthorized with the
    challenge the Azure SDK answers."""

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.challenge = challenge


class PlainHttp(AccessDeniedException):
    """A request that did not come over TLS: Key Vault is HTTPS only."""


class Unserved(UnsupportedOperationException):
    """A Key Vault operation this door knows and does not serve yet."""


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # as audited: "AzureKeyVault.CreateKey"
    handler: Callable[[Deps, Call, Any], Awaitable[Outcome]] | None
    encode: Callable[[Any], Doc | None]
    mutates: bool = False
    prepare: Callable[[Deps, Call, Any], Awaitable[None]] | None = None


def _empty(result: object) -> Doc:
    return {}


ROUTES: dict[str, Route] = {
    route.name: route
    for route in (
        Route(_P + "CreateKey", azure.create, codec.key_bundle, mutates=True,
              prepare=azure.prepare_create),
        Route(_P + "GetKey", azure.get, codec.key_bundle),
        Route(_P + "GetKeys", azure.list_keys, codec.key_list),
        Route(_P + "GetKeyVersions", azure.list_versions, codec.key_list),
        Route(_P + "UpdateKey", azure.update, codec.key_bundle, mutates=True),
        Route(_P + "Sign", azure_crypto.operate, codec.crypto_out),
        Route(_P + "Verify", azure_crypto.operate, codec.crypto_out),
        Route(_P + "Encrypt", azure_crypto.operate, codec.crypto_out),
        Route(_P + "Decrypt", azure_crypto.operate, codec.crypto_out),
        Route(_P + "WrapKey", azure_crypto.operate, codec.crypto_out),
        Route(_P + "UnwrapKey", azure_crypto.operate, codec.crypto_out),
        Route(_P + "GetRandomBytes", azure_crypto.random_bytes, codec.random_out),
        Route(_P + "RotateKey", azure.rotate, codec.key_bundle, mutates=True,
              prepare=azure.prepare_rotate),
        Route(_P + "GetKeyRotationPolicy", azure_rotation.get_policy, codec.policy_out),
        Route(_P + "UpdateKeyRotationPolicy", azure_rotation.put_policy, codec.policy_out,
              mutates=True),
        Route(_P + "BackupKey", azure_backup.backup, codec.backup_out, mutates=True),
        Route(_P + "RestoreKey", azure_backup.restore, codec.key_bundle, mutates=True),
        Route(_P + "ImportKey", azure.create, codec.key_bundle, mutates=True),
        Route(_P + "DeleteKey", azure_deletion.delete, codec.deleted_bundle, mutates=True),
        Route(_P + "GetDeletedKey", azure_deletion.get_deleted, codec.deleted_bundle),
        Route(_P + "GetDeletedKeys", azure.list_keys, codec.key_list),
        Route(_P + "RecoverDeletedKey", azure_deletion.recover, codec.key_bundle, mutates=True),
        Route(_P + "PurgeDeletedKey", azure_deletion.purge, codec.nothing, mutates=True),
    )
}  # fmt: skip
# Key Vault operations this door knows and does not serve yet: each
# answered 501 NotImplemented, audited under its own name.
UNSERVED = ("Release", "GetKeyAttestation", "SecretsEndpoint", "CertificatesEndpoint")
# Whole parts of Key Vault that keycask, a key store, does not serve: claimed
# so that a SecretClient or CertificateClient pointed here gets Key Vault's
# error body saying so (not the AWS door's answer to an unknown path).
_OTHER_PARTS = {
    "secrets": "SecretsEndpoint",
    "deletedsecrets": "SecretsEndpoint",
    "certificates": "CertificatesEndpoint",
    "deletedcertificates": "CertificatesEndpoint",
}
for _op in UNSERVED:
    ROUTES[_P + _op] = Route(_P + _op, None, _empty)

_CRYPTO = {
    "sign": "Sign",
    "verify": "Verify",
    "encrypt": "Encrypt",
    "decrypt": "Decrypt",
    "wrapkey": "WrapKey",
    "unwrapkey": "UnwrapKey",
    "release": "Release",
    "attestation": "GetKeyAttestation",
}
_DELETED = ("GetDeletedKey", "RecoverDeletedKey", "PurgeDeletedKey")
_CRYPTO_OPS = {
    "Sign": "sign",
    "Verify": "verify",
    "Encrypt": "encrypt",
    "Decrypt": "decrypt",
    "WrapKey": "wrapKey",
    "UnwrapKey": "unwrapKey",
}


@dataclass(frozen=True, slots=True)
class Matched:
    name: str | None  # the operation, without the prefix; None: unknown path
    key: str = ""
    version: str = ""


def match(method: str, path: str) -> Matched:
    """The operation a method and path name, and the key name and version
    in the path (unchecked: decode checks them, so that a malformed name is
    BadParameter, not an unknown path)."""
    parts = path.split("/")[1:]
    if not parts:
        return Matched(None)
    head, rest = parts[0].lower(), parts[1:]
    if head in _OTHER_PARTS:
        return Matched(_OTHER_PARTS[head])
    if head == "rng":
        return Matched("GetRandomBytes" if method == "POST" and not rest else None)
    if head == "deletedkeys":
        if not rest or rest == [""]:
            return Matched("GetDeletedKeys" if method == "GET" else None)
        if len(rest) == 1:
            op = {"GET": "GetDeletedKey", "DELETE": "PurgeDeletedKey"}.get(method)
            return Matched(op, rest[0])
        if len(rest) == 2 and rest[1].lower() == "recover" and method == "POST":
            return Matched("RecoverDeletedKey", rest[0])
        return Matched(None)
    if head != "keys":
        return Matched(None)
    if not rest or rest == [""]:
        return Matched("GetKeys" if method == "GET" else None)
    name = rest[0]
    if len(rest) == 1:
        if name.lower() == "restore" and method == "POST":
            return Matched("RestoreKey")
        op = {"GET": "GetKey", "PUT": "ImportKey", "DELETE": "DeleteKey"}.get(method)
        return Matched(op, name)
    second = rest[1]
    if len(rest) == 2:
        word = second.lower()
        fixed = {
            ("POST", "create"): "CreateKey",
            ("GET", "versions"): "GetKeyVersions",
            ("POST", "backup"): "BackupKey",
            ("POST", "rotate"): "RotateKey",
            ("GET", "rotationpolicy"): "GetKeyRotationPolicy",
            ("PUT", "rotationpolicy"): "UpdateKeyRotationPolicy",
        }.get((method, word))
        if fixed is not None:
            return Matched(fixed, name)
        op = {"GET": "GetKey", "PATCH": "UpdateKey"}.get(method)
        return Matched(op, name, second)
    if len(rest) == 3:
        op = _CRYPTO.get(rest[2].lower())
        wanted = "GET" if op == "GetKeyAttestation" else "POST"
        if op is not None and method == wanted:
            return Matched(op, name, second)
    return Matched(None)


# Key Vault's error codes and statuses, for the errors keycask raises.
def status_of(error: KMSError) -> tuple[int, str]:
    if isinstance(error, Sealed | DependencyTimeoutException):
        return 503, "ServiceUnavailable"
    if isinstance(error, Unauthenticated):
        return 401, "Unauthorized"
    if isinstance(error, AccessDeniedException | DisabledException):
        return 403, "Forbidden"
    if isinstance(error, NotFoundException):
        return 404, "KeyNotFound"
    if isinstance(error, UnknownOperationException):
        return 404, "NotFound"
    if isinstance(error, AlreadyExistsException | KMSInvalidStateException):
        return 409, "Conflict"
    if isinstance(error, Unserved):
        return 501, "NotImplemented"
    if isinstance(error, LimitExceededException | ThrottlingException):
        return 429, "Throttled"
    if isinstance(error, RequestEntityTooLargeException):
        return 413, "RequestEntityTooLarge"
    if isinstance(error, KMSInternalException) or error.status >= 500:
        return 500, "InternalServerError"
    if error.code in ("UnrecognizedClientException", "NotAuthorizedException"):
        return 403, "Forbidden"
    return 400, "BadParameter"


def error_message(error: KMSError) -> str:
    if isinstance(error, InvalidCiphertextException | IncorrectKeyException):
        return "Decryption failed: the ciphertext is invalid for this key and algorithm."
    if isinstance(error, Sealed):
        return "keycask is sealed: the request had no effect. Retry once it is unsealed."
    if isinstance(error, AccessDeniedException) and not isinstance(
        error, Unauthenticated | PlainHttp
    ):
        return (
            "The caller is not authorized to perform this action on the key (the audit "
            "record has keycask's reason)."
        )
    return error.message or error.code


def error_body(error: KMSError) -> bytes:
    _, code = status_of(error)
    doc: Doc = {"code": code, "message": error_message(error)}
    if code == "Forbidden" and type(error) is AccessDeniedException:
        doc["innererror"] = {"code": "ForbiddenByPolicy"}
    return orjson.dumps({"error": doc})


def host_of(request: HttpRequest) -> str:
    """The request's Host (the vault's authority), checked."""
    raw = header(request, b"host")
    host = raw.decode("latin-1").strip() if raw is not None else ""
    if _HOST.fullmatch(host) is None:
        raise ValidationException("The Host header is missing or malformed.")
    return host.lower()


def resource_of(host: str) -> str:
    """The challenge's resource: the Host minus its first label, port kept
    (a host of one label, or an IPv6 address, is itself: the Azure SDK's
    check cannot pass for it; use 127.0.0.1 or a dotted name)."""
    name, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not colon or "]" in port:
        name, port = host, ""
    _, dot, parent = name.partition(".")
    if not dot or name.startswith("["):
        parent = name
    return f"https://{parent}{':' + port if port else ''}"


def vault_of(host: str) -> str:
    """The vault a Host names: its first label, unless it is an IP address
    or a name of one label (``default``)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.startswith("[") or _IPV4.fullmatch(name) is not None or "." not in name:
        return DEFAULT_VAULT
    label = name.split(".", 1)[0]
    return label if _LABEL.fullmatch(label) is not None else DEFAULT_VAULT


class AzureKeyVaultDoor(BearerDoorWrites):
    name = azure_rotation.DOOR  # the scheduler's records of its policies' actions say it too
    prefixes: tuple[str, ...] = ()
    media_types: tuple[bytes, ...] = ()
    path_prefixes = PATH_PREFIXES
    content_type = b"application/json; charset=utf-8"
    serves_sealed = False

    def __init__(self, deps: Deps, tokens: TokenStore, authz: Authorizer, *, region: str) -> None:
        self._deps = deps
        self._tokens = tokens
        self._region = region
        self._callers = BearerCallers(tokens, authz)
        self._actions: dict[str, Action] = {}
        for route in ROUTES.values():
            handler = route.handler
            run = _refused if handler is None else partial(handler, deps)
            prepare = None if route.prepare is None else partial(route.prepare, deps)
            self._actions[route.name] = Action(route.name, run, route.mutates, prepare=prepare)

    def operation(self, target: str) -> str | None:
        method, _, rest = target.partition(" ")
        found = match(method, rest.partition("?")[0]).name
        return None if found is None else _P + found

    async def authenticate(self, call: Call, request: HttpRequest) -> None:
        if not call.secure_transport:
            raise PlainHttp(
                "keycask serves the Azure Key Vault door over HTTPS only (start the server with "
                "--tls-cert/--tls-key, or --dev --tls-self-signed). Treat a token sent here "
                "over plain HTTP as exposed: revoke it."
            )
        host = host_of(request)
        challenge = f'Bearer authorization="https://{host}/keycask", resource="{resource_of(host)}"'
        token = bearer_token(request)
        if not token:
            raise Unauthenticated(
                "AKV10000: Request is missing a Bearer token: send Authorization: Bearer "
                "<a keycask token> (keycask principals token create NAME).",
                challenge,
            )
        caller = await self._callers.caller(token, call.time, self._region)
        if caller is None:
            raise Unauthenticated(
                "The bearer token is not valid: unknown, expired or revoked.", challenge
            )
        call.caller = caller

    def action(self, call: Call, request: HttpRequest) -> Action:
        name = call.operation
        if name is None:
            raise UnknownOperationException(
                f"The requested URL {request.raw_path[:200].decode('latin-1')} "
                f"({request.method}) is not a Key Vault keys operation keycask knows."
            )
        return self._actions[name]

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        if len(request.body) > MAX_BODY and action.name != _P + "RestoreKey":
            raise RequestEntityTooLargeException(
                f"The request body is over {MAX_BODY} bytes, the most a Key Vault request "
                "to keycask may carry."
            )
        query = parse_qs(request.query_string.decode("latin-1"), keep_blank_values=True)
        api_version = codec.check_api_version(query)
        host = host_of(request)
        base = f"https://{host}"
        vault = vault_of(host)
        op = action.name[len(_P) :]
        if op in ("SecretsEndpoint", "CertificatesEndpoint"):
            raise Unserved(
                "keycask's Azure Key Vault door serves keys only (/keys, /deletedkeys, /rng): "
                "the secrets and certificates endpoints are not served."
            )
        if op in UNSERVED:
            raise Unserved(f"{op} is not served by keycask's Azure Key Vault door yet.")
        if op == "GetRandomBytes":
            return codec.random(codec.body(request.body))
        if op == "GetKeys":
            return codec.listing(vault, base, query, api_version)
        if op == "RestoreKey":
            return codec.restore(vault, base, codec.body(request.body))
        if op == "GetDeletedKeys":
            return codec.listing(vault, base, query, api_version, deleted=True)
        matched = match(request.method, request.raw_path.decode("latin-1"))
        ref = KeyRef(vault, codec.name_of(matched.key))
        version = matched.version
        if version and codec.VERSION.fullmatch(version) is None:
            raise azure.not_found(ref, version[:64])
        version = version.lower()
        if op == "GetKeyVersions":
            return codec.listing(vault, base, query, api_version, ref)
        if op in ("GetKey", "RotateKey", "DeleteKey", "BackupKey") or op in _DELETED:
            return codec.get(ref, base, version)
        if op == "GetKeyRotationPolicy":
            return PolicyRequest(ref, base)
        doc = codec.body(request.body)
        if op == "CreateKey":
            return codec.create(ref, base, doc)
        if op == "UpdateKey":
            return codec.update(ref, base, version, doc)
        if op == "ImportKey":
            return codec.import_key(ref, base, doc)
        if op == "UpdateKeyRotationPolicy":
            return codec.policy(ref, base, doc)
        return codec.crypto(ref, base, version, _CRYPTO_OPS[op], doc)

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        doc = ROUTES[action.name].encode(result)
        # No body: http/kms.py answers 204 (purge), as Key Vault does.
        return b"" if doc is None else orjson.dumps(doc)

    def encode_error(self, error: KMSError, request_id: str) -> bytes:
        return error_body(error)

    def error_status(self, error: KMSError) -> int:
        return status_of(error)[0]

    def error_headers(self, error: KMSError) -> tuple[tuple[bytes, bytes], ...]:
        """The 401's challenge (the Azure SDK authenticates by it)."""
        if isinstance(error, Unauthenticated):
            return ((b"www-authenticate", error.challenge.encode("latin-1")),)
        return ()


async def _refused(call: Call, req: object) -> Outcome:
    """An unserved route's handler: decode refuses every request first."""
    raise Unserved("not served by keycask's Azure Key Vault door yet")
