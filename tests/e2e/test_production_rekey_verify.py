"""A rekey is two-phase: ``operator rekey`` only writes the new seal aside,
and the store keeps opening with the current seal until the operators give a
threshold of the new shares (or the new passphrase) back with
``operator rekey-verify``; ``operator rekey-cancel`` discards it. A client
that hangs up right after sending Rekey therefore loses nothing.

After the move, the background rewrite re-seals every value under the new
barrier term and retires the old terms: a database snapshot from before the
rekey, opened with the old shares, decrypts nothing written after it."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from production import Production, unsealed_shamir

from keycask.app import STORE_FILE
from keycask.barrier.barrier import term_of
from keycask.barrier.keyring import KEYRING_PATH, Keyring
from keycask.crypto import AuthenticationFailed, KeyMaterial, Share, combine_shares, open_sealed
from keycask.seal import REKEY_SEAL_FILE, SEAL_FILE
from keycask.storage.sqlite import SQLiteStorage

pytestmark = pytest.mark.slow


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Production]:
    with unsealed_shamir(tmp_path / "data") as server:
        yield server


def _encrypt(prod: Production, count: int = 3) -> list[bytes]:
    kms = prod.client()
    try:
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        return [
            kms.encrypt(KeyId=key, Plaintext=b"message %d" % i)["CiphertextBlob"]
            for i in range(count)
        ]
    finally:
        kms.close()


def _decrypt_all(prod: Production, blobs: list[bytes]) -> None:
    kms = prod.client()
    try:
        for i, blob in enumerate(blobs):
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"message %d" % i
    finally:
        kms.close()


def _audit(prod: Production) -> list[dict[str, Any]]:
    path = prod.data_dir / "audit" / "server.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _rekey_answered(prod: Production) -> bool:
    """Whether the server has finished a Rekey call (its second record)."""
    return any(
        r["operation"] == "KeycaskOperator.Rekey" and r.get("detail") != "operator Rekey requested"
        for r in _audit(prod)
    )


def _send_and_hang_up(prod: Production, target: str, body: dict[str, Any]) -> None:
    """Send one operator call over TLS and close the connection at once,
    without reading the answer (a Ctrl-C, a dropped session)."""
    data = json.dumps(body).encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{prod.port}\r\n"
        "Content-Type: application/x-amz-json-1.1\r\n"
        f"X-Amz-Target: {target}\r\nAuthorization: Bearer {prod.token}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    context = ssl.create_default_context(cafile=str(prod.cert))
    with (
        socket.create_connection(("127.0.0.1", prod.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(head + data)
        time.sleep(0.01)


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _restart(prod: Production) -> None:
    prod.stop()
    prod.start()
    assert prod.status()["sealed"] is True


def _verify(prod: Production, share: str, check: bool = True) -> Any:
    """One operator gives one new share back, at the prompt."""
    done = prod.operator("rekey-verify", "--json", stdin=share + "\n", check=check)
    return json.loads(done.stdout) if check else done


def test_a_rekey_whose_answer_is_lost_changes_nothing(prod: Production) -> None:
    blobs = _encrypt(prod)
    old = prod.shares
    _send_and_hang_up(
        prod,
        "KeycaskOperator.Rekey",
        {"Seal": "shamir", "Shares": 5, "Threshold": 3, "Current": {"Shares": old[:3]}},
    )
    _wait(lambda: _rekey_answered(prod), "the server to finish the Rekey call")
    # The server did its part, whose answer nobody read: the rekey is only pending.
    assert prod.status()["rekey"] == {"seal": "shamir", "shares": 5, "threshold": 3, "progress": 0}

    # The old shares still open the store after a restart, and the pending rekey
    # (whose shares are lost) is shown, then cancelled.
    _restart(prod)
    assert prod.status()["rekey"]["seal"] == "shamir"
    prod.unseal_with(old[2:])
    _decrypt_all(prod, blobs)
    assert json.loads(prod.operator("rekey-cancel", "--json").stdout) == {"cancelled": True}
    assert "rekey" not in prod.status()
    assert not (prod.data_dir / REKEY_SEAL_FILE).exists()

    # A rekey whose answer arrives: nothing moves until three new shares come back.
    started = json.loads(
        prod.operator(
            "rekey", "--json", "--seal", "shamir", "--shares", "5", "--threshold", "3",
            "--current-shares-file", str(_lines(prod, "current", old[:3])),
        ).stdout
    )  # fmt: skip
    assert started["pending"] is True and started["threshold"] == 3
    new = list(started["shares"])
    seal_before = (prod.data_dir / SEAL_FILE).read_bytes()
    # A forged share (well formed, right checksum, never handed out) does not count.
    forged = Share(index=1, threshold=3, value=bytes(32)).encode()
    refused = _verify(prod, forged, check=False)
    assert refused.returncode != 0 and "not one this seal handed out" in refused.stderr
    assert _verify(prod, new[0]) == {
        "seal": "shamir",
        "pending": True,
        "progress": 1,
        "threshold": 3,
    }
    assert _verify(prod, new[3])["progress"] == 2
    assert prod.status()["rekey"]["progress"] == 2
    assert (prod.data_dir / SEAL_FILE).read_bytes() == seal_before
    assert _verify(prod, new[4]) == {"seal": "shamir", "settled": True}
    assert "rekey" not in prod.status()
    _decrypt_all(prod, blobs)

    _restart(prod)
    # The old shares are not this seal's: each is refused before it counts.
    for share in old[:3]:
        refused = prod.unseal(share, check=False)
        assert refused.returncode != 0 and "not one this seal handed out" in refused.stderr
    assert prod.status()["progress"] == 0
    prod.unseal_with(new[1:4])
    _decrypt_all(prod, blobs)


def test_a_cancelled_rekey_discards_the_new_shares(prod: Production) -> None:
    blobs = _encrypt(prod)
    old = prod.shares
    started = json.loads(
        prod.operator(
            "rekey", "--json", "--seal", "shamir", "--shares", "3", "--threshold", "2",
            "--current-shares-file", str(_lines(prod, "current", old[:3])),
        ).stdout
    )  # fmt: skip
    new = started["shares"]
    # A second rekey while one is pending is refused.
    again = prod.operator(
        "rekey", "--json", "--seal", "shamir",
        "--current-shares-file", str(_lines(prod, "again", old[:3])),
        check=False,
    )  # fmt: skip
    assert again.returncode != 0 and "already pending" in again.stderr
    text = prod.operator("status").stdout
    assert "rekey:     pending to shamir, 0/2 new shares given back" in text

    prod.operator("rekey-cancel")
    refused = _verify(prod, new[0], check=False)
    assert refused.returncode != 0 and "no rekey is pending" in refused.stderr
    _restart(prod)
    prod.unseal_with(old[:3])
    _decrypt_all(prod, blobs)


def test_a_passphrase_rekey_is_verified_by_giving_it_again(
    prod: Production, tmp_path: Path
) -> None:
    blobs = _encrypt(prod)
    passphrase = _secret(tmp_path / "pass", "a new passphrase for the e2e test")
    wrong = _secret(tmp_path / "wrong", "a new passphrase for the e2e tesT")
    started = json.loads(
        prod.operator(
            "rekey", "--json", "--seal", "passphrase", "--passphrase-file", str(passphrase),
            "--current-shares-file", str(_lines(prod, "current", prod.shares[:3])),
        ).stdout
    )  # fmt: skip
    assert started == {"seal": "passphrase", "pending": True}
    mistyped = prod.operator("rekey-verify", "--passphrase-file", str(wrong), check=False)
    assert mistyped.returncode != 0 and "wrong passphrase" in mistyped.stderr
    assert json.loads((prod.data_dir / SEAL_FILE).read_text())["type"] == "shamir"
    done = prod.operator("rekey-verify", "--json", "--passphrase-file", str(passphrase))
    assert json.loads(done.stdout) == {"seal": "passphrase", "settled": True}
    _restart(prod)
    prod.operator("unseal", "--passphrase-file", str(passphrase))
    _decrypt_all(prod, blobs)


def test_an_old_snapshot_with_the_old_shares_reads_nothing_written_after_a_rekey(
    prod: Production, tmp_path: Path
) -> None:
    before = _encrypt(prod)
    # A snapshot of the database from before the rekey (the server stopped, so
    # SQLite has checkpointed everything into the file).
    prod.stop()
    snapshot = tmp_path / "snapshot.db"
    shutil.copy(prod.data_dir / STORE_FILE, snapshot)
    prod.start()
    prod.unseal_with(prod.shares[:3])
    term_before = prod.status()["term"]

    started = json.loads(
        prod.operator(
            "rekey", "--json", "--seal", "shamir", "--shares", "5", "--threshold", "3",
            "--current-shares-file", str(_lines(prod, "current", prod.shares[:3])),
        ).stdout
    )  # fmt: skip
    new = started["shares"]
    prod.operator("rekey-verify", "--shares-file", str(_lines(prod, "new", new[:3])))
    status = prod.status()
    assert status["term"] > term_before
    _wait(lambda: prod.status()["rewrite_pending"] is False, "the barrier rewrite")
    after = _encrypt(prod)
    _decrypt_all(prod, before)
    prod.stop()

    old_keyring = _keyring(snapshot, _root(prod.shares))
    live_keyring = _keyring(prod.data_dir / STORE_FILE, _root(new))
    # The live keyring holds the new term only: the old terms were retired.
    assert set(live_keyring.terms) == {live_keyring.active_term}
    assert live_keyring.active_term not in old_keyring.terms
    # Every value in the live store, old or new, is out of the old keyring's reach.
    values = _values(prod.data_dir / STORE_FILE)
    assert len(values) > 10
    for path, stored in values:
        term = term_of(stored)
        assert term == live_keyring.active_term, path
        assert term not in old_keyring.terms
        prefix = stored[:5]
        for key in old_keyring.terms.values():
            with pytest.raises(AuthenticationFailed):
                open_sealed(key, stored[5:], aad=prefix + path.encode())
    assert after  # written after the rekey, and among the values checked above


# -- helpers --


def _lines(prod: Production, name: str, shares: list[str]) -> Path:
    path = prod.data_dir.parent / f"shares-{name}"
    path.write_text("\n".join(shares) + "\n")
    path.chmod(0o600)
    return path


def _secret(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def _root(shares: list[str]) -> KeyMaterial:
    return combine_shares([Share.decode(line) for line in shares[:3]])


def _run(work: Any) -> Any:
    import asyncio

    return asyncio.run(work)


def _keyring(db: Path, root: KeyMaterial) -> Keyring:
    async def read() -> Keyring:
        storage = SQLiteStorage(db)
        try:
            entry = await storage.get(KEYRING_PATH)
            assert entry is not None
            return Keyring.open_with(root, entry.value)
        finally:
            await storage.close()

    keyring: Keyring = _run(read())
    return keyring


def _values(db: Path) -> list[tuple[str, bytes]]:
    async def read() -> list[tuple[str, bytes]]:
        storage = SQLiteStorage(db)
        try:
            rows = await storage.list("", "", 100_000)
            return [(p, e.value) for p, e in rows if p != KEYRING_PATH]
        finally:
            await storage.close()

    values: list[tuple[str, bytes]] = _run(read())
    return values
