"""Secret bytes as a type that does not leak."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def random_bytes(n: int) -> bytes:
    """Bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(n)


class KeyMaterial:
    """Secret key bytes.

    Prints as ``KeyMaterial(<32 bytes redacted>)``, cannot be pickled, has no
    ``__eq__`` (use ``matches``, which is constant-time) and keeps its AES-GCM
    context so the hot path does not rebuild it per request.
    """

    __slots__ = ("_aead", "_secret")

    def __init__(self, secret: bytes) -> None:
        if len(secret) not in (16, 24, 32):
            raise ValueError("key material must be 16, 24 or 32 bytes")
        self._secret = bytes(secret)
        self._aead: AESGCM | None = None

    @classmethod
    def generate(cls, size: int = 32) -> KeyMaterial:
        return cls(random_bytes(size))

    def __len__(self) -> int:
        return len(self._secret)

    def __repr__(self) -> str:
        return f"KeyMaterial(<{len(self._secret)} bytes redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        raise TypeError("KeyMaterial has no ==; use matches(), which is constant-time")

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("KeyMaterial cannot be pickled")

    def __getstate__(self) -> Any:
        raise TypeError("KeyMaterial has no state to export")

    def matches(self, other: KeyMaterial) -> bool:
        return hmac.compare_digest(self._secret, other._secret)

    def reveal(self) -> bytes:
        """The raw bytes, for the few places that must store or return them
        (a data key's plaintext, a value about to be sealed by the barrier)."""
        return self._secret

    def aead(self) -> AESGCM:
        ctx = self._aead
        if ctx is None:
            ctx = self._aead = AESGCM(self._secret)
        return ctx
