"""A real PostgreSQL restart under load, and a crash (issue #8).

``test_cluster.py`` cuts a TCP proxy between the nodes and PostgreSQL; here
PostgreSQL itself goes away. Each test starts a private PostgreSQL server of
its own (``pgserver.py``: never the machine's shared one, which other tests
use), three ``keycask server --dev`` nodes on it, and a light mixed load from
threads, then

* ``pg_ctl restart -m fast``: the server terminates every connection
  (pooled, LISTEN and the jobs lock's session) and comes back, or
* ``pg_ctl stop -m immediate`` (a crash: no shutdown checkpoint, WAL recovery
  at the next start), down a few seconds, then started again.

Checked: every node reports ready again by itself within 15 s of PostgreSQL
answering (no keycask restart), /readyz said ``storage unreachable`` while
PostgreSQL was down for a while (the crash case), clients saw only connection
errors or KMSInternalException/5xx (counted and printed) and never a wrong
answer, and every acknowledged key and ciphertext is intact and decrypts on
every node.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from cluster import CONNECTION_ERRORS, Cluster, client, poll, readyz

from conftest import Server
from pgserver import PgServer, private_postgres

WORKERS = 3
PAUSE = 0.05
WARMUP = 3.0
AFTER = 3.0
# The crash case: PostgreSQL down this long before it starts again; longer
# than the connection pool's timeout (10 s), so that calls waiting for the
# store give up and the clients see the errors, not only a delay.
DOWN_FOR = 12.0
READY_WITHIN = 15.0
# What a client may see while the store is gone: the node is unreachable or
# says it failed. Anything else (a 4xx, a wrong plaintext) fails the test.
TRANSIENT: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, ReadTimeoutError)


@dataclass
class Load:
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: list[str] = field(default_factory=list)
    ciphertexts: list[tuple[bytes, bytes, dict[str, str]]] = field(default_factory=list)
    ok: Counter[str] = field(default_factory=Counter)
    transient: Counter[str] = field(default_factory=Counter)  # "op: error" -> count
    wrong: list[str] = field(default_factory=list)
    ok_at: list[tuple[float, str]] = field(default_factory=list)  # (time, node) of successes


def _accepted(error: Exception) -> str | None:
    """The name of an accepted transient error, or None."""
    if isinstance(error, TRANSIENT):
        return type(error).__name__
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code == "KMSInternalException" or status >= 500:
            return f"{code or 'HTTP'} {status}"
    return None


def _worker(nodes: list[Server], seed: int, stop: threading.Event, load: Load) -> None:
    rng = random.Random(seed)
    clients = [client(node, read_timeout=30, connect_timeout=2) for node in nodes]
    mine: list[str] = []
    blobs: list[tuple[bytes, bytes, dict[str, str]]] = []
    while not stop.is_set():
        n = rng.randrange(len(clients))
        kms = clients[n]
        roll = rng.random()
        op = "?"
        try:
            if not mine or roll < 0.1:
                op = "CreateKey"
                key = kms.create_key(Description=f"pg restart {seed}")["KeyMetadata"]["KeyId"]
                mine.append(key)
                with load.lock:
                    load.keys.append(key)
            elif roll < 0.5:
                op = "Encrypt"
                plaintext = rng.randbytes(rng.randrange(1, 100))
                context = {"w": str(seed), "n": str(len(blobs))}
                blob = kms.encrypt(
                    KeyId=rng.choice(mine), Plaintext=plaintext, EncryptionContext=context
                )["CiphertextBlob"]
                blobs.append((blob, plaintext, context))
            elif roll < 0.8 and blobs:
                op = "Decrypt"
                blob, plaintext, context = rng.choice(blobs)
                got = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]
                if got != plaintext:
                    with load.lock:
                        load.wrong.append(f"Decrypt on node {n}: wrong plaintext")
            else:
                op = "GenerateDataKey"
                context = {"w": str(seed), "dk": str(len(blobs))}
                answer = kms.generate_data_key(
                    KeyId=rng.choice(mine), KeySpec="AES_256", EncryptionContext=context
                )
                blobs.append((answer["CiphertextBlob"], answer["Plaintext"], context))
        except Exception as error:
            name = _accepted(error)
            with load.lock:
                if name is None:
                    load.wrong.append(f"{op} on node {n}: {type(error).__name__}: {error}")
                else:
                    load.transient[f"{op}: {name}"] += 1
            stop.wait(0.1)
            continue
        with load.lock:
            load.ok[op] += 1
            load.ok_at.append((time.monotonic(), nodes[n].data_dir.name))
        stop.wait(PAUSE)
    with load.lock:
        load.ciphertexts.extend(blobs)


@pytest.fixture
def pg_cluster(tmp_path: Path) -> Iterator[tuple[PgServer, Cluster]]:
    with private_postgres() as pg:
        nodes = Cluster(tmp_path, pg.dsn)
        try:
            yield pg, nodes.start()
        finally:
            nodes.stop()


def _watch_readiness(
    nodes: list[Server], since: float, done: threading.Event, seen: dict[str, str]
) -> None:
    """Record the first /readyz 503 naming storage each node gives after ``since``."""

    def probe(node: Server) -> None:
        name = node.data_dir.name
        while not done.is_set() and name not in seen:
            status, body = readyz(node, timeout=5)
            if status == 503 and "storage unreachable" in body:
                seen[name] = f"{time.monotonic() - since:.1f} s"
            done.wait(0.05)

    with ThreadPoolExecutor(len(nodes)) as pool:
        list(pool.map(probe, nodes))


def _through(
    pg: PgServer, cluster: Cluster, what: str, event: Callable[[PgServer], None]
) -> tuple[Load, dict[str, str]]:
    """Run the load, ``event(pg)`` in the middle, and the checks; returns the
    load's record and when each node first said ``storage unreachable``."""
    nodes = cluster.nodes
    for node in nodes:
        assert readyz(node)[0] == 200
    load = Load()
    stop = threading.Event()
    workers = [
        threading.Thread(target=_worker, args=(nodes, seed, stop, load)) for seed in range(WORKERS)
    ]
    started = time.monotonic()
    for w in workers:
        w.start()
    unready: dict[str, str] = {}
    watching = threading.Event()
    try:
        stop.wait(WARMUP)
        with load.lock:
            before = sum(load.ok.values())
        assert before > 0, f"no call succeeded before the {what}: {dict(load.transient)}"
        event_at = time.monotonic()
        watcher = threading.Thread(
            target=_watch_readiness, args=(nodes, event_at, watching, unready)
        )
        watcher.start()
        event(pg)
        back_at = time.monotonic()
        # Every node ready again by itself.
        back = {}
        for node in nodes:
            poll(
                f"{node.data_dir.name} ready again after the {what}",
                lambda node=node: True if readyz(node)[0] == 200 else None,
                READY_WITHIN,
                interval=0.1,
            )
            back[node.data_dir.name] = round(time.monotonic() - back_at, 1)
        watching.set()
        watcher.join(timeout=30)
        # ... and serving the load again, every one of them.
        for node in nodes:
            name = node.data_dir.name
            poll(
                f"a call served by {name} after the {what}",
                lambda name=name: (
                    True if any(t > back_at and n == name for t, n in list(load.ok_at)) else None
                ),
                READY_WITHIN,
                interval=0.2,
            )
        stop.wait(AFTER)
    finally:
        watching.set()
        stop.set()
        for w in workers:
            w.join(timeout=120)
    print(
        f"{what}: PostgreSQL gone for {back_at - event_at:.1f} s; /readyz 503 'storage "
        f"unreachable' seen (s after the event): {unready or 'never'}; ready again after "
        f"PostgreSQL answered (s): {back}"
    )
    print(
        f"{what}: acknowledged {dict(load.ok)} in {time.monotonic() - started:.1f} s; "
        f"transient errors seen by clients ({sum(load.transient.values())}): "
        f"{dict(load.transient)}"
    )
    assert not load.wrong, load.wrong[:20]
    assert not any(w.is_alive() for w in workers)

    # Everything acknowledged, before, during and after, is intact on every node.
    checked = time.monotonic()

    def check(node: Server) -> list[str]:
        kms = client(node, read_timeout=30)
        bad = []
        for key in load.keys:
            state = kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"]
            if state != "Enabled":
                bad.append(f"{key}: {state}")
        for blob, plaintext, context in load.ciphertexts:
            try:
                got = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]
            except ClientError as error:
                bad.append(f"decrypt: {error}")
                continue
            if got != plaintext:
                bad.append("decrypt: wrong plaintext")
        return bad

    with ThreadPoolExecutor(len(nodes)) as pool:
        bad = list(pool.map(check, nodes))
    print(
        f"{what}: {len(load.keys)} keys and {len(load.ciphertexts)} ciphertexts checked on "
        f"{len(nodes)} nodes in {time.monotonic() - checked:.1f} s"
    )
    assert bad == [[]] * len(nodes), [b[:5] for b in bad]
    return load, unready


@pytest.mark.slow
def test_postgres_restart_under_load(pg_cluster: tuple[PgServer, Cluster]) -> None:
    pg, cluster = pg_cluster
    _through(pg, cluster, "pg_ctl restart -m fast", lambda pg: pg.restart())


@pytest.mark.slow
def test_postgres_crash_under_load(pg_cluster: tuple[PgServer, Cluster]) -> None:
    pg, cluster = pg_cluster

    def crash(pg: PgServer) -> None:
        pg.crash()
        time.sleep(DOWN_FOR)
        pg.start()

    load, unready = _through(pg, cluster, "pg_ctl stop -m immediate, then start", crash)
    # Down for longer than a call waits for the store: every node said why it
    # was not ready, and some calls failed (with accepted errors only).
    assert set(unready) == {n.data_dir.name for n in cluster.nodes}, unready
    assert load.transient, "no call failed while PostgreSQL was down"
