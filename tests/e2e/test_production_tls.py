"""TLS for a production server, end to end.

* Without TLS it refuses a non-loopback listen address, saying why and naming
  ``--insecure-plaintext``; with that flag it starts and warns.
* With the certificate ``operator init --tls-self-signed`` made: boto3 and the
  AWS CLI trusting that certificate work, boto3 trusting the system CAs fails,
  and plain HTTP to the TLS port fails promptly without harming the server.

TLS 1.1 refusal and client certificates are covered on a dev server by
tests/e2e/test_tls.py.
"""

from __future__ import annotations

import http.client
import json
import os
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
from production import Production, unsealed_shamir

AWS = Path(sys.executable).parent / "aws"


@pytest.fixture
def tls_prod(tmp_path: Path) -> Iterator[Production]:
    with unsealed_shamir(tmp_path / "data") as server:
        yield server


def test_plaintext_on_a_public_address_needs_insecure_plaintext(tmp_path: Path) -> None:
    prod = Production(tmp_path / "data", tls=False)
    prod.initialise("--seal", "shamir", "--shares", "5", "--threshold", "3")
    assert not (prod.data_dir / "tls").exists()
    public = f"0.0.0.0:{prod.port}"

    prod.start("--listen", public, expect_exit=True)
    assert prod.proc is not None
    code = prod.proc.wait(timeout=30)
    prod.proc = None
    log = prod.log()
    assert code != 0
    assert "refusing to serve plaintext HTTP on 0.0.0.0" in log
    assert "--tls-cert" in log and "--insecure-plaintext" in log
    assert "Traceback" not in log

    # Said explicitly, it starts (on every address) and warns.
    prod.start("--listen", public, "--insecure-plaintext")
    try:
        assert prod.health("/healthz") == (200, {"status": "sealed"})
        prod.unseal_with(prod.shares[:3])
        kms = prod.client()
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"behind a load balancer")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"behind a load balancer"
        kms.close()
        log = prod.log()
        assert "WARNING: --insecure-plaintext" in log
        assert "unencrypted" in log
    finally:
        prod.stop()


def test_self_signed_certificate(tls_prod: Production) -> None:
    kms = tls_prod.client()  # verify=<the certificate init made>
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"over tls")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over tls"

    # The system's CAs do not trust it.
    admin = tls_prod.init["admin"]
    untrusting = boto3.client(
        "kms",
        endpoint_url=tls_prod.endpoint,
        region_name="us-east-1",
        aws_access_key_id=admin["access_key_id"],
        aws_secret_access_key=admin["secret_access_key"],
        verify=True,
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(botocore.exceptions.SSLError):
        untrusting.list_keys()
    untrusting.close()

    # The AWS CLI with --ca-bundle.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
    env.update(
        AWS_ACCESS_KEY_ID=admin["access_key_id"],
        AWS_SECRET_ACCESS_KEY=admin["secret_access_key"],
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    done = subprocess.run(
        [str(AWS), "kms", "list-keys", "--endpoint-url", tls_prod.endpoint,
         "--ca-bundle", str(tls_prod.cert), "--output", "json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert key in [k["KeyId"] for k in json.loads(done.stdout)["Keys"]]

    # Plain HTTP to the TLS port: refused promptly, not left hanging.
    started = time.monotonic()
    with pytest.raises((OSError, http.client.HTTPException)) as refused:
        request = urllib.request.Request(f"http://127.0.0.1:{tls_prod.port}/healthz", method="GET")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
    assert not isinstance(refused.value, TimeoutError), refused.value
    assert time.monotonic() - started < 5
    # The same at the socket level: the server closes the connection itself.
    with socket.create_connection(("127.0.0.1", tls_prod.port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            while raw.recv(4096):
                pass
        except ConnectionResetError:
            pass  # closed with a reset: as good as a close
    assert time.monotonic() - started < 10

    # It keeps serving.
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over tls"
    assert tls_prod.health("/healthz") == (200, {"status": "ok"})
    kms.close()
    assert "Traceback" not in tls_prod.log()
