"""``keycask server --tls-cert/--tls-key [--tls-client-ca]``: HTTPS end to end.

A CA, a server certificate for 127.0.0.1/localhost and a client certificate are
made per module with ``cryptography``; boto3 talks to real server processes.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import Server


def _load_pki_helpers() -> Any:
    # The certificate maker lives with the unit tests (tests/unit/test_http_tls.py);
    # test directories are not packages, so load it by path.
    path = Path(__file__).resolve().parent.parent / "unit" / "test_http_tls.py"
    spec = importlib.util.spec_from_file_location("keycask_tls_test_pki", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through it
    spec.loader.exec_module(module)
    return module


_pki = _load_pki_helpers()
Pki = _pki.Pki
make_pki = _pki.make_pki

ROOT = "arn:aws:iam::000000000000:root"


@dataclass
class TlsServer(Server):
    """A keycask server speaking HTTPS; conftest's Server with the TLS flags."""

    pki: Pki | None = None
    mutual: bool = False
    extra_args: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> TlsServer:
        assert self.pki is not None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        args = ["--tls-cert", str(self.pki.cert), "--tls-key", str(self.pki.key)]
        if self.mutual:
            args += ["--tls-client-ca", str(self.pki.ca)]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "keycask.cli", "server", "--dev",
                "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}",
                "--workers", str(self.workers), *args, *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keycask exited: {self.log_path.read_text()}")
            if self.healthy():
                return self
            time.sleep(0.05)
        raise RuntimeError("keycask did not become ready")

    def ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        if self.mutual:
            context.load_cert_chain(self.pki.client_cert, self.pki.client_key)
        return context

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                self.endpoint + "/healthz", timeout=1, context=self.ssl_context()
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def tls_client(
        self, *, verify: bool | str | None = None, client_cert: bool | None = None
    ) -> Any:
        assert self.pki is not None
        akid, secret = self.credentials()
        use_cert = self.mutual if client_cert is None else client_cert
        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=akid,
            aws_secret_access_key=secret,
            verify=str(self.pki.ca) if verify is None else verify,
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=10,
                client_cert=(str(self.pki.client_cert), str(self.pki.client_key))
                if use_cert
                else None,
            ),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsServer]:
    server = TlsServer(tmp_path_factory.mktemp("tls") / "data", pki=pki).start()
    yield server
    server.stop()


def audit_record(server: Server, request_id: str) -> dict[str, Any]:
    for path in sorted((server.data_dir / "audit").glob("*.jsonl")):
        for line in reversed(path.read_text().splitlines()):
            record: dict[str, Any] = json.loads(line)
            if record["request_id"] == request_id:
                return record
    raise AssertionError(f"no audit record for {request_id}")


def test_boto3_over_https(tls_server: TlsServer) -> None:
    kms = tls_server.tls_client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"over tls")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over tls"
    with urllib.request.urlopen(
        tls_server.endpoint + "/healthz", context=tls_server.ssl_context(), timeout=5
    ) as r:
        assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    # The dev profile and the banner name the HTTPS endpoint.
    assert f"endpoint_url = {tls_server.endpoint}" in (tls_server.data_dir / "config").read_text()


def test_the_self_signed_ca_is_not_trusted_by_default(tls_server: TlsServer) -> None:
    with pytest.raises(botocore.exceptions.SSLError):
        tls_server.tls_client(verify=True).list_keys()


def test_plain_http_to_the_tls_port_fails_cleanly(tls_server: TlsServer) -> None:
    akid, secret = tls_server.credentials()
    plain = boto3.client(
        "kms",
        endpoint_url=f"http://127.0.0.1:{tls_server.port}",
        region_name="us-east-1",
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=20),
    )
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.BotoCoreError):
        plain.list_keys()
    assert time.monotonic() - started < 15  # dropped, not left hanging
    assert tls_server.tls_client().list_keys()["Keys"] is not None
    assert tls_server.log_path is not None
    assert "Traceback" not in tls_server.log_path.read_text()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused(tls_server: TlsServer, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as sock,
        pytest.raises((ssl.SSLError, ConnectionError)),
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        tls.recv(1)
    assert tls_server.healthy()


def _secure_only_policy() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "EnableIAM",
                    "Effect": "Allow",
                    "Principal": {"AWS": ROOT},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "kms:Encrypt",
                    "Resource": "*",
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        }
    )


def test_secure_transport_condition(tls_server: TlsServer, tmp_path: Path, server: Server) -> None:
    kms = tls_server.tls_client()
    key_id = kms.create_key(Policy=_secure_only_policy())["KeyMetadata"]["KeyId"]
    answer = kms.encrypt(KeyId=key_id, Plaintext=b"x")
    record = audit_record(tls_server, answer["ResponseMetadata"]["RequestId"])
    assert record["decision"] == "allow" and record["outcome"] == "success", record

    # The same policy over plain HTTP: denied by the condition.
    plain = server.client()
    plain_key = plain.create_key(Policy=_secure_only_policy())["KeyMetadata"]["KeyId"]
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        plain.encrypt(KeyId=plain_key, Plaintext=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    record = audit_record(server, denied.value.response["ResponseMetadata"]["RequestId"])
    assert record["decision"] == "deny", record


def test_mutual_tls(tmp_path: Path, pki: Pki) -> None:
    srv = TlsServer(tmp_path / "data", pki=pki, mutual=True).start()
    try:
        with pytest.raises(botocore.exceptions.BotoCoreError):
            srv.tls_client(client_cert=False).list_keys()
        kms = srv.tls_client()
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"mtls")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"mtls"
    finally:
        srv.stop()


def test_workers_each_serve_tls(tmp_path: Path, pki: Pki) -> None:
    srv = TlsServer(tmp_path / "data", pki=pki, workers=2).start()
    try:
        kms = srv.tls_client()
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        for _ in range(8):
            # A new connection each time, so both workers get some.
            kms = srv.tls_client()
            blob = kms.encrypt(KeyId=key_id, Plaintext=b"w")["CiphertextBlob"]
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"w"
    finally:
        assert srv.stop() == 0


def test_bad_tls_files_refuse_to_start(tmp_path: Path, pki: Pki) -> None:
    base = [sys.executable, "-m", "keycask.cli", "server", "--dev", "--data-dir"]
    for extra, message in (
        (["--tls-cert", str(pki.cert), "--tls-key", str(pki.other_key)], "matching pair"),
        (["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(pki.key)], "does not exist"),
        (["--tls-cert", str(pki.cert)], "both"),
    ):
        done = subprocess.run(
            [*base, str(tmp_path / "data"), "--listen", "127.0.0.1:1", *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_tls_key_others_may_read_is_refused(tmp_path: Path, pki: Pki, mode: int) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(pki.key.read_bytes())
    key.chmod(mode)
    done = subprocess.run(
        [sys.executable, "-m", "keycask.cli", "server", "--dev", "--data-dir",
         str(tmp_path / "data"), "--listen", "127.0.0.1:1",
         "--tls-cert", str(pki.cert), "--tls-key", str(key)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "readable by others" in done.stderr and "chmod 600" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_dev_advance_clock_reaches_a_tls_server_with_a_private_ca(tmp_path: Path, pki: Pki) -> None:
    """``keycask dev advance-clock`` (like every client command) trusts the CA
    it is given, and says what to give when it has none."""
    srv = TlsServer(tmp_path / "data", pki=pki).start()
    try:
        refused = srv.cli("dev", "advance-clock", "1h", check=False)
        assert refused.returncode == 1, refused.stdout
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr and "--ca-file" in refused.stderr
        done = srv.cli("dev", "advance-clock", "1h", "--ca-file", str(pki.ca))
        assert "1h (3600 s) ahead of the wall clock" in done.stdout
        by_env = subprocess.run(
            [sys.executable, "-m", "keycask.cli", "dev", "advance-clock", "1h",
             "--data-dir", str(srv.data_dir)],
            capture_output=True, text=True, timeout=60, check=False,
            env={**srv.env(), "AWS_CA_BUNDLE": str(pki.ca)},
        )  # fmt: skip
        assert by_env.returncode == 0, by_env.stderr
        assert "2h (7200 s) ahead" in by_env.stdout
    finally:
        srv.stop()
