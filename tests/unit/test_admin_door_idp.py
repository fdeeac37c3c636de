"""The admin door's identity provider operations (service/doors/admin.py,
IDP_WIRE): each body decoded into the core's typed request or refused for
its first fault; typed results encoded to the exact JSON of the answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keycask.errors import KMSError, ValidationException
from keycask.service.core.handlers.identity_providers import OPERATIONS
from keycask.service.core.idp_requests import (
    CreateIdentityProviderRequest,
    CreateIdentityProviderResult,
    GetIdentityProviderResult,
    IdentityProviderRequest,
    IdentityProviderSummary,
    ListIdentityProvidersRequest,
    ListIdentityProvidersResult,
)
from keycask.service.doors.admin import IDP_WIRE, decode

URL = "https://idp.example.com/ci"
ARN = "arn:aws:iam::111122223333:oidc-provider/idp.example.com/ci"
JWKS = '{"keys": []}'  # the door takes it as text; the store parses it


def _decode(op: str, body: dict[str, Any]) -> object:
    return decode("KeycaskAdmin." + op, IDP_WIRE[op], json.dumps(body).encode())


@pytest.mark.parametrize(
    ("op", "body", "expected"),
    [
        (
            "CreateIdentityProvider",
            {"Url": URL, "Audiences": ["b", "a", "b"], "Jwks": JWKS},
            CreateIdentityProviderRequest(URL, ("b", "a"), JWKS),
        ),
        (
            "CreateIdentityProvider",
            {"Url": URL, "Audiences": ["a"], "JwksUrl": "https://idp/jwks", "Account": ""},
            CreateIdentityProviderRequest(URL, ("a",), None, "https://idp/jwks"),
        ),
        (
            "CreateIdentityProvider",
            {"Url": URL, "Audiences": ["a"], "Jwks": JWKS, "JwksUrl": None,
             "Account": "111122223333"},
            CreateIdentityProviderRequest(URL, ("a",), JWKS, None, "111122223333"),
        ),
        ("ListIdentityProviders", {}, ListIdentityProvidersRequest()),
        ("GetIdentityProvider", {"Arn": ARN}, IdentityProviderRequest(ARN)),
        ("DeleteIdentityProvider", {"Arn": ARN}, IdentityProviderRequest(ARN)),
    ],
)  # fmt: skip
def test_good_bodies(op: str, body: dict[str, Any], expected: object) -> None:
    decoded = _decode(op, body)
    assert decoded == expected
    assert isinstance(decoded, OPERATIONS[op].request)


def test_every_operation_has_a_wire_shape() -> None:
    assert IDP_WIRE.keys() == OPERATIONS.keys()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Audiences": ["a"], "Jwks": JWKS}, "requires Url"),
        ({"Url": URL, "Audiences": ["a"], "Jwks": JWKS, "Tags": {}}, "'Tags' is not a member"),
        ({"Url": 5, "Audiences": ["a"], "Jwks": JWKS}, "Url must be a string"),
        ({"Url": "https://h:1", "Audiences": ["a"], "Jwks": JWKS}, "no port"),
        ({"Url": URL, "Audiences": "a", "Jwks": JWKS}, "list of client ids"),
        ({"Url": URL, "Audiences": [], "Jwks": JWKS}, "at least one"),
        ({"Url": URL, "Audiences": ["a b"], "Jwks": JWKS}, "without spaces"),
        ({"Url": URL, "Audiences": ["a"]}, "either Jwks or JwksUrl"),
        ({"Url": URL, "Audiences": ["a"], "Jwks": JWKS, "JwksUrl": "https://x"}, "either"),
        ({"Url": URL, "Audiences": ["a"], "Jwks": {"keys": []}}, "Jwks must be a string"),
        ({"Url": URL, "Audiences": ["a"], "Jwks": JWKS, "Account": "1"}, "12 digits"),
    ],
)
def test_bad_bodies(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationException) as caught:
        _decode("CreateIdentityProvider", body)
    assert message in caught.value.message


def test_bad_arns() -> None:
    for arn in ("", "x", URL, ARN.replace("111122223333", "1"), ARN + ":443", ARN + "?x"):
        with pytest.raises(KMSError):
            _decode("GetIdentityProvider", {"Arn": arn})


def test_results() -> None:
    encode = {op: wire.encode for op, wire in IDP_WIRE.items()}
    assert encode["CreateIdentityProvider"](CreateIdentityProviderResult(ARN)) == {"Arn": ARN}
    listed = ListIdentityProvidersResult((IdentityProviderSummary(ARN, URL, ("a", "b")),))
    assert encode["ListIdentityProviders"](listed) == {
        "IdentityProviders": [{"Arn": ARN, "Url": URL, "Audiences": ["a", "b"]}]
    }
    shown = GetIdentityProviderResult(ARN, URL, ("a",), JWKS, None, 0.0)
    assert encode["GetIdentityProvider"](shown) == {
        "Arn": ARN,
        "Url": URL,
        "Audiences": ["a"],
        "Jwks": JWKS,
        "CreateDate": "1970-01-01T00:00:00Z",
    }
    fetched = GetIdentityProviderResult(ARN, URL, ("a",), JWKS, "https://idp/jwks", 0.0)
    assert encode["GetIdentityProvider"](fetched)["JwksUrl"] == "https://idp/jwks"
    assert encode["DeleteIdentityProvider"](None) == {}
