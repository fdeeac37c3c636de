"""A rekey in a cluster: two production nodes on one PostgreSQL store, each
with its own data dir, rekeyed on node A while node B serves.

A rekey moves the store to a new root key, which B does not hold: B must
seal itself as soon as A's rekey commits (one log line, no traceback), its
``operator status`` and ``/readyz`` must agree at every sample, and no KMS
call that B starts after A answered the rekey may succeed with the old
keys. Then the procedure of docs/deployment.md: A's new ``seal.json`` copied
to B, B unsealed with the new secret (no restart), B serves again.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cluster import pg_schema, poll
from production import Production, secret_file

CONTEXT = {"test": "cluster-rekey"}
SEALED_LINE = "sealed: the store was rekeyed on another node"


@dataclass(frozen=True)
class Call:
    started: float
    ended: float
    error: str | None  # the error code, None for a success


@dataclass(frozen=True)
class Sample:
    """One look at B: status, then /readyz, then status again."""

    started: float
    before: bool  # status says sealed
    ready: tuple[int, str]
    after: bool


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Production, Production, str]]:
    with pg_schema() as dsn:
        a = Production(tmp_path / "a", tls=False)
        b = Production(tmp_path / "b", tls=False)
        try:
            a.initialise("--seal", "shamir", "--shares", "5", "--threshold", "3", "--storage", dsn)
            b.init = a.init
            b.data_dir.mkdir(mode=0o700)
            for name in ("seal.json", "operator.json"):
                shutil.copy2(a.data_dir / name, b.data_dir / name)
            for node in (a, b):
                node.start("--storage", dsn)
            a.unseal_with(a.shares[:3])
            b.unseal_with(b.shares[2:])
            yield a, b, dsn
        finally:
            for node in (a, b):
                if node.proc is not None:
                    node.stop()


def test_a_rekey_on_one_node_seals_the_other_cleanly(
    cluster: tuple[Production, Production, str], tmp_path: Path
) -> None:
    a, b, _ = cluster
    ka, kb = a.client(), b.client()
    key = ka.create_key(Description="before the rekey")["KeyMetadata"]["KeyId"]
    blob = ka.encrypt(KeyId=key, Plaintext=b"old", EncryptionContext=CONTEXT)["CiphertextBlob"]
    assert kb.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"] == b"old"

    stop = threading.Event()
    calls: list[Call] = []
    samples: list[Sample] = []

    def use_b() -> None:
        client = b.client()
        while not stop.is_set():
            started = time.monotonic()
            error = None
            try:
                client.encrypt(KeyId=key, Plaintext=b"during", EncryptionContext=CONTEXT)
                client.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)
            except ClientError as exc:
                error = str(exc.response["Error"]["Code"])
            calls.append(Call(started, time.monotonic(), error))
            stop.wait(0.01)

    def watch_b() -> None:
        while not stop.is_set():
            started = time.monotonic()
            before = _sealed(b)
            status, body = b.health("/readyz")
            after = _sealed(b)
            samples.append(Sample(started, before, (status, str(body.get("status"))), after))

    threads = [threading.Thread(target=use_b), threading.Thread(target=watch_b)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)  # B serves, and says so
        passphrase = secret_file(tmp_path / "passphrase", "correct horse battery staple rekey")
        proof = tmp_path / "proof"
        proof.write_text("\n".join(a.shares[:3]) + "\n")
        proof.chmod(0o600)
        pending = a.operator(
            "rekey", "--json", "--seal", "passphrase", "--passphrase-file", str(passphrase),
            "--current-shares-file", str(proof),
        )  # fmt: skip
        assert json.loads(pending.stdout)["pending"] is True
        verified = a.operator("rekey-verify", "--json", "--passphrase-file", str(passphrase))
        answered = time.monotonic()
        assert json.loads(verified.stdout)["settled"] is True
        assert _sealed(b), "B still says it is unsealed"
        time.sleep(1.5)  # B stays sealed, and says so
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    # B served before the rekey...
    assert any(c.error is None and c.ended < answered for c in calls)
    # ... and nothing it started after A answered.
    late = [c for c in calls if c.started > answered]
    assert late, "B was not called after the rekey"
    served = [c for c in late if c.error is None]
    assert not served, f"B served {len(served)} calls after the rekey, the last at +" + (
        f"{served[-1].started - answered:.3f} s"
    )
    assert {c.error for c in late} == {"KMSInvalidStateException"}, {c.error for c in late}

    # Status and readiness agree at every sample that did not straddle a change.
    for sample in samples:
        if sample.before != sample.after:
            continue
        if sample.before:
            assert sample.ready == (503, "sealed"), sample
        else:
            assert sample.ready == (200, "ok"), sample
    assert any(not s.before for s in samples) and any(s.before for s in samples)

    # One clear line in B's log, no traceback.
    log = b.log()
    assert "Traceback" not in log, log
    assert log.count(SEALED_LINE) == 1, log
    assert "Traceback" not in a.log(), a.log()

    # The documented procedure: A's new seal file to B, then unseal B with
    # the new passphrase; no restart.
    shutil.copy2(a.data_dir / "seal.json", b.data_dir / "seal.json")
    status = b.status()
    assert status["sealed"] is True and status["seal"] == "passphrase", status
    opened = json.loads(b.operator("unseal", "--json", "--passphrase-file", str(passphrase)).stdout)
    assert opened["sealed"] is False and opened["seal"] == "passphrase", opened
    assert b.health("/readyz")[0] == 200
    kb = b.client()
    assert kb.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"] == b"old"
    made = kb.encrypt(KeyId=key, Plaintext=b"new", EncryptionContext=CONTEXT)["CiphertextBlob"]
    assert ka.decrypt(CiphertextBlob=made, EncryptionContext=CONTEXT)["Plaintext"] == b"new"
    log = b.log()
    assert "unsealed with the passphrase seal" in log and "Traceback" not in log, log
    assert "correct horse" not in log and "correct horse" not in a.log()


def test_an_idle_node_seals_itself_when_the_commit_is_seen(
    cluster: tuple[Production, Production, str], tmp_path: Path
) -> None:
    """B gets no request at all: it learns of A's rekey from the store's
    commit notice and seals then, not at its next request. Shamir to new
    Shamir shares; B then opens with three of the new shares."""
    a, b, _ = cluster
    ka = a.client()
    key = ka.create_key()["KeyMetadata"]["KeyId"]
    blob = ka.encrypt(KeyId=key, Plaintext=b"kept")["CiphertextBlob"]
    proof = tmp_path / "proof"
    proof.write_text("\n".join(a.shares[:3]) + "\n")
    proof.chmod(0o600)
    answer = json.loads(
        a.operator(
            "rekey", "--json", "--seal", "shamir", "--shares", "5", "--threshold", "3",
            "--current-shares-file", str(proof),
        ).stdout
    )  # fmt: skip
    new = list(answer["shares"])
    for share in new[:3]:
        a.operator("rekey-verify", "--json", stdin=share + "\n")
    answered = time.time()
    sealed_at = poll("B's log to say it sealed", lambda: _sealed_at(b), 10, interval=0.05)
    print(f"B sealed itself {sealed_at - answered:+.3f} s from A's answer")
    assert sealed_at < answered + 1.0, sealed_at - answered
    assert _sealed(b) and b.health("/readyz") == (503, {"status": "sealed"})
    status = b.status()
    assert SEALED_LINE in status["reason"] and "seal.json" in status["reason"], status
    assert "reason:    sealed: the store was rekeyed" in b.operator("status").stdout
    log = b.log()
    assert "Traceback" not in log and log.count(SEALED_LINE) == 1, log

    # The old shares open nothing now; with A's seal file B takes the new ones.
    b.unseal(a.shares[3])
    b.unseal(a.shares[4])
    refused = b.unseal(a.shares[0], check=False)
    assert refused.returncode != 0 and "does not open the keyring" in refused.stderr
    shutil.copy2(a.data_dir / "seal.json", b.data_dir / "seal.json")
    b.unseal_with([new[4], new[3], new[1]])
    assert "reason" not in b.status()
    assert b.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"
    assert "Traceback" not in b.log()


def _sealed(node: Production) -> bool:
    """What the node's operator Status says (one HTTP call, no CLI start-up)."""
    status, answer = node.raw("KeycaskOperator.Status", {"Authorization": "Bearer " + node.token})
    assert status == 200, answer
    return bool(answer["sealed"])


def _sealed_at(node: Production) -> float | None:
    """When the node logged that it sealed itself after a rekey elsewhere."""
    for line in node.log().splitlines():
        if SEALED_LINE in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()
    return None
