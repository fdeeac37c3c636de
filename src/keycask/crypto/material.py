"""Secret bytes as a type that does not leak."""

from __future__ import annotations

import hashlib
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

    The bytes live in a ``bytearray`` this object alone holds, so ``wipe``
    can overwrite them (the barrier wipes its root and term keys when it
    seals). What Python cannot promise: ``reveal`` hands out an immutable
    copy, and so did whatever produced the key (a decrypted keyring, a
    combined Shamir secret); ``cryptography``'s AES-GCM and hashlib's HMAC
    states keep their own copies, which ``wipe`` drops but cannot overwrite;
    freed memory is not cleared, and may be swapped. Zeroing narrows the
    window in which a memory dump finds a key; only an HSM closes it.
    """

    __slots__ = ("_aead", "_hmac", "_secret")

    def __init__(self, secret: bytes) -> None:
        if len(secret) not in (16, 24, 32):
            raise ValueError("key material must be 16, 24 or 32 bytes")
        self._secret = bytearray(secret)
        self._aead: AESGCM | None = None
        self._hmac: tuple[Any, Any] | None = None

    @classmethod
    def generate(cls, size: int = 32) -> KeyMaterial:
        return cls(random_bytes(size))

    @staticmethod
    def any_size(secret: bytes) -> KeyMaterial:
        """A secret that is not an AES key (a PKCS#8 private key, imported
        material before its length is checked), with the same protections."""
        return _AnySizeMaterial(secret)

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
        (a data key's plaintext, a value about to be sealed by the barrier):
        a copy, which the caller owns and ``wipe`` does not reach."""
        return bytes(self._secret)

    def wipe(self) -> None:
        """Overwrite the key with zeros and drop the contexts derived from
        it; the object is useless afterwards (see the class docstring for
        what this cannot reach)."""
        self._secret[:] = bytes(len(self._secret))
        self._aead = None
        self._hmac = None

    @property
    def wiped(self) -> bool:
        return not any(self._secret) and self._aead is None and self._hmac is None

    def hmac_sha256(self, message: bytes) -> bytes:
        """HMAC-SHA256 keyed by this material (RFC 2104).

        Written out over hashlib with the padded-key states computed once per
        key: OpenSSL 3's one-shot HMAC (``hmac.digest``) costs 1.5-2.5 us per
        call in provider lookups, this costs ~0.6 us, and it runs on every
        Encrypt and Decrypt. The tests hold it to ``hmac.digest``.
        """
        states = self._hmac
        if states is None:
            padded = self._secret.ljust(64, b"\x00")
            states = self._hmac = (
                hashlib.sha256(bytes(b ^ 0x36 for b in padded)),
                hashlib.sha256(bytes(b ^ 0x5C for b in padded)),
            )
        inner = states[0].copy()
        inner.update(message)
        outer = states[1].copy()
        outer.update(inner.digest())
        return outer.digest()

    def aead(self) -> AESGCM:
        ctx = self._aead
        if ctx is None:
            ctx = self._aead = AESGCM(self._secret)
        return ctx


_HMAC_BLOCK = 64


class _AnySizeMaterial(KeyMaterial):
    """A KeyMaterial whose length is not an AES key size: a PKCS#8 private key,
    or imported material, which the service checks against the key spec.

    ``KeyMaterial`` refuses such lengths on purpose (most secrets are AES keys);
    this keeps the redaction, the refusal to compare, hash or pickle, and
    ``reveal`` for the few values that are not.
    """

    __slots__ = ()

    def __init__(self, secret: bytes) -> None:  # no super(): that is the size check
        self._secret = bytearray(secret)
        self._aead = None
        self._hmac = None

    def hmac_sha256(self, message: bytes) -> bytes:
        # The inherited fast path pads the key to one block; RFC 2104 hashes a
        # longer key first, and imported HMAC keys may be longer.
        if len(self._secret) > _HMAC_BLOCK:
            return hmac.digest(self._secret, message, "sha256")
        return super().hmac_sha256(message)
