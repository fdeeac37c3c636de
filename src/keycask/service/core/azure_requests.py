"""The Azure Key Vault door's typed requests and results, and the key's
settings document (``azure/key/<key id>``), for ``service/core/azure.py``
and ``azure_crypto.py``. No wire format here: the door
(``service/doors/azure_codec.py``) decodes Key Vault's JSON into these and
renders the results.

An Azure key NAME in vault VAULT is the keycask key that the alias
``alias/azure/VAULT/NAME`` names (its first version); each later version is
a keycask key of its own, recorded in the first one's settings document.
A version's id is its keycask key's id as 32 hex digits (Key Vault's
version ids are 32 hex digits too); versions are found by the ids the
document records, never by an alias.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from keycask.crypto.material import KeyMaterial
from keycask.keys.model import Key, KeySpec

ALIAS_PREFIX = "alias/azure/"


@dataclass(frozen=True, slots=True)
class KeyRef:
    vault: str
    name: str

    @property
    def alias(self) -> str:
        return f"{ALIAS_PREFIX}{self.vault}/{self.name}"

    def version_alias(self, version: str) -> str:
        """The alias that shows a later version's key to the AWS door."""
        return f"{self.alias}/{version}"


@dataclass(frozen=True, slots=True)
class Notified:
    """The Notify triggers (timeBeforeExpiry, in days) already carried out
    for a version while its exp was ``exp``: a new exp arms them again."""

    exp: float
    days: tuple[int, ...]

    def to_doc(self) -> dict[str, Any]:
        return {"exp": self.exp, "days": list(self.days)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Notified:
        return cls(float(doc["exp"]), tuple(int(d) for d in doc.get("days", ())))

    def covers(self, exp: float, days: int) -> bool:
        return self.exp == exp and days in self.days

    def add(self, exp: float, days: int) -> Notified:
        """With ``days`` carried out for ``exp`` (another exp's are dropped)."""
        kept = self.days if self.exp == exp else ()
        return Notified(exp, (*kept, days))


@dataclass(frozen=True, slots=True)
class Version:
    """One version's Key Vault attributes that AWS KMS has not; its state
    (enabled) is its keycask key's. ``notified``: what the rotation
    policy's Notify action has done for it (``azure_rotation``)."""

    id: str  # the version's keycask key id, 32 hex digits
    created: float
    updated: float
    ops: tuple[str, ...]
    nbf: float | None = None
    exp: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    notified: Notified | None = None

    @property
    def key_id(self) -> uuid.UUID:
        return uuid.UUID(hex=self.id)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "created": self.created,
            "updated": self.updated,
            "ops": list(self.ops),
            "nbf": self.nbf,
            "exp": self.exp,
            "tags": self.tags,
        }
        if self.notified is not None:
            doc["notified"] = self.notified.to_doc()
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Version:
        notified = doc.get("notified")
        return cls(
            str(doc["id"]),
            float(doc["created"]),
            float(doc["updated"]),
            tuple(str(op) for op in doc.get("ops", ())),
            None if doc.get("nbf") is None else float(doc["nbf"]),
            None if doc.get("exp") is None else float(doc["exp"]),
            {str(k): str(v) for k, v in (doc.get("tags") or {}).items()},
            None if notified is None else Notified.from_doc(notified),
        )


@dataclass(frozen=True, slots=True)
class Deleted:
    """A soft-deleted key: when, when its keys' deletion windows end, and
    which versions were enabled (recover enables them again)."""

    date: float
    purge: float
    enabled: tuple[str, ...]

    def to_doc(self) -> dict[str, Any]:
        return {"date": self.date, "purge": self.purge, "enabled": list(self.enabled)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Deleted:
        return cls(float(doc["date"]), float(doc["purge"]), tuple(doc.get("enabled", ())))


# Key Vault's key names (its REST reference: 1-127 letters, digits and '-');
# the door's codec checks requests, restore checks a backup's.
KEY_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
_DURATION = re.compile(r"P(?:(\d{1,4})Y)?(?:(\d{1,5})M)?(?:(\d{1,5})W)?(?:(\d{1,6})D)?")


def duration_days(text: str) -> int | None:
    """An ISO 8601 duration of whole days (``P90D``, ``P1Y``, ``P2M``,
    ``P1W``) in days, a year 365 and a month 30; None if it is not one."""
    match = _DURATION.fullmatch(text)
    if match is None or text == "P":
        return None
    years, months, weeks, days = (int(g) if g else 0 for g in match.groups())
    return years * 365 + months * 30 + weeks * 7 + days


@dataclass(frozen=True, slots=True)
class LifetimeAction:
    action: str  # "Rotate" or "Notify"
    trigger: str  # "timeAfterCreate" or "timeBeforeExpiry"
    duration: str  # ISO 8601, as given

    @property
    def days(self) -> int:
        return duration_days(self.duration) or 0


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    actions: tuple[LifetimeAction, ...]
    expiry: str | None  # expiryTime: a new version's exp, from its creation
    created: float
    updated: float

    def to_doc(self) -> dict[str, Any]:
        return {
            "actions": [[a.action, a.trigger, a.duration] for a in self.actions],
            "expiry": self.expiry,
            "created": self.created,
            "updated": self.updated,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RotationPolicy:
        actions = tuple(LifetimeAction(str(a), str(t), str(d)) for a, t, d in doc["actions"])
        expiry = None if doc.get("expiry") is None else str(doc["expiry"])
        return cls(actions, expiry, float(doc["created"]), float(doc["updated"]))

    def action(self, kind: str) -> LifetimeAction | None:
        return next((a for a in self.actions if a.action == kind), None)


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``azure/key/<first version's key id>`` document: the key's name
    and vault, and its versions, oldest first; ``deleted`` once it is
    soft-deleted."""

    vault: str
    name: str
    versions: tuple[Version, ...]
    deleted: Deleted | None = None
    policy: RotationPolicy | None = None

    def to_doc(self) -> bytes:
        doc: dict[str, Any] = {
            "vault": self.vault,
            "name": self.name,
            "versions": [v.to_doc() for v in self.versions],
        }
        if self.deleted is not None:
            doc["deleted"] = self.deleted.to_doc()
        if self.policy is not None:
            doc["policy"] = self.policy.to_doc()
        return orjson.dumps(doc)

    @classmethod
    def from_doc(cls, raw: bytes) -> Settings | None:
        if not raw:
            return None
        doc = orjson.loads(raw)
        versions = tuple(Version.from_doc(v) for v in doc.get("versions", ()))
        deleted = None if doc.get("deleted") is None else Deleted.from_doc(doc["deleted"])
        policy = None if doc.get("policy") is None else RotationPolicy.from_doc(doc["policy"])
        return cls(str(doc["vault"]), str(doc["name"]), versions, deleted, policy)

    @property
    def latest(self) -> Version:
        return self.versions[-1]

    def find(self, version: str) -> Version | None:
        """Version ``version`` ("": the latest)."""
        if not version:
            return self.latest
        wanted = version.lower()
        for entry in self.versions:
            if entry.id == wanted:
                return entry
        return None

    def replace(self, entry: Version) -> Settings:
        versions = tuple(entry if v.id == entry.id else v for v in self.versions)
        return dataclasses.replace(self, versions=versions)


# -- requests --

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class CreateRequest:
    ref: KeyRef
    base: str  # https://HOST: the vault URL the answer's kid names
    kty: str
    size: int | None
    crv: str | None
    ops: tuple[str, ...] | None
    enabled: bool
    nbf: float | None
    exp: float | None
    tags: dict[str, str]
    public_exponent: int | None = None
    # import: the key spec and the PKCS#8 private key of the JWK sent
    # (keycask.crypto.jwk), used instead of new material.
    material: tuple[KeySpec, KeyMaterial] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class GetRequest:
    ref: KeyRef
    base: str
    version: str = ""


@dataclass(frozen=True, slots=True)
class ListRequest:
    vault: str
    base: str
    max_results: int
    after: str = ""  # the page token: the last name (or version id) of the page before
    ref: KeyRef | None = None  # list versions of this key; None: list keys
    api_version: str = "7.5"
    deleted: bool = False  # list the soft-deleted keys


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    ref: KeyRef
    base: str
    version: str
    enabled: bool | None = None
    nbf: Any = _UNSET  # float | None (None: cleared), or unset
    exp: Any = _UNSET
    ops: tuple[str, ...] | None = None
    tags: dict[str, str] | None = None

    @property
    def sets_nbf(self) -> bool:
        return self.nbf is not _UNSET

    @property
    def sets_exp(self) -> bool:
        return self.exp is not _UNSET


UNSET: Any = _UNSET


@dataclass(frozen=True, slots=True)
class CryptoRequest:
    """sign, verify, encrypt, decrypt, wrapKey, unwrapKey on a key's version."""

    ref: KeyRef
    base: str
    version: str
    operation: str  # the Key Vault operation: "sign", "encrypt", "wrapKey", ...
    algorithm: str
    value: bytes = field(repr=False)
    digest: bytes = field(default=b"", repr=False)  # verify: the digest; value is the signature


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """get (``policy`` None) or update a key's rotation policy."""

    ref: KeyRef
    base: str
    policy: RotationPolicy | None = None


@dataclass(frozen=True, slots=True)
class PolicyResult:
    ref: KeyRef
    base: str
    policy: RotationPolicy | None


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    vault: str
    base: str
    blob: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class BackupResult:
    blob: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RandomRequest:
    count: int


# -- results --


@dataclass(frozen=True, slots=True)
class KeyBundle:
    """A key version as Key Vault shows it."""

    ref: KeyRef
    base: str
    key: Key  # the version's keycask key (its state, spec)
    version: Version
    public_der: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeyItem:
    ref: KeyRef
    key: Key
    version: Version
    deleted: Deleted | None = None


@dataclass(frozen=True, slots=True)
class DeletedBundle:
    """A soft-deleted key as Key Vault shows it (its latest version)."""

    bundle: KeyBundle
    deleted: Deleted


@dataclass(frozen=True, slots=True)
class ListResult:
    base: str
    items: tuple[KeyItem, ...]
    next_after: str | None  # the page token of the next page; None: the last page
    req: ListRequest


@dataclass(frozen=True, slots=True)
class CryptoResult:
    kid: str
    value: bytes = field(repr=False)
    valid: bool | None = None  # verify's answer


@dataclass(frozen=True, slots=True)
class RandomResult:
    value: bytes = field(repr=False)
