"""Keys, key versions and aliases, loaded and saved through the barrier.

Reads are cached in memory after first use so the hot path touches no disk;
nothing is loaded at start. Changes are *staged*: a method returns the writes
for the caller to commit (after the audit record is durable) and the cache is
updated by ``applied`` only once they are committed.

Paths:
    key/<key id>                             key metadata (JSON)
    mat/<key id>/<version, 10 digits>        key material of one version
    idx/key/<account>/<region>/<key id>      listing index for ListKeys
    alias/<account>/<region>/<alias name>    alias (JSON)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import orjson

from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.keys.model import Alias, Key
from keycask.ports import Write


def _key_path(key_id: uuid.UUID) -> str:
    return f"key/{key_id}"


def _material_path(key_id: uuid.UUID, version: int) -> str:
    return f"mat/{key_id}/{version:010d}"


def _index_prefix(account: str, region: str) -> str:
    return f"idx/key/{account}/{region}/"


def _alias_prefix(account: str, region: str) -> str:
    return f"alias/{account}/{region}/"


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
    """

    __slots__ = ("_data", "_max")

    def __init__(self, max_entries: int) -> None:
        self._data: dict[K, V] = {}
        self._max = max_entries

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        data = self._data
        if key not in data and len(data) >= self._max:
            del data[next(iter(data))]
        data[key] = value

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


DEFAULT_CACHE_ENTRIES = 100_000


class KeyStore:
    def __init__(self, barrier: Barrier, *, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        self._barrier = barrier
        self._keys: BoundedCache[uuid.UUID, Stored[Key]] = BoundedCache(cache_entries)
        self._materials: BoundedCache[tuple[uuid.UUID, int], KeyMaterial] = BoundedCache(
            cache_entries
        )
        self._aliases: BoundedCache[str, Stored[Alias]] = BoundedCache(cache_entries)

    # -- keys --

    async def get(self, key_id: uuid.UUID) -> Stored[Key] | None:
        cached = self._keys.get(key_id)
        if cached is not None:
            return cached
        found = await self._barrier.get(_key_path(key_id))
        if found is None:
            return None
        stored = Stored(Key.from_doc(orjson.loads(found.value)), found.revision)
        self._keys.put(key_id, stored)
        return stored

    async def material(self, key_id: uuid.UUID, version: int) -> KeyMaterial | None:
        cached = self._materials.get((key_id, version))
        if cached is not None:
            return cached
        found = await self._barrier.get(_material_path(key_id, version))
        if found is None:
            return None
        material = KeyMaterial(found.value)
        self._materials.put((key_id, version), material)
        return material

    def stage_create(self, key: Key, material: KeyMaterial) -> list[Write]:
        b = self._barrier
        return [
            b.put(_key_path(key.key_id), orjson.dumps(key.to_doc()), expect=0),
            b.put(_material_path(key.key_id, key.current_version), material.reveal(), expect=0),
            b.put(_index_prefix(key.account, key.region) + str(key.key_id), b"", expect=0),
        ]

    def stage_update(self, old: Stored[Key], new: Key) -> list[Write]:
        return [
            self._barrier.put(
                _key_path(new.key_id), orjson.dumps(new.to_doc()), expect=old.revision
            )
        ]

    async def list_key_ids(
        self, account: str, region: str, after: str, limit: int
    ) -> list[uuid.UUID]:
        prefix = _index_prefix(account, region)
        rows = await self._barrier.storage.list(prefix, prefix + after if after else "", limit)
        return [uuid.UUID(path[len(prefix) :]) for path, _ in rows]

    # -- aliases --

    async def get_alias(self, account: str, region: str, name: str) -> Stored[Alias] | None:
        path = _alias_prefix(account, region) + name
        cached = self._aliases.get(path)
        if cached is not None:
            return cached
        found = await self._barrier.get(path)
        if found is None:
            # Misses are not cached: a caller could fill memory with names.
            return None
        stored = Stored(Alias.from_doc(orjson.loads(found.value)), found.revision)
        self._aliases.put(path, stored)
        return stored

    async def list_aliases(self, account: str, region: str, after: str, limit: int) -> list[Alias]:
        prefix = _alias_prefix(account, region)
        rows = await self._barrier.list(prefix, prefix + after if after else "", limit)
        return [Alias.from_doc(orjson.loads(v.value)) for _, v in rows]

    def stage_put_alias(self, alias: Alias, expect: int) -> list[Write]:
        path = _alias_prefix(alias.account, alias.region) + alias.name
        return [self._barrier.put(path, orjson.dumps(alias.to_doc()), expect=expect)]

    def stage_delete_alias(self, old: Stored[Alias]) -> list[Write]:
        a = old.value
        return [
            self._barrier.delete(_alias_prefix(a.account, a.region) + a.name, expect=old.revision)
        ]

    def clear(self) -> None:
        """Forget everything cached: another process changed the store."""
        self._keys.clear()
        self._materials.clear()
        self._aliases.clear()

    # -- committing --

    async def commit(self, writes: Sequence[Write]) -> None:
        try:
            await self._barrier.commit(writes)
        finally:
            # Whatever happened, the next read must come from storage.
            self.forget(writes)

    def forget(self, writes: Sequence[Write]) -> None:
        """Drop cache entries that ``writes`` changed, so the next read sees
        the committed value. Called after every commit, and after a failed
        one, since the outcome of a failed commit is unknown."""
        for write in writes:
            path = write.path
            if path.startswith("key/"):
                self._keys.pop(uuid.UUID(path[4:]))
            elif path.startswith("alias/"):
                self._aliases.pop(path)
            elif path.startswith("mat/"):
                _, key_id, version = path.split("/")
                self._materials.pop((uuid.UUID(key_id), int(version)))
