"""The XKS client's reading of a proxy's answer: each failure's
ConnectionErrorCode, and a proxy's words kept out of keycask's messages."""

from __future__ import annotations

import json

import pytest

from keycask.xksclient import (
    AccessDenied,
    BadCredentials,
    InvalidConfiguration,
    InvalidResponse,
    ProxyRefused,
    XksProxyError,
)
from keycask.xksclient.client import _answer


def _doc(name: str) -> bytes:
    return json.dumps({"errorName": name, "errorMessage": "m"}).encode()


@pytest.mark.parametrize(
    ("status", "raw", "kind", "code"),
    [
        (401, _doc("AuthenticationFailedException"), BadCredentials, "INVALID_CREDENTIALS"),
        (403, _doc("AccessDeniedException"), AccessDenied, "XKS_PROXY_ACCESS_DENIED"),
        (
            404,
            _doc("InvalidUriPathException"),
            InvalidConfiguration,
            "XKS_PROXY_INVALID_CONFIGURATION",
        ),
        (200, b"not json", InvalidResponse, "XKS_PROXY_INVALID_RESPONSE"),
        (200, b"[1]", InvalidResponse, "XKS_PROXY_INVALID_RESPONSE"),
        (500, b"{}", InvalidResponse, "XKS_PROXY_INVALID_RESPONSE"),
        (404, _doc("KeyNotFoundException"), ProxyRefused, "XKS_PROXY_INVALID_RESPONSE"),
    ],
)
def test_answers(status: int, raw: bytes, kind: type[XksProxyError], code: str) -> None:
    with pytest.raises(kind) as error:
        _answer(status, raw)
    assert error.value.code == code


def test_a_proxys_error_name_keeps_its_letters_only() -> None:
    name = "Bad\r\nName<script>" + "x" * 100
    with pytest.raises(ProxyRefused) as error:
        _answer(400, _doc(name))
    # At most 64 characters are read, then only their ASCII letters and digits kept.
    assert error.value.error_name == "BadNamescript" + "x" * (64 - len("Bad\r\nName<script>"))
    assert _answer(200, b'{"plaintext": "AA=="}') == {"plaintext": "AA=="}
