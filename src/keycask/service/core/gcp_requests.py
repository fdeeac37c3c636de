"""Typed requests and results of the Google Cloud KMS operations
(``core/gcp.py``), built by the Cloud KMS door's codec
(``doors/gcp_codec.py``) once it has checked every field and name.

Why one module of ~520 lines: these are plain frozen shapes with no logic
beyond reading and writing the settings document, and every Cloud KMS
operation module imports several of them; split by method they would be a
dozen files of a few dataclasses each, all importing one another's names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from keycask.errors import NotFoundException
from keycask.keys.model import Key

# Cloud KMS's default destroyScheduledDuration (30 days), in seconds.
DEFAULT_DESTROY_SCHEDULED = 30 * 86400
SYMMETRIC = "GOOGLE_SYMMETRIC_ENCRYPTION"


@dataclass(frozen=True, slots=True)
class LocationName:
    project: str
    location: str

    @property
    def name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"


@dataclass(frozen=True, slots=True)
class RingName:
    project: str
    location: str
    ring: str

    @property
    def parent(self) -> LocationName:
        return LocationName(self.project, self.location)

    @property
    def name(self) -> str:
        return f"{self.parent.name}/keyRings/{self.ring}"


@dataclass(frozen=True, slots=True)
class KeyName:
    project: str
    location: str
    ring: str
    key: str

    @property
    def parent(self) -> RingName:
        return RingName(self.project, self.location, self.ring)

    @property
    def name(self) -> str:
        return f"{self.parent.name}/cryptoKeys/{self.key}"

    @property
    def alias(self) -> str:
        """The keycask alias that names the crypto key's keycask key."""
        return f"alias/gcp/{self.project}/{self.location}/{self.ring}/{self.key}"

    def version_name(self, version: int) -> str:
        return f"{self.name}/cryptoKeyVersions/{version}"

    def version_alias(self, version: int) -> str:
        """The alias of an asymmetric or MAC crypto key's version ``version``:
        version 1 is the crypto key's own keycask key, each later one a key
        of its own, named under the crypto key's alias."""
        return self.alias if version == 1 else f"{self.alias}/{version}"


ENABLED = "ENABLED"
DISABLED = "DISABLED"
DESTROY_SCHEDULED = "DESTROY_SCHEDULED"
DESTROYED = "DESTROYED"
# Cloud KMS's bounds on destroyScheduledDuration: 24 hours to 120 days.
MIN_DESTROY_SCHEDULED = 86400
MAX_DESTROY_SCHEDULED = 120 * 86400


@dataclass(frozen=True, slots=True)
class VersionState:
    """A version's own Cloud KMS state (a version with none is ENABLED):
    ``destroy_time`` when its material goes (DESTROY_SCHEDULED), or went
    (DESTROYED, with ``destroy_event_time``: when the scheduler deleted it)."""

    state: str
    destroy_time: float | None = None
    destroy_event_time: float | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "destroy_time": self.destroy_time,
            "destroy_event_time": self.destroy_event_time,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> VersionState:
        return cls(doc["state"], doc.get("destroy_time"), doc.get("destroy_event_time"))


def version_state(raw: bytes, version: int) -> str:
    """A version's own state in a ``gcp/key/<key id>`` document, read on
    every Encrypt and Decrypt of every door: most documents hold no
    version state at all, and are not parsed."""
    if b'"versions"' not in raw:
        return ENABLED
    found = orjson.loads(raw)["versions"].get(str(version))
    return ENABLED if found is None else str(found["state"])


# The marker of a chosen primary in a ``gcp/key/<key id>`` document: a
# document without it (labels aside) has none, and is not parsed.
_PRIMARY = b'"primary"'


def chosen_primary(raw: bytes) -> int | None:
    """The primary version chosen by updatePrimaryVersion in a
    ``gcp/key/<key id>`` document, None when there is none (the key's
    newest version is its primary)."""
    if _PRIMARY not in raw:
        return None
    found = orjson.loads(raw).get("primary")
    return None if found is None else int(found)


@dataclass(frozen=True, slots=True)
class KeySettings:
    """What Cloud KMS has and AWS KMS has not, for one key: the document at
    ``gcp/key/<key id>`` behind the barrier."""

    name: str
    purpose: str
    algorithm: str
    protection_level: str = "SOFTWARE"
    labels: dict[str, str] = field(default_factory=dict)
    destroy_scheduled_seconds: int = DEFAULT_DESTROY_SCHEDULED
    # Versions whose state is not ENABLED (or was changed), by number.
    versions: dict[int, VersionState] = field(default_factory=dict)
    # An asymmetric or MAC crypto key's versions: each its own keycask key
    # (version N > 1 named by the alias ``KeyName.version_alias(N)``).
    version_count: int = 1
    # The keycask key id of each such version N > 1: a version is looked up
    # by it, never by its alias (``gcp_versions.version_key``).
    version_keys: dict[int, str] = field(default_factory=dict)
    # Imported versions: the import job's name and the import time (epoch
    # seconds), by number (``core/gcp_imports.py``). Its member is named
    # so that ``version_state`` never mistakes it for "versions".
    imports: dict[int, tuple[str, float]] = field(default_factory=dict)
    # A symmetric key's primary version chosen by updatePrimaryVersion (or
    # kept by versions.create); None: the newest version is the primary.
    # Every door seals under it (``crypto.seal_for``), and any other
    # rotation clears it (``rotation.stage_rotation``).
    primary: int | None = None

    def primary_of(self, key: Key) -> int:
        """The version that seals: the chosen one, else the newest."""
        if self.primary is None or self.primary >= key.current_version:
            return key.current_version
        return self.primary

    def to_doc(self) -> bytes:
        doc: dict[str, Any] = {
            "name": self.name,
            "purpose": self.purpose,
            "algorithm": self.algorithm,
            "protection_level": self.protection_level,
            "labels": self.labels,
            "destroy_scheduled_seconds": self.destroy_scheduled_seconds,
        }
        if self.versions:
            doc["versions"] = {str(n): v.to_doc() for n, v in sorted(self.versions.items())}
        if self.version_count != 1:
            doc["version_count"] = self.version_count
        if self.version_keys:
            doc["version_keys"] = {str(n): k for n, k in sorted(self.version_keys.items())}
        if self.imports:
            doc["imports"] = {str(n): list(v) for n, v in sorted(self.imports.items())}
        if self.primary is not None:
            doc["primary"] = self.primary
        return orjson.dumps(doc)

    def state_of(self, version: int) -> VersionState:
        return self.versions.get(version) or VersionState(ENABLED)

    def with_version(self, version: int, state: VersionState) -> KeySettings:
        return dataclasses.replace(self, versions={**self.versions, version: state})

    def with_labels(self, labels: dict[str, str]) -> KeySettings:
        return dataclasses.replace(self, labels=dict(labels))

    @classmethod
    def from_doc(cls, raw: bytes, name: str) -> KeySettings:
        """The stored settings; a key without a document (made by another
        door and aliased into a key ring) shows as a symmetric key."""
        doc: dict[str, Any] = orjson.loads(raw) if raw else {}
        return cls(
            name=doc.get("name", name),
            purpose=doc.get("purpose", "ENCRYPT_DECRYPT"),
            algorithm=doc.get("algorithm", SYMMETRIC),
            protection_level=doc.get("protection_level", "SOFTWARE"),
            labels=dict(doc.get("labels", {})),
            destroy_scheduled_seconds=int(
                doc.get("destroy_scheduled_seconds", DEFAULT_DESTROY_SCHEDULED)
            ),
            versions={int(n): VersionState.from_doc(v) for n, v in doc.get("versions", {}).items()},
            version_count=int(doc.get("version_count", 1)),
            version_keys={int(n): str(k) for n, k in doc.get("version_keys", {}).items()},
            imports={int(n): (str(v[0]), float(v[1])) for n, v in doc.get("imports", {}).items()},
            primary=None if doc.get("primary") is None else int(doc["primary"]),
        )


# -- requests --


@dataclass(frozen=True, slots=True)
class CreateRingRequest:
    parent: LocationName
    ring_id: str


@dataclass(frozen=True, slots=True)
class RingRequest:
    name: RingName


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A list of key rings (parent a LocationName), crypto keys (a
    RingName) or versions (a KeyName); ``after``: the page token's id."""

    parent: LocationName | RingName | KeyName
    page_size: int
    after: str = ""
    # The door's filter and orderBy (None: every item, in the list's order).
    select: Selection | None = None


class Selection(Protocol):
    """A list's filter and order, as the door reads them: on its wire form
    of an item (``doors/gcp_list.py``); the core pages what it keeps
    (``core/gcp_pages.py``)."""

    @property
    def ordered(self) -> bool: ...

    def matches(self, item: Any) -> bool: ...

    def sort(self, items: list[Any]) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class CreateKeyRequest:
    parent: RingName
    key_id: str
    purpose: str
    algorithm: str
    protection_level: str = "SOFTWARE"
    labels: dict[str, str] = field(default_factory=dict)
    destroy_scheduled_seconds: int = DEFAULT_DESTROY_SCHEDULED
    rotation: Rotation | None = None
    # importOnly with skipInitialVersionCreation: a key for imported
    # material, with no version until cryptoKeyVersions.import.
    import_only: bool = False


@dataclass(frozen=True, slots=True)
class Rotation:
    """rotationPeriod (seconds; None: no automatic rotation) and
    nextRotationTime (None: one period from now)."""

    period_seconds: int | None
    next_time: datetime | None = None
    # A patch whose mask names nextRotationTime only: the period stays.
    keep_period: bool = False


@dataclass(frozen=True, slots=True)
class KeyRequest:
    name: KeyName


@dataclass(frozen=True, slots=True)
class UpdateKeyRequest:
    name: KeyName
    labels: dict[str, str] | None = None
    rotation: Rotation | None = None  # None: the mask does not name it


@dataclass(frozen=True, slots=True)
class VersionRequest:
    name: KeyName
    version: int


@dataclass(frozen=True, slots=True)
class UpdateVersionRequest:
    name: KeyName
    version: int
    state: str


@dataclass(frozen=True, slots=True)
class EncryptRequest:
    name: KeyName
    # The version named (``cryptoKeyVersions/N:encrypt``); None: the primary.
    version: int | None
    plaintext: bytes = field(repr=False)
    aad: bytes = field(repr=False, default=b"")
    # Whether the request's plaintext and AAD CRC32Cs were given (and matched).
    verified: tuple[bool, bool] = (False, False)


@dataclass(frozen=True, slots=True)
class DecryptRequest:
    name: KeyName
    ciphertext: bytes
    aad: bytes = field(repr=False, default=b"")


@dataclass(frozen=True, slots=True)
class RandomRequest:
    location: LocationName
    length: int
    protection_level: str = "SOFTWARE"


# -- results --


@dataclass(frozen=True, slots=True)
class RingResult:
    name: str
    created: datetime


@dataclass(frozen=True, slots=True)
class KeyResult:
    name: KeyName
    key: Key
    settings: KeySettings


@dataclass(frozen=True, slots=True)
class VersionResult:
    name: KeyName
    key: Key
    version: int
    settings: KeySettings


@dataclass(frozen=True, slots=True)
class ListResult:
    """A page: key rings, crypto keys or versions, and the id to go on after."""

    items: tuple[RingResult | KeyResult | VersionResult, ...]
    next_after: str | None
    # The whole list is this page (first and last): its size is the total.
    whole: bool = False


@dataclass(frozen=True, slots=True)
class EncryptResult:
    version_name: str
    ciphertext: bytes
    settings: KeySettings
    verified: tuple[bool, bool] = (False, False)


@dataclass(frozen=True, slots=True)
class DecryptResult:
    plaintext: bytes = field(repr=False)
    used_primary: bool = True
    protection_level: str = "SOFTWARE"


@dataclass(frozen=True, slots=True)
class RandomResult:
    data: bytes = field(repr=False)


# -- asymmetric and MAC keys (core/gcp_crypto.py) --


@dataclass(frozen=True, slots=True)
class SignRequest:
    name: KeyName
    version: int
    # Exactly one of data and digest; ``digest_kind``: sha256, sha384 or sha512.
    data: bytes | None = field(repr=False, default=None)
    digest: bytes | None = field(repr=False, default=None)
    digest_kind: str | None = None
    verified: tuple[bool, bool] = (False, False)  # (data, digest) CRC32Cs


@dataclass(frozen=True, slots=True)
class AsymmetricDecryptRequest:
    name: KeyName
    version: int
    ciphertext: bytes
    verified: bool = False


@dataclass(frozen=True, slots=True)
class PublicKeyRequest:
    name: KeyName
    version: int
    format: str = "PEM"  # PEM, DER or NIST_PQC


@dataclass(frozen=True, slots=True)
class MacRequest:
    name: KeyName
    version: int
    data: bytes = field(repr=False)
    mac: bytes | None = None  # macVerify's
    verified: tuple[bool, bool] = (False, False)  # (data, mac) CRC32Cs


@dataclass(frozen=True, slots=True)
class SignResult:
    version_name: str
    signature: bytes
    protection_level: str
    verified: tuple[bool, bool]


@dataclass(frozen=True, slots=True)
class AsymmetricDecryptResult:
    plaintext: bytes = field(repr=False)
    protection_level: str = "SOFTWARE"
    verified: bool = False


@dataclass(frozen=True, slots=True)
class PublicKeyResult:
    version_name: str
    der: bytes
    algorithm: str
    protection_level: str
    format: str
    raw: bytes | None = None  # NIST_PQC: the raw public key


@dataclass(frozen=True, slots=True)
class MacResult:
    version_name: str
    protection_level: str
    verified: tuple[bool, bool]
    mac: bytes | None = None  # macSign's
    success: bool = False  # macVerify's


# -- IAM (core/gcp_iam.py) --


@dataclass(frozen=True, slots=True)
class Binding:
    role: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SetIamPolicyRequest:
    name: KeyName | RingName
    bindings: tuple[Binding, ...]
    etag: str = ""


@dataclass(frozen=True, slots=True)
class TestPermissionsRequest:
    name: KeyName | RingName
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IamPolicyResult:
    bindings: tuple[Binding, ...]
    etag: str


@dataclass(frozen=True, slots=True)
class TestPermissionsResult:
    permissions: tuple[str, ...]


def version_numbers(key: Key, settings: KeySettings) -> list[int]:
    """A crypto key's versions: a symmetric key's rotations; an asymmetric
    or MAC key's keys (one key material each, as in AWS KMS)."""
    if key.key_spec.is_asymmetric or key.key_spec.is_hmac:
        return list(range(1, settings.version_count + 1))
    return [v.version for v in key.versions if v.version <= key.current_version]


def check_version(key: Key, settings: KeySettings, name: KeyName, version: int) -> None:
    if version not in version_numbers(key, settings):
        raise NotFoundException(f"CryptoKeyVersion {name.version_name(version)} not found.")


# -- locations --


@dataclass(frozen=True, slots=True)
class LocationRequest:
    location: LocationName


@dataclass(frozen=True, slots=True)
class LocationsResult:
    locations: tuple[LocationName, ...]
