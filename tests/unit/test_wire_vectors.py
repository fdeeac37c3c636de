"""Golden vectors for the v1 wire formats (design section 3).

tests/vectors/blob_v1.json and tests/vectors/context_v1.json are NEVER edited or
regenerated: every blob ever issued must keep decrypting. A new format gets a new
format byte, new files (blob_v2.json, ...) and new tests; these stay as they are.
They were written once by tests/vectors/make_v1.py.
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
from keycask.keys.wire import (
    HEADER_SIZE,
    BlobHeader,
    decode_context,
    encode_context,
    open_blob,
    parse_blob,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _load(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text(encoding="ascii"))
    assert isinstance(data, list)
    return data


BLOBS = _load("blob_v1.json")
CONTEXTS = _load("context_v1.json")


def test_vector_files_are_populated() -> None:
    assert len(BLOBS) == 12
    assert len(CONTEXTS) == 15
    sizes = {len(bytes.fromhex(v["plaintext"])) for v in BLOBS}
    assert {1, 32, 4096} <= sizes
    assert any(v["context"] is None for v in BLOBS)
    assert any(v["context"] == {} for v in BLOBS)
    assert {} in [c["context"] for c in CONTEXTS]


@pytest.mark.parametrize("v", BLOBS, ids=lambda v: f"{v['key_id'][:8]}-v{v['version']}")
def test_blob_vector_opens(v: dict[str, Any]) -> None:
    material = KeyMaterial(bytes.fromhex(v["material"]))
    blob = bytes.fromhex(v["blob"])
    context = encode_context(v["context"])
    assert context.hex() == v["context_hex"]

    header, body = parse_blob(blob)
    assert header == BlobHeader(uuid.UUID(v["key_id"]), v["version"])
    assert header.encode() == blob[:HEADER_SIZE]
    assert body == blob[HEADER_SIZE:]
    assert open_blob(material, blob, context) == bytes.fromhex(v["plaintext"])


@pytest.mark.parametrize("v", BLOBS[:4], ids=lambda v: f"{v['key_id'][:8]}-v{v['version']}")
def test_blob_vector_needs_its_context_and_material(v: dict[str, Any]) -> None:
    material = KeyMaterial(bytes.fromhex(v["material"]))
    blob = bytes.fromhex(v["blob"])
    with pytest.raises(InvalidCiphertextException):
        open_blob(material, blob, encode_context({"not": "its context"}))
    with pytest.raises(InvalidCiphertextException):
        open_blob(KeyMaterial.generate(), blob, bytes.fromhex(v["context_hex"]))


def _independent_open(v: dict[str, Any]) -> bytes:
    """Decrypt a vector from the layout written in the wire.py docstring, using
    only the standard library and AESGCM, not keycask's code."""
    blob = bytes.fromhex(v["blob"])
    material = bytes.fromhex(v["material"])
    assert blob[0] == 0x01
    assert blob[1:17] == uuid.UUID(v["key_id"]).bytes
    assert int.from_bytes(blob[17:21], "big") == v["version"]
    salt, nonce, sealed = blob[21:37], blob[37:49], blob[49:]
    fixed = b"keycask message key v1" + b"\x00" + salt + (256).to_bytes(4, "big")
    key = hmac.new(material, b"\x00\x00\x00\x01" + fixed, hashlib.sha256).digest()
    aad = blob[:49] + bytes.fromhex(v["context_hex"])
    return AESGCM(key).decrypt(nonce, sealed, aad)


@pytest.mark.parametrize("v", BLOBS, ids=lambda v: f"{v['key_id'][:8]}-v{v['version']}")
def test_blob_vector_matches_the_documented_layout(v: dict[str, Any]) -> None:
    assert _independent_open(v) == bytes.fromhex(v["plaintext"])


@pytest.mark.parametrize("c", CONTEXTS, ids=lambda c: c["hex"][:24])
def test_context_vector(c: dict[str, Any]) -> None:
    encoded = bytes.fromhex(c["hex"])
    assert encode_context(c["context"]) == encoded
    assert decode_context(encoded) == c["context"]


def test_context_vectors_cover_the_tricky_cases() -> None:
    by_hex = {c["hex"]: c["context"] for c in CONTEXTS}
    assert len(by_hex) == len(CONTEXTS)  # all encodings distinct
    contexts = [c["context"] for c in CONTEXTS]
    assert {"ab": ""} in contexts and {"a": "b"} in contexts
    both = {"\uffff": "x", "\U00010000": "y"}
    assert both in contexts
    # UTF-8 byte order is code point order (EF BF BF < F0 90 80 80), which is also
    # Python's str order; UTF-16 code unit order (Java, JavaScript, .NET) is the
    # reverse (FFFF > D800 DC00). The encoding must follow UTF-8 bytes.
    high, astral = "\uffff", "\U00010000"
    assert high.encode("utf-8") < astral.encode("utf-8")
    assert high.encode("utf-16-be") > astral.encode("utf-16-be")
    encoded = encode_context(both)
    assert encoded.index(high.encode()) < encoded.index(astral.encode())
    assert encoded.hex() == "00020003efbfbf0001780004f0908080000179"
    assert encode_context(None) == encode_context({}) == b"\x00\x00"
