"""Asymmetric and HMAC keys, checked with tools that are not keycask.

Every signature keycask makes is verified with the ``cryptography`` library
and (RSA, ECDSA, Ed25519) the ``openssl`` command line, using nothing but the
public key GetPublicKey returned; every RSA-OAEP ciphertext made outside
keycask decrypts inside it; ECDH agrees with the peer's own exchange; data key
pairs load as PKCS#8 / SubjectPublicKeyInfo and match; MessageType DIGEST is
signed as given, never hashed again. The last test is the README's JWT
recipe, run line by line through bash with the real AWS CLI and openssl.

Keys are made once per module and (spec, usage) and shared; RSA_4096 keys are
slow to make, so each RSA spec's tests are one test per spec, not per algorithm.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from Crypto.Hash import SHA512
from Crypto.Signature import eddsa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

if TYPE_CHECKING:
    from conftest import Server

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
AWS_BIN = Path(sys.executable).parent

RSA_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")
RSA_SIGNING = (
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
)
# Signing key spec -> the algorithms it must sign with (RSA and ECDSA).
HASHED_SIGNING: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(RSA_SPECS, RSA_SIGNING),
    "ECC_NIST_P256": ("ECDSA_SHA_256",),
    "ECC_NIST_P384": ("ECDSA_SHA_384",),
    "ECC_NIST_P521": ("ECDSA_SHA_512",),
    "ECC_SECG_P256K1": ("ECDSA_SHA_256",),
}
# Algorithm -> (scheme, hash, openssl digest name).
ALGORITHMS: dict[str, tuple[str, type[hashes.HashAlgorithm], str]] = {
    "RSASSA_PSS_SHA_256": ("PSS", hashes.SHA256, "sha256"),
    "RSASSA_PSS_SHA_384": ("PSS", hashes.SHA384, "sha384"),
    "RSASSA_PSS_SHA_512": ("PSS", hashes.SHA512, "sha512"),
    "RSASSA_PKCS1_V1_5_SHA_256": ("PKCS1", hashes.SHA256, "sha256"),
    "RSASSA_PKCS1_V1_5_SHA_384": ("PKCS1", hashes.SHA384, "sha384"),
    "RSASSA_PKCS1_V1_5_SHA_512": ("PKCS1", hashes.SHA512, "sha512"),
    "ECDSA_SHA_256": ("ECDSA", hashes.SHA256, "sha256"),
    "ECDSA_SHA_384": ("ECDSA", hashes.SHA384, "sha384"),
    "ECDSA_SHA_512": ("ECDSA", hashes.SHA512, "sha512"),
}
CURVES: dict[str, ec.EllipticCurve] = {
    "ECC_NIST_P256": ec.SECP256R1(),
    "ECC_NIST_P384": ec.SECP384R1(),
    "ECC_NIST_P521": ec.SECP521R1(),
    "ECC_SECG_P256K1": ec.SECP256K1(),
}
RSA_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
MLDSA_PUBLIC: dict[str, type[Any]] = {
    "ML_DSA_44": mldsa.MLDSA44PublicKey,
    "ML_DSA_65": mldsa.MLDSA65PublicKey,
    "ML_DSA_87": mldsa.MLDSA87PublicKey,
}
# FIPS 204 Table 2: signature sizes.
MLDSA_SIGNATURE_SIZE = {"ML_DSA_44": 2420, "ML_DSA_65": 3309, "ML_DSA_87": 4627}
DATA_KEY_PAIR_SPECS = (
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "ECC_NIST_EDWARDS25519",
)
HMAC_SPECS = {
    "HMAC_224": ("HMAC_SHA_224", 28),
    "HMAC_256": ("HMAC_SHA_256", 32),
    "HMAC_384": ("HMAC_SHA_384", 48),
    "HMAC_512": ("HMAC_SHA_512", 64),
}


class Keys:
    """One KMS key per (spec, usage), made on first use and shared."""

    def __init__(self, kms: Any) -> None:
        self.kms = kms
        self._made: dict[tuple[str, str], dict[str, Any]] = {}
        self._public: dict[tuple[str, str], bytes] = {}

    def get(self, spec: str, usage: str) -> dict[str, Any]:
        if (spec, usage) not in self._made:
            meta = self.kms.create_key(
                KeySpec=spec, KeyUsage=usage, Description=f"interop {spec} {usage}"
            )["KeyMetadata"]
            assert meta["KeySpec"] == spec
            assert meta["KeyUsage"] == usage
            self._made[spec, usage] = meta
        return self._made[spec, usage]

    def arn(self, spec: str, usage: str) -> str:
        return str(self.get(spec, usage)["Arn"])

    def public_der(self, spec: str, usage: str) -> bytes:
        """GetPublicKey's DER SubjectPublicKeyInfo, checked against DescribeKey."""
        if (spec, usage) not in self._public:
            meta = self.get(spec, usage)
            out = self.kms.get_public_key(KeyId=meta["KeyId"])
            assert out["KeyId"] == meta["Arn"]
            assert out["KeySpec"] == spec
            assert out["CustomerMasterKeySpec"] == spec
            assert out["KeyUsage"] == usage
            for field in (
                "SigningAlgorithms",
                "EncryptionAlgorithms",
                "KeyAgreementAlgorithms",
            ):
                assert out.get(field) == meta.get(field), field
            self._public[spec, usage] = out["PublicKey"]
        return self._public[spec, usage]

    def public(self, spec: str, usage: str) -> Any:
        return serialization.load_der_public_key(self.public_der(spec, usage))


@pytest.fixture(scope="module")
def keys(server: Server) -> Keys:
    return Keys(server.client())


@pytest.fixture(scope="module")
def kms(keys: Keys) -> Any:
    return keys.kms


@pytest.fixture(scope="module")
def symmetric_key(kms: Any) -> str:
    return str(kms.create_key(Description="interop data key pairs")["KeyMetadata"]["Arn"])


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def _openssl(
    *args: str, cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [OPENSSL, *args], cwd=cwd, input=stdin, capture_output=True, timeout=60, check=False
    )


def _pem_file(der: bytes, directory: Path, name: str = "pub") -> Path:
    """Convert DER SPKI to PEM with openssl (so openssl parses keycask's DER)
    and check it matches cryptography's own PEM of the same key."""
    (directory / f"{name}.der").write_bytes(der)
    proc = _openssl(
        "pkey", "-pubin", "-inform", "DER", "-in", f"{name}.der", "-out", f"{name}.pem",
        cwd=directory,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pem = directory / f"{name}.pem"
    ours = serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert pem.read_bytes() == ours
    return pem


def _digest(algorithm: str, message: bytes) -> bytes:
    h = hashes.Hash(ALGORITHMS[algorithm][1]())
    h.update(message)
    return h.finalize()


def _crypto_verify(
    public: Any, algorithm: str, data: bytes, signature: bytes, *, prehashed: bool
) -> None:
    """cryptography's verification; raises InvalidSignature."""
    scheme, hash_type, _ = ALGORITHMS[algorithm]
    hash_arg: Any = Prehashed(hash_type()) if prehashed else hash_type()
    if scheme == "PSS":
        # AWS's PSS: MGF1 over the message hash, salt exactly the digest length.
        pss = padding.PSS(mgf=padding.MGF1(hash_type()), salt_length=hash_type.digest_size)
        public.verify(signature, data, pss, hash_arg)
    elif scheme == "PKCS1":
        public.verify(signature, data, padding.PKCS1v15(), hash_arg)
    else:
        public.verify(signature, data, ec.ECDSA(hash_arg))


def _sigopts(algorithm: str, flag: str) -> list[str]:
    scheme, hash_type, _ = ALGORITHMS[algorithm]
    if scheme != "PSS":
        return []
    # The exact salt length AWS uses (the digest's), not openssl's "auto".
    return [
        flag, "rsa_padding_mode:pss",
        flag, f"rsa_pss_saltlen:{hash_type.digest_size}",
    ]  # fmt: skip


def _openssl_verify_raw(
    directory: Path, pem: Path, algorithm: str, message: bytes, signature: bytes
) -> subprocess.CompletedProcess[bytes]:
    (directory / "msg.bin").write_bytes(message)
    (directory / "sig.bin").write_bytes(signature)
    name = ALGORITHMS[algorithm][2]
    return _openssl(
        "dgst", f"-{name}", "-verify", str(pem), "-signature", "sig.bin",
        *_sigopts(algorithm, "-sigopt"), "msg.bin",
        cwd=directory,
    )  # fmt: skip


def _openssl_verify_digest(
    directory: Path, pem: Path, algorithm: str, digest: bytes, signature: bytes
) -> subprocess.CompletedProcess[bytes]:
    (directory / "digest.bin").write_bytes(digest)
    (directory / "sig.bin").write_bytes(signature)
    name = ALGORITHMS[algorithm][2]
    return _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(pem),
        "-in", "digest.bin", "-sigfile", "sig.bin",
        *_sigopts(algorithm, "-pkeyopt"), "-pkeyopt", f"digest:{name}",
        cwd=directory,
    )  # fmt: skip


# --- Signatures: RSA and ECDSA -------------------------------------------------


@pytest.mark.parametrize("spec", list(HASHED_SIGNING))
def test_signatures_verify_with_cryptography_and_openssl(
    keys: Keys, spec: str, tmp_path: Path
) -> None:
    kms = keys.kms
    arn = keys.arn(spec, "SIGN_VERIFY")
    public = keys.public(spec, "SIGN_VERIFY")
    if spec in RSA_BITS:
        assert isinstance(public, rsa.RSAPublicKey)
        assert public.key_size == RSA_BITS[spec]
        assert public.public_numbers().e == 65537
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.name == CURVES[spec].name
    assert set(keys.get(spec, "SIGN_VERIFY")["SigningAlgorithms"]) == set(HASHED_SIGNING[spec])
    pem = _pem_file(keys.public_der(spec, "SIGN_VERIFY"), tmp_path)
    message = b"keycask interop " + spec.encode() + b"\x00\xff" + os.urandom(300)
    other = message[:-1] + bytes([message[-1] ^ 1])

    for algorithm in HASHED_SIGNING[spec]:
        digest = _digest(algorithm, message)
        for message_type, payload in (("RAW", message), ("DIGEST", digest)):
            out = kms.sign(
                KeyId=arn, Message=payload, MessageType=message_type, SigningAlgorithm=algorithm
            )
            assert out["KeyId"] == arn
            assert out["SigningAlgorithm"] == algorithm
            signature = out["Signature"]
            where = f"{spec} {algorithm} {message_type}"
            if spec in RSA_BITS:
                assert len(signature) == RSA_BITS[spec] // 8, where
            else:
                decode_dss_signature(signature)  # DER (r, s), as AWS returns

            # cryptography: the message, or the digest as Prehashed.
            _crypto_verify(public, algorithm, message, signature, prehashed=False)
            _crypto_verify(public, algorithm, digest, signature, prehashed=True)
            with pytest.raises(InvalidSignature):
                _crypto_verify(public, algorithm, other, signature, prehashed=False)
            if ALGORITHMS[algorithm][0] == "PSS":
                # Salt length is exactly the digest length: one less does not verify.
                _, hash_type, _ = ALGORITHMS[algorithm]
                short_salt = padding.PSS(
                    mgf=padding.MGF1(hash_type()), salt_length=hash_type.digest_size - 1
                )
                with pytest.raises(InvalidSignature):
                    public.verify(signature, message, short_salt, hash_type())

            # openssl: dgst over the message, pkeyutl over the digest.
            proc = _openssl_verify_raw(tmp_path, pem, algorithm, message, signature)
            assert proc.returncode == 0, f"{where}: {proc.stdout!r} {proc.stderr!r}"
            assert b"Verified OK" in proc.stdout
            proc = _openssl_verify_digest(tmp_path, pem, algorithm, digest, signature)
            assert proc.returncode == 0, f"{where}: {proc.stdout!r} {proc.stderr!r}"
            assert b"Signature Verified Successfully" in proc.stdout
            proc = _openssl_verify_raw(tmp_path, pem, algorithm, other, signature)
            assert proc.returncode != 0, f"{where}: openssl verified a changed message"

            # keycask's own Verify takes the signature in the other message type.
            cross_type, cross_payload = (
                ("DIGEST", digest) if message_type == "RAW" else ("RAW", message)
            )
            verified = kms.verify(
                KeyId=arn,
                Message=cross_payload,
                MessageType=cross_type,
                Signature=signature,
                SigningAlgorithm=algorithm,
            )
            assert verified["SignatureValid"] is True
            assert verified["SigningAlgorithm"] == algorithm


@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [
        ("ECC_NIST_P256", "ECDSA_SHA_256"),
        ("ECC_SECG_P256K1", "ECDSA_SHA_256"),
        ("ECC_NIST_P384", "ECDSA_SHA_384"),
        ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256"),
        ("RSA_2048", "RSASSA_PSS_SHA_256"),
    ],
)
def test_digest_is_signed_as_given_never_hashed_again(
    keys: Keys, spec: str, algorithm: str
) -> None:
    kms = keys.kms
    arn = keys.arn(spec, "SIGN_VERIFY")
    public = keys.public(spec, "SIGN_VERIFY")
    message = b"the original message " + os.urandom(64)
    digest = _digest(algorithm, message)
    signature = kms.sign(
        KeyId=arn, Message=digest, MessageType="DIGEST", SigningAlgorithm=algorithm
    )["Signature"]

    # An independent library: the digest as a digest verifies...
    _crypto_verify(public, algorithm, digest, signature, prehashed=True)
    # ...and the digest taken for a message (hashed once more) does not.
    with pytest.raises(InvalidSignature):
        _crypto_verify(public, algorithm, digest, signature, prehashed=False)

    # keycask: the DIGEST signature is a signature of the original message.
    ok = kms.verify(
        KeyId=arn,
        Message=message,
        MessageType="RAW",
        Signature=signature,
        SigningAlgorithm=algorithm,
    )
    assert ok["SignatureValid"] is True
    with pytest.raises(ClientError) as error:
        kms.verify(
            KeyId=arn,
            Message=digest,
            MessageType="RAW",
            Signature=signature,
            SigningAlgorithm=algorithm,
        )
    assert _code(error) == "KMSInvalidSignatureException"
    # MessageType defaults to RAW: the digest sent without it is hashed.
    raw_of_digest = kms.sign(KeyId=arn, Message=digest, SigningAlgorithm=algorithm)["Signature"]
    _crypto_verify(public, algorithm, digest, raw_of_digest, prehashed=False)
    with pytest.raises(InvalidSignature):
        _crypto_verify(public, algorithm, digest, raw_of_digest, prehashed=True)

    if ALGORITHMS[algorithm][0] == "PKCS1":
        # PKCS#1 v1.5 is deterministic: RAW of the message is the same signature.
        raw = kms.sign(KeyId=arn, Message=message, MessageType="RAW", SigningAlgorithm=algorithm)
        assert raw["Signature"] == signature


# --- Signatures: Ed25519 and ML-DSA -------------------------------------------


def test_ed25519_signatures(keys: Keys, tmp_path: Path) -> None:
    spec = "ECC_NIST_EDWARDS25519"
    kms = keys.kms
    arn = keys.arn(spec, "SIGN_VERIFY")
    public = keys.public(spec, "SIGN_VERIFY")
    assert isinstance(public, ed25519.Ed25519PublicKey)
    assert set(keys.get(spec, "SIGN_VERIFY")["SigningAlgorithms"]) == {
        "ED25519_SHA_512",
        "ED25519_PH_SHA_512",
    }
    message = b"ed25519 " + os.urandom(200)
    out = kms.sign(
        KeyId=arn, Message=message, MessageType="RAW", SigningAlgorithm="ED25519_SHA_512"
    )
    signature = out["Signature"]
    assert out["SigningAlgorithm"] == "ED25519_SHA_512"
    assert len(signature) == 64
    public.verify(signature, message)
    with pytest.raises(InvalidSignature):
        public.verify(signature, message + b"!")
    # Ed25519 (RFC 8032) is deterministic.
    again = kms.sign(KeyId=arn, Message=message, SigningAlgorithm="ED25519_SHA_512")
    assert again["Signature"] == signature

    # openssl: Ed25519 takes the raw message (-rawin), no digest.
    pem = _pem_file(keys.public_der(spec, "SIGN_VERIFY"), tmp_path)
    (tmp_path / "msg.bin").write_bytes(message)
    (tmp_path / "other.bin").write_bytes(message + b"!")
    (tmp_path / "sig.bin").write_bytes(signature)
    verify = ("pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin", "-sigfile", "sig.bin")
    proc = _openssl(*verify, "-in", "msg.bin", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert b"Signature Verified Successfully" in proc.stdout
    assert _openssl(*verify, "-in", "other.bin", cwd=tmp_path).returncode != 0

    assert kms.verify(
        KeyId=arn, Message=message, Signature=signature, SigningAlgorithm="ED25519_SHA_512"
    )["SignatureValid"]
    # Pure Ed25519 hashes inside the algorithm: there is no digest to give it.
    with pytest.raises(ClientError) as error:
        kms.sign(
            KeyId=arn,
            Message=hashlib.sha512(message).digest(),
            MessageType="DIGEST",
            SigningAlgorithm="ED25519_SHA_512",
        )
    assert _code(error) == "ValidationException"

    # Ed25519ph (RFC 8032 HashEdDSA) over a SHA-512 digest, which AWS prehashes
    # once more; RAW is refused, as AWS refuses it for this algorithm.
    digest = hashlib.sha512(message).digest()
    out = kms.sign(
        KeyId=arn, Message=digest, MessageType="DIGEST", SigningAlgorithm="ED25519_PH_SHA_512"
    )
    assert out["SigningAlgorithm"] == "ED25519_PH_SHA_512"
    ph_signature = out["Signature"]
    assert len(ph_signature) == 64
    # Checked outside keycask (pycryptodome's RFC 8032 Ed25519ph; OpenSSL 3.0 has none).
    ph_verifier = eddsa.new(eddsa.import_public_key(public.public_bytes_raw()), "rfc8032")
    ph_verifier.verify(SHA512.new(digest), ph_signature)
    with pytest.raises(ValueError, match="not authentic"):
        ph_verifier.verify(SHA512.new(hashlib.sha512(message + b"!").digest()), ph_signature)
    with pytest.raises(InvalidSignature):
        public.verify(ph_signature, digest)  # not pure Ed25519
    assert kms.verify(
        KeyId=arn,
        Message=digest,
        MessageType="DIGEST",
        Signature=ph_signature,
        SigningAlgorithm="ED25519_PH_SHA_512",
    )["SignatureValid"]
    with pytest.raises(ClientError) as error:
        kms.verify(
            KeyId=arn,
            Message=digest,
            MessageType="DIGEST",
            Signature=signature,
            SigningAlgorithm="ED25519_PH_SHA_512",
        )
    assert _code(error) == "KMSInvalidSignatureException"
    for call, extra in ((kms.sign, {}), (kms.verify, {"Signature": ph_signature})):
        with pytest.raises(ClientError) as error:
            call(
                KeyId=arn,
                Message=message,
                MessageType="RAW",
                SigningAlgorithm="ED25519_PH_SHA_512",
                **extra,
            )
        assert _code(error) == "ValidationException"


def _fips204_mu(public: Any, message: bytes) -> bytes:
    """FIPS 204 Algorithm 2/7: mu = SHAKE256(tr || M', 64), tr = SHAKE256(pk, 64),
    M' = 0 || |ctx| || ctx || M with the empty context."""
    tr = hashlib.shake_256(public.public_bytes_raw()).digest(64)
    return hashlib.shake_256(tr + b"\x00\x00" + message).digest(64)


@pytest.mark.parametrize("spec", list(MLDSA_PUBLIC))
def test_ml_dsa_signatures(keys: Keys, spec: str) -> None:
    kms = keys.kms
    arn = keys.arn(spec, "SIGN_VERIFY")
    public = keys.public(spec, "SIGN_VERIFY")
    assert isinstance(public, MLDSA_PUBLIC[spec])
    assert keys.get(spec, "SIGN_VERIFY")["SigningAlgorithms"] == ["ML_DSA_SHAKE_256"]
    message = b"ml-dsa " + os.urandom(500)

    signature = kms.sign(
        KeyId=arn, Message=message, MessageType="RAW", SigningAlgorithm="ML_DSA_SHAKE_256"
    )["Signature"]
    assert len(signature) == MLDSA_SIGNATURE_SIZE[spec]
    public.verify(signature, message)  # the empty context, as AWS signs
    with pytest.raises(InvalidSignature):
        public.verify(signature, message + b"!")
    with pytest.raises(InvalidSignature):
        public.verify(signature, message, b"some context")

    # EXTERNAL_MU: mu computed outside keycask from the public key alone.
    mu_hasher = mldsa.MLDSAMuHasher(public)
    mu_hasher.update(message)
    mu = mu_hasher.finalize()
    assert mu == _fips204_mu(public, message)
    out = kms.sign(
        KeyId=arn, Message=mu, MessageType="EXTERNAL_MU", SigningAlgorithm="ML_DSA_SHAKE_256"
    )
    mu_signature = out["Signature"]
    assert out["SigningAlgorithm"] == "ML_DSA_SHAKE_256"
    public.verify(mu_signature, message)  # a signature of the message itself
    public.verify_mu(mu_signature, mu)
    with pytest.raises(InvalidSignature):
        public.verify(mu_signature, message + b"!")

    # keycask verifies each signature in the other message type.
    assert kms.verify(
        KeyId=arn,
        Message=message,
        MessageType="RAW",
        Signature=mu_signature,
        SigningAlgorithm="ML_DSA_SHAKE_256",
    )["SignatureValid"]
    assert kms.verify(
        KeyId=arn,
        Message=mu,
        MessageType="EXTERNAL_MU",
        Signature=signature,
        SigningAlgorithm="ML_DSA_SHAKE_256",
    )["SignatureValid"]
    # ML-DSA has no DIGEST message type.
    with pytest.raises(ClientError) as error:
        kms.sign(
            KeyId=arn,
            Message=hashlib.sha256(message).digest(),
            MessageType="DIGEST",
            SigningAlgorithm="ML_DSA_SHAKE_256",
        )
    assert _code(error) == "ValidationException"


# --- RSA-OAEP -------------------------------------------------------------------

OAEP = {"RSAES_OAEP_SHA_256": ("sha256", hashes.SHA256), "RSAES_OAEP_SHA_1": ("sha1", hashes.SHA1)}


@pytest.mark.parametrize("spec", RSA_SPECS)
def test_rsa_oaep_from_openssl_and_cryptography_decrypts_in_keycask(
    keys: Keys, spec: str, tmp_path: Path
) -> None:
    kms = keys.kms
    arn = keys.arn(spec, "ENCRYPT_DECRYPT")
    public = keys.public(spec, "ENCRYPT_DECRYPT")
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == RSA_BITS[spec]
    assert set(keys.get(spec, "ENCRYPT_DECRYPT")["EncryptionAlgorithms"]) == set(OAEP)
    pem = _pem_file(keys.public_der(spec, "ENCRYPT_DECRYPT"), tmp_path)
    size = RSA_BITS[spec] // 8

    for algorithm, (md, hash_type) in OAEP.items():
        other_algorithm = next(a for a in OAEP if a != algorithm)
        limit = size - 2 * hash_type.digest_size - 2  # RFC 8017 7.1.1
        for plaintext in (b"\x00openssl " + os.urandom(20), os.urandom(limit)):
            # openssl pkeyutl, OAEP with MGF1 of the same hash.
            (tmp_path / "pt.bin").write_bytes(plaintext)
            proc = _openssl(
                "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pem),
                "-pkeyopt", "rsa_padding_mode:oaep",
                "-pkeyopt", f"rsa_oaep_md:{md}", "-pkeyopt", f"rsa_mgf1_md:{md}",
                "-in", "pt.bin", "-out", "ct.bin",
                cwd=tmp_path,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            from_openssl = (tmp_path / "ct.bin").read_bytes()
            from_cryptography = public.encrypt(
                plaintext,
                padding.OAEP(mgf=padding.MGF1(hash_type()), algorithm=hash_type(), label=None),
            )
            for ciphertext in (from_openssl, from_cryptography):
                assert len(ciphertext) == size
                out = kms.decrypt(
                    CiphertextBlob=ciphertext, KeyId=arn, EncryptionAlgorithm=algorithm
                )
                assert out["Plaintext"] == plaintext
                assert out["KeyId"] == arn
                assert out["EncryptionAlgorithm"] == algorithm
                with pytest.raises(ClientError) as error:
                    kms.decrypt(
                        CiphertextBlob=ciphertext, KeyId=arn, EncryptionAlgorithm=other_algorithm
                    )
                assert _code(error) == "InvalidCiphertextException"

            # keycask's Encrypt: bare RSAES-OAEP, modulus-sized, randomized.
            first = kms.encrypt(KeyId=arn, Plaintext=plaintext, EncryptionAlgorithm=algorithm)
            second = kms.encrypt(KeyId=arn, Plaintext=plaintext, EncryptionAlgorithm=algorithm)
            assert first["KeyId"] == arn
            assert first["EncryptionAlgorithm"] == algorithm
            assert len(first["CiphertextBlob"]) == size
            assert first["CiphertextBlob"] != second["CiphertextBlob"]
            for blob in (first["CiphertextBlob"], second["CiphertextBlob"]):
                out = kms.decrypt(CiphertextBlob=blob, KeyId=arn, EncryptionAlgorithm=algorithm)
                assert out["Plaintext"] == plaintext


def test_re_encrypt_between_rsa_and_symmetric(keys: Keys, symmetric_key: str) -> None:
    kms = keys.kms
    rsa_arn = keys.arn("RSA_2048", "ENCRYPT_DECRYPT")
    public = keys.public("RSA_2048", "ENCRYPT_DECRYPT")
    plaintext = b"re-encrypt me " + os.urandom(16)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    outside = public.encrypt(plaintext, oaep)

    to_symmetric = kms.re_encrypt(
        CiphertextBlob=outside,
        SourceKeyId=rsa_arn,
        SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
        DestinationKeyId=symmetric_key,
        DestinationEncryptionContext={"step": "one"},
    )
    assert to_symmetric["SourceKeyId"] == rsa_arn
    assert to_symmetric["KeyId"] == symmetric_key
    assert to_symmetric["SourceEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    assert to_symmetric["DestinationEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    blob = to_symmetric["CiphertextBlob"]
    assert (
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"step": "one"})["Plaintext"]
        == plaintext
    )

    back = kms.re_encrypt(
        CiphertextBlob=blob,
        SourceEncryptionContext={"step": "one"},
        DestinationKeyId=rsa_arn,
        DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_1",
    )
    assert back["KeyId"] == rsa_arn
    assert back["DestinationEncryptionAlgorithm"] == "RSAES_OAEP_SHA_1"
    assert len(back["CiphertextBlob"]) == 256
    out = kms.decrypt(
        CiphertextBlob=back["CiphertextBlob"], KeyId=rsa_arn, EncryptionAlgorithm="RSAES_OAEP_SHA_1"
    )
    assert out["Plaintext"] == plaintext


# --- ECDH ---------------------------------------------------------------------------

ECDH_CURVES = ("ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521")


def _spki(public: Any) -> bytes:
    return bytes(
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


@pytest.mark.parametrize("spec", ECDH_CURVES)
def test_ecdh_matches_the_peers_own_exchange(keys: Keys, spec: str, tmp_path: Path) -> None:
    kms = keys.kms
    arn = keys.arn(spec, "KEY_AGREEMENT")
    meta = keys.get(spec, "KEY_AGREEMENT")
    assert meta["KeyAgreementAlgorithms"] == ["ECDH"]
    assert "SigningAlgorithms" not in meta
    ours = keys.public(spec, "KEY_AGREEMENT")
    assert isinstance(ours, ec.EllipticCurvePublicKey)
    assert ours.curve.name == CURVES[spec].name
    field_size = (ours.curve.key_size + 7) // 8

    secrets = set()
    for _ in range(2):
        peer = ec.generate_private_key(CURVES[spec])
        out = kms.derive_shared_secret(
            KeyId=arn, KeyAgreementAlgorithm="ECDH", PublicKey=_spki(peer.public_key())
        )
        assert out["KeyId"] == arn
        assert out["KeyAgreementAlgorithm"] == "ECDH"
        assert out["KeyOrigin"] == "AWS_KMS"
        expected = peer.exchange(ec.ECDH(), ours)
        assert out["SharedSecret"] == expected
        assert len(expected) == field_size
        secrets.add(out["SharedSecret"])
    assert len(secrets) == 2

    # openssl agrees too (the last peer's key against keycask's public key).
    pem = _pem_file(keys.public_der(spec, "KEY_AGREEMENT"), tmp_path)
    (tmp_path / "peer.pem").write_bytes(
        peer.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    proc = _openssl(
        "pkeyutl", "-derive", "-inkey", "peer.pem", "-peerkey", str(pem), "-out", "secret.bin",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "secret.bin").read_bytes() == expected


@pytest.mark.parametrize("spec", ECDH_CURVES)
def test_ecdh_refuses_bad_peer_keys(keys: Keys, spec: str) -> None:
    kms = keys.kms
    arn = keys.arn(spec, "KEY_AGREEMENT")
    good = _spki(ec.generate_private_key(CURVES[spec]).public_key())
    # The uncompressed point ends the DER: change y, and the point is off the curve.
    off_curve = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(ValueError):
        serialization.load_der_public_key(off_curve)
    other_curve = next(c for c in ECDH_CURVES if c != spec)
    bad = {
        "point not on the curve": off_curve,
        "another curve": _spki(ec.generate_private_key(CURVES[other_curve]).public_key()),
        "secp256k1": _spki(ec.generate_private_key(ec.SECP256K1()).public_key()),
        "an Ed25519 key": _spki(ed25519.Ed25519PrivateKey.generate().public_key()),
        "an RSA key": keys.public_der("RSA_2048", "ENCRYPT_DECRYPT"),
        "garbage": os.urandom(91),
        "text": b"not a public key at all",
        "a bare point": good[-(2 * ((CURVES[spec].key_size + 7) // 8) + 1) :],
    }
    for what, public_key in bad.items():
        with pytest.raises(ClientError) as error:
            kms.derive_shared_secret(KeyId=arn, KeyAgreementAlgorithm="ECDH", PublicKey=public_key)
        assert _code(error) == "ValidationException", what
    # The good key still works: the refusals were about the keys.
    assert kms.derive_shared_secret(KeyId=arn, KeyAgreementAlgorithm="ECDH", PublicKey=good)


# --- Data key pairs ---------------------------------------------------------------


def _check_pair_type(spec: str, private: Any) -> None:
    if spec in RSA_BITS:
        assert isinstance(private, rsa.RSAPrivateKey)
        assert private.key_size == RSA_BITS[spec]
    elif spec in CURVES:
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert private.curve.name == CURVES[spec].name
    else:
        assert isinstance(private, ed25519.Ed25519PrivateKey)


def _pkcs8(private: Any) -> bytes:
    return bytes(
        private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.mark.parametrize("spec", DATA_KEY_PAIR_SPECS)
def test_data_key_pairs_load_and_match(kms: Any, symmetric_key: str, spec: str) -> None:
    context = {"purpose": "data-key-pair", "spec": spec}
    out = kms.generate_data_key_pair(
        KeyId=symmetric_key, KeyPairSpec=spec, EncryptionContext=context
    )
    assert out["KeyId"] == symmetric_key
    assert out["KeyPairSpec"] == spec
    plaintext = out["PrivateKeyPlaintext"]
    private = serialization.load_der_private_key(plaintext, password=None)
    _check_pair_type(spec, private)
    # PKCS#8 (not PKCS#1 or SEC 1): the canonical PKCS#8 DER of the key, byte for byte.
    assert _pkcs8(private) == plaintext
    public = serialization.load_der_public_key(out["PublicKey"])
    assert _spki(public) == out["PublicKey"]  # DER SubjectPublicKeyInfo
    assert _spki(private.public_key()) == out["PublicKey"]

    blob = out["PrivateKeyCiphertextBlob"]
    assert plaintext not in blob
    opened = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
    assert opened["Plaintext"] == plaintext
    assert opened["KeyId"] == symmetric_key
    for wrong in ({**context, "spec": "other"}, {"purpose": "data-key-pair"}, None):
        kwargs = {} if wrong is None else {"EncryptionContext": wrong}
        with pytest.raises(ClientError) as error:
            kms.decrypt(CiphertextBlob=blob, **kwargs)
        assert _code(error) == "InvalidCiphertextException", wrong

    bare = kms.generate_data_key_pair_without_plaintext(
        KeyId=symmetric_key, KeyPairSpec=spec, EncryptionContext=context
    )
    assert "PrivateKeyPlaintext" not in bare
    assert bare["KeyPairSpec"] == spec
    assert bare["KeyId"] == symmetric_key
    assert bare["PublicKey"] != out["PublicKey"]
    opened_bare = kms.decrypt(
        CiphertextBlob=bare["PrivateKeyCiphertextBlob"], EncryptionContext=context
    )
    bare_private = serialization.load_der_private_key(opened_bare["Plaintext"], password=None)
    _check_pair_type(spec, bare_private)
    assert _pkcs8(bare_private) == opened_bare["Plaintext"]
    assert _spki(bare_private.public_key()) == bare["PublicKey"]


def test_sm2_data_key_pairs_are_unsupported(kms: Any, symmetric_key: str) -> None:
    for operation in (kms.generate_data_key_pair, kms.generate_data_key_pair_without_plaintext):
        with pytest.raises(ClientError) as error:
            operation(KeyId=symmetric_key, KeyPairSpec="SM2")
        assert _code(error) == "UnsupportedOperationException"
    # The same call with a supported spec succeeds: the refusal is about SM2.
    assert kms.generate_data_key_pair_without_plaintext(
        KeyId=symmetric_key, KeyPairSpec="ECC_NIST_P256"
    )["PublicKey"]


# --- HMAC ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", list(HMAC_SPECS))
def test_hmac_generate_and_verify(keys: Keys, spec: str) -> None:
    kms = keys.kms
    algorithm, size = HMAC_SPECS[spec]
    meta = keys.get(spec, "GENERATE_VERIFY_MAC")
    arn = meta["Arn"]
    assert meta["MacAlgorithms"] == [algorithm]
    message = b"mac me " + os.urandom(100)

    out = kms.generate_mac(KeyId=arn, Message=message, MacAlgorithm=algorithm)
    mac = out["Mac"]
    assert out["KeyId"] == arn
    assert out["MacAlgorithm"] == algorithm
    assert len(mac) == size
    assert kms.generate_mac(KeyId=arn, Message=message, MacAlgorithm=algorithm)["Mac"] == mac
    assert kms.generate_mac(KeyId=arn, Message=message + b"!", MacAlgorithm=algorithm)["Mac"] != mac

    ok = kms.verify_mac(KeyId=arn, Message=message, Mac=mac, MacAlgorithm=algorithm)
    assert ok["MacValid"] is True
    assert ok["KeyId"] == arn
    assert ok["MacAlgorithm"] == algorithm

    for position in (0, size // 2, size - 1):
        flipped = bytearray(mac)
        flipped[position] ^= 0x01
        with pytest.raises(ClientError) as error:
            kms.verify_mac(KeyId=arn, Message=message, Mac=bytes(flipped), MacAlgorithm=algorithm)
        assert _code(error) == "KMSInvalidMacException", position
    for bad_mac, bad_message in ((mac[:-1], message), (mac, message + b"!")):
        with pytest.raises(ClientError) as error:
            kms.verify_mac(KeyId=arn, Message=bad_message, Mac=bad_mac, MacAlgorithm=algorithm)
        assert _code(error) == "KMSInvalidMacException"

    for wrong, _ in HMAC_SPECS.values():
        if wrong == algorithm:
            continue
        with pytest.raises(ClientError) as error:
            kms.generate_mac(KeyId=arn, Message=message, MacAlgorithm=wrong)
        assert _code(error) == "InvalidKeyUsageException", wrong
        with pytest.raises(ClientError) as error:
            kms.verify_mac(KeyId=arn, Message=message, Mac=mac, MacAlgorithm=wrong)
        assert _code(error) == "InvalidKeyUsageException", wrong


# --- The README's JWT recipe ---------------------------------------------------------

# Paste-able into the README as they are (after the two exports the server prints).
JWT_README_LINES = [
    "KEY=$(aws --profile keycask kms create-key --key-spec ECC_NIST_P256 "
    "--key-usage SIGN_VERIFY --description jwt-signer --query KeyMetadata.KeyId --output text)",
    "printf '%s' '{\"alg\":\"ES256\",\"typ\":\"JWT\"}' | base64 | tr '+/' '-_' | tr -d '=\\n' "
    "> header.b64",
    "printf '%s' '{\"sub\":\"keycask\",\"iat\":1700000000}' | base64 | tr '+/' '-_' "
    "| tr -d '=\\n' > payload.b64",
    'printf \'%s.%s\' "$(cat header.b64)" "$(cat payload.b64)" > input',
    'aws --profile keycask kms sign --key-id "$KEY" --message fileb://input --message-type RAW '
    "--signing-algorithm ECDSA_SHA_256 --query Signature --output text | base64 -d > sig.der",
    'aws --profile keycask kms get-public-key --key-id "$KEY" --query PublicKey --output text '
    "| base64 -d > pub.der",
    "openssl pkey -pubin -inform DER -in pub.der -out pub.pem",
    "openssl dgst -sha256 -verify pub.pem -signature sig.der input",
]
_ASSIGNMENT = re.compile(r"^([A-Z_]+)=\$\((.*)\)$")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _run_readme_lines(lines: list[str], env: dict[str, str], cwd: Path) -> Iterator[str]:
    """Run each line in its own bash; ``NAME=$(...)`` lines set NAME for the
    lines after them, as they would in one interactive shell. Yields stdout."""
    for line in lines:
        assignment = _ASSIGNMENT.match(line)
        script = line if assignment is None else f'{line}\nprintf "%s" "${assignment.group(1)}"'
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"{line!r} failed: {proc.stderr}"
        if assignment is not None:
            assert proc.stdout, f"{line!r} set nothing"
            env[assignment.group(1)] = proc.stdout
        yield proc.stdout


def test_readme_jwt_signed_through_the_aws_cli_verifies_with_openssl(
    server: Server, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    env.update(
        AWS_CONFIG_FILE=str(server.data_dir / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"),
        PATH=f"{AWS_BIN}:{Path(OPENSSL).parent}:{env.get('PATH', '')}",
    )
    outputs = list(_run_readme_lines(JWT_README_LINES, env, tmp_path))
    assert outputs[-1].strip() == "Verified OK"

    kms = server.client()
    meta = kms.describe_key(KeyId=env["KEY"])["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    signing_input = (tmp_path / "input").read_bytes()
    header, payload = signing_input.split(b".")
    assert json.loads(base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4))) == {
        "alg": "ES256",
        "typ": "JWT",
    }
    assert json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))["sub"] == (
        "keycask"
    )
    assert (tmp_path / "pub.der").read_bytes() == kms.get_public_key(KeyId=env["KEY"])["PublicKey"]

    # The finished JWT (JWS ES256 wants r || s, not DER) verifies with the public key.
    der = (tmp_path / "sig.der").read_bytes()
    r, s = decode_dss_signature(der)
    token = signing_input.decode() + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    head, body, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    public = serialization.load_pem_public_key((tmp_path / "pub.pem").read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    rebuilt = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(rebuilt, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))

    # The same openssl line refuses a changed token.
    (tmp_path / "input").write_bytes(signing_input.replace(b".", b".e30", 1))
    proc = _openssl(
        "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "input", cwd=tmp_path
    )
    assert proc.returncode != 0
    assert b"Verification failure" in proc.stdout
