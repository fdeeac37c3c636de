"""The Google Cloud KMS door's wire: resource names, JSON bodies as the
Cloud KMS v1 REST reference names their fields (camelCase; enums as names
or, as the google-cloud-kms REST transport sends them, numbers; bytes in
base64; int64 CRC32C values as strings), CRC32C integrity fields, and the
resources rendered back (``service/core/gcp_requests.py``'s results).

Every CRC32C a request carries is checked against the bytes it covers
before anything is done (a mismatch is INVALID_ARGUMENT, Cloud KMS's
answer); an answer fills the CRC32C fields of what it returns and says
which of the request's it verified.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import google_crc32c
import orjson
import pybase64

from keycask.errors import (
    KMSInvalidStateException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.service.core.gcp_requests import (
    DEFAULT_DESTROY_SCHEDULED,
    DESTROY_SCHEDULED,
    DESTROYED,
    DISABLED,
    ENABLED,
    MAX_DESTROY_SCHEDULED,
    MIN_DESTROY_SCHEDULED,
    SYMMETRIC,
    CreateKeyRequest,
    CreateRingRequest,
    DecryptRequest,
    EncryptRequest,
    KeyName,
    KeyRequest,
    ListRequest,
    LocationName,
    LocationRequest,
    RandomRequest,
    RingName,
    RingRequest,
    Rotation,
    UpdateKeyRequest,
    UpdateVersionRequest,
    VersionRequest,
)
from keycask.service.doors.gcp_enums import ALGORITHMS, PROTECTION_LEVELS, PURPOSES

Doc = dict[str, Any]
Query = Mapping[str, list[str]]

# Cloud KMS's limits: 64 KiB of plaintext or additional authenticated data,
# and a ciphertext at most 64 KiB larger than its plaintext.
MAX_PLAINTEXT: Final = 65536
MAX_AAD: Final = 65536
MAX_CIPHERTEXT: Final = 2 * 65536

# Resource id syntax: Cloud KMS's own (key ring and crypto key ids), a
# project id's (6 to 30 lower-case letters, digits and hyphens, starting
# with a letter), a location ("global" or a region's name: us-east-1,
# europe-west1, ...; keycask's region of that name).
_ID = re.compile(r"[a-zA-Z0-9_-]{1,63}", re.ASCII)
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", re.ASCII)
LOCATION = re.compile(r"global|(?:[a-z]+-){1,3}[a-z]*[0-9]{1,2}", re.ASCII)
# A region's name is at most this long (SigV4's scope, auth/sigv4.py).
_LOCATION_MAX = 32
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}", re.ASCII)
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}", re.ASCII)

# -- names --


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if pattern.fullmatch(value) is None:
        raise ValidationException(
            f"Resource name {what} {value[:64]!r} is malformed: it does not match {pattern.pattern}"
        )
    return value


def _short(location: str) -> str:
    if len(location) > _LOCATION_MAX:
        raise ValidationException(
            f"Resource name location {location[:64]!r} is malformed: a location is global "
            f"or a region's name, at most {_LOCATION_MAX} characters"
        )
    return location


def location_name(params: Mapping[str, str]) -> LocationName:
    return LocationName(
        _check(_PROJECT, params["project"], "project"),
        _check(LOCATION, _short(params["location"]), "location"),
    )


def ring_name(params: Mapping[str, str], ring: str | None = None) -> RingName:
    parent = location_name(params)
    ring = params["ring"] if ring is None else ring
    return RingName(parent.project, parent.location, _check(_ID, ring, "key ring id"))


def key_name(params: Mapping[str, str], key: str | None = None) -> KeyName:
    ring = ring_name(params)
    key = params["key"] if key is None else key
    return KeyName(ring.project, ring.location, ring.ring, _check(_ID, key, "crypto key id"))


def version_number(params: Mapping[str, str]) -> int:
    raw = params["version"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise ValidationException(
            f"Resource name crypto key version {raw[:64]!r} is malformed: "
            "a version is a positive whole number"
        )
    return int(raw)


# -- fields --


def body(raw: bytes) -> Doc:
    if not raw:
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationException("Invalid JSON payload received.") from None
    if not isinstance(doc, dict):
        raise ValidationException("Invalid JSON payload received: not an object.")
    return doc


def _one(query: Query, name: str) -> str | None:
    values = query.get(name)
    return None if not values else values[-1]


def _bytes(doc: Doc, name: str, limit: int) -> bytes:
    value = doc.get(name)
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise ValidationException(f"Invalid value at '{name}': expected base64 bytes.")
    try:
        data = pybase64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationException(f"Invalid value at '{name}' (TYPE_BYTES): bad base64.") from None
    if len(data) > limit:
        raise ValidationException(
            f"The {name} field must be at most {limit} bytes, got {len(data)}."
        )
    return data


def _crc(doc: Doc, name: str) -> int | None:
    """An Int64Value CRC32C (a JSON string or number); None if absent."""
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationException(f"Invalid value at '{name}' (TYPE_INT64).")
    try:
        number = int(value)
    except ValueError:
        raise ValidationException(f"Invalid value at '{name}' (TYPE_INT64): {value!r}.") from None
    if not 0 <= number < 2**32:
        raise ValidationException(f"Invalid value at '{name}': not a CRC32C.")
    return number


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


def _verify(doc: Doc, field: str, data: bytes, data_field: str) -> bool:
    """Whether the request carried ``field`` (then it matched ``data``)."""
    expected = _crc(doc, field)
    if expected is None:
        return False
    if crc32c(data) != expected:
        raise ValidationException(
            f"The checksum in field {_snake(field)} did not match the data in field "
            f"{_snake(data_field)}."
        )
    return True


def _snake(name: str) -> str:
    return re.sub(r"([A-Z]+)", lambda m: "_" + m.group(1).lower(), name)


def _enum(value: object, names: Mapping[int, str], what: str) -> str:
    if isinstance(value, bool):
        raise ValidationException(f"Invalid value at '{what}': {value!r}.")
    if isinstance(value, int):
        found = names.get(value)
        if found is None:
            raise ValidationException(f"Invalid value at '{what}' ({value}).")
        return found
    if isinstance(value, str) and value in names.values():
        return value
    raise ValidationException(f"Invalid value at '{what}' ({str(value)[:64]!r}).")


def _page(query: Query) -> tuple[int, str]:
    raw = _one(query, "pageSize") or "0"
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise ValidationException(f"Invalid value at 'page_size' ({raw[:16]!r}).")
    token = _one(query, "pageToken") or ""
    after = ""
    if token:
        try:
            after = pybase64.urlsafe_b64decode(token.encode() + b"==").decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise ValidationException("Invalid page_token.") from None
        # An id, or "~" and a position (an ordered list's, core/gcp_pages.py).
        if not after or not all(c.isalnum() or c in "_-" for c in after.removeprefix("~")):
            raise ValidationException("Invalid page_token.")
    return int(raw), after


def _labels(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 64:
        raise ValidationException("labels must be a map of at most 64 entries.")
    for k, v in value.items():
        if not isinstance(v, str) or _LABEL_KEY.fullmatch(k) is None:
            raise ValidationException(f"Invalid label key {str(k)[:64]!r}.")
        if _LABEL_VALUE.fullmatch(v) is None:
            raise ValidationException(f"Invalid label value {v[:64]!r}.")
    return dict(value)


def _duration(value: object, what: str) -> int:
    """A google.protobuf.Duration in JSON (``"86400s"``), whole seconds."""
    if not isinstance(value, str) or not value.endswith("s"):
        raise ValidationException(f"Invalid value at '{what}': a duration like \"86400s\".")
    number = value[:-1]
    if not number.isascii() or not number.isdigit() or len(number) > 12:
        raise ValidationException(f"Invalid value at '{what}': whole seconds are supported.")
    return int(number)


# -- requests --


def create_ring(params: Mapping[str, str], query: Query, doc: Doc) -> CreateRingRequest:
    ring_id = _one(query, "keyRingId") or ""
    if not ring_id:
        raise ValidationException("key_ring_id is required.")
    ring = ring_name(params, ring_id)
    return CreateRingRequest(ring.parent, ring.ring)


def ring(params: Mapping[str, str], query: Query, doc: Doc) -> RingRequest:
    return RingRequest(ring_name(params))


def list_rings(params: Mapping[str, str], query: Query, doc: Doc) -> ListRequest:
    size, after = _page(query)
    return ListRequest(location_name(params), size, after)


def list_keys(params: Mapping[str, str], query: Query, doc: Doc) -> ListRequest:
    size, after = _page(query)
    return ListRequest(ring_name(params), size, after)


def list_versions(params: Mapping[str, str], query: Query, doc: Doc) -> ListRequest:
    size, after = _page(query)
    return ListRequest(key_name(params), size, after)


def create_key(params: Mapping[str, str], query: Query, doc: Doc) -> CreateKeyRequest:
    key_id = _one(query, "cryptoKeyId") or ""
    if not key_id:
        raise ValidationException("crypto_key_id is required.")
    name = key_name(params, key_id)
    import_only = _import_only(query, doc)
    purpose = _enum(doc.get("purpose", 0), PURPOSES, "purpose")
    if purpose == "CRYPTO_KEY_PURPOSE_UNSPECIFIED":
        raise ValidationException("The request must specify a valid purpose.")
    template = doc.get("versionTemplate") or {}
    if not isinstance(template, dict):
        raise ValidationException("Invalid value at 'version_template'.")
    algorithm = _enum(template.get("algorithm", 0), ALGORITHMS, "version_template.algorithm")
    if algorithm == "CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED":
        if purpose != "ENCRYPT_DECRYPT":
            raise ValidationException(
                f"A version_template.algorithm is required for purpose {purpose}."
            )
        algorithm = SYMMETRIC
    level = _enum(
        template.get("protectionLevel", 0), PROTECTION_LEVELS, "version_template.protection_level"
    )
    if level == "PROTECTION_LEVEL_UNSPECIFIED":
        level = "SOFTWARE"
    destroy = DEFAULT_DESTROY_SCHEDULED
    if doc.get("destroyScheduledDuration") is not None:
        destroy = _duration(doc["destroyScheduledDuration"], "destroy_scheduled_duration")
        if not MIN_DESTROY_SCHEDULED <= destroy <= MAX_DESTROY_SCHEDULED:
            raise ValidationException(
                "destroy_scheduled_duration must be from 24 hours to 120 days."
            )
    rotation = None
    if doc.get("rotationPeriod") is not None or doc.get("nextRotationTime") is not None:
        rotation = _rotation(doc)
    for unserved in ("cryptoKeyBackend", "keyAccessJustificationsPolicy"):
        if doc.get(unserved):
            raise UnsupportedOperationException(
                f"keycask's Cloud KMS door does not serve {_snake(unserved)} yet"
            )
    return CreateKeyRequest(
        name.parent,
        name.key,
        purpose,
        algorithm,
        level,
        _labels(doc.get("labels")),
        destroy,
        rotation,
        import_only,
    )


def _import_only(query: Query, doc: Doc) -> bool:
    """importOnly with skipInitialVersionCreation: a key for imported
    material (Origin EXTERNAL), with no version until one is imported.
    Either alone is refused: an importOnly key starts with no version, and
    any other keycask key has its material from the start."""
    skip = (_one(query, "skipInitialVersionCreation") or "false").lower()
    if skip not in ("true", "false"):
        raise ValidationException(
            f"Invalid value at 'skip_initial_version_creation' ({skip[:16]!r})."
        )
    import_only = doc.get("importOnly", False)
    if not isinstance(import_only, bool):
        raise ValidationException("Invalid value at 'crypto_key.import_only': a boolean.")
    if import_only and skip != "true":
        raise ValidationException(
            "An import_only CryptoKey must be created with skip_initial_version_creation: "
            "its versions are imported (cryptoKeyVersions.import)."
        )
    if skip == "true" and not import_only:
        raise KMSInvalidStateException(
            "keycask makes a crypto key that is not import_only with its first version (its "
            "keycask key has material from the start): skip_initial_version_creation is "
            "served with import_only: true, for a key whose versions are imported."
        )
    return import_only


def _timestamp(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValidationException(f"Invalid value at '{what}': an RFC 3339 time.")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationException(f"Invalid value at '{what}': an RFC 3339 time.") from None
    if when.tzinfo is None:
        raise ValidationException(f"Invalid value at '{what}': the time needs its offset.")
    return when


def _rotation(doc: Doc) -> Rotation:
    period = doc.get("rotationPeriod")
    seconds = None if period in (None, "") else _duration(period, "rotation_period")
    when = doc.get("nextRotationTime")
    return Rotation(seconds, None if when in (None, "") else _timestamp(when, "next_rotation_time"))


def key(params: Mapping[str, str], query: Query, doc: Doc) -> KeyRequest:
    return KeyRequest(key_name(params))


def update_key(params: Mapping[str, str], query: Query, doc: Doc) -> UpdateKeyRequest:
    mask = [m for m in (_one(query, "updateMask") or "").split(",") if m]
    if not mask:
        raise ValidationException("update_mask is required.")
    labels = rotation = None
    for path in mask:
        if path == "labels":
            labels = _labels(doc.get("labels"))
        elif path in ("rotationPeriod", "rotation_period", "nextRotationTime",
                      "next_rotation_time"):  # fmt: skip
            rotation = _rotation(doc)
        else:
            raise ValidationException(f"Unsupported update_mask path {path[:64]!r}.")
    if rotation is not None and not {"rotationPeriod", "rotation_period"} & set(mask):
        rotation = Rotation(None, rotation.next_time, keep_period=True)
    return UpdateKeyRequest(key_name(params), labels, rotation)


def version(params: Mapping[str, str], query: Query, doc: Doc) -> VersionRequest:
    return VersionRequest(key_name(params), version_number(params))


_STATES: Final = {0: "CRYPTO_KEY_VERSION_STATE_UNSPECIFIED", 5: "PENDING_GENERATION",
                  1: ENABLED, 2: DISABLED, 3: DESTROYED, 4: DESTROY_SCHEDULED,
                  6: "PENDING_IMPORT", 7: "IMPORT_FAILED", 8: "GENERATION_FAILED",
                  9: "PENDING_EXTERNAL_DESTRUCTION", 10: "EXTERNAL_DESTRUCTION_FAILED"}  # fmt: skip


def update_version(params: Mapping[str, str], query: Query, doc: Doc) -> UpdateVersionRequest:
    mask = [m for m in (_one(query, "updateMask") or "").split(",") if m]
    if mask != ["state"]:
        raise ValidationException(
            'update_mask must be exactly "state": a CryptoKeyVersion\'s state is all '
            "that can be updated."
        )
    state = _enum(doc.get("state", 0), _STATES, "crypto_key_version.state")
    return UpdateVersionRequest(key_name(params), version_number(params), state)


def encrypt(params: Mapping[str, str], query: Query, doc: Doc) -> EncryptRequest:
    name = key_name(params)
    number = version_number(params) if "version" in params else None
    plaintext = _bytes(doc, "plaintext", MAX_PLAINTEXT)
    aad = _bytes(doc, "additionalAuthenticatedData", MAX_AAD)
    verified = (
        _verify(doc, "plaintextCrc32c", plaintext, "plaintext"),
        _verify(doc, "additionalAuthenticatedDataCrc32c", aad, "additionalAuthenticatedData"),
    )
    return EncryptRequest(name, number, plaintext, aad, verified)


def decrypt(params: Mapping[str, str], query: Query, doc: Doc) -> DecryptRequest:
    name = key_name(params)
    ciphertext = _bytes(doc, "ciphertext", MAX_CIPHERTEXT)
    if not ciphertext:
        raise ValidationException("ciphertext is required.")
    aad = _bytes(doc, "additionalAuthenticatedData", MAX_AAD)
    _verify(doc, "ciphertextCrc32c", ciphertext, "ciphertext")
    _verify(doc, "additionalAuthenticatedDataCrc32c", aad, "additionalAuthenticatedData")
    return DecryptRequest(name, ciphertext, aad)


def random(params: Mapping[str, str], query: Query, doc: Doc) -> RandomRequest:
    length = doc.get("lengthBytes", 0)
    if isinstance(length, bool) or not isinstance(length, int) or not 8 <= length <= 1024:
        raise ValidationException("length_bytes must be from 8 to 1024.")
    level = _enum(doc.get("protectionLevel", 0), PROTECTION_LEVELS, "protection_level")
    if level not in ("PROTECTION_LEVEL_UNSPECIFIED", "SOFTWARE", "HSM"):
        raise ValidationException(f"protection_level {level} is not valid here.")
    return RandomRequest(location_name(params), length, "HSM" if level == "HSM" else "SOFTWARE")


def primary(params: Mapping[str, str], query: Query, doc: Doc) -> VersionRequest:
    value = doc.get("cryptoKeyVersionId")
    if not isinstance(value, str) or not value:
        raise ValidationException("crypto_key_version_id is required.")
    return VersionRequest(key_name(params), version_number({"version": value}))


def list_locations(params: Mapping[str, str], query: Query, doc: Doc) -> ListRequest:
    project = _check(_PROJECT, params["project"], "project")
    return ListRequest(LocationName(project, "global"), 0)


def location(params: Mapping[str, str], query: Query, doc: Doc) -> LocationRequest:
    return LocationRequest(location_name(params))


# Shared with the door's other codecs (gcp_crypto_codec.py, gcp_iam_codec.py).
bytes_field = _bytes
verify_crc = _verify
enum_field = _enum
one = _one
