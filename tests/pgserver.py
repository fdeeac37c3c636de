"""A private PostgreSQL server for one test, which the test may restart,
stop and crash without touching the machine's shared PostgreSQL.

``PgServer(version=...)`` finds the server binaries in
``/usr/lib/postgresql/<version>/bin`` (the newest version there unless told),
runs ``initdb`` and ``pg_ctl`` as the ``postgres`` OS user (``initdb`` refuses
root) through ``runuser``, in a temp dir owned by that user, on a free port of
127.0.0.1 with its socket in the same temp dir, trust authentication and
``fsync=on``. Missing binaries or ``runuser`` fail the test with a message
saying what to install (CI has them); nothing here skips.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import free_port

PG_ROOT = Path("/usr/lib/postgresql")
PG_USER = "postgres"


def pg_bin_dir(version: str | None = None) -> Path:
    """``/usr/lib/postgresql/<version>/bin`` (the newest version if None)."""
    versions = sorted(
        (p for p in PG_ROOT.glob("*") if (p / "bin" / "initdb").exists()),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name.split(".")],
    )
    if version is not None:
        versions = [p for p in versions if p.name == version]
    if not versions:
        pytest.fail(
            f"PostgreSQL server binaries{f' {version}' if version else ''} not found under "
            f"{PG_ROOT}/<version>/bin: install postgresql (Debian: apt-get install postgresql-15)"
        )
    return versions[-1] / "bin"


class PgServer:
    """One private PostgreSQL cluster: ``start()``, ``restart()``, ``stop()``,
    ``crash()`` (stop -m immediate), ``destroy()``."""

    def __init__(self, version: str | None = None) -> None:
        self.bin = pg_bin_dir(version)
        self.runuser = shutil.which("runuser")
        if self.runuser is None:
            pytest.fail("runuser (util-linux) is not on PATH: the test runs PostgreSQL through it")
        try:
            self.user = pwd.getpwnam(PG_USER)
        except KeyError:
            pytest.fail(f"there is no {PG_USER!r} OS user to run PostgreSQL as")
        self.base = Path(tempfile.mkdtemp(prefix="keycask-pg-"))
        os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        self.base.chmod(0o700)
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = free_port()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert self.runuser is not None
        done = subprocess.run(
            [self.runuser, "-u", PG_USER, "--", *args],
            capture_output=True,
            text=True,
            cwd=self.base,
            timeout=timeout,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
                f"\n{self.log_text()}"
            )
        return done

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-4000:]
        return ""

    def start(self) -> PgServer:
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", PG_USER,
                "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(
                    f"\n# keycask test instance\nport = {self.port}\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.base}'\n"
                    "fsync = on\nsynchronous_commit = on\nmax_connections = 100\n"
                    "shared_buffers = 32MB\n"
                )
        self.pg_ctl("start")
        self.wait_ready()
        return self

    def pg_ctl(self, action: str, *args: str) -> None:
        self._run(
            str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-l", str(self.log),
            "-w", "-t", "60", *args,
        )  # fmt: skip

    def restart(self) -> None:
        """A fast restart: the server terminates every connection, then comes back."""
        self.pg_ctl("restart", "-m", "fast")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-m", mode)

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: no shutdown checkpoint, recovery at the next start."""
        self.stop("immediate")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def wait_ready(self, deadline: float = 60) -> None:
        end = time.monotonic() + deadline
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > end:
                    raise AssertionError(
                        f"private PostgreSQL not ready: {error}\n{self.log_text()}"
                    ) from None
                time.sleep(0.1)

    def destroy(self) -> None:
        """Stop it (immediately) if it runs, and remove everything."""
        if self.running():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def private_postgres(version: str | None = None) -> Iterator[PgServer]:
    server = PgServer(version)
    try:
        yield server.start()
    finally:
        server.destroy()
