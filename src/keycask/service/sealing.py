"""Sealed and unsealed: which seal guards the root key, taking the inputs
that open it, sealing again, and moving the root key to a new seal (rekey).

A production server starts sealed. The seal file (``<data>/seal.json``) says
which seal it is: Shamir shares come in one call at a time until the
threshold; a passphrase comes in one call; a PKCS#11 token is asked at start
with the PIN the server was given (auto-unseal). Nothing here is ever stored
but what the seals themselves store.

Rekey is crash-safe in three steps: the new seal is written beside the old
one (``seal.next.json``), the keyring is sealed under the new root (one
conditional write), and the new file replaces the old. Until the last step
both files are tried when unsealing, and the first unseal after a crash
finishes or discards the half-done rekey by which file opened the keyring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial, Share
from keycask.errors import SealError, StoreRolledBack
from keycask.seal import NEXT_SEAL_FILE, SEAL_FILE, PassphraseSeal, seal_type, sealfile
from keycask.seal.pkcs11 import Pkcs11Seal
from keycask.seal.shamir import ShamirSeal, ShareCollector

log = logging.getLogger("keycask")

DEV = "dev"
# Left by `operator restore`: the first unseal starts a new barrier term,
# because the original store may still be sealing with the restored terms and
# each copy would otherwise count its seals from the same reservation.
RESTORED_MARKER = "restored"


@dataclass(frozen=True, slots=True)
class UnsealInput:
    """What an operator (or the server's own configuration) hands in."""

    share: str | None = None
    passphrase: str | None = None
    pin: str | None = None


@dataclass(frozen=True, slots=True)
class SealProof:
    """What the current seal needs to give the root key again: a rekey must
    show it, or one credential (the operator token, an administrator) would
    be enough to move the root key under a seal its holder chose."""

    shares: tuple[str, ...] = ()
    passphrase: str | None = None
    pin: str | None = None


@dataclass(frozen=True, slots=True)
class RekeyOutcome:
    shares: list[str]
    settled: bool
    note: str | None = None


@dataclass(frozen=True, slots=True)
class NewSeal:
    """Where a rekey moves the root key: a seal type and its parameters."""

    kind: str
    shares: int = 5
    threshold: int = 3
    passphrase: str | None = None
    module: str | None = None
    token_label: str | None = None
    key_label: str | None = None
    pin: str | None = None


class SealKeeper:
    def __init__(
        self,
        data_dir: Path,
        barrier: Barrier,
        *,
        dev: bool = False,
        pkcs11_modules: frozenset[str] = frozenset(),
    ) -> None:
        """``pkcs11_modules`` are the PKCS#11 libraries this server may load,
        for its own seal and as a rekey's target (the server's own
        configuration: neither a request nor the data dir's seal file may
        name a library for the server to load)."""
        self._dir = data_dir
        self._modules = pkcs11_modules
        self._barrier = barrier
        self._lock = asyncio.Lock()
        if dev:
            self.kind = DEV
        else:
            kind = seal_type(data_dir)
            if kind is None:
                raise SealError(
                    f"{data_dir} has no seal: run "
                    f"`keycask operator init --data-dir {data_dir}` first"
                )
            self.kind = kind
        self._collector = self._new_collector()
        # Run once the barrier opens, before Unseal answers: the audit log
        # checks its segment's tip and keys its lines (audit/anchor.py) at
        # once, not at its next tick with requests served in between.
        self.after_unseal: Callable[[], Awaitable[None]] | None = None

    def _new_collector(self) -> ShareCollector | None:
        if self.kind != "shamir":
            return None
        _, threshold = ShamirSeal(self._dir).config()
        return ShareCollector(threshold)

    @property
    def sealed(self) -> bool:
        return self._barrier.sealed

    def status(self) -> dict[str, object]:
        status: dict[str, object] = {"sealed": self.sealed, "seal": self.kind}
        if self._collector is not None:
            status["progress"] = self._collector.progress
            status["threshold"] = self._collector.threshold
            if self.kind == "shamir":
                status["shares"] = ShamirSeal(self._dir).config()[0]
        else:
            status["progress"] = 0
            status["threshold"] = 1
        if self.kind != DEV and (self._dir / NEXT_SEAL_FILE).exists():
            # A rekey that a crash cut short: the store opens with one of two seals.
            status["pending_seal"] = seal_type(self._dir, NEXT_SEAL_FILE)
        if not self.sealed:
            keyring = self._barrier.keyring
            status["term"] = keyring.active_term
            status["rewrite_pending"] = keyring.rewrite
        return status

    # -- unsealing --

    async def unseal(self, given: UnsealInput) -> None:
        """Take one input. Opens the barrier once the seal yields a root key
        that opens the keyring; ``SealError`` says what was wrong."""
        async with self._lock:
            if not self.sealed:
                return
            found = await self._roots(given)
            if not found:
                return  # more shares needed
            # While a rekey is half done both seal files may give a key (the
            # same token, or the same passphrase, behind both): the keyring
            # says which one is the root now.
            for root, filename in found:
                try:
                    await self._barrier.unseal(root)
                except StoreRolledBack:
                    raise  # the right key, and a store older than this node saw
                except SealError:
                    continue
                self._settle_rekey(filename)
                marker = self._dir / RESTORED_MARKER
                if marker.exists():
                    await self._barrier.rotate()
                    sealfile.remove(marker)
                if self.after_unseal is not None:
                    await self.after_unseal()
                return
            raise SealError(
                "the key from this seal does not open the keyring (wrong shares, "
                "or shares from before a rekey); start again with the right shares"
            )

    async def open_to_read(self, given: UnsealInput) -> None:
        """Open the barrier for reading only (``audit verify``): unlike
        ``unseal`` nothing is written, no capacity reserved and no half-done
        rekey settled. Shares are not taken (a reader has no collector)."""
        if given.share is not None:
            raise SealError("a reader opens the store with a PIN or a passphrase, not shares")
        for root, _ in await self._roots(given):
            try:
                await self._barrier.unseal_to_read(root)
            except SealError:
                continue
            return
        raise SealError("the key from this seal does not open the keyring")

    def _candidates(self) -> list[str]:
        candidates = [SEAL_FILE]
        if (self._dir / NEXT_SEAL_FILE).exists():
            candidates.append(NEXT_SEAL_FILE)
        return candidates

    def _collector_for(self, text: str) -> ShareCollector:
        """The collector a share goes to. While a rekey to a Shamir seal is
        half done the new shares may be the only ones that open the keyring,
        whatever seal.json says: so any Shamir seal file's threshold will do,
        chosen by the first share given."""
        thresholds = [
            ShamirSeal(self._dir, filename).config()[1]
            for filename in self._candidates()
            if seal_type(self._dir, filename) == "shamir"
        ]
        if not thresholds:
            raise SealError(f"this server's seal is {self.kind}: it takes no shares")
        collector = self._collector
        if collector is not None and collector.progress:
            return collector
        try:
            wanted = Share.decode(text).threshold
        except ValueError:
            wanted = thresholds[0]  # the collector says what is wrong with it
        if wanted not in thresholds:
            wanted = thresholds[0]
        if collector is None or collector.threshold != wanted:
            collector = self._collector = ShareCollector(wanted)
        return collector

    async def _roots(self, given: UnsealInput) -> list[tuple[KeyMaterial, str]]:
        """The keys ``given`` yields, each with the seal file it came from;
        empty while more shares are needed."""
        candidates = self._candidates()
        if given.share is not None:
            root = self._collector_for(given.share).add(given.share)
            if root is None:
                return []
            for filename in candidates:
                if seal_type(self._dir, filename) == "shamir" and ShamirSeal(
                    self._dir, filename
                ).opens(root):
                    return [(root, filename)]
            return [(root, SEAL_FILE)]
        errors: list[str] = []
        found: list[tuple[KeyMaterial, str]] = []
        for filename in candidates:
            kind = seal_type(self._dir, filename)
            try:
                if kind == "passphrase" and given.passphrase is not None:
                    seal = PassphraseSeal(self._dir, filename)
                    found.append((await asyncio.to_thread(seal.unseal, given.passphrase), filename))
                if kind == "pkcs11" and given.pin is not None:
                    token = Pkcs11Seal(self._dir, filename, modules=self._modules)
                    found.append((await asyncio.to_thread(token.unseal, given.pin), filename))
            except SealError as exc:
                errors.append(str(exc))
        if found:
            return found
        if errors:
            raise SealError(errors[0])
        raise SealError(f"this server's seal is {self.kind}: give what it needs to unseal")

    def _settle_rekey(self, opened_with: str) -> None:
        """Finish (or forget) a rekey that a crash interrupted."""
        current, pending = self._dir / SEAL_FILE, self._dir / NEXT_SEAL_FILE
        if opened_with == NEXT_SEAL_FILE:
            sealfile.promote(pending, current)
            self.kind = seal_type(self._dir) or self.kind
        elif pending.exists():
            sealfile.remove(pending)
        # A collector made for the pending file's threshold is done with.
        self._collector = self._new_collector()

    def seal(self) -> None:
        """Drop every key from memory: the barrier's, and (through the
        barrier's seal hooks) every cache's."""
        self._barrier.seal()
        if self._collector is not None:
            self._collector.reset()

    # -- rekey --

    async def rekey(self, new: NewSeal, proof: SealProof) -> RekeyOutcome:
        """Move the keyring to a new root key under ``new``; the outcome holds
        the new share lines for a Shamir seal (shown once). ``proof`` must
        open the current seal.

        Once the new seal is written the shares are always returned, even if
        moving the keyring failed: the move may have landed (a connection lost
        after COMMIT), and shares lost then would be the root key lost. The
        pending file stays, and the next unseal, with the old secrets or the
        new, settles which seal the store is under."""
        async with self._lock:
            if self.sealed:
                raise SealError("keycask is sealed: unseal it before a rekey")
            if self.kind == DEV:
                raise SealError("a --dev server keeps its dev seal; there is nothing to rekey")
            self._check_new(new)
            await self._check_proof(proof)
            pending = self._dir / NEXT_SEAL_FILE
            if pending.exists():
                # Left by a rekey that failed. If the keyring moved to its
                # root, that file is the only one that opens the store: keep it.
                if not await self._barrier.opens_store():
                    raise SealError(
                        "an interrupted rekey moved the store to the key in seal.next.json: "
                        "seal, then unseal with that seal before another rekey"
                    )
                sealfile.remove(pending)
            root = KeyMaterial.generate(32)
            shares = await asyncio.to_thread(self._write_next, new, root)
            try:
                await self._barrier.rekey(root)
                self._settle_rekey(NEXT_SEAL_FILE)
            except Exception as exc:
                log.error("rekey: moving the keyring to the new root failed or is unknown: %r", exc)
                return RekeyOutcome(
                    shares,
                    settled=False,
                    note="the store may or may not be under the new seal yet: keep the old "
                    "and the new secrets; the next unseal accepts either and settles it",
                )
            return RekeyOutcome(shares, settled=True)

    def _check_new(self, new: NewSeal) -> None:
        """Refuse a bad target before any file is written."""
        if new.kind == "shamir":
            if not 2 <= new.threshold <= new.shares <= 255:
                raise SealError("Shamir needs 2 <= threshold <= shares <= 255")
        elif new.kind == "passphrase":
            if not new.passphrase:
                raise SealError("a passphrase seal needs a passphrase")
        elif new.kind == "pkcs11":
            if not (new.module and new.token_label and new.key_label and new.pin):
                raise SealError("a PKCS#11 seal needs a module, token label, key label and PIN")
            if new.module not in self._modules:
                raise SealError(
                    "that PKCS#11 module is not one this server may load: start it with "
                    "KEYCASK_PKCS11_MODULES naming the library"
                )
        else:
            raise SealError(f"unknown seal type {new.kind!r}; use shamir, passphrase or pkcs11")

    async def _check_proof(self, proof: SealProof) -> None:
        """The proof must give the root key this barrier holds now."""
        roots: list[KeyMaterial] = []
        refused = SealError(
            f"a rekey needs the current {self.kind} seal: "
            + {
                "shamir": "the threshold of current shares",
                "passphrase": "the current passphrase",
                "pkcs11": "the token's PIN",
            }.get(self.kind, "its secret")
        )
        try:
            if self.kind == "shamir" and proof.shares:
                _, threshold = ShamirSeal(self._dir).config()
                collector = ShareCollector(threshold)
                for text in proof.shares:
                    root = collector.add(text)
                    if root is not None:
                        roots.append(root)
                        break
            elif self.kind == "passphrase" and proof.passphrase:
                seal = PassphraseSeal(self._dir)
                roots.append(await asyncio.to_thread(seal.unseal, proof.passphrase))
            elif self.kind == "pkcs11" and proof.pin:
                token = Pkcs11Seal(self._dir, modules=self._modules)
                roots.append(await asyncio.to_thread(token.unseal, proof.pin))
        except SealError:
            raise refused from None
        if not roots or not self._barrier.holds(roots[0]):
            raise refused

    def _write_next(self, new: NewSeal, root: KeyMaterial) -> list[str]:
        if new.kind == "shamir":
            _, lines = ShamirSeal.init(
                self._dir,
                shares=new.shares,
                threshold=new.threshold,
                root=root,
                filename=NEXT_SEAL_FILE,
            )
            return lines
        if new.kind == "passphrase":
            if not new.passphrase:
                raise SealError("a passphrase seal needs a passphrase")
            PassphraseSeal.init(self._dir, new.passphrase, root=root, filename=NEXT_SEAL_FILE)
            return []
        if new.kind == "pkcs11":
            if not (new.module and new.token_label and new.key_label and new.pin):
                raise SealError("a PKCS#11 seal needs a module, token label, key label and PIN")
            Pkcs11Seal.init(
                self._dir,
                module=new.module,
                token_label=new.token_label,
                key_label=new.key_label,
                pin=new.pin,
                root=root,
                filename=NEXT_SEAL_FILE,
            )
            return []
        raise SealError(f"unknown seal type {new.kind!r}; use shamir, passphrase or pkcs11")
