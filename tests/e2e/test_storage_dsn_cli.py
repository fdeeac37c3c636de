"""``keycask server --storage`` as an operator runs it (finding 12): a store on
another host without TLS, a password on the command line, and a DSN that does
not parse are each refused at start with a clear message that never repeats
the password, and no traceback. Every refusal comes before any connection."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import psycopg
import pytest
from production import _clean_env, free_port, keycask
from psycopg import sql

from pgserver import shared_dsn

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


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_worker_processes_get_the_dsn_outside_argv(tmp_path: Path) -> None:
    """A --dev supervisor hands its workers the store in their environment,
    which only the owner can read, not on argv, which ``ps`` shows everyone."""
    pg_dsn = shared_dsn()
    schema = f"kc_test_{secrets.token_hex(8)}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            # PGPASSWORD-style secrecy: the password rides in the DSN of the
            # environment (the server's trust auth ignores it).
            parts = urllib.parse.urlsplit(pg_dsn)
            user, _, host = parts.netloc.rpartition("@")
            query = urllib.parse.urlencode({"options": f"-csearch_path={schema}"})
            dsn = urllib.parse.urlunsplit(
                (parts.scheme, f"{user}:{SECRET}@{host}", parts.path, query, "")
            )
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "keycask.cli", "server", "--dev", "--workers", "2",
                 "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}"],
                env={**_clean_env(), "KEYCASK_STORAGE": dsn},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                workers: list[int] = []
                while len(workers) < 2 and time.monotonic() < deadline:
                    assert proc.poll() is None, "the supervisor exited"
                    workers = _children(proc.pid)
                    time.sleep(0.2)
                assert len(workers) == 2
                for pid in [proc.pid, *workers]:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                    assert SECRET.encode() not in argv and b"postgresql" not in argv, argv
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
