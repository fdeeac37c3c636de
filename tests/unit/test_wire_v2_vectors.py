"""Golden vectors for ciphertext blob v2 (multi-Region keys, issue 22) and for
the multi-Region record id.

tests/vectors/blob_v2.json and tests/vectors/mrk_record_v1.json are NEVER
edited or regenerated. They were written once by tests/vectors/make_v2.py from
the format description with ``cryptography``'s primitives, not keycask's code,
so these tests hold keycask to the description.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keycask.crypto import KeyMaterial
from keycask.errors import InvalidCiphertextException
from keycask.keys.ids import format_mrk, parse_mrk, record_id
from keycask.keys.wire import (
    BLOB_FORMAT_V2,
    HEADER_SIZE,
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

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _load(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text(encoding="ascii"))
    assert isinstance(data, list)
    return data


BLOBS = _load("blob_v2.json")
V1_BLOBS = _load("blob_v1.json")
RECORDS = _load("mrk_record_v1.json")


def _id(v: dict[str, Any]) -> str:
    return f"{v['key_id'][4:12]}-v{v['version']}-{len(v['plaintext']) // 2}"


def _mrk(v: dict[str, Any]) -> bytes:
    mrk = parse_mrk(v["key_id"])
    assert mrk is not None
    return mrk


def test_vector_files_are_populated() -> None:
    assert len(BLOBS) == 12
    assert len(RECORDS) == 10
    sizes = {len(bytes.fromhex(v["plaintext"])) for v in BLOBS}
    assert {1, 32, 4096} <= sizes
    assert any(v["context"] is None for v in BLOBS)
    assert any(v["context"] == {} for v in BLOBS)
    assert {0, 0xFFFFFFFF} <= {v["version"] for v in BLOBS}
    assert all(bytes.fromhex(v["blob"])[0] == 0x02 for v in BLOBS)


@pytest.mark.parametrize("v", BLOBS, ids=_id)
def test_blob_vector_opens(v: dict[str, Any]) -> None:
    material = KeyMaterial(bytes.fromhex(v["material"]))
    blob = bytes.fromhex(v["blob"])
    context = encode_context(v["context"])
    assert context.hex() == v["context_hex"]
    expected = MrkBlobHeader(_mrk(v), v["version"])
    assert format_mrk(expected.mrk) == v["key_id"]

    header, body = parse_any_blob(blob)
    assert isinstance(header, MrkBlobHeader)
    assert header == expected
    assert header.encode() == blob[:HEADER_SIZE]
    assert body == blob[HEADER_SIZE:]
    assert parse_mrk_blob(blob) == (expected, body)
    assert mrk_blob_header(blob) == (expected.mrk, expected.version)
    assert open_blob(material, blob, context) == bytes.fromhex(v["plaintext"])


@pytest.mark.parametrize("v", BLOBS, ids=_id)
def test_v1_parsers_refuse_a_v2_blob(v: dict[str, Any]) -> None:
    """Decrypt reads headers with blob_header: until multi-Region keys come, a
    v2 blob stays an invalid ciphertext there, as it always was."""
    blob = bytes.fromhex(v["blob"])
    for parse in (parse_blob, blob_header):
        with pytest.raises(InvalidCiphertextException) as info:
            parse(blob)
        assert str(info.value) == ""


@pytest.mark.parametrize("v", V1_BLOBS[:4], ids=lambda v: v["key_id"][:8])
def test_v1_vectors_still_parse_as_v1(v: dict[str, Any]) -> None:
    blob = bytes.fromhex(v["blob"])
    header, _ = parse_any_blob(blob)
    assert header == BlobHeader(uuid.UUID(v["key_id"]), v["version"])
    with pytest.raises(InvalidCiphertextException):
        parse_mrk_blob(blob)


@pytest.mark.parametrize("v", BLOBS[:4], ids=_id)
def test_blob_vector_needs_its_context_and_material(v: dict[str, Any]) -> None:
    material = KeyMaterial(bytes.fromhex(v["material"]))
    blob = bytes.fromhex(v["blob"])
    with pytest.raises(InvalidCiphertextException):
        open_blob(material, blob, encode_context({"not": "its context"}))
    with pytest.raises(InvalidCiphertextException):
        open_blob(KeyMaterial.generate(), blob, bytes.fromhex(v["context_hex"]))


# Every field of the layout: format, mrk id, version, salt, nonce, ciphertext, tag.
_FIELD_OFFSETS = (0, 1, 16, 17, 20, 21, 36, 37, 48, 49, -17, -16, -1)


@pytest.mark.parametrize("v", BLOBS, ids=_id)
def test_altered_blob_vector_is_refused(v: dict[str, Any]) -> None:
    material = KeyMaterial(bytes.fromhex(v["material"]))
    blob = bytes.fromhex(v["blob"])
    context = bytes.fromhex(v["context_hex"])
    for offset in _FIELD_OFFSETS:
        for mask in (0x01, 0x80):
            flipped = bytearray(blob)
            flipped[offset] ^= mask
            with pytest.raises(InvalidCiphertextException) as info:
                parse_any_blob(bytes(flipped))  # the header may still parse
                open_blob(material, bytes(flipped), context)
            assert str(info.value) == ""
    for altered in (blob[:-1], blob + b"\x00", blob[:HEADER_SIZE], b"\x01" + blob[1:]):
        with pytest.raises(InvalidCiphertextException):
            parse_any_blob(altered)
            open_blob(material, altered, context)


def test_a_v1_blob_relabelled_v2_does_not_open() -> None:
    """Both headers are 21 bytes, so a v1 blob with its first byte changed
    parses as v2; the format byte is in the AAD, so it cannot open."""
    v = V1_BLOBS[0]
    blob = bytes([BLOB_FORMAT_V2]) + bytes.fromhex(v["blob"])[1:]
    header, _ = parse_any_blob(blob)
    assert header == MrkBlobHeader(uuid.UUID(v["key_id"]).bytes, v["version"])
    with pytest.raises(InvalidCiphertextException):
        open_blob(KeyMaterial(bytes.fromhex(v["material"])), blob, bytes.fromhex(v["context_hex"]))


def _independent_open(blob: bytes, material: bytes, context: bytes) -> tuple[bytes, int, bytes]:
    """Split and decrypt a v2 blob from the layout written in the wire.py
    docstring, using only the standard library and AESGCM."""
    assert blob[0] == 0x02
    mrk, version = blob[1:17], int.from_bytes(blob[17:21], "big")
    salt, nonce, sealed = blob[21:37], blob[37:49], blob[49:]
    fixed = b"keycask message key v1" + b"\x00" + salt + (256).to_bytes(4, "big")
    key = hmac.new(material, b"\x00\x00\x00\x01" + fixed, hashlib.sha256).digest()
    return mrk, version, AESGCM(key).decrypt(nonce, sealed, blob[:49] + context)


@pytest.mark.parametrize("v", BLOBS, ids=_id)
def test_what_keycask_seals_matches_the_documented_layout(v: dict[str, Any]) -> None:
    """The other direction: a blob keycask emits opens by the description."""
    raw = bytes.fromhex(v["material"])
    context = encode_context(v["context"])
    plaintext = bytes.fromhex(v["plaintext"])
    header = MrkBlobHeader(_mrk(v), v["version"])
    blob = seal_blob(KeyMaterial(raw), header, plaintext, context)
    assert blob[:HEADER_SIZE] == bytes.fromhex(v["blob"])[:HEADER_SIZE]
    assert _independent_open(blob, raw, context) == (header.mrk, header.version, plaintext)


@pytest.mark.parametrize("r", RECORDS, ids=lambda r: f"{r['key_id'][4:12]}-{r['region']}")
def test_record_id_vector(r: dict[str, Any]) -> None:
    mrk = parse_mrk(r["key_id"])
    assert mrk is not None
    got = record_id(mrk, r["region"])
    assert str(got) == r["record_id"]
    assert got.version == 8
    assert got.variant == uuid.RFC_4122
