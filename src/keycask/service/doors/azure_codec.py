"""Azure Key Vault's JSON, in and out: request bodies and query parameters
checked and decoded into ``service/core/azure_requests.py``'s requests,
and results rendered as Key Vault's KeyBundle, KeyItem, KeyListResult,
KeyOperationResult, KeyVerifyResult and RandomBytes (api-version 7.4 and
later; docs/azure-keyvault.md).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson
import pybase64

from keycask.crypto.jwk import InvalidJwk, private_key_from_jwk, public_jwk
from keycask.errors import UnsupportedOperationException, ValidationException
from keycask.keys.model import KeySpec, KeyState
from keycask.service.core.azure_requests import (
    KEY_NAME,
    UNSET,
    BackupResult,
    CreateRequest,
    CryptoRequest,
    Deleted,
    DeletedBundle,
    GetRequest,
    KeyBundle,
    KeyItem,
    KeyRef,
    LifetimeAction,
    ListRequest,
    ListResult,
    PolicyRequest,
    PolicyResult,
    RandomRequest,
    RandomResult,
    RestoreRequest,
    RotationPolicy,
    UpdateRequest,
    Version,
)
from keycask.service.core.azure_requests import (
    CryptoResult as CryptoOut,
)

Doc = dict[str, Any]

NAME: Final = KEY_NAME
VERSION: Final = re.compile(r"[0-9a-fA-F]{32}")
_API_VERSION: Final = re.compile(r"(\d{1,3})\.(\d{1,3})(-preview(\.\d{1,3})?)?")
# Key Vault's tags: at most 15, names up to 512 characters, values up to 256.
_MAX_TAGS = 15
_MAX_TAG_NAME = 512
_MAX_TAG_VALUE = 256
# The largest value a request carries: an RSA-4096 ciphertext, a digest,
# a key to wrap (Key Vault's own limits are of this order).
_MAX_VALUE = 4096
# Unix times keycask takes for nbf and exp: from 1970 to 9999.
_MAX_TIME = 253402300799
# Soft delete's (service/core/azure_deletion.py): recoverableDays is the
# waiting period of keycask's key deletion, at most 30 days.
RECOVERY_LEVEL = "CustomizedRecoverable+Purgeable"
RECOVERABLE_DAYS = 30


def check_api_version(query: Mapping[str, list[str]]) -> str:
    values = query.get("api-version")
    if not values or not values[0]:
        raise ValidationException(
            "The api-version query parameter is missing: keycask serves Key Vault's "
            "api-version 7.4 and later."
        )
    text = values[-1]
    match = _API_VERSION.fullmatch(text)
    if match is None or int(match[1]) != 7 or int(match[2]) < 4:
        raise ValidationException(
            f"The specified version ({text[:20]}) is not recognized. keycask serves Key "
            "Vault's api-version 7.4 and later 7.x (7.4, 7.5, 7.6, ...)."
        )
    return text


def name_of(text: str) -> str:
    if NAME.fullmatch(text) is None:
        raise ValidationException(
            f"The key name '{text[:140]}' is not valid: 1 to 127 letters, digits and "
            "dashes (0-9, a-z, A-Z, -)."
        )
    return text


def body(raw: bytes) -> Doc:
    if not raw:
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationException("The request body is not valid JSON.") from None
    if not isinstance(doc, dict):
        raise ValidationException("The request body must be a JSON object.")
    return doc


def _field(doc: Doc, name: str, kind: type | tuple[type, ...], *, required: bool = False) -> Any:
    value = doc.get(name)
    if value is None:
        if required:
            raise ValidationException(f"The parameter {name} is required.")
        return None
    if isinstance(value, bool) and kind is not bool:
        raise ValidationException(f"The parameter {name} has the wrong type.")
    if not isinstance(value, kind):
        raise ValidationException(f"The parameter {name} has the wrong type.")
    return value


def _b64(doc: Doc, name: str) -> bytes:
    text = _field(doc, name, str, required=True)
    if len(text) > _MAX_VALUE * 2:
        raise ValidationException(f"The parameter {name} is too long.")
    try:
        value = pybase64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValidationException(f"The parameter {name} is not valid base64url.") from None
    if len(value) > _MAX_VALUE:
        raise ValidationException(f"The parameter {name} is over {_MAX_VALUE} bytes.")
    return value


def _b64url(data: bytes) -> str:
    return pybase64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _time(attrs: Doc, name: str) -> float | None:
    value = _field(attrs, name, int)
    if value is None:
        return None
    if not 0 <= value <= _MAX_TIME:
        raise ValidationException(f"The attribute {name} is out of range.")
    return float(value)


def _ops(doc: Doc) -> tuple[str, ...] | None:
    ops = _field(doc, "key_ops", list)
    if ops is None:
        return None
    if len(ops) > 16 or not all(isinstance(op, str) and len(op) <= 32 for op in ops):
        raise ValidationException("The parameter key_ops must be a list of operations.")
    return tuple(ops)


def _tags(doc: Doc) -> dict[str, str] | None:
    tags = _field(doc, "tags", dict)
    if tags is None:
        return None
    if len(tags) > _MAX_TAGS:
        raise ValidationException(f"A key has at most {_MAX_TAGS} tags.")
    for name, value in tags.items():
        if not isinstance(value, str) or not name or len(name) > _MAX_TAG_NAME:
            raise ValidationException("Tag names must be 1 to 512 characters, values strings.")
        if len(value) > _MAX_TAG_VALUE:
            raise ValidationException("Tag values are at most 256 characters.")
    return dict(tags)


def _attributes(doc: Doc) -> Doc:
    attrs = _field(doc, "attributes", dict)
    return attrs or {}


# -- requests --


def create(ref: KeyRef, base: str, doc: Doc) -> CreateRequest:
    kty = _field(doc, "kty", str, required=True)
    attrs = _attributes(doc)
    if attrs.get("exportable") or doc.get("release_policy") is not None:
        raise ValidationException(
            "Exportable keys and release policies are not supported: keycask keys never "
            "leave keycask."
        )
    enabled = _field(attrs, "enabled", bool)
    return CreateRequest(
        ref=ref,
        base=base,
        kty=kty[:32],
        size=_field(doc, "key_size", int),
        crv=_field(doc, "crv", str),
        ops=_ops(doc),
        enabled=True if enabled is None else enabled,
        nbf=_time(attrs, "nbf"),
        exp=_time(attrs, "exp"),
        tags=_tags(doc) or {},
        public_exponent=_field(doc, "public_exponent", int),
    )


def import_key(ref: KeyRef, base: str, doc: Doc) -> CreateRequest:
    """A private JWK, read once (keycask.crypto.jwk checks every member);
    its key_ops choose the key usage as create's do."""
    jwk = _field(doc, "key", dict, required=True)
    attrs = _attributes(doc)
    if attrs.get("exportable") or doc.get("release_policy") is not None:
        raise ValidationException(
            "Exportable keys and release policies are not supported: keycask keys never "
            "leave keycask."
        )
    kty = jwk.get("kty")
    if not isinstance(kty, str):
        raise ValidationException("The JWK's kty must be RSA or EC.")
    if doc.get("Hsm") is True or kty.endswith("-HSM"):
        raise UnsupportedOperationException(
            f"Importing a key into an HSM (kty {kty.removesuffix('-HSM')}-HSM) is not "
            "supported: keycask's HSM tokens make their own keys and take no imported "
            "material. Import it as a software key, or create an RSA-HSM or EC-HSM key."
        )
    else:
        try:
            spec, pkcs8 = private_key_from_jwk(jwk)
        except InvalidJwk as error:
            raise ValidationException(f"The key is not a valid private JWK: {error}") from None
        material = (KeySpec(spec), pkcs8)
    enabled = _field(attrs, "enabled", bool)
    return CreateRequest(
        ref=ref, base=base, kty=kty[:32], size=None, crv=None, ops=_ops(jwk),
        enabled=True if enabled is None else enabled, nbf=_time(attrs, "nbf"),
        exp=_time(attrs, "exp"), tags=_tags(doc) or {}, material=material,
    )  # fmt: skip


def policy(ref: KeyRef, base: str, doc: Doc) -> PolicyRequest:
    """A rotation policy: lifetimeActions (each a trigger, timeAfterCreate
    or timeBeforeExpiry, and an action type) and attributes.expiryTime."""
    raw = _field(doc, "lifetimeActions", list) or []
    if len(raw) > 2:
        raise ValidationException("A rotation policy holds at most two lifetime actions.")
    actions = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValidationException("A lifetime action must be an object.")
        trigger = _field(item, "trigger", dict, required=True)
        kind = _field(item, "action", dict, required=True).get("type") or ""
        if not isinstance(kind, str):
            raise ValidationException("A lifetime action's type must be Rotate or Notify.")
        found = [(k, v) for k, v in trigger.items() if k in ("timeAfterCreate", "timeBeforeExpiry")
                 and v is not None]  # fmt: skip
        if len(found) != 1 or not isinstance(found[0][1], str):
            raise ValidationException(
                "A lifetime action's trigger has one of timeAfterCreate and timeBeforeExpiry."
            )
        name, duration = found[0]
        actions.append(LifetimeAction(kind[:16].capitalize(), name, duration[:32]))
    expiry = _field(_attributes(doc), "expiryTime", str)
    return PolicyRequest(ref, base, RotationPolicy(tuple(actions), expiry and expiry[:32], 0, 0))


def update(ref: KeyRef, base: str, version: str, doc: Doc) -> UpdateRequest:
    attrs = _attributes(doc)
    return UpdateRequest(
        ref=ref,
        base=base,
        version=version,
        enabled=_field(attrs, "enabled", bool),
        nbf=_time(attrs, "nbf") if "nbf" in attrs else UNSET,
        exp=_time(attrs, "exp") if "exp" in attrs else UNSET,
        ops=_ops(doc),
        tags=_tags(doc),
    )


def get(ref: KeyRef, base: str, version: str) -> GetRequest:
    return GetRequest(ref, base, version)


def listing(
    vault: str, base: str, query: Mapping[str, list[str]], api_version: str,
    ref: KeyRef | None = None, *, deleted: bool = False,
) -> ListRequest:  # fmt: skip
    raw = (query.get("maxresults") or [""])[-1]
    size = 0
    if raw:
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw[:4]) <= 25 or len(raw) > 4:
            raise ValidationException("maxresults must be a whole number from 1 to 25.")
        size = int(raw)
    token = (query.get("$skiptoken") or [""])[-1]
    if token and NAME.fullmatch(token) is None:
        raise ValidationException("The $skiptoken is not valid.")
    return ListRequest(vault, base, size, token, ref, api_version, deleted)


def crypto(ref: KeyRef, base: str, version: str, operation: str, doc: Doc) -> CryptoRequest:
    algorithm = _field(doc, "alg", str, required=True)[:64]
    if operation == "verify":
        return CryptoRequest(
            ref, base, version, operation, algorithm, _b64(doc, "value"), _b64(doc, "digest")
        )
    return CryptoRequest(ref, base, version, operation, algorithm, _b64(doc, "value"))


# A backup holds every version's private key: up to the server's body limit.
_MAX_BACKUP = 1024 * 1024


def restore(vault: str, base: str, doc: Doc) -> RestoreRequest:
    text = _field(doc, "value", str, required=True)
    if len(text) > _MAX_BACKUP:
        raise ValidationException("The backup blob is too long.")
    try:
        blob = pybase64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValidationException("The parameter value is not valid base64url.") from None
    return RestoreRequest(vault, base, blob)


def backup_out(result: BackupResult) -> Doc:
    return {"value": _b64url(result.blob)}


def random(doc: Doc) -> RandomRequest:
    count = _field(doc, "count", int, required=True)
    if not 1 <= count <= 128:
        raise ValidationException("count must be from 1 to 128.")
    return RandomRequest(count)


# -- answers --


def _attributes_doc(key: Any, version: Version) -> Doc:
    attrs: Doc = {
        "enabled": key.state is KeyState.ENABLED,
        "created": int(version.created),
        "updated": int(version.updated),
        "recoveryLevel": RECOVERY_LEVEL,
        "recoverableDays": RECOVERABLE_DAYS,
        "exportable": False,
    }
    if version.nbf is not None:
        attrs["nbf"] = int(version.nbf)
    if version.exp is not None:
        attrs["exp"] = int(version.exp)
    return attrs


def key_bundle(result: KeyBundle) -> Doc:
    jwk: Doc = {"kid": f"{result.base}/keys/{result.ref.name}/{result.version.id}"}
    fields = public_jwk(result.public_der)
    # A key held in an HSM shows its -HSM key type, as Key Vault's.
    jwk["kty"] = fields["kty"] + ("-HSM" if result.key.hsm_object is not None else "")
    jwk["key_ops"] = list(result.version.ops)
    jwk.update({k: v for k, v in fields.items() if k != "kty"})
    doc: Doc = {"key": jwk, "attributes": _attributes_doc(result.key, result.version)}
    if result.version.tags:
        doc["tags"] = result.version.tags
    return doc


def _deleted_fields(base: str, name: str, deleted: Deleted) -> Doc:
    return {
        "recoveryId": f"{base}/deletedkeys/{name}",
        "deletedDate": int(deleted.date),
        "scheduledPurgeDate": int(deleted.purge),
    }


def deleted_bundle(result: DeletedBundle) -> Doc:
    doc = key_bundle(result.bundle)
    doc.update(_deleted_fields(result.bundle.base, result.bundle.ref.name, result.deleted))
    return doc


def nothing(result: object) -> Doc | None:
    """An answer with no body (purge: 204)."""
    return None


def _item(base: str, item: KeyItem, *, versioned: bool) -> Doc:
    kid = f"{base}/keys/{item.ref.name}"
    doc: Doc = {
        "kid": f"{kid}/{item.version.id}" if versioned else kid,
        "attributes": _attributes_doc(item.key, item.version),
    }
    if item.version.tags:
        doc["tags"] = item.version.tags
    if item.deleted is not None:
        doc.update(_deleted_fields(base, item.ref.name, item.deleted))
    return doc


def key_list(result: ListResult) -> Doc:
    req = result.req
    versioned = req.ref is not None
    items = [_item(result.base, item, versioned=versioned) for item in result.items]
    nxt = None
    if result.next_after is not None:
        path = f"/keys/{req.ref.name}/versions" if req.ref is not None else "/keys"
        path = "/deletedkeys" if req.deleted else path
        size = f"&maxresults={req.max_results}" if req.max_results else ""
        nxt = (
            f"{result.base}{path}?api-version={req.api_version}{size}"
            f"&$skiptoken={result.next_after}"
        )
    return {"value": items, "nextLink": nxt}


def crypto_out(result: CryptoOut) -> Doc:
    if result.valid is not None:
        return {"value": result.valid}
    return {"kid": result.kid, "value": _b64url(result.value)}


def random_out(result: RandomResult) -> Doc:
    return {"value": _b64url(result.value)}


def policy_out(result: PolicyResult) -> Doc:
    doc: Doc = {"id": f"{result.base}/keys/{result.ref.name}/rotationpolicy"}
    found = result.policy
    if found is None:
        return {**doc, "lifetimeActions": [], "attributes": {}}
    doc["lifetimeActions"] = [
        {"trigger": {a.trigger: a.duration}, "action": {"type": a.action}} for a in found.actions
    ]
    attrs: Doc = {"created": int(found.created), "updated": int(found.updated)}
    if found.expiry is not None:
        attrs["expiryTime"] = found.expiry
    doc["attributes"] = attrs
    return doc
