"""Sealed and unsealed: which seal guards the root key, taking the inputs
that open it, sealing again, and moving the root key to a new seal (rekey).

Why one module of ~690 lines: unsealing, sealing and both phases of a rekey
share one lock, one set of seal files (``seal.json``, ``seal.next.json``,
``seal.rekey.json``) and the share collections that go with them; which file
opens the store depends on all of them at once. The seal types themselves
(``seal/``) and the share collector are already their own modules.

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

In a cluster the other nodes cannot follow a rekey: it moves the store to a
new root key, which they do not hold. Each seals itself as soon as it sees
the commit (``Barrier._open_or_seal``); an operator copies the rekeyed
node's ``seal.json`` into its data dir and unseals it with the new secret.
While sealed, the keeper reads the seal file afresh (``_follow_seal_file``),
so no restart is needed.

Every change between sealed and unsealed is one line in the log: unsealed,
sealed by an operator, sealed because the store was rekeyed elsewhere (or
rolled back). None names a secret.
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
    SealType,
    Secret,
    registry,
    seal_type,
    sealfile,
)
from keycask.seal.dev import DevSeal
from keycask.seal.shamir import ShareCollector
from keycask.seal.types import ShareFile

log = logging.getLogger("keycask")

DEV = DevSeal.name
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

    def get(self, secret: Secret) -> str | None:
        """The one-piece secret of that kind given (not shares)."""
        return {Secret.PASSPHRASE: self.passphrase, Secret.PIN: self.pin}.get(secret)

    @classmethod
    def of(cls, secrets: dict[Secret, str]) -> UnsealInput:
        """From one-piece secrets by kind (a server's own at start)."""
        return cls(passphrase=secrets.get(Secret.PASSPHRASE), pin=secrets.get(Secret.PIN))


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

    def get(self, secret: Secret) -> str | None:
        """The one-piece secret of that kind shown (not shares)."""
        return {Secret.PASSPHRASE: self.passphrase, Secret.PIN: self.pin}.get(secret)


@dataclass(frozen=True, slots=True)
class VerifyInput:
    """The new secret of a pending rekey, handed back to prove it is held."""

    shares: tuple[str, ...] = ()
    passphrase: str | None = None

    def get(self, secret: Secret) -> str | None:
        """The one-piece secret of that kind handed back (not shares)."""
        return {Secret.PASSPHRASE: self.passphrase}.get(secret)


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
        announce: bool = True,
    ) -> None:
        """``pkcs11_modules`` are the PKCS#11 libraries this server may load,
        for its own seal and as a rekey's target (the server's own
        configuration: neither a request nor the data dir's seal file may
        name a library for the server to load). ``announce``: log each change
        between sealed and unsealed (a server's; a local command opening the
        store for itself does not speak for the server)."""
        self._announce = announce
        self._dir = data_dir
        self._modules = pkcs11_modules
        self._barrier = barrier
        self._lock = asyncio.Lock()
        self._dev = dev
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
        # However the barrier seals (an operator, or by itself after a rekey
        # elsewhere), inputs given so far are dropped with the keys.
        barrier.on_seal.append(self._forget_inputs)
        # Run once the barrier opens, before Unseal answers: the audit log
        # checks its segment's tip and keys its lines (audit/anchor.py) at
        # once, not at its next tick with requests served in between.
        self.after_unseal: Callable[[], Awaitable[None]] | None = None
        # New shares handed back for a pending rekey (``rekey_verify``).
        self._verifier: ShareCollector | None = None
        # Current shares collected one call at a time, for one rekey target.
        self._authorising: tuple[NewSeal, ShareCollector] | None = None

    def _type(self) -> SealType | None:
        """This server's seal type (None for the dev seal)."""
        return None if self._dev else registry.get(self.kind)

    def _share_file(self, filename: str) -> ShareFile | None:
        """The seal file ``filename`` if shares open it, else None."""
        kind = seal_type(self._dir, filename)
        if kind is None:
            return None
        found = registry.get(kind)
        return found.share_file(self._dir, filename) if found.secret is Secret.SHARES else None

    def _new_collector(self) -> ShareCollector | None:
        current = None if self._dev else self._share_file(SEAL_FILE)
        if current is None:
            return None
        _, threshold = current.config()
        return ShareCollector(threshold, knows=self._knows)

    def _follow_seal_file(self) -> None:
        """While sealed, the seal is what ``seal.json`` says now: after a
        rekey on another node an operator copies that node's file here, and
        this node unseals with it without a restart."""
        if self._dev or not self.sealed:
            return
        kind = seal_type(self._dir)
        if kind is not None and kind != self.kind:
            log.info("seal.json now names a %s seal (it was %s)", kind, self.kind)
            self.kind = kind
            self._collector = self._new_collector()
            return
        collector = self._collector
        if collector is not None and not collector.progress:
            current = self._share_file(SEAL_FILE)
            if current is not None and current.config()[1] != collector.threshold:
                self._collector = self._new_collector()

    def _knows(self, share: Share) -> bool | None:
        """Whether a seal file that may open the store now handed ``share``
        out (None: a file from before share digests, which cannot tell)."""
        answers = [
            found.knows(share)
            for filename in self._candidates()
            if (found := self._share_file(filename)) is not None
        ]
        if any(answers):
            return True
        return None if None in answers else False

    @property
    def sealed(self) -> bool:
        return self._barrier.sealed

    def status(self) -> dict[str, object]:
        self._follow_seal_file()
        status: dict[str, object] = {"sealed": self.sealed, "seal": self.kind}
        if self._collector is not None:
            status["progress"] = self._collector.progress
            status["threshold"] = self._collector.threshold
            current = self._share_file(SEAL_FILE)
            if current is not None:
                status["shares"] = current.config()[0]
        else:
            status["progress"] = 0
            status["threshold"] = 1
        because = self._barrier.sealed_because
        if self.sealed and because is not None:
            # Sealed by itself: say why (a rekey elsewhere names the next step).
            status["reason"] = because
        if not self._dev and (self._dir / NEXT_SEAL_FILE).exists():
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
        kind = None if self._dev else seal_type(self._dir, REKEY_SEAL_FILE)
        if kind is None:
            return None
        pending: dict[str, object] = {"seal": kind}
        pending_file = self._share_file(REKEY_SEAL_FILE)
        if pending_file is not None:
            shares, threshold = pending_file.config()
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
            self._follow_seal_file()
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
                if self._announce:
                    log.info("unsealed with the %s seal", self.kind)
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
            found.config()[1]
            for filename in self._candidates()
            if (found := self._share_file(filename)) is not None
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
                shares = self._share_file(filename)
                if shares is not None and shares.opens(root):
                    return [(root, filename)]
            return [(root, SEAL_FILE)]
        errors: list[str] = []
        found: list[tuple[KeyMaterial, str]] = []
        for filename in candidates:
            kind = seal_type(self._dir, filename)
            opener = None if kind is None else registry.get(kind)
            secret = None if opener is None else given.get(opener.secret)
            if opener is None or secret is None:
                continue
            try:
                root = await asyncio.to_thread(
                    opener.open, self._dir, filename, secret, modules=self._modules
                )
            except SealError as exc:
                errors.append(str(exc))
            else:
                found.append((root, filename))
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
        """An operator's seal: drop every key from memory, the barrier's and
        (through the barrier's seal hooks) every cache's."""
        if not self.sealed and self._announce:
            log.info("sealed by an operator")
        self._barrier.seal()

    def _forget_inputs(self) -> None:
        """Shares and proofs given so far go with the keys (a seal hook)."""
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
            if self._dev:
                raise SealError("a --dev server keeps its dev seal; there is nothing to rekey")
            if (self._dir / REKEY_SEAL_FILE).exists():
                raise SealError(
                    "a rekey is already pending: finish it with `operator rekey-verify` "
                    "or discard it with `operator rekey-cancel`"
                )
            target = self._check_new(new)
            if not await self._check_proof(proof, new):
                collecting = self._authorising
                assert collecting is not None
                return RekeyOutcome(
                    [], settled=False, authorising=True, progress=collecting[1].progress
                )
            root = KeyMaterial.generate(32)
            try:
                shares = await asyncio.to_thread(self._write_pending, target, new, root)
                if target.verified_by_server:
                    await asyncio.to_thread(
                        target.check_written,
                        self._dir,
                        REKEY_SEAL_FILE,
                        new,
                        root,
                        self._modules,
                    )
            except BaseException:
                sealfile.remove(self._dir / REKEY_SEAL_FILE)
                raise
            self._verifier = None
            if target.verified_by_server:
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
            target = registry.get(kind)
            if target.secret is Secret.SHARES:
                if not given.shares:
                    raise SealError(
                        f"the pending rekey is to a {target.title} seal: give the new shares"
                    )
                pending_seal = target.share_file(self._dir, REKEY_SEAL_FILE)
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
            elif not target.verified_by_server:
                secret = given.get(target.secret)
                if secret is None:
                    raise SealError(
                        f"the pending rekey is to a {target.title} seal: "
                        f"give the new {target.secret.noun}"
                    )
                root = await asyncio.to_thread(
                    target.open, self._dir, REKEY_SEAL_FILE, secret, modules=self._modules
                )
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

    def _check_new(self, new: NewSeal) -> SealType:
        """Refuse a bad target before any file is written; its seal type."""
        target = registry.get(new.kind)
        if new.share_keys and target.secret is not Secret.SHARES:
            raise SealError("share keys are for a seal of shares only")
        target.validate(new, modules=self._modules)
        for number, pem in enumerate(new.share_keys, 1):
            try:
                check_public_key(pem.encode())
            except ShareBoxError as exc:
                raise SealError(f"share key {number}: {exc}") from None
        return target

    async def _check_proof(self, proof: SealProof, new: NewSeal) -> bool:
        """The proof must give the root key this barrier holds now; False
        while current shares are still being collected (``proof.collect``)."""
        roots: list[KeyMaterial] = []
        current_type = self._type()
        assert current_type is not None  # rekey refuses the dev seal first
        refused = SealError(f"a rekey needs the current {self.kind} seal: {current_type.proof}")
        by_shares = current_type.secret is Secret.SHARES
        # Outside the try: a collection for another target says so.
        collector = (
            self._proof_collector(new) if by_shares and proof.shares and proof.collect else None
        )
        secret = proof.get(current_type.secret)
        try:
            if by_shares and proof.shares:
                if collector is None:
                    current = current_type.share_file(self._dir, SEAL_FILE)
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
            elif not by_shares and secret:
                roots.append(
                    await asyncio.to_thread(
                        current_type.open, self._dir, SEAL_FILE, secret, modules=self._modules
                    )
                )
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
            current_type = self._type()
            assert current_type is not None
            current = current_type.share_file(self._dir, SEAL_FILE)
            held = self._authorising = (
                new,
                ShareCollector(current.config()[1], knows=current.knows),
            )
        return held[1]

    def _write_pending(self, target: SealType, new: NewSeal, root: KeyMaterial) -> list[str]:
        _, lines = target.initialise(self._dir, new, root=root, filename=REKEY_SEAL_FILE)
        if new.share_keys:
            return [
                seal_to_public_key(pem.encode(), line.encode())
                for pem, line in zip(new.share_keys, lines, strict=True)
            ]
        return lines
