"""ML-KEM (FIPS 203): AWS KMS's ML_KEM_512, ML_KEM_768 and ML_KEM_1024 key
specs, their one algorithm ML_KEM, Encapsulate and Decapsulate.

``cryptography`` has ML-KEM-768 and ML-KEM-1024 but no ML-KEM-512, so all
three come from pycryptodome (4.5 and later), whose ML-KEM passes the
Wycheproof and RFC 9935 vectors it ships (tests/unit/test_mlkem.py runs them
against this module) and interoperates with ``cryptography`` both ways (the
same tests). pycryptodome names its two KEM primitives with a leading
underscore (its own HPKE and hybrid KEMs call them the same way); this module
is the one place that calls them, so a change of that name breaks here and
in those tests, nowhere else.

The private key is stored as PKCS#8 DER holding only the 64-byte seed (d || z),
the form RFC 9935 recommends; the public key leaves as DER
SubjectPublicKeyInfo (RFC 9935 section 4), what AWS's GetPublicKey returns.
Decapsulation of a ciphertext of the right length never fails: a changed or
foreign ciphertext gives a pseudo-random secret (FIPS 203's implicit
rejection), as AWS documents for Decapsulate. Only a ciphertext of the wrong
length is refused.
"""

from __future__ import annotations

from Crypto.PublicKey import MLKEM

from keycask.crypto.material import KeyMaterial

ALGORITHM = "ML_KEM"
SHARED_SECRET_SIZE = 32
_PARAM_SETS: dict[str, MLKEM.ParamSet] = {
    "ML_KEM_512": MLKEM.ML_KEM_512,
    "ML_KEM_768": MLKEM.ML_KEM_768,
    "ML_KEM_1024": MLKEM.ML_KEM_1024,
}
SPECS = frozenset(_PARAM_SETS)
# FIPS 203 table 3: the ciphertext's length, which AWS's API reference repeats.
CIPHERTEXT_SIZES = {"ML_KEM_512": 768, "ML_KEM_768": 1088, "ML_KEM_1024": 1568}


class CiphertextLengthInvalid(ValueError):
    """A ciphertext whose length is not the one of the key's spec: the one
    Decapsulate input that is refused rather than implicitly rejected."""


def _param_set(spec: str) -> MLKEM.ParamSet:
    param_set = _PARAM_SETS.get(spec)
    if param_set is None:
        raise ValueError(f"unknown ML-KEM key spec {spec!r}")
    return param_set


def generate(spec: str) -> KeyMaterial:
    """A fresh private key of ``spec``: PKCS#8 DER of its seed."""
    key = MLKEM.generate(param_set=_param_set(spec))
    return KeyMaterial.any_size(key.export_key(format="DER"))


class KemKey:
    """A loaded ML-KEM private key (and so its public half)."""

    __slots__ = ("_key", "_public_der", "spec")

    def __init__(self, spec: str, key: MLKEM.MLKEMKey) -> None:
        self.spec = spec
        self._key = key
        self._public_der: bytes = key.public_key().export_key(format="DER")

    def __repr__(self) -> str:
        return f"KemKey({self.spec}, <private key redacted>)"

    @classmethod
    def load(cls, spec: str, pkcs8_der: KeyMaterial) -> KemKey:
        """ValueError if the DER is not an unencrypted RFC 9935 private key of
        ``spec`` (seed, expanded key or both; the parts must match)."""
        param_set = _param_set(spec)
        try:
            # A passphrase-protected key would need a passphrase: refused.
            key = MLKEM.import_key(pkcs8_der.reveal())
        except (ValueError, TypeError, IndexError):
            # None of these errors quotes the key.
            raise ValueError(f"not an unencrypted PKCS#8 DER private key for {spec}") from None
        if not key.has_private() or key.param_set is not param_set:
            raise ValueError(f"the private key is not a {spec} key")
        return cls(spec, key)

    def public_der(self) -> bytes:
        """DER SubjectPublicKeyInfo (RFC 9935), what GetPublicKey returns."""
        return self._public_der

    def encapsulate(self) -> tuple[KeyMaterial, bytes]:
        """A fresh (shared secret, ciphertext) under the public key."""
        # pycryptodome's KEM primitives (see the module docstring).
        secret, ciphertext = self._key._encaps()
        return KeyMaterial.any_size(secret), ciphertext

    def decapsulate(self, ciphertext: bytes) -> KeyMaterial:
        """The 32-byte shared secret; CiphertextLengthInvalid only for a
        ciphertext of the wrong length (any other ciphertext gives a secret)."""
        size = CIPHERTEXT_SIZES[self.spec]
        if len(ciphertext) != size:
            raise CiphertextLengthInvalid(
                f"an {self.spec} ciphertext is {size} bytes, not {len(ciphertext)}"
            )
        return KeyMaterial.any_size(self._key._decaps(ciphertext))
