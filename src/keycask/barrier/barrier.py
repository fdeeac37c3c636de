"""Every value at rest goes through here.

Why one module of ~640 lines: the barrier is one state machine (sealed,
unsealed, read-only) over one keyring. Every value sealed draws on the same
reservation from the active term, and every keyring change (unseal, tick,
rotation, rekey) goes through the same lock and the same check that no
``seal`` happened meanwhile; apart, a path could miss one of them. The
keyring's format is already its own module (``keyring.py``), and moving
values to a new term is ``rewrite.py``.

Format ``0x01 | term (4) | nonce (12) | ciphertext+tag`` with AAD ``format |
term | path``: storage is untrusted, and a value edited, truncated or copied to
another path fails to authenticate.

The barrier is sealed until given the root key, and can be sealed again: then
it holds no key at all, and every read or write raises ``Sealed``.

Terms rotate: ``rotate`` adds a term that new writes use while older terms keep
reading, and the keyring flags that values under older terms remain; the
rewrite (``barrier/rewrite.py``) moves them. Each term is AES-GCM with random
nonces, so it must not seal more than 2^32 values (NIST SP 800-38D 8.3). The
barrier reserves seals in blocks from the keyring before it uses them (see
``keyring.py``) and rotates by itself once a term has reserved ``rotate_at``,
a quarter of that bound.

Freshness: the keyring's ``epoch`` (sealed under the root key) grows with
every keyring write, and the barrier writes the keyring again on the next
tick (once a second) when a commit changed state since. A node remembers the
highest epoch it saw in its data dir (``storage/watermark.py``) and refuses a
store below it, at unseal and on every keyring read (``tick`` reads it
once a second): a whole-store rollback that undoes a change this node saw
acknowledged is refused. Single rows put back from an older copy are not
seen by this check (the store is trusted not to do that; see
docs/deployment.md), except where the value binds another (access keys and
their owner, ``auth/credentials.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keycask.barrier.keyring import KEYRING_PATH, Keyring
from keycask.crypto import AuthenticationFailed, KeyMaterial, open_sealed, seal
from keycask.crypto.backup_mac import backup_tag
from keycask.errors import (
    BarrierBusy,
    BarrierError,
    Sealed,
    SealError,
    StorageConflict,
    StoreRolledBack,
)
from keycask.ports import Delete, Entry, Put, Storage, Write
from keycask.storage.watermark import Watermark

log = logging.getLogger("keycask")

_FORMAT = 0x01
_PREFIX = struct.Struct(">BI")
PREFIX_SIZE = _PREFIX.size
# Seals taken from the keyring at a time: one keyring write per 65,536 values.
RESERVATION_BLOCK = 2**16
# A term retires once this many seals are reserved on it: 2^30, a quarter of
# AES-GCM's 2^32 random-nonce bound, leaving room for reservations lost to crashes.
ROTATE_AT = 2**30
_CAS_ATTEMPTS = 100
# Commits under these prefixes do not move the epoch: last-use records, audit
# anchors and nodes' heartbeats change every second or so and undo nothing
# when rolled back.
_QUIET_PREFIXES = ("usage/", "audit/", "node/")


@dataclass(frozen=True, slots=True)
class Versioned:
    value: bytes
    revision: int


# What a node says (log, errors) when it sealed because another node moved
# the store to a new root key.
REKEYED_ELSEWHERE = "sealed: the store was rekeyed on another node"


def term_of(stored: bytes) -> int | None:
    """The barrier term a stored value was sealed under; None if it is not a
    barrier value (the keyring itself)."""
    if len(stored) < _PREFIX.size or stored[0] != _FORMAT:
        return None
    return int(_PREFIX.unpack_from(stored)[1])


class Barrier:
    def __init__(
        self,
        storage: Storage,
        *,
        reservation_block: int = RESERVATION_BLOCK,
        rotate_at: int = ROTATE_AT,
        watermark: Watermark | None = None,
    ) -> None:
        """A sealed barrier over ``storage``; ``unseal`` opens it.
        ``watermark`` is this node's memory of the store's epoch (None: no
        rollback check, for tools on a store that is not a node's)."""
        self._storage = storage
        self._watermark = watermark
        # A commit changed state since the epoch last moved.
        self._advance_due = False
        self._block = reservation_block
        self._reserving: asyncio.Task[None] | None = None
        self._rotate_at = rotate_at
        self._root: KeyMaterial | None = None
        self._keyring: Keyring | None = None
        self._revision = 0
        # Seals this process may still make on the active term.
        self._remaining = 0
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        # The keyring reload another process's commit asked for (``reload_soon``),
        # and whether another was asked for since it read the keyring.
        self._reloader: asyncio.Task[None] | None = None
        self._reload_wanted = False
        # Bumped by every seal(): work that awaited across a seal must not
        # put keys back (see _check).
        self._generation = 0
        # Why the barrier sealed itself (None: never did, or an operator
        # sealed it, or it was unsealed since), for operator Status.
        self.sealed_because: str | None = None
        # Called by every seal(), an operator's or the barrier's own: whoever
        # caches what the barrier decrypted drops it here.
        self.on_seal: list[Callable[[], None]] = []

    @classmethod
    async def open(
        cls,
        storage: Storage,
        root: KeyMaterial,
        *,
        watermark: Watermark | None = None,
        **options: int,
    ) -> Barrier:
        """Unsealed with ``root``, creating the keyring on first start (the
        dev seal's way: there is nobody to run an initialisation)."""
        barrier = cls(storage, watermark=watermark, **options)
        if await storage.get(KEYRING_PATH) is None:
            await barrier.initialise(root)
        else:
            await barrier.unseal(root)
        return barrier

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def sealed(self) -> bool:
        return self._keyring is None

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            raise Sealed()
        return self._keyring

    async def initialised(self) -> bool:
        return await self._storage.get(KEYRING_PATH) is not None

    async def initialise(self, root: KeyMaterial) -> None:
        """Create the keyring under ``root`` and unseal; refuses a store that
        already has one, whose values would be lost with it."""
        generation = self._generation
        keyring = Keyring.new().reserve(self._block).advanced()
        try:
            await self._storage.commit([Put(KEYRING_PATH, keyring.seal_with(root), expect=0)])
        except StorageConflict:
            raise SealError("this store is already initialised") from None
        self._check(generation)
        self._saw(keyring)
        self._set(root, keyring, 1, self._block)

    async def unseal(self, root: KeyMaterial) -> None:
        """Open the keyring with ``root``; ``SealError`` if it does not open.
        The barrier owns ``root`` from then on: sealing overwrites it."""
        generation = self._generation
        entry = await self._storage.get(KEYRING_PATH)
        if entry is None:
            raise SealError("this store has no keyring: initialise it first")
        keyring = Keyring.open_with(root, entry.value)
        self._check(generation)
        rolled_back = self._rolled_back(keyring)
        if rolled_back:
            raise StoreRolledBack(rolled_back)
        self._saw(keyring)
        self._set(root, keyring, entry.revision, 0)
        try:
            await self._reserve()
        except BaseException:
            # Half unsealed (keys held, nothing reserved, no way to write) is
            # worse than sealed: the operator sees the error and tries again.
            self.seal()
            raise

    async def unseal_to_read(self, root: KeyMaterial) -> None:
        """Open the keyring with ``root`` for reading only: nothing is reserved
        or written (``audit verify`` must leave the store as it found it), so
        a write through this barrier fails."""
        entry = await self._storage.get(KEYRING_PATH)
        if entry is None:
            raise SealError("this store has no keyring: initialise it first")
        self._set(root, Keyring.open_with(root, entry.value), entry.revision, 0)

    def seal(self, because: str | None = None) -> None:
        """Forget every key. Values in flight fail with ``Sealed``, and work
        that was waiting on the store when this ran cannot unseal again.
        ``because``: why the barrier sealed itself (an operator needs none)."""
        self._generation += 1
        self.sealed_because = because
        for task in self._background:
            task.cancel()
        # Overwrite the keys before dropping them: a reference left anywhere
        # (a keyring copy held by work in flight) must not still hold a key.
        # Nothing between here and the await that follows any use of them
        # can run, and every such await re-checks the generation.
        if self._root is not None:
            self._root.wipe()
        if self._keyring is not None:
            for key in self._keyring.terms.values():
                key.wipe()
        self._root = None
        self._keyring = None
        self._remaining = 0
        self._revision = 0
        self._advance_due = False
        self._reload_wanted = False
        for hook in self.on_seal:
            hook()

    def holds(self, root: KeyMaterial) -> bool:
        """Whether ``root`` is the root key this barrier was unsealed with."""
        return self._root is not None and self._root.matches(root)

    def backup_tag(self, digest: bytes) -> bytes:
        """The MAC of a backup whose bytes hash to ``digest``, under a key
        derived from the root this barrier holds (``operator backup``)."""
        root = self._root
        if root is None:
            raise Sealed("keycask is sealed: unseal it before a backup")
        return backup_tag(root, digest)

    def _rolled_back(self, keyring: Keyring) -> str:
        """Why ``keyring`` is older than this node has seen, or "" if not."""
        if self._watermark is None:
            return ""
        seen = self._watermark.seen()
        if keyring.epoch >= seen:
            return ""
        return (
            f"the store was rolled back: its keyring is at epoch {keyring.epoch}, "
            f"but this node saw epoch {seen}. Deleted keys, access keys or "
            "principals may be back. If you restored an older store on purpose, "
            f"remove {self._watermark.path} and start again"
        )

    def _saw(self, keyring: Keyring) -> None:
        if self._watermark is not None:
            self._watermark.record(keyring.epoch)

    def _check(self, generation: int) -> None:
        if generation != self._generation:
            raise Sealed("keycask was sealed while this was in progress")

    def _set(self, root: KeyMaterial, keyring: Keyring, revision: int, remaining: int) -> None:
        self.sealed_because = None
        self._root, self._keyring, self._revision = root, keyring, revision
        self._remaining = remaining

    # -- values --

    def encrypt(self, path: str, plaintext: bytes) -> bytes:
        keyring = self.keyring
        if self._remaining <= 0:
            self._reserve_soon()
            raise BarrierBusy("keycask is reserving barrier capacity; retry the request")
        self._remaining -= 1
        if self._remaining < self._block // 2:
            self._reserve_soon()
        term, key = keyring.active()
        prefix = _PREFIX.pack(_FORMAT, term)
        return prefix + seal(key, plaintext, aad=prefix + path.encode())

    def decrypt(self, path: str, stored: bytes) -> bytes:
        keyring = self.keyring
        term = term_of(stored)
        if term is None:
            raise BarrierError(f"value at {path!r} is not a barrier value")
        key = keyring.terms.get(term)
        if key is None:
            raise BarrierError(f"value at {path!r} names unknown barrier term {term}")
        prefix = stored[: _PREFIX.size]
        try:
            return open_sealed(key, stored[_PREFIX.size :], aad=prefix + path.encode())
        except AuthenticationFailed:
            raise BarrierError(
                f"value at {path!r} failed to authenticate (tampered or moved)"
            ) from None

    async def _decrypt(self, path: str, stored: bytes) -> bytes:
        term = term_of(stored)
        if term is not None and term not in self.keyring.terms:
            # Another process rotated since this one read the keyring.
            await self.reload()
        return self.decrypt(path, stored)

    async def get(self, path: str) -> Versioned | None:
        if path == KEYRING_PATH:
            raise SealError("the keyring is not readable through the barrier")
        if self._keyring is None:
            raise Sealed()
        entry = await self._storage.get(path)
        if entry is None:
            return None
        return Versioned(await self._decrypt(path, entry.value), entry.revision)

    async def list(
        self, prefix: str, after: str = "", limit: int = 1000
    ) -> list[tuple[str, Versioned]]:
        if self._keyring is None:
            raise Sealed()
        rows = await self._storage.list(prefix, after, limit)
        return [(p, Versioned(await self._decrypt(p, e.value), e.revision)) for p, e in rows]

    def put(self, path: str, plaintext: bytes, *, expect: int | None) -> Put:
        """A write to pass to ``commit``; encrypted now, applied then."""
        return Put(path, self.encrypt(path, plaintext), expect)

    @staticmethod
    def delete(path: str, *, expect: int | None) -> Delete:
        return Delete(path, expect)

    async def commit(self, writes: Sequence[Write]) -> None:
        keyring = self._keyring
        if keyring is None:
            raise Sealed()
        for write in writes:
            # A value sealed before a slow await, under a term that a finished
            # rewrite has since retired, would be unreadable once stored:
            # refuse it (nothing is acknowledged; the caller retries).
            if isinstance(write, Put) and write.path != KEYRING_PATH:
                term = term_of(write.value)
                if term is not None and term not in keyring.terms:
                    raise BarrierBusy("keycask retired a barrier term meanwhile; retry the request")
        await self._storage.commit(writes)
        if any(not w.path.startswith(_QUIET_PREFIXES) for w in writes):
            # The next tick moves the epoch past this commit (see ``tick``).
            self._advance_due = True

    def reseal(self, path: str, entry: Entry) -> Put | None:
        """The write that moves a value sealed under an older term to the
        active one (keeping its path and checking its revision), or None if
        it is already under the active term or is the keyring."""
        term = term_of(entry.value)
        if path == KEYRING_PATH or term is None or term == self.keyring.active_term:
            return None
        return Put(path, self.encrypt(path, self.decrypt(path, entry.value)), entry.revision)

    # -- the keyring --

    async def reload(self) -> None:
        """Read the keyring again if another process changed it."""
        async with self._lock:
            generation = self._generation
            root, held = self._root, self._keyring
            if root is None or held is None:
                raise Sealed()
            entry = await self._storage.get(KEYRING_PATH)
            self._check(generation)
            if entry is None or entry.revision == self._revision:
                return
            keyring = self._open_or_seal(root, entry.value)
            moved = keyring.active_term != held.active_term
            self._keyring, self._revision = keyring, entry.revision
            if moved:
                # Our reservation was on the old term; new writes need one here.
                self._remaining = 0
        await self._reserve()

    def _open_or_seal(self, root: KeyMaterial, blob: bytes) -> Keyring:
        """The stored keyring under ``root``; if ``root`` no longer opens it
        (another node moved the store to a new root key), seal: this process
        can neither read new terms nor count its seals any more."""
        try:
            keyring = Keyring.open_with(root, blob)
        except SealError:
            # The one line an operator sees: expected after a rekey on
            # another node of a cluster, so a warning with the next step, not
            # a traceback (docs/deployment.md, "Rekey in a cluster").
            log.warning(
                "%s (its keyring no longer opens with this node's root key; if no "
                "rekey ran, it was altered): copy that node's seal.json into this "
                "data dir and unseal with the new seal",
                REKEYED_ELSEWHERE,
            )
            self.seal(
                f"{REKEYED_ELSEWHERE}: copy that node's seal.json into this data dir "
                "and unseal with the new seal"
            )
            raise Sealed(f"keycask {REKEYED_ELSEWHERE}") from None
        rolled_back = self._rolled_back(keyring)
        if rolled_back:
            log.error("%s; sealing", rolled_back)
            self.seal(f"sealed: {rolled_back}")
            raise Sealed(f"keycask sealed itself: {rolled_back}")
        self._saw(keyring)
        return keyring

    async def tick(self) -> None:
        """Once a second on every node (the scheduler's tick): move the epoch
        past the commits made since the last tick, in one keyring write, or
        else just read the keyring, and either way seal if the store went
        back below what this node saw (rolled back while it runs)."""
        root = self._root
        if root is None:
            return
        if self._advance_due:
            self._advance_due = False
            try:
                async with self._lock:
                    await self._update("advance")
            except Sealed:
                return  # sealed meanwhile, or sealed itself and said why
            except BaseException:
                self._advance_due = True  # next tick
                raise
            if self._remaining <= 0:
                await self._reserve()  # the active term moved meanwhile
            return
        if self._watermark is None:
            return
        # Under the lock: this node's own rekey commits the keyring under the
        # new root before it holds that root, and a read in between would
        # take it for a rekey elsewhere and seal (a CI failure once).
        async with self._lock:
            root = self._root
            if root is None:
                return
            generation = self._generation
            entry = await self._storage.get(KEYRING_PATH)
            if generation != self._generation or self._root is not root:
                return
            if entry is None:
                log.error("the keyring disappeared from the store; sealing")
                self.seal("sealed: the keyring disappeared from the store")
                return
            with contextlib.suppress(Sealed):  # it said why, and sealed
                self._open_or_seal(root, entry.value)

    def reload_soon(self) -> None:
        """``reload`` in the background (another process committed): until it
        lands, writes keep using a term that still reads. One reload at a
        time, and one more if asked again while it ran (a commit it may have
        read too early for)."""
        if self._keyring is None:
            return
        self._reload_wanted = True
        if self._reloader is None or self._reloader.done():
            self._reloader = self._background_task(self._reload_while_wanted())

    async def _reload_while_wanted(self) -> None:
        while self._reload_wanted:
            self._reload_wanted = False
            await self.reload()

    @property
    def reloading(self) -> bool:
        """A keyring reload is in flight (``current`` would wait for it)."""
        task = self._reloader
        return task is not None and not task.done()

    async def current(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for a reload in flight: a
        request must not be answered with keys the store no longer opens with
        once this node knows another committed (after a rekey elsewhere the
        reload seals). Nothing in flight, nothing to wait for."""
        task = self._reloader
        if task is None or task.done():
            return
        # asyncio.wait neither cancels the reload when a request gives up nor
        # raises what ended it (a reload that sealed was cancelled by its seal).
        await asyncio.wait({task}, timeout=timeout)

    def _reserve_soon(self) -> None:
        # One reservation in flight at a time: from half a block used until
        # it lands, every seal asks, and a task each (seen as 60 % of seals in
        # benchmarks/seed.py's tight loop) would only queue on the lock.
        pending = self._reserving
        if pending is not None and not pending.done():
            return
        self._reserving = self._background_task(self._reserve())

    def _background_task(self, work: object) -> asyncio.Task[None] | None:
        assert asyncio.iscoroutine(work)
        try:
            task = asyncio.get_running_loop().create_task(self._quietly(work))
        except RuntimeError:
            work.close()
            return None
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    @staticmethod
    async def _quietly(work: object) -> None:
        assert asyncio.iscoroutine(work)
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await work
            except Sealed:
                pass  # sealed meanwhile, or sealed itself and said why
            except Exception:
                log.exception("barrier keyring update failed; it will be retried")

    async def _update(
        self, change: str, *, term: int | None = None, retire: frozenset[int] = frozenset()
    ) -> Keyring:
        """Apply ``change`` (``reserve``, ``rotate``, ``rewritten`` or
        ``advance``, which only moves the epoch) to the
        stored keyring with a conditional write, retrying when another process
        changed it first. Callers hold ``self._lock``. ``term`` (for
        ``rewritten``) is the term the finished rewrite moved values to: the
        flag stays if a newer term started meanwhile."""
        generation = self._generation
        for _ in range(_CAS_ATTEMPTS):
            root = self._root
            if root is None:
                raise Sealed()
            entry = await self._storage.get(KEYRING_PATH)
            self._check(generation)
            if entry is None:
                raise BarrierError("the keyring disappeared from the store")
            current = self._open_or_seal(root, entry.value)
            if change == "rewritten":
                if not current.rewrite or current.active_term != term:
                    new = current
                else:
                    new = current.retired(retire)
            elif change == "advance":
                new = dataclasses.replace(current)
            elif change == "rotate" or current.active_reserved + self._block > self._rotate_at:
                new = current.rotated().reserve(self._block)
            else:
                new = current.reserve(self._block)
            if new is not current:
                new = new.advanced()
                try:
                    await self._storage.commit(
                        [Put(KEYRING_PATH, new.seal_with(root), expect=entry.revision)]
                    )
                except StorageConflict:
                    continue
                self._check(generation)
                self._saw(new)
            held = self._keyring
            same = held is not None and new.active_term == held.active_term
            if change in ("rewritten", "advance"):
                # Seals already reserved stay ours only on the same term.
                if not same:
                    self._remaining = 0
            else:
                self._remaining = (self._remaining if same else 0) + self._block
                if new.active_term != current.active_term:
                    log.info("barrier rotated to term %d", new.active_term)
            revision = entry.revision + 1 if new is not current else entry.revision
            self._keyring, self._revision = new, revision
            return new
        raise BarrierError("the keyring kept changing; could not update it")

    async def _reserve(self) -> None:
        async with self._lock:
            if self._remaining >= self._block // 2:
                return  # another task reserved while we waited
            await self._update("reserve")

    async def rotate(self) -> int:
        """Start a new term now; returns its number."""
        async with self._lock:
            return (await self._update("rotate")).active_term

    async def rewritten(self, term: int, *, retire: frozenset[int] = frozenset()) -> None:
        """Record that no value under a term older than ``term`` remains, and
        drop the keys of the terms in ``retire`` (older terms no stored value
        uses), so the keyring stops holding keys that a keyring from before
        (a backup, or one sealed under a root since replaced) also holds."""
        async with self._lock:
            await self._update("rewritten", term=term, retire=retire)
        if self._remaining <= 0:
            await self._reserve()

    async def rekey(self, new_root: KeyMaterial, *, rotate: bool = False) -> None:
        """Seal the keyring under ``new_root`` instead (the seal changed);
        with ``rotate``, in the same write, start a new term, so nothing
        written from now on is under a term key that the old root's keyring
        (in a backup or a snapshot) holds.

        A commit that fails without a conflict may still have landed (the
        connection dropped after COMMIT): the stored keyring then says which
        root it is under, and that is the answer."""
        async with self._lock:
            generation = self._generation
            for _ in range(_CAS_ATTEMPTS):
                if self._root is None:
                    raise Sealed()
                entry = await self._storage.get(KEYRING_PATH)
                self._check(generation)
                if entry is None:
                    raise BarrierError("the keyring disappeared from the store")
                current = self._open_or_seal(self._root, entry.value).advanced()
                if rotate:
                    current = current.rotated()
                try:
                    await self._storage.commit(
                        [Put(KEYRING_PATH, current.seal_with(new_root), expect=entry.revision)]
                    )
                except StorageConflict:
                    continue
                except Exception:
                    if not await self._stored_under(new_root):
                        raise
                self._saw(current)
                if generation != self._generation:
                    return  # sealed meanwhile: the store is under new_root all the same
                moved = self._keyring is None or current.active_term != self._keyring.active_term
                old_root = self._root
                self._root, self._keyring, self._revision = new_root, current, entry.revision + 1
                if old_root is not new_root:
                    old_root.wipe()  # opens nothing from now on; no reason to keep it
                if moved:
                    self._remaining = 0
                break
            else:
                raise BarrierError("the keyring kept changing; could not rekey it")
        if self._remaining <= 0:
            await self._reserve()

    async def _stored_under(self, root: KeyMaterial) -> bool:
        entry = await self._storage.get(KEYRING_PATH)
        if entry is None:
            return False
        try:
            Keyring.open_with(root, entry.value)
        except SealError:
            return False
        return True

    async def opens_store(self) -> bool:
        """Whether the stored keyring opens with the root key held now."""
        root = self._root
        return root is not None and await self._stored_under(root)
