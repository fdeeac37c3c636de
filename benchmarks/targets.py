"""Servers to measure: keycask itself (one node, or several on one PostgreSQL),
the bare-handler ceilings and moto_server."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from loadgen import Endpoint

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (workers), in KiB."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


@dataclass
class Target:
    name: str
    command: list[str]
    port: int = field(default_factory=free_port)
    ready_path: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    data_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_in: float = 0.0

    def start(self) -> Target:
        # KEYCASK_* too: a KEYCASK_STORAGE left in the shell would silently turn
        # the SQLite target into a PostgreSQL one.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYCASK_"))}
        env.update(self.env)
        begin = time.perf_counter()
        self.proc = subprocess.Popen(
            [c.replace("{port}", str(self.port)) for c in self.command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=1
                ).close()
                break
            except urllib.error.HTTPError:
                break  # it answers: that is ready enough for the ceilings and moto
            except OSError:
                time.sleep(0.02)
        else:
            raise RuntimeError(f"{self.name} did not start")
        self.started_in = time.perf_counter() - begin
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def rss_kib(self) -> int:
        assert self.proc is not None
        return rss_kib(self.proc.pid)

    def endpoint(self) -> Endpoint:
        if self.data_dir is not None:
            parser = configparser.ConfigParser()
            parser.read(self.data_dir / "credentials")
            section = parser["keycask"]
            return Endpoint(
                "127.0.0.1",
                self.port,
                section["aws_access_key_id"],
                section["aws_secret_access_key"],
            )
        return Endpoint("127.0.0.1", self.port, "AKIAEXAMPLEEXAMPLE00", "x" * 40)


def keycask(
    data_dir: Path | None = None, workers: int | None = None, storage: str | None = None
) -> Target:
    """A --dev keycask node; ``storage`` (a PostgreSQL URI) replaces the
    embedded SQLite store."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="keycask-bench-")) / "data"
    command = [
        sys.executable,
        "-m",
        "keycask.cli",
        "server",
        "--dev",
        "--data-dir",
        str(data_dir),
        "--listen",
        "127.0.0.1:{port}",
    ]
    if workers:
        command += ["--workers", str(workers)]
    env = {"KEYCASK_STORAGE": storage} if storage else {}
    return Target("keycask", command, ready_path="/healthz", env=env, data_dir=data_dir)


@dataclass
class Cluster:
    """``size`` --dev keycask nodes on the PostgreSQL store ``storage``, started
    as tests/e2e/cluster.py starts them: node A creates the keyring and the
    admin profile, B and C get copies of its dev root key and credentials."""

    storage: str
    size: int = 3
    nodes: list[Target] = field(default_factory=list)

    def start(self) -> Cluster:
        root = Path(tempfile.mkdtemp(prefix="keycask-bench-cluster-"))
        self.nodes = [
            keycask(root / f"node{chr(ord('a') + i)}", storage=self.storage)
            for i in range(self.size)
        ]
        try:
            first, *others = self.nodes
            first.start()
            assert first.data_dir is not None
            for node in others:
                assert node.data_dir is not None
                node.data_dir.mkdir(mode=0o700, parents=True)
                for name in ("dev-root.key", "credentials"):
                    shutil.copy2(first.data_dir / name, node.data_dir / name)
                    (node.data_dir / name).chmod(0o600)
                node.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def rss_kib(self) -> int:
        return sum(node.rss_kib() for node in self.nodes)


def ceiling(stack: str) -> Target:
    script = str(REPO / "benchmarks" / "ceiling.py")
    return Target(
        f"ceiling-{stack}", [sys.executable, script, "--stack", stack, "--port", "{port}"]
    )


def moto() -> Target:
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if binary is None:
        raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
    return Target("moto_server", [binary, "-p", "{port}"], ready_path="/moto-api/")
