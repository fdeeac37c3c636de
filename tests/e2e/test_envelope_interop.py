"""keycask's messages and the real ``aws-encryption-cli``'s are the same
format: each decrypts what the other encrypts, one key or two, files on
disk both ways.

``aws-encryption-cli`` (ESDK 3.x) lives in a venv of its own (``make
interop``), pointed at keycask the way a user would: the --dev server's
AWS config and credentials files and its ``keycask`` profile, whose
``endpoint_url`` names the server. A missing tool is a failure, not a skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from envelope_helpers import keycask

from conftest import REPO

if TYPE_CHECKING:
    from conftest import Server

ESDK_CLI = REPO / ".venv" / "interop" / "esdk-cli" / "bin" / "aws-encryption-cli"


@pytest.fixture(scope="module")
def esdk_cli() -> Path:
    assert ESDK_CLI.exists(), f"{ESDK_CLI} is missing: run `make interop`"
    return ESDK_CLI


def _run_esdk(server: Server, tool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = server.env()
    env["AWS_CONFIG_FILE"] = str(server.data_dir / "config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(server.data_dir / "credentials")
    return subprocess.run(
        [str(tool), *args, "-S"], capture_output=True, text=True, env=env, timeout=120
    )


def _key(kms: Any) -> str:
    return str(kms.create_key(Description="interop")["KeyMetadata"]["Arn"])


def test_keycask_encrypts_aws_encryption_cli_decrypts(
    server: Server, kms: Any, esdk_cli: Path, tmp_path: Path
) -> None:
    key = _key(kms)
    data = os.urandom(300_000)
    (tmp_path / "plain").write_bytes(data)
    proc = keycask(
        server, "encrypt", "--key-id", key, "--context", "app=interop",
        "-o", str(tmp_path / "msg"), str(tmp_path / "plain"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    done = _run_esdk(
        server, esdk_cli, "--decrypt", "-i", str(tmp_path / "msg"), "-o", str(tmp_path / "back"),
        "-w", f"key={key}", "profile=keycask", "-c", "app=interop",
        "--commitment-policy", "require-encrypt-require-decrypt",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "back").read_bytes() == data


def test_aws_encryption_cli_encrypts_keycask_decrypts(
    server: Server, kms: Any, esdk_cli: Path, tmp_path: Path
) -> None:
    key = _key(kms)
    data = os.urandom(300_000)
    (tmp_path / "plain").write_bytes(data)
    done = _run_esdk(
        server, esdk_cli, "--encrypt", "-i", str(tmp_path / "plain"), "-o", str(tmp_path / "msg"),
        "-w", f"key={key}", "profile=keycask", "-c", "app=interop",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    proc = keycask(
        server, "decrypt", "--context", "app=interop", "-o", str(tmp_path / "back"),
        str(tmp_path / "msg"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "back").read_bytes() == data
    # The context check holds for a foreign message too.
    refused = keycask(server, "decrypt", "--context", "app=other", str(tmp_path / "msg"))
    assert refused.returncode == 1 and b"app='interop', not app='other'" in refused.stderr


@pytest.mark.slow
def test_two_key_messages_both_ways(
    server: Server, kms: Any, esdk_cli: Path, tmp_path: Path
) -> None:
    first, second = _key(kms), _key(kms)
    data = os.urandom(100_000)
    (tmp_path / "plain").write_bytes(data)

    # keycask with two keys; aws-encryption-cli opens it with the second alone.
    proc = keycask(
        server, "encrypt", "--key-id", first, "--key-id", second,
        "-o", str(tmp_path / "k.msg"), str(tmp_path / "plain"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    done = _run_esdk(
        server, esdk_cli, "--decrypt", "-i", str(tmp_path / "k.msg"),
        "-o", str(tmp_path / "k.back"), "-w", f"key={second}", "profile=keycask",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "k.back").read_bytes() == data

    # aws-encryption-cli with two keys; keycask opens it with either alone.
    done = _run_esdk(
        server, esdk_cli, "--encrypt", "-i", str(tmp_path / "plain"), "-o", str(tmp_path / "e.msg"),
        "-w", f"key={first}", f"key={second}", "profile=keycask",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for key in (first, second):
        proc = keycask(server, "decrypt", "--key-id", key, str(tmp_path / "e.msg"))
        assert proc.returncode == 0 and proc.stdout == data, proc.stderr
    kms.disable_key(KeyId=first)
    try:
        proc = keycask(server, "decrypt", str(tmp_path / "e.msg"))
        assert proc.returncode == 0 and proc.stdout == data, proc.stderr
    finally:
        kms.enable_key(KeyId=first)
