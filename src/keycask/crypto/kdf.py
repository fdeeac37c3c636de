"""NIST SP 800-108 key derivation in counter mode with HMAC-SHA256."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

from keycask.crypto.material import KeyMaterial

_MESSAGE_LABEL = b"keycask message key v1"


def _kbkdf_counter_hmac_sha256(key: bytes, fixed_input: bytes, length: int) -> bytes:
    """SP 800-108 counter mode with HMAC-SHA256 and a 32-bit counter before the
    caller's whole fixed input: the core that the NIST CAVP vectors test."""
    return KBKDFHMAC(
        algorithm=hashes.SHA256(),
        mode=Mode.CounterMode,
        length=length,
        rlen=4,
        llen=None,
        location=CounterLocation.BeforeFixed,
        label=None,
        context=None,
        fixed=fixed_input,
    ).derive(key)


def kbkdf_hmac_sha256(key: bytes, *, label: bytes, context: bytes, length: int) -> bytes:
    """SP 800-108 counter mode, 32-bit counter before the fixed input
    ``label || 0x00 || context || [L]_32`` (L = ``length`` in bits)."""
    fixed_input = label + b"\x00" + context + (length * 8).to_bytes(4, "big")
    return _kbkdf_counter_hmac_sha256(key, fixed_input, length)


def derive_message_key(material: KeyMaterial, salt: bytes) -> KeyMaterial:
    """A fresh AES-256 key for one message, so a key version never meets the
    random-nonce limit of AES-GCM however many messages it protects."""
    return KeyMaterial(
        kbkdf_hmac_sha256(material.reveal(), label=_MESSAGE_LABEL, context=salt, length=32)
    )
