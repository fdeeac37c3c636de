"""SigV4 verification against botocore's signer, on requests hypothesis makes up.

Every request botocore signs must verify; every single change to it must be refused
with a KMSError (never another exception); and no input at all may make ``parse``
raise anything but a KMSError. The canonical request and string to sign are
botocore's own, byte for byte, and ``parse``'s fast path for the usual request
(``_parse_usual``) answers either nothing or exactly what the general path does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keycask.auth import sigv4
from keycask.auth.canonical import canonical_head, canonical_request, header_map
from keycask.auth.sigv4 import HttpRequest, SignedRequest, SigningKeyCache, parse, verify
from keycask.errors import InvalidSignatureException, KMSError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METHODS = ("GET", "POST", "PUT", "DELETE")
SIGV4_FORMAT = "%Y%m%dT%H%M%SZ"
# Headers the signer or the verifier treat specially; the generator leaves them be.
RESERVED = frozenset({"x-amz-date", "x-amz-target", "x-amz-security-token", "x-amz-content-sha256"})
CACHE = SigningKeyCache()

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # UTF-8 encodable
# Path segments: arbitrary text plus the cases the normaliser and encoder care about.
segment = st.one_of(
    text, st.sampled_from(["", ".", "..", "~", "+", "%", " ", "a b", "%41", "%2F", "é"])
)
# Header values as HTTP carries them: latin-1 without CR/LF, with runs of spaces.
header_value = st.lists(
    st.one_of(
        st.sampled_from([" ", "   ", "\t", " \t ", "\xa0", "\x85"]),
        st.characters(codec="latin-1", exclude_characters="\r\n"),
    ),
    max_size=20,
).map("".join)
header_name = st.from_regex(r"x-[a-z0-9][a-z0-9-]{0,9}", fullmatch=True).filter(
    lambda name: name not in RESERVED
)
# A query naming a presigned-URL parameter is refused even with a valid header
# signature (see the unit tests), so signed requests leave those names out.
PRESIGN_NAMES = frozenset(
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
query_key = text.filter(lambda key: key.encode().lower() not in PRESIGN_NAMES)
region = st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True)
secret = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
endpoint = st.sampled_from(
    ["https://kms.example.com", "http://127.0.0.1:8080", "https://KMS.Example.COM:443"]
)


@dataclasses.dataclass(frozen=True)
class Case:
    http: HttpRequest
    secret: str
    now: datetime
    pieces: tuple[bytes, ...]  # the wire query, split on "&", to mutate pair by pair
    canonical: bytes  # botocore's canonical request, as it signed it
    string_to_sign: bytes  # and its string to sign


class RecordingSigV4Auth(SigV4Auth):
    """botocore's signer, keeping what it signed."""

    canonical: str = ""
    signed_string: str = ""

    def canonical_request(self, request: AWSRequest) -> str:
        self.canonical = str(super().canonical_request(request))
        return self.canonical

    def string_to_sign(self, request: AWSRequest, canonical_request: str) -> str:
        self.signed_string = str(super().string_to_sign(request, canonical_request))
        return self.signed_string


def wire_encode(value: str, rnd: random.Random, safe: str) -> str:
    """Percent-encode as some client might: needless escapes, either hex case."""
    out = []
    for char in value:
        for byte in char.encode():
            ch = chr(byte)
            if byte < 0x80 and ch in safe and rnd.random() < 0.7:
                out.append(ch)
            else:
                out.append(f"%{byte:02X}" if rnd.random() < 0.5 else f"%{byte:02x}")
    return "".join(out)


UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
PATH_SAFE = UNRESERVED + "!$&'()*+,;=:@"


def wire_path(segments: list[str], rnd: random.Random) -> str:
    # Dot segments stay literal so the normaliser sees them; everything else may be
    # spelt in any valid percent-encoding, since the path is signed as sent.
    kept = [s if s in (".", "..") else wire_encode(s, rnd, PATH_SAFE) for s in segments]
    return "/" + "/".join(kept)


def wire_query(pairs: list[tuple[str, str]], rnd: random.Random) -> list[str]:
    pieces = []
    for key, value in pairs:
        k, v = wire_encode(key, rnd, UNRESERVED), wire_encode(value, rnd, UNRESERVED)
        # "key" and "key=" mean the same; an empty key keeps "=" so it is not dropped.
        pieces.append(k if not v and k and rnd.random() < 0.5 else f"{k}={v}")
    return pieces


def wire_host(url: str) -> str:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    assert parts.hostname is not None
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{parts.hostname}{port}"


@st.composite
def signed_cases(draw: st.DrawFn) -> Case:
    rnd = draw(st.randoms(use_true_random=False))
    method = draw(st.sampled_from(METHODS))
    path = wire_path(draw(st.lists(segment, max_size=6)), rnd)
    pairs = draw(st.lists(st.tuples(query_key, text), max_size=5))
    names = draw(st.lists(header_name, max_size=4))
    extra = [(name, draw(header_value)) for name in names]  # a repeated name is a repeated header
    extra = [(n.upper() if rnd.random() < 0.3 else n, v) for n, v in extra]
    body = draw(st.binary(max_size=200))
    key = draw(secret)
    url = draw(endpoint) + path

    request = AWSRequest(method=method, url=url, data=body, params=pairs)
    for name, value in [
        ("X-Amz-Target", "TrentService.Encrypt"),
        ("Content-Type", "application/x-amz-json-1.1"),
        *extra,
    ]:
        request.headers[name] = value
    signer = RecordingSigV4Auth(Credentials("AKIAPROPERTY0TEST", key), "kms", draw(region))
    signer.add_auth(request)

    assert urlsplit(url).path == path  # the URL carried the path unchanged
    pieces = wire_query(pairs, rnd)
    headers = [(b"host", wire_host(url).encode())]
    headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in request.headers.items()]
    http = HttpRequest(
        method=method,
        raw_path=path.encode("ascii"),
        query_string="&".join(pieces).encode("ascii"),
        headers=tuple(headers),
        body=body,
    )
    now = datetime.strptime(request.context["timestamp"], SIGV4_FORMAT).replace(tzinfo=UTC)
    return Case(
        http,
        key,
        now,
        tuple(p.encode("ascii") for p in pieces),
        signer.canonical.encode("utf-8"),
        signer.signed_string.encode("utf-8"),
    )


def accept(http: HttpRequest, secret: str, now: datetime) -> None:
    verify(parse(http, now=now), secret, cache=CACHE)


def refused(http: HttpRequest, secret: str, now: datetime) -> KMSError | None:
    """The KMSError a request is refused with; anything else propagates."""
    try:
        accept(http, secret, now)
    except KMSError as error:
        return error
    return None


# -- mutations: each yields (what changed, request, secret) --


def replace_header(
    http: HttpRequest, name: bytes, change: Callable[[bytes], bytes] | None
) -> HttpRequest:
    headers: list[tuple[bytes, bytes]] = []
    for k, v in http.headers:
        if k != name:
            headers.append((k, v))
        elif change is not None:
            headers.append((k, change(v)))
            change = None  # only the first occurrence
    return dataclasses.replace(http, headers=tuple(headers))


def without_header(http: HttpRequest, name: bytes) -> HttpRequest:
    return dataclasses.replace(http, headers=tuple((k, v) for k, v in http.headers if k != name))


def with_query(http: HttpRequest, pieces: list[bytes]) -> HttpRequest:
    return dataclasses.replace(http, query_string=b"&".join(pieces))


def auth_rewrite(http: HttpRequest, change: Callable[[str], str]) -> HttpRequest:
    return replace_header(http, b"authorization", lambda v: change(v.decode()).encode())


def credential_part(index: int, new: Callable[[str], str]) -> Callable[[str], str]:
    def change(auth: str) -> str:
        head, rest = auth.split("Credential=", 1)
        credential, tail = rest.split(",", 1)
        parts = credential.split("/")
        parts[index] = new(parts[index])
        return f"{head}Credential={'/'.join(parts)},{tail}"

    return change


def flip_signature_digit(auth: str) -> str:
    position = auth.index("Signature=") + len("Signature=") + 17
    digit = auth[position]
    return auth[:position] + ("0" if digit != "0" else "1") + auth[position + 1 :]


def other_region(region: str) -> str:
    return "us-east-1" if region != "us-east-1" else "us-east-2"


def mutations(case: Case) -> Iterator[tuple[str, HttpRequest, str]]:
    http, key = case.http, case.secret
    yield "wrong secret", http, key + "x"
    for method in METHODS:
        if method != http.method:
            yield f"method {method}", dataclasses.replace(http, method=method), key
    yield "path", dataclasses.replace(http, raw_path=http.raw_path + b"/zz"), key
    yield "body", dataclasses.replace(http, body=http.body + b"!"), key

    pieces = list(case.pieces)
    yield "query pair added", with_query(http, [*pieces, b"zq=1"]), key
    for i, piece in enumerate(pieces):
        yield f"query pair {i} removed", with_query(http, pieces[:i] + pieces[i + 1 :]), key
        name, _, value = piece.partition(b"=")
        changed_key = [*pieces[:i], b"x" + piece, *pieces[i + 1 :]]
        yield f"query key {i} changed", with_query(http, changed_key), key
        changed_value = [*pieces[:i], name + b"=" + value + b"x", *pieces[i + 1 :]]
        yield f"query value {i} changed", with_query(http, changed_value), key

    signed = parse(http, now=case.now).signed_headers
    for name in signed:
        raw = name.encode()
        yield f"{name} changed", replace_header(http, raw, lambda v: v + b"x"), key
        yield f"{name} removed", without_header(http, raw), key

    for seconds in (-1, 1):
        moved = (case.now + timedelta(seconds=seconds)).strftime(SIGV4_FORMAT).encode()
        shifted = replace_header(http, b"x-amz-date", None)
        shifted = dataclasses.replace(shifted, headers=(*shifted.headers, (b"x-amz-date", moved)))
        yield f"x-amz-date {seconds:+d}s", shifted, key

    day_before = (case.now - timedelta(days=1)).strftime("%Y%m%d")
    for label, change in [
        ("scope date", credential_part(1, lambda _: day_before)),
        ("scope region", credential_part(2, other_region)),
        ("scope service", credential_part(3, lambda _: "kmz")),
        ("signature digit", flip_signature_digit),
    ]:
        yield label, auth_rewrite(http, change), key


@SETTINGS
@given(signed_cases())
def test_botocore_signed_requests_verify_and_every_mutation_is_refused(case: Case) -> None:
    accept(case.http, case.secret, case.now)
    for label, http, key in mutations(case):
        assert refused(http, key, case.now) is not None, f"accepted after: {label}"


@SETTINGS
@given(signed_cases(), st.integers(min_value=1, max_value=10**6))
def test_outside_the_skew_is_refused(case: Case, beyond: int) -> None:
    skew = timedelta(minutes=5, seconds=beyond)
    for now in (case.now + skew, case.now - skew):
        error = refused(case.http, case.secret, now)
        assert isinstance(error, InvalidSignatureException)
        assert error.message.startswith(("Signature expired", "Signature not yet current"))


# -- garbage in: only KMSErrors out --

NOW = datetime(2024, 1, 1, tzinfo=UTC)
FRAGMENTS = [
    "AWS4-HMAC-SHA256",
    " ",
    ",",
    "=",
    "/",
    ";",
    "Credential=",
    "SignedHeaders=",
    "Signature=",
    "AKID/20240101/eu-west-1/kms/aws4_request",
    "host;x-amz-date;x-amz-target",
    "0" * 64,
    "aws4_request",
    "\t",
    "\xff",
]
near_auth = st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join)
auth_value = st.one_of(
    near_auth.map(lambda s: s.encode("latin-1")),
    st.text().map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=100),
)
valid_auth = (
    b"AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-1/kms/aws4_request, "
    b"SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + b"0" * 64
)
some_header = st.tuples(
    st.one_of(
        st.sampled_from(
            [
                b"authorization",
                b"x-amz-date",
                b"date",
                b"host",
                b"x-amz-target",
                b"x-amz-content-sha256",
                b"x-amz-security-token",
                b"Authorization",
            ]
        ),
        st.binary(max_size=12),
    ),
    st.one_of(
        st.sampled_from(
            [b"20240101T000000Z", b"Mon, 01 Jan 2024 00:00:00 GMT", valid_auth, b"UNSIGNED-PAYLOAD"]
        ),
        auth_value,
    ),
)
VALID_HEADERS = (
    (b"host", b"kms.example.com"),
    (b"x-amz-date", b"20240101T000000Z"),
    (b"x-amz-target", b"TrentService.Encrypt"),
    (b"authorization", valid_auth),
)
garbage_requests = st.builds(
    HttpRequest,
    method=st.one_of(st.sampled_from(METHODS), st.text(max_size=8)),
    raw_path=st.one_of(st.binary(max_size=40), st.sampled_from([b"/", b"", b"/../..//%zz"])),
    query_string=st.one_of(
        st.binary(max_size=40), st.sampled_from([b"X-Amz-Signature=1", b"a&&=&%", b"%"])
    ),
    headers=st.one_of(
        st.lists(some_header, max_size=8).map(tuple),
        # Enough of a valid request to reach the canonical form, plus noise.
        st.lists(some_header, max_size=4).map(lambda extra: (*VALID_HEADERS, *extra)),
    ),
    body=st.binary(max_size=40),
)


def parse_or_kms_error(http: HttpRequest) -> None:
    with contextlib.suppress(KMSError):
        parse(http, now=NOW)


@SETTINGS
@given(auth_value)
def test_garbage_authorization_raises_only_kms_errors(value: bytes) -> None:
    headers = (*VALID_HEADERS[:-1], (b"authorization", value))
    http = HttpRequest(method="POST", raw_path=b"/", query_string=b"", headers=headers, body=b"")
    parse_or_kms_error(http)


@SETTINGS
@given(garbage_requests)
def test_arbitrary_requests_raise_only_kms_errors(http: HttpRequest) -> None:
    parse_or_kms_error(http)


# -- the canonical request, and the usual request's fast path --


def usual_or_any(http: HttpRequest, now: datetime) -> tuple[SignedRequest | None, object]:
    """What _parse_usual answers, then what _parse_any answers (a result or the
    KMSError, as class and message), for the default options of ``parse``."""
    options = (now, "kms", timedelta(minutes=5), ("host", "x-amz-target"))
    usual = sigv4._parse_usual(http, *options)
    try:
        general: object = sigv4._parse_any(http, *options)
    except KMSError as error:
        general = (type(error), error.message)
    return usual, general


def agree(http: HttpRequest, now: datetime) -> bool:
    """The fast path answers nothing or as the general path does, also once the
    general path has filled the caches for this request."""
    return all(
        usual is None or usual == general
        for usual, general in (usual_or_any(http, now), usual_or_any(http, now))
    )


@SETTINGS
@given(signed_cases())
def test_canonical_request_and_string_to_sign_are_botocores(case: Case) -> None:
    http = case.http
    signed = parse(http, now=case.now)
    headers = header_map(http.headers)
    assert canonical_request(http, headers, signed.signed_headers) == case.canonical
    assert signed.string_to_sign == case.string_to_sign
    if not http.query_string and all(len(headers[name]) == 1 for name in signed.signed_headers):
        values = tuple(headers[name][0] for name in signed.signed_headers)
        head = canonical_head(http.method, http.raw_path, signed.signed_headers, values)
        assert head is not None
        payload = hashlib.sha256(http.body).hexdigest().encode()
        assert head + payload == case.canonical


@SETTINGS
@given(signed_cases())
def test_the_fast_path_takes_plain_requests_and_answers_as_the_general_path(case: Case) -> None:
    http = case.http
    usual, general = usual_or_any(http, case.now)  # fills the caches the fast path reads
    assert isinstance(general, SignedRequest)
    usual, again = usual_or_any(http, case.now)
    assert again == general
    names = [name for name, _ in http.headers]
    if not http.query_string and len(set(names)) == len(names):
        assert usual == general  # every plain request takes the fast path
    else:
        assert usual is None
    for label, mutated, _ in mutations(case):
        assert agree(mutated, case.now), f"fast path differs after: {label}"
    for skew in (timedelta(minutes=5), timedelta(minutes=5, microseconds=1)):
        for now in (case.now + skew, case.now - skew):
            assert agree(http, now), f"fast path differs at {now - case.now}"


@SETTINGS
@given(garbage_requests)
def test_the_fast_path_answers_garbage_as_the_general_path(http: HttpRequest) -> None:
    assert agree(http, NOW)
