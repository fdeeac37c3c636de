"""The real ``keycask secrets`` and ``keycask exec`` as subprocesses against a
real server, for tests/e2e/test_secrets_cli.py and test_exec_cli.py.

The CLI finds the server as a user's shell would: ``KEYCASK_ADDR`` and the
--dev data dir's own profile (``KEYCASK_DATA_DIR``), nothing on argv that a
command's REMAINDER could swallow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import Server

KEYCASK = [sys.executable, "-m", "keycask.cli"]


def cli_env(server: Server, **extra: str) -> dict[str, str]:
    return {
        **server.env(),
        "KEYCASK_ADDR": server.endpoint,
        "KEYCASK_DATA_DIR": str(server.data_dir),
        **extra,
    }


def keycask(
    server: Server,
    *args: str,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*KEYCASK, *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        cwd=cwd,
        env=env if env is not None else cli_env(server),
        timeout=timeout,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done


def one_line_error(done: subprocess.CompletedProcess[bytes], status: int) -> str:
    """The single ``keycask: ...`` line a failure prints, checked."""
    err = done.stderr.decode(errors="replace")
    assert done.returncode == status, (done.returncode, err)
    assert err.startswith("keycask: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def new_key(server: Server, description: str = "secrets-e2e") -> str:
    return str(server.client().create_key(Description=description)["KeyMetadata"]["Arn"])


def set_secret(server: Server, path: Path, name: str, value: bytes, *extra: str) -> str:
    """``secrets set`` with ``value`` on stdin; its stderr."""
    return ok(
        keycask(server, "secrets", "set", str(path), name, *extra, stdin=value)
    ).stderr.decode()


def get_secret(server: Server, path: Path, name: str) -> bytes:
    return ok(keycask(server, "secrets", "get", str(path), name)).stdout


def audit_records(server: Server, key_arn: str) -> list[dict[str, Any]]:
    lines = (server.data_dir / "audit" / "server.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [r for r in records if r.get("key_arn") == key_arn]
