"""Barrier rotation under load, end to end: a production server (Shamir seal)
serves four clients with a mixed workload while an operator rotates the barrier
three times. No request fails; the background rewrite moves every stored value
to the last term; every ciphertext acknowledged during the run still decrypts,
also after a restart and unseal.

Automatic rotation once a term has reserved ``rotate_at`` seals is a property
of the Barrier alone (its ``reservation_block``/``rotate_at`` options); it is
covered at unit level by
tests/unit/test_barrier_terms.py::test_seals_are_reserved_before_use_and_terms_rotate_at_the_bound.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from production import Production, unsealed_shamir

CLIENTS = 4
ROTATIONS = 3
UNIT_TEST = Path(__file__).resolve().parent.parent / "unit" / "test_barrier_terms.py"


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Production]:
    with unsealed_shamir(tmp_path / "data") as server:
        yield server


class Workload:
    """Client threads, each with its own boto3 client, until ``stop``."""

    def __init__(self, prod: Production, clients: int) -> None:
        # Clients are made here: boto3's default session is not thread-safe.
        self._clients = [prod.client() for _ in range(clients)]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self.acked: list[tuple[bytes, bytes]] = []  # (ciphertext, plaintext)
        self.requests = 0
        self._threads = [
            threading.Thread(target=self._run, args=(n, kms), daemon=True)
            for n, kms in enumerate(self._clients)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
        for kms in self._clients:
            kms.close()  # an idle keep-alive TLS connection holds up a stop for 10 s

    def _call(self, what: str, call: Any, **kwargs: Any) -> Any:
        try:
            answer = call(**kwargs)
        except Exception as error:  # every failure counts, whatever its kind
            with self._lock:
                self.errors.append(f"{what}: {error!r}")
            return None
        with self._lock:
            self.requests += 1
        return answer

    def _run(self, n: int, kms: Any) -> None:
        created = self._call("CreateKey", kms.create_key, Description=f"client {n}")
        if created is None:
            return
        keys = [created["KeyMetadata"]["KeyId"]]
        mine: list[tuple[bytes, bytes]] = []
        i = 0
        # A pause between requests keeps what must be decrypted afterwards small.
        while not self._stop.wait(0.01):
            i += 1
            key = keys[i % len(keys)]
            step = i % 5
            if step == 0 and i % 20 == 0:
                made = self._call("CreateKey", kms.create_key, Description=f"client {n} #{i}")
                if made is not None:
                    keys.append(made["KeyMetadata"]["KeyId"])
            elif step == 0:
                self._call(
                    "TagResource", kms.tag_resource, KeyId=key,
                    Tags=[{"TagKey": f"t{i % 7}", "TagValue": str(i)}],
                )  # fmt: skip
            elif step in (1, 3):
                plaintext = os.urandom(24)
                answer = self._call("Encrypt", kms.encrypt, KeyId=key, Plaintext=plaintext)
                if answer is not None:
                    mine.append((answer["CiphertextBlob"], plaintext))
                    with self._lock:
                        self.acked.append(mine[-1])
            elif step == 2 and mine:
                blob, plaintext = mine[(i * 7919) % len(mine)]
                answer = self._call("Decrypt", kms.decrypt, CiphertextBlob=blob)
                if answer is not None and answer["Plaintext"] != plaintext:
                    with self._lock:
                        self.errors.append(f"Decrypt: wrong plaintext for {blob.hex()[:32]}")
            else:
                answer = self._call(
                    "GenerateDataKey", kms.generate_data_key, KeyId=key, KeySpec="AES_256"
                )
                if answer is not None:
                    with self._lock:
                        self.acked.append((answer["CiphertextBlob"], answer["Plaintext"]))


def _terms_at_rest(db: Path) -> dict[str, int | None]:
    """Each stored path's barrier term, read from the SQLite file directly."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT path, value FROM kv").fetchall()
    finally:
        conn.close()
    terms: dict[str, int | None] = {}
    for path, value in rows:
        value = bytes(value)
        if len(value) < 5 or value[0] != 0x01:
            terms[path] = None
        else:
            terms[path] = struct.unpack(">I", value[1:5])[0]
    return terms


def _decrypt_all(prod: Production, acked: list[tuple[bytes, bytes]]) -> None:
    """Every acknowledged ciphertext decrypts to its plaintext (four clients)."""
    clients = [prod.client(retries=3) for _ in range(CLIENTS)]
    wrong: list[str] = []

    def check(n: int) -> None:
        for blob, plaintext in acked[n::CLIENTS]:
            if clients[n].decrypt(CiphertextBlob=blob)["Plaintext"] != plaintext:
                wrong.append(blob.hex()[:32])

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(check, range(CLIENTS)))  # re-raises any failure
    finally:
        for kms in clients:
            kms.close()
    assert wrong == []


def test_rotation_under_load(prod: Production) -> None:
    started = time.monotonic()
    load = Workload(prod, CLIENTS)
    load.start()
    try:
        time.sleep(1.5)
        terms = []
        for _ in range(ROTATIONS):
            done = prod.operator("rotate", "--json")
            terms.append(json.loads(done.stdout)["term"])
            time.sleep(1.5)
        assert terms == [2, 3, 4]
        deadline = time.monotonic() + 30
        while True:
            status = prod.status()
            if status["term"] == 4 and status["rewrite_pending"] is False:
                break
            assert time.monotonic() < deadline, f"the rewrite did not finish: {status}"
            time.sleep(0.5)
    finally:
        load.stop()
    assert load.errors == [], f"{len(load.errors)} of {load.requests} requests failed"
    assert load.requests > 200, load.requests
    assert len(load.acked) > 50

    at_rest = _terms_at_rest(prod.data_dir / "keycask.db")
    assert "core/keyring" in at_rest
    old = {path: term for path, term in at_rest.items() if path != "core/keyring" and term != 4}
    assert old == {}, f"values not under term 4: {sorted(old.items())[:20]}"
    assert len(at_rest) > 20

    _decrypt_all(prod, load.acked)
    prod.stop()
    prod.start()
    prod.unseal_with(prod.shares[2:])
    assert prod.status()["term"] == 4
    _decrypt_all(prod, load.acked)
    assert "Traceback" not in prod.log()
    assert time.monotonic() - started < 90


def test_automatic_rotation_is_covered_by_a_unit_test() -> None:
    """Rotation at the usage bound is the Barrier's own (see the module doc)."""
    source = UNIT_TEST.read_text()
    assert "def test_seals_are_reserved_before_use_and_terms_rotate_at_the_bound" in source
    assert '"reservation_block"' in source and '"rotate_at"' in source
