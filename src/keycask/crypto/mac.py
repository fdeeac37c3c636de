"""HMAC KMS keys (AWS KMS GENERATE_VERIFY_MAC key usage).

Not ``KeyMaterial.hmac_sha256``: that is keycask's own KDF fast path, fixed to
SHA-256. These keys follow RFC 2104 for any key length, since imported HMAC
material may be longer than the hash's block and must then be hashed first
(the standard library's HMAC does so).
"""

from __future__ import annotations

import hmac

from keycask.crypto.material import KeyMaterial, random_bytes

# Key spec -> (its one MAC algorithm, the size in bytes of a key keycask generates).
HMAC_SPECS: dict[str, tuple[str, int]] = {
    "HMAC_224": ("HMAC_SHA_224", 28),
    "HMAC_256": ("HMAC_SHA_256", 32),
    "HMAC_384": ("HMAC_SHA_384", 48),
    "HMAC_512": ("HMAC_SHA_512", 64),
}
_DIGESTS = {
    "HMAC_SHA_224": "sha224",
    "HMAC_SHA_256": "sha256",
    "HMAC_SHA_384": "sha384",
    "HMAC_SHA_512": "sha512",
}


def _hmac_spec(spec: str) -> tuple[str, int]:
    entry = HMAC_SPECS.get(spec)
    if entry is None:
        raise ValueError(f"unknown HMAC key spec {spec!r}")
    return entry


def generate_hmac_key(spec: str) -> KeyMaterial:
    """A random key as long as the spec's hash output (AWS's generated size)."""
    secret = random_bytes(_hmac_spec(spec)[1])
    return KeyMaterial(secret) if len(secret) in (16, 24, 32) else KeyMaterial.any_size(secret)


def mac_algorithms(spec: str) -> tuple[str, ...]:
    return (_hmac_spec(spec)[0],)


def hmac_digest(algorithm: str, key: KeyMaterial, message: bytes) -> bytes:
    """HMAC (RFC 2104) with the hash of ``algorithm``, a key of any length."""
    digest = _DIGESTS.get(algorithm)
    if digest is None:
        raise ValueError(f"unknown MAC algorithm {algorithm!r}")
    return hmac.digest(key.reveal(), message, digest)


def generate_mac(spec: str, algorithm: str, key: KeyMaterial, message: bytes) -> bytes:
    """The full-length tag. The key's length is not checked here: imported
    material may be longer than a generated key, and the import path holds it
    to the spec's range."""
    if algorithm != _hmac_spec(spec)[0]:
        raise ValueError(f"MAC algorithm {algorithm!r} is not valid for key spec {spec}")
    return hmac_digest(algorithm, key, message)


def verify_mac(spec: str, algorithm: str, key: KeyMaterial, message: bytes, mac: bytes) -> bool:
    """Constant-time comparison with the tag ``generate_mac`` gives."""
    return hmac.compare_digest(generate_mac(spec, algorithm, key, message), mac)
