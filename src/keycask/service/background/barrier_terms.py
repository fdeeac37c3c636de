"""The barrier's terms: rotating to a new term, and moving every stored
value to the active term afterwards, a slice at a time between requests."""

from __future__ import annotations

import asyncio
import logging

from keycask.barrier import Barrier
from keycask.barrier.rewrite import retirable, rewrite_batch
from keycask.ports import Coordinator
from keycask.service.freshness import Freshness

log = logging.getLogger("keycask")

# How long one scheduler tick may spend moving values to a new barrier term.
_REWRITE_SLICE = 0.5
# A finished rewrite retires old terms only once its term has been active this
# long: a node of a cluster that has not reloaded the keyring yet may still
# seal under the old term (it reloads on the next commit notice or epoch poll,
# within about a second); until then the passes go on, finding nothing.
_RETIRE_AFTER = 5.0


class BarrierTerms:
    def __init__(self, barrier: Barrier, coordinator: Coordinator, freshness: Freshness) -> None:
        self._barrier = barrier
        self._coordinator = coordinator
        self._freshness = freshness
        self._cursor = ""
        self._moved = 0
        self._term = 0
        self._since = 0.0  # when this process first saw _term active

    async def rotate(self) -> int:
        """A new active term (operator Rotate); the rewrite follows on the ticks."""
        async with self._coordinator.exclusive():
            term = await self._barrier.rotate()
            self._coordinator.committed()
        self._cursor, self._moved = "", 0
        return term

    async def rewrite(self) -> None:
        """Move values to the active term, a batch at a time under the write
        lock (so requests interleave), for at most ``_REWRITE_SLICE`` seconds a
        tick. A pass that moves nothing ends the rewrite."""
        barrier = self._barrier
        if barrier.sealed or not barrier.keyring.rewrite:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _REWRITE_SLICE
        if not self._cursor:
            # A pass moves values to this term; a newer term needs its own pass.
            term = barrier.keyring.active_term
            if term != self._term:
                self._term, self._since = term, loop.time()
        while loop.time() < deadline:
            async with self._coordinator.exclusive():
                self._freshness.refresh()
                step = await rewrite_batch(barrier, self._cursor)
                if step.moved:
                    # Revisions moved: cached documents must be read again.
                    self._freshness.forget()
                    self._coordinator.committed()
            self._moved += step.moved
            if step.cursor is not None:
                self._cursor = step.cursor
                continue
            done = self._moved == 0
            self._cursor, self._moved = "", 0
            if done and loop.time() - self._since < _RETIRE_AFTER:
                return  # clean, but too soon to retire terms: another pass next tick
            if done:
                async with self._coordinator.exclusive():
                    retire = await retirable(barrier, self._term)
                    await barrier.rewritten(self._term, retire=retire)
                    self._coordinator.committed()
                log.info("barrier rewrite finished: every value is under the active term")
            return
