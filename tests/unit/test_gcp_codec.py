"""The Cloud KMS door's wire, without a server: resource names, enums as
names or numbers, CRC32C fields, routes, google.rpc.Status codes."""

from __future__ import annotations

import pytest
from google_crc32c import value as crc32c

from keycask.errors import (
    AccessDeniedException,
    AlreadyExistsException,
    InvalidCiphertextException,
    KMSInvalidStateException,
    NotFoundException,
    Sealed,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.service.doors import gcp_codec as codec
from keycask.service.doors.gcp_kms import Unauthenticated, error_body, route_of, status_of

KEY = "/v1/projects/my-project/locations/global/keyRings/r1/cryptoKeys/k1"


def test_routes_name_the_method_and_the_ids() -> None:
    found = route_of("POST", (KEY + ":encrypt").encode())
    assert found.route is not None and found.route.name == "GcpKms.Encrypt"
    assert found.params == {
        "project": "my-project",
        "location": "global",
        "ring": "r1",
        "key": "k1",
    }
    version = route_of("POST", (KEY + "/cryptoKeyVersions/3:asymmetricSign").encode())
    assert version.route is not None and version.params["version"] == "3"
    assert route_of("PUT", KEY.encode()).route is None
    assert route_of("GET", (KEY + ":").encode()).route is None
    assert route_of("GET", b"/v1/projects/p/things/x").route is None


@pytest.mark.parametrize(
    "params",
    [
        {"project": "UPPER-case", "location": "global"},
        {"project": "short", "location": "global"},
        {"project": "my-project", "location": "Global"},
        {"project": "my-project", "location": "global", "ring": "a.b"},
        {"project": "my-project", "location": "global", "ring": "x" * 64},
        {"project": "my-project", "location": "global", "ring": "..", "key": "k"},
    ],
)
def test_malformed_names_are_invalid_argument(params: dict[str, str]) -> None:
    with pytest.raises(ValidationException, match="malformed"):
        codec.key_name({"ring": "r", "key": "k", **params})


def test_enums_as_numbers_or_names() -> None:
    doc = {"purpose": 5, "versionTemplate": {"algorithm": "EC_SIGN_P256_SHA256"}}
    made = codec.create_key(
        {"project": "my-project", "location": "global", "ring": "r"}, {"cryptoKeyId": ["k"]}, doc
    )
    assert (made.purpose, made.algorithm) == ("ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256")
    with pytest.raises(ValidationException):
        codec.create_key(
            {"project": "my-project", "location": "global", "ring": "r"},
            {"cryptoKeyId": ["k"]},
            {"purpose": 1234},
        )


def test_crc32c_fields_are_checked_and_reported() -> None:
    params = {"project": "my-project", "location": "global", "ring": "r", "key": "k"}
    good = codec.encrypt(params, {}, {"plaintext": "aGk=", "plaintextCrc32c": str(crc32c(b"hi"))})
    assert good.plaintext == b"hi" and good.verified == (True, False)
    with pytest.raises(ValidationException, match="checksum in field plaintext_crc32c"):
        codec.encrypt(params, {}, {"plaintext": "aGk=", "plaintextCrc32c": "1"})
    with pytest.raises(ValidationException):
        codec.encrypt(params, {}, {"plaintext": "A" * (2 * codec.MAX_PLAINTEXT)})


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (ValidationException("x"), 400, "INVALID_ARGUMENT"),
        (InvalidCiphertextException("x"), 400, "INVALID_ARGUMENT"),
        (KMSInvalidStateException("x"), 400, "FAILED_PRECONDITION"),
        (Unauthenticated("x"), 401, "UNAUTHENTICATED"),
        (AccessDeniedException("x"), 403, "PERMISSION_DENIED"),
        (NotFoundException("x"), 404, "NOT_FOUND"),
        (AlreadyExistsException("x"), 409, "ALREADY_EXISTS"),
        (UnsupportedOperationException("x"), 501, "UNIMPLEMENTED"),
        (Sealed(), 503, "UNAVAILABLE"),
    ],
)
def test_errors_are_google_rpc_status(error: Exception, code: int, status: str) -> None:
    assert status_of(error) == (code, status)  # type: ignore[arg-type]
    body = error_body(error)  # type: ignore[arg-type]
    assert f'"code":{code}'.encode() in body and f'"status":"{status}"'.encode() in body
