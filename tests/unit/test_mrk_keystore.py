"""Multi-Region keys in the model and the keystore (issue 22, piece A), on a
real SQLite store: a set's copies share their material and shared fields, a
set update rewrites every copy in one commit, and a single-Region key's
documents and paths are exactly what they were before."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.mrk_sets import ACCOUNT, PRIMARY, T0, mrk_copy, sqlite_keystore

from keycask.barrier import Barrier
from keycask.crypto import KeyMaterial
from keycask.errors import KMSInternalException, StorageConflict
from keycask.keys.ids import format_mrk, new_mrk, record_id
from keycask.keys.keystore import KeyStore
from keycask.keys.model import SHARED_FIELDS, Key, KeyState, KeyVersion, RotationType
from keycask.keys.paths import JOB_ROTATE, due_jobs, parse_sched_path
from keycask.storage.sqlite import SQLiteStorage

REPLICA, OTHER = "eu-west-1", "ap-south-1"

# The members of a single-Region key's document, in the order it has always
# written them; a new member here would change every stored key's bytes.
SINGLE_REGION_DOC = [
    "key_id",
    "account",
    "region",
    "created",
    "description",
    "state",
    "policy",
    "key_usage",
    "key_spec",
    "origin",
    "current_version",
    "tags",
    "versions",
    "rotation_period_days",
    "next_rotation",
    "on_demand_rotations",
    "deletion_date",
    "last_version",
    "policy_principals",
    "aws_managed",
]


def _single(**changes: Any) -> Key:
    key = Key(
        key_id=uuid.uuid4(),
        account=ACCOUNT,
        region=PRIMARY,
        created=T0,
        description="single",
        state=KeyState.ENABLED,
        policy="{}",
        versions=(KeyVersion(1, "a" * 64),),
        last_version=1,
    )
    return key.replace(**changes)


def _copy(mrk: bytes, region: str, regions: tuple[str, ...], **changes: Any) -> Key:
    return mrk_copy(mrk, region, regions, **changes)


@pytest.fixture
async def keys(tmp_path: Path) -> AsyncIterator[KeyStore]:
    async with sqlite_keystore(tmp_path / "s.db") as store:
        yield store


async def _make_set(
    keys: KeyStore, regions: tuple[str, ...] = (PRIMARY, REPLICA)
) -> tuple[bytes, KeyMaterial]:
    """A set as the commits that make it would: the primary with the marker
    and the material, then each replica without material."""
    mrk = new_mrk()
    material = KeyMaterial.generate()
    primary = _copy(mrk, PRIMARY, (PRIMARY,))
    await keys.commit([*keys.stage_create(primary, material), keys.stage_mrk_marker(mrk)])
    for region in regions[1:]:
        stored = await keys.get(primary.key_id)
        assert stored is not None
        members = tuple(sorted({*stored.value.regions, region}))
        replica = _copy(mrk, region, members, versions=stored.value.versions)
        writes = await keys.stage_set_update(stored.value, {"regions": members})
        await keys.commit([*writes, *keys.stage_create(replica, None)])
    return mrk, material


async def _agree(keys: KeyStore, mrk: bytes, regions: tuple[str, ...]) -> list[Key]:
    copies = []
    for region in regions:
        stored = await keys.get(record_id(mrk, region))
        assert stored is not None, region
        copies.append(stored.value)
    assert all(c.shared() == copies[0].shared() for c in copies), [c.shared() for c in copies]
    return copies


# -- the model --


def test_a_single_region_document_is_what_it_always_was() -> None:
    key = _single(rotation_period_days=365, next_rotation=T0 + timedelta(days=365))
    doc = key.to_doc()
    assert list(doc) == SINGLE_REGION_DOC
    assert doc["key_id"] == str(key.key_id)
    assert key.public_id == str(key.key_id)
    assert key.arn == f"arn:aws:kms:{PRIMARY}:{ACCOUNT}:key/{key.key_id}"
    assert (key.is_multi_region, key.multi_region_type) == (False, None)
    stored = orjson.dumps(doc)
    back = Key.from_doc(orjson.loads(stored))
    assert back == key
    assert (back.mrk, back.primary_region, back.regions, back.pending_window_days) == (
        None,
        None,
        (),
        None,
    )
    assert orjson.dumps(back.to_doc()) == stored  # byte for byte


def test_a_multi_region_copy_shows_its_mrk_id_and_never_its_record_id() -> None:
    mrk = new_mrk()
    replica = _copy(mrk, REPLICA, (PRIMARY, REPLICA), pending_window_days=None)
    text = format_mrk(mrk)
    assert replica.key_id == record_id(mrk, REPLICA)
    assert replica.public_id == text
    assert replica.arn == f"arn:aws:kms:{REPLICA}:{ACCOUNT}:key/{text}"
    assert str(replica.key_id) not in replica.arn
    assert replica.is_multi_region
    assert replica.multi_region_type == "REPLICA"
    assert _copy(mrk, PRIMARY, (PRIMARY,)).multi_region_type == "PRIMARY"
    doc = replica.to_doc()
    assert doc["key_id"] == text
    assert str(replica.key_id) not in orjson.dumps(doc).decode()
    assert doc["primary_region"] == PRIMARY
    assert doc["regions"] == sorted([PRIMARY, REPLICA])
    assert "pending_window_days" not in doc
    assert Key.from_doc(orjson.loads(orjson.dumps(doc))) == replica


def test_an_older_binary_cannot_misread_a_multi_region_document() -> None:
    doc = _copy(new_mrk(), PRIMARY, (PRIMARY,)).to_doc()
    # What every keycask before issue 22 does with key_id.
    with pytest.raises(ValueError):
        uuid.UUID(doc["key_id"])


def test_pending_window_round_trips_only_when_set() -> None:
    mrk = new_mrk()
    waiting = _copy(
        mrk, PRIMARY, (PRIMARY, REPLICA), state=KeyState.PENDING_REPLICA_DELETION
    ).replace(pending_window_days=7)
    doc = waiting.to_doc()
    assert doc["pending_window_days"] == 7
    assert doc["state"] == "PendingReplicaDeletion"
    back = Key.from_doc(doc)
    assert back.pending_window_days == 7
    assert back.settled() is back  # the operator's decision stays


def test_a_copy_under_another_id_is_refused() -> None:
    mrk = new_mrk()
    with pytest.raises(ValueError, match="record id"):
        _copy(mrk, PRIMARY, (PRIMARY,)).replace(key_id=uuid.uuid4())
    with pytest.raises(ValueError, match="record id"):
        _copy(mrk, PRIMARY, (PRIMARY,)).replace(key_id=record_id(mrk, REPLICA))


def test_only_the_primary_schedules_the_sets_rotation() -> None:
    mrk = new_mrk()
    when = T0 + timedelta(days=90)
    rotating: dict[str, Any] = {"rotation_period_days": 90, "next_rotation": when}
    primary = _copy(mrk, PRIMARY, (PRIMARY, REPLICA), **rotating)
    replica = _copy(mrk, REPLICA, (PRIMARY, REPLICA), **rotating)
    [path] = due_jobs(primary)
    assert parse_sched_path(path)[1:] == (JOB_ROTATE, primary.key_id)
    assert due_jobs(replica) == set()
    single = _single(**rotating)
    assert len(due_jobs(single)) == 1


# -- the keystore --


async def test_a_single_region_key_writes_the_paths_it_always_did(keys: KeyStore) -> None:
    key = _single()
    writes = keys.stage_create(key, KeyMaterial.generate())
    assert [w.path for w in writes] == [
        f"key/{key.key_id}",
        f"idx/key/{ACCOUNT}/{PRIMARY}/{key.key_id}",
        f"mat/{key.key_id}/0000000001",
    ]
    await keys.commit(writes)
    stored = await keys.get(key.key_id)
    assert stored is not None and stored.value == key
    raw = await keys._barrier.get(f"key/{key.key_id}")
    assert raw is not None and raw.value == orjson.dumps(key.to_doc())
    own, direct = await keys.key_material(key, 1), await keys.material(key.key_id, 1)
    assert own is not None and direct is not None and own.matches(direct)
    assert keys.stage_key_material(key, 2, KeyMaterial.generate()).path == (
        f"mat/{key.key_id}/0000000002"
    )
    assert await keys.list_key_ids(ACCOUNT, PRIMARY, "", 10) == [key.key_id]
    assert await keys.list_public_ids(ACCOUNT, PRIMARY, "", 10) == [str(key.key_id)]
    destroy = await keys.stage_destroy(stored)
    assert f"idx/key/{ACCOUNT}/{PRIMARY}/{key.key_id}" in {w.path for w in destroy}


async def test_a_set_shares_one_material_under_its_mrk_id(keys: KeyStore) -> None:
    mrk, material = await _make_set(keys)
    text = format_mrk(mrk)
    primary, replica = await _agree(keys, mrk, (PRIMARY, REPLICA))
    assert await keys._barrier.get(f"mat/{text}/0000000001") is not None
    for copy in (primary, replica):
        assert await keys._barrier.get(f"key/{copy.key_id}") is not None
        assert await keys._barrier.get(f"mat/{copy.key_id}/0000000001") is None
        shared = await keys.key_material(copy, 1)
        assert shared is not None and shared.matches(material)
        raw = await keys._barrier.get(f"idx/key/{ACCOUNT}/{copy.region}/{text}")
        assert raw is not None
        assert await keys.list_key_ids(ACCOUNT, copy.region, "", 10) == [copy.key_id]
        assert await keys.list_public_ids(ACCOUNT, copy.region, "", 10) == [text]
    assert await keys.mrk_existed(mrk)
    assert not await keys.mrk_existed(new_mrk())
    # The marker is written once: a second set under the same id is refused.
    with pytest.raises(StorageConflict):
        await keys.commit([keys.stage_mrk_marker(mrk)])


async def test_deleting_shared_material_reaches_every_copy(keys: KeyStore) -> None:
    mrk, _ = await _make_set(keys)
    primary, replica = await _agree(keys, mrk, (PRIMARY, REPLICA))
    assert await keys.key_material(replica, 1) is not None  # now cached
    await keys.commit([keys.stage_delete_key_material(primary, 1)])
    assert await keys.key_material(replica, 1) is None
    assert await keys.key_material(primary, 1) is None


async def test_siblings_are_every_copy_by_record_id(keys: KeyStore) -> None:
    regions = (PRIMARY, REPLICA, OTHER)
    mrk, _ = await _make_set(keys, regions)
    stored = await keys.get(record_id(mrk, OTHER))
    assert stored is not None
    siblings = await keys.siblings(stored.value)
    assert [s.value.region for s in siblings] == sorted(regions)
    assert {s.value.key_id for s in siblings} == {record_id(mrk, r) for r in regions}
    with pytest.raises(ValueError):
        await keys.siblings(_single())


async def test_a_missing_copy_is_an_internal_error(keys: KeyStore) -> None:
    mrk, _ = await _make_set(keys)
    stored = await keys.get(record_id(mrk, PRIMARY))
    assert stored is not None
    broken = stored.value.replace(regions=(PRIMARY, REPLICA, OTHER))
    with pytest.raises(KMSInternalException, match=OTHER):
        await keys.siblings(broken)


async def test_set_update_rewrites_every_copy_in_one_commit(keys: KeyStore) -> None:
    mrk, _ = await _make_set(keys, (PRIMARY, REPLICA, OTHER))
    stored = await keys.get(record_id(mrk, REPLICA))
    assert stored is not None
    key = stored.value
    rotated = (*key.versions, KeyVersion(2, "c" * 64, T0, RotationType.ON_DEMAND))
    writes = await keys.stage_set_update(
        key,
        {"versions": rotated, "current_version": 2, "last_version": 2, "on_demand_rotations": 1},
        local={"description": "only here"},
    )
    assert sorted(w.path for w in writes) == sorted(
        f"key/{record_id(mrk, r)}" for r in (PRIMARY, REPLICA, OTHER)
    )
    await keys.commit(writes)
    copies = await _agree(keys, mrk, (PRIMARY, REPLICA, OTHER))
    assert all(c.current_version == 2 and c.versions == rotated for c in copies)
    assert [c.description for c in copies] == [
        f"copy in {PRIMARY}",
        "only here",
        f"copy in {OTHER}",
    ]
    # Each write expected the revision it read: replaying them conflicts.
    with pytest.raises(StorageConflict):
        await keys.commit(writes)


async def test_set_update_can_leave_a_copy_to_its_own_writes(keys: KeyStore) -> None:
    mrk, _ = await _make_set(keys, (PRIMARY, REPLICA, OTHER))
    gone = await keys.get(record_id(mrk, OTHER))
    assert gone is not None
    rest = (PRIMARY, REPLICA)
    writes = await keys.stage_set_update(gone.value, {"regions": rest}, skip={OTHER})
    writes += await keys.stage_destroy(gone)
    await keys.commit(writes)
    assert await keys.get(record_id(mrk, OTHER)) is None
    copies = await _agree(keys, mrk, rest)
    assert all(c.regions == rest for c in copies)
    assert await keys.key_material(copies[0], 1) is not None  # the set's stays


async def test_set_update_refuses_what_is_not_shared(keys: KeyStore) -> None:
    mrk, _ = await _make_set(keys)
    stored = await keys.get(record_id(mrk, PRIMARY))
    assert stored is not None
    with pytest.raises(ValueError, match="not shared"):
        await keys.stage_set_update(stored.value, {"description": "everywhere"})
    with pytest.raises(ValueError, match="shared"):
        await keys.stage_set_update(stored.value, {}, local={"current_version": 3})
    with pytest.raises(ValueError):
        await keys.stage_set_update(_single(), {"current_version": 1})


async def test_set_update_brings_the_schedule_along(keys: KeyStore) -> None:
    mrk, _ = await _make_set(keys)
    stored = await keys.get(record_id(mrk, REPLICA))
    assert stored is not None
    when = T0 + timedelta(days=90)
    writes = await keys.stage_set_update(
        stored.value, {"rotation_period_days": 90, "next_rotation": when}
    )
    sched = [w.path for w in writes if w.path.startswith("sched/")]
    # One rotate entry, on the primary's record.
    assert [parse_sched_path(p)[1:] for p in sched] == [(JOB_ROTATE, record_id(mrk, PRIMARY))]


def test_shared_fields_are_fields_of_a_key() -> None:
    assert SHARED_FIELDS.issubset(Key.__dataclass_fields__)
    assert not SHARED_FIELDS & {"key_id", "region", "state", "policy", "tags", "description"}


# -- the invariant: after any sequence of set updates, every copy agrees --

_VERSION = st.integers(1, 40)
_CHANGE = st.one_of(
    st.fixed_dictionaries({"current_version": _VERSION, "last_version": _VERSION}),
    st.fixed_dictionaries(
        {
            "rotation_period_days": st.one_of(st.none(), st.integers(90, 2560)),
            "next_rotation": st.one_of(
                st.none(), st.integers(0, 10**8).map(lambda s: T0 + timedelta(seconds=s))
            ),
        }
    ),
    st.fixed_dictionaries({"on_demand_rotations": st.integers(0, 25)}),
    st.fixed_dictionaries(
        {
            "versions": st.lists(_VERSION, min_size=1, max_size=4, unique=True).map(
                lambda ns: tuple(KeyVersion(n, f"{n:064x}") for n in sorted(ns))
            )
        }
    ),
    st.fixed_dictionaries({"primary_region": st.sampled_from([PRIMARY, REPLICA, OTHER])}),
)


@settings(max_examples=25, deadline=None)
@given(
    changes=st.lists(
        st.tuples(st.sampled_from([PRIMARY, REPLICA, OTHER]), _CHANGE), min_size=1, max_size=5
    )
)
def test_every_copy_agrees_after_each_set_update(
    changes: list[tuple[str, dict[str, Any]]],
) -> None:
    regions = (PRIMARY, REPLICA, OTHER)

    async def run(directory: Path) -> None:
        storage = SQLiteStorage(directory / "s.db")
        barrier = await Barrier.open(storage, KeyMaterial.generate())
        keys = KeyStore(barrier)
        try:
            mrk, _ = await _make_set(keys, regions)
            for region, change in changes:
                stored = await keys.get(record_id(mrk, region))
                assert stored is not None
                await keys.commit(await keys.stage_set_update(stored.value, change))
                copies = await _agree(keys, mrk, regions)
                for name, value in change.items():
                    assert all(getattr(c, name) == value for c in copies)
            # And straight from storage, past the cache.
            fresh = KeyStore(barrier)
            await _agree(fresh, mrk, regions)
        finally:
            await storage.close()

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(Path(directory)))
