"""The background rewrite after a barrier rotation: every value still sealed
under an older term is sealed again under the active one.

A pass walks the whole store in path order, a batch at a time, and re-seals
with a conditional write on the revision it read, so a value that a request
changed meanwhile is left to that request (its write used some live term; the
next pass looks again). When a whole pass finds nothing to move, the keyring's
``rewrite`` flag is cleared and the older terms that no stored value uses
(``retirable``: a full scan, made under the write lock just before) are
dropped from the keyring: their keys are then only in keyrings from before
(backups), which is what a rekey needs. The caller decides when a batch may run (the
service runs it under the store's write lock, between requests).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from keycask.barrier.barrier import Barrier, term_of
from keycask.barrier.keyring import KEYRING_PATH
from keycask.errors import StorageConflict
from keycask.ports import Put

BATCH = 200


@dataclass(frozen=True, slots=True)
class Step:
    moved: int
    cursor: str | None  # where the next batch starts; None: the pass reached the end


async def rewrite_batch(barrier: Barrier, cursor: str, *, limit: int = BATCH) -> Step:
    """Re-seal the old-term values among the next ``limit`` paths after ``cursor``."""
    rows = await barrier.storage.list("", cursor, limit)
    writes: list[Put] = []
    for path, entry in rows:
        put = barrier.reseal(path, entry)
        if put is not None:
            writes.append(put)
    moved = len(writes)
    if writes:
        try:
            await barrier.commit(writes)
        except StorageConflict:
            # One of them changed under us: keep the rest, one at a time.
            moved = 0
            for put in writes:
                try:
                    await barrier.commit([put])
                    moved += 1
                except StorageConflict:
                    pass
    return Step(moved, rows[-1][0] if len(rows) == limit else None)


async def terms_in_use(barrier: Barrier) -> Counter[int]:
    """How many stored values each barrier term seals (a full scan)."""
    counts: Counter[int] = Counter()
    cursor = ""
    while True:
        rows = await barrier.storage.list("", cursor, 1000)
        for path, entry in rows:
            term = term_of(entry.value)
            if term is not None and path != KEYRING_PATH:
                counts[term] += 1
        if len(rows) < 1000:
            return counts
        cursor = rows[-1][0]


async def retirable(barrier: Barrier, term: int) -> frozenset[int]:
    """The terms older than ``term`` that the keyring holds and no stored
    value is sealed under: what a finished rewrite to ``term`` may drop."""
    used = await terms_in_use(barrier)
    return frozenset(t for t in barrier.keyring.terms if t < term and not used[t])
