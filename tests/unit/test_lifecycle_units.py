"""The pieces of the lifecycle that are pure functions or local files."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keycask.cli.dev import parse_duration
from keycask.config import ConfigError
from keycask.keys.model import (
    ExpirationModel,
    Key,
    KeyState,
    KeyVersion,
    Origin,
    RotationType,
)
from keycask.keys.paths import JOB_DELETE, JOB_EXPIRE, JOB_ROTATE, due_jobs, parse_sched_path
from keycask.service.background.scheduler import next_rotation_after
from keycask.storage.devclock import CLOCK_FILE, MovableClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _key(**changes: object) -> Key:
    key = Key(
        key_id=uuid.uuid4(),
        account="000000000000",
        region="us-east-1",
        created=T0,
        description="",
        state=KeyState.ENABLED,
        policy="{}",
        versions=(KeyVersion(1, "a" * 64),),
    )
    return key.replace(**changes)


# -- rotation cadence --


def test_next_rotation_keeps_the_cadence_when_on_time() -> None:
    due = T0 + timedelta(days=90)
    assert next_rotation_after(due, 90, due + timedelta(seconds=1)) == due + timedelta(days=90)


def test_next_rotation_after_downtime_is_one_period_from_now() -> None:
    due = T0 + timedelta(days=90)
    late = due + timedelta(days=400)  # four periods missed
    assert next_rotation_after(due, 90, late) == late + timedelta(days=90)


@given(
    period=st.integers(90, 2560),
    late_seconds=st.integers(0, 20 * 365 * 86400),
)
def test_next_rotation_is_always_in_the_future_and_at_most_one_period_ahead(
    period: int, late_seconds: int
) -> None:
    due = T0
    now = due + timedelta(seconds=late_seconds)
    following = next_rotation_after(due, period, now)
    assert now < following <= now + timedelta(days=period)


# -- the schedule index --


def test_due_jobs_follow_the_key() -> None:
    assert due_jobs(_key()) == set()
    rotating = _key(rotation_period_days=90, next_rotation=T0 + timedelta(days=90))
    [path] = due_jobs(rotating)
    when, job, key_id = parse_sched_path(path)
    assert (job, key_id) == (JOB_ROTATE, rotating.key_id)
    assert when == int((T0 + timedelta(days=90)).timestamp())
    # A disabled key does not rotate; re-enabling brings the entry back.
    assert due_jobs(rotating.replace(state=KeyState.DISABLED)) == set()
    deleting = rotating.replace(
        state=KeyState.PENDING_DELETION, deletion_date=T0 + timedelta(days=7)
    )
    assert {parse_sched_path(p)[1] for p in due_jobs(deleting)} == {JOB_DELETE}
    # Material keycask did not make never rotates on a schedule, whatever
    # the record says: imported material (its owner never held what
    # keycask would make) and keys of a custom key store.
    assert due_jobs(rotating.replace(origin=Origin.EXTERNAL)) == set()
    assert due_jobs(rotating.replace(custom_key_store_id="cks-1234567890abcdef0")) == set()


def test_expiry_is_scheduled_for_the_earliest_present_material() -> None:
    soon, later = T0 + timedelta(days=3), T0 + timedelta(days=9)
    key = _key(
        origin=Origin.EXTERNAL,
        versions=(
            KeyVersion(1, "a" * 64, expiration_model=ExpirationModel.KEY_MATERIAL_EXPIRES,
                       valid_to=later),
            KeyVersion(2, "b" * 64, rotated=T0, rotation_type=RotationType.ON_DEMAND,
                       expiration_model=ExpirationModel.KEY_MATERIAL_EXPIRES, valid_to=soon),
        ),
        current_version=2,
    )  # fmt: skip
    [path] = due_jobs(key)
    assert parse_sched_path(path)[:2] == (int(soon.timestamp()), JOB_EXPIRE)
    gone = key.replace(versions=(key.versions[0], key.versions[1].__class__(2, "b" * 64,
                                 imported=False)))  # fmt: skip
    assert {parse_sched_path(p)[0] for p in due_jobs(gone)} == {int(later.timestamp())}


def test_schedule_paths_sort_by_time() -> None:
    early = _key(rotation_period_days=90, next_rotation=T0 + timedelta(days=1))
    late = _key(rotation_period_days=90, next_rotation=T0 + timedelta(days=1000))
    assert min(due_jobs(early)) < min(due_jobs(late))


# -- key documents --


def test_key_document_round_trips_every_lifecycle_field() -> None:
    key = _key(
        origin=Origin.EXTERNAL,
        rotation_period_days=180,
        next_rotation=T0 + timedelta(days=180),
        on_demand_rotations=3,
        state=KeyState.PENDING_DELETION,
        deletion_date=T0 + timedelta(days=7),
        current_version=2,
        versions=(
            KeyVersion(1, "a" * 64, imported=False,
                       expiration_model=ExpirationModel.KEY_MATERIAL_DOES_NOT_EXPIRE),
            KeyVersion(2, "b" * 64, rotated=T0, rotation_type=RotationType.ON_DEMAND,
                       expiration_model=ExpirationModel.KEY_MATERIAL_EXPIRES,
                       valid_to=T0 + timedelta(days=30), description="from the HSM"),
            KeyVersion(3, "c" * 64, imported=True),
        ),
    )  # fmt: skip
    assert Key.from_doc(key.to_doc()) == key
    assert key.pending_rotation == key.versions[2]
    assert key.current == key.versions[1]
    assert not key.material_present  # version 1 is not imported


def test_settled_state_follows_the_material() -> None:
    present = _key(origin=Origin.EXTERNAL, state=KeyState.PENDING_IMPORT)
    assert present.settled().state is KeyState.ENABLED
    missing = present.replace(versions=(KeyVersion(1, "a" * 64, imported=False),))
    assert missing.replace(state=KeyState.ENABLED).settled().state is KeyState.PENDING_IMPORT
    assert missing.replace(state=KeyState.DISABLED).settled().state is KeyState.PENDING_IMPORT
    pending = missing.replace(state=KeyState.PENDING_DELETION)
    assert pending.settled().state is KeyState.PENDING_DELETION
    assert present.replace(state=KeyState.DISABLED).settled().state is KeyState.DISABLED


# -- the movable clock --


def test_movable_clock_moves_forward_durably_and_is_shared(tmp_path: Path) -> None:
    clock = MovableClock(tmp_path)
    assert clock.offset_seconds == 0
    before = clock.now()
    clock.advance(91 * 86400)
    assert clock.now() - before >= timedelta(days=91)
    other = MovableClock(tmp_path)  # another worker, or the next start
    assert other.offset_seconds == 91 * 86400
    clock.advance(1)
    assert other.offset_seconds == 91 * 86400  # until it reloads
    other.reload()
    assert other.offset_seconds == 91 * 86400 + 1


@pytest.mark.parametrize("seconds", [0, -1, 101 * 366 * 86400])
def test_movable_clock_refuses_to_go_back_or_too_far(tmp_path: Path, seconds: float) -> None:
    clock = MovableClock(tmp_path)
    with pytest.raises(ValueError):
        clock.advance(seconds)
    assert clock.offset_seconds == 0
    assert not (tmp_path / CLOCK_FILE).exists()


def test_movable_clock_refuses_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / CLOCK_FILE).write_text("-5")
    with pytest.raises(ValueError):
        MovableClock(tmp_path)


# -- durations on the command line --


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("91d", 91 * 86400), ("12h", 43200), ("1d12h30m", 131400), ("90s", 90), ("3600", 3600),
     ("1.5d", 129600), (" 2D ", 172800)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "d", "91x", "1d 2h", "-", "1d-2h", "abc", "nan", "inf", "-5", "1e9"]
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from("dhms")), min_size=1, max_size=4))
def test_parse_duration_sums_its_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    assert parse_duration(text) == sum(n * units[u] for n, u in parts)
