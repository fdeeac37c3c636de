"""The SigV4 canonical request: the bytes a signature covers.

Built as botocore's ``SigV4Auth.canonical_request`` builds it for a non-S3
service, byte for byte (``tests/properties/test_sigv4_differential.py`` holds
us to that), from a request ``sigv4.parse`` has already checked everything
else about. Kept apart from the parsing so that the one place a signature's
meaning is decided can be read against botocore line by line.

``canonical_head`` serves the usual request (no query, each signed header
once): everything before the payload hash is a pure function of the method,
the path and the signed headers' values, which repeat from request to request
(x-amz-date changes once a second), so it is built by the same functions and
remembered.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_to_bytes

from keycask.errors import IncompleteSignatureException, InvalidSignatureException

if TYPE_CHECKING:
    from keycask.auth.sigv4 import HttpRequest

__all__ = ["canonical_head", "canonical_request", "header_map", "single"]

_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def canonical_request(
    request: HttpRequest, headers: dict[str, list[bytes]], signed: tuple[str, ...]
) -> bytes:
    if not _METHOD.fullmatch(request.method):
        raise InvalidSignatureException("The HTTP method is not a valid token.")
    parts = (
        request.method,
        _canonical_uri(request.raw_path),
        _canonical_query(request.query_string),
        _canonical_headers(signed, [headers[name] for name in signed]),
        ";".join(signed),
        _payload_hash(headers, request.body),
    )
    return "\n".join(parts).encode("utf-8")


# The canonical request up to its payload hash, per (method, path, signed
# names, their values). Bounded, first in first out: the key is client-chosen
# (and the request not yet authenticated), so only short heads are kept.
_HEADS: dict[tuple[str, bytes, tuple[str, ...], tuple[bytes, ...]], bytes] = {}
_HEADS_SIZE = 512
_HEAD_MAX = 1024  # an SDK's head is ~200 bytes


def canonical_head(
    method: str, raw_path: bytes, signed: tuple[str, ...], values: tuple[bytes, ...]
) -> bytes | None:
    """``canonical_request`` of a request without a query, whose signed headers
    each came once with ``values``, minus the payload hash: add the body's
    SHA-256 in hex to complete it. None for a method that is not a token,
    which ``canonical_request`` refuses."""
    key = (method, raw_path, signed, values)
    head = _HEADS.get(key)
    if head is not None:
        return head
    if not _METHOD.fullmatch(method):
        return None
    parts = (
        method,
        _canonical_uri(raw_path),
        "",  # the query
        _canonical_headers(signed, [[value] for value in values]),
        ";".join(signed),
        "",  # where the payload hash goes
    )
    head = "\n".join(parts).encode("utf-8")
    if len(head) <= _HEAD_MAX:
        if len(_HEADS) >= _HEADS_SIZE:
            del _HEADS[next(iter(_HEADS))]
        _HEADS[key] = head
    return head


def _canonical_uri(raw_path: bytes) -> str:
    # The path is already percent-encoded on the wire and botocore quotes it again
    # (every non-S3 service double-encodes), so "%" becomes "%25". Working on bytes
    # equals botocore's quote() of the UTF-8 string and never fails to decode.
    if raw_path == b"/":
        return "/"  # every KMS request
    path = _remove_dot_segments(raw_path) if raw_path else b"/"
    return quote(path, safe="/~")


def _remove_dot_segments(path: bytes) -> bytes:
    # botocore.utils.remove_dot_segments: RFC 3986 5.2.4, plus AWS's collapsing of
    # empty segments ("//"). Only literal "." and ".." count, not "%2E".
    kept: list[bytes] = []
    for segment in path.split(b"/"):
        if segment == b"..":
            if kept:
                kept.pop()
        elif segment and segment != b".":
            kept.append(segment)
    first = b"/" if path.startswith(b"/") else b""
    last = b"/" if path.endswith(b"/") and kept else b""
    return first + b"/".join(kept) + last


def _canonical_query(query: bytes) -> str:
    # botocore signs the query it put on the wire, already in AWS encoding; decoding
    # and re-encoding gives the same string for such a query and also accepts other
    # SDKs' equivalent encodings (lower-case hex, needlessly encoded letters).
    # "+" is a literal plus, not a space, as the SigV4 spec reads a URI.
    if not query:
        return ""
    pairs = []
    for piece in query.split(b"&"):
        name, _, value = piece.partition(b"=")
        pairs.append((_aws_quote(name), _aws_quote(value)))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def _aws_quote(component: bytes) -> str:
    return quote(unquote_to_bytes(component), safe="-_.~")


def _canonical_headers(signed: tuple[str, ...], values: list[list[bytes]]) -> str:
    # HTTP carries header values as latin-1 and botocore trims with str.split(),
    # which also treats U+0085 and U+00A0 as space: decode first, then split.
    return "".join(
        f"{name}:{_header_value(found)}\n" for name, found in zip(signed, values, strict=True)
    )


def _header_value(values: list[bytes]) -> str:
    if len(values) == 1:
        return " ".join(values[0].decode("latin-1").split())
    # A repeated header is signed as its trimmed values joined by ",", in order.
    return ",".join(" ".join(value.decode("latin-1").split()) for value in values)


def _payload_hash(headers: dict[str, list[bytes]], body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()
    claimed = single(headers, "x-amz-content-sha256")
    if claimed is None:
        return digest
    text = claimed.decode("latin-1").strip()
    if text == "UNSIGNED-PAYLOAD" or text.startswith("STREAMING-"):
        raise InvalidSignatureException(
            "keycask requires a signed payload: x-amz-content-sha256 must be the SHA-256 "
            "of the body, not 'UNSIGNED-PAYLOAD' or a streaming variant."
        )
    if text != digest:
        raise InvalidSignatureException(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return digest


def header_map(headers: tuple[tuple[bytes, bytes], ...]) -> dict[str, list[bytes]]:
    # keycask's HTTP server lower-cases names already; lowering again costs little and keeps a
    # hand-built request from slipping past a signed-header check.
    found: dict[str, list[bytes]] = {}
    for name, value in headers:
        found.setdefault(name.lower().decode("latin-1"), []).append(value)
    return found


def single(headers: dict[str, list[bytes]], name: str) -> bytes | None:
    values = headers.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise IncompleteSignatureException(f"The '{name}' header must appear only once.")
    return values[0]
