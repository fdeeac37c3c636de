"""Encryption of one KMS message under a key version (design section 3).

The caller supplies the fixed header (format, key id, version) and the
canonical encryption context; this module adds a random salt and nonce, derives
the per-message key and binds header, salt, nonce and context as AAD.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keycask.crypto.aead import NONCE_SIZE, TAG_SIZE, AuthenticationFailed
from keycask.crypto.kdf import message_key
from keycask.crypto.material import KeyMaterial

MESSAGE_SALT_SIZE = 16
_RANDOM = MESSAGE_SALT_SIZE + NONCE_SIZE
# salt + nonce + tag: what a message adds to its plaintext after the header.
MESSAGE_OVERHEAD = MESSAGE_SALT_SIZE + NONCE_SIZE + TAG_SIZE


def seal_message(
    material: KeyMaterial, plaintext: bytes, *, header: bytes, context: bytes
) -> bytes:
    """Returns ``salt || nonce || ciphertext || tag``.

    AAD is ``header || salt || nonce || context``: the header has a fixed
    length, so the concatenation is unambiguous. The per-message key never
    leaves this function, so it stays raw bytes rather than a KeyMaterial.
    """
    fresh = os.urandom(_RANDOM)  # salt || nonce, one call to the OS CSPRNG
    key = AESGCM(message_key(material, fresh[:MESSAGE_SALT_SIZE]))
    return fresh + key.encrypt(fresh[MESSAGE_SALT_SIZE:], plaintext, header + fresh + context)


def open_message(material: KeyMaterial, body: bytes, *, header: bytes, context: bytes) -> bytes:
    """Inverse of ``seal_message``; raises ``AuthenticationFailed``."""
    if len(body) < MESSAGE_OVERHEAD:
        raise AuthenticationFailed("message too short")
    fresh = body[:_RANDOM]
    key = AESGCM(message_key(material, fresh[:MESSAGE_SALT_SIZE]))
    try:
        return key.decrypt(fresh[MESSAGE_SALT_SIZE:], body[_RANDOM:], header + fresh + context)
    except InvalidTag:
        raise AuthenticationFailed("authentication failed") from None
