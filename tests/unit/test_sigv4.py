"""SigV4 verification: one test per rule, with requests signed by botocore itself.

botocore reads the clock when it signs, so each test parses with ``now`` set to the
timestamp the signer used (``request.context["timestamp"]``) instead of freezing time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from keycask.auth import sigv4
from keycask.auth.sigv4 import (
    HttpRequest,
    SignedRequest,
    SigningKeyCache,
    parse,
    security_token,
    verify,
)
from keycask.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    KMSError,
    MissingAuthenticationTokenException,
)

AKID = "AKIAKEYCASK0EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "eu-west-1"
ENDPOINT = "https://kms.eu-west-1.amazonaws.com/"
KMS_HEADERS = {
    "X-Amz-Target": "TrentService.Encrypt",
    "Content-Type": "application/x-amz-json-1.1",
}
# What boto3 serialises for kms.encrypt(KeyId=..., Plaintext=..., EncryptionContext=...).
ENCRYPT_BODY = (
    b'{"KeyId": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",'
    b' "Plaintext": "c2VjcmV0IGRhdGEgdGhhdCBuZWVkcyBwcm90ZWN0aW9u",'
    b' "EncryptionContext": {"department": "finance", "purpose": "test"},'
    b' "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}'
)
SIGV4_FORMAT = "%Y%m%dT%H%M%SZ"


# -- building requests the way botocore and urllib3 put them on the wire --


def sign(
    *,
    method: str = "POST",
    url: str = ENDPOINT,
    body: bytes = ENCRYPT_BODY,
    headers: Iterable[tuple[str, str]] = (),
    kms_headers: bool = True,
    secret: str = SECRET,
    region: str = REGION,
    service: str = "kms",
    token: str | None = None,
    params: list[tuple[str, str]] | None = None,
    context: dict[str, Any] | None = None,
) -> AWSRequest:
    request = AWSRequest(method=method, url=url, data=body, params=params)
    for name, value in [*(KMS_HEADERS.items() if kms_headers else ()), *headers]:
        request.headers[name] = value  # HTTPHeaders appends: repeats are kept
    request.context.update(context or {})
    SigV4Auth(Credentials(AKID, secret, token), service, region).add_auth(request)
    return request


def wire_host(url: str) -> str:
    # What urllib3 sends as Host, and what botocore signs when no Host is given.
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    assert parts.hostname is not None
    if parts.port is None or parts.port == default:
        return parts.hostname
    return f"{parts.hostname}:{parts.port}"


def as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def to_http(request: AWSRequest, *, query: str | None = None) -> HttpRequest:
    """The request as keycask's HTTP server would hand it over."""
    prepared = request.prepare()
    names = {name.lower() for name in request.headers}
    headers = [] if "host" in names else [(b"host", wire_host(request.url).encode())]
    # From the unprepared request: prepare() collapses repeated headers into one.
    headers += [(k.lower().encode(), as_bytes(v)) for k, v in request.headers.items()]
    headers += [
        (k.lower().encode(), as_bytes(v))
        for k, v in prepared.headers.items()
        if k.lower() not in names
    ]
    parts = urlsplit(prepared.url)
    return HttpRequest(
        method=prepared.method,
        raw_path=parts.path.encode("ascii") or b"/",
        query_string=(parts.query if query is None else query).encode("ascii"),
        headers=tuple(headers),
        body=prepared.body or b"",
    )


def signed_at(request: AWSRequest) -> datetime:
    return datetime.strptime(request.context["timestamp"], SIGV4_FORMAT).replace(tzinfo=UTC)


def check(http: HttpRequest, now: datetime, secret: str = SECRET, **options: Any) -> SignedRequest:
    signed = parse(http, now=now, **options)
    verify(signed, secret, cache=SigningKeyCache())
    return signed


def header(http: HttpRequest, name: str) -> str:
    values = [v for k, v in http.headers if k == name.encode()]
    assert len(values) == 1
    return values[0].decode("latin-1")


def with_header(http: HttpRequest, name: str, value: str | bytes | None) -> HttpRequest:
    """Replace every value of a header, or drop it when value is None."""
    key = name.encode()
    kept = tuple((k, v) for k, v in http.headers if k != key)
    added = () if value is None else ((key, as_bytes(value)),)
    return dataclasses.replace(http, headers=kept + added)


def with_auth(http: HttpRequest, old: str, new: str) -> HttpRequest:
    auth = header(http, "authorization")
    assert old in auth
    return with_header(http, "authorization", auth.replace(old, new))


def amz(when: datetime) -> str:
    return when.strftime(SIGV4_FORMAT)


@pytest.fixture
def encrypt() -> tuple[HttpRequest, datetime]:
    request = sign()
    return to_http(request), signed_at(request)


# -- acceptance --


def test_accepts_a_boto3_encrypt_request_captured_before_send() -> None:
    class Captured(Exception):
        pass

    def capture(request: Any, **_: Any) -> None:
        raise Captured(request)

    client = boto3.session.Session(
        aws_access_key_id=AKID, aws_secret_access_key=SECRET, region_name=REGION
    ).client("kms", endpoint_url="http://localhost:8080")
    client.meta.events.register("before-send.kms.Encrypt", capture)
    with pytest.raises(Captured) as caught:
        client.encrypt(
            KeyId="alias/app", Plaintext=b"\x00secret\xff" * 40, EncryptionContext={"a": "b"}
        )
    sent = caught.value.args[0]
    parts = urlsplit(sent.url)
    http = HttpRequest(
        method=sent.method,
        raw_path=parts.path.encode() or b"/",
        query_string=parts.query.encode(),
        headers=(
            (b"host", wire_host(sent.url).encode()),
            *((k.lower().encode(), as_bytes(v)) for k, v in sent.headers.items()),
        ),
        body=sent.body,
    )
    now = datetime.strptime(header(http, "x-amz-date"), SIGV4_FORMAT).replace(tzinfo=UTC)

    signed = check(http, now)

    assert signed.access_key_id == AKID
    assert (signed.region, signed.service) == (REGION, "kms")
    assert signed.signed_headers == ("content-type", "host", "x-amz-date", "x-amz-target")


def test_accepts_an_sdk_shaped_encrypt_request(encrypt: tuple[HttpRequest, datetime]) -> None:
    http, now = encrypt
    signed = check(http, now)
    assert signed.date == amz(now)[:8]
    assert len(signed.signature) == 32


# AWS's published examples (sigv4 test suite and the IAM ListUsers walkthrough):
# an oracle that is not botocore.
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AWS_NOW = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "signature"),
    [
        ("", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ],
)
def test_accepts_the_aws_test_suite_get_vanilla_vectors(query: str, signature: str) -> None:
    http = HttpRequest(
        method="GET",
        raw_path=b"/",
        query_string=query.encode(),
        headers=(
            (b"host", b"example.amazonaws.com"),
            (b"x-amz-date", b"20150830T123600Z"),
            (
                b"authorization",
                b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                b"aws4_request, SignedHeaders=host;x-amz-date, Signature=" + signature.encode(),
            ),
        ),
        body=b"",
    )
    check(http, AWS_NOW, AWS_SECRET, service="service", required_signed_headers=("host",))


def test_accepts_the_aws_documented_iam_example() -> None:
    http = HttpRequest(
        method="GET",
        raw_path=b"/",
        query_string=b"Action=ListUsers&Version=2010-05-08",
        headers=(
            (b"host", b"iam.amazonaws.com"),
            (b"content-type", b"application/x-www-form-urlencoded; charset=utf-8"),
            (b"x-amz-date", b"20150830T123600Z"),
            (
                b"authorization",
                b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request,"
                b" SignedHeaders=content-type;host;x-amz-date,"
                b" Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            ),
        ),
        body=b"",
    )
    check(http, AWS_NOW, AWS_SECRET, service="iam", required_signed_headers=("host",))


def test_rejects_a_wrong_secret_with_the_aws_message(
    encrypt: tuple[HttpRequest, datetime],
) -> None:
    http, now = encrypt
    with pytest.raises(InvalidSignatureException, match="does not match the signature you"):
        check(http, now, secret=SECRET + "x")


# -- the Authorization header --


def test_no_authorization_header_is_a_missing_token(
    encrypt: tuple[HttpRequest, datetime],
) -> None:
    http, now = encrypt
    with pytest.raises(MissingAuthenticationTokenException) as caught:
        parse(with_header(http, "authorization", None), now=now)
    assert caught.value.message == "Missing Authentication Token"


def test_presigned_url_auth_is_refused_as_missing_token() -> None:
    request = AWSRequest(method="GET", url=ENDPOINT, headers=dict(KMS_HEADERS))
    SigV4QueryAuth(Credentials(AKID, SECRET), "kms", REGION, expires=60).add_auth(request)
    http = to_http(request)
    assert b"X-Amz-Signature=" in http.query_string
    with pytest.raises(MissingAuthenticationTokenException) as caught:
        parse(http, now=signed_at(request))
    assert caught.value.message.startswith("Missing Authentication Token")
    assert "query-string" in caught.value.message


def test_header_and_query_auth_together_are_refused() -> None:
    request = sign(params=[("X-Amz-Signature", "0" * 64)])
    with pytest.raises(IncompleteSignatureException, match="Only one auth mechanism"):
        parse(to_http(request), now=signed_at(request))


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda a: a.replace(", ", ","),
        lambda a: a.replace(", ", " ,  "),
        lambda a: a.replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256 \t  "),
        lambda a: a.replace("=", " = "),
        lambda a: f"  {a}  ",
        lambda a: a + ",",
        # components in another order
        lambda a: "AWS4-HMAC-SHA256 " + ", ".join(reversed(a.split(" ", 1)[1].split(", "))),
    ],
    ids=["no-space", "spaces", "tab", "around-equals", "padded", "trailing-comma", "reordered"],
)
def test_tolerates_sdk_whitespace_and_component_order(
    encrypt: tuple[HttpRequest, datetime], rewrite: Any
) -> None:
    http, now = encrypt
    auth = header(http, "authorization")
    check(with_header(http, "authorization", rewrite(auth)), now)


@pytest.mark.parametrize(
    "algorithm", ["AWS4-HMAC-SHA512", "AWS4-ECDSA-P256-SHA256", "AWS", "aws4-hmac-sha256"]
)
def test_other_algorithms_are_incomplete(
    encrypt: tuple[HttpRequest, datetime], algorithm: str
) -> None:
    http, now = encrypt
    with pytest.raises(IncompleteSignatureException, match="accepts only 'AWS4-HMAC-SHA256'"):
        parse(with_auth(http, "AWS4-HMAC-SHA256 ", f"{algorithm} "), now=now)


@pytest.mark.parametrize("value", ["", "Bearer abc", "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 "])
def test_degenerate_authorization_headers_are_incomplete(
    encrypt: tuple[HttpRequest, datetime], value: str
) -> None:
    http, now = encrypt
    with pytest.raises(IncompleteSignatureException):
        parse(with_header(http, "authorization", value), now=now)


@pytest.mark.parametrize("component", ["Credential", "SignedHeaders", "Signature"])
def test_each_missing_component_is_incomplete(
    encrypt: tuple[HttpRequest, datetime], component: str
) -> None:
    http, now = encrypt
    algorithm, rest = header(http, "authorization").split(" ", 1)
    kept = [part for part in rest.split(", ") if not part.startswith(component + "=")]
    bare = with_header(http, "authorization", f"{algorithm} {', '.join(kept)}")
    with pytest.raises(IncompleteSignatureException, match=f"requires '{component}' parameter"):
        parse(bare, now=now)


def test_repeated_or_unknown_components_are_incomplete(
    encrypt: tuple[HttpRequest, datetime],
) -> None:
    http, now = encrypt
    auth = header(http, "authorization")
    with pytest.raises(IncompleteSignatureException, match="repeats 'Signature'"):
        parse(with_header(http, "authorization", f"{auth}, Signature={'0' * 64}"), now=now)
    with pytest.raises(IncompleteSignatureException, match="components must be"):
        parse(with_header(http, "authorization", f"{auth}, Expires=60"), now=now)
    with pytest.raises(IncompleteSignatureException, match="components must be"):
        parse(with_header(http, "authorization", f"{auth}, Signature"), now=now)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("0" * 63, "64 hexadecimal digits"),
        ("0" * 65, "64 hexadecimal digits"),
        ("", "64 hexadecimal digits"),
        ("g" * 64, "lower-case hexadecimal"),
        ("A" * 64, "lower-case hexadecimal"),
        ("0" * 62 + " 0", "lower-case hexadecimal"),
    ],
)
def test_bad_signature_hex_or_length_is_incomplete(
    encrypt: tuple[HttpRequest, datetime], bad: str, message: str
) -> None:
    http, now = encrypt
    auth = header(http, "authorization")
    forged = auth[: auth.index("Signature=") + len("Signature=")] + bad
    with pytest.raises(IncompleteSignatureException, match=message):
        parse(with_header(http, "authorization", forged), now=now)


@pytest.mark.parametrize(
    "credential",
    [f"{AKID}/20240101/eu-west-1/kms", f"{AKID}/x/20240101/eu-west-1/kms/aws4_request"],
)
def test_credential_without_five_parts_is_incomplete(
    encrypt: tuple[HttpRequest, datetime], credential: str
) -> None:
    http, now = encrypt
    auth = header(http, "authorization")
    start = auth.index("Credential=") + len("Credential=")
    forged = auth[:start] + credential + auth[auth.index(",", start) :]
    with pytest.raises(IncompleteSignatureException, match="Credential must have the form"):
        parse(with_header(http, "authorization", forged), now=now)


def test_repeated_authorization_header_is_incomplete(
    encrypt: tuple[HttpRequest, datetime],
) -> None:
    http, now = encrypt
    doubled = dataclasses.replace(
        http, headers=(*http.headers, (b"authorization", as_bytes(header(http, "authorization"))))
    )
    with pytest.raises(IncompleteSignatureException, match="only once"):
        parse(doubled, now=now)


# -- request time --


def test_time_from_the_date_header_when_there_is_no_x_amz_date() -> None:
    # botocore rewrites a Date header, signs it and leaves x-amz-date out.
    request = sign(headers=[("Date", "placeholder")])
    http = to_http(request)
    assert "x-amz-date" not in dict(http.headers)
    assert header(http, "date").endswith(" -0000")
    signed = check(http, signed_at(request))
    assert "date" in signed.signed_headers


def test_missing_time_is_incomplete(encrypt: tuple[HttpRequest, datetime]) -> None:
    http, now = encrypt
    with pytest.raises(IncompleteSignatureException, match="'X-Amz-Date' or a 'Date'"):
        parse(with_header(http, "x-amz-date", None), now=now)


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01T00:00:00Z",
        "20241301T000000Z",
        "20240101T000000",
        "20240101t000000z",
        "20240101T250000Z",
        "\u0662\u0660\u0662\u0664\u0660\u0661\u0660\u0661T000000Z".encode(),  # not ASCII digits
        b"2024\xff0101T000000Z",
        "",
    ],
)
def test_unparseable_x_amz_date_is_incomplete(
    encrypt: tuple[HttpRequest, datetime], value: str | bytes
) -> None:
    http, now = encrypt
    with pytest.raises(IncompleteSignatureException, match="YYYYMMDDTHHMMSSZ"):
        parse(with_header(http, "x-amz-date", value), now=now)


def test_unparseable_date_header_is_incomplete() -> None:
    request = sign(headers=[("Date", "placeholder")])
    http = with_header(to_http(request), "date", "yesterday, around noon")
    with pytest.raises(IncompleteSignatureException, match="not a valid HTTP date"):
        parse(http, now=signed_at(request))


def test_expired_signature_is_worded_like_aws(encrypt: tuple[HttpRequest, datetime]) -> None:
    http, signed = encrypt
    now = signed + timedelta(minutes=5, seconds=1)
    with pytest.raises(InvalidSignatureException) as caught:
        parse(http, now=now)
    assert caught.value.message == (
        f"Signature expired: {amz(signed)} is now earlier than "
        f"{amz(now - timedelta(minutes=5))} ({amz(now)} - 5 min.)."
    )


def test_future_signature_is_worded_like_aws(encrypt: tuple[HttpRequest, datetime]) -> None:
    http, signed = encrypt
    now = signed - timedelta(minutes=5, seconds=1)
    with pytest.raises(InvalidSignatureException) as caught:
        parse(http, now=now)
    assert caught.value.message == (
        f"Signature not yet current: {amz(signed)} is still later than "
        f"{amz(now + timedelta(minutes=5))} ({amz(now)} + 5 min.)."
    )


def test_skew_bounds_are_inclusive_and_configurable(
    encrypt: tuple[HttpRequest, datetime],
) -> None:
    http, signed = encrypt
    check(http, signed + timedelta(minutes=5))
    check(http, signed - timedelta(minutes=5))
    with pytest.raises(InvalidSignatureException, match=r"Signature expired: .* - 30 s\)"):
        parse(http, now=signed + timedelta(seconds=31), max_skew=timedelta(seconds=30))


def test_now_must_be_timezone_aware(encrypt: tuple[HttpRequest, datetime]) -> None:
    http, signed = encrypt
    with pytest.raises(ValueError, match="timezone-aware"):
        parse(http, now=signed.replace(tzinfo=None))


# -- credential scope --


def test_scope_date_must_be_the_request_date(encrypt: tuple[HttpRequest, datetime]) -> None:
    http, now = encrypt
    day = amz(now)[:8]
    other = amz(now - timedelta(days=1))[:8]
    with pytest.raises(InvalidSignatureException, match="Date in Credential scope does not match"):
        parse(with_auth(http, f"/{day}/", f"/{other}/"), now=now)


def test_scope_service_must_be_kms() -> None:
    request = sign(service="s3")
    with pytest.raises(
        InvalidSignatureException,
        match=re.escape("Credential should be scoped to correct service: 'kms'."),
    ):
        parse(to_http(request), now=signed_at(request))


@pytest.mark.parametrize("region", ["EU-WEST-1", "eu_west_1", "a" * 33, "eu-west-1 "])
def test_scope_region_must_look_like_a_region(region: str) -> None:
    request = sign(region=region)
    with pytest.raises(InvalidSignatureException, match="scoped to a valid region"):
        parse(to_http(request), now=signed_at(request))


def test_any_well_formed_region_is_accepted() -> None:
    request = sign(region="keycask-lab-9")
    assert check(to_http(request), signed_at(request)).region == "keycask-lab-9"


def test_scope_terminator_must_be_aws4_request(encrypt: tuple[HttpRequest, datetime]) -> None:
    http, now = encrypt
    with pytest.raises(InvalidSignatureException, match="valid terminator: 'aws4_request'"):
        parse(with_auth(http, "/aws4_request", "/aws4_requesT"), now=now)


# -- signed headers --


def test_x_amz_target_must_be_signed() -> None:
    request = sign(kms_headers=False, headers=[("Content-Type", "application/x-amz-json-1.1")])
    http = to_http(request)
    with pytest.raises(IncompleteSignatureException, match="'x-amz-target' must be a"):
        parse(http, now=signed_at(request))
    # ...and the requirement is the caller's to set.
    check(http, signed_at(request), required_signed_headers=("host",))


@pytest.mark.parametrize("name", ["host", "x-amz-date"])
def test_host_and_the_time_header_must_be_signed(
    encrypt: tuple[HttpRequest, datetime], name: str
) -> None:
    http, now = encrypt
    auth = header(http, "authorization")
    names = auth.split("SignedHeaders=")[1].split(",")[0]
    fewer = ";".join(n for n in names.split(";") if n != name)
    with pytest.raises(IncompleteSignatureException, match=f"'{name}' must be a"):
        parse(with_auth(http, names, fewer), now=now)


def test_date_header_must_be_signed_when_it_gives_the_time() -> None:
    request = sign(headers=[("Date", "placeholder")])
    http = with_auth(
        to_http(request), "SignedHeaders=content-type;date;", "SignedHeaders=content-type;"
    )
    with pytest.raises(IncompleteSignatureException, match="'date' must be a"):
        parse(http, now=signed_at(request))


def test_signed_header_absent_from_the_request_is_rejected(
    encrypt: tuple[HttpRequest, datetime],
) -> None:
    http, now = encrypt
    with pytest.raises(InvalidSignatureException, match="'content-type' is not present"):
        parse(with_header(http, "content-type", None), now=now)


@pytest.mark.parametrize(
    "names",
    [
        "host;content-type;x-amz-date;x-amz-target",
        "content-type;Host;x-amz-date;x-amz-target",
        "content-type;host;host;x-amz-date;x-amz-target",
        "content-type;;host;x-amz-date;x-amz-target",
        "",
    ],
    ids=["unsorted", "upper-case", "repeated", "empty-name", "empty"],
)
def test_signed_headers_must_be_lower_case_sorted_unique(
    encrypt: tuple[HttpRequest, datetime], names: str
) -> None:
    http, now = encrypt
    with pytest.raises(IncompleteSignatureException, match="SignedHeaders must be"):
        parse(with_auth(http, "content-type;host;x-amz-date;x-amz-target", names), now=now)


# -- session tokens --


def test_a_signed_security_token_is_parsed_and_handed_over() -> None:
    # botocore signs x-amz-security-token with the rest: the signature
    # covers it, and the session layer (doors/signed.py) opens it.
    request = sign(token="FwoGZXIvYXdzEXAMPLE")
    http = to_http(request)
    signed = check(http, signed_at(request))
    assert "x-amz-security-token" in signed.signed_headers
    assert security_token(http) == "FwoGZXIvYXdzEXAMPLE"
    assert security_token(to_http(sign())) is None


def test_a_security_token_must_be_signed() -> None:
    request = sign()
    http = with_header(to_http(request), "x-amz-security-token", "FwoGZXIvYXdzEXAMPLE")
    with pytest.raises(IncompleteSignatureException, match="x-amz-security-token"):
        parse(http, now=signed_at(request))


def test_a_security_token_appears_once() -> None:
    request = sign(token="FwoGZXIvYXdzEXAMPLE")
    http = to_http(request)
    http = dataclasses.replace(http, headers=(*http.headers, (b"x-amz-security-token", b"x")))
    with pytest.raises(IncompleteSignatureException, match="only once"):
        parse(http, now=signed_at(request))


def test_a_swapped_security_token_breaks_the_signature() -> None:
    request = sign(token="FwoGZXIvYXdzEXAMPLE")
    http = with_header(to_http(request), "x-amz-security-token", "FwoGZXIvYXdzOTHER")
    with pytest.raises(InvalidSignatureException):
        check(http, signed_at(request))


# -- payload --


def test_body_is_always_hashed(encrypt: tuple[HttpRequest, datetime]) -> None:
    http, now = encrypt
    tampered = dataclasses.replace(http, body=http.body.replace(b"finance", b"Finance"))
    with pytest.raises(InvalidSignatureException, match="does not match the signature"):
        check(tampered, now)


def test_matching_content_sha256_header_is_accepted() -> None:
    digest = hashlib.sha256(ENCRYPT_BODY).hexdigest()
    request = sign(headers=[("X-Amz-Content-SHA256", digest)])
    check(to_http(request), signed_at(request))


def test_content_sha256_header_must_match_the_body() -> None:
    request = sign(headers=[("X-Amz-Content-SHA256", hashlib.sha256(b"other").hexdigest())])
    with pytest.raises(InvalidSignatureException, match="'x-amz-content-sha256' header does not"):
        parse(to_http(request), now=signed_at(request))


@pytest.mark.parametrize(
    "value",
    [
        "UNSIGNED-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    ],
)
def test_unsigned_and_streaming_payloads_are_refused(value: str) -> None:
    request = sign(headers=[("X-Amz-Content-SHA256", value)])
    with pytest.raises(InvalidSignatureException, match="requires a signed payload"):
        parse(to_http(request), now=signed_at(request))


def test_botocore_unsigned_payload_mode_is_refused() -> None:
    # What botocore sends over https when an operation disables payload signing.
    request = sign(context={"payload_signing_enabled": False})
    assert request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    with pytest.raises(InvalidSignatureException, match="requires a signed payload"):
        parse(to_http(request), now=signed_at(request))


# -- canonical request details --


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/a%20b/c%2Fd",  # double encoding: %20 is signed as %2520
        "/%E2%82%AC/%e2%82%ac",  # either hex case, UTF-8 inside
        "/a/./b/../c//d/",  # dot segments and repeated slashes are normalised away
        "/~user/+plus/%7Etilde",
        "//..//.//x/..",
        "/a;b=c:d@e!$&'()*,",
    ],
)
def test_canonical_uri_matches_botocore(path: str) -> None:
    request = sign(method="GET", url=f"https://kms.eu-west-1.amazonaws.com{path}", body=b"")
    http = to_http(request)
    assert http.raw_path == path.encode()
    check(http, signed_at(request))


def test_encoded_slash_is_not_a_slash() -> None:
    request = sign(url="https://kms.eu-west-1.amazonaws.com/a%2Fb")
    http = dataclasses.replace(to_http(request), raw_path=b"/a/b")
    with pytest.raises(InvalidSignatureException):
        check(http, signed_at(request))


def test_canonical_query_sorts_and_keeps_empty_values() -> None:
    request = sign(url=ENDPOINT + "?b=2&a=&c&a=1&A=0")
    check(to_http(request), signed_at(request))


def test_canonical_query_accepts_equivalent_encodings() -> None:
    # Signed from params (botocore encodes them itself); sent in another SDK's
    # spelling: needless escapes, lower-case hex, bare "key" for "key=".
    params = [("key/with space", "v\u00e9~*"), ("empty", ""), ("A", "1")]
    request = sign(params=params)
    wire = "k%65y%2fwith%20space=v%c3%a9%7E%2A&empty&%41=1"
    check(to_http(request, query=wire), signed_at(request))


def test_plus_in_the_query_is_a_plus_not_a_space() -> None:
    request = sign(params=[("q", "a+b")])
    now = signed_at(request)
    check(to_http(request, query="q=a+b"), now)
    check(to_http(request, query="q=a%2Bb"), now)
    with pytest.raises(InvalidSignatureException):
        check(to_http(request, query="q=a%20b"), now)


def test_header_values_are_trimmed_and_whitespace_runs_collapsed() -> None:
    request = sign(headers=[("X-Custom", "  a   b \t c  "), ("X-Nbsp", "x\u00a0\u00a0y")])
    http = to_http(request)
    check(http, signed_at(request))
    # What the signature covers is the collapsed value, so this is the same request.
    check(with_header(http, "x-custom", "a b c"), signed_at(request))


def test_repeated_headers_are_joined_in_order() -> None:
    request = sign(headers=[("X-Multi", "first"), ("X-Multi", " second  value ")])
    http = to_http(request)
    assert [v for k, v in http.headers if k == b"x-multi"] == [b"first", b" second  value "]
    now = signed_at(request)
    check(http, now)
    swapped = with_header(http, "x-multi", None)
    swapped = dataclasses.replace(
        swapped,
        headers=(*swapped.headers, (b"x-multi", b"second value"), (b"x-multi", b"first")),
    )
    with pytest.raises(InvalidSignatureException):
        check(swapped, now)


def test_host_with_a_port_is_signed_with_the_port() -> None:
    request = sign(url="http://127.0.0.1:8443/")
    http = to_http(request)
    assert header(http, "host") == "127.0.0.1:8443"
    check(http, signed_at(request))
    with pytest.raises(InvalidSignatureException):
        check(with_header(http, "host", "127.0.0.1"), signed_at(request))


def test_method_is_signed(encrypt: tuple[HttpRequest, datetime]) -> None:
    http, now = encrypt
    with pytest.raises(InvalidSignatureException):
        check(dataclasses.replace(http, method="PUT"), now)
    with pytest.raises(InvalidSignatureException, match="not a valid token"):
        parse(dataclasses.replace(http, method="PO ST"), now=now)


# -- error messages --


def test_messages_never_carry_the_secret_signature_or_string_to_sign(
    encrypt: tuple[HttpRequest, datetime],
) -> None:
    http, now = encrypt
    good = parse(http, now=now)
    failures: list[KMSError] = []
    attempts = [
        lambda: check(http, now, secret="wrong"),
        lambda: check(dataclasses.replace(http, body=b"{}"), now),
        lambda: parse(http, now=now + timedelta(hours=1)),
        lambda: parse(with_auth(http, "/kms/", "/s3/"), now=now),
        lambda: parse(with_header(http, "x-amz-target", None), now=now),
    ]
    for attempt in attempts:
        with pytest.raises(KMSError) as caught:
            attempt()
        failures.append(caught.value)
    key = SigningKeyCache().signing_key(SECRET, good.date, good.region, good.service)
    forbidden = [
        SECRET,
        good.signature.hex(),
        hmac.new(key, good.string_to_sign, hashlib.sha256).hexdigest(),
        good.string_to_sign.decode(),
        good.string_to_sign.decode().splitlines()[-1],
    ]
    for failure in failures:
        for text in forbidden:
            assert text not in str(failure)
            assert text not in repr(failure)
    assert good.signature.hex() not in repr(good)


# -- the signing key cache --


def derive(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def test_cache_returns_the_derived_key() -> None:
    cache = SigningKeyCache()
    published = "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    assert cache.signing_key(AWS_SECRET, "20150830", "us-east-1", "iam").hex() == published
    assert cache.signing_key(AWS_SECRET, "20150830", "us-east-1", "iam").hex() == published
    assert cache.signing_key("s\u00e9cret", "20240229", "eu-west-1", "kms") == derive(
        "s\u00e9cret", "20240229", "eu-west-1", "kms"
    )
    assert len(cache) == 2


def test_cache_stays_bounded_and_still_derives_evicted_keys() -> None:
    cache = SigningKeyCache(max_entries=3)
    scopes = [(f"secret-{i}", "20240101", "eu-west-1", "kms") for i in range(10)]
    for scope in scopes:
        assert cache.signing_key(*scope) == derive(*scope)
        assert len(cache) <= 3
    assert len(cache) == 3
    assert cache.signing_key(*scopes[0]) == derive(*scopes[0])
    assert "secret-" not in repr(cache)


def test_cache_needs_room_for_one_key() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SigningKeyCache(max_entries=0)


def test_a_remembered_authorization_prefix_still_checks_every_signature(
    encrypt: tuple[HttpRequest, datetime],
) -> None:
    http, now = encrypt
    cache = SigningKeyCache()
    verify(check(http, now), SECRET, cache=cache)  # the prefix is now remembered
    signature = re.search(r"Signature=([0-9a-f]{64})", header(http, "authorization"))
    assert signature is not None
    original = signature.group(1)
    flipped = original[:-1] + ("0" if original[-1] != "0" else "1")
    signed = parse(with_auth(http, original, flipped), now=now)  # the remembered prefix
    with pytest.raises(InvalidSignatureException):
        verify(signed, SECRET, cache=cache)
    for garbage in ("Z" * 64, original.upper(), "g" * 64):
        with pytest.raises(IncompleteSignatureException):
            check(with_auth(http, original, garbage), now)
    not_ascii = with_header(
        http,
        "authorization",
        as_bytes(header(http, "authorization")[:-64]) + "é".encode("latin-1") * 64,
    )
    with pytest.raises(IncompleteSignatureException):
        check(not_ascii, now)


# -- the fast path for the usual request --

DEFAULTS = (timedelta(minutes=5), ("host", "x-amz-target"))


def test_the_usual_request_takes_the_fast_path_with_the_general_result(
    encrypt: tuple[HttpRequest, datetime],
) -> None:
    http, now = encrypt
    general = sigv4._parse_any(http, now, "kms", *DEFAULTS)  # remembers prefix and time
    usual = sigv4._parse_usual(http, now, "kms", *DEFAULTS)
    assert usual is not None
    assert usual == general
    assert parse(http, now=now) == general
    verify(usual, SECRET, cache=SigningKeyCache())


def test_a_session_request_takes_the_fast_path_with_the_general_result() -> None:
    request = sign(token="FwoGZXIvYXdzEXAMPLE")
    http, now = to_http(request), signed_at(request)
    general = sigv4._parse_any(http, now, "kms", *DEFAULTS)
    usual = sigv4._parse_usual(http, now, "kms", *DEFAULTS)
    assert usual is not None and usual == general
    verify(usual, SECRET, cache=SigningKeyCache())
    # The same token unsigned (dropped from SignedHeaders) is left to the
    # general path, which refuses it.
    unsigned = with_auth(http, ";x-amz-security-token", "")
    assert sigv4._parse_usual(unsigned, now, "kms", *DEFAULTS) is None
    with pytest.raises(IncompleteSignatureException):
        parse(unsigned, now=now)


@pytest.mark.parametrize(
    "change",
    [
        lambda http: dataclasses.replace(http, query_string=b"a=b"),
        lambda http: dataclasses.replace(
            http, headers=(*http.headers, (b"x-extra", b"1"), (b"x-extra", b"2"))
        ),
        lambda http: dataclasses.replace(http, headers=(*http.headers, (b"X-Extra", b"1"))),
        lambda http: with_header(http, "x-amz-security-token", "token"),
        lambda http: with_header(http, "x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        lambda http: with_header(http, "x-amz-target", None),
        lambda http: dataclasses.replace(http, method="P T"),
    ],
)
def test_anything_unusual_is_left_to_the_general_path(
    encrypt: tuple[HttpRequest, datetime], change: Any
) -> None:
    http, now = encrypt
    sigv4._parse_any(http, now, "kms", *DEFAULTS)
    assert sigv4._parse_usual(change(http), now, "kms", *DEFAULTS) is None


def test_the_fast_path_leaves_the_skew_edges_to_the_general_path(
    encrypt: tuple[HttpRequest, datetime],
) -> None:
    http, now = encrypt
    sigv4._parse_any(http, now, "kms", *DEFAULTS)
    edge = now + timedelta(minutes=5)
    assert sigv4._parse_usual(http, edge, "kms", *DEFAULTS) is None
    assert parse(http, now=edge).date == amz(now)[:8]  # the edge itself is accepted
    with pytest.raises(InvalidSignatureException, match="Signature expired"):
        parse(http, now=edge + timedelta(microseconds=1))


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 200, 5000])
def test_cache_mac_is_hmac_sha256_under_the_signing_key(size: int) -> None:
    cache = SigningKeyCache()
    message = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    for scope in [(SECRET, "20240101", "eu-west-1", "kms"), ("s\u00e9cret", "20240229", "x", "y")]:
        expected = hmac.new(derive(*scope), message, hashlib.sha256).digest()
        assert cache.mac(*scope, message) == expected
        assert cache.mac(*scope, message) == expected  # the cached pads are not consumed
