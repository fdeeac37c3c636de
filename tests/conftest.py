"""Shared fixtures: a real keycask server on 127.0.0.1, driven by boto3."""

from __future__ import annotations

import configparser
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from pgserver import end_run, start_run

REPO = Path(__file__).resolve().parent.parent


# The run's private PostgreSQL when KEYCASK_TEST_PG_DSN is unset (pgserver.py).
_PG_RUN: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    """Before xdist starts its workers, so they inherit the run directory."""
    run = start_run()
    if run is not None:
        _PG_RUN.append(run)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _PG_RUN:
        end_run(_PG_RUN.pop())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A keycask server process with its own data dir and port."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    env_extra: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    args: tuple[str, ...] = ()  # more flags of keycask server
    # stderr in a file of its own (else with stdout in log_path)
    stderr_path: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
        env.update(self.env_extra)
        return env

    def start(self) -> Server:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "keycask.cli",
                "server",
                "--dev",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                *self.args,
            ],
            stdout=log,
            stderr=open(self.stderr_path, "ab") if self.stderr_path else subprocess.STDOUT,  # noqa: SIM115
            env=self.env(),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keycask exited: {self.log_path.read_text()}")
            if self.healthy():
                return self
            time.sleep(0.05)
        raise RuntimeError("keycask did not become ready")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def restart(self, sig: int = signal.SIGTERM) -> Server:
        self.stop(sig)
        return self.start()

    def credentials(self, profile: str = "keycask") -> tuple[str, str]:
        parser = configparser.ConfigParser()
        parser.read(self.data_dir / "credentials")
        return parser[profile]["aws_access_key_id"], parser[profile]["aws_secret_access_key"]

    def client(
        self,
        access_key: tuple[str, str] | None = None,
        region: str = "us-east-1",
        retries: int = 1,
    ) -> Any:
        akid, secret = access_key or self.credentials()
        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=akid,
            aws_secret_access_key=secret,
            verify=self.ca_bundle,
            config=Config(retries={"max_attempts": retries, "mode": "standard"}),
        )

    @property
    def ca_bundle(self) -> str | None:
        """The CA file clients trust (None: the default trust store)."""
        return None

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the server's lifecycle clock forward (--dev only) and return
        its answer: {"Now", "OffsetSeconds", "JobsRun"}. In-process and signed
        like any client; ``keycask dev advance-clock`` does the same from a shell."""
        return dev_call(self.endpoint, self.credentials(), {"Seconds": seconds})

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keycask.cli", *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            env=self.env(),
            check=check,
            timeout=60,
        )


DAY = 86400.0


def dev_call(
    endpoint: str,
    credentials: tuple[str, str],
    body: dict[str, Any],
    target: str = "KeycaskDev.AdvanceClock",
    ca_file: str | None = None,
) -> dict[str, Any]:
    """A signed call of keycask's --dev clock endpoint (over HTTPS trusting
    ``ca_file``, if given); raises DevCallError on an error answer."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    data = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=data,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    SigV4Auth(Credentials(*credentials), "kms", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(
        endpoint + "/", data=data, headers=dict(request.headers), method="POST"
    )
    try:
        context = None if ca_file is None else ssl.create_default_context(cafile=ca_file)
        with urllib.request.urlopen(prepared, timeout=120, context=context) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        raise DevCallError(error.code, json.loads(error.read() or b"{}")) from None


class DevCallError(Exception):
    def __init__(self, status: int, doc: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {doc}")
        self.status = status
        self.code = doc.get("__type")
        self.message = doc.get("message", "")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by tests that only add state of their own."""
    srv = Server(tmp_path_factory.mktemp("shared") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for tests that restart it or break it."""
    srv = Server(tmp_path / "data").start()
    yield srv
    if srv.proc is not None:
        srv.stop(signal.SIGKILL)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own with two worker processes."""
    srv = Server(tmp_path / "data", workers=2).start()
    yield srv
    if srv.proc is not None:
        srv.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def kms(server: Server) -> Any:
    return server.client()
