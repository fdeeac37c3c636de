"""A production keycask for end-to-end tests: ``keycask operator init``, then
``keycask server`` without ``--dev``, driven by boto3 and the operator CLI
exactly as an operator would (subprocesses, real files, real TLS)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from conftest import free_port

SOFTHSM_TOKEN = "keycask-e2e"
SOFTHSM_SO_PIN = "1234"
SOFTHSM_PIN = "5678"
SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}


def keycask(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keycask.cli", *args],
        capture_output=True,
        text=True,
        env={**_clean_env(), **(env or {})},
        input=stdin,
        check=check,
        timeout=timeout,
    )


@dataclass
class SoftHsm:
    """A fresh SoftHSM2 token in its own directory."""

    base: Path
    module: str = ""
    pin: str = SOFTHSM_PIN

    def __post_init__(self) -> None:
        found = [m for m in SOFTHSM_MODULES if Path(m).exists()]
        util = shutil.which("softhsm2-util")
        if not found or util is None:
            pytest.fail("SoftHSM2 is not installed: run `make softhsm` or install softhsm2")
        self.module = found[0]
        tokens = self.base / "tokens"
        tokens.mkdir(parents=True)
        self.conf = self.base / "softhsm2.conf"
        self.conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
        subprocess.run(
            [util, "--init-token", "--free", "--label", SOFTHSM_TOKEN,
             "--so-pin", SOFTHSM_SO_PIN, "--pin", self.pin],
            check=True, capture_output=True, env={**os.environ, **self.env()},
        )  # fmt: skip

    def env(self) -> dict[str, str]:
        # The server may load this library when a rekey moves the root to it.
        return {"SOFTHSM2_CONF": str(self.conf), "KEYCASK_PKCS11_MODULES": self.module}

    def session(self, *, rw: bool = False) -> Any:
        import pkcs11

        os.environ["SOFTHSM2_CONF"] = str(self.conf)
        token = pkcs11.lib(self.module).get_token(token_label=SOFTHSM_TOKEN)
        return token.open(rw=rw, user_pin=self.pin)


@dataclass
class Production:
    """One production data dir and the server on it."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    tls: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    init: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    # -- setup --

    def initialise(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        tls = ["--tls-self-signed"] if self.tls else []
        done = keycask(
            "operator", "init", "--data-dir", str(self.data_dir), "--json", *tls, *args,
            env=self.extra_env, stdin=stdin,
        )  # fmt: skip
        self.init = json.loads(done.stdout)
        return self.init

    @property
    def token(self) -> str:
        return str(self.init["operator_token"])

    @property
    def shares(self) -> list[str]:
        return list(self.init["shares"])

    @property
    def cert(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            "KEYCASK_ADDR": self.endpoint,
            "KEYCASK_OPERATOR_TOKEN": self.token,
            **self.extra_env,
        }
        if self.tls:
            env["KEYCASK_CACERT"] = str(self.cert)
        return env

    # -- the server --

    def start(
        self, *args: str, expect_exit: bool = False, env: dict[str, str] | None = None
    ) -> Production:
        log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "keycask.cli", "server", "--data-dir", str(self.data_dir),
             "--listen", f"127.0.0.1:{self.port}", *args],
            stdout=log, stderr=subprocess.STDOUT,
            env={**_clean_env(), **self.extra_env, **(env or {})},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if expect_exit:
                    return self
                raise RuntimeError(f"keycask exited: {log_path.read_text()}")
            if self.health("/healthz")[0] == 200:
                return self
            time.sleep(0.05)
        raise RuntimeError("keycask did not start")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text()

    def health(self, path: str) -> tuple[int, dict[str, Any]]:
        context = ssl.create_default_context(cafile=str(self.cert)) if self.tls else None
        try:
            with urllib.request.urlopen(self.endpoint + path, timeout=1, context=context) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        except OSError:
            return 0, {}

    # -- clients --

    def operator(
        self,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return keycask(
            "operator", *args, env={**self.env(), **(env or {})}, check=check, stdin=stdin
        )

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.operator("status", "--json").stdout))

    def unseal(self, share: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # The share on stdin, as an operator types it at the prompt.
        return self.operator("unseal", "--json", stdin=share + "\n", check=check)

    def unseal_with(self, shares: list[str]) -> None:
        for share in shares:
            self.unseal(share)
        assert self.status()["sealed"] is False

    def client(self, retries: int = 1) -> Any:
        admin = self.init["admin"]
        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=admin["access_key_id"],
            aws_secret_access_key=admin["secret_access_key"],
            verify=str(self.cert) if self.tls else None,
            config=Config(retries={"max_attempts": retries, "mode": "standard"}),
        )

    def signed(
        self, target: str, body: dict[str, Any], creds: tuple[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """A SigV4-signed call of any target over this server's TLS: (status, answer)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        data = json.dumps(body).encode()
        request = AWSRequest(
            method="POST", url=self.endpoint + "/", data=data,
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
        )  # fmt: skip
        SigV4Auth(Credentials(*creds), "kms", "us-east-1").add_auth(request)
        prepared = urllib.request.Request(
            self.endpoint + "/", data=data, headers=dict(request.headers), method="POST"
        )
        context = ssl.create_default_context(cafile=str(self.cert)) if self.tls else None
        try:
            with urllib.request.urlopen(prepared, timeout=60, context=context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def raw_json(
        self, target: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """An unsigned POST of ``body`` with the given headers."""
        request = urllib.request.Request(
            self.endpoint + "/", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target,
                     **headers},
        )  # fmt: skip
        context = ssl.create_default_context(cafile=str(self.cert)) if self.tls else None
        try:
            with urllib.request.urlopen(request, timeout=60, context=context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def raw(self, target: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """An unsigned POST with the given headers."""
        request = urllib.request.Request(
            self.endpoint + "/", data=b"{}", method="POST",
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target,
                     **headers},
        )  # fmt: skip
        context = ssl.create_default_context(cafile=str(self.cert)) if self.tls else None
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")


# -- helpers for the PKCS#11 and rekey tests (appended) --

import hashlib  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402


@contextmanager
def softhsm_session(hsm: SoftHsm, *, rw: bool = False) -> Iterator[Any]:
    """A logged-in session on ``hsm``'s token from this test process.

    python-pkcs11 keeps one initialised library per module path for the whole
    process, and SoftHSM2 reads SOFTHSM2_CONF only in C_Initialize: so the
    library is initialised again for this token and finalised afterwards
    (the next user initialises it with its own configuration), and the
    previous SOFTHSM2_CONF is put back."""
    import pkcs11

    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    lib = pkcs11.lib(hsm.module)
    try:
        lib.reinitialize()
        token = lib.get_token(token_label=SOFTHSM_TOKEN)
        with token.open(rw=rw, user_pin=hsm.pin) as session:
            yield session
    finally:
        lib.finalize()
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def pkcs11_flags(hsm: SoftHsm, key_label: str, pin_file: Path) -> list[str]:
    """The ``--pkcs11-*`` flags of init and rekey for ``hsm``'s token."""
    return [
        "--pkcs11-module", hsm.module, "--pkcs11-token-label", SOFTHSM_TOKEN,
        "--pkcs11-key-label", key_label, "--pkcs11-pin-file", str(pin_file),
    ]  # fmt: skip


def secret_file(path: Path, text: str) -> Path:
    """``text`` in an owner-only file (a PIN or a passphrase)."""
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def tree_digest(directory: Path) -> dict[str, str]:
    """SHA-256 of every file under ``directory`` (and every directory's name)."""
    digest: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        name = str(path.relative_to(directory))
        if path.is_dir():
            digest[name + "/"] = "dir"
        else:
            digest[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


@contextmanager
def unsealed_shamir(data_dir: Path) -> Iterator[Production]:
    """A production server on a Shamir 5-of-3 seal, started and unsealed with
    the first three shares; stopped afterwards if the test left it running."""
    server = Production(data_dir)
    server.initialise("--seal", "shamir", "--shares", "5", "--threshold", "3")
    server.start()
    server.unseal_with(server.shares[:3])
    try:
        yield server
    finally:
        if server.proc is not None:
            server.stop()
