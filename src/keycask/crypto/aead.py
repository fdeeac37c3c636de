"""AES-GCM with a random 96-bit nonce, for values sealed under long-lived keys
(the barrier and the keyring). Every key that uses it must be rotated before
2^32 seals (NIST SP 800-38D section 8.3); the barrier counts them."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from keycask.crypto.material import KeyMaterial, random_bytes

NONCE_SIZE = 12
TAG_SIZE = 16


class AuthenticationFailed(Exception):
    """The ciphertext, its nonce or its associated data were not what was sealed."""


def seal(key: KeyMaterial, plaintext: bytes, *, aad: bytes) -> bytes:
    """Encrypt and authenticate: returns ``nonce || ciphertext || tag``."""
    nonce = random_bytes(NONCE_SIZE)
    return nonce + key.aead().encrypt(nonce, plaintext, aad)


def open_sealed(key: KeyMaterial, sealed: bytes, *, aad: bytes) -> bytes:
    """Inverse of ``seal``; raises ``AuthenticationFailed`` on any mismatch."""
    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise AuthenticationFailed("sealed value too short")
    try:
        return key.aead().decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
    except InvalidTag:
        raise AuthenticationFailed("authentication failed") from None
