"""ECDSA signatures in both forms: DER (``SEQUENCE { INTEGER r, INTEGER s }``,
what keycask's Sign makes and Verify takes, as AWS KMS's) and raw r || s,
each coordinate-sized (JWS's form, which Azure Key Vault sends and answers)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)


def der_to_raw(der: bytes, size: int) -> bytes:
    """A DER ECDSA signature as r || s, each ``size`` bytes (32 for P-256 and
    secp256k1, 48 for P-384, 66 for P-521)."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def raw_to_der(raw: bytes) -> bytes:
    """r || s (two halves of equal size) as DER."""
    half = len(raw) // 2
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )
