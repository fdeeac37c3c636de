"""Coordination between worker processes that share one SQLite store on one host.

Each worker caches keys, aliases and credentials. When one worker commits a
change, the others must stop trusting their caches before they answer another
request. A small shared file holds one counter per worker, mapped into every
worker's memory: a worker bumps its own slot after each commit (one writer per
slot, so no lock), and every worker compares the other slots with what it saw
last at the start of each request (~0.3 us). Writes across workers are
serialised with an exclusive ``flock`` on a lock file.

The multi-node issue replaces this with PostgreSQL LISTEN/NOTIFY and advisory
locks behind the same ``Coordinator`` port.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

_SLOT = struct.Struct("<Q")
MAX_WORKERS = 64


class SingleProcess:
    """The coordinator of a server that is the only process on its store."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    def stale(self) -> bool:
        return False

    def committed(self) -> None:
        pass

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    async def leads(self) -> bool:
        return True

    async def resign(self) -> None:
        pass

    def close(self) -> None:
        pass


class SharedFile:
    """The coordinator of one worker among several on the same data dir."""

    def __init__(self, directory: Path, slot: int) -> None:
        if not 0 <= slot < MAX_WORKERS:
            raise ValueError(f"worker slot must be in 0..{MAX_WORKERS - 1}")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / "workers.epoch"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _SLOT.size * MAX_WORKERS:
                os.ftruncate(fd, _SLOT.size * MAX_WORKERS)
            self._map = mmap.mmap(fd, _SLOT.size * MAX_WORKERS)
        finally:
            os.close(fd)
        self._slot = slot
        self._lock_fd = os.open(directory / "workers.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._local = asyncio.Lock()
        self._seen = self._others()
        # A worker killed between its commit and its announcement leaves a
        # change unannounced; its successor in this slot announces on start.
        self.committed()

    def _others(self) -> bytes:
        # Every slot but our own, as raw bytes: comparing bytes is the cheap check.
        start, end = self._slot * _SLOT.size, (self._slot + 1) * _SLOT.size
        return self._map[:start] + self._map[end:]

    def stale(self) -> bool:
        """True once per change another worker committed since the last call."""
        now = self._others()
        if now == self._seen:
            return False
        self._seen = now
        return True

    def committed(self) -> None:
        offset = self._slot * _SLOT.size
        (count,) = _SLOT.unpack_from(self._map, offset)
        _SLOT.pack_into(self._map, offset, count + 1)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._local:
            loop = asyncio.get_running_loop()
            # flock blocks: wait for it off the event loop.
            await loop.run_in_executor(None, fcntl.flock, self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    async def leads(self) -> bool:
        # Every worker runs the jobs: each one re-checks under the flock, so
        # a job due now runs once whichever worker gets there first.
        return True

    async def resign(self) -> None:
        pass

    def close(self) -> None:
        self._map.close()
        os.close(self._lock_fd)
