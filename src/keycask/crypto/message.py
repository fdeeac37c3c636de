"""Encryption of one KMS message under a key version (design section 3).

The caller supplies the fixed header (format, key id, version) and the
canonical encryption context; this module adds a random salt and nonce, derives
the per-message key and binds header, salt, nonce and context as AAD.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from keycask.crypto.aead import NONCE_SIZE, TAG_SIZE, AuthenticationFailed
from keycask.crypto.kdf import derive_message_key
from keycask.crypto.material import KeyMaterial, random_bytes

MESSAGE_SALT_SIZE = 16
# salt + nonce + tag: what a message adds to its plaintext after the header.
MESSAGE_OVERHEAD = MESSAGE_SALT_SIZE + NONCE_SIZE + TAG_SIZE


def seal_message(
    material: KeyMaterial, plaintext: bytes, *, header: bytes, context: bytes
) -> bytes:
    """Returns ``salt || nonce || ciphertext || tag``.

    AAD is ``header || salt || nonce || context``: the header has a fixed
    length, so the concatenation is unambiguous.
    """
    salt = random_bytes(MESSAGE_SALT_SIZE)
    nonce = random_bytes(NONCE_SIZE)
    key = derive_message_key(material, salt)
    sealed = key.aead().encrypt(nonce, plaintext, header + salt + nonce + context)
    return salt + nonce + sealed


def open_message(material: KeyMaterial, body: bytes, *, header: bytes, context: bytes) -> bytes:
    """Inverse of ``seal_message``; raises ``AuthenticationFailed``."""
    if len(body) < MESSAGE_OVERHEAD:
        raise AuthenticationFailed("message too short")
    salt = body[:MESSAGE_SALT_SIZE]
    nonce = body[MESSAGE_SALT_SIZE : MESSAGE_SALT_SIZE + NONCE_SIZE]
    key = derive_message_key(material, salt)
    try:
        return key.aead().decrypt(
            nonce, body[MESSAGE_SALT_SIZE + NONCE_SIZE :], header + salt + nonce + context
        )
    except InvalidTag:
        raise AuthenticationFailed("authentication failed") from None
