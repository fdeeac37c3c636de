"""Keys, their states and aliases as the KMS sees them (no storage, no HTTP).

Why one module: a key, its versions and the aliases that name it share one
document form (``to_doc``/``from_doc``) and one rule for ids (a multi-Region
copy's record id against its public id); split apart, an alias could render
a key's id by a rule the key no longer follows.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from keycask.arn import Arn
from keycask.keys.ids import format_mrk, parse_mrk, record_id


class KeyState(StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PENDING_DELETION = "PendingDeletion"
    PENDING_IMPORT = "PendingImport"
    # Multi-Region keys only (issue 22), all in botocore's KeyState enum.
    # keycask makes a set's changes in one commit, so Creating and Updating
    # are never stored by today's operations; they exist so a document and
    # the state table can name them.
    CREATING = "Creating"
    UPDATING = "Updating"
    PENDING_REPLICA_DELETION = "PendingReplicaDeletion"


class KeyUsage(StrEnum):
    ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
    SIGN_VERIFY = "SIGN_VERIFY"
    GENERATE_VERIFY_MAC = "GENERATE_VERIFY_MAC"
    KEY_AGREEMENT = "KEY_AGREEMENT"
    ENCAPSULATE_DECAPSULATE = "ENCAPSULATE_DECAPSULATE"


class KeySpec(StrEnum):
    SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
    RSA_2048 = "RSA_2048"
    RSA_3072 = "RSA_3072"
    RSA_4096 = "RSA_4096"
    ECC_NIST_P256 = "ECC_NIST_P256"
    ECC_NIST_P384 = "ECC_NIST_P384"
    ECC_NIST_P521 = "ECC_NIST_P521"
    ECC_SECG_P256K1 = "ECC_SECG_P256K1"
    ECC_NIST_EDWARDS25519 = "ECC_NIST_EDWARDS25519"
    HMAC_224 = "HMAC_224"
    HMAC_256 = "HMAC_256"
    HMAC_384 = "HMAC_384"
    HMAC_512 = "HMAC_512"
    ML_DSA_44 = "ML_DSA_44"
    ML_DSA_65 = "ML_DSA_65"
    ML_DSA_87 = "ML_DSA_87"
    ML_KEM_512 = "ML_KEM_512"
    ML_KEM_768 = "ML_KEM_768"
    ML_KEM_1024 = "ML_KEM_1024"

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("RSA_")

    @property
    def is_hmac(self) -> bool:
        return self.value.startswith("HMAC_")

    @property
    def is_asymmetric(self) -> bool:
        return self is not KeySpec.SYMMETRIC_DEFAULT and not self.is_hmac


_RSA_USAGES = (KeyUsage.ENCRYPT_DECRYPT, KeyUsage.SIGN_VERIFY)
_NIST_EC_USAGES = (KeyUsage.SIGN_VERIFY, KeyUsage.KEY_AGREEMENT)
# Which usages AWS KMS allows for each key spec.
KEY_USAGES: dict[KeySpec, tuple[KeyUsage, ...]] = {
    KeySpec.SYMMETRIC_DEFAULT: (KeyUsage.ENCRYPT_DECRYPT,),
    KeySpec.RSA_2048: _RSA_USAGES,
    KeySpec.RSA_3072: _RSA_USAGES,
    KeySpec.RSA_4096: _RSA_USAGES,
    KeySpec.ECC_NIST_P256: _NIST_EC_USAGES,
    KeySpec.ECC_NIST_P384: _NIST_EC_USAGES,
    KeySpec.ECC_NIST_P521: _NIST_EC_USAGES,
    KeySpec.ECC_SECG_P256K1: (KeyUsage.SIGN_VERIFY,),
    KeySpec.ECC_NIST_EDWARDS25519: (KeyUsage.SIGN_VERIFY,),
    KeySpec.HMAC_224: (KeyUsage.GENERATE_VERIFY_MAC,),
    KeySpec.HMAC_256: (KeyUsage.GENERATE_VERIFY_MAC,),
    KeySpec.HMAC_384: (KeyUsage.GENERATE_VERIFY_MAC,),
    KeySpec.HMAC_512: (KeyUsage.GENERATE_VERIFY_MAC,),
    KeySpec.ML_DSA_44: (KeyUsage.SIGN_VERIFY,),
    KeySpec.ML_DSA_65: (KeyUsage.SIGN_VERIFY,),
    KeySpec.ML_DSA_87: (KeyUsage.SIGN_VERIFY,),
    KeySpec.ML_KEM_512: (KeyUsage.ENCAPSULATE_DECAPSULATE,),
    KeySpec.ML_KEM_768: (KeyUsage.ENCAPSULATE_DECAPSULATE,),
    KeySpec.ML_KEM_1024: (KeyUsage.ENCAPSULATE_DECAPSULATE,),
}


SYMMETRIC_DEFAULT_ALGORITHM = "SYMMETRIC_DEFAULT"


def key_arn(region: str, account: str, key_id: str) -> str:
    return str(Arn.key(region, account, key_id))


def alias_arn(region: str, account: str, alias_name: str) -> str:
    return str(Arn.alias(region, account, alias_name))


def iam_root_arn(account: str) -> str:
    """The account's root principal, as key policies name the account."""
    return str(Arn.root(account))


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class Tag:
    tag_key: str
    tag_value: str


class Origin(StrEnum):
    AWS_KMS = "AWS_KMS"
    EXTERNAL = "EXTERNAL"
    # Generated and kept in a PKCS#11 token of a custom key store (issue 19).
    AWS_CLOUDHSM = "AWS_CLOUDHSM"
    # keycask's material and an external key behind an XKS proxy (issue 19).
    EXTERNAL_KEY_STORE = "EXTERNAL_KEY_STORE"


class RotationType(StrEnum):
    AUTOMATIC = "AUTOMATIC"
    ON_DEMAND = "ON_DEMAND"


class ExpirationModel(StrEnum):
    KEY_MATERIAL_EXPIRES = "KEY_MATERIAL_EXPIRES"
    KEY_MATERIAL_DOES_NOT_EXPIRE = "KEY_MATERIAL_DOES_NOT_EXPIRE"


def _opt_ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _opt_dt(value: float | None) -> datetime | None:
    return None if value is None else _dt(value)


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One key material of a key: what ListKeyRotations shows about it.

    The material itself lives apart (``mat/<key id>/<version>``). For
    imported material ``imported`` says whether it is present now (deleted
    or expired material keeps its entry, so the same material can come back).
    """

    version: int
    material_id: str
    rotated: datetime | None = None  # None for the first material
    rotation_type: RotationType | None = None
    imported: bool = True
    expiration_model: ExpirationModel | None = None  # imported material only
    valid_to: datetime | None = None
    description: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "material_id": self.material_id,
            "rotated": _opt_ts(self.rotated),
            "rotation_type": None if self.rotation_type is None else self.rotation_type.value,
            "imported": self.imported,
            "expiration_model": (
                None if self.expiration_model is None else self.expiration_model.value
            ),
            "valid_to": _opt_ts(self.valid_to),
            "description": self.description,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> KeyVersion:
        return cls(
            version=int(doc["version"]),
            material_id=doc["material_id"],
            rotated=_opt_dt(doc["rotated"]),
            rotation_type=None
            if doc["rotation_type"] is None
            else RotationType(doc["rotation_type"]),
            imported=bool(doc["imported"]),
            expiration_model=(
                None
                if doc["expiration_model"] is None
                else ExpirationModel(doc["expiration_model"])
            ),
            valid_to=_opt_dt(doc["valid_to"]),
            description=doc["description"],
        )


# AWS's bounds (Developer Guide): rotation every 90-2560 days, 365 by default;
# at most 25 on-demand rotations per key; deletion after 7-30 days.
DEFAULT_ROTATION_DAYS = 365
MAX_ON_DEMAND_ROTATIONS = 25
DEFAULT_PENDING_WINDOW_DAYS = 30

# What every regional copy of a multi-Region key holds alike (AWS: key id,
# material, key spec, key usage, origin, automatic rotation; keycask adds the
# set's membership and the version bookkeeping that names the material).
# Changed only through KeyStore.stage_set_update, which writes them into every
# copy in one commit. The id itself (``mrk``) is shared too, and never changes.
SHARED_FIELDS: frozenset[str] = frozenset(
    {
        "key_usage",
        "key_spec",
        "origin",
        "current_version",
        "versions",
        "rotation_period_days",
        "next_rotation",
        "on_demand_rotations",
        "last_version",
        "primary_region",
        "regions",
    }
)


@dataclass(frozen=True, slots=True)
class Key:
    """A KMS key's metadata. Key material lives apart, one entry per version.

    ``current_version`` is 0 only for an imported-material key that has never
    received material. ``versions`` lists every material the key has had, in
    order; a version above ``current_version`` is imported material waiting
    for an on-demand rotation.

    A multi-Region key (``mrk`` set) is one regional copy of a set: ``key_id``
    is then its record id (``ids.record_id(mrk, region)``), an internal name
    that keeps grants, usage and the schedule on their UUID paths; callers see
    ``public_id`` (``mrk-...``) instead. Every field in ``SHARED_FIELDS`` is
    the same in every copy of the set.
    """

    key_id: uuid.UUID
    account: str
    region: str
    created: datetime
    description: str
    state: KeyState
    policy: str
    key_usage: KeyUsage = KeyUsage.ENCRYPT_DECRYPT
    key_spec: KeySpec = KeySpec.SYMMETRIC_DEFAULT
    origin: Origin = Origin.AWS_KMS
    current_version: int = 1
    tags: tuple[Tag, ...] = ()
    versions: tuple[KeyVersion, ...] = ()
    rotation_period_days: int | None = None  # None: automatic rotation is off
    next_rotation: datetime | None = None
    on_demand_rotations: int = 0
    deletion_date: datetime | None = None
    # The highest version number ever issued. Numbers are never reused (a
    # deleted pending material's number included): a version number names
    # one material forever, and caches and ciphertexts rely on it.
    last_version: int = 0
    # (principal ARN, unique id) of each user or role the policy named when
    # it was put: a principal deleted and created again under the same name
    # has another id, and the policy does not name it (authz.py).
    policy_principals: tuple[tuple[str, str], ...] = ()
    # An AWS managed key (KeyManager AWS): made by keycask on first use of its
    # alias/aws/<service> alias; its policy lets nobody manage it.
    aws_managed: bool = False
    # Multi-Region keys (issue 22); the defaults are a single-Region key.
    # ``mrk``: the set's 16-byte id. ``regions``: every region holding a copy,
    # the primary's included, sorted. ``pending_window_days``: the deletion
    # window a primary in PendingReplicaDeletion starts when its last replica
    # is gone (it has no deletion date until then).
    mrk: bytes | None = None
    primary_region: str | None = None
    regions: tuple[str, ...] = ()
    pending_window_days: int | None = None
    # A key of a custom key store (issue 19): the store's id, and for an
    # AWS_CLOUDHSM store the token object (its CKA_ID, 32 hex digits) that
    # is the key: keycask holds no material for it.
    custom_key_store_id: str | None = None
    hsm_object: str | None = None
    # A key of an EXTERNAL_KEY_STORE store: the external key's id at the
    # store's XKS proxy (CreateKey's XksKeyId).
    xks_key_id: str | None = None
    # Derived, computed once: every request names the key by its ARN.
    arn: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mrk is not None and self.key_id != record_id(self.mrk, self.region):
            # A copy stored under another id would be unreachable, or worse,
            # shadow another region's copy: a programming error.
            raise ValueError("a multi-Region key's key_id must be its record id")
        object.__setattr__(self, "arn", key_arn(self.region, self.account, self.public_id))

    @property
    def public_id(self) -> str:
        """The key id callers see: the UUID, or ``mrk-`` and 32 hex digits.
        A multi-Region copy's record id (``key_id``) is never shown."""
        return str(self.key_id) if self.mrk is None else format_mrk(self.mrk)

    @property
    def rotates_on_schedule(self) -> bool:
        """Whether keycask may make new material for this key on a schedule:
        only its own material outside custom key stores (AWS's rule).
        Imported material rotates on demand only, and a schedule on such a
        key would seal under material its owner never held."""
        return self.origin is Origin.AWS_KMS and self.custom_key_store_id is None

    @property
    def is_multi_region(self) -> bool:
        return self.mrk is not None

    @property
    def material_owner(self) -> bytes:
        """The 16 bytes a KeyMaterialId is derived with: the key's UUID, or
        a multi-Region set's id, so every copy of the set names its shared
        material alike."""
        return self.key_id.bytes if self.mrk is None else self.mrk

    @property
    def multi_region_type(self) -> str | None:
        """DescribeKey's MultiRegionKeyType: PRIMARY or REPLICA; None for a
        single-Region key."""
        if self.mrk is None:
            return None
        return "PRIMARY" if self.region == self.primary_region else "REPLICA"

    def shared(self) -> dict[str, Any]:
        """The fields every copy of a multi-Region set holds alike."""
        return {name: getattr(self, name) for name in sorted(SHARED_FIELDS)}

    def replace(self, **changes: Any) -> Key:
        return dataclasses.replace(self, **changes)

    def next_version(self) -> int:
        return max(self.last_version, *(v.version for v in self.versions), 0) + 1

    def version(self, number: int) -> KeyVersion | None:
        # Newest first: the current version is nearly always the last one.
        for v in reversed(self.versions):
            if v.version == number:
                return v
        return None

    @property
    def current(self) -> KeyVersion | None:
        return self.version(self.current_version)

    @property
    def pending_rotation(self) -> KeyVersion | None:
        """Imported material waiting for RotateKeyOnDemand to become current."""
        last = self.versions[-1] if self.versions else None
        return last if last is not None and last.version > self.current_version else None

    @property
    def material_present(self) -> bool:
        """Every material the key has made current is here. AWS makes a key
        unusable (PendingImport) while any of them is missing."""
        versions = [v for v in self.versions if v.version <= self.current_version]
        return bool(versions) and all(v.imported for v in versions)

    def settled(self) -> Key:
        """This key in the state its material implies, after material came or
        went. PendingDeletion is the operator's decision and stays; Disabled
        stays while the material is all here."""
        if self.state in (KeyState.PENDING_DELETION, KeyState.PENDING_REPLICA_DELETION):
            return self
        if not self.material_present:
            return self.replace(state=KeyState.PENDING_IMPORT)
        if self.state is KeyState.PENDING_IMPORT:
            return self.replace(state=KeyState.ENABLED)
        return self

    @property
    def expiration_model(self) -> str | None:
        """DescribeKey's ExpirationModel: imported-material keys only, and only
        while their current material is here. AWS omits it after
        DeleteImportedKeyMaterial (or expiry), until material is imported again."""
        if self.origin is not Origin.EXTERNAL:
            return None
        current = self.current
        if current is None or not current.imported or current.expiration_model is None:
            return None
        return current.expiration_model.value

    @property
    def valid_to(self) -> datetime | None:
        """When the earliest present imported material expires (DescribeKey's ValidTo)."""
        dates = [
            v.valid_to
            for v in self.versions
            if v.imported and v.valid_to is not None and v.version <= self.current_version
        ]
        return min(dates) if dates else None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            # An mrk copy stores its public id: an older keycask cannot read
            # it as a UUID and fails loudly instead of misreading the key.
            "key_id": self.public_id,
            "account": self.account,
            "region": self.region,
            "created": _ts(self.created),
            "description": self.description,
            "state": self.state.value,
            "policy": self.policy,
            "key_usage": self.key_usage.value,
            "key_spec": self.key_spec.value,
            "origin": self.origin.value,
            "current_version": self.current_version,
            "tags": [[t.tag_key, t.tag_value] for t in self.tags],
            "versions": [v.to_doc() for v in self.versions],
            "rotation_period_days": self.rotation_period_days,
            "next_rotation": _opt_ts(self.next_rotation),
            "on_demand_rotations": self.on_demand_rotations,
            "deletion_date": _opt_ts(self.deletion_date),
            "last_version": self.last_version,
            "policy_principals": dict(self.policy_principals),
            "aws_managed": self.aws_managed,
        }
        # Written only when set, so a single-Region key's document is byte
        # for byte what it was before multi-Region keys existed.
        if self.mrk is not None:
            doc["primary_region"] = self.primary_region
            doc["regions"] = list(self.regions)
        if self.pending_window_days is not None:
            doc["pending_window_days"] = self.pending_window_days
        if self.custom_key_store_id is not None:
            doc["custom_key_store_id"] = self.custom_key_store_id
        if self.hsm_object is not None:
            doc["hsm_object"] = self.hsm_object
        if self.xks_key_id is not None:
            doc["xks_key_id"] = self.xks_key_id
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Key:
        region = doc["region"]
        mrk = parse_mrk(doc["key_id"])
        window = doc.get("pending_window_days")
        return cls(
            key_id=uuid.UUID(doc["key_id"]) if mrk is None else record_id(mrk, region),
            account=doc["account"],
            region=region,
            created=_dt(doc["created"]),
            description=doc["description"],
            state=KeyState(doc["state"]),
            policy=doc["policy"],
            key_usage=KeyUsage(doc["key_usage"]),
            key_spec=KeySpec(doc["key_spec"]),
            origin=Origin(doc["origin"]),
            current_version=int(doc["current_version"]),
            tags=tuple(Tag(k, v) for k, v in doc["tags"]),
            versions=tuple(KeyVersion.from_doc(v) for v in doc["versions"]),
            rotation_period_days=doc["rotation_period_days"],
            next_rotation=_opt_dt(doc["next_rotation"]),
            on_demand_rotations=int(doc["on_demand_rotations"]),
            deletion_date=_opt_dt(doc["deletion_date"]),
            last_version=int(doc.get("last_version", 0)),
            policy_principals=tuple(sorted((doc.get("policy_principals") or {}).items())),
            aws_managed=bool(doc.get("aws_managed", False)),
            mrk=mrk,
            primary_region=doc.get("primary_region"),
            regions=tuple(doc.get("regions", ())),
            pending_window_days=None if window is None else int(window),
            custom_key_store_id=doc.get("custom_key_store_id"),
            hsm_object=doc.get("hsm_object"),
            xks_key_id=doc.get("xks_key_id"),
        )


@dataclass(frozen=True, slots=True)
class Alias:
    name: str  # "alias/..."
    account: str
    region: str
    # The key's stored id: a multi-Region copy's record id (see Key).
    target: uuid.UUID
    created: datetime
    updated: datetime
    # The multi-Region set the target belongs to, if any: what TargetKeyId shows.
    target_mrk: bytes | None = None

    @property
    def arn(self) -> str:
        return alias_arn(self.region, self.account, self.name)

    @property
    def target_public_id(self) -> str:
        """The target's key id as callers see it (``Key.public_id``)."""
        return str(self.target) if self.target_mrk is None else format_mrk(self.target_mrk)

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "account": self.account,
            "region": self.region,
            # The public id, as in a key's document: a multi-Region target's
            # record id follows from it and the region.
            "target": self.target_public_id,
            "created": _ts(self.created),
            "updated": _ts(self.updated),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Alias:
        region = doc["region"]
        mrk = parse_mrk(doc["target"])
        return cls(
            name=doc["name"],
            account=doc["account"],
            region=region,
            target=uuid.UUID(doc["target"]) if mrk is None else record_id(mrk, region),
            created=_dt(doc["created"]),
            updated=_dt(doc["updated"]),
            target_mrk=mrk,
        )

    @classmethod
    def to_key(cls, name: str, key: Key, created: datetime, updated: datetime) -> Alias:
        """An alias ``name`` naming ``key`` in the key's account and region."""
        return cls(name, key.account, key.region, key.key_id, created, updated, key.mrk)


def default_key_policy(account: str) -> str:
    """The policy AWS attaches when CreateKey is given none: the account's
    root (and so its IAM policies) may do everything with the key."""
    return (
        '{\n  "Version" : "2012-10-17",\n  "Id" : "key-default-1",\n  "Statement" : [ {\n'
        '    "Sid" : "Enable IAM User Permissions",\n    "Effect" : "Allow",\n'
        f'    "Principal" : {{\n      "AWS" : "{iam_root_arn(account)}"\n    }},\n'
        '    "Action" : "kms:*",\n    "Resource" : "*"\n  } ]\n}'
    )
