"""Seals guard the root key that opens the barrier's keyring."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from keycask.crypto import KeyMaterial
from keycask.errors import SealError
from keycask.seal import registry, sealfile
from keycask.seal.passphrase import PassphraseSeal
from keycask.seal.types import SealType, Secret

SEAL_FILE = "seal.json"
# Written by a rekey before the keyring moves to the new root; see service/sealing.py.
NEXT_SEAL_FILE = "seal.next.json"
# A rekey started but not yet verified: never tried when unsealing (the
# current seal stays authoritative until the operators prove they hold the new
# secret), kept across restarts until verified or cancelled.
REKEY_SEAL_FILE = "seal.rekey.json"
SEAL_TYPES = tuple(registry.SEAL_TYPES)


class Seal(Protocol):
    """Gives the root key, or raises ``SealError``."""

    name: str

    def root_key(self) -> KeyMaterial: ...


def seal_type(directory: Path, filename: str = SEAL_FILE) -> str | None:
    """The type a seal file names, or None when there is no such file."""
    path = Path(directory) / filename
    if not path.exists():
        return None
    document = sealfile.read(path, missing=f"no {path}", invalid=f"{path} is not a seal file")
    kind = document.get("type")
    if kind not in SEAL_TYPES:
        raise SealError(f"{path} names an unknown seal type {kind!r}")
    return str(kind)


__all__ = [
    "NEXT_SEAL_FILE",
    "REKEY_SEAL_FILE",
    "SEAL_FILE",
    "SEAL_TYPES",
    "PassphraseSeal",
    "Seal",
    "SealType",
    "Secret",
    "registry",
    "seal_type",
]
