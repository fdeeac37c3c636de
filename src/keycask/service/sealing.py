"""Sealed and unsealed: which seal guards the root key, taking the inputs
that open it, sealing again, and moving the root key to a new seal (rekey).

A production server starts sealed. The seal file (``<data>/seal.json``) says
which seal it is: Shamir shares come in one call at a time until the
threshold; a passphrase comes in one call; a PKCS#11 token is asked at start
with the PIN the server was given (auto-unseal). Nothing here is ever stored
but what the seals themselves store.

Rekey is two-phase. ``rekey`` writes the new seal as ``seal.rekey.json``,
which unsealing never tries, and answers with the new shares: the current
seal stays authoritative, so an answer lost on the way loses nothing.
``rekey_verify`` takes a threshold of the new shares (or the new passphrase)
back and only then moves the store; ``rekey_cancel`` discards the pending
seal. The move is crash-safe in three steps: the pending file becomes
``seal.next.json``, the keyring is sealed under the new root with a new
barrier term (one conditional write), and the new file replaces the old.
Until the last step both files are tried when unsealing, and the first
unseal after a crash finishes or discards the half-done move by which file
opened the keyring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from keycask.barrier import Barrier
from keycask.crypto import (
    KeyMaterial,
    Share,
    ShareBoxError,
    check_public_key,
    seal_to_public_key,
)
from keycask.errors import SealError, StoreRolledBack
from keycask.seal import (
    NEXT_SEAL_FILE,
    REKEY_SEAL_FILE,
    SEAL_FILE,
    PassphraseSeal,
    seal_type,
    sealfile,
)
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
    # Current shares may come one operator at a time: each call adds its
    # shares to a collection kept (for one rekey target) until the threshold,
    # so no one person types them all.
    collect: bool = False


@dataclass(frozen=True, slots=True)
class VerifyInput:
    """The new secret of a pending rekey, handed back to prove it is held."""

    shares: tuple[str, ...] = ()
    passphrase: str | None = None


@dataclass(frozen=True, slots=True)
class RekeyOutcome:
    """``pending``: the rekey waits for verification (``shares`` are the new
    share lines, shown this once; ``progress`` counts the new shares given
    back so far). ``settled``: the store is under the new seal."""

    shares: list[str]
    settled: bool
    note: str | None = None
    pending: bool = False
    progress: int = 0
    # Current shares are being collected (``SealProof.collect``); nothing written.
    authorising: bool = False


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
    # PEM public keys, one per share: each share goes back sealed to its
    # operator's key, so whoever runs the rekey cannot read the new shares.
    share_keys: tuple[str, ...] = ()


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
        # New shares handed back for a pending rekey (``rekey_verify``).
        self._verifier: ShareCollector | None = None
        # Current shares collected one call at a time, for one rekey target.
        self._authorising: tuple[NewSeal, ShareCollector] | None = None

    def _new_collector(self) -> ShareCollector | None:
        if self.kind != "shamir":
            return None
        _, threshold = ShamirSeal(self._dir).config()
        return ShareCollector(threshold, knows=self._knows)

    def _knows(self, share: Share) -> bool | None:
        """Whether a seal file that may open the store now handed ``share``
        out (None: a file from before share digests, which cannot tell)."""
        answers = [
            ShamirSeal(self._dir, filename).knows(share)
            for filename in self._candidates()
            if seal_type(self._dir, filename) == "shamir"
        ]
        if any(answers):
            return True
        return None if None in answers else False

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
        rekey = self._pending_rekey()
        if rekey is not None:
            status["rekey"] = rekey
        authorising = self._authorising
        if authorising is not None and authorising[1].progress:
            status["rekey_authorisation"] = {
                "seal": authorising[0].kind,
                "progress": authorising[1].progress,
                "threshold": authorising[1].threshold,
            }
        if not self.sealed:
            keyring = self._barrier.keyring
            status["term"] = keyring.active_term
            status["rewrite_pending"] = keyring.rewrite
        return status

    def _pending_rekey(self) -> dict[str, object] | None:
        """What ``status`` says of a started, unverified rekey."""
        kind = None if self.kind == DEV else seal_type(self._dir, REKEY_SEAL_FILE)
        if kind is None:
            return None
        pending: dict[str, object] = {"seal": kind}
        if kind == "shamir":
            shares, threshold = ShamirSeal(self._dir, REKEY_SEAL_FILE).config()
            verifier = self._verifier
            pending.update(
                shares=shares,
                threshold=threshold,
                progress=verifier.progress if verifier is not None else 0,
            )
        return pending

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
            collector = self._collector = ShareCollector(wanted, knows=self._knows)
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

    def reset_unseal(self) -> None:
        """Forget the shares given so far (``operator unseal --reset``)."""
        self._collector = self._new_collector()

    def seal(self) -> None:
        """Drop every key from memory: the barrier's, and (through the
        barrier's seal hooks) every cache's."""
        self._barrier.seal()
        if self._collector is not None:
            self._collector.reset()
        if self._verifier is not None:
            self._verifier.reset()
            self._verifier = None
        self._authorising = None

    # -- rekey: start, verify, cancel --

    async def rekey(self, new: NewSeal, proof: SealProof) -> RekeyOutcome:
        """Start moving the root key to ``new``; ``proof`` must open the
        current seal. Nothing moves yet: the new seal is written aside
        (``seal.rekey.json``, never tried when unsealing) and the current
        seal stays authoritative until ``rekey_verify`` shows the new secret
        (a threshold of the new shares, or the new passphrase again). So an
        answer lost on the way (a dropped connection, a timeout) loses
        nothing: the old seal still opens the store, and the pending rekey
        is cancelled or verified later.

        A PKCS#11 target needs no one to prove anything (the token keeps its
        key and the PIN was just used): the server reads the new root back
        from the token and completes the move in this call."""
        async with self._lock:
            if self.sealed:
                raise SealError("keycask is sealed: unseal it before a rekey")
            if self.kind == DEV:
                raise SealError("a --dev server keeps its dev seal; there is nothing to rekey")
            if (self._dir / REKEY_SEAL_FILE).exists():
                raise SealError(
                    "a rekey is already pending: finish it with `operator rekey-verify` "
                    "or discard it with `operator rekey-cancel`"
                )
            self._check_new(new)
            if not await self._check_proof(proof, new):
                collecting = self._authorising
                assert collecting is not None
                return RekeyOutcome(
                    [], settled=False, authorising=True, progress=collecting[1].progress
                )
            root = KeyMaterial.generate(32)
            try:
                shares = await asyncio.to_thread(self._write_pending, new, root)
                if new.kind == "pkcs11":
                    assert new.pin is not None
                    token = Pkcs11Seal(self._dir, REKEY_SEAL_FILE, modules=self._modules)
                    back = await asyncio.to_thread(token.unseal, new.pin)
                    same = back.matches(root)
                    back.wipe()
                    if not same:
                        raise SealError("the PKCS#11 token did not give the new root key back")
            except BaseException:
                sealfile.remove(self._dir / REKEY_SEAL_FILE)
                raise
            self._verifier = None
            if new.kind == "pkcs11":
                return await self._complete(root)
            return RekeyOutcome(shares, settled=False, pending=True)

    async def rekey_verify(self, given: VerifyInput) -> RekeyOutcome:
        """Take the new secret back: share lines (one or several per call,
        counted until the pending seal's threshold) or the new passphrase.
        Once they open the pending seal, the keyring moves to its root (and
        to a new barrier term) and the pending seal becomes the seal."""
        async with self._lock:
            if self.sealed:
                raise SealError("keycask is sealed: unseal it before verifying a rekey")
            pending = self._dir / REKEY_SEAL_FILE
            kind = seal_type(self._dir, REKEY_SEAL_FILE)
            if kind is None:
                raise SealError("no rekey is pending: start one with `operator rekey`")
            root: KeyMaterial | None = None
            if kind == "shamir":
                if not given.shares:
                    raise SealError("the pending rekey is to a Shamir seal: give the new shares")
                pending_seal = ShamirSeal(self._dir, REKEY_SEAL_FILE)
                if self._verifier is None:
                    self._verifier = ShareCollector(
                        pending_seal.config()[1], knows=pending_seal.knows
                    )
                for text in given.shares:
                    root = self._verifier.add(text)
                    if root is not None:
                        break
                if root is None:
                    return RekeyOutcome(
                        [], settled=False, pending=True, progress=self._verifier.progress
                    )
                self._verifier = None
                if not pending_seal.opens(root):
                    raise SealError(
                        "these shares do not open the pending seal: start the verification again"
                    )
            elif kind == "passphrase":
                if given.passphrase is None:
                    raise SealError(
                        "the pending rekey is to a passphrase seal: give the new passphrase"
                    )
                seal = PassphraseSeal(self._dir, REKEY_SEAL_FILE)
                root = await asyncio.to_thread(seal.unseal, given.passphrase)
            else:
                raise SealError(f"a pending {kind} rekey has nothing to verify")
            assert pending.exists()
            return await self._complete(root)

    async def rekey_cancel(self) -> str:
        """Discard the pending rekey; the current seal stays. Returns the
        pending seal's type. (Under the lock: a verification moving the
        keyring must not lose its file halfway.)"""
        async with self._lock:
            collecting = self._authorising is not None and self._authorising[1].progress
            self._authorising = None
            kind = seal_type(self._dir, REKEY_SEAL_FILE)
            if kind is None:
                if collecting:
                    return "collection of current shares for a"
                raise SealError("no rekey is pending")
            sealfile.remove(self._dir / REKEY_SEAL_FILE)
            if self._verifier is not None:
                self._verifier.reset()
            self._verifier = None
            return kind

    async def _complete(self, root: KeyMaterial) -> RekeyOutcome:
        """Move the keyring to ``root`` (the verified pending seal's), in the
        crash-safe steps of the module docstring. Callers hold the lock.

        The move also starts a new barrier term, and the background rewrite
        then retires the old terms (``barrier/rewrite.py``): so a keyring
        taken before the rekey (a backup, a snapshot) opened with the old
        secret reads nothing written after it."""
        next_file = self._dir / NEXT_SEAL_FILE
        if next_file.exists():
            # Left by a move that failed. If the keyring moved to its root,
            # that file is the only one that opens the store: keep it.
            if not await self._barrier.opens_store():
                raise SealError(
                    "an interrupted rekey moved the store to the key in seal.next.json: "
                    "seal, then unseal with that seal before another rekey"
                )
            sealfile.remove(next_file)
        sealfile.promote(self._dir / REKEY_SEAL_FILE, next_file)
        try:
            await self._barrier.rekey(root, rotate=True)
            self._settle_rekey(NEXT_SEAL_FILE)
        except Exception as exc:
            log.error("rekey: moving the keyring to the new root failed or is unknown: %r", exc)
            return RekeyOutcome(
                [],
                settled=False,
                note="the store may or may not be under the new seal yet: keep the old "
                "and the new secrets; the next unseal accepts either and settles it",
            )
        return RekeyOutcome([], settled=True)

    def _check_new(self, new: NewSeal) -> None:
        """Refuse a bad target before any file is written."""
        if new.share_keys and new.kind != "shamir":
            raise SealError("share keys are for a Shamir seal only")
        if new.kind == "shamir":
            if not 2 <= new.threshold <= new.shares <= 255:
                raise SealError("Shamir needs 2 <= threshold <= shares <= 255")
            if new.share_keys and len(new.share_keys) != new.shares:
                raise SealError(
                    f"give one share key per share: {new.shares} shares, {len(new.share_keys)} keys"
                )
            for number, pem in enumerate(new.share_keys, 1):
                try:
                    check_public_key(pem.encode())
                except ShareBoxError as exc:
                    raise SealError(f"share key {number}: {exc}") from None
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

    async def _check_proof(self, proof: SealProof, new: NewSeal) -> bool:
        """The proof must give the root key this barrier holds now; False
        while current shares are still being collected (``proof.collect``)."""
        roots: list[KeyMaterial] = []
        refused = SealError(
            f"a rekey needs the current {self.kind} seal: "
            + {
                "shamir": "the threshold of current shares",
                "passphrase": "the current passphrase",
                "pkcs11": "the token's PIN",
            }.get(self.kind, "its secret")
        )
        # Outside the try: a collection for another target says so.
        collector = (
            self._proof_collector(new)
            if self.kind == "shamir" and proof.shares and proof.collect
            else None
        )
        try:
            if self.kind == "shamir" and proof.shares:
                if collector is None:
                    current = ShamirSeal(self._dir)
                    collector = ShareCollector(current.config()[1], knows=current.knows)
                for text in proof.shares:
                    root = collector.add(text)
                    if root is not None:
                        roots.append(root)
                        break
                if not roots and proof.collect:
                    return False
                if proof.collect:
                    self._authorising = None
            elif self.kind == "passphrase" and proof.passphrase:
                seal = PassphraseSeal(self._dir)
                roots.append(await asyncio.to_thread(seal.unseal, proof.passphrase))
            elif self.kind == "pkcs11" and proof.pin:
                token = Pkcs11Seal(self._dir, modules=self._modules)
                roots.append(await asyncio.to_thread(token.unseal, proof.pin))
        except SealError:
            raise refused from None
        proven = bool(roots) and self._barrier.holds(roots[0])
        for root in roots:
            root.wipe()  # a copy of the barrier's root, needed no longer
        if not proven:
            raise refused
        return True

    def _proof_collector(self, new: NewSeal) -> ShareCollector:
        """The collection of current shares for a rekey to ``new``; one for
        another target that has shares already is refused, not replaced (the
        operators agreed on one target)."""
        held = self._authorising
        if held is not None and held[1].progress and held[0] != new:
            raise SealError(
                f"current shares are being collected for a rekey to another target "
                f"({held[1].progress}/{held[1].threshold}): give the same options, or "
                "drop the collection with `operator rekey-cancel`"
            )
        if held is None or held[0] != new or not held[1].progress:
            current = ShamirSeal(self._dir)
            held = self._authorising = (
                new,
                ShareCollector(current.config()[1], knows=current.knows),
            )
        return held[1]

    def _write_pending(self, new: NewSeal, root: KeyMaterial) -> list[str]:
        if new.kind == "shamir":
            _, lines = ShamirSeal.init(
                self._dir,
                shares=new.shares,
                threshold=new.threshold,
                root=root,
                filename=REKEY_SEAL_FILE,
            )
            if new.share_keys:
                return [
                    seal_to_public_key(pem.encode(), line.encode())
                    for pem, line in zip(new.share_keys, lines, strict=True)
                ]
            return lines
        if new.kind == "passphrase":
            if not new.passphrase:
                raise SealError("a passphrase seal needs a passphrase")
            PassphraseSeal.init(self._dir, new.passphrase, root=root, filename=REKEY_SEAL_FILE)
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
                filename=REKEY_SEAL_FILE,
            )
            return []
        raise SealError(f"unknown seal type {new.kind!r}; use shamir, passphrase or pkcs11")
