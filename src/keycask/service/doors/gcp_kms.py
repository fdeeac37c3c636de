"""Google Cloud KMS's v1 REST API (``/v1/projects/...``): a front door
claimed by path, authenticated by a keycask bearer token
(``Authorization: Bearer``, ``auth/tokens.py``, resolved as the Vault door
resolves it: ``doors/bearer.py``).

Each route maps to a core operation of ``service/core/gcp.py``, which runs
the AWS door's handlers under their ``kms:`` actions (docs/gcp-kms.md has
the table). Bodies are Cloud KMS's JSON (``doors/gcp_codec.py``); errors
are google.rpc.Status objects as Google's REST APIs write them,
``{"error": {"code": 400, "message": ..., "status": "INVALID_ARGUMENT"}}``,
with the HTTP status the code names.

A request's project names a keycask account and its location a region:
``projects`` (``--gcp-project PROJECT=ACCOUNT``) maps each project named
there to one account, and a caller may use only its own account's
projects; with no mapping, every project is the caller's own account. A
location is the region of the same name; "global" is the server's region.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
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
)
from keycask.service.core import (
    gcp,
    gcp_crypto,
    gcp_iam,
    gcp_imports,
    gcp_ring_iam,
    gcp_versions,
)
from keycask.service.core.authz import Authorizer
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.door import Action
from keycask.service.doors import gcp_codec as codec
from keycask.service.doors import gcp_crypto_codec as crypto_codec
from keycask.service.doors import gcp_iam_codec as iam_codec
from keycask.service.doors import gcp_import_codec as import_codec
from keycask.service.doors import gcp_list
from keycask.service.doors import gcp_render as render
from keycask.service.doors.bearer import BearerCallers, BearerDoorWrites, bearer_token

PATH_PREFIX: Final = b"/v1/projects/"
GLOBAL: Final = "global"

Doc = dict[str, Any]


class Unauthenticated(AccessDeniedException):
    """No token, or one that does not resolve: 401 UNAUTHENTICATED."""


class ProjectDenied(AccessDeniedException):
    """A project the caller's account does not hold (403 PERMISSION_DENIED)."""


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # as audited: "GcpKms.Encrypt"
    decode: Callable[[Mapping[str, str], Mapping[str, list[str]], Doc], object]
    encode: Callable[[Any], Doc]
    handler: Callable[[Deps, Call, Any], Awaitable[Outcome]] | None
    mutates: bool = False
    # Slow work done before the write lock is taken (``Action.prepare``).
    prepare: Callable[[Deps, Call, Any], Awaitable[None]] | None = None


_L = "projects/*/locations/*"
_R = _L + "/keyRings/*"
_K = _R + "/cryptoKeys/*"
_V = _K + "/cryptoKeyVersions/*"
_G = "GcpKms."


def _empty(result: object) -> Doc:
    return {}


def _unserved(params: Mapping[str, str], query: Mapping[str, list[str]], doc: Doc) -> object:
    raise UnsupportedOperationException("not served by keycask's Cloud KMS door yet")


ROUTES: dict[tuple[str, str, str], Route] = {
    ("POST", _L + "/keyRings", ""): Route(_G + "CreateKeyRing", codec.create_ring,
                                          render.ring_doc, gcp.create_ring, mutates=True),
    ("GET", _L + "/keyRings", ""): Route(_G + "ListKeyRings", gcp_list.list_rings,
                                         render.listed("keyRings"), gcp.list_rings),
    ("GET", _R, ""): Route(_G + "GetKeyRing", codec.ring, render.ring_doc, gcp.get_ring),
    ("POST", _R + "/cryptoKeys", ""): Route(_G + "CreateCryptoKey", codec.create_key,
                                            render.key_doc, gcp_ring_iam.create_key, mutates=True,
                                            prepare=gcp.prepare_create),
    ("GET", _R + "/cryptoKeys", ""): Route(_G + "ListCryptoKeys", gcp_list.list_keys,
                                           render.listed("cryptoKeys"), gcp.list_keys),
    ("GET", _K, ""): Route(_G + "GetCryptoKey", codec.key, render.key_doc, gcp.get_key),
    ("PATCH", _K, ""): Route(_G + "UpdateCryptoKey", codec.update_key, render.key_doc,
                             gcp.update_key, mutates=True),
    ("POST", _K, "encrypt"): Route(_G + "Encrypt", codec.encrypt, render.encrypted, gcp.encrypt),
    ("POST", _V, "encrypt"): Route(_G + "Encrypt", codec.encrypt, render.encrypted, gcp.encrypt),
    ("POST", _K, "decrypt"): Route(_G + "Decrypt", codec.decrypt, render.decrypted, gcp.decrypt),
    ("POST", _K + "/cryptoKeyVersions", ""): Route(_G + "CreateCryptoKeyVersion", codec.key,
                                                   render.version_doc, gcp_versions.create_version,
                                                   mutates=True,
                                                   prepare=gcp_versions.prepare_version),
    ("GET", _K + "/cryptoKeyVersions", ""): Route(_G + "ListCryptoKeyVersions",
                                                  gcp_list.list_versions,
                                                  render.listed("cryptoKeyVersions"),
                                                  gcp_versions.list_versions),
    ("GET", _V, ""): Route(_G + "GetCryptoKeyVersion", codec.version, render.version_doc,
                           gcp_versions.get_version),
    ("PATCH", _V, ""): Route(_G + "UpdateCryptoKeyVersion", codec.update_version,
                             render.version_doc, gcp_versions.update_version, mutates=True),
    ("POST", _V, "destroy"): Route(_G + "DestroyCryptoKeyVersion", codec.version,
                                   render.version_doc, gcp_versions.destroy, mutates=True),
    ("POST", _V, "restore"): Route(_G + "RestoreCryptoKeyVersion", codec.version,
                                   render.version_doc, gcp_versions.restore, mutates=True),
    ("GET", _V + "/publicKey", ""): Route(_G + "GetPublicKey", crypto_codec.public_key,
                                          render.public_key, gcp_crypto.get_public_key),
    ("POST", _V, "asymmetricSign"): Route(_G + "AsymmetricSign", crypto_codec.asymmetric_sign,
                                          render.signed, gcp_crypto.asymmetric_sign),
    ("POST", _V, "asymmetricDecrypt"): Route(_G + "AsymmetricDecrypt",
                                             crypto_codec.asymmetric_decrypt,
                                             render.asymmetric_decrypted,
                                             gcp_crypto.asymmetric_decrypt),
    ("POST", _V, "macSign"): Route(_G + "MacSign", crypto_codec.mac_sign, render.mac_signed,
                                   gcp_crypto.mac_sign),
    ("POST", _V, "macVerify"): Route(_G + "MacVerify", crypto_codec.mac_verify, render.mac_verified,
                                     gcp_crypto.mac_verify),
    ("GET", _K, "getIamPolicy"): Route(_G + "GetIamPolicy", iam_codec.get_iam, render.iam_policy,
                                       gcp_iam.get_policy_of),
    ("POST", _K, "setIamPolicy"): Route(_G + "SetIamPolicy", iam_codec.set_iam, render.iam_policy,
                                        gcp_iam.set_policy, mutates=True),
    ("POST", _K, "testIamPermissions"): Route(_G + "TestIamPermissions", iam_codec.test_iam,
                                              render.permissions, gcp_iam.check_permissions),
    ("POST", _K, "updatePrimaryVersion"): Route(_G + "UpdateCryptoKeyPrimaryVersion",
                                                codec.primary, render.key_doc,
                                                gcp_versions.update_primary, mutates=True),
    ("GET", "projects/*/locations", ""): Route("GcpKms.ListLocations", codec.list_locations,
                                               render.locations, gcp.list_locations),
    ("GET", _L, ""): Route("GcpKms.GetLocation", codec.location, render.location,
                           gcp.get_location),
    ("GET", _R, "getIamPolicy"): Route(_G + "GetKeyRingIamPolicy", iam_codec.get_ring_iam,
                                       render.iam_policy, gcp_ring_iam.get_policy),
    ("POST", _R, "setIamPolicy"): Route(_G + "SetKeyRingIamPolicy", iam_codec.set_ring_iam,
                                        render.iam_policy, gcp_ring_iam.set_policy,
                                        mutates=True),
    ("POST", _R, "testIamPermissions"): Route(_G + "TestKeyRingIamPermissions",
                                              iam_codec.test_ring_iam, render.permissions,
                                              gcp_ring_iam.check_permissions),
    ("POST", _L, "generateRandomBytes"): Route(_G + "GenerateRandomBytes", codec.random,
                                               render.random_out, gcp.random_bytes),
    ("POST", _R + "/importJobs", ""): Route(_G + "CreateImportJob", import_codec.create_job,
                                            import_codec.job_doc, gcp_imports.create_job,
                                            mutates=True, prepare=gcp_imports.prepare_job),
    ("GET", _R + "/importJobs", ""): Route(_G + "ListImportJobs", import_codec.list_jobs,
                                           import_codec.jobs_doc, gcp_imports.list_jobs),
    ("GET", _R + "/importJobs/*", ""): Route(_G + "GetImportJob", import_codec.job,
                                             import_codec.job_doc, gcp_imports.get_job),
    ("POST", _K + "/cryptoKeyVersions", "import"): Route(_G + "ImportCryptoKeyVersion",
                                                         import_codec.import_version,
                                                         render.version_doc,
                                                         gcp_imports.import_version,
                                                         mutates=True),
}  # fmt: skip
# Cloud KMS methods this door knows and does not serve yet: each answered
# 501 UNIMPLEMENTED, audited under its own name.
_UNSERVED = {
    ("POST", _V, "rawEncrypt"): "RawEncrypt",
    ("POST", _V, "rawDecrypt"): "RawDecrypt",
    ("POST", _V, "decapsulate"): "Decapsulate",
    ("DELETE", _K, ""): "DeleteCryptoKey",
    ("DELETE", _V, ""): "DeleteCryptoKeyVersion",
    ("GET", _R + "/importJobs/*", "getIamPolicy"): "GetImportJobIamPolicy",
    ("POST", _R + "/importJobs/*", "setIamPolicy"): "SetImportJobIamPolicy",
    ("POST", _R + "/importJobs/*", "testIamPermissions"): "TestImportJobIamPermissions",
}
for _shape, _op in _UNSERVED.items():
    ROUTES[_shape] = Route(_G + _op, _unserved, _empty, None)
_KEYWORDS = ("projects", "locations", "keyRings", "cryptoKeys", "cryptoKeyVersions")
_PARAMS = ("project", "location", "ring", "key", "version")


@dataclass(frozen=True, slots=True)
class Matched:
    route: Route | None
    params: dict[str, str]


_MATCHED: dict[tuple[str, bytes], Matched] = {}
_MATCHED_MAX = 4096


def route_of(method: str, raw_path: bytes) -> Matched:
    key = (method, raw_path)
    found = _MATCHED.get(key)
    if found is None:
        if len(_MATCHED) >= _MATCHED_MAX:
            _MATCHED.clear()
        found = _MATCHED[key] = _route_of(method, raw_path)
    return found


def _route_of(method: str, raw_path: bytes) -> Matched:
    """The route and the ids in the path (unchecked: the codec checks them,
    so that a malformed name is INVALID_ARGUMENT, not an unknown path)."""
    path = raw_path[len(b"/v1/") :].decode("utf-8", "replace")
    path, colon, verb = path.partition(":")
    if colon and not verb:
        return Matched(None, {})  # "name:" names no method
    parts = path.split("/")
    shape: list[str] = []
    params: dict[str, str] = {}
    for i, part in enumerate(parts):
        if i % 2 == 0:
            shape.append(part)
            continue
        shape.append("*")
        index = i // 2
        if parts[i - 1] == "importJobs":
            params["import_job"] = part
        elif index < len(_PARAMS) and parts[i - 1] == _KEYWORDS[index]:
            params[_PARAMS[index]] = part
    return Matched(ROUTES.get((method, "/".join(shape), verb)), params)


# google.rpc.Code names by HTTP status, for the errors keycask raises.
def status_of(error: KMSError) -> tuple[int, str]:
    if isinstance(error, Sealed | DependencyTimeoutException):
        return 503, "UNAVAILABLE"
    if isinstance(error, Unauthenticated):
        return 401, "UNAUTHENTICATED"
    if isinstance(error, AccessDeniedException):
        return 403, "PERMISSION_DENIED"
    if isinstance(error, NotFoundException | UnknownOperationException):
        return 404, "NOT_FOUND"
    if isinstance(error, AlreadyExistsException):
        return 409, "ALREADY_EXISTS"
    if isinstance(error, gcp_iam.EtagMismatch):
        return 409, "ABORTED"
    if isinstance(error, KMSInvalidStateException | DisabledException):
        return 400, "FAILED_PRECONDITION"
    if isinstance(error, UnsupportedOperationException):
        return 501, "UNIMPLEMENTED"
    if isinstance(error, LimitExceededException | ThrottlingException):
        return 429, "RESOURCE_EXHAUSTED"
    if isinstance(error, KMSInternalException) or error.status >= 500:
        return 500, "INTERNAL"
    if error.code in ("UnrecognizedClientException", "NotAuthorizedException"):
        return 403, "PERMISSION_DENIED"
    return 400, "INVALID_ARGUMENT"


def error_message(error: KMSError) -> str:
    if isinstance(error, InvalidCiphertextException | IncorrectKeyException):
        return "Decryption failed: the ciphertext is invalid."
    if isinstance(error, RequestEntityTooLargeException):
        return error.message
    if isinstance(error, Sealed):
        return "keycask is sealed: the request had no effect. Retry once it is unsealed."
    return error.message or error.code


def error_body(error: KMSError) -> bytes:
    code, status = status_of(error)
    doc = {"code": code, "message": error_message(error), "status": status}
    return orjson.dumps({"error": doc})


class GcpKmsDoor(BearerDoorWrites):
    name = "gcp-kms"
    prefixes: tuple[str, ...] = ()
    media_types: tuple[bytes, ...] = ()
    path_prefixes = (PATH_PREFIX,)
    content_type = b"application/json; charset=UTF-8"
    serves_sealed = False

    def __init__(
        self,
        deps: Deps,
        tokens: TokenStore,
        authz: Authorizer,
        *,
        region: str,
        projects: Mapping[str, str],
    ) -> None:
        self._deps = deps
        self._tokens = tokens
        self._region = region
        self._projects = dict(projects)
        self._callers = BearerCallers(tokens, authz)
        self._actions: dict[str, Action] = {}
        self._routes: dict[str, Route] = {}
        for route in ROUTES.values():
            handler = route.handler
            run = _refused if handler is None else partial(handler, deps)
            prepare = None if route.prepare is None else partial(route.prepare, deps)
            self._actions[route.name] = Action(route.name, run, route.mutates, prepare=prepare)
            self._routes[route.name] = route

    def operation(self, target: str) -> str | None:
        method, _, rest = target.partition(" ")
        path = rest.partition("?")[0]
        found = route_of(method, path.encode("latin-1")).route
        return None if found is None else found.name

    def region_of(self, location: str) -> str:
        """The keycask region of a Cloud KMS location."""
        if location == GLOBAL or codec.LOCATION.fullmatch(location) is None:
            return self._region
        return location

    async def authenticate(self, call: Call, request: HttpRequest) -> None:
        token = bearer_token(request)
        if not token:
            raise Unauthenticated(
                "Request is missing required authentication credential: send "
                "Authorization: Bearer <a keycask token>."
            )
        params = route_of(request.method, request.raw_path).params
        region = self.region_of(params.get("location", GLOBAL))
        caller = await self._callers.caller(token, call.time, region)
        if caller is None:
            raise Unauthenticated("Request had invalid authentication credentials.")
        call.caller = caller
        project = params.get("project", "")
        if self._projects:
            account = self._projects.get(project)
            if account != caller.principal.account:
                raise ProjectDenied(
                    f"Permission denied on resource project {project[:64]} (or it may not "
                    "exist): keycask maps it to no account, or to another account than "
                    "the caller's."
                )

    def action(self, call: Call, request: HttpRequest) -> Action:
        name = call.operation
        if name is None:
            raise UnknownOperationException(
                f"The requested URL {request.raw_path[:200].decode('latin-1')} "
                f"({request.method}) was not found on this server."
            )
        return self._actions[name]

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        route = self._routes[action.name]
        matched = route_of(request.method, request.raw_path)
        query = parse_qs(request.query_string.decode("latin-1"), keep_blank_values=True)
        doc = codec.body(request.body) if request.method in ("POST", "PATCH") else {}
        return route.decode(matched.params, query, doc)

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        return orjson.dumps(self._routes[action.name].encode(result))

    def encode_error(self, error: KMSError, request_id: str) -> bytes:
        return error_body(error)

    def error_status(self, error: KMSError) -> int:
        return status_of(error)[0]


async def _refused(call: Call, req: object) -> Outcome:
    """An unserved route's handler: its decoder refuses every request first."""
    raise UnsupportedOperationException("not served by keycask's Cloud KMS door yet")
