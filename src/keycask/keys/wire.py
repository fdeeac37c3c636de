"""Byte formats that leave keycask: the ciphertext blob and the canonical
encryption context (design section 3). Both are pinned by golden vectors in
tests/vectors/ that are never edited; a new format gets a new format byte.

Blob v1 (a single-Region key)::

    0x01 | key id (16, UUID bytes) | key version (4, big-endian)
         | salt (16) | nonce (12) | AES-256-GCM ciphertext | tag (16)

Blob v2 (a multi-Region key, issue 22)::

    0x02 | mrk id (16 raw bytes) | key version (4, big-endian)
         | salt (16) | nonce (12) | AES-256-GCM ciphertext | tag (16)

In both, the AES key is derived per message from the key version's material
and the salt (label ``keycask message key v1``); AAD is every byte before the
ciphertext followed by the canonical encryption context, so the format byte
and the key's id are authenticated. v2 names no region: a blob opens in every
region that holds a copy of the key. Both headers are 21 bytes, so
``HEADER_SIZE``, ``MIN_BLOB_SIZE`` and ``open_blob`` serve both formats.
Nothing emits v2 yet; multi-Region keys will.

Blob v3 (a key held in an HSM, a custom key store of type AWS_CLOUDHSM,
issue 19)::

    0x03 | key id (16, UUID bytes) | token object id (16)
         | IV (12) | AES-256-GCM ciphertext | tag (16)

The AES-GCM runs inside the token with the key the object id names (the
key's record says which store, and so which token, holds it); the IV is
random, and AAD is the 33 header bytes followed by the canonical encryption
context. There is no per-message key derivation (the key never leaves the
token, and tokens offer no SP 800-108 KDF to derive one inside): a key's
messages share one AES key, under AES-GCM's bound for random IVs (2^32
messages per key; see docs/hsm.md). v1 and v2 blobs are untouched.

Blob v4 (a key of an external key store, EXTERNAL_KEY_STORE, issue 19)::

    0x04 | key id (16, UUID bytes) | key version (4, big-endian)
         | metadata length (1) | the proxy's ciphertextMetadata (0-20)
         | IV length (1) | the proxy's IV (12 or 16) | the proxy's tag (16)
         | outer ciphertext

Double encryption, as AWS KMS does it: the inner layer is a v1-style sealed
message (salt, nonce, AES-256-GCM ciphertext, tag) under the key's own
material in keycask, AAD the 21 header bytes and the canonical encryption
context; the outer layer is the XKS proxy's AES-GCM of those inner bytes
under the external key, AAD ``xks_aad`` (the header, the key's ARN and the
context's SHA-256). Neither keycask's material nor the external key alone
opens it. The 21-byte header has v1's shape, so ``HEADER_SIZE`` serves it.

``parse_blob`` and ``blob_header`` accept v1 only, as they always have;
``parse_mrk_blob`` and ``mrk_blob_header`` accept v2 only; ``parse_any_blob``
accepts either and its header's class says which. Every malformed blob of
either format raises the same ``InvalidCiphertextException`` with an empty
message.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from keycask.crypto import (
    MESSAGE_OVERHEAD,
    AuthenticationFailed,
    KeyMaterial,
    open_message,
    seal_message,
)
from keycask.errors import InvalidCiphertextException, ValidationException
from keycask.keys.ids import MRK_ID_SIZE, is_record_id

BLOB_FORMAT_V1 = 0x01
BLOB_FORMAT_V2 = 0x02
BLOB_FORMAT_HSM = 0x03
BLOB_FORMAT_XKS = 0x04
HSM_HEADER_SIZE = 1 + 16 + 16
HSM_IV_SIZE = 12
HSM_TAG_SIZE = 16
_HSM_HEADER = struct.Struct(">B16s16s")
HEADER_SIZE = 1 + 16 + 4  # v1 and v2 alike: 16 is both a UUID's and an mrk id's size
MIN_BLOB_SIZE = HEADER_SIZE + MESSAGE_OVERHEAD
_HEADER = struct.Struct(">B16sI")
_U16 = struct.Struct(">H")
_MAX_FIELD = 0xFFFF

# AWS answers an invalid ciphertext with no message; so does keycask, whatever the cause.
_INVALID = ""


@dataclass(frozen=True, slots=True)
class BlobHeader:
    key_id: uuid.UUID
    version: int

    def encode(self) -> bytes:
        return _HEADER.pack(BLOB_FORMAT_V1, self.key_id.bytes, self.version)


@dataclass(frozen=True, slots=True)
class MrkBlobHeader:
    """The header of a v2 blob: a multi-Region key's 16-byte id (see
    ``keys/ids.py``) and the key version."""

    mrk: bytes
    version: int

    def __post_init__(self) -> None:
        # struct's "16s" would silently pad or cut any other length.
        if len(self.mrk) != MRK_ID_SIZE:
            raise ValueError(f"a multi-Region key id is {MRK_ID_SIZE} bytes")

    def encode(self) -> bytes:
        return _HEADER.pack(BLOB_FORMAT_V2, self.mrk, self.version)


# What a blob of either format names; isinstance tells which.
AnyBlobHeader: TypeAlias = BlobHeader | MrkBlobHeader


def parse_blob(blob: bytes) -> tuple[BlobHeader, bytes]:
    """Split a blob into its header and the sealed body.

    Anything that is not a well-formed v1 blob raises the same
    ``InvalidCiphertextException`` that a failed tag would.
    """
    key_id, version = blob_header(blob)
    return BlobHeader(key_id, version), blob[HEADER_SIZE:]


def blob_header(blob: bytes) -> tuple[uuid.UUID, int]:
    """The key id and version a blob names, checked as ``parse_blob`` checks
    them, without copying the sealed body (4 KiB for a 4 KiB Decrypt) or
    making a BlobHeader that Decrypt would only take apart again."""
    if len(blob) < MIN_BLOB_SIZE or blob[0] != BLOB_FORMAT_V1:
        raise InvalidCiphertextException(_INVALID)
    _, key_bytes, version = _HEADER.unpack_from(blob)
    key_id = _KEY_IDS.get(key_bytes)
    if key_id is None:
        key_id = uuid.UUID(bytes=key_bytes)
        # A multi-Region copy's record id is internal: v1 blobs name
        # single-Region keys only (a set's blobs are v2, by its mrk id).
        if is_record_id(key_id):
            raise InvalidCiphertextException(_INVALID)
        if len(_KEY_IDS) >= _KEY_ID_CACHE:
            _KEY_IDS.pop(next(iter(_KEY_IDS)), None)
        _KEY_IDS[key_bytes] = key_id
    return key_id, version


# The key ids ciphertexts name, by their 16 bytes: a Decrypt names one of a
# few keys over and over, and uuid.UUID(bytes=...) costs ~1 us of Python.
# Bounded (first in, first out): a caller can send any 16 bytes.
_KEY_ID_CACHE = 4096
_KEY_IDS: dict[bytes, uuid.UUID] = {}


def parse_mrk_blob(blob: bytes) -> tuple[MrkBlobHeader, bytes]:
    """``parse_blob`` for v2: anything that is not a well-formed v2 blob raises
    ``InvalidCiphertextException``."""
    mrk, version = mrk_blob_header(blob)
    return MrkBlobHeader(mrk, version), blob[HEADER_SIZE:]


def mrk_blob_header(blob: bytes) -> tuple[bytes, int]:
    """``blob_header`` for v2: the mrk id and version, without the body."""
    if len(blob) < MIN_BLOB_SIZE or blob[0] != BLOB_FORMAT_V2:
        raise InvalidCiphertextException(_INVALID)
    _, mrk, version = _HEADER.unpack_from(blob)
    return mrk, version


def parse_any_blob(blob: bytes) -> tuple[AnyBlobHeader, bytes]:
    """A blob of either format: the header's class says which."""
    if blob and blob[0] == BLOB_FORMAT_V2:
        return parse_mrk_blob(blob)
    return parse_blob(blob)


def seal_blob(
    material: KeyMaterial, header: AnyBlobHeader, plaintext: bytes, context: bytes
) -> bytes:
    """``context`` is the output of ``encode_context``; the header's class
    picks the format."""
    raw = header.encode()
    return raw + seal_message(material, plaintext, header=raw, context=context)


def open_blob(material: KeyMaterial, blob: bytes, context: bytes) -> bytes:
    """Decrypt a blob of either format whose header was already parsed and
    whose key version ``material`` belongs to. The format byte is part of the
    AAD, so a blob does not open as the other format."""
    try:
        return open_message(
            material, blob[HEADER_SIZE:], header=blob[:HEADER_SIZE], context=context
        )
    except AuthenticationFailed:
        raise InvalidCiphertextException(_INVALID) from None


def encode_context(context: Mapping[str, str] | None) -> bytes:
    """Canonical bytes of an encryption context.

    ``count (2) | (key length (2) | key | value length (2) | value)*`` with
    pairs sorted by the key's UTF-8 bytes. Lengths make the encoding
    injective: ``{"ab": ""}`` and ``{"a": "b"}`` differ. No context and the
    empty context are the same, as in AWS KMS.
    """
    if not context:
        return b"\x00\x00"
    # Applications send the same few contexts over and over: remember them.
    items = tuple(context.items())
    cached = _CONTEXTS.get(items)
    if cached is not None:
        return cached
    encoded = _encode_context(context)
    if len(encoded) > _CACHED_CONTEXT_BYTES:
        return encoded  # a cache of huge contexts would be a way to fill memory
    if len(_CONTEXTS) >= _CONTEXT_CACHE:
        del _CONTEXTS[next(iter(_CONTEXTS))]
    _CONTEXTS[items] = encoded
    return encoded


_CONTEXT_CACHE = 4096
_CACHED_CONTEXT_BYTES = 1024
_CONTEXTS: dict[tuple[tuple[str, str], ...], bytes] = {}


def _encode_context(context: Mapping[str, str]) -> bytes:
    if len(context) > _MAX_FIELD:
        raise ValidationException("EncryptionContext has too many pairs")
    try:
        pairs = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in context.items())
    except UnicodeEncodeError:
        raise ValidationException("EncryptionContext must be valid UTF-8") from None
    out = [_U16.pack(len(pairs))]
    for key_bytes, value_bytes in pairs:
        if len(key_bytes) > _MAX_FIELD or len(value_bytes) > _MAX_FIELD:
            raise ValidationException("EncryptionContext keys and values must be under 64 KiB")
        out += (_U16.pack(len(key_bytes)), key_bytes, _U16.pack(len(value_bytes)), value_bytes)
    return b"".join(out)


def decode_context(data: bytes) -> dict[str, str]:
    """Inverse of ``encode_context``; rejects anything it would not produce
    (unsorted or duplicate keys, trailing bytes, invalid UTF-8)."""
    view = memoryview(data)
    try:
        (count,) = _U16.unpack_from(view, 0)
        pos = 2
        result: dict[str, str] = {}
        previous: bytes | None = None
        for _ in range(count):
            (klen,) = _U16.unpack_from(view, pos)
            key = bytes(view[pos + 2 : pos + 2 + klen])
            pos += 2 + klen
            (vlen,) = _U16.unpack_from(view, pos)
            value = bytes(view[pos + 2 : pos + 2 + vlen])
            pos += 2 + vlen
            if len(key) != klen or len(value) != vlen:
                raise ValueError("truncated")
            if previous is not None and key <= previous:
                raise ValueError("keys not sorted or duplicated")
            previous = key
            result[key.decode("utf-8")] = value.decode("utf-8")
    except (struct.error, ValueError) as exc:
        raise ValueError(f"not a canonical encryption context: {exc}") from None
    if pos != len(data):
        raise ValueError("not a canonical encryption context: trailing bytes")
    return result


def hsm_blob_header(key_id: uuid.UUID, object_id: bytes) -> bytes:
    """A v3 blob's header: the AAD's first part, and the blob's first bytes."""
    return _HSM_HEADER.pack(BLOB_FORMAT_HSM, key_id.bytes, object_id)


def parse_hsm_blob(blob: bytes) -> tuple[uuid.UUID, bytes, bytes, bytes]:
    """(key id, token object id, IV, ciphertext and tag) of a v3 blob; the
    same empty-message InvalidCiphertextException for anything malformed."""
    if len(blob) < HSM_HEADER_SIZE + HSM_IV_SIZE + HSM_TAG_SIZE or blob[0] != BLOB_FORMAT_HSM:
        raise InvalidCiphertextException(_INVALID)
    _, key_id, object_id = _HSM_HEADER.unpack_from(blob)
    iv = blob[HSM_HEADER_SIZE : HSM_HEADER_SIZE + HSM_IV_SIZE]
    return uuid.UUID(bytes=key_id), object_id, iv, blob[HSM_HEADER_SIZE + HSM_IV_SIZE :]


@dataclass(frozen=True, slots=True)
class XksBlob:
    """A v4 blob taken apart: its header and the proxy's four pieces."""

    key_id: uuid.UUID
    version: int
    metadata: bytes
    iv: bytes
    tag: bytes
    ciphertext: bytes

    @property
    def header(self) -> bytes:
        return _HEADER.pack(BLOB_FORMAT_XKS, self.key_id.bytes, self.version)

    def encode(self) -> bytes:
        return b"".join(
            (
                self.header,
                bytes((len(self.metadata),)),
                self.metadata,
                bytes((len(self.iv),)),
                self.iv,
                self.tag,
                self.ciphertext,
            )
        )


XKS_TAG_SIZE = 16
_XKS_IV_SIZES = (12, 16)
_XKS_MAX_METADATA = 20


def xks_blob_header(key_id: uuid.UUID, version: int) -> bytes:
    """A v4 blob's 21 header bytes: the inner layer's AAD prefix."""
    return _HEADER.pack(BLOB_FORMAT_XKS, key_id.bytes, version)


def xks_aad(header: bytes, key_arn: str, context: bytes) -> bytes:
    """The outer layer's AAD (sent to the proxy): the header, the key's ARN,
    and the SHA-256 of the canonical encryption context (a context may be
    larger than a proxy must accept as AAD; the inner layer binds it whole)."""
    arn = key_arn.encode()
    return header + _U16.pack(len(arn)) + arn + hashlib.sha256(context).digest()


def parse_xks_blob(blob: bytes) -> XksBlob:
    """A v4 blob's parts; the same empty-message InvalidCiphertextException
    for anything malformed."""
    try:
        if blob[0] != BLOB_FORMAT_XKS:
            raise ValueError
        _, key_bytes, version = _HEADER.unpack_from(blob)
        pos = HEADER_SIZE
        meta_len = blob[pos]
        metadata = blob[pos + 1 : pos + 1 + meta_len]
        pos += 1 + meta_len
        iv_len = blob[pos]
        iv = blob[pos + 1 : pos + 1 + iv_len]
        pos += 1 + iv_len
        tag = blob[pos : pos + XKS_TAG_SIZE]
        ciphertext = blob[pos + XKS_TAG_SIZE :]
    except (IndexError, struct.error, ValueError):
        raise InvalidCiphertextException(_INVALID) from None
    if (
        meta_len > _XKS_MAX_METADATA
        or len(metadata) != meta_len
        or iv_len not in _XKS_IV_SIZES
        or len(iv) != iv_len
        or len(tag) != XKS_TAG_SIZE
        or len(ciphertext) < MESSAGE_OVERHEAD
    ):
        raise InvalidCiphertextException(_INVALID)
    return XksBlob(uuid.UUID(bytes=key_bytes), version, metadata, iv, tag, ciphertext)


def seal_xks_inner(material: KeyMaterial, header: bytes, plaintext: bytes, context: bytes) -> bytes:
    """A v4 blob's inner layer: keycask's own material, as v1 seals."""
    return seal_message(material, plaintext, header=header, context=context)


def open_xks_inner(material: KeyMaterial, header: bytes, inner: bytes, context: bytes) -> bytes:
    try:
        return open_message(material, inner, header=header, context=context)
    except AuthenticationFailed:
        raise InvalidCiphertextException(_INVALID) from None
