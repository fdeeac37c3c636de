"""A public key's JSON Web Key fields (RFC 7517/7518): RSA's n and e, EC's
crv, x and y (secp256k1's crv is Key Vault's "P-256K"), each unpadded
base64url, from its SubjectPublicKeyInfo DER."""

from __future__ import annotations

import pybase64
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521", "secp256k1": "P-256K"}


def _b64(value: int, size: int = 0) -> str:
    data = value.to_bytes(size or max(1, (value.bit_length() + 7) // 8), "big")
    return pybase64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(spki_der: bytes) -> dict[str, str]:
    key = load_der_public_key(spki_der)
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _b64(numbers.n), "e": _b64(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = _CURVES.get(key.curve.name)
        if crv is None:
            raise ValueError(f"no JWK curve for {key.curve.name}")
        size = (key.curve.key_size + 7) // 8
        point = key.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _b64(point.x, size), "y": _b64(point.y, size)}
    raise ValueError("only RSA and EC public keys have JWK fields here")
