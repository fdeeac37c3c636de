"""Ed25519ph (RFC 8032 section 5.1, HashEdDSA with SHA-512 and an empty
context): AWS KMS's ED25519_PH_SHA_512.

``cryptography`` offers only pure Ed25519, so this one scheme comes from
pycryptodome, whose ``eddsa`` module implements RFC 8032 in full (its answer
matches the RFC's Ed25519ph test vector: tests/unit/test_ed25519ph.py).
keycask writes no signature scheme by hand. Keys stay ``cryptography`` keys
everywhere else; this module takes their raw 32-byte forms.

AWS signs a caller's 64-byte SHA-512 digest d (MessageType DIGEST) with the
prehash step still applied, so what is signed is Ed25519ph(d): the SHA-512
of d under dom2(1, ""). The caller's digest is hashed twice, as AWS documents.
"""

from __future__ import annotations

from Crypto.Hash import SHA512
from Crypto.Signature import eddsa


def sign(seed: bytes, message: bytes) -> bytes:
    """Ed25519ph over ``message`` with the private key whose RFC 8032 seed is ``seed``."""
    signer = eddsa.new(eddsa.import_private_key(seed), "rfc8032")
    signature: bytes = signer.sign(SHA512.new(message))
    return signature


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """False for any signature that does not verify, whatever its length."""
    verifier = eddsa.new(eddsa.import_public_key(public), "rfc8032")
    try:
        verifier.verify(SHA512.new(message), signature)
    except ValueError:
        return False
    return True
