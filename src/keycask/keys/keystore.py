"""Keys, key versions and aliases, loaded and saved through the barrier.

Why one module: every cache here is dropped by one ``forget`` that must know
each path a staging method writes; split apart, a new path (as multi-Region
keys brought) could be written by one module and left stale in another's
cache.

Reads are cached in memory after first use so the hot path touches no disk;
nothing is loaded at start. Changes are *staged*: a method returns the writes
for the caller to commit (after the audit record is durable) with ``commit``,
which then drops what they changed from the cache (``forget``), so the next
read sees the committed value.

Where each thing lives is ``keys/paths.py``.

A multi-Region key's copies share their material and the fields in
``model.SHARED_FIELDS``: material goes through the ``key_*`` methods (which
take the key, so an mrk copy reaches the set's shared material), and shared
fields change only through ``stage_set_update``, which rewrites every copy in
the same commit so no copy drifts.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVar

import orjson

from keycask import metrics
from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial, PrivateKey, key_material_id
from keycask.errors import KMSInternalException
from keycask.keys.cache import DEFAULT_CACHE_ENTRIES, BoundedCache, Stored
from keycask.keys.custom_stores import CustomKeyStore
from keycask.keys.grant import Grant
from keycask.keys.ids import record_id
from keycask.keys.model import SHARED_FIELDS, Alias, Key, KeyVersion
from keycask.keys.paths import (
    AZURE_GATE_PREFIX,
    AZURE_KEY_PREFIX,
    CUSTOM_STORE_PREFIX,
    GCP_KEY_PREFIX,
    GRANT_PREFIX,
    JOB_AZURE_NOTIFY,
    JOB_AZURE_ROTATE,
    JOB_DELETE,
    JOB_EXPIRE,
    JOB_GCP_DESTROY,
    JOB_ROTATE,
    JOB_TOKENS,
    RETIRING_TAIL,
    SCHED_PREFIX,
    TRANSIT_PREFIX,
    VAULT_MOUNTS_PREFIX,
    alias_prefix,
    azure_gate_path,
    azure_key_path,
    custom_store_key_path,
    custom_store_keys_prefix,
    custom_store_path,
    custom_store_prefix,
    due_jobs,
    gcp_job_count_path,
    gcp_job_prefix,
    gcp_key_path,
    gcp_ring_count_path,
    gcp_ring_prefix,
    gone_path,
    grant_prefix,
    import_prefix,
    import_token_expiry,
    index_entry_key_id,
    index_path,
    index_prefix,
    key_material_path,
    key_path,
    material_path,
    material_prefix,
    mrk_marker_path,
    mrk_material_prefix,
    parse_material_path,
    parse_sched_path,
    retiring_prefix,
    sched_path,
    transit_path,
    usage_path,
    vault_mounts_path,
)
from keycask.ports import Write

# Re-exported for the service layer, which imports them from here.
__all__ = [
    "JOB_AZURE_NOTIFY",
    "JOB_AZURE_ROTATE",
    "JOB_DELETE",
    "JOB_EXPIRE",
    "JOB_GCP_DESTROY",
    "JOB_ROTATE",
    "JOB_TOKENS",
    "BoundedCache",
    "Grant",
    "KeyStore",
    "Stored",
    "due_jobs",
    "import_token_expiry",
    "parse_sched_path",
]


# Material and parsed private keys are cached by (owner, version): the owner
# is a key id, or a multi-Region set's 16-byte id for its shared material.
_Owner = uuid.UUID | bytes
_K = TypeVar("_K")

# Hits and misses of the caches below, per process (keycask_cache_*_total).
_KEY_STATS = metrics.cache_stats("key")
_MATERIAL_STATS = metrics.cache_stats("material")
_ALIAS_STATS = metrics.cache_stats("alias")


class KeyStore:
    def __init__(self, barrier: Barrier, *, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        self._barrier = barrier
        self._keys: BoundedCache[uuid.UUID, Stored[Key]] = BoundedCache(cache_entries)
        self._materials: BoundedCache[tuple[_Owner, int], KeyMaterial] = BoundedCache(cache_entries)
        self._aliases: BoundedCache[str, Stored[Alias]] = BoundedCache(cache_entries)
        self._private_keys: BoundedCache[tuple[_Owner, int], PrivateKey] = BoundedCache(
            cache_entries
        )
        # Every grant of a key, by key id; keys without grants too (an empty
        # tuple), since every authorization on a key asks.
        self._grants: BoundedCache[uuid.UUID, tuple[Stored[Grant], ...]] = BoundedCache(
            cache_entries
        )
        # Vault Transit settings by key id; revision 0 and b"" when the key
        # has none (every transit decrypt asks).
        self._transit: BoundedCache[uuid.UUID, Stored[bytes]] = BoundedCache(cache_entries)
        # Cloud KMS settings (versions' states): read by every Encrypt and
        # Decrypt, so cached like the transit settings, absence included.
        self._gcp: BoundedCache[uuid.UUID, Stored[bytes]] = BoundedCache(cache_entries)
        self._azure: BoundedCache[uuid.UUID, Stored[bytes]] = BoundedCache(cache_entries)
        self._azure_gate: BoundedCache[uuid.UUID, Stored[bytes]] = BoundedCache(cache_entries)
        # Vault Transit mounts by (account, region); b"" at revision 0: none.
        self._mounts: BoundedCache[tuple[str, str], Stored[bytes]] = BoundedCache(cache_entries)
        # Custom key stores by path: every use of a key of one asks.
        self._stores: BoundedCache[str, Stored[CustomKeyStore]] = BoundedCache(cache_entries)

    # -- keys --

    @property
    def keys_generation(self) -> int:
        """Moves whenever a cached key document is dropped (a commit changed
        a key, or the caches were dropped): what was counted may be stale."""
        return self._keys.generation

    async def get(self, key_id: uuid.UUID) -> Stored[Key] | None:
        cached = self._keys.get(key_id)
        if cached is not None:
            _KEY_STATS.hits += 1
            return cached
        _KEY_STATS.misses += 1
        generation = self._keys.generation
        found = await self._barrier.get(key_path(key_id))
        if found is None:
            return None
        doc = orjson.loads(found.value)
        if "versions" not in doc:
            doc = await self._upgrade_from_first_format(key_id, doc)
        stored = Stored(Key.from_doc(doc), found.revision)
        self._keys.put(key_id, stored, generation)
        return stored

    async def _upgrade_from_first_format(
        self, key_id: uuid.UUID, doc: dict[str, Any]
    ) -> dict[str, Any]:
        """Key documents written before key versions were tracked (keycask's
        first release): one version, no rotation, no deletion scheduled. The
        document is rewritten in the new form by the next change to the key."""
        version = int(doc["current_version"])
        material = await self.material(key_id, version)
        if material is None:
            raise KeyError(f"key {key_id} has no material for version {version}")
        return {
            **doc,
            "versions": [KeyVersion(version, key_material_id(material, key_id.bytes)).to_doc()],
            "rotation_period_days": None,
            "next_rotation": None,
            "on_demand_rotations": 0,
            "deletion_date": None,
            "last_version": version,
        }

    async def material(self, key_id: uuid.UUID, version: int) -> KeyMaterial | None:
        """A single-Region key's material (``key_material`` for any key)."""
        return await self._material_at((key_id, version), material_path(key_id, version))

    async def key_material(self, key: Key, version: int) -> KeyMaterial | None:
        """``key``'s material of ``version``: a multi-Region copy's is the set's."""
        return await self._material_at((_owner(key), version), key_material_path(key, version))

    async def _material_at(self, cache_key: tuple[_Owner, int], path: str) -> KeyMaterial | None:
        cached = self._materials.get(cache_key)
        if cached is not None:
            _MATERIAL_STATS.hits += 1
            return cached
        _MATERIAL_STATS.misses += 1
        generation = self._materials.generation
        found = await self._barrier.get(path)
        if found is None:
            return None
        # AES keys take the fast path; private keys (PKCS#8) and HMAC keys
        # of other sizes keep the same protections.
        value = found.value
        material = KeyMaterial(value) if len(value) == 32 else KeyMaterial.any_size(value)
        # A version's material never changes, but deleted material must not
        # come back into memory from a read that raced the deletion.
        self._materials.put(cache_key, material, generation)
        return material

    async def private_key(self, key: Key) -> PrivateKey | None:
        """The key's current private key, parsed once: loading PKCS#8 costs
        far more than a signature."""
        cache_key = (_owner(key), key.current_version)
        cached = self._private_keys.get(cache_key)
        if cached is not None:
            return cached
        generation = self._private_keys.generation
        material = await self.key_material(key, key.current_version)
        if material is None:
            return None
        loaded = PrivateKey.load(key.key_spec.value, material)
        self._private_keys.put(cache_key, loaded, generation)
        return loaded

    def stage_create(self, key: Key, material: KeyMaterial | None) -> list[Write]:
        """A new key; ``material`` is None for a key waiting for imported
        material, and for a multi-Region replica (its set's material exists)."""
        b = self._barrier
        writes: list[Write] = [
            b.put(key_path(key.key_id), orjson.dumps(key.to_doc()), expect=0),
            b.put(index_path(key), b"", expect=0),
        ]
        if material is not None:
            writes.append(self.stage_key_material(key, key.current_version, material))
        if key.custom_key_store_id is not None:
            writes.append(
                b.put(custom_store_key_path(key.custom_key_store_id, key.key_id), b"", expect=0)
            )
        writes.extend(b.put(path, b"", expect=0) for path in sorted(due_jobs(key)))
        return writes

    def stage_update(self, old: Stored[Key], new: Key) -> list[Write]:
        """The new metadata, and the schedule entries that change with it."""
        b = self._barrier
        writes: list[Write] = [
            b.put(key_path(new.key_id), orjson.dumps(new.to_doc()), expect=old.revision)
        ]
        before, after = due_jobs(old.value), due_jobs(new)
        writes.extend(b.delete(path, expect=None) for path in sorted(before - after))
        writes.extend(b.put(path, b"", expect=None) for path in sorted(after - before))
        return writes

    def stage_material(self, key_id: uuid.UUID, version: int, material: KeyMaterial) -> Write:
        """Material for a version; written only where none is (a version's
        material never changes once written, or old ciphertexts would break)."""
        return self._barrier.put(material_path(key_id, version), material.reveal(), expect=0)

    def stage_delete_material(self, key_id: uuid.UUID, version: int) -> Write:
        return self._barrier.delete(material_path(key_id, version), expect=None)

    def stage_key_material(self, key: Key, version: int, material: KeyMaterial) -> Write:
        """``stage_material`` for any key: a multi-Region copy's goes to the
        set's shared material, written once for the whole set."""
        return self._barrier.put(key_material_path(key, version), material.reveal(), expect=0)

    def stage_delete_key_material(self, key: Key, version: int) -> Write:
        """Deletes a multi-Region set's shared material for every copy."""
        return self._barrier.delete(key_material_path(key, version), expect=None)

    # -- multi-Region sets --

    def stage_mrk_marker(self, mrk: bytes) -> Write:
        """``mrk/<hex>``: the multi-Region key existed. Written once, by the
        commit that makes the set's first copy, and never deleted, so a
        ciphertext of a region without a copy is told apart from garbage."""
        return self._barrier.put(mrk_marker_path(mrk), b"", expect=0)

    async def mrk_existed(self, mrk: bytes) -> bool:
        return await self._barrier.storage.get(mrk_marker_path(mrk)) is not None

    async def siblings(self, key: Key) -> list[Stored[Key]]:
        """Every copy of ``key``'s multi-Region set (``key``'s own included),
        in ``key.regions`` order, read by their record ids. A region the set
        names without a copy is a broken store, never a caller's error."""
        if key.mrk is None:
            raise ValueError("siblings of a single-Region key")
        found: list[Stored[Key]] = []
        for region in key.regions:
            stored = await self.get(record_id(key.mrk, region))
            if stored is None:
                raise KMSInternalException(
                    f"multi-Region key {key.public_id} has no copy in {region}"
                )
            found.append(stored)
        return found

    async def stage_set_update(
        self,
        key: Key,
        change: Mapping[str, Any],
        *,
        local: Mapping[str, Any] | None = None,
        skip: Collection[str] = (),
    ) -> list[Write]:
        """The same ``change`` to the shared fields of every copy of ``key``'s
        set: one write per copy, each expecting the revision it was read at,
        with the schedule entries that change with it, for one commit.

        ``local``: per-region fields changed in ``key.region``'s own copy in
        the same write. ``skip``: regions whose copies this commit writes
        otherwise (a replica being destroyed). Changing the set's regions
        reads the copies of the regions named before the change.
        """
        if key.mrk is None:
            raise ValueError("stage_set_update on a single-Region key")
        if not set(change) <= SHARED_FIELDS:
            raise ValueError(f"not shared: {sorted(set(change) - SHARED_FIELDS)}")
        if local is not None and set(local) & (SHARED_FIELDS | {"mrk", "key_id", "region"}):
            raise ValueError("local changes name shared fields")
        writes: list[Write] = []
        for stored in await self.siblings(key):
            copy = stored.value
            if copy.region in skip:
                continue
            new = copy.replace(**change)
            if local is not None and copy.region == key.region:
                new = new.replace(**local)
            writes.extend(self.stage_update(stored, new))
        return writes

    async def stage_destroy_set_material(self, key: Key) -> list[Write]:
        """Every version of a multi-Region set's shared material: for the
        commit that destroys the set's last copy."""
        if key.mrk is None:
            raise ValueError("set material of a single-Region key")
        b = self._barrier
        return [
            b.delete(path, expect=None) for path in await self._paths(mrk_material_prefix(key.mrk))
        ]

    async def stage_destroy(self, stored: Stored[Key]) -> list[Write]:
        """Every trace of a key whose deletion window has ended: metadata,
        all material, listing and schedule entries, aliases, import tokens,
        usage, Vault Transit and Cloud KMS settings. The key id then answers
        as a key that does not exist. A multi-Region copy's shared material
        stays (``stage_destroy_set_material`` is for the set's last copy)."""
        key = stored.value
        b = self._barrier
        writes: list[Write] = [
            b.delete(key_path(key.key_id), expect=stored.revision),
            b.delete(index_path(key), expect=None),
        ]
        writes.extend(b.delete(path, expect=None) for path in sorted(due_jobs(key)))
        for prefix in (material_prefix(key.key_id), import_prefix(key.key_id)):
            writes.extend(b.delete(path, expect=None) for path in await self._paths(prefix))
        writes.append(b.delete(usage_path(key.key_id), expect=None))
        writes.append(b.delete(transit_path(key.key_id), expect=None))
        if key.custom_key_store_id is not None:
            writes.append(
                b.delete(custom_store_key_path(key.custom_key_store_id, key.key_id), expect=None)
            )
        writes.append(b.delete(gcp_key_path(key.key_id), expect=None))
        writes.append(b.delete(azure_key_path(key.key_id), expect=None))
        writes.append(b.delete(azure_gate_path(key.key_id), expect=None))
        for grant in await self._load_grants(key.key_id):
            writes.extend(self.stage_delete_grant(grant, exact=False))
        # Remembered, so its ciphertexts get AWS's "key does not exist" answer
        # while garbage naming a random key id stays an invalid ciphertext.
        writes.append(b.put(gone_path(key.key_id), b"", expect=None))
        prefix = alias_prefix(key.account, key.region)
        after = ""
        while True:
            rows = await b.list(prefix, after, 1000)
            for path, entry in rows:
                if Alias.from_doc(orjson.loads(entry.value)).target == key.key_id:
                    writes.append(b.delete(path, expect=entry.revision))
            if len(rows) < 1000:
                break
            after = rows[-1][0]
        return writes

    async def _paths(self, prefix: str) -> list[str]:
        paths: list[str] = []
        after = ""
        while True:
            rows = await self._barrier.storage.list(prefix, after, 1000)
            paths.extend(path for path, _ in rows)
            if len(rows) < 1000:
                return paths
            after = rows[-1][0]

    async def due(
        self, now: float, limit: int = 100, *, after: str = ""
    ) -> list[tuple[str, str, uuid.UUID]]:
        """Schedule entries due at ``now`` (epoch seconds), oldest first,
        listed after the path ``after``: (path, job, key id)."""
        rows = await self._barrier.storage.list(SCHED_PREFIX, after, limit)
        found = []
        for path, _ in rows:
            when, job, key_id = parse_sched_path(path)
            if when > now:
                break
            found.append((path, job, key_id))
        return found

    async def exists(self, path: str) -> bool:
        return await self._barrier.storage.get(path) is not None

    def stage_unschedule(self, path: str) -> Write:
        return self._barrier.delete(path, expect=None)

    # -- import tokens --

    def stage_import_token(self, key_id: uuid.UUID, token_id: str, value: bytes) -> Write:
        return self._barrier.put(import_prefix(key_id) + token_id, value, expect=0)

    async def import_token(self, key_id: uuid.UUID, token_id: str) -> Stored[bytes] | None:
        found = await self._barrier.get(import_prefix(key_id) + token_id)
        return None if found is None else Stored(found.value, found.revision)

    async def import_tokens(self, key_id: uuid.UUID) -> list[tuple[str, Stored[bytes]]]:
        prefix = import_prefix(key_id)
        found: list[tuple[str, Stored[bytes]]] = []
        after = ""
        while True:
            rows = await self._barrier.list(prefix, after, 1000)
            found.extend((path[len(prefix) :], Stored(e.value, e.revision)) for path, e in rows)
            if len(rows) < 1000:
                return found
            after = rows[-1][0]

    def stage_token_sweep(self, key_id: uuid.UUID, when: float) -> Write:
        """Have the scheduler delete the key's expired import parameters (their
        private keys) at ``when``, so none outlives its 24 hours at rest."""
        return self._barrier.put(sched_path(when, JOB_TOKENS, key_id), b"", expect=None)

    def stage_gcp_destroy(self, key_id: uuid.UUID, when: float) -> Write:
        """Have the scheduler destroy the key's Cloud KMS versions whose
        destroy time has come, at ``when``."""
        return self._barrier.put(sched_path(when, JOB_GCP_DESTROY, key_id), b"", expect=None)

    def stage_azure_rotate(self, key_id: uuid.UUID, when: float) -> Write:
        """Have the scheduler rotate the Azure Key Vault key whose first
        version is ``key_id`` by its rotation policy, at ``when``."""
        return self._barrier.put(sched_path(when, JOB_AZURE_ROTATE, key_id), b"", expect=None)

    def stage_azure_notify(self, key_id: uuid.UUID, when: float) -> Write:
        """Have the scheduler carry out the Notify action of the Azure Key
        Vault key whose first version is ``key_id``, at ``when``."""
        return self._barrier.put(sched_path(when, JOB_AZURE_NOTIFY, key_id), b"", expect=None)

    def stage_delete_import_token(self, key_id: uuid.UUID, token_id: str) -> Write:
        return self._barrier.delete(import_prefix(key_id) + token_id, expect=None)

    # -- Vault Transit settings --

    async def _optional_document(
        self, cache: BoundedCache[_K, Stored[bytes]], key: _K, path: str
    ) -> Stored[bytes]:
        """The small document at ``path`` (b"" at revision 0: none), through
        ``cache``: a door's settings beside a key, read on every use of it."""
        cached = cache.get(key)
        if cached is not None:
            return cached
        generation = cache.generation
        found = await self._barrier.get(path)
        stored = Stored(b"", 0) if found is None else Stored(found.value, found.revision)
        cache.put(key, stored, generation)
        return stored

    async def transit_settings(self, key_id: uuid.UUID) -> Stored[bytes]:
        """The key's transit settings document (b"" at revision 0: none)."""
        return await self._optional_document(self._transit, key_id, transit_path(key_id))

    def stage_transit_settings(self, key_id: uuid.UUID, value: bytes, expect: int) -> Write:
        return self._barrier.put(transit_path(key_id), value, expect=expect)

    async def vault_mounts(self, account: str, region: str) -> Stored[bytes]:
        """The account's Vault Transit mounts document (b"" at revision 0: none)."""
        path = vault_mounts_path(account, region)
        return await self._optional_document(self._mounts, (account, region), path)

    def stage_vault_mounts(self, account: str, region: str, value: bytes, expect: int) -> Write:
        return self._barrier.put(vault_mounts_path(account, region), value, expect=expect)

    # -- custom key stores --

    async def custom_store(
        self, account: str, region: str, store_id: str
    ) -> Stored[CustomKeyStore] | None:
        path = custom_store_path(account, region, store_id)
        cached = self._stores.get(path)
        if cached is not None:
            return cached
        generation = self._stores.generation
        found = await self._barrier.get(path)
        if found is None:
            return None
        stored = Stored(CustomKeyStore.from_doc(orjson.loads(found.value)), found.revision)
        self._stores.put(path, stored, generation)
        return stored

    async def custom_stores(self, account: str, region: str) -> list[Stored[CustomKeyStore]]:
        """Every store of the account in the region, by id."""
        return await self._custom_stores(custom_store_prefix(account, region))

    async def every_custom_store(self) -> list[Stored[CustomKeyStore]]:
        """Every store of every account and region (a token serves one)."""
        return await self._custom_stores(CUSTOM_STORE_PREFIX)

    async def _custom_stores(self, prefix: str) -> list[Stored[CustomKeyStore]]:
        found: list[Stored[CustomKeyStore]] = []
        after = ""
        while True:
            rows = await self._barrier.list(prefix, after, 1000)
            found.extend(
                Stored(CustomKeyStore.from_doc(orjson.loads(e.value)), e.revision) for _, e in rows
            )
            if len(rows) < 1000:
                return found
            after = rows[-1][0]

    def stage_put_custom_store(self, store: CustomKeyStore, expect: int) -> Write:
        path = custom_store_path(store.account, store.region, store.store_id)
        return self._barrier.put(path, orjson.dumps(store.to_doc()), expect=expect)

    def stage_delete_custom_store(self, stored: Stored[CustomKeyStore]) -> Write:
        store = stored.value
        path = custom_store_path(store.account, store.region, store.store_id)
        return self._barrier.delete(path, expect=stored.revision)

    async def custom_store_keys(self, store_id: str, limit: int = 1000) -> list[uuid.UUID]:
        """Keys of the store (pending deletion included), up to ``limit``."""
        prefix = custom_store_keys_prefix(store_id)
        rows = await self._barrier.storage.list(prefix, "", limit)
        return [uuid.UUID(path[len(prefix) :]) for path, _ in rows]

    # -- Google Cloud KMS documents --

    async def gcp_ring(self, account: str, project: str, location: str, ring: str) -> Stored[bytes]:
        """A Cloud KMS key ring's document (b"" at revision 0: none)."""
        found = await self._barrier.get(gcp_ring_prefix(account, project, location) + ring)
        return Stored(b"", 0) if found is None else Stored(found.value, found.revision)

    async def gcp_ring_count(self, account: str, region: str) -> Stored[bytes]:
        """The count of an account's Cloud KMS key rings in a region (b"" at
        revision 0: none made yet)."""
        found = await self._barrier.get(gcp_ring_count_path(account, region))
        return Stored(b"", 0) if found is None else Stored(found.value, found.revision)

    def stage_gcp_ring_count(
        self, account: str, region: str, value: bytes, *, expect: int
    ) -> Write:
        return self._barrier.put(gcp_ring_count_path(account, region), value, expect=expect)

    async def list_gcp_rings(
        self, account: str, project: str, location: str, after: str, limit: int
    ) -> list[tuple[str, bytes]]:
        """(key ring id, document) in id order, after the id ``after``."""
        prefix = gcp_ring_prefix(account, project, location)
        rows = await self._barrier.list(prefix, prefix + after if after else "", limit)
        return [(path[len(prefix) :], v.value) for path, v in rows]

    def stage_gcp_ring(
        self, account: str, project: str, location: str, ring: str, value: bytes, *, expect: int = 0
    ) -> Write:
        path = gcp_ring_prefix(account, project, location) + ring
        return self._barrier.put(path, value, expect=expect)

    async def gcp_job(
        self, account: str, project: str, location: str, ring: str, job: str
    ) -> Stored[bytes]:
        """A Cloud KMS import job's document (b"" at revision 0: none)."""
        found = await self._barrier.get(gcp_job_prefix(account, project, location, ring) + job)
        return Stored(b"", 0) if found is None else Stored(found.value, found.revision)

    def stage_gcp_job(
        self, account: str, project: str, location: str, ring: str, job: str, *, value: bytes
    ) -> Write:
        path = gcp_job_prefix(account, project, location, ring) + job
        return self._barrier.put(path, value, expect=0)

    async def list_gcp_jobs(
        self, account: str, project: str, location: str, ring: str, *, after: str, limit: int
    ) -> list[tuple[str, bytes]]:
        """(import job id, document) in id order, after the id ``after``."""
        prefix = gcp_job_prefix(account, project, location, ring)
        rows = await self._barrier.list(prefix, prefix + after if after else "", limit)
        return [(path[len(prefix) :], v.value) for path, v in rows]

    async def gcp_job_count(self, account: str, region: str) -> Stored[bytes]:
        """The count of an account's Cloud KMS import jobs in a region."""
        found = await self._barrier.get(gcp_job_count_path(account, region))
        return Stored(b"", 0) if found is None else Stored(found.value, found.revision)

    def stage_gcp_job_count(self, account: str, region: str, value: bytes, *, expect: int) -> Write:
        return self._barrier.put(gcp_job_count_path(account, region), value, expect=expect)

    async def gcp_key(self, key_id: uuid.UUID) -> Stored[bytes]:
        """A key's Cloud KMS settings document (b"" at revision 0: none)."""
        return await self._optional_document(self._gcp, key_id, gcp_key_path(key_id))

    def stage_gcp_key(self, key_id: uuid.UUID, value: bytes, expect: int) -> Write:
        return self._barrier.put(gcp_key_path(key_id), value, expect=expect)

    async def azure_key(self, key_id: uuid.UUID) -> Stored[bytes]:
        """A key's Azure Key Vault settings document (b"" at revision 0: none)."""
        return await self._optional_document(self._azure, key_id, azure_key_path(key_id))

    def stage_azure_key(self, key_id: uuid.UUID, value: bytes, expect: int) -> Write:
        return self._barrier.put(azure_key_path(key_id), value, expect=expect)

    async def azure_gate(self, key_id: uuid.UUID) -> Stored[bytes]:
        """An Azure Key Vault version's conditions on use (b"" at revision 0:
        none, the key is no Key Vault version)."""
        return await self._optional_document(self._azure_gate, key_id, azure_gate_path(key_id))

    def stage_azure_gate(self, key_id: uuid.UUID, value: bytes) -> Write:
        return self._barrier.put(azure_gate_path(key_id), value, expect=None)

    # -- last use --

    async def usage(self, key_id: uuid.UUID) -> Stored[bytes] | None:
        found = await self._barrier.get(usage_path(key_id))
        return None if found is None else Stored(found.value, found.revision)

    async def was_deleted(self, key_id: uuid.UUID) -> bool:
        return await self._barrier.storage.get(gone_path(key_id)) is not None

    async def key_exists(self, key_id: uuid.UUID) -> bool:
        """Straight from storage, past every cache."""
        return await self._barrier.storage.get(key_path(key_id)) is not None

    def stage_usage(self, key_id: uuid.UUID, value: bytes, expect: int | None) -> Write:
        return self._barrier.put(usage_path(key_id), value, expect=expect)

    async def list_key_ids(
        self, account: str, region: str, after: str, limit: int
    ) -> list[uuid.UUID]:
        """Stored key ids, to load the keys, in ListKeys order after the entry
        ``after`` (a public id). A multi-Region copy's is its record id, which
        is never shown: render ``list_public_ids`` (or ``Key.public_id``)."""
        return [
            index_entry_key_id(region, entry)
            for entry in await self.list_public_ids(account, region, after, limit)
        ]

    async def list_public_ids(self, account: str, region: str, after: str, limit: int) -> list[str]:
        """The key ids ListKeys shows (``mrk-...`` for a multi-Region copy),
        in order, after the public id ``after``."""
        prefix = index_prefix(account, region)
        rows = await self._barrier.storage.list(prefix, prefix + after if after else "", limit)
        return [path[len(prefix) :] for path, _ in rows]

    # -- aliases --

    async def get_alias(self, account: str, region: str, name: str) -> Stored[Alias] | None:
        path = alias_prefix(account, region) + name
        cached = self._aliases.get(path)
        if cached is not None:
            _ALIAS_STATS.hits += 1
            return cached
        _ALIAS_STATS.misses += 1
        generation = self._aliases.generation
        found = await self._barrier.get(path)
        if found is None:
            # Misses are not cached: a caller could fill memory with names.
            return None
        stored = Stored(Alias.from_doc(orjson.loads(found.value)), found.revision)
        self._aliases.put(path, stored, generation)
        return stored

    async def list_aliases(self, account: str, region: str, after: str, limit: int) -> list[Alias]:
        prefix = alias_prefix(account, region)
        rows = await self._barrier.list(prefix, prefix + after if after else "", limit)
        return [Alias.from_doc(orjson.loads(v.value)) for _, v in rows]

    def stage_put_alias(self, alias: Alias, expect: int) -> list[Write]:
        path = alias_prefix(alias.account, alias.region) + alias.name
        return [self._barrier.put(path, orjson.dumps(alias.to_doc()), expect=expect)]

    def stage_delete_alias(self, old: Stored[Alias]) -> list[Write]:
        a = old.value
        return [
            self._barrier.delete(alias_prefix(a.account, a.region) + a.name, expect=old.revision)
        ]

    # -- grants --

    async def grants(self, key_id: uuid.UUID) -> tuple[Stored[Grant], ...]:
        """Every grant on the key, in grant id order; cached until a commit
        changes one (``forget``) or another process writes (``clear``). Call
        it for keys that exist: the answer is cached even when empty."""
        cached = self._grants.get(key_id)
        if cached is not None:
            return cached
        generation = self._grants.generation
        found = tuple(await self._load_grants(key_id))
        self._grants.put(key_id, found, generation)
        return found

    async def _load_grants(self, key_id: uuid.UUID) -> list[Stored[Grant]]:
        prefix = grant_prefix(key_id)
        found: list[Stored[Grant]] = []
        after = ""
        while True:
            rows = await self._barrier.list(prefix, after, 1000)
            found.extend(
                Stored(Grant.from_doc(orjson.loads(entry.value)), entry.revision)
                for _, entry in rows
            )
            if len(rows) < 1000:
                return found
            after = rows[-1][0]

    async def grant(self, key_id: uuid.UUID, grant_id: str) -> Stored[Grant] | None:
        """One grant, straight from storage (``grant_id`` must be 64 hex)."""
        found = await self._barrier.get(grant_prefix(key_id) + grant_id)
        if found is None:
            return None
        return Stored(Grant.from_doc(orjson.loads(found.value)), found.revision)

    def stage_put_grant(self, grant: Grant, expect: int) -> list[Write]:
        """A new grant (``expect=0``) with its retiring index entry, or a new
        version of one (its revision; its principals never change)."""
        b = self._barrier
        writes: list[Write] = [
            b.put(
                grant_prefix(grant.key_id) + grant.grant_id,
                orjson.dumps(grant.to_doc()),
                expect=expect,
            )
        ]
        if expect == 0 and grant.retiring is not None:
            path = f"{retiring_prefix(grant.retiring)}{grant.key_id}/{grant.grant_id}"
            writes.append(b.put(path, b"", expect=None))
        return writes

    def stage_delete_grant(self, stored: Stored[Grant], *, exact: bool = True) -> list[Write]:
        """The grant and its retiring index entry, in one commit; ``exact``:
        only the grant as it was read (its revision)."""
        grant = stored.value
        b = self._barrier
        writes: list[Write] = [
            b.delete(
                grant_prefix(grant.key_id) + grant.grant_id,
                expect=stored.revision if exact else None,
            )
        ]
        if grant.retiring is not None:
            path = f"{retiring_prefix(grant.retiring)}{grant.key_id}/{grant.grant_id}"
            writes.append(b.delete(path, expect=None))
        return writes

    async def retirable(
        self, principal: str, after: str, limit: int
    ) -> list[tuple[uuid.UUID, str]]:
        """(key id, grant id) of grants whose retiring principal is exactly
        ``principal``, after the entry ``after`` ("<key id>/<grant id>")."""
        prefix = retiring_prefix(principal)
        found: list[tuple[uuid.UUID, str]] = []
        cursor = prefix + after if after else ""
        while len(found) < limit:
            rows = await self._barrier.storage.list(prefix, cursor, 1000)
            for path, _ in rows:
                match = RETIRING_TAIL.fullmatch(path[len(prefix) :])
                if match is not None:
                    found.append((uuid.UUID(match[1]), match[2]))
                    if len(found) == limit:
                        break
            if len(rows) < 1000:
                break
            cursor = rows[-1][0]
        return found

    def clear(self) -> None:
        """Forget everything cached: another process changed the store."""
        self._keys.clear()
        self._materials.clear()
        self._aliases.clear()
        self._private_keys.clear()
        self._grants.clear()
        self._transit.clear()
        self._gcp.clear()
        self._azure.clear()
        self._azure_gate.clear()
        self._mounts.clear()
        self._stores.clear()

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
                owned = parse_material_path(path)
                self._materials.pop(owned)
                self._private_keys.pop(owned)
            elif path.startswith(GRANT_PREFIX):
                self._grants.pop(uuid.UUID(path.split("/")[1]))
            elif path.startswith(TRANSIT_PREFIX):
                self._transit.pop(uuid.UUID(path[len(TRANSIT_PREFIX) :]))
            elif path.startswith(CUSTOM_STORE_PREFIX):
                self._stores.pop(path)
            elif path.startswith(GCP_KEY_PREFIX):
                self._gcp.pop(uuid.UUID(path[len(GCP_KEY_PREFIX) :]))
            elif path.startswith(AZURE_KEY_PREFIX):
                self._azure.pop(uuid.UUID(path[len(AZURE_KEY_PREFIX) :]))
            elif path.startswith(AZURE_GATE_PREFIX):
                self._azure_gate.pop(uuid.UUID(path[len(AZURE_GATE_PREFIX) :]))
            elif path.startswith(VAULT_MOUNTS_PREFIX):
                account, _, region = path[len(VAULT_MOUNTS_PREFIX) :].partition("/")
                self._mounts.pop((account, region))


def _owner(key: Key) -> _Owner:
    """Whose material ``key`` uses: its own, or its multi-Region set's."""
    return key.key_id if key.mrk is None else key.mrk
