"""A Cloud KMS crypto key's rotation schedule (rotationPeriod,
nextRotationTime) as keycask's automatic rotation: the key's rotation
period in days and next rotation date, which the scheduler keeps (it
rotates the key when the date comes, and the new version is the primary,
as Cloud KMS's rotation makes it). AWS KMS's periods bound it: whole days
from 90 to 2560. Set at create (``kms:EnableKeyRotation`` on the new key)
or by patch (``kms:EnableKeyRotation``; no period: ``kms:DisableKeyRotation``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keycask.errors import KMSInvalidStateException, ValidationException
from keycask.keys.model import Key, KeySpec, Origin
from keycask.keys.states import require_state
from keycask.ports import Write
from keycask.service.core import gcp_hsm
from keycask.service.core import requests as aws
from keycask.service.core.call import Call
from keycask.service.core.deps import Deps
from keycask.service.core.gcp_requests import Rotation
from keycask.service.core.handlers import rotation as rotation_handlers
from keycask.service.core.resolve import use_key

# AWS KMS's automatic rotation periods, which keycask's scheduler keeps.
_MIN_ROTATION_DAYS, _MAX_ROTATION_DAYS = 90, 2560


def schedule(now: datetime, rotation: Rotation, days_now: int | None) -> tuple[int, datetime]:
    """(period in days, next rotation) of a rotationPeriod and
    nextRotationTime; ``days_now``: the key's period, kept when the
    request names only the next time."""
    if rotation.keep_period:
        if days_now is None:
            raise ValidationException(
                "next_rotation_time needs a rotation_period: the key does not rotate."
            )
        days = days_now
    else:
        assert rotation.period_seconds is not None
        days, rest = divmod(rotation.period_seconds, 86400)
        if rest or not _MIN_ROTATION_DAYS <= days <= _MAX_ROTATION_DAYS:
            raise ValidationException(
                "keycask rotates keys on AWS KMS's schedule: rotation_period must be a "
                f"whole number of days from {_MIN_ROTATION_DAYS} to {_MAX_ROTATION_DAYS}."
            )
    due = rotation.next_time or now + timedelta(days=days)
    if due < now:
        raise ValidationException("next_rotation_time must be in the future.")
    return days, due.astimezone(UTC)


async def rotate_on(
    deps: Deps, call: Call, key: Key, rotation: Rotation
) -> tuple[Key, list[Write]]:
    """The key with its new rotation schedule, and the writes that make it."""
    if rotation.period_seconds is None and not rotation.keep_period:
        out = await gcp_hsm.no_rotation(
            key,
            "rotation_period cannot be changed",
            rotation_handlers.disable_key_rotation(deps, call, aws.KeyRequest(key_id=key.arn)),
        )
        return key.replace(rotation_period_days=None, next_rotation=None), list(out.writes)
    stored = await use_key(deps.keys, call, key.arn, "kms:EnableKeyRotation")
    key = stored.value
    if key.custom_key_store_id is not None:
        raise KMSInvalidStateException(f"rotation_period cannot be set: {gcp_hsm.NO_ROTATION}")
    if key.key_spec is not KeySpec.SYMMETRIC_DEFAULT or key.origin is not Origin.AWS_KMS:
        raise ValidationException(
            "Automatic rotation is supported for ENCRYPT_DECRYPT keys whose material keycask made."
        )
    if key.mrk is not None:
        raise KMSInvalidStateException(
            "a multi-Region key's rotation is set on its primary, through the AWS door"
        )
    require_state("EnableKeyRotation", key)
    days, due = schedule(deps.clock.now(), rotation, key.rotation_period_days)
    new = key.replace(rotation_period_days=days, next_rotation=due)
    if new == key:
        return key, []
    return new, await rotation_handlers.stage_rotation(deps.keys, stored, new)
