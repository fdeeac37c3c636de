"""The nodes of a cluster, as each records itself in the store.

Every server (a node: one process, or one group of worker processes on one
data dir, of which worker 0 writes) keeps ``node/<node id>`` up to date:
its name, advertised address, version, start time, last heartbeat and state
("ready", or "stopped" after a clean stop). The maintenance timer writes
it every ``HEARTBEAT_INTERVAL`` seconds. Nothing in it is secret; it goes
through the barrier like every value (so a sealed node, which holds no key,
cannot write: its entry goes stale). Readers call an entry whose heartbeat
is older than ``STALE_AFTER`` seconds "unreachable"; a heartbeat removes
entries older than ``PRUNE_AFTER``.

The writes are quiet: ``node/`` is one of the prefixes no cache holds, so a
heartbeat moves neither the barrier's epoch nor a PostgreSQL cluster's
(``storage/postgres.py``), notifies no node and drops no cache. They take no
write lock either (as the audit anchors take none): a node only ever puts
its own path, unconditionally, and a prune deletes another's entry only at
the revision it read.

The node id is stable per data dir (``<data dir>/node-id``, made on first
start), so a restarted node takes its entry back instead of adding one.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from keycask import privatefile
from keycask.barrier import Barrier
from keycask.errors import Sealed, StorageConflict

log = logging.getLogger("keycask")

PREFIX = "node/"
NODE_ID_FILE = "node-id"
HEARTBEAT_INTERVAL = 5.0
STALE_AFTER = 60.0
PRUNE_AFTER = 24 * 3600.0
_LIST_PAGE = 1000


@dataclass(frozen=True, slots=True)
class NodeRecord:
    node_id: str
    name: str
    address: str
    version: str
    started: float
    heartbeat: float
    state: str  # ready | stopped

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "node_id": self.node_id,
                "name": self.name,
                "address": self.address,
                "version": self.version,
                "started": self.started,
                "heartbeat": self.heartbeat,
                "state": self.state,
            }
        )

    @classmethod
    def from_bytes(cls, value: bytes) -> NodeRecord:
        doc = orjson.loads(value)
        return cls(
            str(doc["node_id"]),
            str(doc["name"]),
            str(doc["address"]),
            str(doc["version"]),
            float(doc["started"]),
            float(doc["heartbeat"]),
            str(doc["state"]),
        )


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as a reader sees it now: ``state`` is "unreachable" once
    its heartbeat is stale, else what it wrote; ``this`` is the node asked."""

    record: NodeRecord
    state: str
    this: bool


def node_id(data_dir: Path) -> str:
    """This data dir's node id, made (16 hex digits) on first use."""
    path = data_dir / NODE_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    # FileExistsError: another worker of this node made it meanwhile.
    with contextlib.suppress(FileExistsError):
        privatefile.write_new(path, secrets.token_hex(8) + "\n")
    return path.read_text().strip()


class NodeRegistry:
    """This node's entry (``heartbeat``, ``stop``) and everyone's (``nodes``)."""

    def __init__(
        self,
        barrier: Barrier,
        record: NodeRecord,
        *,
        clock: Callable[[], float] = time.time,
        interval: float = HEARTBEAT_INTERVAL,
        writes: bool = True,
    ) -> None:
        """``record``: this node's entry (its heartbeat and state are set
        at each write). ``writes`` False: a worker other than the node's
        first, which reads the entries but leaves its own to worker 0."""
        self._barrier = barrier
        self._record = record
        self._clock = clock
        self._interval = interval
        self._writes = writes
        self._last: float | None = None
        self._pruned: float | None = None

    @property
    def node_id(self) -> str:
        return self._record.node_id

    async def heartbeat(self) -> None:
        """Write this node's entry if ``interval`` passed since the last
        write (called every tick of the maintenance timer)."""
        now = self._clock()
        if not self._writes or self._barrier.sealed:
            return
        if self._last is not None and now - self._last < self._interval:
            return
        try:
            await self._write("ready", now)
            if self._pruned is None or now - self._pruned >= STALE_AFTER:
                self._pruned = now
                await self._prune(now)
        except Sealed:
            return
        except Exception as exc:
            # The next tick tries again; readers see the entry go stale.
            log.warning("could not record this node's heartbeat: %s", exc)

    async def stop(self) -> None:
        """A clean stop: the entry says "stopped" rather than going stale."""
        if not self._writes or self._barrier.sealed:
            return
        try:
            await self._write("stopped", self._clock())
        except Exception as exc:
            log.warning("could not record this node's stop: %s", exc)

    async def _write(self, state: str, now: float) -> None:
        record = replace(self._record, heartbeat=now, state=state)
        path = PREFIX + record.node_id
        await self._barrier.commit([self._barrier.put(path, record.to_bytes(), expect=None)])
        self._last = now

    async def _entries(self) -> list[tuple[str, int, NodeRecord]]:
        found: list[tuple[str, int, NodeRecord]] = []
        after = ""
        while True:
            rows = await self._barrier.list(PREFIX, after, _LIST_PAGE)
            for path, entry in rows:
                try:
                    found.append((path, entry.revision, NodeRecord.from_bytes(entry.value)))
                except (ValueError, KeyError, TypeError):
                    log.warning("%s: not a node entry; ignored", path)
            if len(rows) < _LIST_PAGE:
                return found
            after = rows[-1][0]

    async def _prune(self, now: float) -> None:
        gone = [
            self._barrier.delete(path, expect=revision)
            for path, revision, record in await self._entries()
            if now - record.heartbeat > PRUNE_AFTER and record.node_id != self.node_id
        ]
        for write in gone:
            # StorageConflict: it wrote again meanwhile, so it is back.
            with contextlib.suppress(StorageConflict):
                await self._barrier.commit([write])

    async def nodes(self) -> list[NodeView]:
        """Every node's entry, this node's first, then by name."""
        now = self._clock()
        views = []
        for _path, _revision, record in await self._entries():
            stale = now - record.heartbeat > STALE_AFTER
            this = record.node_id == self.node_id
            views.append(NodeView(record, "unreachable" if stale else record.state, this))
        views.sort(key=lambda v: (not v.this, v.record.name, v.record.node_id))
        return views
