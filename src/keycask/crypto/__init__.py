"""The only package that touches ``cryptography``: recipes, not knobs.

Callers never pass a nonce, a mode or a tag length. Every secret travels as a
``KeyMaterial`` so it cannot be printed or compared by accident.
"""

from keycask.crypto.aead import NONCE_SIZE, AuthenticationFailed, open_sealed, seal
from keycask.crypto.material import KeyMaterial, random_bytes
from keycask.crypto.message import (
    MESSAGE_OVERHEAD,
    MESSAGE_SALT_SIZE,
    open_message,
    seal_message,
)
from keycask.crypto.wrapping import (
    WRAPPING_ALGORITHMS,
    WRAPPING_KEY_SPECS,
    UnwrapFailed,
    WrappingKey,
    generate_wrapping_key,
    key_material_id,
    unwrap_key_material,
)

__all__ = [
    "MESSAGE_OVERHEAD",
    "MESSAGE_SALT_SIZE",
    "NONCE_SIZE",
    "WRAPPING_ALGORITHMS",
    "WRAPPING_KEY_SPECS",
    "AuthenticationFailed",
    "KeyMaterial",
    "UnwrapFailed",
    "WrappingKey",
    "generate_wrapping_key",
    "key_material_id",
    "open_message",
    "open_sealed",
    "random_bytes",
    "seal",
    "seal_message",
    "unwrap_key_material",
]
