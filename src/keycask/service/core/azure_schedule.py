"""When an Azure Key Vault key's rotation policy's actions come due, and
the scheduler's entries for them (``JOB_AZURE_ROTATE``,
``JOB_AZURE_NOTIFY``): staged by every change that may move them (the
policy put, a version made or its exp changed, the key recovered or
restored), carried out by ``azure_rotation``. Kept apart from it so that
``azure.py``, which ``azure_rotation`` builds on, can stage them too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from keycask.keys.keystore import KeyStore
from keycask.ports import Write
from keycask.service.core.azure_requests import RotationPolicy, Settings, Version

DAY = 86400.0


def due_at(policy: RotationPolicy | None, latest: Version) -> float | None:
    """When the Rotate action comes due for ``latest`` (None: never)."""
    rotate = None if policy is None else policy.action("Rotate")
    if rotate is None:
        return None
    if rotate.trigger == "timeAfterCreate":
        return latest.created + rotate.days * DAY
    if latest.exp is None:
        return None
    return latest.exp - rotate.days * DAY


def notify_due(policy: RotationPolicy | None, entry: Version, now: float) -> float | None:
    """When the Notify action comes due for ``entry`` (None: never: no
    Notify action, no exp, already expired, or done for this exp and
    trigger). A time at or before ``now`` is due now."""
    notify = None if policy is None else policy.action("Notify")
    if notify is None or notify.trigger != "timeBeforeExpiry" or entry.exp is None:
        return None
    if entry.exp <= now:
        return None  # expired: near expiry no more
    if entry.notified is not None and entry.notified.covers(entry.exp, notify.days):
        return None
    return entry.exp - notify.days * DAY


def next_notice(settings: Settings, now: float) -> float | None:
    """The earliest time the Notify action comes due for any version."""
    if settings.deleted is not None:
        return None
    times = [notify_due(settings.policy, entry, now) for entry in settings.versions]
    return min((t for t in times if t is not None), default=None)


def stage_entries(
    keys: KeyStore, anchor_id: uuid.UUID, settings: Settings, now: float
) -> list[Write]:
    """The scheduler's entries for the policy's actions as ``settings``
    stand (none for a key without a policy or soft-deleted): staged with
    every change that may move them. An entry left at an older time only
    reschedules when it comes due."""
    if settings.policy is None or settings.deleted is not None:
        return []
    writes = []
    due = due_at(settings.policy, settings.latest)
    if due is not None:
        writes.append(keys.stage_azure_rotate(anchor_id, max(due, now)))
    notice = next_notice(settings, now)
    if notice is not None:
        writes.append(keys.stage_azure_notify(anchor_id, max(notice, now)))
    return writes


def iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat()
