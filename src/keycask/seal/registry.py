"""Every seal type keycask knows, by name: the one list the service and the
command line consult (a new seal type is added here, and nowhere outside
``seal/``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from keycask.errors import SealError
from keycask.seal.passphrase import PassphraseType
from keycask.seal.pkcs11 import Pkcs11Type
from keycask.seal.shamir import ShamirType
from keycask.seal.types import SealType

_TYPES: tuple[SealType, ...] = (ShamirType(), PassphraseType(), Pkcs11Type())

SEAL_TYPES: Mapping[str, SealType] = MappingProxyType({kind.name: kind for kind in _TYPES})
# What `operator init` makes when no --seal is given.
DEFAULT = _TYPES[0]


def get(name: str) -> SealType:
    """The seal type called ``name``; ``SealError`` for one keycask does not know."""
    found = SEAL_TYPES.get(name)
    if found is None:
        raise SealError(f"unknown seal type {name!r}; use {', '.join(SEAL_TYPES)}")
    return found


def find(name: object) -> SealType | None:
    """The seal type called ``name``, or None (a server's answer may name
    one this client does not know)."""
    return SEAL_TYPES.get(name) if isinstance(name, str) else None
