"""Properties of the v1 wire formats: the canonical encryption context is an
injective, order-free, exactly-invertible encoding, and a ciphertext blob
authenticates every bit of itself and of its context."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Callable

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from keycask.crypto import KeyMaterial
from keycask.errors import InvalidCiphertextException, ValidationException
from keycask.keys.ids import is_record_id
from keycask.keys.wire import (
    HEADER_SIZE,
    MIN_BLOB_SIZE,
    BlobHeader,
    decode_context,
    encode_context,
    open_blob,
    parse_blob,
    seal_blob,
)

# Short keys/values make collisions (and prefix relations) between generated
# contexts likely; st.text() never generates surrogates.
short_text = st.text(alphabet=st.sampled_from("ab\x00\uffff\U00010000\u00e9"), max_size=3)
any_text = st.text(max_size=12)
texts = st.one_of(short_text, any_text)
contexts = st.dictionaries(texts, texts, max_size=6)
nonempty_contexts = st.dictionaries(texts, texts, min_size=1, max_size=6)
surrogate_text = st.builds(
    lambda a, s, b: a + s + b,
    any_text,
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    any_text,
)

MATERIAL = KeyMaterial(bytes(range(32)))


def _raw(pairs: list[tuple[bytes, bytes]], count: int | None = None) -> bytes:
    """Encode pairs in the given order, without any checks."""
    out = [(len(pairs) if count is None else count).to_bytes(2, "big")]
    for k, v in pairs:
        out += [len(k).to_bytes(2, "big"), k, len(v).to_bytes(2, "big"), v]
    return b"".join(out)


def _pairs(context: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return sorted((k.encode(), v.encode()) for k, v in context.items())


# -- canonical encryption context ------------------------------------------------


@given(contexts, contexts)
@example({"ab": ""}, {"a": "b"})
@example({"a": "bc"}, {"ab": "c"})
@example({"a": "", "b": ""}, {"a": "\x00\x00\x00\x01b\x00\x00"})
@example({}, {"": ""})
def test_encode_context_is_injective(a: dict[str, str], b: dict[str, str]) -> None:
    assume(a != b)
    assert encode_context(a) != encode_context(b)


@given(nonempty_contexts, st.data())
def test_moving_the_key_value_boundary_changes_the_encoding(
    context: dict[str, str], data: st.DataObject
) -> None:
    """The attack that length prefixes stop: the same characters, split
    differently between a key and its value."""
    key = data.draw(st.sampled_from(sorted(context)))
    joined = key + context[key]
    cut = data.draw(st.integers(0, len(joined)))
    assume(cut != len(key))
    other = {k: v for k, v in context.items() if k != key}
    other[joined[:cut]] = joined[cut:]
    assume(other != context)
    assert encode_context(other) != encode_context(context)


def test_concatenation_pair_differs() -> None:
    assert encode_context({"ab": ""}) != encode_context({"a": "b"})


@given(contexts, st.randoms(use_true_random=False))
def test_encode_context_is_order_independent(context: dict[str, str], rnd: random.Random) -> None:
    items = list(context.items())
    rnd.shuffle(items)
    assert encode_context(dict(items)) == encode_context(context)
    assert encode_context(dict(reversed(items))) == encode_context(context)


@given(contexts)
@example({"\uffff": "x", "\U00010000": "y"})
def test_decode_inverts_encode(context: dict[str, str]) -> None:
    encoded = encode_context(context)
    assert decode_context(encoded) == context
    # and it is a bijection onto its image: re-encoding gives the same bytes
    assert encode_context(decode_context(encoded)) == encoded


@given(contexts)
def test_encoding_is_sorted_by_utf8_bytes(context: dict[str, str]) -> None:
    assert encode_context(context) == _raw(_pairs(context))


def test_none_and_empty_encode_identically() -> None:
    assert encode_context(None) == encode_context({}) == b"\x00\x00"
    assert decode_context(b"\x00\x00") == {}
    assert encode_context({"": ""}) != encode_context({})


_INVALID_UTF8 = [
    b"\xff",
    b"\x80",  # lone continuation byte
    b"\xc0\x80",  # overlong NUL
    b"\xe0\x80\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # UTF-8-encoded surrogate
    b"\xe2\x82",  # truncated sequence
    b"\xf4\x90\x80\x80",  # above U+10FFFF
]


def _unsorted(pairs: list[tuple[bytes, bytes]], data: st.DataObject) -> bytes:
    assume(len(pairs) >= 2)
    i = data.draw(st.integers(0, len(pairs) - 2))
    swapped = [*pairs[:i], pairs[i + 1], pairs[i], *pairs[i + 2 :]]
    return _raw(swapped)


def _duplicated(pairs: list[tuple[bytes, bytes]], data: st.DataObject) -> bytes:
    i = data.draw(st.integers(0, len(pairs) - 1))
    value = data.draw(st.sampled_from([pairs[i][1], b"other"]))
    return _raw([*pairs[: i + 1], (pairs[i][0], value), *pairs[i + 1 :]])


def _trailing(pairs: list[tuple[bytes, bytes]], data: st.DataObject) -> bytes:
    return _raw(pairs) + data.draw(st.binary(min_size=1, max_size=4))


def _truncated(pairs: list[tuple[bytes, bytes]], data: st.DataObject) -> bytes:
    full = _raw(pairs)
    return full[: data.draw(st.integers(0, len(full) - 1))]


def _bad_count(pairs: list[tuple[bytes, bytes]], data: st.DataObject) -> bytes:
    delta = data.draw(st.sampled_from([-1, 1, 2, 0x8000]))
    return _raw(pairs, count=(len(pairs) + delta) % 0x10000)


def _invalid_utf8(pairs: list[tuple[bytes, bytes]], data: st.DataObject) -> bytes:
    i = data.draw(st.integers(0, len(pairs) - 1))
    bad = data.draw(st.sampled_from(_INVALID_UTF8))
    in_key = data.draw(st.booleans())
    k, v = pairs[i]
    k2, v2 = (k + bad, v) if in_key else (k, bad + v)
    # keep keys sorted so that the UTF-8 check is what has to reject it
    mutated = [*pairs[:i], (k2, v2), *pairs[i + 1 :]]
    assume(all(a[0] < b[0] for a, b in itertools.pairwise(mutated)))
    return _raw(mutated)


MUTATIONS: dict[str, Callable[[list[tuple[bytes, bytes]], st.DataObject], bytes]] = {
    "unsorted": _unsorted,
    "duplicated": _duplicated,
    "trailing": _trailing,
    "truncated": _truncated,
    "bad_count": _bad_count,
    "invalid_utf8": _invalid_utf8,
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@given(context=nonempty_contexts, data=st.data())
def test_decode_rejects_mutations(
    mutation: str, context: dict[str, str], data: st.DataObject
) -> None:
    mutated = MUTATIONS[mutation](_pairs(context), data)
    assert mutated != encode_context(context)
    with pytest.raises(ValueError) as info:
        decode_context(mutated)
    assert type(info.value) is ValueError


@given(st.binary(min_size=1, max_size=6))
def test_decode_rejects_mutated_empty_context(extra: bytes) -> None:
    for data in (b"", b"\x00", b"\x00\x01", b"\x00\x00" + extra):
        with pytest.raises(ValueError):
            decode_context(data)


@given(st.one_of(st.binary(max_size=64), contexts.map(encode_context)))
def test_decode_accepts_exactly_the_canonical_encodings(data: bytes) -> None:
    try:
        decoded = decode_context(data)
    except ValueError as exc:
        assert type(exc) is ValueError
        return
    assert encode_context(decoded) == data


@given(surrogate_text, any_text, st.booleans())
def test_surrogates_are_a_validation_error(bad: str, good: str, in_key: bool) -> None:
    context = {bad: good} if in_key else {good: bad}
    with pytest.raises(ValidationException):
        encode_context(context)


def test_field_length_limits() -> None:
    assert decode_context(encode_context({"k" * 0xFFFF: "v" * 0xFFFF})) == {
        "k" * 0xFFFF: "v" * 0xFFFF
    }
    with pytest.raises(ValidationException):
        encode_context({"k" * 0x10000: ""})
    with pytest.raises(ValidationException):
        encode_context({"k": "\u00e9" * 0x8000})  # 64 KiB of UTF-8 from 32 Ki chars


# -- ciphertext blob v1 ----------------------------------------------------------

# keycask key ids are version-4 UUIDs; a version-8 one is a multi-Region
# copy's record id, which a v1 blob may not name (wire.blob_header refuses it).
headers = st.builds(BlobHeader, st.uuids(version=4), st.integers(0, 2**32 - 1))
plaintexts = st.binary(min_size=1, max_size=4096)


@given(headers, plaintexts, contexts)
def test_blob_round_trip(header: BlobHeader, plaintext: bytes, context: dict[str, str]) -> None:
    ctx = encode_context(context)
    blob = seal_blob(MATERIAL, header, plaintext, ctx)
    assert len(blob) == MIN_BLOB_SIZE + len(plaintext)
    parsed, body = parse_blob(blob)
    assert parsed == header
    assert body == blob[HEADER_SIZE:]
    assert open_blob(MATERIAL, blob, ctx) == plaintext


@given(headers, st.binary(min_size=1, max_size=64), contexts)
def test_two_seals_differ(header: BlobHeader, plaintext: bytes, context: dict[str, str]) -> None:
    ctx = encode_context(context)
    a, b = (seal_blob(MATERIAL, header, plaintext, ctx) for _ in range(2))
    assert a != b
    assert a[:HEADER_SIZE] == b[:HEADER_SIZE]
    assert open_blob(MATERIAL, a, ctx) == open_blob(MATERIAL, b, ctx) == plaintext


def _assert_rejected(original: BlobHeader, blob: bytes, ctx: bytes) -> None:
    """parse_blob or open_blob (with the original material) must refuse; a header
    that still parses after a change in the key id/version region names another
    key version, so the service would not even pick this material."""
    try:
        parsed, _ = parse_blob(blob)
    except InvalidCiphertextException:
        return
    if blob[:HEADER_SIZE] != original.encode():
        assert parsed != original
    with pytest.raises(InvalidCiphertextException):
        open_blob(MATERIAL, blob, ctx)


@given(headers, st.binary(min_size=1, max_size=256), contexts, st.data())
def test_any_single_bit_flip_is_rejected(
    header: BlobHeader, plaintext: bytes, context: dict[str, str], data: st.DataObject
) -> None:
    ctx = encode_context(context)
    blob = seal_blob(MATERIAL, header, plaintext, ctx)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    flipped = bytearray(blob)
    flipped[bit // 8] ^= 1 << (bit % 8)
    _assert_rejected(header, bytes(flipped), ctx)


def test_every_single_bit_flip_of_one_blob_is_rejected() -> None:
    header = BlobHeader(uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"), 3)
    ctx = encode_context({"purpose": "exhaustive"})
    blob = seal_blob(MATERIAL, header, b"pt", ctx)
    for bit in range(len(blob) * 8):
        flipped = bytearray(blob)
        flipped[bit // 8] ^= 1 << (bit % 8)
        _assert_rejected(header, bytes(flipped), ctx)
        if 8 <= bit < HEADER_SIZE * 8:
            assert parse_blob(bytes(flipped))[0] != header
        elif bit < 8:
            with pytest.raises(InvalidCiphertextException):
                parse_blob(bytes(flipped))


@given(headers, st.binary(min_size=1, max_size=64), contexts, contexts)
@example(BlobHeader(uuid.UUID(int=1), 1), b"x", {"ab": ""}, {"a": "b"})
@example(BlobHeader(uuid.UUID(int=1), 1), b"x", {}, {"": ""})
def test_any_context_change_is_rejected(
    header: BlobHeader, plaintext: bytes, context: dict[str, str], other: dict[str, str]
) -> None:
    assume(context != other)
    blob = seal_blob(MATERIAL, header, plaintext, encode_context(context))
    with pytest.raises(InvalidCiphertextException):
        open_blob(MATERIAL, blob, encode_context(other))


@given(headers, st.binary(min_size=1, max_size=64), contexts, st.data())
def test_truncation_and_extension_are_rejected(
    header: BlobHeader, plaintext: bytes, context: dict[str, str], data: st.DataObject
) -> None:
    ctx = encode_context(context)
    blob = seal_blob(MATERIAL, header, plaintext, ctx)
    cut = data.draw(st.integers(0, len(blob) - 1))
    _assert_rejected(header, blob[:cut], ctx)
    with pytest.raises(InvalidCiphertextException):
        open_blob(MATERIAL, blob[:cut], ctx)
    extra = data.draw(st.binary(min_size=1, max_size=32))
    _assert_rejected(header, blob + extra, ctx)


def test_wrong_material_is_rejected() -> None:
    header = BlobHeader(uuid.uuid4(), 1)
    ctx = encode_context({"k": "v"})
    blob = seal_blob(MATERIAL, header, b"plaintext", ctx)
    for other in (KeyMaterial.generate(), KeyMaterial(bytes(range(16)))):
        with pytest.raises(InvalidCiphertextException):
            open_blob(other, blob, ctx)


@settings(max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=128),
        st.binary(min_size=MIN_BLOB_SIZE - HEADER_SIZE, max_size=128).map(
            lambda b: b"\x01" + bytes(HEADER_SIZE - 1) + b
        ),
    )
)
def test_arbitrary_bytes_raise_only_invalid_ciphertext(data: bytes) -> None:
    # A v1 blob parses when it is long enough and names no record id.
    parses = (
        len(data) >= MIN_BLOB_SIZE
        and data[0] == 0x01
        and not is_record_id(uuid.UUID(bytes=data[1:17]))
    )
    try:
        header, body = parse_blob(data)
    except InvalidCiphertextException:
        assert not parses
    else:
        assert parses
        assert header.encode() + body == data
    with pytest.raises(InvalidCiphertextException):
        open_blob(MATERIAL, data, encode_context(None))


def test_error_message_does_not_say_why() -> None:
    header = BlobHeader(uuid.uuid4(), 1)
    ctx = encode_context({"k": "v"})
    blob = seal_blob(MATERIAL, header, b"plaintext", ctx)
    messages = set()
    for attempt in (
        lambda: parse_blob(blob[:10]),
        lambda: parse_blob(b"\x02" + blob[1:]),
        lambda: open_blob(MATERIAL, blob, encode_context({})),
        lambda: open_blob(KeyMaterial.generate(), blob, ctx),
        lambda: open_blob(MATERIAL, blob[:-1], ctx),
    ):
        with pytest.raises(InvalidCiphertextException) as info:
            attempt()
        messages.add(str(info.value))
    assert len(messages) == 1


def _as_version_8(u: uuid.UUID) -> uuid.UUID:
    raw = bytearray(u.bytes)
    raw[6] = (raw[6] & 0x0F) | 0x80
    return uuid.UUID(bytes=bytes(raw))


# Half of them version 8 (a record id's version), half anything else.
any_uuids = st.one_of(st.uuids(), st.uuids().map(_as_version_8))


@given(any_uuids, st.integers(0, 2**32 - 1), plaintexts)
def test_a_v1_blob_names_only_non_record_ids(
    key_id: uuid.UUID, version: int, plaintext: bytes
) -> None:
    """Any UUID a v1 blob carries parses, except a version-8 one: that is a
    multi-Region copy's record id, never a key a ciphertext may name."""
    blob = seal_blob(MATERIAL, BlobHeader(key_id, version), plaintext, b"")
    if key_id.version == 8:
        with pytest.raises(InvalidCiphertextException):
            parse_blob(blob)
    else:
        assert parse_blob(blob)[0] == BlobHeader(key_id, version)
