"""The seams between layers: Protocols and plain value types, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value and its revision (monotonic per path, starting at 1)."""

    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class Put:
    """Write ``value`` at ``path``.

    ``expect`` is the revision the path must have for the write to apply:
    ``None`` means unconditional, ``0`` means the path must not exist yet.
    """

    path: str
    value: bytes
    expect: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    path: str
    expect: int | None = None


Write = Put | Delete


class Storage(Protocol):
    """An untrusted key-value store with revisions.

    It only ever sees barrier ciphertext. ``commit`` applies all writes
    atomically or none, raising ``StorageConflict`` when an ``expect`` fails,
    and returns only once the writes are durable.
    """

    async def get(self, path: str) -> Entry | None: ...

    async def list(
        self, prefix: str, after: str = "", limit: int = 1000
    ) -> Sequence[tuple[str, Entry]]: ...

    async def commit(self, writes: Sequence[Write]) -> None: ...

    async def close(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class MovableClock(Clock, Protocol):
    """A clock a --dev server lets tests move forward."""

    @property
    def offset_seconds(self) -> float: ...

    def advance(self, seconds: float) -> None: ...

    def reload(self) -> None: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class Coordinator(Protocol):
    """What processes sharing one store tell each other.

    ``stale`` is true when another process committed since the last call (so
    caches must be dropped); ``committed`` announces our own commit;
    ``exclusive`` serialises writes across processes; ``leads`` picks who runs
    scheduled jobs.
    """

    def stale(self) -> bool: ...

    def committed(self) -> None: ...

    def exclusive(self) -> AbstractAsyncContextManager[None]: ...

    async def leads(self) -> bool:
        """Whether this process runs the jobs that must run once (scheduled
        rotation, deletion, expiry, the barrier rewrite). Those jobs also
        re-check under ``exclusive``, so two leaders would still act once."""
        ...

    async def resign(self) -> None:
        """Stop running those jobs (a sealed process cannot), so another may."""
        ...

    def close(self) -> None: ...
