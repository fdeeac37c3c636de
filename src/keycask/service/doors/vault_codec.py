"""The Vault Transit door's wire (``service/doors/vault_transit.py``): request
bodies into the core's typed transit requests (``service/core/transit.py``)
and its results into Vault's ``{"data": ...}`` answers. Request fields are
checked here, before anything is authorized: a wrong type or bad base64 is
Vault's 400; a bad item of a batch_input becomes that item's error.
"""

from __future__ import annotations

import base64
import binascii
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import InvalidCiphertextException, KMSError, ValidationException
from keycask.keys.model import KeySpec
from keycask.service.core import transit
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
    if isinstance(value, str) and value.isdigit():
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


def create(name: str, doc: Doc, request: HttpRequest) -> object:
    refuse_unsupported(
        doc,
        ("exportable", "allow_plaintext_backup"),
        "keycask keys never leave keycask",
    )
    refuse_unsupported(
        doc,
        ("derived", "convergent_encryption"),
        "keycask does not derive transit keys (yet)",
    )
    return transit.TransitCreateRequest(
        MOUNT, name, string_field(doc, "type", transit.DEFAULT_TYPE) or transit.DEFAULT_TYPE
    )


def key(name: str, doc: Doc, request: HttpRequest) -> object:
    return transit.TransitKeyRequest(MOUNT, name)


def list_request(name: str, doc: Doc, request: HttpRequest) -> object:
    return transit.TransitListRequest(MOUNT)


def config(name: str, doc: Doc, request: HttpRequest) -> object:
    refuse_unsupported(
        doc,
        ("exportable", "allow_plaintext_backup"),
        "keycask keys never leave keycask",
    )
    if doc.get("auto_rotate_period") not in (None, 0, "0", "0s", ""):
        raise ValidationException(
            "auto_rotate_period is not supported yet: use the AWS door's EnableKeyRotation"
        )
    return transit.TransitConfigRequest(
        MOUNT,
        name,
        int_field(doc, "min_decryption_version"),
        int_field(doc, "min_encryption_version"),
        bool_field(doc, "deletion_allowed"),
    )


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


def common(doc: Doc) -> str | None:
    if doc.get("context") not in (None, ""):
        raise ValidationException("context is for derived keys, which keycask does not support yet")
    if doc.get("nonce") not in (None, ""):
        raise ValidationException(
            "nonce is for convergent encryption, which keycask does not support"
        )
    return string_field(doc, "associated_data")


def encrypt_item(doc: Doc) -> transit.EncryptItem:
    associated = common(doc)
    text = string_field(doc, "plaintext")
    if text is None:
        raise ValidationException("missing plaintext to encrypt")
    try:
        plaintext = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationException("failed to base64-decode plaintext") from None
    return transit.EncryptItem(plaintext, associated, int_field(doc, "key_version"))


def decrypt_item(doc: Doc) -> transit.DecryptItem:
    associated = common(doc)
    text = string_field(doc, "ciphertext")
    if not text:
        raise ValidationException("missing ciphertext to decrypt")
    return transit.DecryptItem(text, associated)


def encrypt(name: str, doc: Doc, request: HttpRequest) -> object:
    items, batch = batch_items(doc, encrypt_item)
    return transit.TransitEncryptRequest(MOUNT, name, items, batch)


def decrypt(name: str, doc: Doc, request: HttpRequest) -> object:
    items, batch = batch_items(doc, decrypt_item)
    return transit.TransitDecryptRequest(MOUNT, name, items, batch)


def token(name: str, doc: Doc, request: HttpRequest) -> object:
    return TokenRequest(token_of(request) or "")


def nothing(name: str, doc: Doc, request: HttpRequest) -> object:
    return NoRequest()


# -- encoding --


def date(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pem(der: bytes) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"


def key_info(result: transit.TransitKeyResult) -> Doc:
    key = result.key
    spec = key.key_spec
    symmetric = spec is KeySpec.SYMMETRIC_DEFAULT
    signing = result.type.startswith(("ecdsa", "ed25519", "rsa"))
    if symmetric or spec.is_hmac:
        versions: dict[str, Any] = {}
        for v in key.versions:
            if v.version <= key.current_version:
                created = v.rotated if v.rotated is not None else key.created
                versions[str(v.version)] = int(created.timestamp())
    else:
        public = result.public_key or b""
        if spec is KeySpec.ECC_NIST_EDWARDS25519:
            shown = base64.b64encode(public[-32:]).decode("ascii")
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
            "min_available_version": 0,
            "min_decryption_version": settings.min_decryption_version,
            "min_encryption_version": settings.min_encryption_version,
            "deletion_allowed": settings.deletion_allowed,
            "exportable": False,
            "allow_plaintext_backup": False,
            "derived": False,
            "convergent_encryption": False,
            "auto_rotate_period": 0,
            "imported_key": False,
            "supports_encryption": symmetric,
            "supports_decryption": symmetric,
            "supports_derivation": False,
            "supports_signing": signing or spec.is_hmac,
            "keycask_key_arn": key.arn,
        }
    }


def listed(result: transit.TransitListResult) -> Doc:
    return {"data": {"keys": list(result.names)}}


def error_text(error: KMSError) -> str:
    if isinstance(error, InvalidCiphertextException):
        return "invalid ciphertext: unable to decrypt"
    return error.message or error.code


def items_out(result: transit.ItemsResult) -> Doc:
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
