"""The Azure Key Vault door's pure parts: routes, the challenge's resource
and the vault a Host names, api-version, and Key Vault's statuses for
every error keycask raises (never a 500 but for an internal error)."""

from __future__ import annotations

import pytest

from keycask import errors
from keycask.errors import KMSError, KMSInternalException, ValidationException
from keycask.service.doors import azure_codec as codec
from keycask.service.doors.azure_keyvault import match, resource_of, status_of, vault_of

V = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/keys", ("GetKeys", "", "")),
        ("GET", "/keys/", ("GetKeys", "", "")),
        ("POST", "/keys/k/create", ("CreateKey", "k", "")),
        ("PUT", "/keys/k", ("ImportKey", "k", "")),
        ("GET", "/keys/k", ("GetKey", "k", "")),
        ("GET", "/keys/k/", ("GetKey", "k", "")),
        ("GET", f"/keys/k/{V}", ("GetKey", "k", V)),
        ("PATCH", f"/keys/k/{V}", ("UpdateKey", "k", V)),
        ("PATCH", "/keys/k/", ("UpdateKey", "k", "")),
        ("GET", "/keys/k/versions", ("GetKeyVersions", "k", "")),
        ("POST", "/keys/k/rotate", ("RotateKey", "k", "")),
        ("POST", f"/keys/k/{V}/sign", ("Sign", "k", V)),
        ("POST", f"/keys/k/{V}/wrapkey", ("WrapKey", "k", V)),
        ("POST", "/keys/k//unwrapkey", ("UnwrapKey", "k", "")),
        ("DELETE", "/keys/k", ("DeleteKey", "k", "")),
        ("GET", "/deletedkeys", ("GetDeletedKeys", "", "")),
        ("GET", "/deletedkeys/k", ("GetDeletedKey", "k", "")),
        ("DELETE", "/deletedkeys/k", ("PurgeDeletedKey", "k", "")),
        ("POST", "/deletedkeys/k/recover", ("RecoverDeletedKey", "k", "")),
        ("POST", "/rng", ("GetRandomBytes", "", "")),
        ("GET", "/keys/k/rotationpolicy", ("GetKeyRotationPolicy", "k", "")),
        ("PUT", "/keys/k/rotationpolicy", ("UpdateKeyRotationPolicy", "k", "")),
        ("POST", "/keys/k/backup", ("BackupKey", "k", "")),
        ("POST", "/keys/restore", ("RestoreKey", "", "")),
        ("POST", f"/keys/k/{V}/release", ("Release", "k", V)),
    ],
)
def test_routes(method: str, path: str, expected: tuple[str, str, str]) -> None:
    found = match(method, path)
    assert (found.name, found.key, found.version) == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/keys"),
        ("GET", f"/keys/k/{V}/sign"),
        ("POST", f"/keys/k/{V}/nowhere"),
        ("POST", "/keys/a/b/c/d"),
        ("GET", "/rng"),
        ("POST", "/rng/x"),
        ("GET", "/keysx"),
        ("POST", "/deletedkeys/k/purge"),
    ],
)
def test_unknown_routes(method: str, path: str) -> None:
    assert match(method, path).name is None


@pytest.mark.parametrize(
    ("host", "resource", "vault"),
    [
        ("127.0.0.1:8443", "https://0.0.1:8443", "default"),
        ("kms.example.com:443", "https://example.com:443", "kms"),
        ("kms.example.com", "https://example.com", "kms"),
        ("localhost:9567", "https://localhost:9567", "default"),
        ("[::1]:9567", "https://[::1]:9567", "default"),
        ("[::1]", "https://[::1]", "default"),
    ],
)
def test_the_challenge_resource_and_the_vault(host: str, resource: str, vault: str) -> None:
    assert resource_of(host) == resource
    assert vault_of(host) == vault


@pytest.mark.parametrize("version", ["7.4", "7.5", "7.6", "7.10", "7.6-preview.1"])
def test_api_versions_served(version: str) -> None:
    assert codec.check_api_version({"api-version": [version]}) == version


@pytest.mark.parametrize("version", ["", "7.3", "7.0", "8.0", "2016-10-01", "7", "7.5x", "07.5.1"])
def test_api_versions_refused(version: str) -> None:
    with pytest.raises(ValidationException):
        codec.check_api_version({"api-version": [version]})


def _all_errors() -> list[type[KMSError]]:
    found = []
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, KMSError):
            found.append(value)
    return found


@pytest.mark.parametrize("error", _all_errors(), ids=lambda e: e.__name__)
def test_no_error_but_an_internal_one_is_a_500(error: type[KMSError]) -> None:
    try:
        instance = error("x")
    except TypeError:
        pytest.skip("takes other arguments")
    status, code = status_of(instance)
    if issubclass(error, KMSInternalException):
        assert (status, code) == (500, "InternalServerError")
    else:
        assert status < 500 or status in {501, 503}, (error, status)
        assert code != "InternalServerError"
