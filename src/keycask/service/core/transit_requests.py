"""Typed requests and results of Vault Transit's operations
(``core/transit.py``, ``core/transit_sign.py``), built by the Vault door's
codec (``doors/vault_codec.py``) once it has checked every field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from keycask.errors import KMSError
from keycask.keys.model import Key

DEFAULT_TYPE = "aes256-gcm96"


@dataclass(frozen=True, slots=True)
class TransitKeyRequest:
    mount: str
    name: str


@dataclass(frozen=True, slots=True)
class TransitCreateRequest:
    mount: str
    name: str
    type: str = DEFAULT_TYPE
    derived: bool = False


@dataclass(frozen=True, slots=True)
class TransitListRequest:
    mount: str


@dataclass(frozen=True, slots=True)
class TransitConfigRequest:
    mount: str
    name: str
    min_decryption_version: int | None = None
    min_encryption_version: int | None = None
    deletion_allowed: bool | None = None
    # Seconds; 0 turns automatic rotation off.
    auto_rotate_period: int | None = None


@dataclass(frozen=True, slots=True)
class TransitTrimRequest:
    mount: str
    name: str
    min_available_version: int


@dataclass(frozen=True, slots=True)
class EncryptItem:
    plaintext: bytes = field(repr=False)
    associated_data: str | None = None
    key_version: int | None = None
    # A derived key's context: canonical base64 of the bytes the caller sent.
    context: str | None = None


@dataclass(frozen=True, slots=True)
class DecryptItem:
    ciphertext: str
    associated_data: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True)
class TransitEncryptRequest:
    mount: str
    name: str
    items: tuple[EncryptItem | KMSError, ...]
    batch: bool


@dataclass(frozen=True, slots=True)
class TransitDecryptRequest:
    mount: str
    name: str
    items: tuple[DecryptItem | KMSError, ...]
    batch: bool


@dataclass(frozen=True, slots=True)
class Settings:
    min_decryption_version: int = 1
    min_encryption_version: int = 0
    deletion_allowed: bool = False
    # Set at creation only (Vault's derived): every use needs a context.
    derived: bool = False
    # Versions below it were trimmed: their material is gone (0: none trimmed).
    min_available_version: int = 0

    def to_doc(self) -> bytes:
        return orjson.dumps(
            {
                "min_decryption_version": self.min_decryption_version,
                "min_encryption_version": self.min_encryption_version,
                "deletion_allowed": self.deletion_allowed,
                "derived": self.derived,
                "min_available_version": self.min_available_version,
            }
        )

    @classmethod
    def from_doc(cls, value: bytes) -> Settings:
        if not value:
            return cls()
        doc = orjson.loads(value)
        return cls(
            int(doc.get("min_decryption_version", 1)),
            int(doc.get("min_encryption_version", 0)),
            bool(doc.get("deletion_allowed", False)),
            bool(doc.get("derived", False)),
            int(doc.get("min_available_version", 0)),
        )


@dataclass(frozen=True, slots=True)
class TransitKeyResult:
    name: str
    type: str
    key: Key
    settings: Settings
    public_key: bytes | None = None  # DER SubjectPublicKeyInfo of an asymmetric key


@dataclass(frozen=True, slots=True)
class TransitListResult:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ItemsResult:
    """One answer per item: a dict of the item's fields, or its error."""

    items: tuple[dict[str, Any] | KMSError, ...]
    batch: bool


@dataclass(frozen=True, slots=True)
class TransitRewrapRequest:
    mount: str
    name: str
    items: tuple[DecryptItem | KMSError, ...]
    batch: bool


@dataclass(frozen=True, slots=True)
class TransitDataKeyRequest:
    mount: str
    name: str
    with_plaintext: bool
    bits: int = 256
    associated_data: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True)
class TransitRandomRequest:
    mount: str
    number_of_bytes: int = 32
    format: str = "base64"
