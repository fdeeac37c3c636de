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

__all__ = [
    "MESSAGE_OVERHEAD",
    "MESSAGE_SALT_SIZE",
    "NONCE_SIZE",
    "AuthenticationFailed",
    "KeyMaterial",
    "open_message",
    "open_sealed",
    "random_bytes",
    "seal",
    "seal_message",
]
