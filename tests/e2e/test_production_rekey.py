"""Rekey on a running production server, end to end: Shamir -> PKCS#11 ->
Shamir and to a passphrase, old ciphertexts decrypting after every step and
every restart, superseded shares and secrets opening nothing; and a rekey cut
short by a crash on either side of its keyring write, finished or discarded by
the first unseal."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from production import (
    SOFTHSM_PIN,
    SOFTHSM_TOKEN,
    Production,
    SoftHsm,
    keycask,
    pkcs11_flags,
    secret_file,
)

from keycask.app import STORE_FILE
from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial, Share, combine_shares
from keycask.seal import NEXT_SEAL_FILE, SEAL_FILE
from keycask.seal.pkcs11 import Pkcs11Seal
from keycask.seal.shamir import ShamirSeal
from keycask.storage.sqlite import SQLiteStorage

PIN_ENV = {"KEYCASK_PKCS11_PIN": SOFTHSM_PIN}


class Running:
    """A production server with a Shamir seal, unsealed, holding one key and
    five ciphertexts under it."""

    def __init__(self, prod: Production) -> None:
        self.prod = prod
        self.shares = prod.shares
        self.blobs: list[bytes] = []
        self.kms: Any = None
        self.files: list[Path] = []
        self.proof = self._shares_file(self.shares[:3])

    def open_client(self) -> Any:
        self.kms = self.prod.client()
        return self.kms

    def encrypt(self) -> None:
        kms = self.open_client()
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        self.blobs = [
            kms.encrypt(KeyId=key, Plaintext=b"message %d" % i)["CiphertextBlob"] for i in range(5)
        ]

    def decrypt_all(self) -> None:
        kms = self.kms or self.open_client()
        for i, blob in enumerate(self.blobs):
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"message %d" % i

    def stop(self) -> None:
        # An idle TLS keep-alive connection makes the server wait out its
        # shutdown grace (see test_production_pkcs11.py): close it first.
        if self.kms is not None:
            self.kms.close()
            self.kms = None
        self.prod.stop()

    def restart(self, env: dict[str, str] | None = None) -> None:
        self.stop()
        self.prod.start(env=env)

    def rekey(self, *args: str) -> dict[str, Any]:
        """``operator rekey`` with proof of the current seal (which this
        tracks: shares, then the PIN or passphrase file the last rekey used)."""
        answer: dict[str, Any] = json.loads(
            self.prod.operator("rekey", "--json", *args, *self.proof).stdout
        )
        kind = args[args.index("--seal") + 1]
        if kind == "shamir":
            # Nothing moves until three operators each give a new share back.
            assert answer["pending"] is True
            for share in answer["shares"][:3]:
                done = json.loads(
                    self.prod.operator("rekey-verify", "--json", stdin=share + "\n").stdout
                )
            assert done == {"seal": "shamir", "settled": True}
            self.proof = self._shares_file(answer["shares"][:3])
        elif kind == "pkcs11":
            self.proof = ["--current-pin-file", args[args.index("--pkcs11-pin-file") + 1]]
        else:
            assert answer == {"seal": "passphrase", "pending": True}
            passphrase = args[args.index("--passphrase-file") + 1]
            answer = json.loads(
                self.prod.operator("rekey-verify", "--json", "--passphrase-file", passphrase).stdout
            )
            self.proof = ["--current-passphrase-file", passphrase]
        return answer

    def _shares_file(self, shares: list[str]) -> list[str]:
        path = self.prod.data_dir.parent / f"current-shares-{len(self.files)}"
        path.write_text("\n".join(shares) + "\n")
        path.chmod(0o600)
        self.files.append(path)
        return ["--current-shares-file", str(path)]

    def seal_files(self) -> tuple[str, bool]:
        """The type seal.json names and whether seal.next.json exists."""
        kind = json.loads((self.prod.data_dir / SEAL_FILE).read_text())["type"]
        return str(kind), (self.prod.data_dir / NEXT_SEAL_FILE).exists()

    def refused(self, shares: list[str], message: str, progress: int = 0) -> None:
        """The last of ``shares`` is refused with ``message``; still sealed,
        with ``progress`` shares counted."""
        for share in shares[:-1]:
            self.prod.unseal(share)
        last = self.prod.unseal(shares[-1], check=False)
        assert last.returncode != 0 and message in last.stderr, last.stderr
        status = self.prod.status()
        assert status["sealed"] is True and status["progress"] == progress


@pytest.fixture
def hsm(tmp_path: Path) -> SoftHsm:
    return SoftHsm(tmp_path / "softhsm")


@pytest.fixture
def running(tmp_path: Path, hsm: SoftHsm) -> Iterator[Running]:
    prod = Production(tmp_path / "data", extra_env=hsm.env())
    prod.initialise("--seal", "shamir", "--shares", "5", "--threshold", "3")
    prod.start()
    prod.unseal_with(prod.shares[:3])
    server = Running(prod)
    server.encrypt()
    yield server
    if prod.proc is not None:
        server.stop()


def test_shamir_to_pkcs11_to_shamir(running: Running, hsm: SoftHsm, tmp_path: Path) -> None:
    prod = running.prod
    pin_file = secret_file(tmp_path / "pin", SOFTHSM_PIN)

    # Shamir -> PKCS#11: no shares in the answer; the server unseals itself from now on.
    answer = running.rekey("--seal", "pkcs11", *pkcs11_flags(hsm, "rekeyed-root", pin_file))
    assert answer == {"seal": "pkcs11", "settled": True}
    assert running.seal_files() == ("pkcs11", False)
    status = prod.status()
    assert status["sealed"] is False and status["seal"] == "pkcs11"
    running.decrypt_all()
    running.restart(env=PIN_ENV)
    assert prod.status()["sealed"] is False
    running.decrypt_all()

    # PKCS#11 -> Shamir, with new shares.
    answer = running.rekey("--seal", "shamir", "--shares", "5", "--threshold", "3")
    assert answer["seal"] == "shamir" and len(answer["shares"]) == 5
    new = list(answer["shares"])
    assert not set(new) & set(running.shares)
    assert running.seal_files() == ("shamir", False)
    running.decrypt_all()
    running.restart()
    assert prod.status()["sealed"] is True
    # The shares of the first split are not this seal's: each is refused, and
    # mixed in among new ones it does not count.
    for share in running.shares[:3]:
        running.refused([share], "not one this seal handed out")
    prod.unseal(new[0])
    running.refused([running.shares[1]], "not one this seal handed out", progress=1)
    prod.operator("unseal", "--reset")
    # Nor does the token.
    pin = prod.operator("unseal", "--json", "--pin-file", str(pin_file), check=False)
    assert pin.returncode != 0 and "shamir" in pin.stderr
    prod.unseal_with([new[4], new[1], new[3]])
    running.decrypt_all()


def test_rekey_to_a_passphrase(running: Running, tmp_path: Path) -> None:
    prod = running.prod
    passphrase = secret_file(tmp_path / "passphrase", "correct horse battery staple e2e")
    wrong = secret_file(tmp_path / "wrong", "correct horse battery staple e3e")
    assert running.rekey("--seal", "passphrase", "--passphrase-file", str(passphrase)) == {
        "seal": "passphrase",
        "settled": True,
    }
    assert running.seal_files() == ("passphrase", False)
    assert prod.status()["seal"] == "passphrase"
    running.decrypt_all()

    running.restart()
    status = prod.status()
    assert status["sealed"] is True and status["seal"] == "passphrase"
    refused = prod.operator("unseal", "--json", "--passphrase-file", str(wrong), check=False)
    assert refused.returncode != 0 and "passphrase" in refused.stderr
    assert "e3e" not in refused.stderr
    assert prod.status()["sealed"] is True
    old = prod.unseal(running.shares[0], check=False)
    assert old.returncode != 0
    opened = json.loads(
        prod.operator("unseal", "--json", "--passphrase-file", str(passphrase)).stdout
    )
    assert opened["sealed"] is False and opened["seal"] == "passphrase"
    running.decrypt_all()
    text = "".join(p.read_text(errors="replace") for p in prod.data_dir.rglob("*") if p.is_file())
    assert "correct horse" not in text


# -- a rekey cut short by a crash --


def _old_root(shares: list[str]) -> KeyMaterial:
    return combine_shares([Share.decode(line) for line in shares[:3]])


def _move_keyring(data_dir: Path, old: KeyMaterial, new: KeyMaterial) -> None:
    """What rekey's second step does: the keyring, sealed under ``new``."""

    async def move() -> None:
        storage = SQLiteStorage(data_dir / STORE_FILE)
        try:
            barrier = Barrier(storage)
            await barrier.unseal(old)
            await barrier.rekey(new)
        finally:
            await storage.close()

    asyncio.run(move())


def _crashed_shamir_rekey(running: Running, *, moved: bool, threshold: int = 3) -> list[str]:
    """Stop the server and leave a Shamir -> Shamir rekey half done: the next
    seal file written and, if ``moved``, the keyring under its root too.
    Returns the new shares."""
    running.stop()
    data_dir = running.prod.data_dir
    seal_before = (data_dir / SEAL_FILE).read_bytes()
    new_root, lines = ShamirSeal.init(
        data_dir, shares=5, threshold=threshold, filename=NEXT_SEAL_FILE
    )
    if moved:
        _move_keyring(data_dir, _old_root(running.shares), new_root)
    assert (data_dir / SEAL_FILE).read_bytes() == seal_before
    running.prod.start()
    assert running.prod.status()["sealed"] is True
    return lines


def test_crash_after_the_keyring_moved_is_finished_by_the_new_shares(running: Running) -> None:
    prod = running.prod
    new = _crashed_shamir_rekey(running, moved=True)
    # The old shares no longer open it, and the half-done rekey stays pending.
    running.refused(running.shares[:3], "does not open the keyring")
    assert running.seal_files() == ("shamir", True)
    prod.unseal_with(new[:3])
    assert running.seal_files() == ("shamir", False)
    assert ShamirSeal(prod.data_dir).opens(_old_root(new))
    running.decrypt_all()
    running.restart()
    prod.unseal_with(new[2:])
    running.decrypt_all()


def test_crash_before_the_keyring_moved_is_discarded_by_the_old_shares(running: Running) -> None:
    prod = running.prod
    new = _crashed_shamir_rekey(running, moved=False)
    running.refused(new[:3], "does not open the keyring")
    prod.unseal_with(running.shares[:3])
    assert running.seal_files() == ("shamir", False)
    assert ShamirSeal(prod.data_dir).opens(_old_root(running.shares))
    running.decrypt_all()
    running.restart()
    prod.unseal_with(running.shares[2:])
    running.decrypt_all()


def test_crash_after_the_keyring_moved_to_a_new_threshold(running: Running) -> None:
    """Shamir 3 of 5 -> Shamir 4 of 5 cut short after the keyring moved: the
    new shares need 4, the old seal file says 3, and only the new shares can
    open it now."""
    prod = running.prod
    new = _crashed_shamir_rekey(running, moved=True, threshold=4)
    prod.unseal_with(new[:4])
    assert running.seal_files() == ("shamir", False)
    assert ShamirSeal(prod.data_dir).config() == (5, 4)
    running.decrypt_all()


def test_crash_after_the_keyring_moved_from_pkcs11_to_shamir(
    running: Running, hsm: SoftHsm, tmp_path: Path
) -> None:
    """PKCS#11 -> Shamir cut short after the keyring moved: seal.json is the
    token's, the keyring opens only with the new shares, which the server
    must take."""
    prod = running.prod
    pin_file = secret_file(tmp_path / "pin", SOFTHSM_PIN)
    running.rekey("--seal", "pkcs11", *pkcs11_flags(hsm, "crash-root", pin_file))
    running.stop()
    token_root = _token_root(prod.data_dir, hsm)
    new_root, new = ShamirSeal.init(prod.data_dir, shares=5, threshold=3, filename=NEXT_SEAL_FILE)
    _move_keyring(prod.data_dir, token_root, new_root)
    prod.start()
    status = prod.status()
    assert status["sealed"] is True
    # Status names both seals, and a bare `unseal` says to choose instead of
    # prompting for the wrong secret; the operator gives the new shares.
    assert status["seal"] == "pkcs11" and status["pending_seal"] == "shamir"
    bare = prod.operator("unseal", "--json", stdin="", check=False)
    assert bare.returncode != 0 and "cut short" in bare.stderr
    for share in new[:3]:
        prod.operator("unseal", "--json", share)
    assert prod.status()["sealed"] is False
    assert running.seal_files() == ("shamir", False)
    running.decrypt_all()


def test_crash_after_the_keyring_moved_between_two_token_keys(
    running: Running, hsm: SoftHsm, tmp_path: Path
) -> None:
    """PKCS#11 -> PKCS#11 (a new key in the same token) cut short after the
    keyring moved: both seal files decrypt with the PIN, only the new root
    opens the keyring; the server must find it and start."""
    prod = running.prod
    pin_file = secret_file(tmp_path / "pin", SOFTHSM_PIN)
    running.rekey("--seal", "pkcs11", *pkcs11_flags(hsm, "first-root", pin_file))
    running.stop()
    token_root = _token_root(prod.data_dir, hsm)
    new_root = _in_softhsm(
        hsm,
        lambda: Pkcs11Seal.init(
            prod.data_dir,
            module=hsm.module,
            token_label=SOFTHSM_TOKEN,
            key_label="second-root",
            pin=SOFTHSM_PIN,
            filename=NEXT_SEAL_FILE,
        ),
    )
    _move_keyring(prod.data_dir, token_root, new_root)
    prod.start(env=PIN_ENV)
    status = prod.status()
    assert status["sealed"] is False and status["seal"] == "pkcs11"
    assert running.seal_files() == ("pkcs11", False)
    assert json.loads((prod.data_dir / SEAL_FILE).read_text())["key_label"] == "second-root"
    running.decrypt_all()


def _in_softhsm(hsm: SoftHsm, work: Any) -> Any:
    """Run ``work`` (keycask's own PKCS#11 code) in this process on ``hsm``'s
    token: python-pkcs11 keeps one library per process, and SoftHSM2 reads
    SOFTHSM2_CONF only when initialised (see ``softhsm_session``)."""
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    lib = pkcs11.lib(hsm.module)
    try:
        lib.reinitialize()
        return work()
    finally:
        lib.finalize()
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def _token_root(data_dir: Path, hsm: SoftHsm) -> KeyMaterial:
    seal = Pkcs11Seal(data_dir, modules=[hsm.module])
    root: KeyMaterial = _in_softhsm(hsm, lambda: seal.unseal(SOFTHSM_PIN))
    return root


def test_a_weak_passphrase_is_refused_at_init_and_rekey(running: Running, tmp_path: Path) -> None:
    """A three-character passphrase falls to an offline guess from any backup
    of the seal file in minutes: init and rekey refuse it, saying why."""
    weak = secret_file(tmp_path / "weak", "abc")
    fresh = tmp_path / "fresh"
    init = keycask(
        "operator", "init", "--data-dir", str(fresh), "--json",
        "--seal", "passphrase", "--passphrase-file", str(weak),
        check=False,
    )  # fmt: skip
    assert init.returncode != 0
    assert "at least 16" in init.stderr and "Traceback" not in init.stderr, init.stderr
    assert not (fresh / SEAL_FILE).exists()

    prod = running.prod
    for text in ("abc", "aaaaaaaaaaaaaaaaaaaaaaaa"):
        weak = secret_file(tmp_path / "weak", text)
        refused = prod.operator(
            "rekey", "--json", "--seal", "passphrase", "--passphrase-file", str(weak),
            *running.proof, check=False,
        )  # fmt: skip
        assert refused.returncode != 0, refused.stdout
        assert "ValidationException" in refused.stderr or "passphrase" in refused.stderr
        assert "at least" in refused.stderr, refused.stderr
    # Refused before any current share is taken: an operator giving the
    # first share of a collection (--one-share) is told at once.
    one = prod.operator(
        "rekey", "--json", "--one-share", "--seal", "passphrase", "--passphrase-file", str(weak),
        stdin=running.shares[0] + "\n", check=False,
    )  # fmt: skip
    assert one.returncode != 0 and "at least" in one.stderr, one.stderr
    assert "rekey_authorisation" not in prod.status()
    # Nothing changed: still under the shares, no pending seal.
    assert running.seal_files() == ("shamir", False)
    running.decrypt_all()
    audit = (prod.data_dir / "audit" / "server.jsonl").read_text()
    assert '"error_code":"ValidationException"' in audit.replace(" ", "")
    assert "aaaaaaaaaaaaaaaa" not in audit
