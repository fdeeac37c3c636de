"""Several worker processes on one port and one store behave as one server."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server

CONTEXT = {"purpose": "workers"}


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


def _sizes(audit: Path) -> list[int]:
    """Each worker's audit segment size (a worker still starting has none yet)."""
    paths = [audit / f"server-{slot}.jsonl" for slot in (0, 1)]
    return [p.stat().st_size if p.exists() else 0 for p in paths]


def _until_both_workers_serve(
    server: Server, use: Callable[[Any], object], minimum: int = 8
) -> list[Any]:
    """New clients (each a kept-alive connection), each used once, until both
    workers have answered at least one of them. Which worker accepts a
    connection is the kernel's choice; the bound is generous."""
    audit = server.data_dir / "audit"
    before = _sizes(audit)
    clients = []
    for _ in range(300):
        client = server.client()
        use(client)
        clients.append(client)
        grown = [now > then for now, then in zip(_sizes(audit), before, strict=True)]
        if len(clients) >= minimum and all(grown):
            return clients
    raise AssertionError("the kernel never gave a connection to both workers")


def test_every_worker_sees_every_change_at_once(workers: Server) -> None:
    admin = workers.client()
    key = admin.create_key(Description="shared")["KeyMetadata"]["KeyId"]
    clients = _until_both_workers_serve(workers, lambda c: c.describe_key(KeyId=key))
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


def test_conflicting_writes_from_both_workers_leave_one_winner(workers: Server) -> None:
    admin = workers.client()
    targets = [admin.create_key()["KeyMetadata"]["KeyId"] for _ in range(4)]
    clients = _until_both_workers_serve(workers, lambda c: c.describe_key(KeyId=targets[0]))
    start = threading.Barrier(len(clients))

    def attempt(index: int) -> tuple[str, str]:
        target = targets[index % len(targets)]
        start.wait()  # every connection asks at the same moment
        try:
            clients[index].create_alias(AliasName="alias/race", TargetKeyId=target)
        except ClientError as error:
            return error.response["Error"]["Code"], target
        return "created", target

    with ThreadPoolExecutor(len(clients)) as pool:
        outcomes = list(pool.map(attempt, range(len(clients))))
    winners = [target for outcome, target in outcomes if outcome == "created"]
    assert len(winners) == 1, outcomes
    assert {outcome for outcome, _ in outcomes} == {"created", "AlreadyExistsException"}
    aliases = [a for a in admin.list_aliases()["Aliases"] if a["AliasName"] == "alias/race"]
    assert [a["TargetKeyId"] for a in aliases] == winners


def test_each_worker_audits_to_its_own_segment_and_all_verify(workers: Server) -> None:
    audit = workers.data_dir / "audit"
    key = workers.client().create_key()["KeyMetadata"]["KeyId"]

    # Which worker accepts a connection is the kernel's choice: open new ones
    # until both have served (a few usually suffice; the bound is generous).
    _until_both_workers_serve(workers, lambda c: c.describe_key(KeyId=key), minimum=1)
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

    def decrypts(client: Any) -> None:
        assert client.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"

    # Both the survivor and the replacement answer, and the old ciphertext decrypts.
    _until_both_workers_serve(workers, decrypts)


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
