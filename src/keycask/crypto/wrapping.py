"""Importing customer key material (AWS KMS GetParametersForImport and
ImportKeyMaterial): the RSA key a client wraps its material to, and the opening
of what it sends back.

The RSA_AES_KEY_WRAP algorithms are PKCS#11's CKM_RSA_AES_KEY_WRAP: RSA-OAEP
carries only an ephemeral AES key, and AES Key Wrap with Padding carries the
material, so material longer than one OAEP block can be imported too.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from keycask.crypto.material import KeyMaterial

WRAPPING_KEY_SPECS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}

# Algorithm -> (OAEP and MGF1 hash, whether an AES key wrap follows the RSA block).
_ALGORITHMS: dict[str, tuple[type[hashes.SHA1 | hashes.SHA256], bool]] = {
    "RSAES_OAEP_SHA_1": (hashes.SHA1, False),
    "RSAES_OAEP_SHA_256": (hashes.SHA256, False),
    "RSA_AES_KEY_WRAP_SHA_1": (hashes.SHA1, True),
    "RSA_AES_KEY_WRAP_SHA_256": (hashes.SHA256, True),
}
WRAPPING_ALGORITHMS = frozenset(_ALGORITHMS)

_PUBLIC_EXPONENT = 65537
# AWS specifies a 256-bit ephemeral key; PKCS#11 would also allow AES-128/192,
# but no client that follows AWS's instructions sends one.
_EPHEMERAL_KEY_SIZE = 32
_ID_LABEL = b"keycask key material id v1"
_KEY_ID_SIZE = 16
_UNWRAP_FAILED = "the wrapped key material could not be unwrapped"


class UnwrapFailed(Exception):
    """The wrapped material could not be opened: wrong wrapping key, wrong
    algorithm, or bytes changed on the way. Every cause gets the same message so
    the error tells a caller nothing about where the padding check failed."""


@dataclass(frozen=True, slots=True)
class WrappingKey:
    """An RSA key pair made for one import. The private half leaves this module
    only as PKCS#8 DER inside a KeyMaterial, to be stored behind the barrier."""

    private_der: KeyMaterial  # PKCS#8 DER, unencrypted: the barrier encrypts it at rest
    public_der: bytes  # DER SubjectPublicKeyInfo, the PublicKey that AWS returns


def generate_wrapping_key(spec: str) -> WrappingKey:
    """A fresh RSA key pair of ``spec`` (a key of WRAPPING_KEY_SPECS)."""
    bits = WRAPPING_KEY_SPECS.get(spec)
    if bits is None:
        raise ValueError(f"unknown wrapping key spec {spec!r}")
    key = rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=bits)
    return WrappingKey(
        private_der=KeyMaterial.any_size(
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ),
        public_der=key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def unwrap_key_material(private_der: KeyMaterial, algorithm: str, wrapped: bytes) -> KeyMaterial:
    """The material a client wrapped to the public half of ``private_der``.

    Raises ``UnwrapFailed`` for anything the client sent wrong, ``ValueError``
    for an algorithm outside WRAPPING_ALGORITHMS. A private key that does not
    load is keycask's fault, not the client's, so its error is not converted.
    The material may have any length, even zero: the caller checks it against
    the key spec.
    """
    recipe = _ALGORITHMS.get(algorithm)
    if recipe is None:
        raise ValueError(f"unknown wrapping algorithm {algorithm!r}")
    hash_type, key_wrap = recipe
    # keycask made this key and the barrier authenticates it at rest, so
    # OpenSSL's consistency check (40 ms at 2048 bits, 290 ms at 4096, nearly
    # all of an unwrap) would only re-check our own output.
    key = serialization.load_der_private_key(
        private_der.reveal(), password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("the wrapping key is not an RSA private key")
    oaep = padding.OAEP(mgf=padding.MGF1(hash_type()), algorithm=hash_type(), label=None)
    try:
        if not key_wrap:
            return KeyMaterial.any_size(key.decrypt(wrapped, oaep))
        # A wrong-length RSA block fails in decrypt, an empty or short key wrap in unwrap.
        modulus_size = (key.key_size + 7) // 8
        ephemeral = key.decrypt(wrapped[:modulus_size], oaep)
        if len(ephemeral) != _EPHEMERAL_KEY_SIZE:
            raise UnwrapFailed(_UNWRAP_FAILED)
        return KeyMaterial.any_size(aes_key_unwrap_with_padding(ephemeral, wrapped[modulus_size:]))
    except (ValueError, InvalidUnwrap):
        # cryptography reports an OAEP failure as ValueError.
        raise UnwrapFailed(_UNWRAP_FAILED) from None


def key_material_id(material: KeyMaterial, key_id: bytes) -> str:
    """AWS's KeyMaterialId, derived "from the KMS key ID and the key material".

    A PRF keyed by the material, so publishing the id reveals nothing about it,
    while importing the same material into the same key again yields the same
    id: that is how an import is held to "the same material only".
    """
    if len(key_id) != _KEY_ID_SIZE:
        # A key id in another form would still give a stable id, but a different one.
        raise ValueError("key_id must be the 16 bytes of the key's UUID")
    return hmac.digest(material.reveal(), _ID_LABEL + key_id, "sha256").hex()
