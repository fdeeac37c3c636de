"""Key Vault's soft delete over keycask's key deletion: delete, the deleted
keys (get, list), recover and purge.

- delete: ScheduleKeyDeletion of every version's keycask key
  (kms:ScheduleKeyDeletion on each), with a waiting period of
  ``RECOVERABLE_DAYS`` (Key Vault's recoverableDays, 7 to 90, held to AWS
  KMS's 7 to 30: keycask's longest), and the key's settings record it
  deleted. The name stays taken (its alias stays): a create of it is 409
  Conflict, as in Key Vault, until it is recovered or purged. When the
  period ends the scheduler deletes the keys, their material, aliases and
  settings, as for any keycask key: the key is purged.
- recover: CancelKeyDeletion of each version's key (kms:CancelKeyDeletion)
  and, for the versions that were enabled, EnableKey's right too
  (kms:EnableKey): they come back as they were, not Disabled as AWS's
  CancelKeyDeletion leaves a key.
- purge: the keys deleted now, material and all (kms:ScheduleKeyDeletion
  with kms:ScheduleKeyDeletionPendingWindowInDays 0, as Vault Transit's
  trim is authorized).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from keycask.keys.keystore import Stored
from keycask.keys.model import Key, KeyState
from keycask.ports import Write
from keycask.service.core import hsm_keys
from keycask.service.core import requests as aws
from keycask.service.core.azure import (
    KeyConflict,
    KeyNotFound,
    anchor_of,
    latest_of,
    public_der,
    version_key,
)
from keycask.service.core.azure_requests import (
    Deleted,
    DeletedBundle,
    GetRequest,
    KeyBundle,
    Settings,
)
from keycask.service.core.azure_schedule import stage_entries
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import deletion
from keycask.service.core.resolve import authorize_key, use_key

RECOVERABLE_DAYS = deletion.MAX_PENDING_WINDOW_DAYS
RECOVERY_LEVEL = "CustomizedRecoverable+Purgeable"


async def _versions(deps: Deps, call: Call, anchor: Key, settings: Settings) -> list[Key]:
    """Every version's keycask key still there (oldest first)."""
    found = []
    for entry in settings.versions:
        try:
            found.append(await version_key(deps, call, anchor, entry))
        except KeyNotFound:
            continue
    return found


async def _bundle(
    deps: Deps, call: Call, req: GetRequest, anchor: Key, settings: Settings
) -> KeyBundle:
    entry, key = await latest_of(deps, call, anchor, settings)
    return KeyBundle(req.ref, req.base, key, entry, await public_der(deps, key))


async def delete(deps: Deps, call: Call, req: GetRequest) -> Outcome:
    anchor, stored, settings = await anchor_of(deps, call, req.ref)
    versions = await _versions(deps, call, anchor, settings)
    writes: list[Write] = []
    enabled = tuple(key.key_id.hex for key in versions if key.state is KeyState.ENABLED)
    shown: dict[str, Key] = {}
    for key in versions:
        if key.state is KeyState.PENDING_DELETION:
            # Already scheduled (through the AWS door): its own window holds.
            await authorize_key(call, key, "kms:ScheduleKeyDeletion")
            shown[key.key_id.hex] = key
            continue
        out = await deletion.schedule_key_deletion(
            deps,
            call,
            aws.ScheduleKeyDeletionRequest(key_id=key.arn, pending_window_in_days=RECOVERABLE_DAYS),
        )
        writes.extend(out.writes)
        shown[key.key_id.hex] = key.replace(state=KeyState.PENDING_DELETION)
    now = deps.clock.now()
    purge = now + timedelta(days=RECOVERABLE_DAYS)
    marked = Deleted(now.timestamp(), purge.timestamp(), enabled)
    new = dataclasses.replace(settings, deleted=marked)
    writes.append(deps.keys.stage_azure_key(anchor.key_id, new.to_doc(), stored.revision))
    call.key_arn = anchor.arn
    call.detail = (
        f"Azure key {req.ref.vault}/{req.ref.name} deleted: {len(versions)} version(s) "
        f"scheduled for deletion on {purge.isoformat()}"
    )
    entry, latest = await latest_of(deps, call, anchor, settings)
    latest = shown.get(entry.id, latest)
    bundle = KeyBundle(req.ref, req.base, latest, entry, await public_der(deps, latest))
    return Outcome(DeletedBundle(bundle, marked), writes)


async def get_deleted(deps: Deps, call: Call, req: GetRequest) -> Outcome:
    """kms:DescribeKey on the latest version's key."""
    anchor, _, settings = await anchor_of(deps, call, req.ref, deleted=True)
    bundle = await _bundle(deps, call, req, anchor, settings)
    await authorize_key(call, bundle.key, "kms:DescribeKey")
    assert settings.deleted is not None
    return Outcome(DeletedBundle(bundle, settings.deleted))


async def recover(deps: Deps, call: Call, req: GetRequest) -> Outcome:
    anchor, stored, settings = await anchor_of(deps, call, req.ref, deleted=True)
    assert settings.deleted is not None
    writes: list[Write] = []
    restored: dict[str, Key] = {}
    for key in await _versions(deps, call, anchor, settings):
        if key.state is not KeyState.PENDING_DELETION:
            continue
        found = await use_key(
            deps.keys, call, key.arn, "kms:CancelKeyDeletion", state="CancelKeyDeletion"
        )
        state = KeyState.DISABLED
        if key.key_id.hex in settings.deleted.enabled and key.material_present:
            await authorize_key(call, key, "kms:EnableKey")
            state = KeyState.ENABLED
        elif not key.material_present:
            state = KeyState.PENDING_IMPORT
        new = key.replace(state=state, deletion_date=None, pending_window_days=None)
        writes.extend(deps.keys.stage_update(found, new))
        restored[key.key_id.hex] = new
    unmarked = dataclasses.replace(settings, deleted=None)
    writes.append(deps.keys.stage_azure_key(anchor.key_id, unmarked.to_doc(), stored.revision))
    # The policy's actions, dropped while the key was deleted, resume.
    writes.extend(stage_entries(deps.keys, anchor.key_id, unmarked, deps.clock.now().timestamp()))
    call.key_arn = anchor.arn
    call.detail = f"Azure key {req.ref.vault}/{req.ref.name} recovered"
    entry, latest = await latest_of(deps, call, anchor, settings)
    latest = restored.get(entry.id, latest)
    return Outcome(
        KeyBundle(req.ref, req.base, latest, entry, await public_der(deps, latest)), writes
    )


async def purge(deps: Deps, call: Call, req: GetRequest) -> Outcome:
    """Every version's key deleted now (kms:ScheduleKeyDeletion with a
    waiting period of 0 days), with its material, aliases and settings."""
    anchor, _, settings = await anchor_of(deps, call, req.ref, deleted=True)
    call.conditions["kms:ScheduleKeyDeletionPendingWindowInDays"] = 0
    writes: list[Write] = []
    keys = await _versions(deps, call, anchor, settings)
    for key in keys:
        await authorize_key(call, key, "kms:ScheduleKeyDeletion")
        if key.state is not KeyState.PENDING_DELETION:
            raise KeyConflict(
                f"Version {key.key_id.hex} of {req.ref.name} is not pending deletion (it was "
                "recovered through the AWS door): recover the key, then delete it again."
            )
    # The anchor last: its destruction deletes the settings and the name.
    for key in sorted(keys, key=lambda k: k.key_id == anchor.key_id):
        stored: Stored[Key] | None = await deps.keys.get(key.key_id)
        if stored is not None:
            writes.extend(await deps.keys.stage_destroy(stored))
    call.key_arn = anchor.arn
    in_hsm = [key for key in keys if key.hsm_object is not None]
    call.detail = f"Azure key {req.ref.vault}/{req.ref.name} purged: {len(keys)} key(s) deleted" + (
        f", {len(in_hsm)} HSM key(s) destroyed in the token once committed" if in_hsm else ""
    )

    async def shred() -> object:
        # Once the keys' records are gone: the private keys of an -HSM key
        # leave the token too (found in review: purge left them there with
        # nothing pointing at them). A token that cannot be reached keeps
        # them, and the log names each object to destroy by hand.
        for key in in_hsm:
            await hsm_keys.destroy(deps, key)
        return None

    return Outcome(None, writes, then=shred if in_hsm else None)
