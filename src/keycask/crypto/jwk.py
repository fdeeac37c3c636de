"""JSON Web Keys (RFC 7517, with RFC 7518's RSA and EC key members) for the
asymmetric key specs keycask has a JWK form for: RSA 2048/3072/4096 and the
EC curves P-256, P-384, P-521 and secp256k1.

Two directions, for any front door that speaks JWK:

* ``public_jwk``: a DER SubjectPublicKeyInfo (what ``PrivateKey.public_der``
  returns) as a public JWK, written as RFC 7518 asks: unpadded base64url of
  the unsigned big-endian integers, an RSA modulus without leading zero
  octets, EC coordinates left-padded to the curve's size. secp256k1 is named
  "P-256K" (Azure Key Vault's and Wycheproof's name; RFC 8812 registers
  "secp256k1", which is accepted on input).
* ``private_key_from_jwk``: a private JWK, material from outside keycask, as
  (key spec, PKCS#8 DER) after every check: all members present and of the
  right form, the key loaded and validated by ``cryptography`` (OpenSSL's RSA
  consistency check; an EC point on its curve, "d" in [1, n-1] and "d"
  times the generator equal to the point). Members other than the key's own
  ("kid", "alg", "key_ops", "use", ...) are the caller's business and
  ignored here; multi-prime RSA ("oth") is refused.

Input is read strictly but not pedantically. Every value is unpadded
base64url in canonical form (no "=", no other characters, no stray bits
in the last character). Leading zero octets are accepted: RFC 7518 forbids
them in "n" and "d" and requires full-length EC members, but common
producers (.NET's RSAParameters pads "d", "dp", "dq" and "qi" to a
fixed length; some JOSE libraries strip leading zeros from EC "d") do
otherwise, and the integer is unambiguous either way. No member is longer
than the largest key allows, so nothing large is ever decoded or handed to
OpenSSL (a 16,384-bit RSA key's validation would take seconds).

Every refusal is ``InvalidJwk`` (a ValueError), whose message names the
member and the rule, never a value: the input is private key material.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from types import MappingProxyType

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keycask.crypto.material import KeyMaterial


class InvalidJwk(ValueError):
    """A JWK refused, or a key with no JWK form here. The message names the
    member and the rule, never the key."""


_RSA_SPECS = {2048: "RSA_2048", 3072: "RSA_3072", 4096: "RSA_4096"}
_MAX_RSA_BITS = max(_RSA_SPECS)
# JWK crv -> (key spec, curve). Both secp256k1 names are read.
_CURVES: dict[str, tuple[str, ec.EllipticCurve]] = {
    "P-256": ("ECC_NIST_P256", ec.SECP256R1()),
    "P-384": ("ECC_NIST_P384", ec.SECP384R1()),
    "P-521": ("ECC_NIST_P521", ec.SECP521R1()),
    "P-256K": ("ECC_SECG_P256K1", ec.SECP256K1()),
    "secp256k1": ("ECC_SECG_P256K1", ec.SECP256K1()),
}
# cryptography's curve name -> the crv written.
_CRV_BY_CURVE = {
    "secp256r1": "P-256",
    "secp384r1": "P-384",
    "secp521r1": "P-521",
    "secp256k1": "P-256K",
}
# The order n of each curve's base point (SEC 2 v2; FIPS 186-4 D.1.2):
# an EC private key is in [1, n-1].
_ORDERS = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
        "581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
    "secp521r1": int(
        "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
    "secp256k1": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}

# Key spec -> JWK crv, for the door that names a key's curve.
JWK_CURVES: Mapping[str, str] = MappingProxyType(
    {spec: crv for crv, (spec, _) in _CURVES.items() if crv != "secp256k1"}
)
JWK_SPECS = frozenset({*_RSA_SPECS.values(), *JWK_CURVES})

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_RSA_MEMBERS = ("n", "e", "d", "p", "q", "dp", "dq", "qi")
# Octets each RSA member may take at most: n, d, e at the modulus size; the
# CRT members at half of it (p, q, dp, dq, qi are all below a prime of half
# the modulus' bits), each plus one leading zero octet.
_RSA_MAX_OCTETS = {
    "n": _MAX_RSA_BITS // 8 + 1,
    "e": _MAX_RSA_BITS // 8 + 1,
    "d": _MAX_RSA_BITS // 8 + 1,
    **{name: _MAX_RSA_BITS // 16 + 1 for name in ("p", "q", "dp", "dq", "qi")},
}


def jwk_key_type(spec: str) -> tuple[str, str | None]:
    """(kty, crv) of a key spec: ("RSA", None) or ("EC", "P-256"), ...;
    InvalidJwk for a spec with no JWK form here."""
    if spec in _RSA_SPECS.values():
        return "RSA", None
    crv = JWK_CURVES.get(spec)
    if crv is None:
        raise InvalidJwk(f"key spec {spec} has no JSON Web Key form")
    return "EC", crv


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")


def _uint(value: int, size: int | None = None) -> str:
    """Unsigned big-endian, in ``size`` octets or the fewest (at least one)."""
    if size is None:
        size = max(1, (value.bit_length() + 7) // 8)
    return _b64(value.to_bytes(size, "big"))


def public_jwk(spki_der: bytes) -> dict[str, str]:
    """The public JWK of a DER SubjectPublicKeyInfo: {"kty": "RSA", "n",
    "e"} or {"kty": "EC", "crv", "x", "y"}."""
    try:
        key = serialization.load_der_public_key(spki_der)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidJwk("not a DER SubjectPublicKeyInfo public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = _CRV_BY_CURVE.get(key.curve.name)
        if crv is None:
            raise InvalidJwk(f"the EC curve {key.curve.name} has no JSON Web Key form here")
        size = (key.curve.key_size + 7) // 8
        point = key.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _uint(point.x, size), "y": _uint(point.y, size)}
    raise InvalidJwk("only RSA and EC public keys have a JSON Web Key form here")


def _member(fields: Mapping[str, object], name: str, max_octets: int) -> int:
    """A required base64url integer member, checked before it is decoded."""
    if name not in fields:
        raise InvalidJwk(f"the JWK has no {name!r} member")
    value = fields[name]
    if not isinstance(value, str):
        raise InvalidJwk(f"the JWK member {name!r} is not a string")
    # 4 characters per 3 octets; anything longer cannot be in range.
    if len(value) > (max_octets * 4 + 2) // 3:
        raise InvalidJwk(f"the JWK member {name!r} is longer than a supported key's")
    if _B64URL.fullmatch(value) is None:
        raise InvalidJwk(f"the JWK member {name!r} is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise InvalidJwk(f"the JWK member {name!r} is not unpadded base64url") from None
    # Canonical form only: "AB" and "AA" decode alike; only "AA" is the encoding.
    if not raw or _b64(raw) != value:
        raise InvalidJwk(f"the JWK member {name!r} is not canonical unpadded base64url")
    return int.from_bytes(raw, "big")


def _pkcs8(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> KeyMaterial:
    return KeyMaterial.any_size(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _rsa(fields: Mapping[str, object]) -> tuple[str, KeyMaterial]:
    if "oth" in fields:
        raise InvalidJwk("multi-prime RSA keys (the 'oth' member) are not supported")
    values = {name: _member(fields, name, _RSA_MAX_OCTETS[name]) for name in _RSA_MEMBERS}
    spec = _RSA_SPECS.get(values["n"].bit_length())
    if spec is None:
        sizes = ", ".join(str(bits) for bits in _RSA_SPECS)
        raise InvalidJwk(f"the RSA modulus must be {sizes} bits")
    numbers = rsa.RSAPrivateNumbers(
        p=values["p"],
        q=values["q"],
        d=values["d"],
        dmp1=values["dp"],
        dmq1=values["dq"],
        iqmp=values["qi"],
        public_numbers=rsa.RSAPublicNumbers(e=values["e"], n=values["n"]),
    )
    try:
        # Checks the ranges, p * q == n, and OpenSSL's RSA_check_key (d, the
        # CRT members and primality of p and q).
        key = numbers.private_key(unsafe_skip_rsa_key_validation=False)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidJwk("the RSA private key members are not a consistent RSA key") from None
    return spec, _pkcs8(key)


def _ec(fields: Mapping[str, object]) -> tuple[str, KeyMaterial]:
    crv = fields.get("crv")
    if not isinstance(crv, str) or crv not in _CURVES:
        raise InvalidJwk("the JWK's 'crv' must be P-256, P-384, P-521 or P-256K")
    spec, curve = _CURVES[crv]
    size = (curve.key_size + 7) // 8
    x, y, d = (_member(fields, name, size) for name in ("x", "y", "d"))
    try:
        # Checks that (x, y) is a point on the curve.
        public = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except ValueError:
        raise InvalidJwk(f"the JWK's (x, y) is not a point on {crv}") from None
    if not 1 <= d < _ORDERS[curve.name]:
        raise InvalidJwk(f"the JWK's 'd' is not a private key on {crv}")
    try:
        key = ec.derive_private_key(d, curve)
    except ValueError:
        raise InvalidJwk(f"the JWK's 'd' is not a private key on {crv}") from None
    if key.public_key().public_numbers() != public.public_numbers():
        raise InvalidJwk("the JWK's 'd' does not match its public point (x, y)")
    return spec, _pkcs8(key)


def private_key_from_jwk(fields: Mapping[str, object]) -> tuple[str, KeyMaterial]:
    """(key spec, PKCS#8 DER) of a private RSA or EC JWK; InvalidJwk for
    anything else (see the module docstring for the checks)."""
    if not isinstance(fields, Mapping):
        raise InvalidJwk("a JWK is a JSON object")
    kty = fields.get("kty")
    if kty != "RSA" and kty != "EC":  # noqa: PLR1714 - kty may be unhashable
        raise InvalidJwk("the JWK's 'kty' must be RSA or EC")
    if "d" not in fields:
        raise InvalidJwk("the JWK is a public key; a private key is needed")
    return _rsa(fields) if kty == "RSA" else _ec(fields)
