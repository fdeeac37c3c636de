"""Anchors: each segment's last line, recorded in the barrier-protected store.

The hash chain shows an edited or deleted line only if a later line follows
it. Cutting lines from the end, or rewriting the tail with fresh hashes, needs
only write access to the file; it cannot forge a value in the store, where
values are sealed and bound to their path. So the server records each
segment's tip there about once a second and when it stops, and ``keycask audit
verify`` checks the files against it. What the last second before a crash
wrote is covered by the chain only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson

from keycask.audit.chain import Anchor, AuditLog
from keycask.barrier import Barrier

PREFIX = "audit/anchor/"
INTERVAL = 1.0

log = logging.getLogger("keycask.audit")


async def save(barrier: Barrier, segment: str, anchor: Anchor) -> None:
    doc = orjson.dumps({"seq": anchor.seq, "digest": anchor.digest})
    await barrier.commit([barrier.put(PREFIX + segment, doc, expect=None)])


async def load(barrier: Barrier) -> dict[str, Anchor]:
    anchors: dict[str, Anchor] = {}
    after = ""
    while True:
        rows = await barrier.list(PREFIX, after, 1000)
        if not rows:
            return anchors
        for path, value in rows:
            doc = orjson.loads(value.value)
            anchors[path[len(PREFIX) :]] = Anchor(int(doc["seq"]), str(doc["digest"]))
        after = rows[-1][0]


class Anchoring:
    """Records one log's tip in the store whenever it moved, off the request path."""

    def __init__(self, barrier: Barrier, audit: AuditLog) -> None:
        self._barrier = barrier
        self._audit = audit
        self._saved: Anchor | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            try:
                await self.flush()
            except Exception:
                # The audit log itself is intact; only the extra check lags.
                log.exception("could not record the audit anchor")

    async def flush(self) -> None:
        if self._barrier.sealed:
            return  # recorded once an operator unseals
        tip = self._audit.tip
        if tip.seq and tip != self._saved:
            await save(self._barrier, self._audit.segment, tip)
            self._saved = tip

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
