"""Properties of ciphertext blob v2 (multi-Region keys) beside v1, and of the
multi-Region key ids: parsers of either format raise nothing but
InvalidCiphertextException on any bytes, and a v2 blob authenticates every
bit of itself and of its context."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keycask.crypto import KeyMaterial
from keycask.errors import InvalidCiphertextException
from keycask.keys.ids import format_mrk, is_record_id, parse_mrk, record_id
from keycask.keys.wire import (
    BLOB_FORMAT_V1,
    BLOB_FORMAT_V2,
    HEADER_SIZE,
    MIN_BLOB_SIZE,
    BlobHeader,
    MrkBlobHeader,
    blob_header,
    encode_context,
    mrk_blob_header,
    open_blob,
    parse_any_blob,
    parse_blob,
    parse_mrk_blob,
    seal_blob,
)

MATERIAL = KeyMaterial(bytes(range(32)))

texts = st.text(max_size=12)
contexts = st.dictionaries(texts, texts, max_size=6)
mrks = st.binary(min_size=16, max_size=16)
mrk_headers = st.builds(MrkBlobHeader, mrks, st.integers(0, 2**32 - 1))
# Version 4, as keycask's key ids: a v1 blob naming a version-8 UUID (a record id) is refused.
v1_headers = st.builds(BlobHeader, st.uuids(version=4), st.integers(0, 2**32 - 1))
plaintexts = st.binary(min_size=1, max_size=4096)

# Arbitrary bytes, and bytes that look like a blob of either format.
blob_like = st.one_of(
    st.binary(max_size=128),
    st.builds(
        lambda fmt, rest: bytes([fmt]) + rest,
        st.sampled_from([BLOB_FORMAT_V1, BLOB_FORMAT_V2, 0x00, 0x03, 0xFF]),
        st.binary(min_size=MIN_BLOB_SIZE - 1 - 8, max_size=128),
    ),
)

_PARSERS: list[Callable[[bytes], Any]] = [
    parse_blob,
    blob_header,
    parse_mrk_blob,
    mrk_blob_header,
    parse_any_blob,
]


@settings(max_examples=300)
@given(blob_like)
def test_arbitrary_bytes_raise_only_invalid_ciphertext(data: bytes) -> None:
    long_enough = len(data) >= MIN_BLOB_SIZE
    for parse in _PARSERS:
        try:
            parse(data)
        except InvalidCiphertextException as exc:
            assert str(exc) == ""
    # A v1 blob naming a record id (a version-8 UUID) is refused.
    record = long_enough and is_record_id(uuid.UUID(bytes=data[1:17]))
    for fmt, parse in ((BLOB_FORMAT_V1, parse_blob), (BLOB_FORMAT_V2, parse_mrk_blob)):
        if long_enough and data[0] == fmt and not (fmt == BLOB_FORMAT_V1 and record):
            header, body = parse(data)
            assert header.encode() + body == data
        else:
            with pytest.raises(InvalidCiphertextException):
                parse(data)
    if long_enough and (data[0] == BLOB_FORMAT_V2 or (data[0] == BLOB_FORMAT_V1 and not record)):
        header, body = parse_any_blob(data)
        assert isinstance(header, MrkBlobHeader) == (data[0] == BLOB_FORMAT_V2)
        assert header.encode() + body == data
    with pytest.raises(InvalidCiphertextException) as info:
        open_blob(MATERIAL, data, encode_context(None))
    assert str(info.value) == ""


@given(mrk_headers, plaintexts, contexts)
def test_v2_round_trip(header: MrkBlobHeader, plaintext: bytes, context: dict[str, str]) -> None:
    ctx = encode_context(context)
    blob = seal_blob(MATERIAL, header, plaintext, ctx)
    assert blob[0] == BLOB_FORMAT_V2
    assert len(blob) == MIN_BLOB_SIZE + len(plaintext)
    assert parse_mrk_blob(blob) == (header, blob[HEADER_SIZE:])
    assert parse_any_blob(blob) == (header, blob[HEADER_SIZE:])
    assert mrk_blob_header(blob) == (header.mrk, header.version)
    assert open_blob(MATERIAL, blob, ctx) == plaintext


@given(v1_headers, st.binary(min_size=1, max_size=64), contexts)
def test_v1_round_trip_through_parse_any_blob(
    header: BlobHeader, plaintext: bytes, context: dict[str, str]
) -> None:
    ctx = encode_context(context)
    blob = seal_blob(MATERIAL, header, plaintext, ctx)
    assert parse_any_blob(blob) == parse_blob(blob) == (header, blob[HEADER_SIZE:])
    assert open_blob(MATERIAL, blob, ctx) == plaintext


@given(mrk_headers, st.binary(min_size=1, max_size=256), contexts, st.data())
def test_any_single_bit_flip_of_a_v2_blob_is_rejected(
    header: MrkBlobHeader, plaintext: bytes, context: dict[str, str], data: st.DataObject
) -> None:
    ctx = encode_context(context)
    blob = seal_blob(MATERIAL, header, plaintext, ctx)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    flipped = bytearray(blob)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        parsed, _ = parse_any_blob(bytes(flipped))
    except InvalidCiphertextException:
        return
    if bit < HEADER_SIZE * 8:
        assert parsed != header  # names another key version (or format)
    with pytest.raises(InvalidCiphertextException):
        open_blob(MATERIAL, bytes(flipped), ctx)


@given(mrk_headers, st.binary(min_size=1, max_size=64), contexts, contexts)
def test_any_context_change_is_rejected(
    header: MrkBlobHeader, plaintext: bytes, context: dict[str, str], other: dict[str, str]
) -> None:
    if encode_context(context) == encode_context(other):
        return
    blob = seal_blob(MATERIAL, header, plaintext, encode_context(context))
    with pytest.raises(InvalidCiphertextException):
        open_blob(MATERIAL, blob, encode_context(other))


@given(mrks, st.integers(0, 2**32 - 1), st.binary(min_size=1, max_size=64))
def test_the_same_bytes_as_v1_and_v2_are_different_blobs(
    mrk: bytes, version: int, plaintext: bytes
) -> None:
    """A v1 key whose UUID bytes equal an mrk id cannot open the mrk's blobs."""
    ctx = encode_context(None)
    v2 = seal_blob(MATERIAL, MrkBlobHeader(mrk, version), plaintext, ctx)
    as_v1 = bytes([BLOB_FORMAT_V1]) + v2[1:]
    if is_record_id(uuid.UUID(bytes=mrk)):
        with pytest.raises(InvalidCiphertextException):
            parse_blob(as_v1)  # a v1 blob never names a record id
        return
    assert parse_blob(as_v1)[0] == BlobHeader(uuid.UUID(bytes=mrk), version)
    with pytest.raises(InvalidCiphertextException):
        open_blob(MATERIAL, as_v1, ctx)


@given(st.binary(max_size=32).filter(lambda b: len(b) != 16), st.integers(0, 9))
def test_a_v2_header_holds_exactly_16_bytes(mrk: bytes, version: int) -> None:
    with pytest.raises(ValueError):
        MrkBlobHeader(mrk, version)


# -- ids -------------------------------------------------------------------------

_SHAPE = re.compile(r"mrk-[0-9a-f]{32}")


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(max_size=40),
        st.text(alphabet="0123456789abcdefABCDEF-mrkMRK \n", min_size=30, max_size=40),
        mrks.map(format_mrk),
    )
)
def test_parse_mrk_takes_exactly_the_shape(text: str) -> None:
    parsed = parse_mrk(text)
    if _SHAPE.fullmatch(text):
        assert parsed is not None and format_mrk(parsed) == text
    else:
        assert parsed is None


@given(mrks)
def test_format_parse_round_trip(mrk: bytes) -> None:
    assert parse_mrk(format_mrk(mrk)) == mrk


@given(mrks, st.text(max_size=20))
def test_record_ids_are_version_8(mrk: bytes, region: str) -> None:
    rid = record_id(mrk, region)
    assert rid.version == 8 and rid.variant == uuid.RFC_4122
    assert rid == record_id(mrk, region)
