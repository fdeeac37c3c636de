"""What handlers may use: the key store and the clock."""

from __future__ import annotations

from dataclasses import dataclass

from keycask.keys.keystore import KeyStore
from keycask.ports import Clock


@dataclass(frozen=True, slots=True)
class Deps:
    keys: KeyStore
    clock: Clock
