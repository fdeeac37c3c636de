"""AWS Signature Version 4 verification, server side.

Why one module of ~680 lines: ``_parse_usual``, the fast path, stands for each
of the general path's checks in turn and must change whenever one of them
does; with the caches both share (Authorization prefixes, request times) it
is read against the general path side by side, not across files.

Hand-written on the standard library only (hashlib, hmac, binascii, operator,
urllib.parse, datetime, email.utils, re): the SigV4 libraries that exist are
client-side signers, and the few verifiers around either trust the client's
canonical form or differ from the SDKs in the corners (double-encoded paths,
repeated headers, odd whitespace). The canonical request built here matches
botocore's ``SigV4Auth`` byte for byte for a non-S3 service;
``tests/properties/test_sigv4_differential.py`` holds us to that.

Verification is split in two so that every check that needs no secret runs before
the caller looks up the access key: ``parse`` turns an HTTP request into a
``SignedRequest`` (or raises), ``verify`` checks its HMAC against the secret.
The canonical request itself, the bytes a signature covers, is built in
``auth/canonical.py``.

``parse`` first tries ``_parse_usual``: the request every SDK sends (no query,
no repeated header, an Authorization prefix and an x-amz-date seen before)
checked in one pass over caches filled by the general path, ``_parse_any``.
The usual path only ever accepts what ``_parse_any`` accepts, with the same
result (``tests/properties/test_sigv4_differential.py`` compares the two);
anything else, every refusal included, goes to ``_parse_any``, so each error
is decided in one place.

Only the ``Authorization`` header is accepted: keycask does not do presigned-URL
(query-string) authentication, and it issues no session tokens.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import pairwise
from operator import itemgetter
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from keycask.auth.canonical import canonical_head, canonical_request, header_map, single
from keycask.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
_TERMINATOR = "aws4_request"
_COMPONENTS = ("Credential", "SignedHeaders", "Signature")
# The exact shape botocore and most SDKs send, matched in one step; anything else
# takes the tolerant component-by-component path, which gives the same result.
_SDK_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^\s,]+), SignedHeaders=([^\s,]+), Signature=([^\s,]+)"
)

# re's [0-9] rather than \d: \d would also take non-ASCII digits.
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_REGION = re.compile(r"[a-z0-9-]{1,32}")
_SIGNATURE_HEX = re.compile(r"[0-9a-f]{64}")
_ACCESS_KEY_ID = re.compile(r"[\x21-\x7e]{1,128}")
# RFC 9110 tokens; signed header names must also be lower-case.
_SIGNED_HEADERS = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+(?:;[!#$%&'*+.^_`|~0-9a-z-]+)*")

# Names that mark a presigned URL; compared after percent-decoding, case-folded.
_QUERY_AUTH_PARAMS = frozenset(
    {
        b"x-amz-algorithm",
        b"x-amz-credential",
        b"x-amz-signature",
        b"x-amz-signedheaders",
        b"x-amz-date",
        b"x-amz-expires",
        b"x-amz-security-token",
    }
)

SECURITY_TOKEN = "x-amz-security-token"  # noqa: S105 (a header name)
_SECURITY_TOKEN_BYTES = SECURITY_TOKEN.encode()
_SECURITY_TOKEN_LENGTH = len(_SECURITY_TOKEN_BYTES)

_MAX_SKEW = timedelta(minutes=5)
# _parse_usual's bound on |now - request time| for _MAX_SKEW: a millisecond
# inside, so float rounding never decides; the edges go to _parse_any.
_USUAL_SKEW_SECONDS = _MAX_SKEW.total_seconds() - 0.001

_MISSING_AUTH = "Missing Authentication Token"
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as keycask's HTTP server hands it over, before any interpretation."""

    method: str
    raw_path: bytes
    query_string: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = field(repr=False)  # may carry plaintext: never printed
    # The common name of the client certificate the TLS handshake verified
    # (None: no certificate, or not over TLS); read by the XKS door's mutual TLS.
    client_subject: str | None = None


class SignedRequest(NamedTuple):
    """What ``parse`` extracted: enough to look up the secret and check the HMAC."""

    # A NamedTuple rather than a frozen dataclass: as immutable, and built for
    # every request at a third of the cost (frozen __init__ sets each field
    # through object.__setattr__).
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: bytes
    string_to_sign: bytes

    def __repr__(self) -> str:
        # Without the signature and string to sign, so that a logged
        # SignedRequest cannot help anyone forge one.
        return (
            f"SignedRequest(access_key_id={self.access_key_id!r}, date={self.date!r}, "
            f"region={self.region!r}, service={self.service!r}, "
            f"signed_headers={self.signed_headers!r})"
        )


# The two internal records are NamedTuples, not frozen dataclasses: as immutable,
# at half the construction cost on a path that runs for every request.
class _Scope(NamedTuple):
    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str


class _RequestTime(NamedTuple):
    when: datetime
    timestamp: str  # YYYYMMDDTHHMMSSZ, as it enters the string to sign
    header: str  # the header it came from: "x-amz-date" or "date"
    # For _parse_usual, computed once per distinct time:
    epoch: float  # when.timestamp(), an integer number of seconds
    day: str  # timestamp[:8], which the credential scope must name
    sign_line: bytes  # the string to sign's first two lines


def _request_time_of(when: datetime, timestamp: str, header: str) -> _RequestTime:
    sign_line = f"{ALGORITHM}\n{timestamp}\n".encode("ascii")
    return _RequestTime(when, timestamp, header, when.timestamp(), timestamp[:8], sign_line)


class _Prefix(NamedTuple):
    """What an Authorization header before its signature says, parsed once."""

    scope: _Scope
    signed_headers: tuple[str, ...]
    # For _parse_usual, computed once per distinct prefix:
    signed_set: frozenset[str]
    # The signed headers' values from a dict keyed by bytes; None for a single
    # name, which the usual request never signs (it signs host and x-amz-date).
    values: Callable[[dict[bytes, bytes]], tuple[bytes, ...]] | None
    scope_line: bytes  # the string to sign's third line
    well_formed: bool  # the scope's region and terminator pass _check_scope


def _prefix_of(scope: _Scope, signed_headers: tuple[str, ...]) -> _Prefix:
    names = [name.encode("ascii") for name in signed_headers]
    return _Prefix(
        scope,
        signed_headers,
        frozenset(signed_headers),
        # One C call for all values; of a single name it returns no tuple.
        itemgetter(*names) if len(names) > 1 else None,
        f"{scope.date}/{scope.region}/{scope.service}/{_TERMINATOR}\n".encode("ascii"),
        _REGION.fullmatch(scope.region) is not None and scope.terminator == _TERMINATOR,
    )


class _SigningKey(NamedTuple):
    key: bytes
    # SHA-256 already fed the key XOR ipad and the key XOR opad (RFC 2104):
    # copying them is HMAC without setting the key up again each time, 18k
    # instead of 30k instructions for a string to sign (callgrind).
    inner: hashlib._Hash
    outer: hashlib._Hash


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _signing_key_of(key: bytes) -> _SigningKey:
    block = key.ljust(64, b"\0")  # a signing key is 32 bytes, within one block
    return _SigningKey(
        key, hashlib.sha256(block.translate(_IPAD)), hashlib.sha256(block.translate(_OPAD))
    )


class SigningKeyCache:
    """Derived SigV4 signing keys, per (secret, date, region, service).

    The derivation is four HMACs, about a quarter of an uncached check, and a
    caller signs with the same key all day. Bounded: the least recently used entry goes first.
    The entries are as sensitive as the secrets themselves; repr shows only a count.
    """

    __slots__ = ("_keys", "_lock", "_max_entries")

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._keys: OrderedDict[tuple[str, str, str, str], _SigningKey] = OrderedDict()
        # The event loop needs no lock, but a worker thread calling verify must not
        # corrupt the order the eviction relies on.
        self._lock = threading.Lock()

    def signing_key(self, secret: str, date: str, region: str, service: str) -> bytes:
        return self._entry(secret, date, region, service).key

    def mac(self, secret: str, date: str, region: str, service: str, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under the signing key."""
        entry = self._entry(secret, date, region, service)
        inner = entry.inner.copy()
        inner.update(message)
        outer = entry.outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def _entry(self, secret: str, date: str, region: str, service: str) -> _SigningKey:
        scope = (secret, date, region, service)
        with self._lock:
            entry = self._keys.get(scope)
            if entry is not None:
                self._keys.move_to_end(scope)
                return entry
        entry = _signing_key_of(_derive_signing_key(secret, date, region, service))
        with self._lock:
            self._keys[scope] = entry
            while len(self._keys) > self._max_entries:
                self._keys.popitem(last=False)
        return entry

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"SigningKeyCache(<{len(self._keys)} of {self._max_entries} keys>)"


def parse(
    request: HttpRequest,
    *,
    now: datetime,
    service: str = "kms",
    max_skew: timedelta = _MAX_SKEW,
    required_signed_headers: tuple[str, ...] = ("host", "x-amz-target"),
) -> SignedRequest:
    """Check everything about a SigV4 request that needs no secret.

    Raises a ``KMSError`` subclass for any request it does not accept; ``now`` must
    be timezone-aware.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    usual = _parse_usual(request, now, service, max_skew, required_signed_headers)
    if usual is not None:
        return usual
    return _parse_any(request, now, service, max_skew, required_signed_headers)


def _parse_usual(
    request: HttpRequest,
    now: datetime,
    service: str,
    max_skew: timedelta,
    required_signed_headers: tuple[str, ...],
) -> SignedRequest | None:
    """``_parse_any``'s result for the request every SDK sends, or None.

    Each test below stands for one of ``_parse_any``'s checks and answers None
    (let ``_parse_any`` decide) whenever it cannot show that check passes.
    The general path cost ~23 us a request, this one ~4 (Encrypt 4 KiB,
    benchmarks/steps.py), most of it the body's SHA-256.
    """
    raw = request.headers
    headers = dict(raw)
    # No name repeated and every name lower-case: then this dict holds what
    # header_map would, keyed by bytes (the names _parse_any reads are ASCII).
    # The names include "authorization" when it matters, so islower() is not
    # False for want of a letter.
    if len(headers) != len(raw) or not b"".join(headers).islower():
        return None
    authorization = headers.get(b"authorization")
    amz_date = headers.get(b"x-amz-date")
    if authorization is None or amz_date is None or request.query_string:
        return None
    prefix, _, tail = authorization.rpartition(_SIGNATURE_MARK)
    entry = _PREFIX_CACHE.get(prefix)
    time = _TIME_CACHE.get(amz_date)
    if entry is None or time is None or entry.values is None:
        return None
    # _parse_signature's rule: 64 lower-case hexadecimal digits.
    if len(tail) != 64 or tail.lower() != tail:
        return None
    try:
        signature = binascii.unhexlify(tail)
    except binascii.Error:
        return None
    # _check_freshness, on seconds since the epoch: float rounding is far
    # below the millisecond left as margin, which leaves the edges to it.
    limit = _USUAL_SKEW_SECONDS if max_skew is _MAX_SKEW else max_skew.total_seconds() - 0.001
    if not abs(now.timestamp() - time.epoch) < limit:
        return None
    scope = entry.scope
    if scope.date != time.day or scope.service != service or not entry.well_formed:
        return None
    signed = entry.signed_set
    if "x-amz-date" not in signed or not signed.issuperset(required_signed_headers):
        return None
    # A session token (present once: no name repeats here) must be signed,
    # as _parse_any requires.
    if _SECURITY_TOKEN_BYTES in headers and SECURITY_TOKEN not in signed:
        return None
    try:
        values = entry.values(headers)
    except KeyError:  # a signed header is missing
        return None
    payload = binascii.b2a_hex(hashlib.sha256(request.body).digest())
    claimed = headers.get(b"x-amz-content-sha256")
    if claimed is not None and claimed != payload:
        return None
    head = canonical_head(request.method, request.raw_path, entry.signed_headers, values)
    if head is None:
        return None
    digest = binascii.b2a_hex(hashlib.sha256(head + payload).digest())
    # tuple.__new__ skips the NamedTuple's Python-level __new__ (~0.2 us).
    return tuple.__new__(
        SignedRequest,
        (
            scope.access_key_id,
            scope.date,
            scope.region,
            scope.service,
            entry.signed_headers,
            signature,
            time.sign_line + entry.scope_line + digest,
        ),
    )


def _parse_any(
    request: HttpRequest,
    now: datetime,
    service: str,
    max_skew: timedelta,
    required_signed_headers: tuple[str, ...],
) -> SignedRequest:
    """``parse`` for any request: every check, in order, with its own error."""
    headers = header_map(request.headers)
    authorization = single(headers, "authorization")
    if authorization is None:
        raise MissingAuthenticationTokenException(_missing_token_message(request.query_string))
    if _has_query_auth(request.query_string):
        raise IncompleteSignatureException(
            "Only one auth mechanism allowed: send the signature in the Authorization "
            "header only; keycask does not accept query-string authentication."
        )
    scope, signed_headers, signature = _parse_authorization(authorization)
    required = (*required_signed_headers,)
    if single(headers, SECURITY_TOKEN) is not None:
        # A session's token must be signed (botocore signs it): otherwise
        # anyone on the path could swap in another token for the signature.
        required = (*required, SECURITY_TOKEN)
    time = _request_time(headers)
    _check_freshness(time.when, now.astimezone(UTC), max_skew)
    _check_scope(scope, time, service)
    _check_signed_headers(signed_headers, headers, (*required, time.header))
    canonical = canonical_request(request, headers, signed_headers)
    return SignedRequest(
        access_key_id=scope.access_key_id,
        date=scope.date,
        region=scope.region,
        service=scope.service,
        signed_headers=signed_headers,
        signature=signature,
        string_to_sign=_string_to_sign(time.timestamp, scope, canonical),
    )


def security_token(request: HttpRequest) -> str | None:
    """The request's ``x-amz-security-token`` (a session token), or None.
    Only for a request ``parse`` accepted: it then was among the signed
    headers, and appeared once."""
    for name, value in request.headers:
        # The length first: asked on every request, and most carry no token.
        if len(name) == _SECURITY_TOKEN_LENGTH and name.lower() == _SECURITY_TOKEN_BYTES:
            try:
                return value.decode("ascii")
            except UnicodeDecodeError:
                raise UnrecognizedClientException(
                    "The security token included in the request is invalid."
                ) from None
    return None


def verify(signed: SignedRequest, secret: str, *, cache: SigningKeyCache) -> None:
    """Raise ``InvalidSignatureException`` unless ``secret`` produced the signature."""
    expected = cache.mac(secret, signed.date, signed.region, signed.service, signed.string_to_sign)
    if not hmac.compare_digest(expected, signed.signature):
        raise InvalidSignatureException(_MISMATCH)


# -- the Authorization header --

# A client sends the same Credential and SignedHeaders on every request; only
# the signature changes. Parsing them once per distinct prefix saves ~3 us a
# request. Bounded, first in first out: prefixes are client-chosen.
_PREFIX_CACHE: dict[bytes, _Prefix] = {}
_PREFIX_CACHE_SIZE = 1024
_PREFIX_MAX = 512  # an SDK's prefix is ~200 bytes; longer ones are not worth memory
_SIGNATURE_MARK = b"Signature="


def _parse_authorization(header: bytes) -> tuple[_Scope, tuple[str, ...], bytes]:
    prefix, mark, tail = header.rpartition(_SIGNATURE_MARK)
    if mark and len(tail) == 64:
        cached = _PREFIX_CACHE.get(prefix)
        if cached is not None:
            try:
                signature = _parse_signature(tail.decode("ascii"))
            except UnicodeDecodeError:
                raise IncompleteSignatureException(
                    "The Authorization header must be ASCII."
                ) from None
            return cached.scope, cached.signed_headers, signature
    credential, signed_headers_value, signature_hex = _split_authorization(header)
    scope = _parse_credential(credential)
    signed_headers = _parse_signed_headers(signed_headers_value)
    signature = _parse_signature(signature_hex)
    # Only when the signature is exactly the tail after the prefix is the
    # prefix alone a faithful key for what was parsed.
    if mark and tail == signature_hex.encode("ascii") and len(prefix) <= _PREFIX_MAX:
        if len(_PREFIX_CACHE) >= _PREFIX_CACHE_SIZE:
            del _PREFIX_CACHE[next(iter(_PREFIX_CACHE))]
        _PREFIX_CACHE[prefix] = _prefix_of(scope, signed_headers)
    return scope, signed_headers, signature


def _split_authorization(header: bytes) -> tuple[str, str, str]:
    """The Credential, SignedHeaders and Signature values, in that order."""
    try:
        text = header.decode("ascii")
    except UnicodeDecodeError:
        raise IncompleteSignatureException("The Authorization header must be ASCII.") from None
    usual = _SDK_AUTHORIZATION.fullmatch(text)
    if usual is not None:
        credential, signed_headers, signature = usual.groups()
        return credential, signed_headers, signature
    algorithm, *rest = text.split(None, 1) or [""]
    if algorithm != ALGORITHM:
        raise IncompleteSignatureException(
            f"Unsupported Authorization type: keycask accepts only '{ALGORITHM}'."
        )
    components: dict[str, str] = {}
    for piece in rest[0].split(",") if rest else ():
        if not piece.strip():
            continue  # a stray comma, as some hand-rolled signers leave behind
        name, equals, value = piece.partition("=")
        name = name.strip()
        if not equals or name not in _COMPONENTS:
            raise IncompleteSignatureException(
                "Authorization header components must be "
                "'Credential=...', 'SignedHeaders=...' and 'Signature=...'."
            )
        if name in components:
            raise IncompleteSignatureException(f"Authorization header repeats '{name}'.")
        components[name] = value.strip()
    missing = [name for name in _COMPONENTS if name not in components]
    if missing:
        raise IncompleteSignatureException(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        )
    return components["Credential"], components["SignedHeaders"], components["Signature"]


def _parse_credential(value: str) -> _Scope:
    parts = value.split("/")
    if len(parts) != 5:
        raise IncompleteSignatureException(
            "Credential must have the form "
            "'<access key id>/<YYYYMMDD>/<region>/<service>/aws4_request'."
        )
    if not _ACCESS_KEY_ID.fullmatch(parts[0]):
        raise IncompleteSignatureException("Credential has a malformed access key id.")
    return _Scope(*parts)


def _parse_signed_headers(value: str) -> tuple[str, ...]:
    if not _SIGNED_HEADERS.fullmatch(value):
        raise IncompleteSignatureException(
            "SignedHeaders must be a ';'-separated list of lower-case header names."
        )
    names = tuple(value.split(";"))
    # Names are ASCII here, so str order is the byte order the spec sorts by.
    if any(left >= right for left, right in pairwise(names)):
        raise IncompleteSignatureException(
            "SignedHeaders must be sorted, without repeats, as the canonical form requires."
        )
    return names


def _parse_signature(value: str) -> bytes:
    if len(value) != 64:
        raise IncompleteSignatureException(
            f"Signature must be 64 hexadecimal digits (HMAC-SHA256), not {len(value)}."
        )
    if not _SIGNATURE_HEX.fullmatch(value):
        raise IncompleteSignatureException("Signature must be lower-case hexadecimal.")
    return bytes.fromhex(value)


def _missing_token_message(query: bytes) -> str:
    if _has_query_auth(query):
        return (
            f"{_MISSING_AUTH}: keycask does not accept query-string (presigned URL) "
            "authentication; sign the request in the Authorization header."
        )
    return _MISSING_AUTH


def _has_query_auth(query: bytes) -> bool:
    if not query:
        return False
    for piece in query.split(b"&"):
        name = unquote_to_bytes(piece.partition(b"=")[0])
        if name.lower() in _QUERY_AUTH_PARAMS:
            return True
    return False


# -- time and scope --


# Requests signed in the same second share their x-amz-date.
_TIME_CACHE: dict[bytes, _RequestTime] = {}
_TIME_CACHE_SIZE = 64


def _request_time(headers: dict[str, list[bytes]]) -> _RequestTime:
    # x-amz-date wins over date, as in botocore and AWS; no fallback if it is bad.
    amz_date = single(headers, "x-amz-date")
    if amz_date is not None:
        cached = _TIME_CACHE.get(amz_date)
        if cached is not None:
            return cached
        parsed = _parse_amz_date(amz_date)
        if len(_TIME_CACHE) >= _TIME_CACHE_SIZE:
            del _TIME_CACHE[next(iter(_TIME_CACHE))]
        _TIME_CACHE[amz_date] = parsed
        return parsed
    return _parse_date_header(headers)


def _parse_amz_date(amz_date: bytes) -> _RequestTime:
    text = amz_date.decode("latin-1").strip()
    try:
        if not _AMZ_DATE.fullmatch(text):
            raise ValueError(text)
        # By hand: strptime costs more than the rest of the check put together.
        when = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        raise IncompleteSignatureException(
            "The x-amz-date header must be an ISO 8601 basic UTC time: YYYYMMDDTHHMMSSZ."
        ) from None
    return _request_time_of(when, text, "x-amz-date")


def _parse_date_header(headers: dict[str, list[bytes]]) -> _RequestTime:
    date = single(headers, "date")
    if date is None:
        raise IncompleteSignatureException(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    try:
        when = parsedate_to_datetime(date.decode("latin-1"))
        # botocore's formatdate() writes "-0000", which parses as naive: it means UTC.
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, TypeError, IndexError, OverflowError):
        raise IncompleteSignatureException("The Date header is not a valid HTTP date.") from None
    when = when.replace(microsecond=0)
    return _request_time_of(when, _amz_timestamp(when), "date")


def _check_freshness(when: datetime, now: datetime, max_skew: timedelta) -> None:
    earliest, latest = now - max_skew, now + max_skew
    if when < earliest:
        raise InvalidSignatureException(
            f"Signature expired: {_amz_timestamp(when)} is now earlier than "
            f"{_amz_timestamp(earliest)} ({_amz_timestamp(now)} - {_describe(max_skew)})."
        )
    if when > latest:
        raise InvalidSignatureException(
            f"Signature not yet current: {_amz_timestamp(when)} is still later than "
            f"{_amz_timestamp(latest)} ({_amz_timestamp(now)} + {_describe(max_skew)})."
        )


def _check_scope(scope: _Scope, time: _RequestTime, service: str) -> None:
    request_date = time.timestamp[:8]
    if scope.date != request_date:
        raise InvalidSignatureException(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: {_shown(scope.date)} != '{request_date}', from '{time.header}'."
        )
    if not _REGION.fullmatch(scope.region):
        raise InvalidSignatureException(
            f"Credential should be scoped to a valid region, not {_shown(scope.region)}."
        )
    if scope.service != service:
        raise InvalidSignatureException(
            f"Credential should be scoped to correct service: '{service}'."
        )
    if scope.terminator != _TERMINATOR:
        raise InvalidSignatureException(
            f"Credential should be scoped with a valid terminator: '{_TERMINATOR}', "
            f"not {_shown(scope.terminator)}."
        )


def _check_signed_headers(
    signed: tuple[str, ...], headers: dict[str, list[bytes]], required: tuple[str, ...]
) -> None:
    for name in required:
        if name not in signed:
            raise IncompleteSignatureException(
                f"'{name}' must be a 'SignedHeader' in the AWS Authorization."
            )
    for name in signed:
        if name not in headers:
            raise InvalidSignatureException(
                f"The signed header '{name}' is not present in the request."
            )


def _string_to_sign(timestamp: str, scope: _Scope, canonical_request: bytes) -> bytes:
    return "\n".join(
        (
            ALGORITHM,
            timestamp,
            f"{scope.date}/{scope.region}/{scope.service}/{_TERMINATOR}",
            hashlib.sha256(canonical_request).hexdigest(),
        )
    ).encode("ascii")


def _derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, _TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


# -- small helpers --


def _amz_timestamp(when: datetime) -> str:
    # By hand: strftime("%Y") does not zero-pad years before 1000.
    return (
        f"{when.year:04d}{when.month:02d}{when.day:02d}"
        f"T{when.hour:02d}{when.minute:02d}{when.second:02d}Z"
    )


def _describe(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds // 60} min." if seconds % 60 == 0 else f"{seconds} s"


def _shown(text: str) -> str:
    # Echo a client-sent value only short and escaped: it lands in logs.
    return repr(text[:40] + ("..." if len(text) > 40 else ""))
