"""The Cloud KMS door's requests for asymmetric and MAC crypto keys
(asymmetricSign, asymmetricDecrypt, getPublicKey, macSign, macVerify),
checked and built into ``service/core/gcp_requests.py``'s requests for
``core/gcp_crypto.py``; every CRC32C checked as ``gcp_codec.py`` checks it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from keycask.errors import ValidationException
from keycask.service.core.gcp_requests import (
    AsymmetricDecryptRequest,
    MacRequest,
    PublicKeyRequest,
    SignRequest,
)
from keycask.service.doors.gcp_codec import (
    MAX_PLAINTEXT,
    Doc,
    Query,
    bytes_field,
    enum_field,
    key_name,
    one,
    verify_crc,
    version_number,
)

_DIGESTS: Final = {"sha256": 32, "sha384": 48, "sha512": 64, "externalMu": 64}
_FORMATS: Final = {0: "PUBLIC_KEY_FORMAT_UNSPECIFIED", 1: "PEM", 2: "DER", 3: "NIST_PQC",
                   4: "XWING_RAW_BYTES"}  # fmt: skip


def asymmetric_sign(params: Mapping[str, str], query: Query, doc: Doc) -> SignRequest:
    name, number = key_name(params), version_number(params)
    digest_doc = doc.get("digest")
    if digest_doc is not None and not isinstance(digest_doc, dict):
        raise ValidationException("Invalid value at 'digest'.")
    data = bytes_field(doc, "data", MAX_PLAINTEXT) if doc.get("data") else None
    if bool(digest_doc) == (data is not None):
        raise ValidationException("Exactly one of digest and data must be given.")
    digest = kind = None
    if digest_doc:
        if len(digest_doc) != 1 or next(iter(digest_doc)) not in _DIGESTS:
            raise ValidationException(
                "digest must hold one of sha256, sha384, sha512 and externalMu."
            )
        kind = next(iter(digest_doc))
        digest = bytes_field(digest_doc, kind, 64)
        if len(digest) != _DIGESTS[kind]:
            raise ValidationException(f"digest.{kind} must be {_DIGESTS[kind]} bytes.")
    verified = (
        verify_crc(doc, "dataCrc32c", data or b"", "data"),
        verify_crc(doc, "digestCrc32c", digest or b"", "digest"),
    )
    return SignRequest(name, number, data, digest, kind, verified)


def asymmetric_decrypt(
    params: Mapping[str, str], query: Query, doc: Doc
) -> AsymmetricDecryptRequest:
    name, number = key_name(params), version_number(params)
    ciphertext = bytes_field(doc, "ciphertext", 512)
    if not ciphertext:
        raise ValidationException("ciphertext is required.")
    verified = verify_crc(doc, "ciphertextCrc32c", ciphertext, "ciphertext")
    return AsymmetricDecryptRequest(name, number, ciphertext, verified)


def public_key(params: Mapping[str, str], query: Query, doc: Doc) -> PublicKeyRequest:
    raw = one(query, "publicKeyFormat")
    # An enum's number (a few ASCII digits) or its name; anything else is
    # the name check's INVALID_ARGUMENT, not a 500.
    numeric = raw is not None and raw.isascii() and raw.isdigit() and len(raw) <= 9
    value: object = int(raw) if numeric and raw is not None else (raw or 0)
    fmt = enum_field(value, _FORMATS, "public_key_format")
    if fmt == "PUBLIC_KEY_FORMAT_UNSPECIFIED":
        fmt = "PEM"
    if fmt not in ("PEM", "DER", "NIST_PQC"):
        raise ValidationException(
            f"public_key_format {fmt} is not valid for this key: use PEM, DER or NIST_PQC."
        )
    return PublicKeyRequest(key_name(params), version_number(params), fmt)


def mac_sign(params: Mapping[str, str], query: Query, doc: Doc) -> MacRequest:
    data = bytes_field(doc, "data", MAX_PLAINTEXT)
    verified = (verify_crc(doc, "dataCrc32c", data, "data"), False)
    return MacRequest(key_name(params), version_number(params), data, None, verified)


def mac_verify(params: Mapping[str, str], query: Query, doc: Doc) -> MacRequest:
    data = bytes_field(doc, "data", MAX_PLAINTEXT)
    mac = bytes_field(doc, "mac", 64)
    if not mac:
        raise ValidationException("mac is required.")
    verified = (
        verify_crc(doc, "dataCrc32c", data, "data"),
        verify_crc(doc, "macCrc32c", mac, "mac"),
    )
    return MacRequest(key_name(params), version_number(params), data, mac, verified)
