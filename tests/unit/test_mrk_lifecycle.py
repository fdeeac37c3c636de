"""The multi-Region lifecycle's store-side rules (issue 22, piece C), on a
real SQLite store: the deletion job's handling of a set (a replica's region
leaves every copy, the primary's window starts after its last replica, the
last copy takes the material), rotation written once for the whole set, and
the rotation schedule following the primary."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.mrk_sets import PRIMARY, T0, mrk_copy, sqlite_keystore

from keycask.crypto import KeyMaterial
from keycask.keys.ids import new_mrk, record_id
from keycask.keys.keystore import KeyStore, Stored
from keycask.keys.model import Key, KeyState, RotationType
from keycask.keys.paths import JOB_DELETE, JOB_ROTATE, due_jobs, parse_sched_path
from keycask.service.background.scheduler import destroy_copy
from keycask.service.core.handlers.rotation import rotate, stage_rotation

REPLICA, OTHER = "eu-west-1", "ap-south-1"


def _copy(mrk: bytes, region: str, regions: tuple[str, ...], **changes: Any) -> Key:
    return mrk_copy(mrk, region, regions, **changes)


@pytest.fixture
async def keys(tmp_path: Path) -> AsyncIterator[KeyStore]:
    async with sqlite_keystore(tmp_path / "s.db") as store:
        yield store


async def _make_set(
    keys: KeyStore, regions: tuple[str, ...] = (PRIMARY, REPLICA), **primary: Any
) -> bytes:
    """A set as ReplicateKey's commits make it: the primary with the marker
    and the material, then each replica, with every copy's regions."""
    mrk = new_mrk()
    first = _copy(mrk, PRIMARY, (PRIMARY,), **primary)
    await keys.commit(
        [*keys.stage_create(first, KeyMaterial.generate()), keys.stage_mrk_marker(mrk)]
    )
    for region in regions[1:]:
        stored = await _get(keys, mrk, PRIMARY)
        members = tuple(sorted({*stored.value.regions, region}))
        replica = _copy(mrk, region, members).replace(
            **{k: v for k, v in stored.value.shared().items() if k != "regions"}
        )
        writes = await keys.stage_set_update(stored.value, {"regions": members})
        await keys.commit([*writes, *keys.stage_create(replica, None)])
    return mrk


async def _get(keys: KeyStore, mrk: bytes, region: str) -> Stored[Key]:
    stored = await keys.get(record_id(mrk, region))
    assert stored is not None, region
    return stored


async def _set_state(keys: KeyStore, mrk: bytes, region: str, **changes: Any) -> Key:
    stored = await _get(keys, mrk, region)
    await keys.commit(keys.stage_update(stored, stored.value.replace(**changes)))
    return (await _get(keys, mrk, region)).value


async def _jobs(keys: KeyStore) -> list[tuple[str, str]]:
    """(job, region) of every schedule entry of the set's copies."""
    found = []
    for path, _job, key_id in await keys.due(float("inf"), 1000):
        stored = await keys.get(key_id)
        assert stored is not None
        found.append((parse_sched_path(path)[1], stored.value.region))
    return sorted(found)


async def test_destroying_a_replica_removes_its_region_from_every_copy(keys: KeyStore) -> None:
    mrk = await _make_set(keys, (PRIMARY, REPLICA, OTHER))
    now = T0 + timedelta(days=40)
    doomed = await _set_state(
        keys, mrk, OTHER, state=KeyState.PENDING_DELETION, deletion_date=T0 + timedelta(days=7)
    )
    assert [job for job, _ in await _jobs(keys)] == [JOB_DELETE]
    result = await destroy_copy(keys, await _get(keys, mrk, OTHER), now)
    assert result is not None and result.key == doomed
    assert OTHER in result.detail
    await keys.commit(result.writes)
    assert await keys.get(record_id(mrk, OTHER)) is None
    for region in (PRIMARY, REPLICA):
        copy = (await _get(keys, mrk, region)).value
        assert copy.regions == (REPLICA, PRIMARY)
        assert copy.state is KeyState.ENABLED
    # The set's material stays for the copies left, and the set is still known.
    primary = (await _get(keys, mrk, PRIMARY)).value
    assert await keys.key_material(primary, 1) is not None
    assert await keys.mrk_existed(mrk)
    assert await _jobs(keys) == []


async def test_the_primary_waits_for_its_last_replica_then_starts_its_window(
    keys: KeyStore,
) -> None:
    mrk = await _make_set(keys, (PRIMARY, REPLICA, OTHER))
    await _set_state(
        keys, mrk, PRIMARY, state=KeyState.PENDING_REPLICA_DELETION, pending_window_days=9
    )
    for region in (REPLICA, OTHER):
        await _set_state(
            keys, mrk, region, state=KeyState.PENDING_DELETION, deletion_date=T0 + timedelta(days=7)
        )
    # A primary in PendingReplicaDeletion has no deletion entry of its own.
    assert await _jobs(keys) == [(JOB_DELETE, OTHER), (JOB_DELETE, REPLICA)]

    first = T0 + timedelta(days=8)
    result = await destroy_copy(keys, await _get(keys, mrk, REPLICA), first)
    assert result is not None
    await keys.commit(result.writes)
    primary = (await _get(keys, mrk, PRIMARY)).value
    # One replica is left: the primary keeps waiting, undated.
    assert primary.state is KeyState.PENDING_REPLICA_DELETION
    assert (primary.deletion_date, primary.pending_window_days) == (None, 9)
    assert primary.regions == (OTHER, PRIMARY)

    last = T0 + timedelta(days=8, hours=1)
    result = await destroy_copy(keys, await _get(keys, mrk, OTHER), last)
    assert result is not None
    assert PRIMARY in result.detail
    await keys.commit(result.writes)
    primary = (await _get(keys, mrk, PRIMARY)).value
    assert primary.state is KeyState.PENDING_DELETION
    assert primary.deletion_date == last + timedelta(days=9)
    assert primary.pending_window_days is None
    assert primary.regions == (PRIMARY,)
    [path] = due_jobs(primary)
    assert parse_sched_path(path)[1] == JOB_DELETE
    assert await _jobs(keys) == [(JOB_DELETE, PRIMARY)]


async def test_a_replica_destroyed_while_the_primary_is_enabled_leaves_it_alone(
    keys: KeyStore,
) -> None:
    mrk = await _make_set(keys)
    await _set_state(keys, mrk, REPLICA, state=KeyState.PENDING_DELETION, deletion_date=T0)
    result = await destroy_copy(keys, await _get(keys, mrk, REPLICA), T0 + timedelta(days=1))
    assert result is not None
    await keys.commit(result.writes)
    primary = (await _get(keys, mrk, PRIMARY)).value
    assert (primary.state, primary.deletion_date, primary.regions) == (
        KeyState.ENABLED,
        None,
        (PRIMARY,),
    )


async def test_the_last_copy_takes_the_sets_material_with_it(keys: KeyStore) -> None:
    mrk = await _make_set(keys, (PRIMARY,))
    primary = await _set_state(
        keys, mrk, PRIMARY, state=KeyState.PENDING_DELETION, deletion_date=T0
    )
    assert await keys.key_material(primary, 1) is not None
    result = await destroy_copy(keys, await _get(keys, mrk, PRIMARY), T0 + timedelta(days=1))
    assert result is not None
    assert "last copy" in result.detail
    await keys.commit(result.writes)
    assert await keys.get(record_id(mrk, PRIMARY)) is None
    assert await keys.key_material(primary, 1) is None
    # Remembered, so its ciphertexts are told apart from garbage.
    assert await keys.mrk_existed(mrk)


async def test_a_primary_with_replicas_is_never_destroyed(
    keys: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    mrk = await _make_set(keys)
    # Not a state keycask makes: a primary due while a replica is left.
    await _set_state(keys, mrk, PRIMARY, state=KeyState.PENDING_DELETION, deletion_date=T0)
    with caplog.at_level(logging.ERROR, logger="keycask"):
        result = await destroy_copy(keys, await _get(keys, mrk, PRIMARY), T0 + timedelta(days=1))
    assert result is None
    assert "still has replicas" in caplog.text
    assert await keys.get(record_id(mrk, PRIMARY)) is not None


async def test_a_rotation_of_the_primary_reaches_every_copy_once(keys: KeyStore) -> None:
    mrk = await _make_set(
        keys,
        (PRIMARY, REPLICA, OTHER),
        rotation_period_days=90,
        next_rotation=T0 + timedelta(days=90),
    )
    assert await _jobs(keys) == [(JOB_ROTATE, PRIMARY)]
    stored = await _get(keys, mrk, PRIMARY)
    now = T0 + timedelta(days=90)
    new, material = rotate(stored.value, now, RotationType.ON_DEMAND)
    writes = await stage_rotation(keys, stored, new)
    writes.append(keys.stage_key_material(stored.value, new.current_version, material))
    # One material write, at the set's path; one document per copy.
    assert [w.path for w in writes].count(f"key/{record_id(mrk, REPLICA)}") == 1
    await keys.commit(writes)
    for region in (PRIMARY, REPLICA, OTHER):
        copy = (await _get(keys, mrk, region)).value
        assert copy.shared() == new.shared()
        assert copy.current_version == 2
        assert copy.description == f"copy in {region}"  # its own, untouched
        found = await keys.key_material(copy, 2)
        assert found is not None and found.reveal() == material.reveal()
        # Every copy still reads the first material too.
        assert await keys.key_material(copy, 1) is not None


async def test_a_rotation_may_not_change_a_copys_own_fields(keys: KeyStore) -> None:
    mrk = await _make_set(keys)
    stored = await _get(keys, mrk, PRIMARY)
    with pytest.raises(ValueError, match="per-region"):
        await stage_rotation(keys, stored, stored.value.replace(description="other"))


async def test_the_rotation_schedule_follows_the_primary(keys: KeyStore) -> None:
    mrk = await _make_set(
        keys, (PRIMARY, REPLICA), rotation_period_days=90, next_rotation=T0 + timedelta(days=90)
    )
    assert await _jobs(keys) == [(JOB_ROTATE, PRIMARY)]
    # What UpdatePrimaryRegion commits.
    stored = await _get(keys, mrk, PRIMARY)
    await keys.commit(await keys.stage_set_update(stored.value, {"primary_region": REPLICA}))
    assert await _jobs(keys) == [(JOB_ROTATE, REPLICA)]
    assert (await _get(keys, mrk, PRIMARY)).value.multi_region_type == "REPLICA"
    assert (await _get(keys, mrk, REPLICA)).value.multi_region_type == "PRIMARY"
