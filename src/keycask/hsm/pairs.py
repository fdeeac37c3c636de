"""Asymmetric key pairs inside a PKCS#11 token: what ``token.Token`` asks of
python-pkcs11 for them, on the token's own thread (the caller holds the
library's lock).

A pair is two token objects with one random CKA_ID: a private key that is
sensitive, never extractable, private and immutable, able to sign (key
usage SIGN_VERIFY) or to decrypt (ENCRYPT_DECRYPT) and nothing else, its
allowed mechanisms only the ones that usage needs; and its public key,
kept in the token so that GetPublicKey reads it there. RSA keys are 2048,
3072 or 4096 bits with exponent 65537; EC keys are on P-256, P-384, P-521
or secp256k1 (SoftHSM2 2.6 has all four; a token without a curve refuses
the generation, and keycask says so).

Signatures are over a digest keycask computed (or the caller gave):
ECDSA (CKM_ECDSA, r || s), RSASSA-PKCS1-v1_5 (CKM_RSA_PKCS over the
DigestInfo) and RSASSA-PSS (CKM_RSA_PKCS_PSS, MGF1 over the message hash,
salt as long as the digest, as AWS KMS's RSASSA_PSS). Decryption is
RSAES-OAEP (CKM_RSA_PKCS_OAEP, MGF1 over the OAEP hash, no label) with
SHA-1 or SHA-256; a token that does not take the SHA-256 parameters
(SoftHSM2 2.6 takes SHA-1 only) refuses, and keycask says so.
"""

from __future__ import annotations

from typing import Any

from pkcs11 import MGF, Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

RSA_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
CURVES = {
    "ECC_NIST_P256": "secp256r1",
    "ECC_NIST_P384": "secp384r1",
    "ECC_NIST_P521": "secp521r1",
    "ECC_SECG_P256K1": "secp256k1",
}
SPECS = frozenset({*RSA_BITS, *CURVES})
SIGN_VERIFY = "SIGN_VERIFY"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"

# Hash name -> (digest mechanism, MGF1 over it, digest size).
HASHES: dict[str, tuple[Mechanism, MGF, int]] = {
    "SHA1": (Mechanism.SHA_1, MGF.SHA1, 20),
    "SHA256": (Mechanism.SHA256, MGF.SHA256, 32),
    "SHA384": (Mechanism.SHA384, MGF.SHA384, 48),
    "SHA512": (Mechanism.SHA512, MGF.SHA512, 64),
}
# RFC 8017 section 9.2, note 1: the DigestInfo prefix of each hash.
_DIGEST_INFO = {
    "SHA256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "SHA384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "SHA512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
SCHEMES = frozenset({"ECDSA", "PKCS1", "PSS"})


def _private_template(usage: str, rsa: bool) -> dict[Attribute, Any]:
    signs = usage == SIGN_VERIFY
    if rsa:
        allowed = (
            [Mechanism.RSA_PKCS, Mechanism.RSA_PKCS_PSS] if signs else [Mechanism.RSA_PKCS_OAEP]
        )
    else:
        allowed = [Mechanism.ECDSA]
    template: dict[Attribute, Any] = {
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.PRIVATE: True,
        Attribute.SIGN: signs,
        Attribute.SIGN_RECOVER: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
        Attribute.ALLOWED_MECHANISMS: allowed,
        Attribute.MODIFIABLE: False,
    }
    if rsa:
        template[Attribute.DECRYPT] = not signs
    return template


def _public_template(usage: str, rsa: bool) -> dict[Attribute, Any]:
    signs = usage == SIGN_VERIFY
    template: dict[Attribute, Any] = {
        Attribute.VERIFY: signs,
        Attribute.VERIFY_RECOVER: False,
        Attribute.WRAP: False,
        Attribute.DERIVE: False,
        Attribute.PRIVATE: False,
        Attribute.MODIFIABLE: False,
    }
    if rsa:
        template[Attribute.ENCRYPT] = not signs
    return template


def generate(session: Any, spec: str, usage: str, object_id: bytes, label: str) -> None:
    """A ``spec`` key pair for ``usage`` in the token, both halves named by
    ``object_id``."""
    rsa = spec in RSA_BITS
    fields: dict[str, Any] = {
        "id": object_id,
        "label": label,
        "store": True,
        "public_template": _public_template(usage, rsa),
        "private_template": _private_template(usage, rsa),
    }
    if rsa:
        session.generate_keypair(
            KeyType.RSA,
            RSA_BITS[spec],
            public_template={
                **fields.pop("public_template"),
                Attribute.PUBLIC_EXPONENT: (65537).to_bytes(3, "big"),
            },
            **fields,
        )
        return
    parameters = session.create_domain_parameters(
        KeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters(CURVES[spec])},
        local=True,
    )
    parameters.generate_keypair(**fields)


def sign(private: Any, scheme: str, hash_name: str, digest: bytes) -> bytes:
    """The signature of ``digest`` (ECDSA: r || s)."""
    if scheme == "ECDSA":
        out: bytes = private.sign(digest, mechanism=Mechanism.ECDSA)
        return out
    if scheme == "PKCS1":
        out = private.sign(_DIGEST_INFO[hash_name] + digest, mechanism=Mechanism.RSA_PKCS)
        return out
    mechanism, mgf, size = HASHES[hash_name]
    out = private.sign(
        digest, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=(mechanism, mgf, size)
    )
    return out


def decrypt_oaep(private: Any, hash_name: str, ciphertext: bytes) -> bytes:
    mechanism, mgf, _ = HASHES[hash_name]
    out: bytes = private.decrypt(
        ciphertext, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(mechanism, mgf, None)
    )
    return out


def public_spki(public: Any) -> bytes:
    """The public key as DER SubjectPublicKeyInfo."""
    if public.key_type == KeyType.EC:
        spki: bytes = encode_ec_public_key(public)
        return spki
    # SEQUENCE { AlgorithmIdentifier rsaEncryption NULL, BIT STRING RSAPublicKey }
    bits = _der(0x03, b"\x00" + encode_rsa_public_key(public))
    return _der(0x30, _RSA_ALGORITHM + bits)


_RSA_ALGORITHM = bytes.fromhex("300d06092a864886f70d0101010500")


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes((tag, size)) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets + body
