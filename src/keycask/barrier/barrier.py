"""Every value at rest goes through here.

Format ``0x01 | term (4) | nonce (12) | ciphertext+tag`` with AAD ``format |
term | path``: storage is untrusted, and a value edited, truncated or copied to
another path fails to authenticate.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from keycask.barrier.keyring import KEYRING_PATH, Keyring
from keycask.crypto import AuthenticationFailed, KeyMaterial, open_sealed, seal
from keycask.errors import BarrierError, SealError
from keycask.ports import Delete, Put, Storage, Write

_FORMAT = 0x01
_PREFIX = struct.Struct(">BI")


@dataclass(frozen=True, slots=True)
class Versioned:
    value: bytes
    revision: int


class Barrier:
    def __init__(self, storage: Storage, keyring: Keyring) -> None:
        self._storage = storage
        self._keyring = keyring

    @classmethod
    async def open(cls, storage: Storage, root: KeyMaterial) -> Barrier:
        """Open the keyring with the root key, creating it on first start."""
        entry = await storage.get(KEYRING_PATH)
        if entry is None:
            keyring = Keyring.new()
            await storage.commit([Put(KEYRING_PATH, keyring.seal_with(root), expect=0)])
        else:
            keyring = Keyring.open_with(root, entry.value)
        return cls(storage, keyring)

    @property
    def storage(self) -> Storage:
        return self._storage

    def encrypt(self, path: str, plaintext: bytes) -> bytes:
        term, key = self._keyring.active()
        prefix = _PREFIX.pack(_FORMAT, term)
        return prefix + seal(key, plaintext, aad=prefix + path.encode())

    def decrypt(self, path: str, stored: bytes) -> bytes:
        if len(stored) < _PREFIX.size or stored[0] != _FORMAT:
            raise BarrierError(f"value at {path!r} is not a barrier value")
        prefix = stored[: _PREFIX.size]
        _, term = _PREFIX.unpack(prefix)
        key = self._keyring.terms.get(term)
        if key is None:
            raise BarrierError(f"value at {path!r} names unknown barrier term {term}")
        try:
            return open_sealed(key, stored[_PREFIX.size :], aad=prefix + path.encode())
        except AuthenticationFailed:
            raise BarrierError(
                f"value at {path!r} failed to authenticate (tampered or moved)"
            ) from None

    async def get(self, path: str) -> Versioned | None:
        if path == KEYRING_PATH:
            raise SealError("the keyring is not readable through the barrier")
        entry = await self._storage.get(path)
        if entry is None:
            return None
        return Versioned(self.decrypt(path, entry.value), entry.revision)

    async def list(
        self, prefix: str, after: str = "", limit: int = 1000
    ) -> list[tuple[str, Versioned]]:
        rows = await self._storage.list(prefix, after, limit)
        return [(p, Versioned(self.decrypt(p, e.value), e.revision)) for p, e in rows]

    def put(self, path: str, plaintext: bytes, *, expect: int | None) -> Put:
        """A write to pass to ``commit``; encrypted now, applied then."""
        return Put(path, self.encrypt(path, plaintext), expect)

    @staticmethod
    def delete(path: str, *, expect: int | None) -> Delete:
        return Delete(path, expect)

    async def commit(self, writes: Sequence[Write]) -> None:
        await self._storage.commit(writes)
