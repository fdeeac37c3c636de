"""Private PostgreSQL servers for the tests, never the machine's shared one
unless ``KEYCASK_TEST_PG_DSN`` names it.

``PgServer(version=...)`` finds the server binaries in
``/usr/lib/postgresql/<version>/bin`` (the newest version there unless told),
runs ``initdb`` and ``pg_ctl`` in a temp dir, on a free port of 127.0.0.1 with
its socket in the same temp dir, trust authentication and ``fsync=on``. As
root it runs them as the ``postgres`` OS user (``initdb`` refuses root)
through ``runuser``, in a temp dir owned by that user; as anyone else, as
that user. Missing binaries or ``runuser`` fail the test with a message
saying what to install (``make test`` installs them); nothing here skips.
A test that restarts, stops or crashes PostgreSQL starts one of its own.

``shared_dsn()`` is the database every other PostgreSQL test uses:
``KEYCASK_TEST_PG_DSN`` when set (CI sets it to the machine's PostgreSQL),
else one private server for the whole test run, started by the first test
that asks. Under pytest-xdist the workers share it: the controller makes a
run directory (``start_run``, from ``pytest_configure``) whose path the
workers inherit in ``KEYCASK_TEST_PG_RUN``; the first worker to need the
server starts it under a file lock there and records its DSN, the others
read it, and the controller stops it at the end (``end_run``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PG_ROOT = Path("/usr/lib/postgresql")
PG_USER = "postgres"
DSN_ENV = "KEYCASK_TEST_PG_DSN"
RUN_ENV = "KEYCASK_TEST_PG_RUN"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
            f"{PG_ROOT}/<version>/bin: install the PostgreSQL server "
            "(`make postgresql`; Debian: apt-get install postgresql)"
        )
    return versions[-1] / "bin"


class PgServer:
    """One private PostgreSQL cluster: ``start()``, ``restart()``, ``stop()``,
    ``crash()`` (stop -m immediate), ``destroy()``."""

    def __init__(self, version: str | None = None, *, max_connections: int = 100) -> None:
        self.bin = pg_bin_dir(version)
        self.max_connections = max_connections
        # initdb refuses to run as root: root runs it as the postgres user.
        self.runuser: str | None = None
        self.base = Path(tempfile.mkdtemp(prefix="keycask-pg-"))
        if os.geteuid() == 0:
            self.runuser = shutil.which("runuser")
            if self.runuser is None:
                pytest.fail("runuser (util-linux) is not on PATH: root runs PostgreSQL through it")
            try:
                user = pwd.getpwnam(PG_USER)
            except KeyError:
                pytest.fail(
                    f"there is no {PG_USER!r} OS user to run PostgreSQL as "
                    "(Debian's postgresql package makes it: apt-get install postgresql)"
                )
            os.chown(self.base, user.pw_uid, user.pw_gid)
        self.base.chmod(0o700)
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = free_port()

    def record(self) -> dict[str, object]:
        """What another process needs to stop and remove this server (``attach``)."""
        return {
            "dsn": self.dsn,
            "bin": str(self.bin),
            "runuser": self.runuser,
            "base": str(self.base),
            "port": self.port,
        }

    @classmethod
    def attach(cls, record: dict[str, object]) -> PgServer:
        """The server another process started and described with ``record``."""
        server = cls.__new__(cls)
        server.bin = Path(str(record["bin"]))
        server.runuser = None if record["runuser"] is None else str(record["runuser"])
        server.base = Path(str(record["base"]))
        server.data = server.base / "data"
        server.log = server.base / "server.log"
        server.port = int(str(record["port"]))
        server.max_connections = 0
        return server

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [self.runuser, "-u", PG_USER, "--", *args] if self.runuser else list(args)
        done = subprocess.run(
            command,
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
                    "fsync = on\nsynchronous_commit = on\n"
                    f"max_connections = {self.max_connections}\n"
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


# -- the run's shared server --

_STATE = "server.json"


def start_run() -> Path | None:
    """In the process that runs the session (the xdist controller, or pytest
    alone): when no DSN is given, a run directory the workers inherit through
    the environment. None when there is nothing to start or it already exists
    (a worker, which inherited it)."""
    if os.environ.get(DSN_ENV) or os.environ.get(RUN_ENV):
        return None
    run = Path(tempfile.mkdtemp(prefix="keycask-pgrun-"))
    os.environ[RUN_ENV] = str(run)
    return run


def end_run(run: Path) -> None:
    """Stop the run's server, if a test started one, and remove it all."""
    with contextlib.suppress(FileNotFoundError):
        state = json.loads((run / _STATE).read_text())
        PgServer.attach(state).destroy()
    shutil.rmtree(run, ignore_errors=True)
    os.environ.pop(RUN_ENV, None)


def shared_dsn() -> str:
    """The PostgreSQL every test that only needs a database uses (each in a
    schema of its own): ``KEYCASK_TEST_PG_DSN``, else the run's private
    server, started on first use."""
    given = os.environ.get(DSN_ENV)
    if given:
        return given
    run = os.environ.get(RUN_ENV)
    if not run:
        pytest.fail(f"neither {DSN_ENV} nor {RUN_ENV} is set: tests/conftest.py sets the latter")
    state = Path(run) / _STATE
    with open(Path(run) / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not state.exists():
            # Two xdist workers, each with a few keycask nodes and their pools.
            server = PgServer(max_connections=300)
            try:
                server.start()
            except BaseException:
                server.destroy()
                raise
            state.write_text(json.dumps(server.record()))
        return str(json.loads(state.read_text())["dsn"])
