"""Asymmetric KMS keys (AWS KMS SIGN_VERIFY, ENCRYPT_DECRYPT, KEY_AGREEMENT and
ENCAPSULATE_DECAPSULATE key usages) and data key pairs: generation, signing,
RSA-OAEP, ECDH and ML-KEM (through keycask.crypto.mlkem).

Private keys leave this module only as unencrypted PKCS#8 DER inside a
KeyMaterial, to be stored behind the barrier. Public keys travel as DER
SubjectPublicKeyInfo, the form AWS's GetPublicKey returns.

Algorithm and message-type names are AWS's. Every request that names an
algorithm the key spec does not have, or a message type the algorithm does not
take, raises ValueError, so the service can answer it as a validation error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as _BackendUnsupported
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from keycask.crypto import ed25519ph, mlkem
from keycask.crypto.material import KeyMaterial

_PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | mldsa.MLDSA44PrivateKey
    | mldsa.MLDSA65PrivateKey
    | mldsa.MLDSA87PrivateKey
)
_PublicKey = (
    rsa.RSAPublicKey
    | ec.EllipticCurvePublicKey
    | ed25519.Ed25519PublicKey
    | mldsa.MLDSA44PublicKey
    | mldsa.MLDSA65PublicKey
    | mldsa.MLDSA87PublicKey
)
_PRIVATE_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    mldsa.MLDSA44PrivateKey,
    mldsa.MLDSA65PrivateKey,
    mldsa.MLDSA87PrivateKey,
)

RAW = "RAW"
DIGEST = "DIGEST"
EXTERNAL_MU = "EXTERNAL_MU"
MESSAGE_TYPES = frozenset({RAW, DIGEST, EXTERNAL_MU})
# FIPS 204: mu, the message representative, is 64 bytes of SHAKE256 output.
_MU_SIZE = 64

_RSA_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
_CURVES: dict[str, ec.EllipticCurve] = {
    "ECC_NIST_P256": ec.SECP256R1(),
    "ECC_NIST_P384": ec.SECP384R1(),
    "ECC_NIST_P521": ec.SECP521R1(),
    "ECC_SECG_P256K1": ec.SECP256K1(),
}
_MLDSA: dict[
    str,
    tuple[
        type[mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey],
        type[mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey],
    ],
] = {
    "ML_DSA_44": (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    "ML_DSA_65": (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    "ML_DSA_87": (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}
_ED25519 = "ECC_NIST_EDWARDS25519"
_RSA_PUBLIC_EXPONENT = 65537


@dataclass(frozen=True, slots=True)
class _Signing:
    scheme: str  # "PSS", "PKCS1", "ECDSA", "ED25519", "ED25519PH" or "MLDSA"
    hash: hashes.HashAlgorithm | None  # what RAW hashes with and DIGEST's length; None: none
    message_types: frozenset[str]


_HASH_TYPES = frozenset({RAW, DIGEST})
_SIGNING: dict[str, _Signing] = {
    "RSASSA_PSS_SHA_256": _Signing("PSS", hashes.SHA256(), _HASH_TYPES),
    "RSASSA_PSS_SHA_384": _Signing("PSS", hashes.SHA384(), _HASH_TYPES),
    "RSASSA_PSS_SHA_512": _Signing("PSS", hashes.SHA512(), _HASH_TYPES),
    "RSASSA_PKCS1_V1_5_SHA_256": _Signing("PKCS1", hashes.SHA256(), _HASH_TYPES),
    "RSASSA_PKCS1_V1_5_SHA_384": _Signing("PKCS1", hashes.SHA384(), _HASH_TYPES),
    "RSASSA_PKCS1_V1_5_SHA_512": _Signing("PKCS1", hashes.SHA512(), _HASH_TYPES),
    "ECDSA_SHA_256": _Signing("ECDSA", hashes.SHA256(), _HASH_TYPES),
    "ECDSA_SHA_384": _Signing("ECDSA", hashes.SHA384(), _HASH_TYPES),
    "ECDSA_SHA_512": _Signing("ECDSA", hashes.SHA512(), _HASH_TYPES),
    # Pure Ed25519 hashes inside the algorithm, so there is no digest to pass.
    "ED25519_SHA_512": _Signing("ED25519", None, frozenset({RAW})),
    # AWS takes only a DIGEST here (a 64-byte SHA-512), and prehashes it again.
    "ED25519_PH_SHA_512": _Signing("ED25519PH", hashes.SHA512(), frozenset({DIGEST})),
    "ML_DSA_SHAKE_256": _Signing("MLDSA", None, frozenset({RAW, EXTERNAL_MU})),
}

# The ECDSA signature algorithm of each ECDSA_SHA_* algorithm, by (algorithm,
# whether the message is a DIGEST), made once: ec.ECDSA(...) costs ~0.8 us
# (thread_time) against a P-256 signature's ~21 us, and the object is never
# changed by a signature.
_ECDSA: dict[tuple[str, bool], ec.ECDSA] = {
    (name, digest): ec.ECDSA(Prehashed(recipe.hash) if digest else recipe.hash)
    for name, recipe in _SIGNING.items()
    if recipe.scheme == "ECDSA" and recipe.hash is not None
    for digest in (False, True)
}

# RSA-OAEP with MGF1 over the same hash and no label, as AWS KMS does it.
_ENCRYPTION: dict[str, type[hashes.SHA1 | hashes.SHA256]] = {
    "RSAES_OAEP_SHA_1": hashes.SHA1,
    "RSAES_OAEP_SHA_256": hashes.SHA256,
}


@dataclass(frozen=True, slots=True)
class _KeySpec:
    signing: tuple[str, ...]
    encryption: tuple[str, ...] = ()
    key_agreement: tuple[str, ...] = ()
    encapsulation: tuple[str, ...] = ()


_RSA_SPEC = _KeySpec(
    signing=(
        "RSASSA_PSS_SHA_256",
        "RSASSA_PSS_SHA_384",
        "RSASSA_PSS_SHA_512",
        "RSASSA_PKCS1_V1_5_SHA_256",
        "RSASSA_PKCS1_V1_5_SHA_384",
        "RSASSA_PKCS1_V1_5_SHA_512",
    ),
    encryption=("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"),
)
_MLDSA_SPEC = _KeySpec(signing=("ML_DSA_SHAKE_256",))
# The one table of what each key spec can do. AWS lets a KMS key have one key
# usage, so the service picks the column that matches it.
_SPECS: dict[str, _KeySpec] = {
    "RSA_2048": _RSA_SPEC,
    "RSA_3072": _RSA_SPEC,
    "RSA_4096": _RSA_SPEC,
    "ECC_NIST_P256": _KeySpec(signing=("ECDSA_SHA_256",), key_agreement=("ECDH",)),
    "ECC_NIST_P384": _KeySpec(signing=("ECDSA_SHA_384",), key_agreement=("ECDH",)),
    "ECC_NIST_P521": _KeySpec(signing=("ECDSA_SHA_512",), key_agreement=("ECDH",)),
    "ECC_SECG_P256K1": _KeySpec(signing=("ECDSA_SHA_256",)),
    _ED25519: _KeySpec(signing=("ED25519_SHA_512", "ED25519_PH_SHA_512")),
    "ML_DSA_44": _MLDSA_SPEC,
    "ML_DSA_65": _MLDSA_SPEC,
    "ML_DSA_87": _MLDSA_SPEC,
    **{spec: _KeySpec(signing=(), encapsulation=(mlkem.ALGORITHM,)) for spec in mlkem.SPECS},
}
KEY_SPECS = frozenset(_SPECS)
# SM2 is the one AWS data key pair spec left out: cryptography has no SM2.
DATA_KEY_PAIR_SPECS = frozenset(
    {*_RSA_BITS, "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1", _ED25519}
)

_DECRYPT_FAILED = "the ciphertext could not be decrypted with this key and algorithm"


class DecryptFailed(Exception):
    """RSA-OAEP decryption failed: wrong key, wrong algorithm or changed bytes.
    One message for every cause, so the error is no padding oracle."""


class InvalidPublicKey(Exception):
    """A public key that is not DER SubjectPublicKeyInfo of the expected key
    type (and curve, and size), or whose point is not on its curve."""


def _spec(spec: str) -> _KeySpec:
    entry = _SPECS.get(spec)
    if entry is None:
        raise ValueError(f"unknown asymmetric key spec {spec!r}")
    return entry


def signing_algorithms(spec: str) -> tuple[str, ...]:
    return _spec(spec).signing


def encryption_algorithms(spec: str) -> tuple[str, ...]:
    return _spec(spec).encryption


def key_agreement_algorithms(spec: str) -> tuple[str, ...]:
    return _spec(spec).key_agreement


def encapsulation_algorithms(spec: str) -> tuple[str, ...]:
    return _spec(spec).encapsulation


def _new_key(spec: str) -> _PrivateKey:
    if spec in _RSA_BITS:
        return rsa.generate_private_key(_RSA_PUBLIC_EXPONENT, _RSA_BITS[spec])
    if spec in _CURVES:
        return ec.generate_private_key(_CURVES[spec])
    if spec == _ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if spec in _MLDSA:
        return _MLDSA[spec][0].generate()
    raise ValueError(f"unknown asymmetric key spec {spec!r}")


def _pkcs8(key: _PrivateKey) -> KeyMaterial:
    return KeyMaterial.any_size(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _spki(key: _PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate_private_key(spec: str) -> KeyMaterial:
    """A fresh private key of ``spec`` as PKCS#8 DER. RSA_4096 takes around a
    second: callers off the event loop run it in a thread."""
    if spec in mlkem.SPECS:
        return mlkem.generate(spec)
    return _pkcs8(_new_key(spec))


def generate_data_key_pair(spec: str) -> tuple[KeyMaterial, bytes]:
    """GenerateDataKeyPair: (PKCS#8 DER private key, DER SPKI public key)."""
    if spec not in DATA_KEY_PAIR_SPECS:
        raise ValueError(f"unknown data key pair spec {spec!r}")
    key = _new_key(spec)
    return _pkcs8(key), _spki(key.public_key())


def _is_public_key_of(key: object, spec: str) -> TypeGuard[_PublicKey]:
    if spec in _RSA_BITS:
        return isinstance(key, rsa.RSAPublicKey) and key.key_size == _RSA_BITS[spec]
    if spec in _CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _CURVES[spec].name
    if spec == _ED25519:
        return isinstance(key, ed25519.Ed25519PublicKey)
    if spec in _MLDSA:
        return isinstance(key, _MLDSA[spec][1])
    return False


def _load_public(spec: str, public_der: bytes) -> _PublicKey:
    _spec(spec)
    try:
        # Loading checks that an EC point is on its curve.
        key = serialization.load_der_public_key(public_der)
    except (ValueError, _BackendUnsupported):
        raise InvalidPublicKey(f"not a DER SubjectPublicKeyInfo public key for {spec}") from None
    if not _is_public_key_of(key, spec):
        raise InvalidPublicKey(f"the public key is not a {spec} key")
    return key


def _signing(spec: str, algorithm: str, message: bytes, message_type: str) -> _Signing:
    """The recipe for ``algorithm``, after every check AWS makes of the request."""
    if algorithm not in _spec(spec).signing:
        raise ValueError(f"signing algorithm {algorithm!r} is not valid for key spec {spec}")
    recipe = _SIGNING[algorithm]
    if message_type not in recipe.message_types:
        raise ValueError(f"message type {message_type!r} is not valid for {algorithm}")
    if message_type == DIGEST:
        assert recipe.hash is not None  # every algorithm that takes DIGEST has a hash
        if len(message) != recipe.hash.digest_size:
            raise ValueError(
                f"a {algorithm} digest must be {recipe.hash.digest_size} bytes, not {len(message)}"
            )
    if message_type == EXTERNAL_MU and len(message) != _MU_SIZE:
        raise ValueError(f"an external mu must be {_MU_SIZE} bytes, not {len(message)}")
    return recipe


def _hash_arg(recipe: _Signing, message_type: str) -> hashes.HashAlgorithm | Prehashed:
    assert recipe.hash is not None
    # Prehashed: a DIGEST is signed as it is, never hashed a second time.
    return Prehashed(recipe.hash) if message_type == DIGEST else recipe.hash


def _rsa_padding(recipe: _Signing) -> padding.AsymmetricPadding:
    if recipe.scheme == "PKCS1":
        return padding.PKCS1v15()
    assert recipe.hash is not None
    # AWS's PSS: MGF1 over the message hash, salt as long as the digest.
    return padding.PSS(mgf=padding.MGF1(recipe.hash), salt_length=recipe.hash.digest_size)


def _verify(
    key: _PublicKey, recipe: _Signing, message: bytes, message_type: str, signature: bytes
) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, _rsa_padding(recipe), _hash_arg(recipe, message_type))
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(_hash_arg(recipe, message_type)))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            if recipe.scheme == "ED25519PH":
                return ed25519ph.verify(key.public_bytes_raw(), message, signature)
            key.verify(signature, message)
        elif message_type == EXTERNAL_MU:
            key.verify_mu(signature, message)
        else:
            key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def verify_with_public_key(  # noqa: PLR0917 - the Verify request's fields, in order
    spec: str,
    public_der: bytes,
    algorithm: str,
    message: bytes,
    message_type: str,
    signature: bytes,
) -> bool:
    """Verify with a DER SPKI public key of ``spec``. False for any signature
    that does not verify; InvalidPublicKey if the key is not of ``spec``."""
    recipe = _signing(spec, algorithm, message, message_type)
    return _verify(_load_public(spec, public_der), recipe, message, message_type, signature)


def encrypt_with_public_key(
    spec: str, public_der: bytes, algorithm: str, plaintext: bytes
) -> bytes:
    """RSAES-OAEP (AWS's, as ``PrivateKey.encrypt``) with a DER SPKI public
    key of ``spec``; ValueError for an algorithm the spec lacks or a
    plaintext too long for one block."""
    if algorithm not in _spec(spec).encryption:
        raise ValueError(f"encryption algorithm {algorithm!r} is not valid for key spec {spec}")
    public = _load_public(spec, public_der)
    assert isinstance(public, rsa.RSAPublicKey)  # only RSA specs have encryption algorithms
    hash_algorithm = _ENCRYPTION[algorithm]()
    oaep = padding.OAEP(mgf=padding.MGF1(hash_algorithm), algorithm=hash_algorithm, label=None)
    limit = (public.key_size + 7) // 8 - 2 * hash_algorithm.digest_size - 2
    if len(plaintext) > limit:
        raise ValueError(
            f"plaintext is {len(plaintext)} bytes; {algorithm} with {spec} takes at most {limit}"
        )
    return public.encrypt(plaintext, oaep)


@dataclass(frozen=True, slots=True, eq=False)
class PrivateKey:
    """A loaded private key; load once and cache (loading is the slow part)."""

    spec: str
    # An ML-KEM key is one KemKey in both fields.
    _key: _PrivateKey | mlkem.KemKey = field(repr=False)
    _public: _PublicKey | mlkem.KemKey = field(repr=False)
    _public_der: bytes = field(repr=False)

    @classmethod
    def load(cls, spec: str, pkcs8_der: KeyMaterial, *, validate: bool = False) -> PrivateKey:
        """ValueError if the DER does not load or is not a key of ``spec``.

        RSA keys skip OpenSSL's consistency check unless ``validate``: keycask
        made the key and the barrier authenticates it at rest, and the check
        (40 ms at 2048 bits, 290 ms at 4096) would only re-check our own
        output. Material from outside keycask (an import) passes
        ``validate=True``.
        """
        _spec(spec)
        if spec in mlkem.SPECS:
            kem = mlkem.KemKey.load(spec, pkcs8_der)
            return cls(spec, kem, kem, kem.public_der())
        try:
            key = serialization.load_der_private_key(
                pkcs8_der.reveal(), password=None, unsafe_skip_rsa_key_validation=not validate
            )
        except (ValueError, TypeError, _BackendUnsupported):
            # TypeError: the DER is encrypted. None of these errors quotes the key.
            raise ValueError(f"not an unencrypted PKCS#8 DER private key for {spec}") from None
        if not isinstance(key, _PRIVATE_TYPES):
            raise ValueError(f"the private key is not a {spec} key")
        public = key.public_key()
        if not _is_public_key_of(public, spec):
            raise ValueError(f"the private key is not a {spec} key")
        return cls(spec, key, public, _spki(public))

    def public_der(self) -> bytes:
        """DER SubjectPublicKeyInfo, what GetPublicKey returns."""
        return self._public_der

    def sign(self, algorithm: str, message: bytes, message_type: str) -> bytes:
        recipe = _signing(self.spec, algorithm, message, message_type)
        key = self._key
        # EC first: the key types are disjoint, and an ECDSA signature is the
        # cheap one whose ~0.14 us isinstance check of RSA is worth skipping.
        if isinstance(key, ec.EllipticCurvePrivateKey):
            # DER-encoded (r, s), as AWS KMS returns ECDSA signatures.
            return key.sign(message, _ECDSA[algorithm, message_type == DIGEST])
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(message, _rsa_padding(recipe), _hash_arg(recipe, message_type))
        if isinstance(key, ed25519.Ed25519PrivateKey):
            if recipe.scheme == "ED25519PH":
                return ed25519ph.sign(key.private_bytes_raw(), message)
            return key.sign(message)
        assert not isinstance(key, mlkem.KemKey)  # no signing algorithm: _signing refused it
        if message_type == EXTERNAL_MU:
            return key.sign_mu(message)
        # RAW ML-DSA: the empty context string, as AWS KMS signs.
        return key.sign(message)

    def verify(self, algorithm: str, message: bytes, message_type: str, signature: bytes) -> bool:
        """False for any signature that does not verify, whatever its shape."""
        recipe = _signing(self.spec, algorithm, message, message_type)
        public = self._public
        assert not isinstance(public, mlkem.KemKey)  # no signing algorithm: _signing refused it
        return _verify(public, recipe, message, message_type, signature)

    def _oaep(self, algorithm: str) -> tuple[rsa.RSAPrivateKey, padding.OAEP, int]:
        if algorithm not in _spec(self.spec).encryption:
            raise ValueError(
                f"encryption algorithm {algorithm!r} is not valid for key spec {self.spec}"
            )
        key = self._key
        assert isinstance(key, rsa.RSAPrivateKey)  # only RSA specs have encryption algorithms
        hash_algorithm = _ENCRYPTION[algorithm]()
        oaep = padding.OAEP(mgf=padding.MGF1(hash_algorithm), algorithm=hash_algorithm, label=None)
        # RFC 8017 section 7.1.1: k - 2hLen - 2 bytes fit in one OAEP block.
        limit = (key.key_size + 7) // 8 - 2 * hash_algorithm.digest_size - 2
        return key, oaep, limit

    def encrypt(self, algorithm: str, plaintext: bytes) -> bytes:
        """RSA-OAEP with the public half; ValueError for a plaintext too long
        for one block."""
        _, oaep, limit = self._oaep(algorithm)
        if len(plaintext) > limit:
            raise ValueError(
                f"plaintext is {len(plaintext)} bytes; {algorithm} with {self.spec} "
                f"takes at most {limit}"
            )
        public = self._public
        assert isinstance(public, rsa.RSAPublicKey)
        return public.encrypt(plaintext, oaep)

    def decrypt(self, algorithm: str, ciphertext: bytes) -> KeyMaterial:
        key, oaep, _ = self._oaep(algorithm)
        try:
            return KeyMaterial.any_size(key.decrypt(ciphertext, oaep))
        except ValueError:
            # cryptography reports a bad length and a bad padding both as ValueError.
            raise DecryptFailed(_DECRYPT_FAILED) from None

    def derive_shared_secret(self, peer_public_der: bytes) -> KeyMaterial:
        """ECDH (SP 800-56A): the raw shared secret, the x-coordinate of the
        shared point, which AWS returns without a KDF."""
        if "ECDH" not in _spec(self.spec).key_agreement:
            raise ValueError(f"key spec {self.spec} has no key agreement algorithm")
        key = self._key
        assert isinstance(key, ec.EllipticCurvePrivateKey)  # only NIST EC specs have ECDH
        peer = _load_public(self.spec, peer_public_der)
        assert isinstance(peer, ec.EllipticCurvePublicKey)
        try:
            return KeyMaterial.any_size(key.exchange(ec.ECDH(), peer))
        except ValueError:
            raise InvalidPublicKey("the peer public key is not a valid point") from None

    def _kem(self) -> mlkem.KemKey:
        key = self._key
        if not isinstance(key, mlkem.KemKey):
            raise ValueError(f"key spec {self.spec} has no key encapsulation algorithm")
        return key

    def encapsulate(self) -> tuple[KeyMaterial, bytes]:
        """ML-KEM: a fresh (32-byte shared secret, ciphertext)."""
        return self._kem().encapsulate()

    def decapsulate(self, ciphertext: bytes) -> KeyMaterial:
        """ML-KEM: the 32-byte shared secret (pseudo-random for a changed or
        foreign ciphertext); mlkem.CiphertextLengthInvalid for a ciphertext
        of the wrong length."""
        return self._kem().decapsulate(ciphertext)
