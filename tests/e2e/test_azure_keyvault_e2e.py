"""The Azure Key Vault door (service/doors/azure_keyvault.py) driven by
Azure's own client, azure-keyvault-keys (KeyClient, CryptographyClient,
default settings), against a real server over TLS: the SDK's challenge
flow with keycask-issued bearer tokens, keys that are keycask keys (usable
from the AWS door), signatures and RSA-OAEP ciphertexts checked with
``cryptography``, Key Vault's errors for bad input, each audited."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from azure.core.credentials import AccessToken
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import (
    CryptographyClient,
)
from botocore.config import Config
from tests.conftest import Server

from keycask.crypto.x509 import self_signed_certificate


@dataclass
class TlsServer(Server):
    """A keycask --dev server on HTTPS with a self-signed certificate for
    127.0.0.1 and localhost (its CA: the certificate itself)."""

    cert: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        assert self.cert is not None
        context = ssl.create_default_context(cafile=str(self.cert))
        try:
            with urllib.request.urlopen(
                self.endpoint + "/healthz", timeout=1, context=context
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def aws(self) -> Any:
        akid, secret = self.credentials()
        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=akid,
            aws_secret_access_key=secret,
            verify=str(self.cert),
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    base = tmp_path_factory.mktemp("azure")
    cert_pem, key_pem = self_signed_certificate(["localhost"], ["127.0.0.1"])
    cert, key = base / "cert.pem", base / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    srv = TlsServer(
        base / "data",
        cert=cert,
        args=("--tls-cert", str(cert), "--tls-key", str(key)),
        env_extra={"KEYCASK_CACERT": str(cert)},
    ).start()
    yield srv
    srv.stop()


class _Token:
    """A keycask-issued bearer token as an azure-core TokenCredential."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def _user(server: TlsServer, actions: list[str] | None) -> str:
    name = f"az-{uuid.uuid4().hex[:8]}"
    server.cli("principals", "create", name, "--json")
    if actions is not None:
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        path = server.data_dir.parent / f"{name}.json"
        path.write_text(json.dumps(policy))
        server.cli("principals", "put-policy", name, "--policy-name", "p", "--file", str(path))
    return name


def _token(server: TlsServer, name: str) -> str:
    out = server.cli("principals", "token", "create", name, "--json").stdout
    return str(json.loads(out)["Token"])


def _keys(server: TlsServer, token: str) -> KeyClient:
    return KeyClient(server.endpoint, _Token(token), connection_verify=str(server.cert))


def _crypto(server: TlsServer, token: str, kid: str) -> CryptographyClient:
    return CryptographyClient(kid, _Token(token), connection_verify=str(server.cert))


def _records(server: TlsServer) -> list[dict[str, Any]]:
    records = []
    for segment in sorted((server.data_dir / "audit").glob("*.jsonl")):
        records += [json.loads(line) for line in segment.read_text().splitlines() if line]
    return records


def _raw(
    server: TlsServer,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request as it is, outside the SDK."""
    assert server.cert is not None
    context = ssl.create_default_context(cafile=str(server.cert))
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(server.endpoint + path, data=body, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as reply:
            return reply.status, _lower(reply.headers), json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers), json.loads(error.read() or b"null")


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


@pytest.fixture(scope="module")
def admin_token(server: TlsServer) -> str:
    return _token(server, _user(server, ["kms:*"]))


@pytest.fixture(scope="module")
def keys(server: TlsServer, admin_token: str) -> KeyClient:
    return _keys(server, admin_token)


def _name() -> str:
    return f"key-{uuid.uuid4().hex[:10]}"


# -- slice 1: the door, its challenge, its errors --


def test_the_sdk_authenticates_by_the_challenge_with_default_settings(
    server: TlsServer, admin_token: str
) -> None:
    credential = _Token(admin_token)
    client = KeyClient(server.endpoint, credential, connection_verify=str(server.cert))
    key = client.create_ec_key(_name())
    assert key.key_type == "EC"
    # The SDK asked for a token for the resource the challenge named: the
    # Host minus its first label.
    assert credential.scopes == [(f"https://0.0.1:{server.port}/.default",)]


def test_no_token_is_401_with_the_challenge_and_audited(server: TlsServer) -> None:
    status, headers, body = _raw(server, "GET", "/keys?api-version=7.5")
    assert status == 401
    assert body["error"]["code"] == "Unauthorized"
    challenge = headers["www-authenticate"]
    assert challenge == (
        f'Bearer authorization="https://127.0.0.1:{server.port}/keycask", '
        f'resource="https://0.0.1:{server.port}"'
    )
    status, headers, body = _raw(server, "GET", "/keys?api-version=7.5", token="kct.nope")
    assert status == 401 and "www-authenticate" in headers
    records = [r for r in _records(server) if r.get("operation") == "AzureKeyVault.GetKeys"]
    assert [r["door"] for r in records[-2:]] == ["azure-keyvault", "azure-keyvault"]
    assert all(r["error_code"] == "AccessDeniedException" for r in records[-2:])


@pytest.mark.parametrize("version", ["", "7.3", "2016-10-01", "8.0", "7.x", "7.4.1"])
def test_a_bad_api_version_is_bad_parameter(
    server: TlsServer, admin_token: str, version: str
) -> None:
    query = f"?api-version={version}" if version else ""
    status, _, body = _raw(server, "GET", "/keys" + query, token=admin_token)
    assert status == 400
    assert body["error"]["code"] == "BadParameter"
    assert "7.4" in body["error"]["message"]


@pytest.mark.parametrize("version", ["7.4", "7.5", "7.6", "7.6-preview.2"])
def test_api_versions_from_7_4_are_served(
    server: TlsServer, admin_token: str, version: str
) -> None:
    status, _, body = _raw(server, "GET", f"/keys?api-version={version}", token=admin_token)
    assert status == 200, body
    assert isinstance(body["value"], list)


def test_plain_http_is_refused(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data").start()
    try:
        token = _token(srv, _user(srv, ["kms:*"]))  # type: ignore[arg-type]
        request = urllib.request.Request(
            srv.endpoint + "/keys?api-version=7.5",
            headers={"Authorization": f"Bearer {token}"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 403
        body = json.loads(caught.value.read())
        assert body["error"]["code"] == "Forbidden"
        assert "HTTPS only" in body["error"]["message"]
    finally:
        srv.stop()
