"""HashiCorp Vault's Transit secrets engine (``/v1/transit/...``) and the few
``/v1/sys/...`` and ``/v1/auth/token/...`` paths its clients call: a front
door claimed by path, authenticated by a keycask bearer token
(``X-Vault-Token`` or ``Authorization: Bearer``, ``auth/tokens.py``).

Each route maps to a core operation of ``service/core/transit.py``, which
runs the AWS door's handlers under their ``kms:`` actions (docs/vault-transit.md
has the table). Bodies are Vault's: ``{"data": {...}}`` out, request fields
at the top level in, errors ``{"errors": ["..."]}`` with Vault's statuses
(400 bad input, 403 permission denied, 404 unknown key or path, 405 a
method the path does not take, 503 sealed). An answer with nothing to say
is empty (the HTTP edge answers it 204, as Vault does).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from keycask.auth.sigv4 import HttpRequest
from keycask.auth.tokens import TokenStore
from keycask.errors import (
    AccessDeniedException,
    DependencyTimeoutException,
    KMSError,
    KMSInternalException,
    NotFoundException,
    Sealed,
    SerializationException,
    UnknownOperationException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.service.core import transit, transit_mounts, transit_sign, transit_trim
from keycask.service.core.authz import Authorizer
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.door import Action
from keycask.service.doors import vault_codec as codec
from keycask.service.doors.bearer import BearerCallers, BearerDoorWrites

PATH_PREFIX: Final = b"/v1/"
_DENIED: Final = "permission denied"
# Vault's body for a request its policies refuse (a go-multierror of one):
# keycask's own reason, which names the action and resource, stays in the
# audit record.
_POLICY_DENIED: Final = orjson.dumps({"errors": ["1 error occurred:\n\t* permission denied\n\n"]})
# Vault's answer to renew-self for a token that is not renewable: a keycask
# token's expiry is fixed when it is made.
_NOT_RENEWABLE: Final = "lease is not renewable"

Doc = dict[str, Any]


class PermissionDenied(AccessDeniedException):
    """No token, or one that does not resolve: Vault's 403 ``permission denied``."""


class MethodNotAllowed(UnknownOperationException):
    """A known path asked with a method it does not take (405)."""


@dataclass(frozen=True, slots=True)
class Route:
    """One (method, path shape) the door serves."""

    name: str  # as audited: "VaultTransit.Encrypt"
    decode: Callable[[str, str, Doc, HttpRequest], object]
    encode: Callable[[Any], Doc | None]
    # The core operation (service/core/transit*.py); None: the door's own.
    handler: Callable[[Deps, Call, Any], Awaitable[Outcome]] | None = None
    mutates: bool = False
    authenticated: bool = True
    # Slow work done before the write lock is taken (``Action.prepare``).
    prepare: Callable[[Deps, Call, Any], Awaitable[None]] | None = None


# Vault's default token policy, as lookup-self names it; keycask's policies
# are the principal's identity policies and the keys' policies.
_POLICIES = ["default"]


def _looked_up(result: Doc) -> Doc:
    return {"data": result}


def _health(result: Doc) -> Doc:
    return result


_T = "VaultTransit."
ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "keys/"): Route(_T + "CreateKey", codec.create, codec.empty, transit.create_key,
                             mutates=True, prepare=transit.prepare_create),
    ("GET", "keys/"): Route(_T + "ReadKey", codec.key, codec.key_info, transit.read_key),
    ("DELETE", "keys/"): Route(_T + "DeleteKey", codec.key, codec.empty, transit.delete_key,
                               mutates=True),
    ("LIST", "keys"): Route(_T + "ListKeys", codec.list_request, codec.listed, transit.list_keys),
    ("POST", "keys/*/rotate"): Route(_T + "RotateKey", codec.key, codec.empty,
                                     transit.rotate_key, mutates=True),
    ("POST", "keys/*/config"): Route(_T + "ConfigKey", codec.config, codec.empty,
                                     transit.config_key, mutates=True),
    ("POST", "encrypt/"): Route(_T + "Encrypt", codec.encrypt, codec.items_out, transit.encrypt),
    ("POST", "decrypt/"): Route(_T + "Decrypt", codec.decrypt, codec.items_out, transit.decrypt),
    ("POST", "rewrap/"): Route(_T + "Rewrap", codec.rewrap, codec.items_out, transit.rewrap),
    ("POST", "datakey/plaintext/"): Route(_T + "DataKeyPlaintext", codec.datakey(True),
                                          codec.items_out, transit.datakey),
    ("POST", "datakey/wrapped/"): Route(_T + "DataKeyWrapped", codec.datakey(False),
                                        codec.items_out, transit.datakey),
    ("POST", "random"): Route(_T + "Random", codec.random, codec.items_out, transit.random),
    ("POST", "hmac/"): Route(_T + "Hmac", codec.signing(mac=True), codec.items_out,
                             transit_sign.sign),
    ("POST", "sign/"): Route(_T + "Sign", codec.signing(mac=False), codec.items_out,
                             transit_sign.sign),
    ("POST", "verify/"): Route(_T + "Verify", codec.verifying, codec.items_out,
                               transit_sign.verify),
    ("POST", "hash"): Route(_T + "Hash", codec.hashing, codec.items_out, transit_sign.hash_input),
    # Refused with the reason (keycask keys never leave, and take imported
    # material through the AWS door only).
    ("POST", "keys/*/trim"): Route(_T + "TrimKey", codec.trim, codec.key_info,
                                   transit_trim.trim_key, mutates=True),
    ("POST", "keys/*/import"): Route(_T + "ImportKey", codec.refused(codec.BYOK), codec.empty),
    ("POST", "keys/*/import_version"): Route(_T + "ImportKeyVersion", codec.refused(codec.BYOK),
                                             codec.empty),
    ("GET", "export/"): Route(_T + "ExportKey", codec.refused(codec.NEVER_LEAVE), codec.empty),
    ("GET", "backup/"): Route(_T + "BackupKey", codec.refused(codec.NEVER_LEAVE), codec.empty),
    ("POST", "restore"): Route(_T + "RestoreKey", codec.refused(codec.NEVER_LEAVE), codec.empty),
    ("GET", "sys/mounts"): Route("VaultSys.ListMounts", codec.list_mounts, codec.mounts_out,
                                 transit_mounts.list_mounts),
    ("POST", "sys/mounts/"): Route("VaultSys.EnableMount", codec.enable_mount, codec.empty,
                                   transit_mounts.enable_mount, mutates=True),
    ("DELETE", "sys/mounts/"): Route("VaultSys.DisableMount", codec.disable_mount, codec.empty,
                                     transit_mounts.disable_mount, mutates=True),
    ("GET", "sys/health"): Route("VaultSys.Health", codec.nothing, _health, authenticated=False),
    ("GET", "sys/seal-status"): Route("VaultSys.SealStatus", codec.nothing, _health,
                                      authenticated=False),
    ("GET", "auth/token/lookup-self"): Route("VaultToken.LookupSelf", codec.token, _looked_up),
    ("POST", "auth/token/revoke-self"): Route("VaultToken.RevokeSelf", codec.token, codec.empty,
                                              mutates=True),
    ("POST", "auth/token/renew-self"): Route("VaultToken.RenewSelf", codec.token, codec.empty),
}  # fmt: skip
_SHAPES = frozenset(shape for _, shape in ROUTES)
_KEY_ACTIONS = frozenset({"rotate", "config", "trim", "import", "import_version"})
# First path segments that are never a mount's.
_RESERVED = frozenset({"sys", "auth"})
_HEADS = transit_mounts.OPERATION_SEGMENTS
# Routes whose last path segment, after the key name, is a parameter.
_TRAILING = {"hmac": "algorithm", "sign": "hash_algorithm", "verify": "hash_algorithm"}


@dataclass(frozen=True, slots=True)
class Matched:
    route: Route | None
    mount: str  # the transit mount's path ("" for sys/ and auth/ routes)
    name: str  # the key name ("" if none)
    params: dict[str, str]  # parameters in the path (the hash algorithm, the byte count)
    known: bool  # a path this door serves under another method: 405, not 404


# Matches remembered by (method, path, query): a door matches each request
# twice (operation, then decode), and most requests repeat a path. Bounded:
# paths are the caller's to choose.
_MATCHED: dict[tuple[str, bytes, bytes], Matched] = {}
_MATCHED_MAX = 4096


def route_of(method: str, raw_path: bytes, query: bytes) -> Matched:
    key = (method, raw_path, query)
    found = _MATCHED.get(key)
    if found is None:
        if len(_MATCHED) >= _MATCHED_MAX:
            _MATCHED.clear()
        found = _MATCHED[key] = _route_of(method, raw_path, query)
    return found


def _route_of(method: str, raw_path: bytes, query: bytes) -> Matched:
    path = raw_path[len(PATH_PREFIX) :].decode("utf-8", "replace").rstrip("/")
    if method == "GET" and b"list" in query and parse_qs(query.decode()).get("list") == ["true"]:
        method = "LIST"
    if method == "PUT":
        method = "POST"  # Vault takes both for writes
    name = mount = ""
    params: dict[str, str] = {}
    shape = path
    parts = path.split("/")
    if path.startswith("sys/mounts/") and len(path) > len("sys/mounts/"):
        name, shape = path[len("sys/mounts/") :], "sys/mounts/"
    elif parts[0] not in _RESERVED:
        # The mount is everything before the first segment naming an
        # operation (a mount's own segments never do: transit_mounts.py).
        at = next((i for i, part in enumerate(parts) if i and part in _HEADS), len(parts))
        mount, parts = "/".join(parts[:at]), parts[at:]
        head, count = (parts[0], len(parts)) if parts else ("", 0)
        shape = "/".join(parts)
        if head in ("keys", "encrypt", "decrypt", "rewrap", *_TRAILING) and count == 2:
            name, shape = parts[1], head + "/"
        elif head == "keys" and count == 3 and parts[2] in _KEY_ACTIONS:
            name, shape = parts[1], f"keys/*/{parts[2]}"
        elif head in _TRAILING and count == 3:
            name, shape, params = parts[1], head + "/", {_TRAILING[head]: parts[2]}
        elif head == "datakey" and count == 3:
            name, shape = parts[2], f"datakey/{parts[1]}/"
        elif head == "random" and count == 2:
            shape, params = "random", {"bytes": parts[1]}
        elif head == "hash" and count == 2:
            shape, params = "hash", {"algorithm": parts[1]}
        elif head in ("export", "backup", "restore") and count >= 2:
            name, shape = parts[-1], head + "/"
    found = ROUTES.get((method, shape))
    return Matched(found, mount, name, params, found is None and shape in _SHAPES)


def _in_mount(
    prepare: Callable[[Deps, Call, Any], Awaitable[None]],
) -> Callable[[Deps, Call, Any], Awaitable[None]]:
    """``prepare``, run only if the request's mount is enabled."""

    async def run(deps: Deps, call: Call, req: Any) -> None:
        await transit_mounts.require_mount(deps, call, req.mount)
        await prepare(deps, call, req)

    return run


async def _never(call: Call, req: object) -> Outcome:
    """A refused route's handler: its decoder refuses every request first."""
    raise UnsupportedOperationException("not supported by keycask")


class VaultTransitDoor(BearerDoorWrites):
    name = "vault-transit"
    prefixes: tuple[str, ...] = ()
    media_types: tuple[bytes, ...] = ()
    path_prefixes = (PATH_PREFIX,)
    content_type = b"application/json"
    # sys/health and sys/seal-status answer sealed too; every other route
    # is refused Sealed at authentication while sealed.
    serves_sealed = True

    def __init__(
        self,
        deps: Deps,
        tokens: TokenStore,
        authz: Authorizer,
        *,
        region: str,
        sealed: Callable[[], bool],
    ) -> None:
        self._deps = deps
        self._tokens = tokens
        self._authz = authz
        self._region = region
        self._sealed = sealed
        self._callers = BearerCallers(tokens, authz)
        own: dict[str, Callable[[Call, Any], Awaitable[Outcome]]] = {
            "VaultSys.Health": self._health,
            "VaultSys.SealStatus": self._seal_status,
            "VaultToken.LookupSelf": self._lookup_self,
            "VaultToken.RevokeSelf": self._revoke_self,
            "VaultToken.RenewSelf": self._renew_self,
        }
        for refused in ("TrimKey", "ImportKey", "ImportKeyVersion", "ExportKey", "BackupKey",
                        "RestoreKey"):  # fmt: skip
            own[_T + refused] = _never
        self._actions: dict[str, Action] = {}
        self._routes: dict[str, Route] = {}
        for route in ROUTES.values():
            handler = route.handler
            if handler is None:
                run = own[route.name]
            elif route.name.startswith(_T):
                # A transit route: served only in an enabled mount.
                run = partial(transit_mounts.mounted(handler), deps)
            else:
                run = partial(handler, deps)
            prepare = None
            if route.prepare is not None:
                prepare = partial(_in_mount(route.prepare), deps)
            self._actions[route.name] = Action(route.name, run, route.mutates, prepare=prepare)
            self._routes[route.name] = route

    def operation(self, target: str) -> str | None:
        """``target`` is ``"<METHOD> <path>?<query>"`` for a door matched by path."""
        method, _, rest = target.partition(" ")
        path, _, query = rest.partition("?")
        found = route_of(method, path.encode("latin-1"), query.encode("latin-1")).route
        return None if found is None else found.name

    async def authenticate(self, call: Call, request: HttpRequest) -> None:
        route = self._routes.get(call.operation or "")
        if route is not None and not route.authenticated:
            call.principal_name = "anonymous"
            return
        if self._sealed():
            raise Sealed()
        token = codec.token_of(request)
        if not token:
            raise PermissionDenied(_DENIED)
        caller = await self._callers.caller(token, call.time, self._region)
        if caller is None:
            raise PermissionDenied(_DENIED)
        call.caller = caller

    def action(self, call: Call, request: HttpRequest) -> Action:
        name = call.operation
        if name is None:
            if route_of(request.method, request.raw_path, request.query_string).known:
                raise MethodNotAllowed(f"unsupported operation {request.method}")
            raise UnknownOperationException("unsupported path")
        return self._actions[name]

    def decode(self, call: Call, action: Action, request: HttpRequest) -> object:
        route = self._routes[action.name]
        matched = route_of(request.method, request.raw_path, request.query_string)
        doc = codec.body(request) if request.method in ("POST", "PUT") else {}
        doc.update(matched.params)  # the path's parameters win, as in Vault
        return route.decode(matched.mount, matched.name, doc, request)

    def encode(self, action: Action, result: object | None, request_id: str) -> bytes:
        doc = self._routes[action.name].encode(result)
        if doc is None:
            return b""
        if "data" in doc and isinstance(doc["data"], dict):
            doc = {"request_id": request_id, "lease_id": "", "renewable": False,
                   "lease_duration": 0, **doc, "wrap_info": None, "warnings": None,
                   "auth": None}  # fmt: skip
        return orjson.dumps(doc)

    def encode_error(self, error: KMSError, request_id: str) -> bytes:
        if isinstance(error, Sealed):
            return b'{"errors":["Vault is sealed"]}'
        if isinstance(error, PermissionDenied):
            return b'{"errors":["permission denied"]}'
        if isinstance(error, AccessDeniedException):
            return _POLICY_DENIED
        if isinstance(error, NotFoundException) and not error.message:
            return b'{"errors":[]}'
        return orjson.dumps({"errors": [codec.error_text(error)]})

    def error_status(self, error: KMSError) -> int:
        if isinstance(error, Sealed | DependencyTimeoutException):
            return 503
        if isinstance(error, AccessDeniedException):
            return 403
        if isinstance(error, MethodNotAllowed):
            return 405
        if isinstance(error, NotFoundException | UnknownOperationException):
            return 404
        if isinstance(error, KMSInternalException):
            return 500
        if isinstance(error, SerializationException | UnsupportedOperationException):
            return 400
        if error.status >= 500:
            return error.status
        if error.code in ("AccessDeniedException", "UnrecognizedClientException"):
            return 403
        return 400

    # -- sys and token routes --

    async def _health(self, call: Call, req: codec.NoRequest) -> Outcome:
        sealed = self._sealed()
        if sealed:
            # Vault answers a sealed node's health 503 (load balancers read the status).
            raise Sealed()
        return Outcome(
            {
                "initialized": True,
                "sealed": sealed,
                "standby": False,
                "performance_standby": False,
                "replication_performance_mode": "disabled",
                "replication_dr_mode": "disabled",
                "server_time_utc": int(call.time.timestamp()),
                "version": "keycask",
                "cluster_name": "keycask",
            }
        )

    async def _seal_status(self, call: Call, req: codec.NoRequest) -> Outcome:
        return Outcome(
            {
                "type": "keycask",
                "initialized": True,
                "sealed": self._sealed(),
                "t": 0,
                "n": 0,
                "progress": 0,
                "nonce": "",
                "version": "keycask",
                "migration": False,
                "recovery_seal": False,
                "storage_type": "keycask",
            }
        )

    async def _lookup_self(self, call: Call, req: codec.TokenRequest) -> Outcome:
        resolved = await self._tokens.resolve(req.token, call.time)
        if resolved is None:
            raise PermissionDenied(_DENIED)
        record = resolved.record
        expires = datetime.fromtimestamp(record.expires, UTC)
        ttl = max(0, int(record.expires - call.time.timestamp()))
        return Outcome(
            {
                "accessor": record.token_id,
                "creation_time": int(record.created),
                "creation_ttl": int(record.expires - record.created),
                "display_name": resolved.principal.arn,
                "entity_id": resolved.principal.unique_id,
                "expire_time": codec.date(expires),
                "explicit_max_ttl": 0,
                "id": req.token,
                "meta": None,
                "num_uses": 0,
                "orphan": True,
                "path": "auth/token/create",
                "policies": _POLICIES,
                "renewable": False,
                "ttl": ttl,
                "type": "service",
            }
        )

    async def _renew_self(self, call: Call, req: codec.TokenRequest) -> Outcome:
        """Vault's answer for a token that is not renewable (lookup-self says
        ``renewable: false``): a keycask token lives the TTL it was made with."""
        if await self._tokens.resolve(req.token, call.time) is None:
            raise PermissionDenied(_DENIED)
        raise ValidationException(_NOT_RENEWABLE)

    async def _revoke_self(self, call: Call, req: codec.TokenRequest) -> Outcome:
        record = await self._tokens.by_token(req.token)
        if record is None:
            raise PermissionDenied(_DENIED)
        call.detail = f"token {record.token_id} revoked by itself"
        return Outcome(None, self._tokens.stage_revoke(record))
