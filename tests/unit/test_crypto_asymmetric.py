"""Asymmetric and HMAC KMS keys: keycask signs, decrypts and agrees keys the
way AWS KMS does, and ``cryptography`` holding only the public key (or the
standard library's HMAC) agrees with every result.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from hypothesis import given, settings
from hypothesis import strategies as st

from keycask.crypto import (
    DATA_KEY_PAIR_SPECS,
    HMAC_SPECS,
    KEY_SPECS,
    DecryptFailed,
    InvalidPublicKey,
    KeyMaterial,
    PrivateKey,
    ed25519ph,
    encapsulation_algorithms,
    encryption_algorithms,
    generate_data_key_pair,
    generate_hmac_key,
    generate_mac,
    generate_private_key,
    hmac_digest,
    key_agreement_algorithms,
    mac_algorithms,
    signing_algorithms,
    verify_mac,
    verify_with_public_key,
)

# -- what AWS KMS documents, written out independently of the module's table ----

RSA_SIGNING = (
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
)
OAEP = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
EXPECTED = {
    "RSA_2048": (RSA_SIGNING, OAEP, ()),
    "RSA_3072": (RSA_SIGNING, OAEP, ()),
    "RSA_4096": (RSA_SIGNING, OAEP, ()),
    "ECC_NIST_P256": (("ECDSA_SHA_256",), (), ("ECDH",)),
    "ECC_NIST_P384": (("ECDSA_SHA_384",), (), ("ECDH",)),
    "ECC_NIST_P521": (("ECDSA_SHA_512",), (), ("ECDH",)),
    "ECC_SECG_P256K1": (("ECDSA_SHA_256",), (), ()),
    "ECC_NIST_EDWARDS25519": (("ED25519_SHA_512", "ED25519_PH_SHA_512"), (), ()),
    "ML_DSA_44": (("ML_DSA_SHAKE_256",), (), ()),
    "ML_DSA_65": (("ML_DSA_SHAKE_256",), (), ()),
    "ML_DSA_87": (("ML_DSA_SHAKE_256",), (), ()),
    # ML-KEM keys only encapsulate (ML_KEM): tests/unit/test_mlkem.py.
    "ML_KEM_512": ((), (), ()),
    "ML_KEM_768": ((), (), ()),
    "ML_KEM_1024": ((), (), ()),
}
HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
CURVES: dict[str, ec.EllipticCurve] = {
    "ECC_NIST_P256": ec.SECP256R1(),
    "ECC_NIST_P384": ec.SECP384R1(),
    "ECC_NIST_P521": ec.SECP521R1(),
    "ECC_SECG_P256K1": ec.SECP256K1(),
}
NIST = ("ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521")
MESSAGE = b"the message AWS KMS signs"


def _hash_of(algorithm: str) -> hashes.HashAlgorithm:
    return HASHES[algorithm[-3:]]()


def _message_types(algorithm: str) -> tuple[str, ...]:
    if algorithm == "ED25519_SHA_512":
        return ("RAW",)
    if algorithm == "ML_DSA_SHAKE_256":
        return ("RAW", "EXTERNAL_MU")
    return ("RAW", "DIGEST")


SIGN_CASES = [
    (spec, algorithm, message_type)
    for spec in sorted(KEY_SPECS)
    for algorithm in EXPECTED[spec][0]
    if algorithm != "ED25519_PH_SHA_512"  # cryptography has no Ed25519ph: see its own test
    for message_type in _message_types(algorithm)
]

GetKey = Callable[[str], PrivateKey]
GetPair = Callable[[str], tuple[KeyMaterial, bytes]]


@pytest.fixture(scope="module")
def pair() -> Iterator[GetPair]:
    """Data key pairs, one per spec, made on first use."""
    made: dict[str, tuple[KeyMaterial, bytes]] = {}

    def get(spec: str) -> tuple[KeyMaterial, bytes]:
        if spec not in made:
            made[spec] = generate_data_key_pair(spec)
        return made[spec]

    yield get


@pytest.fixture(scope="module")
def key(pair: GetPair) -> Iterator[GetKey]:
    """One loaded KMS key per name, made on first use; "SPEC/other" is a
    second, independent key of SPEC. RSA_4096 comes from the data key pair so
    the run makes one 4096-bit key (a second or two), not two."""
    made: dict[str, PrivateKey] = {}

    def get(name: str) -> PrivateKey:
        if name not in made:
            spec = name.split("/", maxsplit=1)[0]
            der = pair(spec)[0] if name == "RSA_4096" else generate_private_key(spec)
            made[name] = PrivateKey.load(spec, der)
        return made[name]

    yield get


def _public(key: PrivateKey) -> object:
    return serialization.load_der_public_key(key.public_der())


def _message_for(algorithm: str, message_type: str) -> bytes:
    if message_type == "DIGEST":
        return hashlib.new(_hash_of(algorithm).name, MESSAGE).digest()
    if message_type == "EXTERNAL_MU":
        return b""  # computed from the public key by the test
    return MESSAGE


def _mu(public: object, message: bytes) -> bytes:
    assert isinstance(
        public, mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey
    )
    hasher = mldsa.MLDSAMuHasher(public)
    hasher.update(message)
    return hasher.finalize()


def _independent_verify(
    public: object, algorithm: str, message_type: str, message: bytes, signature: bytes
) -> None:
    """``cryptography`` with only the public key; raises InvalidSignature."""
    if isinstance(public, rsa.RSAPublicKey):
        h = _hash_of(algorithm)
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
            if "PSS" in algorithm
            else padding.PKCS1v15()
        )
        public.verify(signature, message, pad, Prehashed(h) if message_type == "DIGEST" else h)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        h = _hash_of(algorithm)
        public.verify(signature, message, ec.ECDSA(Prehashed(h) if message_type == "DIGEST" else h))
    elif isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(signature, message)
    else:
        assert isinstance(
            public, mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey
        )
        if message_type == "EXTERNAL_MU":
            public.verify_mu(signature, message)
        else:
            public.verify(signature, message)


# -- the table ---------------------------------------------------------------------


def test_the_table_is_aws_kms() -> None:
    assert set(EXPECTED) == KEY_SPECS
    for spec, (signing, encryption, agreement) in EXPECTED.items():
        assert signing_algorithms(spec) == signing, spec
        assert encryption_algorithms(spec) == encryption, spec
        assert key_agreement_algorithms(spec) == agreement, spec
    for spec in KEY_SPECS:
        expected = ("ML_KEM",) if spec.startswith("ML_KEM_") else ()
        assert encapsulation_algorithms(spec) == expected, spec
    post_quantum = {
        "ML_DSA_44",
        "ML_DSA_65",
        "ML_DSA_87",
        "ML_KEM_512",
        "ML_KEM_768",
        "ML_KEM_1024",
    }
    assert KEY_SPECS - post_quantum == DATA_KEY_PAIR_SPECS


@pytest.mark.parametrize(
    "call",
    [signing_algorithms, encryption_algorithms, key_agreement_algorithms, generate_private_key],
)
def test_unknown_spec_is_value_error(call: Callable[[str], object]) -> None:
    for spec in ("RSA_1024", "SYMMETRIC_DEFAULT", "SM2", "HMAC_256", ""):
        with pytest.raises(ValueError, match="unknown"):
            call(spec)


# -- signing -----------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "algorithm", "message_type"), SIGN_CASES)
def test_sign_verifies_here_and_in_cryptography(
    key: GetKey, spec: str, algorithm: str, message_type: str
) -> None:
    kms = key(spec)
    public = _public(kms)
    message = _message_for(algorithm, message_type)
    if message_type == "EXTERNAL_MU":
        message = _mu(public, MESSAGE)
    signature = kms.sign(algorithm, message, message_type)

    assert kms.verify(algorithm, message, message_type, signature)
    assert verify_with_public_key(
        spec, kms.public_der(), algorithm, message, message_type, signature
    )
    _independent_verify(public, algorithm, message_type, message, signature)

    if message_type == "DIGEST":
        # Signed as given: treating the digest as a message to hash fails, so
        # keycask did not hash it a second time.
        with pytest.raises(InvalidSignature):
            _independent_verify(public, algorithm, "RAW", message, signature)
        assert not kms.verify(algorithm, message, "RAW", signature)
        # And a RAW signature over the message verifies as a DIGEST of it.
        raw_signature = kms.sign(algorithm, MESSAGE, "RAW")
        assert kms.verify(algorithm, message, "DIGEST", raw_signature)
    if message_type == "EXTERNAL_MU":
        # A signature over mu is the ML-DSA signature of the message itself.
        _independent_verify(public, algorithm, "RAW", MESSAGE, signature)
        assert kms.verify(algorithm, MESSAGE, "RAW", signature)
        assert kms.verify(algorithm, message, "EXTERNAL_MU", kms.sign(algorithm, MESSAGE, "RAW"))


@pytest.mark.parametrize(("spec", "algorithm", "message_type"), SIGN_CASES)
def test_tampering_fails_verification(
    key: GetKey, spec: str, algorithm: str, message_type: str
) -> None:
    kms = key(spec)
    message = _message_for(algorithm, message_type)
    if message_type == "EXTERNAL_MU":
        message = _mu(_public(kms), MESSAGE)
    signature = kms.sign(algorithm, message, message_type)
    other_message = bytes([message[0] ^ 1]) + message[1:]
    for bad in (
        bytes([signature[0] ^ 0x80]) + signature[1:],
        signature[:-1] + bytes([signature[-1] ^ 1]),
        signature[:-1],
        signature + b"\x00",
        b"",
        b"\x30\x06\x02\x01\x01\x02\x01\x01",  # a well-formed DER (r, s) = (1, 1)
        bytes(len(signature)),
        b"\xff" * 10_000,
    ):
        assert not kms.verify(algorithm, message, message_type, bad)
        assert not verify_with_public_key(
            spec, kms.public_der(), algorithm, message, message_type, bad
        )
    assert not kms.verify(algorithm, other_message, message_type, signature)
    # Same spec, another key (not for RSA_4096: one 4096-bit keygen per run;
    # 2048 and 3072 run the same code).
    if spec != "RSA_4096":
        other = key(f"{spec}/other")
        assert not other.verify(algorithm, message, message_type, signature)


def test_pss_salt_is_the_digest_length(key: GetKey) -> None:
    kms = key("RSA_2048")
    public = _public(kms)
    assert isinstance(public, rsa.RSAPublicKey)
    for bits, h in (("256", hashes.SHA256()), ("384", hashes.SHA384()), ("512", hashes.SHA512())):
        signature = kms.sign(f"RSASSA_PSS_SHA_{bits}", MESSAGE, "RAW")
        public.verify(signature, MESSAGE, padding.PSS(padding.MGF1(h), h.digest_size), h)
        with pytest.raises(InvalidSignature):
            public.verify(signature, MESSAGE, padding.PSS(padding.MGF1(h), h.digest_size + 1), h)


def test_ecdsa_and_eddsa_signatures_have_the_aws_shape(key: GetKey) -> None:
    # ECDSA: a DER SEQUENCE of two INTEGERs, not the fixed-width r || s.
    for spec in CURVES:
        assert key(spec).sign(EXPECTED[spec][0][0], MESSAGE, "RAW")[0] == 0x30
    assert len(key("ECC_NIST_EDWARDS25519").sign("ED25519_SHA_512", MESSAGE, "RAW")) == 64
    # Ed25519 is deterministic.
    ed = key("ECC_NIST_EDWARDS25519")
    assert ed.sign("ED25519_SHA_512", MESSAGE, "RAW") == ed.sign("ED25519_SHA_512", MESSAGE, "RAW")


@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [
        ("RSA_2048", "ECDSA_SHA_256"),
        ("RSA_2048", "RSAES_OAEP_SHA_256"),
        ("RSA_2048", "ML_DSA_SHAKE_256"),
        ("ECC_NIST_P256", "ECDSA_SHA_384"),
        ("ECC_NIST_P384", "ECDSA_SHA_256"),
        ("ECC_NIST_P521", "ECDSA_SHA_384"),
        ("ECC_SECG_P256K1", "ECDSA_SHA_512"),
        ("ECC_NIST_P256", "RSASSA_PSS_SHA_256"),
        ("ECC_NIST_EDWARDS25519", "ECDSA_SHA_512"),
        ("ML_DSA_44", "ED25519_SHA_512"),
        ("ML_DSA_65", "RSASSA_PKCS1_V1_5_SHA_256"),
        ("RSA_2048", "RSASSA_PSS_SHA_1"),
        ("RSA_2048", ""),
    ],
)
def test_algorithm_of_another_spec_is_value_error(key: GetKey, spec: str, algorithm: str) -> None:
    kms = key(spec)
    signature = b"\x00" * 64
    with pytest.raises(ValueError, match="not valid for key spec"):
        kms.sign(algorithm, MESSAGE, "RAW")
    with pytest.raises(ValueError, match="not valid for key spec"):
        kms.verify(algorithm, MESSAGE, "RAW", signature)
    with pytest.raises(ValueError, match="not valid for key spec"):
        verify_with_public_key(spec, kms.public_der(), algorithm, MESSAGE, "RAW", signature)


@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [
        (spec, algorithm)
        for spec in ("RSA_2048", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521")
        for algorithm in EXPECTED[spec][0]
    ],
)
def test_digest_of_the_wrong_length_is_value_error(key: GetKey, spec: str, algorithm: str) -> None:
    kms = key(spec)
    size = _hash_of(algorithm).digest_size
    for length in (0, 1, size - 1, size + 1, 20, 28, 32, 48, 64):
        if length == size:
            continue
        with pytest.raises(ValueError, match="digest must be"):
            kms.sign(algorithm, b"\x01" * length, "DIGEST")
        with pytest.raises(ValueError, match="digest must be"):
            kms.verify(algorithm, b"\x01" * length, "DIGEST", b"sig")


def test_message_types_each_algorithm_refuses(key: GetKey) -> None:
    ed = key("ECC_NIST_EDWARDS25519")
    assert ed.verify("ED25519_SHA_512", MESSAGE, "RAW", ed.sign("ED25519_SHA_512", MESSAGE, "RAW"))
    for message in (MESSAGE, hashlib.sha512(MESSAGE).digest()):
        with pytest.raises(ValueError, match="message type"):
            ed.sign("ED25519_SHA_512", message, "DIGEST")
    refused = [
        ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512", "EXTERNAL_MU"),
        ("ML_DSA_44", "ML_DSA_SHAKE_256", "DIGEST"),
        ("RSA_2048", "RSASSA_PSS_SHA_256", "EXTERNAL_MU"),
        ("ECC_NIST_P256", "ECDSA_SHA_256", "EXTERNAL_MU"),
        ("ECC_NIST_P256", "ECDSA_SHA_256", "raw"),
        ("ECC_NIST_P256", "ECDSA_SHA_256", ""),
    ]
    for spec, algorithm, message_type in refused:
        kms = key(spec)
        for message in (b"\x01" * 32, b"\x01" * 64):
            with pytest.raises(ValueError, match="message type"):
                kms.sign(algorithm, message, message_type)
            with pytest.raises(ValueError, match="message type"):
                kms.verify(algorithm, message, message_type, b"sig")


@pytest.mark.parametrize("spec", ["ML_DSA_44", "ML_DSA_65", "ML_DSA_87"])
def test_external_mu_must_be_64_bytes(key: GetKey, spec: str) -> None:
    kms = key(spec)
    for length in (0, 32, 63, 65, 128):
        with pytest.raises(ValueError, match="mu must be 64 bytes"):
            kms.sign("ML_DSA_SHAKE_256", b"\x02" * length, "EXTERNAL_MU")
        with pytest.raises(ValueError, match="mu must be 64 bytes"):
            kms.verify("ML_DSA_SHAKE_256", b"\x02" * length, "EXTERNAL_MU", b"sig")


def test_ml_dsa_raw_signs_with_the_empty_context(key: GetKey) -> None:
    kms = key("ML_DSA_65")
    public = _public(kms)
    assert isinstance(public, mldsa.MLDSA65PublicKey)
    signature = kms.sign("ML_DSA_SHAKE_256", MESSAGE, "RAW")
    public.verify(signature, MESSAGE, b"")
    with pytest.raises(InvalidSignature):
        public.verify(signature, MESSAGE, b"a context")


# RFC 8032 section 7.3, Ed25519ph "TEST abc".
RFC8032_PH_SEED = bytes.fromhex("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
RFC8032_PH_PUBLIC = bytes.fromhex(
    "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf"
)
RFC8032_PH_SIGNATURE = bytes.fromhex(
    "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
    "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406"
)


def test_ed25519ph_matches_rfc8032() -> None:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(RFC8032_PH_SEED)
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    kms = PrivateKey.load("ECC_NIST_EDWARDS25519", KeyMaterial.any_size(der))
    assert kms.public_der()[-32:] == RFC8032_PH_PUBLIC
    # The RFC's vector checks the scheme itself (its message is 3 bytes);
    # AWS then puts a caller's 64-byte SHA-512 digest through that scheme.
    assert ed25519ph.sign(RFC8032_PH_SEED, b"abc") == RFC8032_PH_SIGNATURE
    assert ed25519ph.verify(RFC8032_PH_PUBLIC, b"abc", RFC8032_PH_SIGNATURE)
    assert not ed25519ph.verify(RFC8032_PH_PUBLIC, b"abd", RFC8032_PH_SIGNATURE)
    assert not ed25519ph.verify(RFC8032_PH_PUBLIC, b"abc", RFC8032_PH_SIGNATURE[:63])

    digest = hashlib.sha512(MESSAGE).digest()
    signature = kms.sign("ED25519_PH_SHA_512", digest, "DIGEST")
    assert signature == ed25519ph.sign(RFC8032_PH_SEED, digest)
    assert kms.verify("ED25519_PH_SHA_512", digest, "DIGEST", signature)
    assert verify_with_public_key(
        "ECC_NIST_EDWARDS25519", kms.public_der(), "ED25519_PH_SHA_512", digest, "DIGEST", signature
    )
    # Not pure Ed25519 over the digest: the schemes differ (dom2 and the prehash).
    with pytest.raises(InvalidSignature):
        private.public_key().verify(signature, digest)
    changed = bytes([digest[0] ^ 1]) + digest[1:]
    assert not kms.verify("ED25519_PH_SHA_512", changed, "DIGEST", signature)
    assert not kms.verify("ED25519_PH_SHA_512", digest, "DIGEST", signature[:-1] + b"\x00")


def test_ed25519ph_takes_only_a_sha512_digest(key: GetKey) -> None:
    ed = key("ECC_NIST_EDWARDS25519")
    digest = hashlib.sha512(MESSAGE).digest()
    # AWS: ED25519_PH_SHA_512 requires MessageType DIGEST.
    with pytest.raises(ValueError, match="message type 'RAW' is not valid"):
        ed.sign("ED25519_PH_SHA_512", MESSAGE, "RAW")
    with pytest.raises(ValueError, match="message type 'RAW' is not valid"):
        ed.verify("ED25519_PH_SHA_512", MESSAGE, "RAW", b"\x00" * 64)
    with pytest.raises(ValueError, match="digest must be"):
        ed.sign("ED25519_PH_SHA_512", digest[:32], "DIGEST")
    assert ed.verify(
        "ED25519_PH_SHA_512", digest, "DIGEST", ed.sign("ED25519_PH_SHA_512", digest, "DIGEST")
    )


@settings(max_examples=25, deadline=None)
@given(message=st.binary(max_size=4096))
def test_any_message_round_trips(key: GetKey, message: bytes) -> None:
    for spec, algorithm in (
        ("ECC_NIST_P256", "ECDSA_SHA_256"),
        ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
        ("ML_DSA_44", "ML_DSA_SHAKE_256"),
    ):
        kms = key(spec)
        signature = kms.sign(algorithm, message, "RAW")
        assert kms.verify(algorithm, message, "RAW", signature)
        assert not kms.verify(algorithm, message + b"\x00", "RAW", signature)


# -- verify_with_public_key ----------------------------------------------------------


def test_public_key_of_another_spec_is_invalid_public_key(key: GetKey) -> None:
    signature = b"\x00" * 64
    for spec, wrong in (
        ("ECC_NIST_P256", "ECC_NIST_P384"),
        ("ECC_NIST_P256", "ECC_SECG_P256K1"),
        ("RSA_2048", "RSA_3072"),
        ("RSA_2048", "ECC_NIST_P256"),
        ("ECC_NIST_EDWARDS25519", "ECC_NIST_P256"),
        ("ML_DSA_44", "ML_DSA_65"),
    ):
        algorithm = EXPECTED[spec][0][0]
        with pytest.raises(InvalidPublicKey):
            verify_with_public_key(
                spec, key(wrong).public_der(), algorithm, MESSAGE, "RAW", signature
            )
    for garbage in (b"", b"\x30\x00", b"not der", key("RSA_2048").public_der()[:-1]):
        with pytest.raises(InvalidPublicKey):
            verify_with_public_key(
                "RSA_2048", garbage, "RSASSA_PSS_SHA_256", MESSAGE, "RAW", signature
            )


# -- loading -------------------------------------------------------------------------


def test_load_refuses_a_key_of_another_spec(key: GetKey) -> None:
    for spec, wrong in (
        ("ECC_NIST_P256", "ECC_NIST_P384"),
        ("RSA_2048", "RSA_3072"),
        ("ECC_NIST_EDWARDS25519", "ML_DSA_44"),
        ("ML_DSA_44", "ML_DSA_65"),
        ("ECC_SECG_P256K1", "ECC_NIST_P256"),
    ):
        with pytest.raises(ValueError, match="not a"):
            PrivateKey.load(wrong, generate_private_key(spec))
    for garbage in (b"", b"\x30\x00", b"x" * 100):
        with pytest.raises(ValueError, match="PKCS#8"):
            PrivateKey.load("RSA_2048", KeyMaterial.any_size(garbage))
    with pytest.raises(ValueError, match="unknown"):
        PrivateKey.load("RSA_1024", generate_private_key("ECC_NIST_P256"))


def test_load_with_validation_accepts_a_good_key(pair: GetPair) -> None:
    private, public = pair("RSA_2048")
    assert PrivateKey.load("RSA_2048", private, validate=True).public_der() == public


def test_generated_keys_have_the_spec_parameters(key: GetKey) -> None:
    for spec, bits in (("RSA_2048", 2048), ("RSA_3072", 3072), ("RSA_4096", 4096)):
        public = _public(key(spec))
        assert isinstance(public, rsa.RSAPublicKey)
        assert public.key_size == bits
        assert public.public_numbers().e == 65537
    for spec, curve in CURVES.items():
        public = _public(key(spec))
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.name == curve.name
    assert isinstance(_public(key("ECC_NIST_EDWARDS25519")), ed25519.Ed25519PublicKey)
    assert isinstance(_public(key("ML_DSA_44")), mldsa.MLDSA44PublicKey)
    assert isinstance(_public(key("ML_DSA_65")), mldsa.MLDSA65PublicKey)
    assert isinstance(_public(key("ML_DSA_87")), mldsa.MLDSA87PublicKey)


def test_private_key_repr_shows_no_key_bytes() -> None:
    for spec in ("RSA_2048", "ECC_NIST_P256", "ECC_NIST_EDWARDS25519", "ML_DSA_44"):
        der = generate_private_key(spec)
        loaded = PrivateKey.load(spec, der)
        for text in (repr(loaded), str(loaded), f"{loaded}"):
            assert text == f"PrivateKey(spec={spec!r})"
        assert der.reveal().hex() not in repr(der)
        assert "redacted" in repr(der)
    # == is identity: two loads of one key are not equal, so nothing compares key bytes.
    der = generate_private_key("ECC_NIST_P256")
    first = PrivateKey.load("ECC_NIST_P256", der)
    assert first != PrivateKey.load("ECC_NIST_P256", der)


# -- RSA-OAEP ------------------------------------------------------------------------

OAEP_HASHES = {"RSAES_OAEP_SHA_1": hashes.SHA1, "RSAES_OAEP_SHA_256": hashes.SHA256}
RSA_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")


def _oaep(algorithm: str) -> padding.OAEP:
    h = OAEP_HASHES[algorithm]()
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)


def _oaep_limit(spec: str, algorithm: str) -> int:
    return int(spec[4:]) // 8 - 2 * OAEP_HASHES[algorithm]().digest_size - 2


@pytest.mark.parametrize("algorithm", OAEP)
@pytest.mark.parametrize("spec", RSA_SPECS)
def test_oaep_from_a_public_key_client(key: GetKey, spec: str, algorithm: str) -> None:
    kms = key(spec)
    public = _public(kms)
    assert isinstance(public, rsa.RSAPublicKey)
    for plaintext in (b"", b"secret", b"\xab" * _oaep_limit(spec, algorithm)):
        ciphertext = public.encrypt(plaintext, _oaep(algorithm))
        assert kms.decrypt(algorithm, ciphertext).reveal() == plaintext
        ours = kms.encrypt(algorithm, plaintext)
        assert len(ours) == int(spec[4:]) // 8
        assert kms.decrypt(algorithm, ours).reveal() == plaintext


@pytest.mark.parametrize("spec", RSA_SPECS)
def test_oaep_plaintext_limit(key: GetKey, spec: str) -> None:
    kms = key(spec)
    for algorithm in OAEP:
        limit = _oaep_limit(spec, algorithm)
        kms.encrypt(algorithm, b"\x00" * limit)
        with pytest.raises(ValueError, match=f"at most {limit}"):
            kms.encrypt(algorithm, b"\x00" * (limit + 1))
    # The familiar numbers for 2048 bits.
    assert _oaep_limit("RSA_2048", "RSAES_OAEP_SHA_1") == 214
    assert _oaep_limit("RSA_2048", "RSAES_OAEP_SHA_256") == 190


def test_oaep_failures_are_one_error(key: GetKey) -> None:
    kms = key("RSA_2048")
    ciphertext = kms.encrypt("RSAES_OAEP_SHA_1", b"secret")
    messages = set()
    for algorithm, bad in (
        ("RSAES_OAEP_SHA_256", ciphertext),  # wrong hash
        ("RSAES_OAEP_SHA_1", bytes([ciphertext[0] ^ 1]) + ciphertext[1:]),
        ("RSAES_OAEP_SHA_1", ciphertext[:-1]),
        ("RSAES_OAEP_SHA_1", ciphertext + b"\x00"),
        ("RSAES_OAEP_SHA_1", b""),
        ("RSAES_OAEP_SHA_1", b"\xff" * 256),  # larger than the modulus
        ("RSAES_OAEP_SHA_1", key("RSA_2048/other").encrypt("RSAES_OAEP_SHA_1", b"secret")),
    ):
        with pytest.raises(DecryptFailed) as caught:
            kms.decrypt(algorithm, bad)
        messages.add(str(caught.value))
    assert len(messages) == 1


def test_oaep_is_rsa_only(key: GetKey) -> None:
    for spec in ("ECC_NIST_P256", "ECC_NIST_EDWARDS25519", "ML_DSA_44"):
        with pytest.raises(ValueError, match="not valid for key spec"):
            key(spec).encrypt("RSAES_OAEP_SHA_256", b"x")
        with pytest.raises(ValueError, match="not valid for key spec"):
            key(spec).decrypt("RSAES_OAEP_SHA_256", b"x")
    for algorithm in ("RSASSA_PSS_SHA_256", "RSAES_OAEP_SHA_512", "SYMMETRIC_DEFAULT"):
        with pytest.raises(ValueError, match="not valid for key spec"):
            key("RSA_2048").encrypt(algorithm, b"x")


@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=190), algorithm=st.sampled_from(OAEP))
def test_oaep_round_trips_any_plaintext(key: GetKey, plaintext: bytes, algorithm: str) -> None:
    kms = key("RSA_2048")
    assert kms.decrypt(algorithm, kms.encrypt(algorithm, plaintext)).reveal() == plaintext


# -- ECDH ----------------------------------------------------------------------------


def _spki(public: object) -> bytes:
    assert isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("spec", NIST)
def test_ecdh_agrees_with_the_peer(key: GetKey, spec: str) -> None:
    kms = key(spec)
    ours = _public(kms)
    assert isinstance(ours, ec.EllipticCurvePublicKey)
    for _ in range(3):
        peer = ec.generate_private_key(CURVES[spec])
        shared = kms.derive_shared_secret(_spki(peer.public_key()))
        assert shared.reveal() == peer.exchange(ec.ECDH(), ours)
        assert len(shared) == (CURVES[spec].key_size + 7) // 8
        assert "redacted" in repr(shared)


@pytest.mark.parametrize("spec", NIST)
def test_ecdh_refuses_other_keys(key: GetKey, spec: str) -> None:
    kms = key(spec)
    others = [
        _spki(ec.generate_private_key(curve).public_key())
        for name, curve in CURVES.items()
        if name != spec
    ]
    others += [
        _spki(ed25519.Ed25519PrivateKey.generate().public_key()),
        key("RSA_2048").public_der(),
        key("ML_DSA_44").public_der(),
        b"",
        b"garbage",
        b"\x30\x03\x02\x01\x00",
        kms.public_der()[:-1],
    ]
    for der in others:
        with pytest.raises(InvalidPublicKey):
            kms.derive_shared_secret(der)


def test_ecdh_refuses_a_point_off_the_curve(key: GetKey) -> None:
    kms = key("ECC_NIST_P256")
    good = bytearray(_spki(ec.generate_private_key(ec.SECP256R1()).public_key()))
    # The SPKI ends with the uncompressed point 04 || X || Y; change Y's last byte.
    assert len(good) == 91 and good[-65] == 0x04
    good[-1] ^= 0x01
    corrupted = bytes(good)
    with pytest.raises(ValueError):  # cryptography agrees the point is invalid
        serialization.load_der_public_key(corrupted)
    with pytest.raises(InvalidPublicKey):
        kms.derive_shared_secret(corrupted)


def test_ecdh_is_nist_curves_only(key: GetKey) -> None:
    peer = _spki(ec.generate_private_key(ec.SECP256K1()).public_key())
    for spec in ("ECC_SECG_P256K1", "RSA_2048", "ECC_NIST_EDWARDS25519", "ML_DSA_44"):
        with pytest.raises(ValueError, match="no key agreement"):
            key(spec).derive_shared_secret(peer)


# -- data key pairs ------------------------------------------------------------------


@pytest.mark.parametrize("spec", sorted(DATA_KEY_PAIR_SPECS))
def test_data_key_pair(pair: GetPair, spec: str) -> None:
    private, public_der = pair(spec)
    assert isinstance(private, KeyMaterial)
    loaded = serialization.load_der_private_key(private.reveal(), password=None)
    assert (
        loaded.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == public_der
    )
    assert PrivateKey.load(spec, private).public_der() == public_der


def test_data_key_pair_specs_refused() -> None:
    for spec in ("SM2", "ML_DSA_44", "HMAC_256", "RSA_1024", ""):
        with pytest.raises(ValueError, match="unknown data key pair spec"):
            generate_data_key_pair(spec)


# -- HMAC ----------------------------------------------------------------------------

HMAC_EXPECTED = {
    "HMAC_224": ("HMAC_SHA_224", 28, "sha224", hashes.SHA224),
    "HMAC_256": ("HMAC_SHA_256", 32, "sha256", hashes.SHA256),
    "HMAC_384": ("HMAC_SHA_384", 48, "sha384", hashes.SHA384),
    "HMAC_512": ("HMAC_SHA_512", 64, "sha512", hashes.SHA512),
}


def _crypto_hmac(h: type[hashes.HashAlgorithm], key: bytes, message: bytes) -> bytes:
    ctx = crypto_hmac.HMAC(key, h())
    ctx.update(message)
    return ctx.finalize()


@pytest.mark.parametrize("spec", sorted(HMAC_EXPECTED))
def test_hmac_round_trip(spec: str) -> None:
    algorithm, size, name, h = HMAC_EXPECTED[spec]
    assert HMAC_SPECS[spec] == (algorithm, size)
    assert mac_algorithms(spec) == (algorithm,)
    key = generate_hmac_key(spec)
    assert len(key) == size
    assert key.reveal() != generate_hmac_key(spec).reveal()
    mac = generate_mac(spec, algorithm, key, MESSAGE)
    assert mac == hmac.new(key.reveal(), MESSAGE, name).digest()
    assert mac == _crypto_hmac(h, key.reveal(), MESSAGE)
    assert verify_mac(spec, algorithm, key, MESSAGE, mac)
    for i in range(len(mac) * 8):
        flipped = bytearray(mac)
        flipped[i // 8] ^= 1 << (i % 8)
        assert not verify_mac(spec, algorithm, key, MESSAGE, bytes(flipped))
    assert not verify_mac(spec, algorithm, key, MESSAGE, mac[:-1])
    assert not verify_mac(spec, algorithm, key, MESSAGE, b"")
    assert not verify_mac(spec, algorithm, key, MESSAGE + b"!", mac)
    assert not verify_mac(spec, algorithm, generate_hmac_key(spec), MESSAGE, mac)


def test_hmac_refuses_other_algorithms_and_specs() -> None:
    key = generate_hmac_key("HMAC_256")
    for spec, algorithm in (
        ("HMAC_256", "HMAC_SHA_384"),
        ("HMAC_224", "HMAC_SHA_256"),
        ("HMAC_512", "HMAC_SHA_1"),
        ("HMAC_256", ""),
    ):
        with pytest.raises(ValueError, match="not valid for key spec"):
            generate_mac(spec, algorithm, key, MESSAGE)
        with pytest.raises(ValueError, match="not valid for key spec"):
            verify_mac(spec, algorithm, key, MESSAGE, b"\x00" * 32)
    for spec in ("HMAC_128", "SYMMETRIC_DEFAULT", "RSA_2048"):
        with pytest.raises(ValueError, match="unknown HMAC key spec"):
            generate_hmac_key(spec)
        with pytest.raises(ValueError, match="unknown HMAC key spec"):
            mac_algorithms(spec)
    with pytest.raises(ValueError, match="unknown MAC algorithm"):
        hmac_digest("HMAC_SHA_1", key, MESSAGE)


@settings(max_examples=50, deadline=None)
@given(
    spec=st.sampled_from(sorted(HMAC_EXPECTED)),
    key=st.binary(max_size=300),
    message=st.binary(max_size=1000),
)
def test_hmac_matches_rfc_2104_for_any_key_length(spec: str, key: bytes, message: bytes) -> None:
    # Keys longer than the hash's block (64 or 128 bytes) are hashed first.
    algorithm, _, name, h = HMAC_EXPECTED[spec]
    mac = generate_mac(spec, algorithm, KeyMaterial.any_size(key), message)
    assert mac == hmac.new(key, message, name).digest() == _crypto_hmac(h, key, message)
