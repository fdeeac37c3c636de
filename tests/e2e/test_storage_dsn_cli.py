"""``keycask server --storage`` as an operator runs it (finding 12): a store on
another host without TLS, a password on the command line, and a DSN that does
not parse are each refused at start with a clear message that never repeats
the password, and no traceback. Every refusal comes before any connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from production import free_port, keycask

SECRET = "s3cret-Pw-91"


def _server(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    listen = f"127.0.0.1:{free_port()}"
    done = keycask(
        "server", "--dev", "--data-dir", str(tmp_path / "data"), "--listen", listen,
        *args, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output and SECRET not in output, output
    return output


def test_a_remote_store_without_tls_is_refused_at_start(tmp_path: Path) -> None:
    output = _server(tmp_path, "--storage", "postgresql://keycask@db.example.invalid/keycask")
    assert "db.example.invalid is not on this host" in output
    assert "sslmode=require" in output and "--storage-insecure" in output


def test_a_password_on_the_command_line_is_refused(tmp_path: Path) -> None:
    output = _server(tmp_path, "--storage", f"postgresql://postgres:{SECRET}@127.0.0.1/test")
    assert "PGPASSWORD" in output


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://postgres:{SECRET}@[::1/test",
        f"postgresql://postgres:{SECRET}@127.0.0.1/test?bogus=1",
    ],
)
def test_a_dsn_in_the_environment_that_does_not_parse_is_not_echoed(
    tmp_path: Path, dsn: str
) -> None:
    output = _server(tmp_path, env={"KEYCASK_STORAGE": dsn})
    assert "DSN does not parse" in output
