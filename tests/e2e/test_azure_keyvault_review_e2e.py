"""Findings of the attacker review of the Azure Key Vault door, kept as
regression tests: the backup key's alias could be taken through a Vault
Transit mount named "azure" (and so every later backup's private keys
read), and a backup blob became a usable key for anyone allowed to make
keys under names of their own."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
import requests
from tests.e2e.test_azure_keyvault_e2e import TlsServer, _keys, _records, _tls_server
from tests.e2e.test_gcp_kms_e2e import _token, _user


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    srv = _tls_server(tmp_path_factory.mktemp("azure-review"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin_token(server: TlsServer) -> str:
    return _token(server, _user(server, ["kms:*", "keycask:RestoreKeyVaultBackup"]))


_DIGEST = b'{"alg":"ES256","value":"' + b"A" * 43 + b'"}'


def _vault(server: TlsServer, token: str, method: str, path: str, body: Any = None) -> Any:
    return requests.request(
        method,
        server.endpoint + path,
        json=body,
        timeout=30,
        headers={"X-Vault-Token": token},
        verify=str(server.cert),
    )


def _send(
    server: TlsServer, method: str, path: str, body: bytes, token: str, *, host: str | None = None
) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if host:
        headers["Host"] = host
    reply = requests.request(
        method, server.endpoint + path, data=body, headers=headers,
        verify=str(server.cert), timeout=30,
    )  # fmt: skip
    return reply.status_code, reply.text


def test_no_vault_mount_can_take_another_doors_alias_prefix(
    server: TlsServer, admin_token: str
) -> None:
    attacker = _user(
        server,
        ["keycask:EnableVaultMount", "kms:CreateKey", "kms:CreateAlias", "kms:Decrypt"],
    )
    token = _token(server, attacker)
    for mount in ("azure", "aws", "gcp", "azure/orders"):
        reply = _vault(server, token, "POST", f"/v1/sys/mounts/{mount}", {"type": "transit"})
        assert reply.status_code == 400 and "reserved" in reply.text, (mount, reply.text)
    aliases = {a["AliasName"] for a in server.aws().list_aliases()["Aliases"]}
    assert not any(a.startswith("alias/azure/") for a in aliases)
    # The backup key is keycask's own: its policy lets no one use it.
    victim = _keys(server, admin_token)
    name = f"victim-{uuid.uuid4().hex[:6]}"
    victim.create_ec_key(name)
    victim.backup_key(name)
    with pytest.raises(botocore.exceptions.ClientError, match="explicit deny"):
        server.aws().describe_key(KeyId="alias/azure/_backup")


def test_restoring_a_blob_needs_its_own_right_and_keeps_the_key_policy(
    server: TlsServer, admin_token: str
) -> None:
    victim = _keys(server, admin_token)
    name = f"locked-{uuid.uuid4().hex[:6]}"
    victim.create_ec_key(name)
    blob = victim.backup_key(name)
    # May make keys and sign with keys under its own vault's names only.
    who = _user(
        server,
        ["kms:CreateKey", "kms:ImportKeyMaterial", "kms:CreateAlias", "kms:DescribeKey"],
    )
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow", "Action": "kms:Sign", "Resource": "*",
            "Condition": {"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/azure/mine/*"}},
        }],
    }  # fmt: skip
    path = server.data_dir.parent / f"{who}-sign.json"
    path.write_text(json.dumps(policy))
    server.cli("principals", "put-policy", who, "--policy-name", "sign", "--file", str(path))
    token = _token(server, who)
    assert _send(server, "POST", f"/keys/{name}//sign?api-version=7.5", _DIGEST, token)[0] == 403
    value = base64.urlsafe_b64encode(blob).rstrip(b"=").decode()
    body = json.dumps({"value": value}).encode()
    status, text = _send(
        server, "POST", "/keys/restore?api-version=7.5", body, token, host="mine.example.com"
    )
    assert status == 403, text
    refused = [r for r in _records(server) if r["operation"] == "AzureKeyVault.RestoreKey"][-1]
    assert refused["decision"] == "deny"
    status, _ = _send(
        server, "POST", f"/keys/{name}//sign?api-version=7.5", _DIGEST, token,
        host="mine.example.com",
    )  # fmt: skip
    assert status == 404  # nothing was restored
    # One who holds the right restores it, and the key policy comes back
    # with it (here the default one, naming the account).
    status, text = _send(
        server, "POST", "/keys/restore?api-version=7.5", body, admin_token,
        host="elsewhere.example.com",
    )  # fmt: skip
    assert status == 200, text


def test_secrets_and_certificates_get_key_vaults_answer(
    server: TlsServer, admin_token: str
) -> None:
    # A SecretClient or CertificateClient pointed at keycask gets Key Vault's
    # error body saying what is served, audited, not another door's answer.
    for path in (
        "/secrets/db-password?api-version=7.5",
        "/deletedsecrets?api-version=7.5",
        "/certificates/web?api-version=7.5",
    ):
        status, text = _send(server, "GET", path, b"", admin_token)
        assert status == 501, (path, text)
        assert json.loads(text)["error"]["code"] == "NotImplemented"
        assert "serves keys only" in json.loads(text)["error"]["message"]
    operations = {r["operation"] for r in _records(server) if r.get("door") == "azure-keyvault"}
    assert {"AzureKeyVault.SecretsEndpoint", "AzureKeyVault.CertificatesEndpoint"} <= operations
