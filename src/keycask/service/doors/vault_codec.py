"""The Vault Transit door's wire (``service/doors/vault_transit.py``): request
bodies into the core's typed transit requests (``service/core/transit.py``)
and its results into Vault's ``{"data": ...}`` answers. Request fields are
checked here, before anything is authorized: a wrong type or bad base64 is
Vault's 400; a bad item of a batch_input becomes that item's error.
"""

from __future__ import annotations

import binascii
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import pybase64

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import InvalidCiphertextException, KMSError, ValidationException
from keycask.keys.model import KeySpec
from keycask.service.core import transit_mounts, transit_requests, transit_sign
from keycask.service.door import header

MOUNT: Final = "transit"
# A batch's items: 1,000 must fit in the edge's 1 MiB body limit.
MAX_BATCH = 10_000

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """lookup-self and revoke-self: the token the request came with."""

    token: str


@dataclass(frozen=True, slots=True)
class NoRequest:
    pass


# -- decoding --


def token_of(request: HttpRequest) -> str | None:
    raw = header(request, b"x-vault-token")
    if raw is None:
        auth = header(request, b"authorization")
        if auth is not None and auth[:7].lower() == b"bearer ":
            raw = auth[7:].strip()
    return None if raw is None else raw.decode("latin-1")


def body(request: HttpRequest) -> Doc:
    if not request.body:
        return {}
    try:
        doc = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise ValidationException("failed to parse JSON input") from None
    if not isinstance(doc, dict):
        raise ValidationException("failed to parse JSON input: not an object")
    return doc


def string_field(doc: Doc, name: str, default: str | None = None) -> str | None:
    value = doc.get(name, default)
    if value is not None and not isinstance(value, str):
        raise ValidationException(f"{name} must be a string")
    return value


def int_field(doc: Doc, name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    # ASCII digits only (str.isdigit also takes "²", which int() refuses),
    # and no more of them than a 64-bit number has.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationException(f"{name} must be a whole number")
    return value


def bool_field(doc: Doc, name: str) -> bool | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if not isinstance(value, bool):
        raise ValidationException(f"{name} must be true or false")
    return value


def refuse_unsupported(doc: Doc, names: Sequence[str], why: str) -> None:
    for name in names:
        value = doc.get(name)
        if value not in (None, False, "", "false", 0):
            raise ValidationException(f"{name} is not supported: {why}")


def create(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    refuse_unsupported(
        doc,
        ("exportable", "allow_plaintext_backup"),
        "keycask keys never leave keycask",
    )
    refuse_unsupported(doc, ("convergent_encryption",), CONVERGENT)
    kind = string_field(doc, "type") or transit_requests.DEFAULT_TYPE
    derived = bool(bool_field(doc, "derived"))
    return transit_requests.TransitCreateRequest(mount, name, kind, derived)


def key(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    return transit_requests.TransitKeyRequest(mount, name)


def list_request(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    return transit_requests.TransitListRequest(mount)


def config(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    refuse_unsupported(
        doc,
        ("exportable", "allow_plaintext_backup"),
        "keycask keys never leave keycask",
    )
    return transit_requests.TransitConfigRequest(
        mount,
        name,
        int_field(doc, "min_decryption_version"),
        int_field(doc, "min_encryption_version"),
        bool_field(doc, "deletion_allowed"),
        duration(doc, "auto_rotate_period"),
    )


def trim(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    wanted = int_field(doc, "min_available_version")
    if wanted is None:
        raise ValidationException("missing min_available_version")
    return transit_requests.TransitTrimRequest(mount, name, wanted)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:[0-9]{1,9}[smhd])+")
_PART = re.compile(r"([0-9]+)([smhd])")


def duration(doc: Doc, name: str) -> int | None:
    """Seconds of a Vault duration: a number of seconds, or "720h", "90d",
    "1h30m"."""
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        if value.isdigit() and len(value) <= 12:
            return int(value)
        if _DURATION.fullmatch(value):
            return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    raise ValidationException(f"{name} must be a duration: seconds, or like 720h or 90d")


def batch_items(doc: Doc, fields: Callable[[Doc], object]) -> tuple[tuple[Any, ...], bool]:
    batch = doc.get("batch_input")
    if batch is None:
        return (fields(doc),), False
    if not isinstance(batch, list) or not batch:
        raise ValidationException("batch_input must be a non-empty list")
    if len(batch) > MAX_BATCH:
        raise ValidationException(f"batch_input holds at most {MAX_BATCH} items")
    items: list[Any] = []
    for entry in batch:
        if not isinstance(entry, dict):
            items.append(ValidationException("a batch item must be an object"))
            continue
        try:
            items.append(fields(entry))
        except KMSError as error:
            items.append(error)
    return tuple(items), True


CONVERGENT = (
    "keycask does not offer convergent encryption: the same plaintext under the same "
    "context would give the same ciphertext, which tells an observer that two values "
    "are equal; keycask's ciphertexts are always randomized"
)


def common(doc: Doc) -> tuple[str | None, str | None]:
    """(associated_data, context) of an item; the context as canonical
    base64 of its bytes, so one context has one encryption context."""
    if doc.get("nonce") not in (None, ""):
        raise ValidationException(f"nonce is not supported: {CONVERGENT}")
    text = string_field(doc, "context")
    context = None
    if text:
        try:
            raw = pybase64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationException("failed to base64-decode context") from None
        context = pybase64.b64encode_as_string(raw) if raw else None
    return string_field(doc, "associated_data"), context


def encrypt_item(doc: Doc) -> transit_requests.EncryptItem:
    associated, context = common(doc)
    text = string_field(doc, "plaintext")
    if text is None:
        raise ValidationException("missing plaintext to encrypt")
    try:
        plaintext = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationException("failed to base64-decode plaintext") from None
    return transit_requests.EncryptItem(
        plaintext, associated, int_field(doc, "key_version"), context
    )


def decrypt_item(doc: Doc) -> transit_requests.DecryptItem:
    associated, context = common(doc)
    text = string_field(doc, "ciphertext")
    if not text:
        raise ValidationException("missing ciphertext to decrypt")
    return transit_requests.DecryptItem(text, associated, context)


def encrypt(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    items, batch = batch_items(doc, encrypt_item)
    return transit_requests.TransitEncryptRequest(mount, name, items, batch)


def decrypt(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    items, batch = batch_items(doc, decrypt_item)
    return transit_requests.TransitDecryptRequest(mount, name, items, batch)


def token(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    return TokenRequest(token_of(request) or "")


def nothing(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    return NoRequest()


# -- encoding --


def date(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pem(der: bytes) -> str:
    body = "\n".join(textwrap.wrap(pybase64.b64encode_as_string(der), 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"


def key_info(result: transit_requests.TransitKeyResult) -> Doc:
    key = result.key
    spec = key.key_spec
    symmetric = spec is KeySpec.SYMMETRIC_DEFAULT
    signing = result.type.startswith(("ecdsa", "ed25519", "rsa"))
    if symmetric or spec.is_hmac:
        versions: dict[str, Any] = {}
        floor = result.settings.min_available_version
        for v in key.versions:
            if floor <= v.version <= key.current_version:
                created = v.rotated if v.rotated is not None else key.created
                versions[str(v.version)] = int(created.timestamp())
    else:
        public = result.public_key or b""
        if spec is KeySpec.ECC_NIST_EDWARDS25519:
            shown = pybase64.b64encode_as_string(public[-32:])
        else:
            shown = pem(public)
        versions = {"1": {"creation_time": date(key.created), "name": "", "public_key": shown}}
    latest = key.current_version or 1
    settings = result.settings
    return {
        "data": {
            "name": result.name,
            "type": result.type,
            "keys": versions,
            "latest_version": latest,
            "min_available_version": settings.min_available_version,
            "min_decryption_version": settings.min_decryption_version,
            "min_encryption_version": settings.min_encryption_version,
            "deletion_allowed": settings.deletion_allowed,
            "exportable": False,
            "allow_plaintext_backup": False,
            "derived": settings.derived,
            "convergent_encryption": False,
            "auto_rotate_period": (key.rotation_period_days or 0) * 86400,
            "imported_key": False,
            "supports_encryption": symmetric,
            "supports_decryption": symmetric,
            "supports_derivation": symmetric,
            "supports_signing": signing or spec.is_hmac,
            "keycask_key_arn": key.arn,
        }
    }


def listed(result: transit_requests.TransitListResult) -> Doc:
    return {"data": {"keys": list(result.names)}}


def error_text(error: KMSError) -> str:
    if isinstance(error, InvalidCiphertextException):
        return "invalid ciphertext: unable to decrypt"
    return error.message or error.code


def items_out(result: transit_requests.ItemsResult) -> Doc:
    shown: list[Doc] = []
    for item in result.items:
        if isinstance(item, KMSError):
            shown.append({"error": error_text(item)})
        else:
            shown.append(item)
    if result.batch:
        return {"data": {"batch_results": shown}}
    return {"data": shown[0]}


def empty(result: object) -> Doc | None:
    return None


def rewrap(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    items, batch = batch_items(doc, decrypt_item)
    return transit_requests.TransitRewrapRequest(mount, name, items, batch)


def datakey(with_plaintext: bool) -> Callable[[str, str, Doc, HttpRequest], object]:
    def decode(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
        associated, context = common(doc)
        bits = int_field(doc, "bits")
        return transit_requests.TransitDataKeyRequest(
            mount, name, with_plaintext, 256 if bits is None else bits, associated, context
        )

    return decode


def random(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    count = int_field(doc, "bytes")
    if doc.get("source") not in (None, "", "platform"):
        raise ValidationException("keycask's random bytes come from its own source only")
    fmt = string_field(doc, "format", "base64") or "base64"
    return transit_requests.TransitRandomRequest(mount, 32 if count is None else count, fmt)


def _input(doc: Doc) -> bytes:
    text = string_field(doc, "input")
    if text is None:
        raise ValidationException("missing input")
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationException("unable to decode input as base64") from None


def _signing_options(doc: Doc, *, mac: bool) -> dict[str, Any]:
    if doc.get("context") not in (None, ""):
        raise ValidationException(
            "context is for derived keys, which keycask offers for aes256-gcm96 only"
        )
    marshaling = string_field(doc, "marshaling_algorithm", "asn1") or "asn1"
    if marshaling not in ("asn1", "jws"):
        raise ValidationException(f"unsupported marshaling algorithm {marshaling[:16]!r}")
    if doc.get("salt_length") not in (None, "", "auto", "hash"):
        raise ValidationException("keycask's PSS salt is as long as the hash (salt_length hash)")
    algorithm_field = "algorithm" if mac else "hash_algorithm"
    # Vault's hmac also takes the algorithm as hash_algorithm's sibling "algorithm".
    hash_algorithm = string_field(doc, algorithm_field) or string_field(doc, "hash_algorithm")
    return {
        "hash_algorithm": hash_algorithm or transit_sign.DEFAULT_HASH,
        "prehashed": bool(bool_field(doc, "prehashed")),
        "signature_algorithm": string_field(doc, "signature_algorithm", "pss") or "pss",
        "mac": mac,
        "jws": marshaling == "jws",
    }


def signing(*, mac: bool) -> Callable[[str, str, Doc, HttpRequest], object]:
    def decode(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
        options = _signing_options(doc, mac=mac)
        items, batch = batch_items(doc, lambda entry: transit_sign.SignItem(_input(entry)))
        return transit_sign.TransitSignRequest(mount, name, items, batch, **options)

    return decode


def _verify_item(doc: Doc) -> transit_sign.SignItem:
    signature = string_field(doc, "signature")
    mac = string_field(doc, "hmac")
    if (signature is None) == (mac is None):
        raise ValidationException("give one of signature or hmac")
    return transit_sign.SignItem(_input(doc), signature if signature is not None else mac)


def verifying(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    first = doc.get("batch_input")
    sample = first[0] if isinstance(first, list) and first and isinstance(first[0], dict) else doc
    mac = sample.get("hmac") is not None
    options = _signing_options(doc, mac=mac)
    if mac and string_field(doc, "algorithm") is None:
        options["hash_algorithm"] = string_field(doc, "hash_algorithm") or transit_sign.DEFAULT_HASH
    items, batch = batch_items(doc, _verify_item)
    return transit_sign.TransitSignRequest(mount, name, items, batch, **options)


NEVER_LEAVE = "keycask keys never leave keycask: export, backup and restore are not supported"
BYOK = (
    "importing key material through transit is not supported: use the AWS door's "
    "GetParametersForImport and ImportKeyMaterial, then give the key a transit alias"
)


def refused(why: str) -> Callable[[str, str, Doc, HttpRequest], object]:
    def decode(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
        raise ValidationException(why)

    return decode


def hashing(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    algorithm = string_field(doc, "algorithm") or "sha2-256"
    fmt = string_field(doc, "format", "hex") or "hex"
    return transit_sign.HashRequest(mount, _input(doc), algorithm, fmt)


def list_mounts(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    return transit_mounts.ListMountsRequest()


def enable_mount(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    kind = string_field(doc, "type")
    if not kind:
        raise ValidationException("missing type: keycask mounts transit engines")
    description = string_field(doc, "description") or ""
    return transit_mounts.EnableMountRequest(transit_mounts.check_mount_path(name), kind,
                                             description)  # fmt: skip


def disable_mount(mount: str, name: str, doc: Doc, request: HttpRequest) -> object:
    return transit_mounts.MountPathRequest(name)


def mounts_out(result: transit_mounts.MountsResult) -> Doc:
    shown = {
        m.path + "/": {
            "type": "transit",
            "description": m.description,
            "accessor": m.accessor,
            "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": False},
            "local": False,
            "seal_wrap": False,
            "external_entropy_access": False,
            "options": None,
            "plugin_version": "",
        }
        for m in result.mounts
    }
    # Vault answers the mounts both under data and at the top level.
    return {**shown, "data": shown}
