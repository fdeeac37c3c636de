"""Seals guard the root key that opens the barrier's keyring."""

from __future__ import annotations

from typing import Protocol

from keycask.crypto import KeyMaterial
from keycask.seal.passphrase import PassphraseSeal


class Seal(Protocol):
    """Gives the root key, or raises ``SealError``."""

    name: str

    def root_key(self) -> KeyMaterial: ...


__all__ = ["PassphraseSeal", "Seal"]
