"""Asymmetric and HMAC keys: every refusal AWS KMS makes, with AWS's error code.

Wrong key usage for an operation, an algorithm the key spec does not have, a
signature or MAC that does not verify, a digest of the wrong length,
EXTERNAL_MU off ML-DSA, KeySpec/KeyUsage pairs CreateKey must refuse, RSA-OAEP
misuse (no algorithm, a context, too long a plaintext, no KeyId on Decrypt, a
changed ciphertext), the algorithm lists DescribeKey shows, and rotation of
keys that cannot rotate. Each refusal sits next to the same call made right,
which succeeds, so a refusal for the wrong reason cannot pass.

Last, on a server of its own: no private key, HMAC key, data key pair private
key or shared secret is at rest in the clear or in the log, searched with
the scanner of test_no_plaintext_at_rest.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_no_plaintext_at_rest import Needle, _binary, _prove_scan_works, scan

from keycask import config
from keycask.app import open_store
from keycask.barrier import Barrier
from keycask.keys.keystore import KeyStore

if TYPE_CHECKING:
    from conftest import Server


# (name in this module) -> (KeySpec, KeyUsage); None: the default symmetric key.
KEY_KINDS: dict[str, tuple[str, str] | None] = {
    "symmetric": None,
    "rsa_enc": ("RSA_2048", "ENCRYPT_DECRYPT"),
    "rsa_enc_2": ("RSA_2048", "ENCRYPT_DECRYPT"),
    "rsa_sign": ("RSA_2048", "SIGN_VERIFY"),
    "p256_sign": ("ECC_NIST_P256", "SIGN_VERIFY"),
    "p256_sign_2": ("ECC_NIST_P256", "SIGN_VERIFY"),
    "p256_agree": ("ECC_NIST_P256", "KEY_AGREEMENT"),
    "ed25519": ("ECC_NIST_EDWARDS25519", "SIGN_VERIFY"),
    "mldsa44": ("ML_DSA_44", "SIGN_VERIFY"),
    "hmac256": ("HMAC_256", "GENERATE_VERIFY_MAC"),
}


class Keys:
    def __init__(self, kms: Any) -> None:
        self.kms = kms
        self._arns: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self._arns:
            kind = KEY_KINDS[name]
            kwargs = {} if kind is None else {"KeySpec": kind[0], "KeyUsage": kind[1]}
            meta = self.kms.create_key(Description=f"errors {name}", **kwargs)["KeyMetadata"]
            self._arns[name] = meta["Arn"]
        return self._arns[name]


@pytest.fixture(scope="module")
def keys(server: Server) -> Keys:
    return Keys(server.client())


@pytest.fixture(scope="module")
def kms(keys: Keys) -> Any:
    return keys.kms


def _code(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as error:
        call()
    return str(error.value.response["Error"]["Code"])


MESSAGE = b"a message to sign " + bytes(range(32))
SHA256 = hashlib.sha256(MESSAGE).digest()
MU = hashlib.shake_256(MESSAGE).digest(64)
PEER_P256 = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
)


def _sign(key: str, algorithm: str, message: bytes = MESSAGE, message_type: str = "RAW") -> Any:
    return lambda kms, k: kms.sign(
        KeyId=k[key], Message=message, MessageType=message_type, SigningAlgorithm=algorithm
    )


def _verify(key: str, algorithm: str, message: bytes = MESSAGE, message_type: str = "RAW") -> Any:
    return lambda kms, k: kms.verify(
        KeyId=k[key],
        Message=message,
        MessageType=message_type,
        Signature=b"\x30" * 64,
        SigningAlgorithm=algorithm,
    )


def _encrypt(key: str, algorithm: str | None, **extra: Any) -> Any:
    algo = {} if algorithm is None else {"EncryptionAlgorithm": algorithm}
    return lambda kms, k: kms.encrypt(KeyId=k[key], Plaintext=b"secret", **algo, **extra)


def _mac(key: str, algorithm: str = "HMAC_SHA_256") -> Any:
    return lambda kms, k: kms.generate_mac(KeyId=k[key], Message=MESSAGE, MacAlgorithm=algorithm)


def _verify_mac(key: str, algorithm: str = "HMAC_SHA_256") -> Any:
    return lambda kms, k: kms.verify_mac(
        KeyId=k[key], Message=MESSAGE, Mac=b"\x00" * 32, MacAlgorithm=algorithm
    )


def _derive(key: str) -> Any:
    return lambda kms, k: kms.derive_shared_secret(
        KeyId=k[key], KeyAgreementAlgorithm="ECDH", PublicKey=PEER_P256
    )


# id -> (the refused call, AWS's error code, the same call made right)
REFUSALS: dict[str, tuple[Any, str, Any]] = {
    # Wrong key usage for the operation.
    "sign with an ENCRYPT_DECRYPT RSA key": (
        _sign("rsa_enc", "RSASSA_PSS_SHA_256"),
        "InvalidKeyUsageException",
        _sign("rsa_sign", "RSASSA_PSS_SHA_256"),
    ),
    "verify with an ENCRYPT_DECRYPT RSA key": (
        _verify("rsa_enc", "RSASSA_PKCS1_V1_5_SHA_256"),
        "InvalidKeyUsageException",
        None,
    ),
    "sign with a KEY_AGREEMENT key": (
        _sign("p256_agree", "ECDSA_SHA_256"),
        "InvalidKeyUsageException",
        _sign("p256_sign", "ECDSA_SHA_256"),
    ),
    "sign with a symmetric key": (
        _sign("symmetric", "RSASSA_PSS_SHA_256"),
        "InvalidKeyUsageException",
        None,
    ),
    "sign with an HMAC key": (
        _sign("hmac256", "ECDSA_SHA_256"),
        "InvalidKeyUsageException",
        None,
    ),
    "encrypt with a SIGN_VERIFY RSA key": (
        _encrypt("rsa_sign", "RSAES_OAEP_SHA_256"),
        "InvalidKeyUsageException",
        _encrypt("rsa_enc", "RSAES_OAEP_SHA_256"),
    ),
    "encrypt with a SIGN_VERIFY EC key": (
        _encrypt("p256_sign", None),
        "InvalidKeyUsageException",
        _encrypt("symmetric", None),
    ),
    "encrypt with a KEY_AGREEMENT key": (
        _encrypt("p256_agree", None),
        "InvalidKeyUsageException",
        None,
    ),
    "encrypt with an HMAC key": (_encrypt("hmac256", None), "InvalidKeyUsageException", None),
    "decrypt with a SIGN_VERIFY RSA key": (
        lambda kms, k: kms.decrypt(
            CiphertextBlob=b"\x01" * 256,
            KeyId=k["rsa_sign"],
            EncryptionAlgorithm="RSAES_OAEP_SHA_1",
        ),
        "InvalidKeyUsageException",
        None,
    ),
    "generate MAC with a SIGN_VERIFY key": (
        _mac("p256_sign"),
        "InvalidKeyUsageException",
        _mac("hmac256"),
    ),
    "generate MAC with a symmetric key": (_mac("symmetric"), "InvalidKeyUsageException", None),
    "verify MAC with a SIGN_VERIFY key": (
        _verify_mac("rsa_sign"),
        "InvalidKeyUsageException",
        None,
    ),
    "derive shared secret with a SIGN_VERIFY key": (
        _derive("p256_sign"),
        "InvalidKeyUsageException",
        _derive("p256_agree"),
    ),
    "derive shared secret with an RSA key": (
        _derive("rsa_enc"),
        "InvalidKeyUsageException",
        None,
    ),
    "generate data key with an RSA key": (
        lambda kms, k: kms.generate_data_key(KeyId=k["rsa_enc"], KeySpec="AES_256"),
        "InvalidKeyUsageException",
        lambda kms, k: kms.generate_data_key(KeyId=k["symmetric"], KeySpec="AES_256"),
    ),
    "generate data key with an HMAC key": (
        lambda kms, k: kms.generate_data_key(KeyId=k["hmac256"], KeySpec="AES_256"),
        "InvalidKeyUsageException",
        None,
    ),
    "generate data key pair with an RSA key": (
        lambda kms, k: kms.generate_data_key_pair(KeyId=k["rsa_enc"], KeyPairSpec="ECC_NIST_P256"),
        "InvalidKeyUsageException",
        lambda kms, k: kms.generate_data_key_pair(
            KeyId=k["symmetric"], KeyPairSpec="ECC_NIST_P256"
        ),
    ),
    # An algorithm the key spec does not have.
    "ECDSA_SHA_384 on P256": (
        _sign("p256_sign", "ECDSA_SHA_384"),
        "InvalidKeyUsageException",
        _sign("p256_sign", "ECDSA_SHA_256"),
    ),
    "verify ECDSA_SHA_512 on P256": (
        _verify("p256_sign", "ECDSA_SHA_512"),
        "InvalidKeyUsageException",
        None,
    ),
    "RSASSA_PSS on an EC key": (
        _sign("p256_sign", "RSASSA_PSS_SHA_256"),
        "InvalidKeyUsageException",
        None,
    ),
    "ECDSA on an RSA key": (
        _sign("rsa_sign", "ECDSA_SHA_256"),
        "InvalidKeyUsageException",
        _sign("rsa_sign", "RSASSA_PKCS1_V1_5_SHA_256"),
    ),
    "ED25519 on P256": (
        _sign("p256_sign", "ED25519_SHA_512"),
        "InvalidKeyUsageException",
        None,
    ),
    "ML-DSA on Ed25519": (
        _sign("ed25519", "ML_DSA_SHAKE_256"),
        "InvalidKeyUsageException",
        _sign("ed25519", "ED25519_SHA_512"),
    ),
    "SYMMETRIC_DEFAULT on an RSA key": (
        _encrypt("rsa_enc", "SYMMETRIC_DEFAULT"),
        "InvalidKeyUsageException",
        _encrypt("rsa_enc", "RSAES_OAEP_SHA_1"),
    ),
    "RSAES_OAEP on a symmetric key": (
        _encrypt("symmetric", "RSAES_OAEP_SHA_256"),
        "InvalidKeyUsageException",
        _encrypt("symmetric", "SYMMETRIC_DEFAULT"),
    ),
    "RSA encrypt without EncryptionAlgorithm": (
        _encrypt("rsa_enc", None),
        "InvalidKeyUsageException",
        _encrypt("rsa_enc", "RSAES_OAEP_SHA_256"),
    ),
    # Message types.
    "DIGEST one byte short": (
        _sign("p256_sign", "ECDSA_SHA_256", SHA256[:-1], "DIGEST"),
        "ValidationException",
        _sign("p256_sign", "ECDSA_SHA_256", SHA256, "DIGEST"),
    ),
    "DIGEST one byte long": (
        _sign("p256_sign", "ECDSA_SHA_256", SHA256 + b"\x00", "DIGEST"),
        "ValidationException",
        None,
    ),
    "DIGEST of SHA-256 for PSS_SHA_384": (
        _sign("rsa_sign", "RSASSA_PSS_SHA_384", SHA256, "DIGEST"),
        "ValidationException",
        _sign("rsa_sign", "RSASSA_PSS_SHA_384", hashlib.sha384(MESSAGE).digest(), "DIGEST"),
    ),
    "verify a DIGEST of the wrong length": (
        _verify("rsa_sign", "RSASSA_PKCS1_V1_5_SHA_512", SHA256, "DIGEST"),
        "ValidationException",
        None,
    ),
    "DIGEST with pure Ed25519": (
        _sign("ed25519", "ED25519_SHA_512", hashlib.sha512(MESSAGE).digest(), "DIGEST"),
        "ValidationException",
        None,
    ),
    "DIGEST with ML-DSA": (
        _sign("mldsa44", "ML_DSA_SHAKE_256", SHA256, "DIGEST"),
        "ValidationException",
        _sign("mldsa44", "ML_DSA_SHAKE_256", MU, "EXTERNAL_MU"),
    ),
    "EXTERNAL_MU on P256": (
        _sign("p256_sign", "ECDSA_SHA_256", MU, "EXTERNAL_MU"),
        "ValidationException",
        None,
    ),
    "EXTERNAL_MU on RSA": (
        _sign("rsa_sign", "RSASSA_PSS_SHA_512", MU, "EXTERNAL_MU"),
        "ValidationException",
        _sign("rsa_sign", "RSASSA_PSS_SHA_512", MU, "DIGEST"),
    ),
    "EXTERNAL_MU on Ed25519": (
        _sign("ed25519", "ED25519_SHA_512", MU, "EXTERNAL_MU"),
        "ValidationException",
        None,
    ),
    "verify EXTERNAL_MU on P256": (
        _verify("p256_sign", "ECDSA_SHA_256", MU, "EXTERNAL_MU"),
        "ValidationException",
        None,
    ),
    "EXTERNAL_MU of 32 bytes on ML-DSA": (
        _sign("mldsa44", "ML_DSA_SHAKE_256", MU[:32], "EXTERNAL_MU"),
        "ValidationException",
        None,
    ),
    # GetPublicKey of keys that have none.
    "GetPublicKey of a symmetric key": (
        lambda kms, k: kms.get_public_key(KeyId=k["symmetric"]),
        "UnsupportedOperationException",
        lambda kms, k: kms.get_public_key(KeyId=k["rsa_enc"]),
    ),
    "GetPublicKey of an HMAC key": (
        lambda kms, k: kms.get_public_key(KeyId=k["hmac256"]),
        "UnsupportedOperationException",
        None,
    ),
    # RSA-OAEP misuse.
    "RSA encrypt with an EncryptionContext": (
        _encrypt("rsa_enc", "RSAES_OAEP_SHA_256", EncryptionContext={"a": "b"}),
        "ValidationException",
        _encrypt("symmetric", None, EncryptionContext={"a": "b"}),
    ),
    # RSA_2048 (256 bytes): OAEP-SHA-256 takes 256 - 2*32 - 2 = 190 bytes, SHA-1 214.
    "OAEP-SHA-256 plaintext of 191 bytes": (
        lambda kms, k: kms.encrypt(
            KeyId=k["rsa_enc"], Plaintext=b"x" * 191, EncryptionAlgorithm="RSAES_OAEP_SHA_256"
        ),
        "ValidationException",
        lambda kms, k: kms.encrypt(
            KeyId=k["rsa_enc"], Plaintext=b"x" * 190, EncryptionAlgorithm="RSAES_OAEP_SHA_256"
        ),
    ),
    "OAEP-SHA-1 plaintext of 215 bytes": (
        lambda kms, k: kms.encrypt(
            KeyId=k["rsa_enc"], Plaintext=b"x" * 215, EncryptionAlgorithm="RSAES_OAEP_SHA_1"
        ),
        "ValidationException",
        lambda kms, k: kms.encrypt(
            KeyId=k["rsa_enc"], Plaintext=b"x" * 214, EncryptionAlgorithm="RSAES_OAEP_SHA_1"
        ),
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusal(kms: Any, keys: Keys, case: str) -> None:
    refused, code, right = REFUSALS[case]
    with pytest.raises(ClientError) as error:
        refused(kms, keys)
    assert error.value.response["Error"]["Code"] == code
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    if right is not None:
        right(kms, keys)


# --- Signatures that do not verify ---------------------------------------------------

SIGNERS = {
    "rsa_sign": "RSASSA_PSS_SHA_256",
    "p256_sign": "ECDSA_SHA_256",
    "ed25519": "ED25519_SHA_512",
    "mldsa44": "ML_DSA_SHAKE_256",
}


@pytest.mark.parametrize("name", list(SIGNERS))
def test_verify_with_a_wrong_signature(kms: Any, keys: Keys, name: str) -> None:
    arn = keys[name]
    algorithm = SIGNERS[name]
    signature = kms.sign(KeyId=arn, Message=MESSAGE, SigningAlgorithm=algorithm)["Signature"]
    ok = kms.verify(KeyId=arn, Message=MESSAGE, Signature=signature, SigningAlgorithm=algorithm)
    assert ok["SignatureValid"] is True
    assert ok["KeyId"] == arn

    flipped = bytearray(signature)
    flipped[len(flipped) // 2] ^= 0x01
    other_signer = {"p256_sign": "p256_sign_2"}.get(name)
    wrong = {
        "another message": (MESSAGE + b"!", signature),
        "a flipped bit": (MESSAGE, bytes(flipped)),
        "a truncated signature": (MESSAGE, signature[:-1]),
        "a longer signature": (MESSAGE, signature + b"\x00"),
        "random bytes": (MESSAGE, os.urandom(len(signature))),
    }
    if other_signer is not None:
        by_other = kms.sign(KeyId=keys[other_signer], Message=MESSAGE, SigningAlgorithm=algorithm)
        wrong["another key's signature"] = (MESSAGE, by_other["Signature"])
    for what, (message, bad) in wrong.items():
        with pytest.raises(ClientError) as error:
            kms.verify(KeyId=arn, Message=message, Signature=bad, SigningAlgorithm=algorithm)
        assert error.value.response["Error"]["Code"] == "KMSInvalidSignatureException", what


# --- CreateKey ----------------------------------------------------------------------


def _key_count(kms: Any) -> int:
    return sum(len(page["Keys"]) for page in kms.get_paginator("list_keys").paginate())


@pytest.mark.parametrize(
    ("spec", "usage", "code"),
    [
        ("HMAC_256", "ENCRYPT_DECRYPT", "ValidationException"),
        ("HMAC_256", None, "ValidationException"),  # KeyUsage is required off symmetric keys
        ("ECC_SECG_P256K1", "KEY_AGREEMENT", "ValidationException"),
        ("ECC_NIST_P256", None, "ValidationException"),
        ("ECC_NIST_P256", "ENCRYPT_DECRYPT", "ValidationException"),
        ("ECC_NIST_EDWARDS25519", "KEY_AGREEMENT", "ValidationException"),
        ("ML_DSA_44", "ENCRYPT_DECRYPT", "ValidationException"),
        ("RSA_2048", "KEY_AGREEMENT", "ValidationException"),
        ("RSA_2048", "GENERATE_VERIFY_MAC", "ValidationException"),
        ("SYMMETRIC_DEFAULT", "SIGN_VERIFY", "ValidationException"),
        ("SM2", "SIGN_VERIFY", "UnsupportedOperationException"),
        ("SM2", "ENCRYPT_DECRYPT", "UnsupportedOperationException"),
    ],
)
def test_create_key_refuses_incompatible_spec_and_usage(
    kms: Any, spec: str, usage: str | None, code: str
) -> None:
    before = _key_count(kms)
    kwargs = {"KeySpec": spec} if usage is None else {"KeySpec": spec, "KeyUsage": usage}
    with pytest.raises(ClientError) as error:
        kms.create_key(**kwargs)
    assert error.value.response["Error"]["Code"] == code
    assert _key_count(kms) == before


# --- RSA ciphertexts ----------------------------------------------------------------


BLOB_FORMAT_V1 = 0x01  # the first byte of every keycask symmetric ciphertext blob


def _not_like_a_blob(encrypt: Callable[[], bytes]) -> bytes:
    while True:
        blob = encrypt()
        if blob[0] != BLOB_FORMAT_V1:
            return blob


def test_rsa_decrypt_refusals(kms: Any, keys: Keys) -> None:
    arn = keys["rsa_enc"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=arn)["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    plaintext = b"rsa plaintext " + os.urandom(16)
    # Not starting with keycask's blob format byte: that case is the test below.
    outside = _not_like_a_blob(lambda: public.encrypt(plaintext, oaep))
    inside = _not_like_a_blob(
        lambda: kms.encrypt(
            KeyId=arn, Plaintext=plaintext, EncryptionAlgorithm="RSAES_OAEP_SHA_256"
        )["CiphertextBlob"]
    )
    right = {"KeyId": arn, "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}

    def refused(**kwargs: Any) -> str:
        return _code(lambda: kms.decrypt(**kwargs))

    for blob in (outside, inside):
        assert kms.decrypt(CiphertextBlob=blob, **right)["Plaintext"] == plaintext
        # Without KeyId keycask cannot know the key: a bare RSA ciphertext names none.
        assert refused(CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_256") == (
            "InvalidCiphertextException"
        )
        assert refused(CiphertextBlob=blob) == "InvalidCiphertextException"
        for position in (0, 1, len(blob) // 2, len(blob) - 1):
            tampered = bytearray(blob)
            tampered[position] ^= 0x01
            assert refused(CiphertextBlob=bytes(tampered), **right) == (
                "InvalidCiphertextException"
            ), position
        for changed in (blob[:-1], blob + b"\x00", b"\x00" + blob[1:], os.urandom(len(blob))):
            assert refused(CiphertextBlob=changed, **right) == "InvalidCiphertextException"
        assert (
            refused(CiphertextBlob=blob, KeyId=arn, EncryptionAlgorithm="RSAES_OAEP_SHA_1")
            == "InvalidCiphertextException"
        )
        assert (
            refused(
                CiphertextBlob=blob,
                KeyId=keys["rsa_enc_2"],
                EncryptionAlgorithm="RSAES_OAEP_SHA_256",
            )
            == "InvalidCiphertextException"
        )
        # RSA decryption must be told the algorithm, like encryption.
        assert refused(CiphertextBlob=blob, KeyId=arn) == "InvalidKeyUsageException"


def test_rsa_ciphertext_starting_like_a_blob_without_key_id(kms: Any, keys: Keys) -> None:
    public = serialization.load_der_public_key(
        kms.get_public_key(KeyId=keys["rsa_enc"])["PublicKey"]
    )
    assert isinstance(public, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    # Without KeyId, an RSA ciphertext whose first byte is 0x01 parses as a
    # keycask blob header naming a key id keycask never had: still an invalid
    # ciphertext, not "key does not exist" (that answer is for deleted keys).
    while (blob := public.encrypt(b"looks like a blob", oaep))[0] != BLOB_FORMAT_V1:
        pass
    assert (
        kms.decrypt(
            CiphertextBlob=blob, KeyId=keys["rsa_enc"], EncryptionAlgorithm="RSAES_OAEP_SHA_256"
        )["Plaintext"]
        == b"looks like a blob"
    )
    assert _code(lambda: kms.decrypt(CiphertextBlob=blob)) == "InvalidCiphertextException"


# --- DescribeKey's algorithm lists ---------------------------------------------------

RSA_SIGNING = {
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
}
ALGORITHM_FIELDS = (
    "EncryptionAlgorithms",
    "SigningAlgorithms",
    "MacAlgorithms",
    "KeyAgreementAlgorithms",
)


@pytest.mark.parametrize(
    ("spec", "usage", "field", "expected"),
    [
        ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "EncryptionAlgorithms", {"SYMMETRIC_DEFAULT"}),
        (
            "RSA_2048",
            "ENCRYPT_DECRYPT",
            "EncryptionAlgorithms",
            {"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"},
        ),
        ("RSA_2048", "SIGN_VERIFY", "SigningAlgorithms", RSA_SIGNING),
        ("ECC_NIST_P256", "SIGN_VERIFY", "SigningAlgorithms", {"ECDSA_SHA_256"}),
        ("ECC_NIST_P384", "SIGN_VERIFY", "SigningAlgorithms", {"ECDSA_SHA_384"}),
        ("ECC_NIST_P521", "SIGN_VERIFY", "SigningAlgorithms", {"ECDSA_SHA_512"}),
        ("ECC_SECG_P256K1", "SIGN_VERIFY", "SigningAlgorithms", {"ECDSA_SHA_256"}),
        ("ECC_NIST_P384", "KEY_AGREEMENT", "KeyAgreementAlgorithms", {"ECDH"}),
        (
            "ECC_NIST_EDWARDS25519",
            "SIGN_VERIFY",
            "SigningAlgorithms",
            {"ED25519_SHA_512", "ED25519_PH_SHA_512"},
        ),
        ("ML_DSA_65", "SIGN_VERIFY", "SigningAlgorithms", {"ML_DSA_SHAKE_256"}),
        ("HMAC_224", "GENERATE_VERIFY_MAC", "MacAlgorithms", {"HMAC_SHA_224"}),
        ("HMAC_256", "GENERATE_VERIFY_MAC", "MacAlgorithms", {"HMAC_SHA_256"}),
        ("HMAC_384", "GENERATE_VERIFY_MAC", "MacAlgorithms", {"HMAC_SHA_384"}),
        ("HMAC_512", "GENERATE_VERIFY_MAC", "MacAlgorithms", {"HMAC_SHA_512"}),
    ],
)
def test_describe_key_lists_the_algorithms_of_the_usage(
    kms: Any, spec: str, usage: str, field: str, expected: set[str]
) -> None:
    created = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
    meta = kms.describe_key(KeyId=created["KeyId"])["KeyMetadata"]
    assert meta == created
    assert meta["KeySpec"] == spec
    assert meta["CustomerMasterKeySpec"] == spec
    assert meta["KeyUsage"] == usage
    assert set(meta[field]) == expected
    assert len(meta[field]) == len(expected)  # no duplicates
    for other in ALGORITHM_FIELDS:
        if other != field:
            assert other not in meta, other
    if spec != "SYMMETRIC_DEFAULT" and not spec.startswith("HMAC_"):
        public = kms.get_public_key(KeyId=created["KeyId"])
        assert set(public[field]) == expected
        for other in ALGORITHM_FIELDS:
            if other != field:
                assert other not in public, other


# --- Rotation -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rsa_sign", "p256_agree", "ed25519", "mldsa44", "hmac256"])
def test_keys_that_cannot_rotate(kms: Any, keys: Keys, name: str) -> None:
    arn = keys[name]
    for operation in (kms.enable_key_rotation, kms.disable_key_rotation, kms.rotate_key_on_demand):
        assert _code(lambda operation=operation: operation(KeyId=arn)) == (
            "UnsupportedOperationException"
        ), operation.__name__
    # The same calls work on a symmetric key.
    kms.enable_key_rotation(KeyId=keys["symmetric"])
    kms.disable_key_rotation(KeyId=keys["symmetric"])


# --- Nothing secret at rest -------------------------------------------------------------


def _private_numbers_needles(name: str, private: Any) -> list[Needle]:
    """The secret numbers of a private key, as a careless writer might store them."""
    if isinstance(private, rsa.RSAPrivateKey):
        numbers = private.private_numbers()
        size = (private.key_size + 7) // 8
        return [
            _binary(f"{name} d", numbers.d.to_bytes(size, "big")),
            _binary(f"{name} p", numbers.p.to_bytes(size // 2, "big")),
        ]
    if isinstance(private, ec.EllipticCurvePrivateKey):
        size = (private.curve.key_size + 7) // 8
        return [
            _binary(f"{name} scalar", private.private_numbers().private_value.to_bytes(size, "big"))
        ]
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return [_binary(f"{name} seed", private.private_bytes_raw())]
    assert isinstance(private, (mldsa.MLDSA44PrivateKey, mldsa.MLDSA65PrivateKey))
    return [_binary(f"{name} seed", private.private_bytes_raw())]


async def _read_keys(data_dir: Path, key_ids: dict[str, str]) -> dict[str, bytes]:
    """The stored material of each key (PKCS#8 or HMAC key), read with
    keycask's own code, as test_no_plaintext_at_rest does."""
    settings = config.load(dev=True, data_dir=str(data_dir), env={})
    storage, barrier = await open_store(settings)
    assert isinstance(barrier, Barrier)
    try:
        store = KeyStore(barrier)
        found = {}
        for name, key_id in key_ids.items():
            material = await store.material(uuid.UUID(key_id), 1)
            assert material is not None, name
            found[name] = material.reveal()
        return found
    finally:
        await storage.close()


def test_no_private_key_or_secret_at_rest_in_the_clear(fresh_server: Server) -> None:
    server = fresh_server
    kms = server.client()
    needles: list[Needle] = []
    symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
    made = {
        name: kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
        for name, (spec, usage) in {
            "rsa_sign": ("RSA_2048", "SIGN_VERIFY"),
            "rsa_enc": ("RSA_2048", "ENCRYPT_DECRYPT"),
            "p256_sign": ("ECC_NIST_P256", "SIGN_VERIFY"),
            "p384_agree": ("ECC_NIST_P384", "KEY_AGREEMENT"),
            "ed25519": ("ECC_NIST_EDWARDS25519", "SIGN_VERIFY"),
            "mldsa44": ("ML_DSA_44", "SIGN_VERIFY"),
            "hmac256": ("HMAC_256", "GENERATE_VERIFY_MAC"),
        }.items()
    }
    # Use every key.
    for name, algorithm in (
        ("rsa_sign", "RSASSA_PSS_SHA_256"),
        ("p256_sign", "ECDSA_SHA_256"),
        ("ed25519", "ED25519_SHA_512"),
        ("mldsa44", "ML_DSA_SHAKE_256"),
    ):
        signature = kms.sign(KeyId=made[name], Message=MESSAGE, SigningAlgorithm=algorithm)
        kms.verify(
            KeyId=made[name],
            Message=MESSAGE,
            Signature=signature["Signature"],
            SigningAlgorithm=algorithm,
        )
    mac = kms.generate_mac(KeyId=made["hmac256"], Message=MESSAGE, MacAlgorithm="HMAC_SHA_256")
    rsa_plaintext = os.urandom(64)
    rsa_blob = kms.encrypt(
        KeyId=made["rsa_enc"], Plaintext=rsa_plaintext, EncryptionAlgorithm="RSAES_OAEP_SHA_256"
    )["CiphertextBlob"]
    assert (
        kms.decrypt(
            CiphertextBlob=rsa_blob, KeyId=made["rsa_enc"], EncryptionAlgorithm="RSAES_OAEP_SHA_256"
        )["Plaintext"]
        == rsa_plaintext
    )
    needles.append(_binary("RSA plaintext", rsa_plaintext))
    peer = ec.generate_private_key(ec.SECP384R1())
    secret = kms.derive_shared_secret(
        KeyId=made["p384_agree"],
        KeyAgreementAlgorithm="ECDH",
        PublicKey=peer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )["SharedSecret"]
    needles.append(_binary("ECDH shared secret", secret))

    # Data key pairs: the plaintext private keys the caller got.
    context = {"purpose": "at-rest"}
    for spec in ("RSA_2048", "ECC_NIST_P256", "ECC_NIST_EDWARDS25519"):
        pair = kms.generate_data_key_pair(
            KeyId=symmetric, KeyPairSpec=spec, EncryptionContext=context
        )
        plaintext = pair["PrivateKeyPlaintext"]
        opened = kms.decrypt(
            CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext=context
        )
        assert opened["Plaintext"] == plaintext
        needles.append(_binary(f"data key pair {spec}", plaintext))
        private = serialization.load_der_private_key(plaintext, password=None)
        needles += _private_numbers_needles(f"data key pair {spec}", private)
        bare = kms.generate_data_key_pair_without_plaintext(
            KeyId=symmetric, KeyPairSpec=spec, EncryptionContext=context
        )
        opened = kms.decrypt(
            CiphertextBlob=bare["PrivateKeyCiphertextBlob"], EncryptionContext=context
        )
        needles.append(_binary(f"data key pair without plaintext {spec}", opened["Plaintext"]))

    # The KMS keys' own private keys and HMAC key, read with keycask's code;
    # each is proven to be the real key before it is searched for.
    stored = asyncio.run(_read_keys(server.data_dir, made))
    for name, material in stored.items():
        if name == "hmac256":
            assert hmac.digest(material, MESSAGE, "sha256") == mac["Mac"]
            needles.append(_binary("HMAC key", material))
            continue
        private = serialization.load_der_private_key(material, password=None)
        public = kms.get_public_key(KeyId=made[name])["PublicKey"]
        assert (
            private.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            == public
        ), name
        needles.append(_binary(f"{name} PKCS#8", material))
        needles += _private_numbers_needles(name, private)

    _prove_scan_works(server, needles)
    assert scan(server, needles) == []
    assert server.stop(signal.SIGTERM) == 0
    _prove_scan_works(server, needles)
    assert scan(server, needles) == []
