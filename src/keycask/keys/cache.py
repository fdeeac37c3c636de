"""What the key store keeps in memory: values with the revision they were read
at (``Stored``, which a conditional write expects), in caches that are bounded
and safe against a read that races an invalidation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stored(Generic[T]):
    """A value together with the storage revision it was read at."""

    value: T
    revision: int


K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A dict that forgets its oldest entry when full.

    First-in-first-out rather than LRU: a hit costs one dict lookup and no
    bookkeeping, and a store of a million keys must not hold them all in
    memory because a client touched each once.


    ``generation`` moves on every ``pop`` and ``clear``: a caller that read
    the store before an invalidation passes the generation it started with
    to ``put``, and its (possibly older) value is not cached.
    """

    __slots__ = ("_data", "_max", "generation", "get")

    def __init__(self, max_entries: int) -> None:
        self._data: dict[K, V] = {}
        self._max = max_entries
        self.generation = 0
        # The dict's own ``get``, bound once: a hit is then one C call with no
        # Python frame (about six a request on the Encrypt path, ~0.1 us
        # each). ``_data`` is never replaced, only cleared, so it stays right.
        self.get: Callable[[K], V | None] = self._data.get

    def put(self, key: K, value: V, generation: int | None = None) -> None:
        if generation is not None and generation != self.generation:
            return  # invalidated while the value was being read
        data = self._data
        if key not in data and len(data) >= self._max:
            del data[next(iter(data))]
        data[key] = value

    def pop(self, key: K) -> None:
        self.generation += 1
        self._data.pop(key, None)

    def clear(self) -> None:
        self.generation += 1
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


DEFAULT_CACHE_ENTRIES = 100_000
