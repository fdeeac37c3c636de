"""Servers to measure: keycask itself, the bare-handler ceilings and moto_server."""

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
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
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


def keycask(data_dir: Path | None = None, workers: int | None = None) -> Target:
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
    return Target("keycask", command, ready_path="/healthz", data_dir=data_dir)


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
