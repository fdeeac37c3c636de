"""What the envelope tests share: the real ``keycask`` CLI as a subprocess
on bytes, the server's audit records, and a botocore session on the
profile the --dev server wrote (for messages made with the Python SDK
in-process, as a hostile or foreign writer would)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.session

if TYPE_CHECKING:
    from conftest import Server

KEYCASK = [sys.executable, "-m", "keycask.cli"]


def keycask(
    server: Server,
    *args: str,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*KEYCASK, *args, "--data-dir", str(server.data_dir)],
        input=stdin,
        capture_output=True,
        env=env if env is not None else server.env(),
        timeout=timeout,
    )


def failed(proc: subprocess.CompletedProcess[bytes], status: int = 1) -> str:
    """The one line of a failure, after checking it is one line and no traceback."""
    err = proc.stderr.decode()
    assert proc.returncode == status, (proc.returncode, err)
    assert err.startswith("keycask: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def audit_records(server: Server) -> list[dict[str, Any]]:
    path = server.data_dir / "audit" / "server.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def calls(server: Server, key_arn: str, operation: str) -> int:
    return sum(
        1 for r in audit_records(server) if r["key_arn"] == key_arn and r["operation"] == operation
    )


def sdk_session(server: Server) -> botocore.session.Session:
    session = botocore.session.Session(profile="keycask")
    session.set_config_variable("config_file", str(server.data_dir / "config"))
    session.set_config_variable("credentials_file", str(server.data_dir / "credentials"))
    return session


def leftovers(directory: Path, expected: set[str]) -> set[str]:
    """Names in ``directory`` beyond ``expected`` (temp files included: they
    start with a dot)."""
    return {p.name for p in directory.iterdir()} - expected
