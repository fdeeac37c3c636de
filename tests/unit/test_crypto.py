"""The crypto recipes: KeyMaterial does not leak, seal/open and the per-message
recipe authenticate every byte, the message KDF is a function of (material, salt)."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

from keycask.crypto import (
    MESSAGE_OVERHEAD,
    MESSAGE_SALT_SIZE,
    NONCE_SIZE,
    AuthenticationFailed,
    KeyMaterial,
    open_message,
    open_sealed,
    random_bytes,
    seal,
    seal_message,
)
from keycask.crypto.aead import TAG_SIZE
from keycask.crypto.kdf import derive_message_key

SECRET = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f900f1e2d3c4b5a69788796a5b4c3d2e1f0")


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


# -- KeyMaterial -----------------------------------------------------------------


def _leaks(text: str) -> bool:
    return any(
        needle in text.lower()
        for needle in (SECRET.hex(), SECRET.hex()[:16], repr(SECRET)[2:18].lower(), str(SECRET))
    )


def test_repr_and_str_are_redacted() -> None:
    km = KeyMaterial(SECRET)
    renderings = [repr(km), str(km), f"{km}", f"{km!r}", format(km), repr([km])]
    renderings += ["%s %r" % (km, km), repr({"k": km})]  # noqa: UP031
    # what a logger would print for logger.info("key %s", km)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "key %s %r", (km, km), None)
    renderings.append(record.getMessage())
    for text in renderings:
        assert not _leaks(text), text
    assert repr(km) == "KeyMaterial(<32 bytes redacted>)"
    assert str(km) == "KeyMaterial(<32 bytes redacted>)"
    assert repr(KeyMaterial(SECRET[:16])) == "KeyMaterial(<16 bytes redacted>)"


def test_repr_stays_redacted_after_use() -> None:
    km = KeyMaterial(SECRET)
    open_sealed(km, seal(km, b"x", aad=b""), aad=b"")  # populates the cached AEAD context
    assert repr(km) == "KeyMaterial(<32 bytes redacted>)"
    assert not hasattr(km, "__dict__")  # __slots__: vars() shows nothing


def test_no_equality() -> None:
    a, b = KeyMaterial(SECRET), KeyMaterial(SECRET)
    with pytest.raises(TypeError):
        _ = a == b
    with pytest.raises(TypeError):
        _ = a != b
    with pytest.raises(TypeError):
        _ = a == SECRET
    with pytest.raises(TypeError):
        _ = a == a  # noqa: PLR0124


def test_not_hashable() -> None:
    km = KeyMaterial(SECRET)
    with pytest.raises(TypeError):
        hash(km)
    with pytest.raises(TypeError):
        _ = {km}
    with pytest.raises(TypeError):
        _ = {km: 1}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_refused(protocol: int) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(KeyMaterial(SECRET), protocol=protocol)


def test_copy_and_deepcopy_refused() -> None:
    km = KeyMaterial(SECRET)
    with pytest.raises(TypeError):
        copy.copy(km)
    with pytest.raises(TypeError):
        copy.deepcopy(km)
    with pytest.raises(TypeError):
        copy.deepcopy({"nested": [km]})


def test_error_messages_do_not_leak() -> None:
    km = KeyMaterial(SECRET)
    for action in (
        lambda: km == km,  # noqa: PLR0124
        lambda: hash(km),
        lambda: pickle.dumps(km),
        lambda: copy.copy(km),
    ):
        with pytest.raises(TypeError) as info:
            action()
        assert not _leaks(str(info.value))
        assert not _leaks(repr(info.value))


def test_matches_is_by_value() -> None:
    km = KeyMaterial(SECRET)
    assert km.matches(km)
    assert km.matches(KeyMaterial(SECRET))
    assert not km.matches(KeyMaterial(_flip(SECRET, 31)))
    assert not km.matches(KeyMaterial(SECRET[:16]))
    assert not KeyMaterial(SECRET[:16]).matches(km)


@pytest.mark.parametrize("size", [0, 1, 15, 17, 20, 31, 33, 64])
def test_rejects_non_aes_sizes(size: int) -> None:
    with pytest.raises(ValueError):
        KeyMaterial(bytes(size))
    with pytest.raises(ValueError):
        KeyMaterial.generate(size)


@pytest.mark.parametrize("size", [16, 24, 32])
def test_generate(size: int) -> None:
    a, b = KeyMaterial.generate(size), KeyMaterial.generate(size)
    assert len(a) == size and len(a.reveal()) == size
    assert not a.matches(b)
    assert len(KeyMaterial.generate()) == 32


def test_copies_a_mutable_secret() -> None:
    buf = bytearray(SECRET)
    km = KeyMaterial(buf)  # type: ignore[arg-type]  # callers may hold a bytearray
    buf[0] ^= 0xFF
    assert km.reveal() == SECRET
    assert type(km.reveal()) is bytes


def test_random_bytes() -> None:
    assert len(random_bytes(0)) == 0
    assert len(random_bytes(37)) == 37
    assert random_bytes(32) != random_bytes(32)


# -- seal / open_sealed ----------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000, 65536])
@pytest.mark.parametrize("key_size", [16, 24, 32])
def test_seal_round_trip(size: int, key_size: int) -> None:
    km = KeyMaterial.generate(key_size)
    plaintext = random_bytes(size)
    sealed = seal(km, plaintext, aad=b"path/to/value")
    assert len(sealed) == NONCE_SIZE + size + TAG_SIZE
    assert open_sealed(km, sealed, aad=b"path/to/value") == plaintext


def test_seal_is_not_deterministic() -> None:
    km = KeyMaterial(SECRET)
    sealed = [seal(km, b"same plaintext", aad=b"same aad") for _ in range(64)]
    assert len(set(sealed)) == len(sealed)
    assert len({s[:NONCE_SIZE] for s in sealed}) == len(sealed)


def test_seal_every_bit_of_nonce_ciphertext_and_tag_is_authenticated() -> None:
    km = KeyMaterial(SECRET)
    sealed = seal(km, b"0123456789abcdef!", aad=b"aad")
    for index in range(len(sealed)):
        for bit in range(8):
            with pytest.raises(AuthenticationFailed):
                open_sealed(km, _flip(sealed, index, 1 << bit), aad=b"aad")


@pytest.mark.parametrize("aad", [b"", b"aad ", b"aa", b"AAD", b"aad\x00", b"\x00aad", b"bad"])
def test_seal_aad_is_authenticated(aad: bytes) -> None:
    km = KeyMaterial(SECRET)
    sealed = seal(km, b"secret", aad=b"aad")
    with pytest.raises(AuthenticationFailed):
        open_sealed(km, sealed, aad=aad)


def test_seal_wrong_key_truncation_and_extension() -> None:
    km = KeyMaterial(SECRET)
    sealed = seal(km, b"secret value", aad=b"a")
    with pytest.raises(AuthenticationFailed):
        open_sealed(KeyMaterial(_flip(SECRET, 0)), sealed, aad=b"a")
    for cut in range(len(sealed)):
        with pytest.raises(AuthenticationFailed):
            open_sealed(km, sealed[:cut], aad=b"a")
    for extra in (b"\x00", b"\x00" * 16, b"x"):
        with pytest.raises(AuthenticationFailed):
            open_sealed(km, sealed + extra, aad=b"a")
    # A nonce swapped in from another seal of the same plaintext does not open.
    other = seal(km, b"secret value", aad=b"a")
    with pytest.raises(AuthenticationFailed):
        open_sealed(km, other[:NONCE_SIZE] + sealed[NONCE_SIZE:], aad=b"a")


# -- seal_message / open_message -------------------------------------------------

HEADER = b"\x01" + bytes(range(16)) + b"\x00\x00\x00\x05"
CONTEXT = b"\x00\x01\x00\x01k\x00\x01v"


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 4096])
def test_message_round_trip(size: int) -> None:
    km = KeyMaterial.generate()
    plaintext = random_bytes(size)
    body = seal_message(km, plaintext, header=HEADER, context=CONTEXT)
    assert len(body) == size + MESSAGE_OVERHEAD
    assert open_message(km, body, header=HEADER, context=CONTEXT) == plaintext


def test_message_is_not_deterministic() -> None:
    km = KeyMaterial(SECRET)
    bodies = [seal_message(km, b"p", header=HEADER, context=CONTEXT) for _ in range(32)]
    assert len({b[:MESSAGE_SALT_SIZE] for b in bodies}) == len(bodies)
    assert len({b[MESSAGE_SALT_SIZE : MESSAGE_SALT_SIZE + NONCE_SIZE] for b in bodies}) == 32


def test_message_every_bit_of_the_body_is_authenticated() -> None:
    km = KeyMaterial(SECRET)
    body = seal_message(km, b"pt", header=HEADER, context=CONTEXT)
    for index in range(len(body)):
        for bit in range(8):
            with pytest.raises(AuthenticationFailed):
                open_message(km, _flip(body, index, 1 << bit), header=HEADER, context=CONTEXT)


def test_message_every_byte_of_header_and_context_is_authenticated() -> None:
    km = KeyMaterial(SECRET)
    body = seal_message(km, b"pt", header=HEADER, context=CONTEXT)
    for index in range(len(HEADER)):
        with pytest.raises(AuthenticationFailed):
            open_message(km, body, header=_flip(HEADER, index, 0xFF), context=CONTEXT)
    for index in range(len(CONTEXT)):
        with pytest.raises(AuthenticationFailed):
            open_message(km, body, header=HEADER, context=_flip(CONTEXT, index, 0xFF))
    for header, context in [
        (HEADER, b""),
        (HEADER, CONTEXT + b"\x00"),
        (HEADER[:-1], CONTEXT),
        (HEADER + b"\x00", CONTEXT),
        # moving a byte across the header/context boundary changes the AAD split
        (HEADER[:-1], HEADER[-1:] + CONTEXT),
    ]:
        with pytest.raises(AuthenticationFailed):
            open_message(km, body, header=header, context=context)


def test_message_wrong_material_and_bad_lengths() -> None:
    km = KeyMaterial(SECRET)
    body = seal_message(km, b"plaintext", header=HEADER, context=CONTEXT)
    with pytest.raises(AuthenticationFailed):
        open_message(KeyMaterial(_flip(SECRET, 5)), body, header=HEADER, context=CONTEXT)
    with pytest.raises(AuthenticationFailed):
        open_message(KeyMaterial(SECRET[:16]), body, header=HEADER, context=CONTEXT)
    for cut in range(len(body)):
        with pytest.raises(AuthenticationFailed):
            open_message(km, body[:cut], header=HEADER, context=CONTEXT)
    with pytest.raises(AuthenticationFailed):
        open_message(km, body + b"\x00", header=HEADER, context=CONTEXT)


def test_message_is_not_a_plain_seal_under_the_material() -> None:
    """The body is encrypted under the derived key, not the material itself."""
    km = KeyMaterial(SECRET)
    body = seal_message(km, b"plaintext", header=HEADER, context=CONTEXT)
    salt, rest = body[:MESSAGE_SALT_SIZE], body[MESSAGE_SALT_SIZE:]
    aad = HEADER + salt + rest[:NONCE_SIZE] + CONTEXT
    with pytest.raises(AuthenticationFailed):
        open_sealed(km, rest, aad=aad)
    assert open_sealed(derive_message_key(km, salt), rest, aad=aad) == b"plaintext"


# -- derive_message_key ----------------------------------------------------------


def test_derive_message_key_is_deterministic_per_salt() -> None:
    salt = bytes(range(16))
    a = derive_message_key(KeyMaterial(SECRET), salt)
    b = derive_message_key(KeyMaterial(SECRET), salt)
    assert isinstance(a, KeyMaterial) and len(a) == 32
    assert a.matches(b)
    assert not a.matches(KeyMaterial(SECRET))


def test_derive_message_key_differs_across_salts_and_materials() -> None:
    km = KeyMaterial(SECRET)
    salts = [bytes(16), b"\x00" * 15 + b"\x01", b"\x80" + bytes(15), bytes(range(16)), b""]
    salts += [random_bytes(16) for _ in range(20)]
    derived = [derive_message_key(km, s).reveal() for s in salts]
    assert len(set(derived)) == len(salts)
    other = derive_message_key(KeyMaterial(_flip(SECRET, 0)), salts[0]).reveal()
    assert other not in derived
    short = derive_message_key(KeyMaterial(SECRET[:16]), salts[0]).reveal()
    assert short not in derived and len(short) == 32


def test_key_material_hmac_matches_the_standard_library() -> None:
    import hmac as std_hmac
    import os as std_os

    for size in (16, 24, 32):
        material = KeyMaterial(std_os.urandom(size))
        for length in (0, 1, 55, 56, 63, 64, 65, 1000):
            message = std_os.urandom(length)
            expected = std_hmac.digest(material.reveal(), message, "sha256")
            assert material.hmac_sha256(message) == expected
            assert material.hmac_sha256(message) == expected  # cached states are not consumed
