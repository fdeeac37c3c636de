"""Anchors and the audit key: what the barrier-protected store vouches for.

The hash chain shows an edited or deleted line only if a later line follows
it, and anyone who can write the file can append well-chained lines. Two
things in the store, where values are sealed and bound to their path, close
that:

* **The audit key** (``audit/mac-key``, 32 random bytes made on first use):
  while the store is unsealed every line carries an HMAC under it
  (``chain.py``), so a line cannot be forged or edited without the root key.
* **Anchors** (``audit/anchor/<segment>``): each writer records its segment's
  tip (seq, SHA-256, byte length) about once a second and when it stops, so
  lines cut from the end, and a segment deleted, are caught; lines up to the
  anchor are vouched for even when unkeyed (written while sealed, or before
  keyed lines existed).

Lines past the anchor are fine when a MAC vouches for them (the last second
before a crash). Before a writer keys its lines it *adopts* its segment: the
lines the segment held at open past the anchor must chain from the anchored
line and be vouched for by a MAC; otherwise it refuses to chain on
(``AuditForged``), since chaining on and anchoring would make a forgery look
authentic. One exception: unkeyed lines that record only what a sealed
server writes (refused calls without a caller, operator calls). A server
stopped while sealed leaves exactly those, and nothing can tell them from a
forgery of the same shape; refusing them would stop every sealed restart.
They are adopted, and a keyed record says so, naming the lines. So is any
tail found when the store gets its audit key (an older keycask's, unkeyed).
``keycask audit quarantine`` moves refused lines aside so a writer can start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import orjson

from keycask.audit.chain import Anchor, AuditLog, scan_segment
from keycask.audit.record import AuditRecord
from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.errors import AuditUnavailable, KMSError, StorageConflict, StorageUnavailable

PREFIX = "audit/anchor/"
KEY_PATH = "audit/mac-key"
INTERVAL = 1.0

log = logging.getLogger("keycask.audit")


class AuditForged(AuditUnavailable):
    """A segment's lines past its anchor are not what keycask wrote."""


async def save(barrier: Barrier, segment: str, anchor: Anchor) -> None:
    doc = orjson.dumps({"seq": anchor.seq, "digest": anchor.digest, "size": anchor.size})
    await barrier.commit([barrier.put(PREFIX + segment, doc, expect=None)])


def _anchor(value: bytes) -> Anchor:
    doc = orjson.loads(value)
    return Anchor(int(doc["seq"]), str(doc["digest"]), int(doc.get("size", -1)))


async def load(barrier: Barrier) -> dict[str, Anchor]:
    anchors: dict[str, Anchor] = {}
    after = ""
    while True:
        rows = await barrier.list(PREFIX, after, 1000)
        if not rows:
            return anchors
        for path, value in rows:
            anchors[path[len(PREFIX) :]] = _anchor(value.value)
        after = rows[-1][0]


async def load_key(barrier: Barrier) -> KeyMaterial | None:
    """The store's audit key, or None if no writer has made one yet (read-only)."""
    stored = await barrier.get(KEY_PATH)
    return None if stored is None else KeyMaterial(stored.value)


async def audit_key(barrier: Barrier) -> KeyMaterial:
    """The store's audit key, made on first use (one for every node of a cluster)."""
    existing = await load_key(barrier)
    if existing is not None:
        return existing
    fresh = KeyMaterial.generate(32)
    try:
        await barrier.commit([barrier.put(KEY_PATH, fresh.reveal(), expect=0)])
    except StorageConflict:
        # Another writer made it first: use theirs.
        existing = await load_key(barrier)
        if existing is None:
            raise
        return existing
    return fresh


async def adopt(barrier: Barrier, audit: AuditLog) -> None:
    """Check what ``audit``'s segment held at open past its anchor, then key its lines.

    Raises ``AuditForged`` (and ``audit`` refuses every append) when those
    lines are not what keycask wrote: chaining on from them and anchoring the
    result would make a forgery look authentic.
    """
    # No key yet: the first start of a keycask with keyed lines on this store.
    # Lines past the anchor were then written by an older keycask, which never
    # keyed them: nothing can vouch for them nor refute them (as before).
    legacy = await load_key(barrier) is None
    key = await audit_key(barrier)
    stored = await barrier.get(PREFIX + audit.segment)
    anchor = None if stored is None else _anchor(stored.value)
    opened = audit.opened_at
    scan = await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: scan_segment(
            audit.path, anchor, None if legacy else key, stop=opened.seq, from_anchor=True
        ),
    )
    if scan.failure is not None:
        line, problem = scan.failure
        reason = (
            f"audit segment {audit.path} line {line}: {problem}; keycask will not chain on "
            "from it (run `keycask audit verify`)"
        )
        audit.refuse(reason)
        raise AuditForged(reason)
    audit.set_key(key)
    first = (0 if anchor is None else anchor.seq) + 1
    if legacy and opened.seq >= first:
        detail = (
            f"lines {first}-{opened.seq} of {audit.path.name} were past the last anchor "
            "when this store got its audit key: written by a keycask that did not key its "
            "lines (or forged); chained on from and vouched for from here on"
        )
        log.warning("audit: %s", detail)
        await audit.append(_adoption_record(detail))
    elif scan.sealed_tail is not None:
        first, last = scan.sealed_tail
        detail = (
            f"lines {first}-{last} of {audit.path.name} were past the last anchor without a "
            "MAC when this writer started; they record only what a sealed server writes "
            "(written while the store was sealed, or forged: nobody can tell) and are "
            "chained on from and vouched for from here on"
        )
        log.warning("audit: %s", detail)
        await audit.append(_adoption_record(detail))


def _adoption_record(detail: str) -> AuditRecord:
    return AuditRecord.event(
        time=datetime.now(UTC),
        request_id="audit-adoption",
        operation="keycask:AdoptAuditSegment",
        outcome="success",
        detail=detail,
        principal="keycask",
    )


async def open_keyed(barrier: Barrier, directory: Path, segment: str) -> AuditLog:
    """Open a segment for a local tool on an unsealed store, adopted and keyed."""
    audit = AuditLog.open(directory, segment)
    try:
        await adopt(barrier, audit)
    except BaseException:
        audit.close()
        raise
    return audit


class Anchoring:
    """Keys one log while the store is unsealed, and records its tip in the
    store whenever it moved, off the request path."""

    def __init__(self, barrier: Barrier, audit: AuditLog) -> None:
        self._barrier = barrier
        self._audit = audit
        self._saved: Anchor | None = None
        self._task: asyncio.Task[None] | None = None
        self._adopted = False
        self._refused = False
        # The key goes with the root key: lines are unkeyed until the next unseal.
        barrier.on_seal.append(lambda: audit.set_key(None))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            try:
                await self.flush()
            except AuditForged as exc:
                log.error("%s", exc)
                return  # said once; the log refuses every request
            except (KMSError, StorageConflict, StorageUnavailable) as exc:
                # Expected now and then (a barrier reserving seals during a
                # rotation, a seal racing the tick, a store outage): the audit
                # log itself is intact; only the extra check lags a tick.
                log.warning("could not record the audit anchor (%s); trying again", exc)
            except Exception:
                log.exception("could not record the audit anchor")

    async def flush(self) -> None:
        """Key the log if the store is unsealed (adopting its segment first,
        once), then record the tip. ``AuditForged`` if the segment is refused."""
        if self._barrier.sealed or self._refused:
            return  # recorded once an operator unseals; never for a refused segment
        if not self._audit.keyed:
            if not self._adopted:
                try:
                    await adopt(self._barrier, self._audit)
                except AuditForged:
                    self._refused = True
                    raise
                self._adopted = True
            else:
                self._audit.set_key(await audit_key(self._barrier))
        tip = self._audit.tip
        if tip.seq and tip != self._saved:
            await save(self._barrier, self._audit.segment, tip)
            self._saved = tip

    async def after_unseal(self) -> None:
        """``flush`` as soon as the store opens, so no request is served on an
        unchecked tip. A refused segment raises ``AuditForged``; any other
        failure is logged and the next tick tries again."""
        try:
            await self.flush()
        except AuditForged as exc:
            log.error("%s", exc)
            raise
        except Exception:
            log.exception("could not check the audit segment at unseal; trying again")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._adopted:
            # Not adopted yet (unsealed within the last second): the next
            # start adopts what this one wrote; a closed log takes no record.
            await self.flush()
