"""Several worker processes on one port and one store behave as one server."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server

CONTEXT = {"purpose": "workers"}


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", workers=2).start()
    yield srv
    if srv.proc is not None:
        srv.stop(signal.SIGKILL)


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _clients(server: Server, n: int) -> list[object]:
    # A new client is a new connection: the kernel spreads them over the workers.
    return [server.client() for _ in range(n)]


def _served(audit: Path) -> list[bool]:
    """Whether each worker has written audit records (a worker still starting
    has not even created its segment yet)."""
    return [
        (audit / f"server-{slot}.jsonl").exists()
        and (audit / f"server-{slot}.jsonl").stat().st_size > 0
        for slot in (0, 1)
    ]


def _clients_on_both_workers(server: Server, key: str) -> list[Any]:
    """Clients (each a kept-alive connection) until both workers have served one."""
    audit = server.data_dir / "audit"
    clients = []
    for _ in range(300):
        client = server.client()
        client.describe_key(KeyId=key)
        clients.append(client)
        if len(clients) >= 8 and all(_served(audit)):
            return clients
    raise AssertionError("the kernel never gave a connection to both workers")


def test_every_worker_sees_every_change_at_once(workers: Server) -> None:
    admin = workers.client()
    key = admin.create_key(Description="shared")["KeyMetadata"]["KeyId"]
    clients = _clients_on_both_workers(workers, key)
    blobs = [
        c.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=CONTEXT)["CiphertextBlob"]
        for c in clients
    ]
    for c in clients:  # every worker now has the key cached
        for blob in blobs:
            assert c.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"] == b"x"
    admin.disable_key(KeyId=key)
    for c in clients:
        with pytest.raises(ClientError) as caught:
            c.encrypt(KeyId=key, Plaintext=b"x")
        assert caught.value.response["Error"]["Code"] == "DisabledException"
    admin.enable_key(KeyId=key)
    admin.create_alias(AliasName="alias/shared", TargetKeyId=key)
    for c in clients:
        assert c.encrypt(KeyId="alias/shared", Plaintext=b"y")["KeyId"].endswith(key)


def test_conflicting_writes_from_many_connections_leave_one_winner(workers: Server) -> None:
    clients = _clients(workers, 8)
    key = clients[0].create_key()["KeyMetadata"]["KeyId"]
    outcomes = []
    for c in clients:
        try:
            c.create_alias(AliasName="alias/race", TargetKeyId=key)
            outcomes.append("created")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert outcomes.count("created") == 1
    assert set(outcomes) == {"created", "AlreadyExistsException"}


def test_each_worker_audits_to_its_own_segment_and_all_verify(workers: Server) -> None:
    audit = workers.data_dir / "audit"
    key = workers.client().create_key()["KeyMetadata"]["KeyId"]

    # Which worker accepts a connection is the kernel's choice: open new ones
    # until both have served (a few usually suffice; the bound is generous).
    for _ in range(300):
        workers.client().describe_key(KeyId=key)
        if all(_served(audit)):
            break
    assert all(_served(audit))
    workers.stop()
    segments = sorted(p.name for p in audit.glob("server-*.jsonl"))
    assert segments == ["server-0.jsonl", "server-1.jsonl"]
    verified = workers.cli("audit", "verify")
    assert verified.stdout.startswith("ok:"), verified.stdout


def test_a_killed_worker_is_replaced(workers: Server) -> None:
    import os
    import time

    kms = workers.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"kept")["CiphertextBlob"]
    before = _children(workers.proc.pid)
    assert len(before) == 2
    os.kill(sorted(before)[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = _children(workers.proc.pid)
        if len(now) == 2 and now != before and workers.healthy():
            break
        time.sleep(0.1)
    assert len(now) == 2 and now != before
    for c in _clients(workers, 8):
        assert c.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"


def test_workers_stop_when_the_supervisor_is_killed(workers: Server) -> None:
    import time

    supervisor = workers.proc.pid
    children = _children(supervisor)
    assert len(children) == 2
    workers.stop(signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.1)
    alive = [c for c in children if Path(f"/proc/{c}/stat").exists() and "Z" not in
             Path(f"/proc/{c}/stat").read_text().rsplit(")", 1)[1].split()[0]]  # fmt: skip
    assert alive == []
