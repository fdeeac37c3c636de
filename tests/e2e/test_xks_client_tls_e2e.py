"""keycask as an XKS client over HTTPS: B serves its XKS door with a
certificate for localhost from a test CA; A trusts that CA through
KEYCASK_XKS_PROXY_CA_FILE and reaches https://localhost at B's port through
KEYCASK_XKS_PROXY_CONNECT_TO. The certificate is verified for the store's
XksProxyUriEndpoint name, whatever address it is reached at."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.e2e.test_tls import TlsServer, make_pki

from conftest import Server

PREFIX = "/tls-b"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, TlsServer]]:
    root = tmp_path_factory.mktemp("xksc-tls")
    pki = make_pki(root / "pki")
    b = TlsServer(root / "b", pki=pki, extra_args=["--xks-path-prefix", PREFIX]).start()
    target = f"https://127.0.0.1:{b.port}"
    a = Server(
        root / "a",
        env_extra={
            "KEYCASK_XKS_PROXY_CONNECT_TO": f"localhost={target},wrong-name.test={target}",
            "KEYCASK_XKS_PROXY_CA_FILE": str(pki.ca),
            "KEYCASK_XKS_PROXY_TIMEOUT_MS": "3000",
        },
    ).start()
    yield a, b
    for server in (a, b):
        if server.proc is not None:
            server.stop(signal.SIGKILL)


def _args(cred: dict[str, str], endpoint: str) -> dict[str, Any]:
    return {
        "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
        "XksProxyUriEndpoint": endpoint,
        "XksProxyUriPath": PREFIX + "/kms/xks/v1",
        "XksProxyConnectivity": "PUBLIC_ENDPOINT",
        "XksProxyAuthenticationCredential": {
            "AccessKeyId": cred["AccessKeyId"],
            "RawSecretAccessKey": cred["SecretAccessKey"],
        },
    }


def test_https_proxy_with_a_verified_certificate(pair: tuple[Server, TlsServer]) -> None:
    a, b = pair
    assert b.pki is not None
    cred = json.loads(
        b.cli(
            "xks", "credentials", "create", "keycask-a", "--json",
            "--endpoint-url", b.endpoint, "--ca-file", str(b.pki.ca),
        ).stdout
    )  # fmt: skip
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": cred["Arn"]},
                "Action": ["kms:DescribeKey", "kms:Encrypt", "kms:Decrypt"],
                "Resource": "*",
            },
        ],
    }
    external = b.tls_client().create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    kms = a.client()
    # A certificate that does not name the endpoint fails the check.
    with pytest.raises(ClientError) as error:
        kms.create_custom_key_store(
            CustomKeyStoreName="wrong-name", **_args(cred, "https://wrong-name.test")
        )
    assert error.value.response["Error"]["Code"] == "XksProxyUriUnreachableException"
    assert "XKS_PROXY_INVALID_TLS_CONFIGURATION" in error.value.response["Error"]["Message"]
    store_id = kms.create_custom_key_store(
        CustomKeyStoreName="tls", **_args(cred, "https://localhost")
    )["CustomKeyStoreId"]
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    key_id = kms.create_key(
        CustomKeyStoreId=store_id, Origin="EXTERNAL_KEY_STORE", XksKeyId=external
    )["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"over https")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over https"
