"""Two production nodes (not ``--dev``) on one PostgreSQL store, set up and
operated exactly as docs/deployment.md says, through the operator CLI.

``keycask operator init --storage`` on node A; A's ``seal.json`` and
``operator.json`` copied into B's data dir; both servers started (plain HTTP
on loopback) and both sealed; each node unsealed with its own three shares;
a second ``operator init`` against the same store refused; a barrier
rotation on A while B serves; ``operator seal`` on B alone.

Runs on a PostgreSQL schema of its own (``pgserver.shared_dsn()``).
"""

from __future__ import annotations

import json
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cluster import pg_schema, poll
from production import Production, keycask

CONTEXT = {"test": "cluster-production"}


def _code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def _refused_sealed(node: Production) -> None:
    with pytest.raises(ClientError) as refused:
        node.client().list_keys()
    assert _code(refused.value) == "KMSInvalidStateException", refused.value.response
    status, body = node.health("/readyz")
    assert status == 503 and body.get("status") == "sealed", (status, body)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Production, Production, str]]:
    with pg_schema() as dsn:
        a = Production(tmp_path / "a", tls=False)
        b = Production(tmp_path / "b", tls=False)
        try:
            yield a, b, dsn
        finally:
            for node in (a, b):
                if node.proc is not None:
                    node.stop()


def test_two_production_nodes_on_one_store(
    pair: tuple[Production, Production, str], tmp_path: Path
) -> None:
    a, b, dsn = pair

    # -- init on A, copy the seal and the operator token's hash to B --
    init = a.initialise("--seal", "shamir", "--shares", "5", "--threshold", "3", "--storage", dsn)
    assert not (a.data_dir / "keycask.db").exists()  # the store is PostgreSQL
    b.init = init
    b.data_dir.mkdir(mode=0o700)
    for name in ("seal.json", "operator.json"):
        shutil.copy2(a.data_dir / name, b.data_dir / name)
        (b.data_dir / name).chmod(0o600)
    assert stat.S_IMODE(b.data_dir.stat().st_mode) == 0o700

    # -- both start sealed --
    for node in (a, b):
        node.start("--storage", dsn)
    for node in (a, b):
        assert node.status()["sealed"] is True
        _refused_sealed(node)

    # -- A unsealed (three shares, one operator each): A serves, B refuses --
    for share in a.shares[:3]:
        a.unseal(share)
    assert a.status()["sealed"] is False
    assert a.health("/readyz")[0] == 200
    ka = a.client()
    key = ka.create_key(Description="made on A")["KeyMetadata"]["KeyId"]
    blob = ka.encrypt(KeyId=key, Plaintext=b"from A", EncryptionContext=CONTEXT)["CiphertextBlob"]
    assert b.status()["sealed"] is True
    _refused_sealed(b)

    # -- B unsealed with three other shares: A's key decrypts on B --
    for share in b.shares[2:]:
        b.unseal(share)
    assert b.status()["sealed"] is False
    assert b.health("/readyz")[0] == 200
    kb = b.client()
    assert kb.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"] == b"from A"
    blob_b = kb.encrypt(KeyId=key, Plaintext=b"from B", EncryptionContext=CONTEXT)["CiphertextBlob"]
    assert ka.decrypt(CiphertextBlob=blob_b, EncryptionContext=CONTEXT)["Plaintext"] == b"from B"

    # -- exactly one node runs the scheduled jobs, and operator status says which --
    def runners() -> list[Production] | None:
        found = [node for node in (a, b) if node.status().get("runs_jobs") is True]
        return found if len(found) == 1 else None

    poll("one node to say it runs the scheduled jobs", runners, 30, interval=0.5)

    # -- a second init against the same store is refused and leaves no seal --
    again = tmp_path / "again"
    again.mkdir(mode=0o700)
    refused = keycask(
        "operator", "init", "--data-dir", str(again), "--seal", "shamir",
        "--storage", dsn, "--json", check=False,
    )  # fmt: skip
    assert refused.returncode != 0, refused.stdout
    assert "already initialised" in refused.stderr, refused.stderr
    assert "shares" not in refused.stdout and "operator_token" not in refused.stdout
    assert list(again.iterdir()) == [], list(again.iterdir())
    # ... and the cluster's seal still opens the store: nothing was overwritten.
    assert kb.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"] == b"from A"

    # -- barrier rotation on A while B encrypts and decrypts --
    _rotation_while_b_serves(a, b, key, [(blob, b"from A"), (blob_b, b"from B")])

    # -- B sealed: B refuses, A still serves --
    b.operator("seal", "--json")
    assert b.status()["sealed"] is True
    _refused_sealed(b)
    assert ka.decrypt(CiphertextBlob=blob_b, EncryptionContext=CONTEXT)["Plaintext"] == b"from B"
    ka.encrypt(KeyId=key, Plaintext=b"A still serves")
    assert a.health("/readyz")[0] == 200
    # A sealed node lets the jobs go: A runs them now.
    poll("A to run the scheduled jobs", lambda: a.status().get("runs_jobs") or None, 30)


def _rotation_while_b_serves(
    a: Production, b: Production, key: str, before: list[tuple[bytes, bytes]]
) -> None:
    term = a.status()["term"]
    ka = a.client()
    # Keys made on A both before and during the rotation, used on B throughout.
    keys = [key] + [
        ka.create_key(Description=f"before rotation {i}")["KeyMetadata"]["KeyId"] for i in range(5)
    ]
    errors: list[str] = []
    acked: list[tuple[bytes, bytes]] = list(before)
    lock = threading.Lock()
    stop = threading.Event()
    calls = [0]

    def b_load() -> None:
        kb = b.client()
        n = 0
        while not stop.is_set():
            with lock:
                candidates = list(keys)
                known = list(acked)
            n += 1
            plaintext = f"B {n}".encode()
            try:
                if n % 10 == 0:  # B writes to the store too, old term or new
                    mine = kb.create_key(Description=f"B {n}")["KeyMetadata"]["KeyId"]
                    with lock:
                        keys.append(mine)
                    candidates.append(mine)
                made = kb.encrypt(
                    KeyId=candidates[n % len(candidates)],
                    Plaintext=plaintext,
                    EncryptionContext=CONTEXT,
                )["CiphertextBlob"]
                old, expected = known[n % len(known)]
                got = kb.decrypt(CiphertextBlob=old, EncryptionContext=CONTEXT)["Plaintext"]
            except Exception as error:
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                continue
            with lock:
                calls[0] += 2
                acked.append((made, plaintext))
                if got != expected:
                    errors.append(f"B decrypted {expected!r} as {got!r}")
            stop.wait(0.02)

    loader = threading.Thread(target=b_load)
    loader.start()
    try:
        time.sleep(1)
        rotated = a.operator("rotate", "--json")
        answer: dict[str, Any] = json.loads(rotated.stdout)
        print(f"rotation: {answer}")
        # New keys made on A after the rotation, on the new term, used by B too.
        for i in range(5):
            made = ka.create_key(Description=f"after rotation {i}")["KeyMetadata"]["KeyId"]
            with lock:
                keys.append(made)
        started = time.monotonic()
        status = poll(
            "the barrier rewrite to finish on A",
            lambda: s if not (s := a.status())["rewrite_pending"] else None,
            120,
            interval=0.5,
        )
        print(f"rotation: rewrite done {time.monotonic() - started:.1f} s after; {status}")
        assert status["term"] == term + 1
        # B learns of the new term (its status reads it from the shared store).
        b_status = poll(
            "B to see the new barrier term",
            lambda: s if (s := b.status())["term"] == term + 1 else None,
            30,
            interval=0.5,
        )
        print(f"rotation: B's status {b_status}")
        time.sleep(1)  # B keeps serving after the rewrite too
    finally:
        stop.set()
        loader.join(timeout=60)
    with lock:
        print(f"rotation: B served {calls[0]} calls during and after; errors: {errors}")
        assert not errors, errors[:10]
        assert calls[0] > 0
        written = list(acked)

    # After the rewrite, B (and A) decrypt everything, B's own new values too.
    kb = b.client()
    for blob, plaintext in written:
        assert kb.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"] == plaintext
        assert ka.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"] == plaintext
    for made in keys:
        assert kb.describe_key(KeyId=made)["KeyMetadata"]["KeyState"] == "Enabled"
    # B writes again after the rewrite, and A reads it.
    after = kb.create_key(Description="made on B after the rewrite")["KeyMetadata"]["KeyId"]
    late = kb.encrypt(KeyId=after, Plaintext=b"late", EncryptionContext=CONTEXT)["CiphertextBlob"]
    assert ka.decrypt(CiphertextBlob=late, EncryptionContext=CONTEXT)["Plaintext"] == b"late"
    assert kb.decrypt(CiphertextBlob=late, EncryptionContext=CONTEXT)["Plaintext"] == b"late"
