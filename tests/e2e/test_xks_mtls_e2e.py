"""The XKS door's mutual TLS (``--xks-client-ca``, ``--xks-client-subject``)
against a real HTTPS server: XKS requests need a client certificate of that
CA with that subject; the other doors on the same listener do not ask."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.e2e.test_tls import Pki, TlsServer, make_pki

PATH = "/kms/xks/v1/health"
BODY = json.dumps({"requestMetadata": {"kmsRequestId": "m", "kmsOperation": "KmsHealthCheck"}})


def _server(tmp_path: Path, pki: Pki, *subject: str) -> TlsServer:
    args = ["--xks-client-ca", str(pki.ca)]
    if subject:
        args += ["--xks-client-subject", subject[0]]
    return TlsServer(tmp_path / f"data-{uuid.uuid4().hex[:6]}", pki=pki, extra_args=args).start()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("xks-pki"))


@pytest.fixture
def servers(tmp_path: Path, pki: Pki) -> Iterator[tuple[TlsServer, TlsServer]]:
    # make_pki's client certificate has the common name "a client".
    right = _server(tmp_path, pki, "a client")
    wrong = _server(tmp_path, pki, "cks.kms.eu-west-1.amazonaws.com")
    yield right, wrong
    for srv in (right, wrong):
        if srv.proc is not None:
            srv.stop(signal.SIGKILL)


def _health(server: TlsServer, pki: Pki, cred: dict[str, str], *, cert: bool) -> requests.Response:
    url = server.endpoint + PATH
    request = AWSRequest(
        method="POST", url=url, data=BODY.encode(), headers={"Content-Type": "application/json"}
    )
    SigV4Auth(
        Credentials(cred["AccessKeyId"], cred["SecretAccessKey"]), "kms-xks-proxy", "us-east-1"
    ).add_auth(request)
    return requests.post(
        url,
        data=BODY.encode(),
        headers=dict(request.headers),
        verify=str(pki.ca),
        cert=(str(pki.client_cert), str(pki.client_key)) if cert else None,
        timeout=30,
    )


def test_xks_requests_need_the_client_certificate_and_subject(
    servers: tuple[TlsServer, TlsServer], pki: Pki
) -> None:
    right, _ = servers
    for server in servers:
        out = server.cli(
            "xks",
            "credentials",
            "create",
            "awskms",
            "--json",
            "--endpoint-url",
            server.endpoint,
            "--ca-file",
            str(pki.ca),
        )
        cred = json.loads(out.stdout)
        without = _health(server, pki, cred, cert=False)
        assert without.status_code == 401
        assert without.json()["errorName"] == "AuthenticationFailedException"
        with_cert = _health(server, pki, cred, cert=True)
        if server is right:
            assert with_cert.status_code == 200, with_cert.text
        else:
            assert with_cert.status_code == 401  # the subject is not the configured one
            assert "subject" in with_cert.json()["errorMessage"]
        # The AWS door on the same listener asks for no certificate.
        assert server.tls_client(client_cert=False).list_keys()["Keys"] is not None


def test_a_certificate_of_another_ca_fails_the_handshake(
    tmp_path: Path, pki: Pki, servers: tuple[TlsServer, TlsServer]
) -> None:
    other = make_pki(tmp_path / "other-pki")
    right, _ = servers
    # Under TLS 1.3 the server's refusal of the certificate may reach the
    # client as an alert or as a reset of the connection: both are ConnectionError.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            right.endpoint + PATH,
            data=BODY,
            verify=str(pki.ca),
            cert=(str(other.client_cert), str(other.client_key)),
            timeout=30,
        )
