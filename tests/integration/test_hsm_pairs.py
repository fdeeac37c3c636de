"""keycask.hsm's key pairs against a real SoftHSM2 token: RSA (2048, 3072,
4096) and EC (P-256, P-384, P-521, secp256k1) pairs made inside it with a
sensitive, never extractable private key able to do one thing, signatures
and RSA-OAEP ciphertexts checked with ``cryptography`` against the public
key it reads back, the refusals, and destruction of both halves."""

from __future__ import annotations

import hashlib
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as pkcs11_errors
from test_hsm_token import LABEL, NAME, PIN, _run, module

from keycask.hsm.token import DecryptFailed, MechanismRefused, ObjectMissing, Token

__all__ = ["module"]  # the fixture, defined there

_CURVES = {
    "ECC_NIST_P256": ("SHA256", hashes.SHA256(), 32),
    "ECC_NIST_P384": ("SHA384", hashes.SHA384(), 48),
    "ECC_NIST_P521": ("SHA512", hashes.SHA512(), 66),
    "ECC_SECG_P256K1": ("SHA256", hashes.SHA256(), 32),
}


def _objects(module: str, object_id: str) -> dict[Any, Any]:
    token = pkcs11.lib(module).get_token(token_label=LABEL)
    try:
        session = token.open(user_pin=PIN)
    except pkcs11_errors.UserAlreadyLoggedIn:
        session = token.open()
    found = {}
    for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
        for key in session.get_objects(
            {Attribute.CLASS: cls, Attribute.ID: bytes.fromhex(object_id)}
        ):
            found[cls] = key
    return found


@pytest.mark.parametrize("spec", sorted(_CURVES))
def test_ec_pairs_sign_inside_the_token(module: str, spec: str) -> None:
    token = Token(NAME, module, LABEL, PIN)
    object_id = _run(token.generate_pair(spec, "SIGN_VERIFY"))
    public = serialization.load_der_public_key(_run(token.public_key(object_id)))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    hash_name, algorithm, size = _CURVES[spec]
    digest = hashlib.new(hash_name.lower(), b"message").digest()
    raw = _run(token.sign(object_id, "ECDSA", hash_name, digest))
    assert len(raw) == 2 * size
    der = utils.encode_dss_signature(
        int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
    )
    public.verify(der, digest, ec.ECDSA(utils.Prehashed(algorithm)))
    private = _objects(module, object_id)[ObjectClass.PRIVATE_KEY]
    assert private[Attribute.SENSITIVE] and private[Attribute.NEVER_EXTRACTABLE]
    assert not private[Attribute.EXTRACTABLE] and private[Attribute.TOKEN]
    assert private[Attribute.SIGN] and not private[Attribute.DERIVE]
    assert private[Attribute.LABEL] == f"keycask-{object_id}"
    with pytest.raises(MechanismRefused):
        _run(token.sign(object_id, "PSS", hash_name, digest))  # CKM_ECDSA only
    assert _run(token.destroy(object_id)) and _objects(module, object_id) == {}
    token.close()


@pytest.mark.parametrize("spec", ["RSA_2048", "RSA_3072", "RSA_4096"])
def test_rsa_pairs_sign_pss_and_pkcs1_inside_the_token(module: str, spec: str) -> None:
    token = Token(NAME, module, LABEL, PIN)
    object_id = _run(token.generate_pair(spec, "SIGN_VERIFY"))
    public = serialization.load_der_public_key(_run(token.public_key(object_id)))
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == int(spec[4:]) and public.public_numbers().e == 65537
    for hash_name, algorithm in (("SHA256", hashes.SHA256()), ("SHA512", hashes.SHA512())):
        digest = hashlib.new(hash_name.lower(), b"message").digest()
        pss = _run(token.sign(object_id, "PSS", hash_name, digest))
        public.verify(
            pss, digest, padding.PSS(padding.MGF1(algorithm), len(digest)),
            utils.Prehashed(algorithm),
        )  # fmt: skip
        pkcs1 = _run(token.sign(object_id, "PKCS1", hash_name, digest))
        public.verify(pkcs1, digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
    # A signing key decrypts nothing.
    with pytest.raises(MechanismRefused):
        _run(token.decrypt_oaep(object_id, "SHA1", b"\x00" * public.key_size))
    objects = _objects(module, object_id)
    assert not objects[ObjectClass.PRIVATE_KEY][Attribute.DECRYPT]
    assert _run(token.destroy(object_id)) and _objects(module, object_id) == {}
    token.close()


def test_rsa_oaep_decrypts_inside_the_token(module: str) -> None:
    token = Token(NAME, module, LABEL, PIN)
    object_id = _run(token.generate_pair("RSA_2048", "ENCRYPT_DECRYPT"))
    public = serialization.load_der_public_key(_run(token.public_key(object_id)))
    assert isinstance(public, rsa.RSAPublicKey)
    sha1 = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    assert _run(token.decrypt_oaep(object_id, "SHA1", public.encrypt(b"secret", sha1))) == (
        b"secret"
    )
    with pytest.raises(DecryptFailed):
        _run(token.decrypt_oaep(object_id, "SHA1", b"\x01" * 256))
    # SoftHSM2 2.6 takes OAEP with SHA-1 only: SHA-256 is refused, said so.
    sha256 = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    with pytest.raises(MechanismRefused, match="refused the mechanism"):
        _run(token.decrypt_oaep(object_id, "SHA256", public.encrypt(b"x", sha256)))
    with pytest.raises(MechanismRefused):  # a decryption key signs nothing
        _run(token.sign(object_id, "PKCS1", "SHA256", b"\x00" * 32))
    private = _objects(module, object_id)[ObjectClass.PRIVATE_KEY]
    assert private[Attribute.DECRYPT] and not private[Attribute.SIGN]
    assert not private[Attribute.UNWRAP] and private[Attribute.NEVER_EXTRACTABLE]
    assert _run(token.has(object_id))
    assert _run(token.destroy(object_id)) and not _run(token.has(object_id))
    with pytest.raises(ObjectMissing):
        _run(token.public_key(object_id))
    token.close()


def test_what_keycask_makes_no_pair_for_is_refused_before_the_token(module: str) -> None:
    token = Token(NAME, module, LABEL, PIN)
    for spec, usage in (
        ("ECC_NIST_P256", "ENCRYPT_DECRYPT"),
        ("ECC_NIST_EDWARDS25519", "SIGN_VERIFY"),
        ("RSA_2048", "KEY_AGREEMENT"),
    ):
        with pytest.raises(MechanismRefused):
            _run(token.generate_pair(spec, usage))
    token.close()
