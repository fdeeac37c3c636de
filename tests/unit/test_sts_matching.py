"""The STS door's pieces that need no server: how the Doors registry matches
untargeted requests by content type, and which STS code and status each of
keycask's errors is answered with (tests/e2e/test_sts_door.py drives the
door itself)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keycask.auth.sigv4 import HttpRequest
from keycask.errors import (
    AccessDeniedException,
    DependencyTimeoutException,
    ExpiredTokenException,
    IDPCommunicationErrorException,
    IDPRejectedClaimException,
    IncompleteSignatureException,
    InvalidIdentityTokenException,
    InvalidSignatureException,
    KMSInternalException,
    MissingAuthenticationTokenException,
    PackedPolicyTooLargeException,
    Sealed,
    UnknownOperationException,
    UnrecognizedClientException,
    ValidationException,
)
from keycask.http.awsquery import QueryCodec
from keycask.service.core.call import Call
from keycask.service.core.handlers.sts import OPERATIONS
from keycask.service.door import Doors
from keycask.service.doors.sts import FORM, ExpiredSessionToken, wire_error


class _Door:
    def __init__(
        self, name: str, prefixes: tuple[str, ...] = (), media_types: tuple[bytes, ...] = ()
    ) -> None:
        self.name = name
        self.prefixes = prefixes
        self.media_types = media_types

    def operation(self, target: str) -> str | None:
        return target.rpartition(".")[2] or None


def _request(headers: list[tuple[bytes, bytes]]) -> HttpRequest:
    return HttpRequest("POST", b"/", b"", tuple(headers), b"")


def _call() -> Call:
    return Call(request_id="r", time=datetime.now(UTC), source_ip=None)


def _doors() -> tuple[Doors, _Door, _Door]:
    kms, sts = _Door("kms", ("TrentService.",)), _Door("sts", media_types=(FORM,))
    doors = Doors(kms)  # type: ignore[arg-type]
    doors.add(sts)  # type: ignore[arg-type]
    return doors, kms, sts


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/x-www-form-urlencoded; charset=utf-8",
        b"application/x-www-form-urlencoded",
        b"Application/X-WWW-Form-Urlencoded ; charset=UTF-8",
    ],
)
def test_an_untargeted_form_goes_to_the_door_that_claims_it(content_type: bytes) -> None:
    doors, _, sts = _doors()
    call = _call()
    assert doors.match(call, _request([(b"content-type", content_type)])) is sts
    assert call.operation is None  # the door names it, from the body


@pytest.mark.parametrize(
    "headers",
    [
        # A target decides, whatever the content type.
        [(b"x-amz-target", b"TrentService.ListKeys"), (b"content-type", FORM)],
        [(b"x-amz-target", b"Nobody.Knows"), (b"content-type", FORM)],
        [(b"x-amz-target", b""), (b"content-type", FORM)],
        # No target and no claimed content type: the fallback, as before.
        [(b"content-type", b"application/x-amz-json-1.1")],
        [(b"content-type", b"application/x-www-form-urlencodedX")],
        [],
    ],
)
def test_everything_else_is_matched_as_before(headers: list[tuple[bytes, bytes]]) -> None:
    doors, kms, _ = _doors()
    assert doors.match(_call(), _request(headers)) is kms


def test_two_doors_cannot_claim_one_content_type() -> None:
    doors, _, _ = _doors()
    with pytest.raises(ValueError, match="two doors"):
        doors.add(_Door("other", media_types=(FORM,)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (ValidationException("x"), "ValidationError", 400),
        (UnknownOperationException("x"), "InvalidAction", 400),
        (MissingAuthenticationTokenException("x"), "MissingAuthenticationToken", 403),
        (IncompleteSignatureException("x"), "IncompleteSignature", 400),
        (InvalidSignatureException("x"), "SignatureDoesNotMatch", 403),
        (UnrecognizedClientException("x"), "InvalidClientTokenId", 403),
        (ExpiredSessionToken("x"), "ExpiredToken", 403),
        (ExpiredTokenException("x"), "ExpiredTokenException", 400),
        (AccessDeniedException("x"), "AccessDenied", 403),
        (InvalidIdentityTokenException("x"), "InvalidIdentityToken", 400),
        (IDPRejectedClaimException("x"), "IDPRejectedClaim", 403),
        (IDPCommunicationErrorException("x"), "IDPCommunicationError", 400),
        (PackedPolicyTooLargeException("x"), "PackedPolicyTooLarge", 400),
        (Sealed(), "ServiceUnavailable", 503),
        (DependencyTimeoutException("x"), "ServiceUnavailable", 503),
        (KMSInternalException("x"), "InternalFailure", 500),
    ],
)
def test_errors_are_answered_with_sts_codes(error: Exception, code: str, status: int) -> None:
    assert wire_error(error) == (code, status)  # type: ignore[arg-type]


def test_the_models_codes_are_the_error_classes_codes() -> None:
    """The STS errors keycask raises answer what botocore's model calls them."""
    from botocore.loaders import Loader

    shapes = Loader().load_service_model("sts", "service-2")["shapes"]
    for cls, shape in [
        (InvalidIdentityTokenException, "InvalidIdentityTokenException"),
        (IDPRejectedClaimException, "IDPRejectedClaimException"),
        (IDPCommunicationErrorException, "IDPCommunicationErrorException"),
        (PackedPolicyTooLargeException, "PackedPolicyTooLargeException"),
        (ExpiredTokenException, "ExpiredTokenException"),
    ]:
        model = shapes[shape]["error"]
        assert wire_error(cls("x")) == (model["code"], model["httpStatusCode"]), cls


def test_every_bound_operation_is_in_the_model_with_its_typed_request() -> None:
    codec = QueryCodec.load()
    assert set(OPERATIONS) == {"GetCallerIdentity", "AssumeRole", "AssumeRoleWithWebIdentity"}
    assert set(OPERATIONS) <= codec.operation_names()
    assert "AssumeRoleWithWebIdentity" in codec.unsigned_operations()
    assert "AssumeRole" not in codec.unsigned_operations()


class _PathDoor(_Door):
    def __init__(self, name: str, path_prefixes: tuple[bytes, ...]) -> None:
        super().__init__(name)
        self.path_prefixes = path_prefixes


@pytest.mark.parametrize("order", ["short first", "long first"])
def test_the_longest_path_claim_wins_whatever_order_doors_were_added(order: str) -> None:
    kms = _Door("kms", ("TrentService.",))
    vault, gcp = _PathDoor("vault", (b"/v1/",)), _PathDoor("gcp", (b"/v1/projects/",))
    doors = Doors(kms)  # type: ignore[arg-type]
    for door in (vault, gcp) if order == "short first" else (gcp, vault):
        doors.add(door)  # type: ignore[arg-type]

    def matched(path: bytes) -> object:
        return doors.match(_call(), HttpRequest("GET", path, b"", (), b""))

    assert matched(b"/v1/projects/p/locations/l/keyRings") is gcp
    assert matched(b"/v1/transit/keys/k") is vault
    assert matched(b"/v1/projectsx/keys") is vault
