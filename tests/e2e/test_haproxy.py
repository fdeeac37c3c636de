"""HAProxy in front of three keycask nodes, with the configuration that
docs/deployment.md shows, actually run.

The test reads the ```haproxy block from docs/deployment.md and replaces only
the strings the page names as placeholders (the listen address, the three
node addresses, the CA file); everything else runs as written: TCP mode with
TLS passed through to the nodes, and health checks that ask each node's
``/readyz`` over TLS. HAProxy runs as a child of the test (``haproxy -f cfg
-db``) on free ports; ``make haproxy`` installs it (the test fails, never
skips, when it is missing).

Three ``keycask server --dev`` nodes serve HTTPS with one self-signed
certificate; node C reaches PostgreSQL through a TcpProxy, so that it can
lose its store while staying alive. Checked: boto3 works through HAProxy and
the calls are spread over the nodes (each node's audit segment); a node
killed with SIGKILL is taken out (50 consecutive calls through HAProxy 3 s
later all succeed); a live node whose /readyz says 503 (PostgreSQL
unreachable) is taken out too, and serves again once it is ready.
"""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cluster import Cluster, TcpProxy, audit_records, pg_schema, poll

from conftest import REPO, Server, free_port

DOCS = REPO / "docs" / "deployment.md"
LISTEN = "0.0.0.0:9567"
NODES = ("10.0.0.11:9567", "10.0.0.12:9567", "10.0.0.13:9567")
CA_FILE = "/etc/keycask/ca.pem"
SERVED = {"Encrypt", "Decrypt", "CreateKey", "GenerateDataKey"}
# HAProxy and the clients connect from 127.0.0.1; direct probes of a node and
# the client whose address must come through come from elsewhere on lo.
BALANCER, ELSEWHERE, CLIENT = "127.0.0.1", "127.0.0.2", "127.0.0.3"
CONTEXT = {"test": "haproxy"}


@dataclass
class TlsServer(Server):
    """A ``--dev`` node serving HTTPS (``KEYCASK_TLS_CERT``/``KEYCASK_TLS_KEY``)."""

    ca: Path = field(default_factory=Path)

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def healthy(self) -> bool:
        return readyz(self)[0] in (200, 503)

    def client(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("use lb_client")


def readyz(node: TlsServer) -> tuple[int, str]:
    """/readyz asked directly, from 127.0.0.2: not HAProxy's address (which
    must send a PROXY header), as an operator's probe would be."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", node.port, timeout=5, context=node.context(), source_address=(ELSEWHERE, 0)
    )
    try:
        connection.request("GET", "/readyz")
        answer = connection.getresponse()
        return int(answer.status), answer.read().decode()
    except OSError as error:
        return 0, str(error)
    finally:
        connection.close()


def status_through(setup: Setup, source: str) -> int:
    """A request through HAProxy from ``source``: the node must see ``source``."""
    context = ssl.create_default_context(cafile=str(setup.cert))
    with (
        socket.create_connection(
            ("127.0.0.1", setup.lb.port), timeout=10, source_address=(source, 0)
        ) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /who-am-i HTTP/1.1\r\nHost: kms\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def haproxy_config(listen: str, nodes: list[str], ca_file: Path) -> str:
    """docs/deployment.md's HAProxy configuration with the placeholders replaced."""
    blocks = re.findall(r"^```haproxy\n(.*?)^```", DOCS.read_text(), re.S | re.M)
    assert len(blocks) == 1, f"docs/deployment.md should hold one ```haproxy block: {blocks}"
    config = blocks[0]
    for placeholder, value in [
        (LISTEN, listen),
        *zip(NODES, nodes, strict=True),
        (CA_FILE, str(ca_file)),
    ]:
        assert config.count(placeholder) == 1, f"placeholder {placeholder} not once in the docs"
        config = config.replace(placeholder, value)
    return config


class HaProxy:
    """``haproxy -f cfg -db`` as a child process, its output in a log file."""

    def __init__(self, base: Path, config: str, port: int) -> None:
        self.binary = shutil.which("haproxy")
        if self.binary is None:
            pytest.fail("HAProxy is not installed: run `make haproxy` (Debian package haproxy)")
        self.cfg = base / "haproxy.cfg"
        self.cfg.write_text(config)
        self.log_path = base / "haproxy.log"
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HaProxy:
        assert self.binary is not None
        checked = subprocess.run(
            [self.binary, "-c", "-f", str(self.cfg)], capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, f"haproxy -c refused the docs' config:\n{checked}"
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [self.binary, "-f", str(self.cfg), "-db"], stdout=log, stderr=subprocess.STDOUT
        )
        poll("HAProxy to listen", self._listening, 30, interval=0.1)
        return self

    def _listening(self) -> bool | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited {self.proc.returncode}: {self.log()}")
        with socket.socket() as s:
            s.settimeout(1)
            return True if s.connect_ex(("127.0.0.1", self.port)) == 0 else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def said(self, server: str, state: str, since: int = 0) -> bool | None:
        """Whether HAProxy logged ``server`` going ``state`` (UP/DOWN) after
        ``since`` characters of its log."""
        pattern = rf"Server keycask/{server} is {state}\b"
        return True if re.search(pattern, self.log()[since:]) else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


@dataclass
class Setup:
    cluster: Cluster
    proxy: TcpProxy
    lb: HaProxy
    cert: Path
    admin: tuple[str, str]

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.lb.port}"


def lb_client(setup: Setup) -> Any:
    """A boto3 client through HAProxy, with a connection of its own and no retries."""
    akid, secret = setup.admin
    return boto3.session.Session().client(
        "kms",
        endpoint_url=setup.endpoint,
        region_name="us-east-1",
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        verify=str(setup.cert),
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    from keycask.crypto import self_signed_certificate

    cert_pem, key_pem = self_signed_certificate(["localhost"], ["127.0.0.1"])
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    with pg_schema() as dsn:
        proxy = TcpProxy(dsn).start()
        cluster = Cluster(tmp_path, dsn)
        tls = {
            "KEYCASK_TLS_CERT": str(cert),
            "KEYCASK_TLS_KEY": str(key),
            "KEYCASK_PROXY_PROTOCOL_FROM": f"{BALANCER}/32",
        }
        cluster.nodes = [
            TlsServer(
                tmp_path / f"node{name}",
                env_extra={"KEYCASK_STORAGE": node_dsn, **tls},
                ca=cert,
            )
            for name, node_dsn in (("a", dsn), ("b", dsn), ("c", proxy.dsn(dsn)))
        ]
        lb: HaProxy | None = None
        try:
            cluster.start()
            port = free_port()
            config = haproxy_config(
                f"127.0.0.1:{port}", [f"127.0.0.1:{n.port}" for n in cluster.nodes], cert
            )
            lb = HaProxy(tmp_path, config, port).start()
            yield Setup(cluster, proxy, lb, cert, cluster.admin)
        finally:
            if lb is not None:
                print(f"haproxy log:\n{lb.log()[-3000:]}")
                lb.stop()
            cluster.stop()
            proxy.close()


def served(setup: Setup) -> Counter[str]:
    """KMS calls each node's audit segment records, by node."""
    counts: Counter[str] = Counter()
    for node in setup.cluster.nodes:
        for record in audit_records(node.data_dir):
            if record.get("operation") in SERVED:
                counts[node.data_dir.name] += 1
    return counts


def calls_through(setup: Setup, key: str, count: int, *, writes: bool = False) -> list[str]:
    """``count`` consecutive calls through HAProxy, each on a connection of
    its own; the failures, described."""
    failures = []
    blob = lb_client(setup).encrypt(KeyId=key, Plaintext=b"probe", EncryptionContext=CONTEXT)[
        "CiphertextBlob"
    ]
    for n in range(count):
        kms = lb_client(setup)
        try:
            if writes and n % 5 == 0:
                kms.create_key(Description=f"through haproxy {n}")
            elif n % 2:
                got = kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"]
                if got != b"probe":
                    failures.append(f"call {n}: wrong plaintext")
            else:
                kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=CONTEXT)
        except Exception as error:
            failures.append(f"call {n}: {type(error).__name__}: {error}")
    return failures


def test_haproxy_from_the_docs_in_front_of_three_nodes(setup: Setup) -> None:
    a, _, c = setup.cluster.nodes
    lb = setup.lb
    # Every node passes HAProxy's health check at first.
    for name in ("kms-a", "kms-b", "kms-c"):
        assert not lb.said(name, "DOWN"), lb.log()

    # -- boto3 through HAProxy, spread over the nodes --
    kms = lb_client(setup)
    key = kms.create_key(Description="through haproxy")["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"balanced", EncryptionContext=CONTEXT)[
        "CiphertextBlob"
    ]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"] == b"balanced"
    started = time.monotonic()
    failures = calls_through(setup, key, 30, writes=True)
    assert not failures, failures
    spread = served(setup)
    print(f"haproxy: 30 calls in {time.monotonic() - started:.1f} s; served per node: {spread}")
    assert len(spread) == 3, spread

    # -- the client's own address reaches the node (PROXY protocol v2) --
    assert status_through(setup, CLIENT) == 400  # UnknownOperation, audited
    seen = {
        record.get("source_ip")
        for node in setup.cluster.nodes
        for record in audit_records(node.data_dir)
    }
    assert CLIENT in seen, seen
    assert ELSEWHERE not in seen  # /readyz is not audited; nothing else came from there

    # -- node A killed: out of the rotation; calls keep succeeding --
    mark = len(lb.log())
    a.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    time.sleep(3)
    failures = calls_through(setup, key, 50, writes=True)
    assert not failures, failures
    poll("HAProxy to mark kms-a DOWN", lambda: lb.said("kms-a", "DOWN", mark), 10)
    print(f"haproxy: kms-a killed; 50 calls from {time.monotonic() - killed_at:.1f} s on all ok")

    # -- node C alive but not ready (PostgreSQL unreachable): out too --
    mark = len(lb.log())
    setup.proxy.cut()
    cut_at = time.monotonic()
    poll("C's /readyz 503 storage unreachable", lambda: _unready(c), 15, interval=0.2)
    poll("HAProxy to mark kms-c DOWN", lambda: lb.said("kms-c", "DOWN", mark), 20, interval=0.2)
    print(f"haproxy: kms-c DOWN {time.monotonic() - cut_at:.1f} s after its store went away")
    before = served(setup)
    failures = calls_through(setup, key, 50, writes=True)
    assert not failures, failures
    after = served(setup)
    print(f"haproxy: with kms-c unready, served per node went from {before} to {after}")
    assert after["nodec"] == before["nodec"], "HAProxy sent calls to the unready node"
    assert after["nodeb"] > before["nodeb"]

    # -- C ready again: back in the rotation --
    mark = len(lb.log())
    setup.proxy.restore()
    poll("HAProxy to mark kms-c UP", lambda: lb.said("kms-c", "UP", mark), 30, interval=0.2)
    before = served(setup)
    failures = calls_through(setup, key, 20)
    assert not failures, failures
    after = served(setup)
    print(f"haproxy: kms-c back; served per node went from {before} to {after}")
    assert after["nodec"] > before["nodec"]


def _unready(node: TlsServer) -> bool | None:
    status, body = readyz(node)
    return True if status == 503 and "storage unreachable" in body else None
