"""Each key's last successful cryptographic use, for GetKeyLastUsage.

Writing to the store on every Encrypt would put a disk write on the hot path,
so uses are kept in memory and written about once a second (and at shutdown),
newest wins. GetKeyLastUsage merges what is written with what this process
has not written yet. AWS documents the operation as eventually consistent;
here a crash can lose at most the last second of tracking, never a key.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from keycask.errors import Sealed
from keycask.keys.keystore import KeyStore

log = logging.getLogger("keycask")
# Keys written per flush: the write lock is held for one commit of this many.
_BATCH = 1000


# Not frozen, though nothing changes one once made: 0.42 us per Usage frozen
# against ~0.14 us (thread_time), and every successful cryptographic call
# makes one.
@dataclass(slots=True)
class Usage:
    operation: str
    time: datetime
    request_id: str

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "operation": self.operation,
                "time": self.time.timestamp(),
                "request_id": self.request_id,
            }
        )

    @classmethod
    def from_bytes(cls, value: bytes) -> Usage:
        doc = orjson.loads(value)
        return cls(doc["operation"], datetime.fromtimestamp(doc["time"], UTC), doc["request_id"])


def _newer(a: Usage | None, b: Usage | None) -> Usage | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a.time >= b.time else b


class UsageTracker:
    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys
        self._pending: dict[uuid.UUID, Usage] = {}

    def record(self, key_id: uuid.UUID, usage: Usage) -> None:
        self._pending[key_id] = usage

    async def last(self, key_id: uuid.UUID) -> Usage | None:
        stored = await self._keys.usage(key_id)
        written = None if stored is None else Usage.from_bytes(stored.value)
        return _newer(self._pending.get(key_id), written)

    async def flush(
        self, lock: AbstractAsyncContextManager[None], refresh: Callable[[], None]
    ) -> None:
        """Write what was used since the last flush, in one commit. ``lock``
        is the store's write lock and ``refresh`` drops stale caches: a key
        another worker has just deleted must not get a usage entry back."""
        if not self._pending:
            return
        batch = dict(itertools.islice(self._pending.items(), _BATCH))
        for key_id in batch:
            del self._pending[key_id]
        try:
            async with lock:
                refresh()
                writes = []
                for key_id, usage in batch.items():
                    if not await self._keys.key_exists(key_id):
                        continue
                    stored = await self._keys.usage(key_id)
                    if stored is not None and Usage.from_bytes(stored.value).time >= usage.time:
                        continue
                    writes.append(self._keys.stage_usage(key_id, usage.to_bytes(), None))
                await self._keys.commit(writes)
        except Sealed:
            # Sealed meanwhile (by an operator, or by a rekey on another
            # node): expected, not a fault, so one line and no traceback; the
            # uses are written once the store is unsealed.
            log.warning("sealed: the last use of %d keys is recorded once unsealed", len(batch))
            self._requeue(batch)
        except Exception:
            log.exception("could not record the last use of %d keys; will retry", len(batch))
            self._requeue(batch)

    def _requeue(self, batch: dict[uuid.UUID, Usage]) -> None:
        for key_id, usage in batch.items():
            self._pending[key_id] = _newer(self._pending.get(key_id), usage) or usage
