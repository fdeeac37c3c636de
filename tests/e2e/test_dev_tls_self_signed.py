"""``keycask server --dev --tls-self-signed`` (``make run TLS=1``), end to end.

* The first start makes tls/cert.pem and an owner-only tls/key.pem in the
  data dir and says where the CA file is; boto3 trusting cert.pem works
  (by 127.0.0.1 and by localhost), boto3 trusting the system's CAs fails,
  plain HTTP to the port is not served, and the dev profile (endpoint_url
  and ca_bundle) serves the AWS CLI and ``keycask dev advance-clock`` as
  printed.
* A restart keeps the same certificate (clients' CA file stays good); an
  expired one is replaced; two worker processes serve it too.
* The private key is in no log: not the server's output, not the audit log.
* Refused: without --dev, and with --tls-cert.

Each reason a pair is replaced is covered fast in tests/unit/test_devtls.py.
"""

from __future__ import annotations

import base64
import configparser
import datetime
import http.client
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from docwalk import VENV, MakeRun
from selfsigned import SelfSignedServer

from conftest import free_port

AWS = Path(sys.executable).parent / "aws"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[SelfSignedServer]:
    srv = SelfSignedServer(tmp_path / "data").start()
    yield srv
    if srv.proc is not None:
        srv.stop(signal.SIGKILL)


def _log(srv: SelfSignedServer) -> str:
    assert srv.log_path is not None
    return srv.log_path.read_text()


def _secret_forms(key_pem: bytes) -> list[str]:
    """The private key as a log line might carry it."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    body = [line for line in key_pem.decode().splitlines() if not line.startswith("-----")]
    return [
        "PRIVATE KEY",
        *body,
        scalar.hex(),
        base64.b64encode(scalar).decode(),
        base64.urlsafe_b64encode(scalar).decode().rstrip("="),
        der.hex(),
    ]


def test_first_start_serves_https_with_its_own_ca(tls_server: SelfSignedServer) -> None:
    srv = tls_server
    log = _log(srv)
    assert f"TLS: made a self-signed certificate {srv.ca_file}" in log
    assert f"clients trust {srv.ca_file} as their CA" in log
    assert f"at {srv.endpoint} " in log
    assert (srv.key_file.stat().st_mode & 0o777) == 0o600
    assert (srv.ca_file.parent.stat().st_mode & 0o777) == 0o700

    cert = x509.load_pem_x509_certificate(srv.ca_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}

    kms = srv.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"over tls")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over tls"
    kms.close()

    # By name too: the certificate names localhost.
    akid, secret = srv.credentials()
    by_name = boto3.client(
        "kms",
        endpoint_url=f"https://localhost:{srv.port}",
        region_name="us-east-1",
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        verify=str(srv.ca_file),
    )
    assert by_name.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over tls"
    by_name.close()

    # The system's CAs do not trust it.
    untrusting = boto3.client(
        "kms",
        endpoint_url=srv.endpoint,
        region_name="us-east-1",
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        verify=True,
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(botocore.exceptions.SSLError):
        untrusting.list_keys()
    untrusting.close()

    # Plain HTTP on the port is not served: refused promptly.
    started = time.monotonic()
    with (
        pytest.raises((OSError, http.client.HTTPException)) as refused,
        urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=5) as r,
    ):
        r.read()
    assert not isinstance(refused.value, TimeoutError), refused.value
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        try:
            while chunk := raw.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/1.1 200" not in answer and b'"status"' not in answer
    assert time.monotonic() - started < 10
    assert srv.healthy()

    # The dev profile names the https endpoint and the CA: the AWS CLI and
    # keycask's own client work as the start-up lines say.
    profile = configparser.ConfigParser()
    profile.read(srv.data_dir / "config")
    assert profile["profile keycask"]["endpoint_url"] == srv.endpoint
    assert profile["profile keycask"]["ca_bundle"] == str(srv.ca_file)
    env = srv.env()
    env.update(
        AWS_CONFIG_FILE=str(srv.data_dir / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(srv.data_dir / "credentials"),
    )
    done = subprocess.run(
        [str(AWS), "--profile", "keycask", "kms", "describe-key", "--key-id", key],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    advanced = srv.cli("dev", "advance-clock", "1s")
    assert "ahead of the wall clock" in advanced.stdout
    assert srv.advance_clock(1)["OffsetSeconds"] >= 2

    # The private key is in no log.
    srv.stop()
    text = _log(srv) + "".join(
        p.read_text(errors="replace") for p in (srv.data_dir / "audit").rglob("*") if p.is_file()
    )
    assert "Traceback" not in text
    for form in _secret_forms(srv.key_file.read_bytes()):
        assert form not in text, f"the TLS key is in a log ({form[:8]}...)"


def test_restart_keeps_the_certificate(tls_server: SelfSignedServer) -> None:
    srv = tls_server
    cert, key = srv.ca_file.read_bytes(), srv.key_file.read_bytes()
    kms_key = srv.client().create_key()["KeyMetadata"]["KeyId"]
    srv.restart()
    assert srv.ca_file.read_bytes() == cert
    assert srv.key_file.read_bytes() == key
    assert f"TLS: the self-signed certificate {srv.ca_file} (for localhost, 127.0.0.1, ::1) " \
        "is kept" in _log(srv)  # fmt: skip
    # A client holding the old CA file still connects.
    assert srv.client().describe_key(KeyId=kms_key)["KeyMetadata"]["Enabled"]


def _expired_pair(tls_dir: Path) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    tls_dir.mkdir(parents=True, mode=0o700)
    key_file = tls_dir / "key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tls_dir / "cert.pem").write_bytes(pem)
    return pem


def test_an_expired_certificate_is_replaced(tmp_path: Path) -> None:
    srv = SelfSignedServer(tmp_path / "data")
    old = _expired_pair(srv.data_dir / "tls")
    srv.start()
    try:
        assert srv.ca_file.read_bytes() != old
        assert "made a new self-signed certificate" in _log(srv)
        assert "(the certificate has expired)" in _log(srv)
        assert srv.client().list_keys()["Keys"] == []
    finally:
        srv.stop()


def test_two_workers_serve_it(tmp_path: Path) -> None:
    srv = SelfSignedServer(tmp_path / "data", workers=2).start()
    try:
        kms = srv.client()
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        for _ in range(6):  # connections land on either worker
            fresh = srv.client()
            assert fresh.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key
            fresh.close()
    finally:
        srv.stop()


def _refused(tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    done = subprocess.run(
        [sys.executable, "-m", "keycask.cli", "server", "--data-dir", str(tmp_path / "data"),
         "--listen", f"127.0.0.1:{free_port()}", "--tls-self-signed", *args],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "tls").exists()
    return done.stderr


def test_refused_without_dev_and_with_tls_cert(tmp_path: Path) -> None:
    assert "--tls-self-signed is for --dev" in _refused(tmp_path)
    assert "operator init --tls-self-signed" in _refused(tmp_path)
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    said = _refused(tmp_path, "--dev", "--tls-cert", str(pem), "--tls-key", str(pem))
    assert "cannot be used together" in said


@pytest.mark.parametrize("line", ["make run TLS=1", "TLS=1 make run"])
def test_make_run_with_tls(tmp_path: Path, line: str) -> None:
    """What the README's note says: ``make run TLS=1`` serves HTTPS with the
    data dir's certificate (docwalk's MakeRun runs the Makefile's recipe)."""
    home = tmp_path / "repo"
    home.mkdir()
    (home / ".venv").symlink_to(VENV)
    server = MakeRun(home, free_port(), line)
    try:
        assert server.endpoint.startswith("https://")
        assert server.ca_file == str(home / ".keycask" / "tls" / "cert.pem")
        kms = server.kms()
        assert kms.list_keys()["Keys"] == []
        kms.close()
        assert f"clients trust {(home / '.keycask' / 'tls' / 'cert.pem').resolve()}" in (
            server.log()
        )
    finally:
        server.stop()
