"""ScheduleKeyDeletion and CancelKeyDeletion.

Deletion is the one thing that loses data for good, so it only ever happens
after a waiting period (7-30 days) during which the key refuses every
cryptographic use and the decision can be taken back. The scheduler destroys
the key when the window ends (service/background/scheduler.py).

A multi-Region replica is deleted like a single-Region key. A primary that
still has replicas (even ones pending deletion) cannot be deleted before
them (AWS): it goes to PendingReplicaDeletion, keeping the window it was
given with no deletion date yet, and the scheduler starts that window when
its last replica is destroyed.
"""

from __future__ import annotations

from datetime import timedelta

from keycask.errors import ValidationException
from keycask.keys.model import DEFAULT_PENDING_WINDOW_DAYS, KeyState
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.multiregion_results import PendingReplicaDeletionResult
from keycask.service.core.requests import KeyRequest, ScheduleKeyDeletionRequest
from keycask.service.core.resolve import use_key
from keycask.service.core.results import KeyIdResult, ScheduleKeyDeletionResult

MIN_PENDING_WINDOW_DAYS = 7
MAX_PENDING_WINDOW_DAYS = 30


async def schedule_key_deletion(deps: Deps, call: Call, req: ScheduleKeyDeletionRequest) -> Outcome:
    days = req.pending_window_in_days
    if days is None:
        days = DEFAULT_PENDING_WINDOW_DAYS
    # The model allows 1-365; the service accepts 7-30 (AWS answers this way).
    if not MIN_PENDING_WINDOW_DAYS <= days <= MAX_PENDING_WINDOW_DAYS:
        raise ValidationException(
            f"PendingWindowInDays must be between {MIN_PENDING_WINDOW_DAYS} "
            f"and {MAX_PENDING_WINDOW_DAYS}"
        )
    call.conditions["kms:ScheduleKeyDeletionPendingWindowInDays"] = days
    stored = await use_key(
        deps.keys, call, req.key_id, "kms:ScheduleKeyDeletion", state="ScheduleKeyDeletion"
    )
    key = stored.value
    if key.multi_region_type == "PRIMARY" and len(key.regions) > 1:
        waiting = key.replace(
            state=KeyState.PENDING_REPLICA_DELETION, pending_window_days=days, deletion_date=None
        )
        call.detail = (
            f"deletion scheduled {days} days after the last replica key is deleted "
            f"(replicas in {', '.join(r for r in key.regions if r != key.region)})"
        )
        return Outcome(
            PendingReplicaDeletionResult(
                key_id=key.arn,
                key_state=KeyState.PENDING_REPLICA_DELETION.value,
                pending_window_in_days=days,
            ),
            deps.keys.stage_update(stored, waiting),
        )
    when = deps.clock.now() + timedelta(days=days)
    new = key.replace(state=KeyState.PENDING_DELETION, deletion_date=when)
    call.detail = f"deletion scheduled for {when.isoformat()}"
    return Outcome(
        ScheduleKeyDeletionResult(
            key_id=key.arn,
            deletion_date=when,
            key_state=KeyState.PENDING_DELETION.value,
            pending_window_in_days=days,
        ),
        deps.keys.stage_update(stored, new),
    )


async def cancel_key_deletion(deps: Deps, call: Call, req: KeyRequest) -> Outcome:
    stored = await use_key(
        deps.keys, call, req.key_id, "kms:CancelKeyDeletion", state="CancelKeyDeletion"
    )
    key = stored.value
    # A key saved from deletion comes back disabled, so nothing starts using
    # it again until someone decides to (AWS). Imported material that was
    # deleted meanwhile leaves it waiting for import instead. A primary
    # waiting for its replicas' deletion (PendingReplicaDeletion) is saved
    # the same way.
    state = KeyState.DISABLED if key.material_present else KeyState.PENDING_IMPORT
    new = key.replace(state=state, deletion_date=None, pending_window_days=None)
    return Outcome(KeyIdResult(key.arn), deps.keys.stage_update(stored, new))
