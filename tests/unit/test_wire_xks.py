"""Blob v4 (keys of external key stores): its parts round trip, every
malformed form is the same empty InvalidCiphertextException, the inner layer
is bound to its header and context, and keycask's material alone does not
open the outer layer. Also the XKS client's KEYCASK_XKS_PROXY_CONNECT_TO."""

from __future__ import annotations

import uuid

import pytest

from keycask.crypto import KeyMaterial, open_message
from keycask.crypto.message import AuthenticationFailed
from keycask.errors import InvalidCiphertextException
from keycask.keys.wire import (
    XksBlob,
    encode_context,
    open_xks_inner,
    parse_blob,
    parse_xks_blob,
    seal_xks_inner,
    xks_aad,
    xks_blob_header,
)
from keycask.xksclient import parse_connect_to

KEY = uuid.UUID("11111111-2222-4333-8444-555555555555")
ARN = f"arn:aws:kms:us-east-1:000000000000:key/{KEY}"


def _blob(metadata: bytes = b"m" * 20, iv: bytes = b"i" * 12, outer: bytes = b"c" * 50) -> bytes:
    return XksBlob(KEY, 1, metadata, iv, b"t" * 16, outer).encode()


def test_round_trip_and_header() -> None:
    for metadata, iv in ((b"", b"i" * 12), (b"m" * 20, b"i" * 16), (b"x", b"i" * 12)):
        parts = parse_xks_blob(_blob(metadata, iv))
        assert (parts.key_id, parts.version, parts.metadata, parts.iv) == (KEY, 1, metadata, iv)
        assert parts.tag == b"t" * 16 and parts.ciphertext == b"c" * 50
        assert parts.header == xks_blob_header(KEY, 1) and parts.header[0] == 0x04


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x04",
        b"\x01" + _blob()[1:],
        _blob()[:21],
        _blob()[:22],
        _blob(metadata=b"m" * 21),
        _blob(iv=b"i" * 13),
        _blob(outer=b"c" * 43),
        _blob()[:-60],
    ],
)
def test_malformed_blobs_are_invalid_ciphertext(blob: bytes) -> None:
    with pytest.raises(InvalidCiphertextException) as error:
        parse_xks_blob(blob)
    assert error.value.message == ""


def test_a_v4_blob_is_not_a_v1_blob() -> None:
    with pytest.raises(InvalidCiphertextException):
        parse_blob(_blob())


def test_inner_layer_binds_header_and_context() -> None:
    material = KeyMaterial.generate(32)
    header = xks_blob_header(KEY, 1)
    context = encode_context({"a": "b"})
    inner = seal_xks_inner(material, header, b"secret", context)
    assert open_xks_inner(material, header, inner, context) == b"secret"
    for other_header, other_context in (
        (xks_blob_header(KEY, 2), context),
        (header, encode_context({"a": "c"})),
    ):
        with pytest.raises(InvalidCiphertextException):
            open_xks_inner(material, other_header, inner, other_context)
    with pytest.raises(InvalidCiphertextException):
        open_xks_inner(KeyMaterial.generate(32), header, inner, context)


def test_keycask_material_alone_does_not_open_the_outer_layer() -> None:
    # The blob holds only the proxy's AES-GCM of the inner message: opened as
    # if it were keycask's own, with the right material, it fails.
    material = KeyMaterial.generate(32)
    header = xks_blob_header(KEY, 1)
    context = encode_context(None)
    inner = seal_xks_inner(material, header, b"secret", context)
    outer_stand_in = bytes(b ^ 0x5A for b in inner)  # any other AES-GCM output
    with pytest.raises(AuthenticationFailed):
        open_message(material, outer_stand_in, header=header, context=context)


def test_the_outer_aad_names_the_key_arn_and_the_context() -> None:
    header = xks_blob_header(KEY, 1)
    one = xks_aad(header, ARN, encode_context({"a": "b"}))
    assert one.startswith(header) and ARN.encode() in one
    assert one != xks_aad(header, ARN.replace("us-east-1", "eu-west-1"), encode_context({"a": "b"}))
    assert one != xks_aad(header, ARN, encode_context({"a": "c"}))


def test_connect_to() -> None:
    assert parse_connect_to("") == {}
    assert parse_connect_to(
        "Xks.Example.com=https://10.0.0.5:8443, b.test=http://127.0.0.1:80"
    ) == {
        "xks.example.com": "https://10.0.0.5:8443",
        "b.test": "http://127.0.0.1:80",
    }
    for bad in ("nourl", "a.test=ftp://x", "a.test=http://10.0.0.5:80", "=https://x"):
        with pytest.raises(ValueError):
            parse_connect_to(bad)
