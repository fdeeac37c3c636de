"""EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus,
RotateKeyOnDemand, ListKeyRotations.

A rotation adds a key version and makes it current: new ciphertexts name the
new version, old ones keep naming theirs, and every version's material stays
until the key itself is deleted. Automatic rotations are the scheduler's
(service/background/scheduler.py); this module only sets their schedule.

A multi-Region set rotates as one (AWS): rotation is set and done on its
primary, which writes the new material once, at the set's shared path, and
the changed shared fields into every copy in the same commit
(``stage_rotation``); on a replica, the calls that change rotation answer
UnsupportedOperationException, and those that read it answer the set's state.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from keycask.crypto import KeyMaterial, key_material_id
from keycask.errors import (
    KMSInvalidStateException,
    LimitExceededException,
    UnsupportedOperationException,
)
from keycask.keys.keystore import KeyStore, Stored
from keycask.keys.model import (
    DEFAULT_ROTATION_DAYS,
    MAX_ON_DEMAND_ROTATIONS,
    SHARED_FIELDS,
    Key,
    KeySpec,
    KeyState,
    KeyVersion,
    Origin,
    RotationType,
)
from keycask.keys.states import require_state
from keycask.ports import Write
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.paging import offset_marker, page_limit
from keycask.service.core.requests import (
    EnableKeyRotationRequest,
    KeyRequest,
    ListKeyRotationsRequest,
)
from keycask.service.core.resolve import use_key
from keycask.service.core.results import (
    GetKeyRotationStatusResult,
    KeyIdResult,
    ListKeyRotationsResult,
    RotationsListEntry,
)
from keycask.service.core.version_gate import primary_version, stage_primary_cleared


def rotate(key: Key, now: datetime, rotation_type: RotationType) -> tuple[Key, KeyMaterial]:
    """``key`` with a new current version of fresh material."""
    material = KeyMaterial.generate(32)
    version = key.next_version()
    entry = KeyVersion(
        version=version,
        material_id=key_material_id(material, key.material_owner),
        rotated=now,
        rotation_type=rotation_type,
    )
    new = key.replace(
        current_version=version, versions=(*key.versions, entry), last_version=version
    )
    return new, material


async def stage_rotation(
    keys: KeyStore, stored: Stored[Key], new: Key, *, keep_primary: bool = False
) -> list[Write]:
    """``new`` (``stored`` with its rotation fields changed) staged: for a
    multi-Region key, the change to the shared fields goes to every copy of
    the set in one commit. A rotation (a new current version) also clears
    the primary chosen through the Cloud KMS door, in the same commit, so
    the new version seals (``version_gate``); ``keep_primary``: the Cloud
    KMS door's versions.create, which stages the choice itself."""
    key = stored.value
    cleared: list[Write] = []
    if new.current_version != key.current_version and not keep_primary:
        cleared = await stage_primary_cleared(keys, key.key_id)
    if key.mrk is None:
        return [*keys.stage_update(stored, new), *cleared]
    changed = {
        f.name
        for f in dataclasses.fields(key)
        if f.init and getattr(new, f.name) != getattr(key, f.name)
    }
    if not changed <= SHARED_FIELDS:
        raise ValueError(f"a rotation changed per-region fields: {sorted(changed - SHARED_FIELDS)}")
    return [
        *await keys.stage_set_update(key, {name: getattr(new, name) for name in changed}),
        *cleared,
    ]


def _require_primary(key: Key, what: str) -> None:
    """A set's rotation is its primary's to change (AWS)."""
    if key.multi_region_type == "REPLICA":
        raise UnsupportedOperationException(
            f"{key.arn} is a multi-Region replica key; {what} is set on its primary key, "
            f"in {key.primary_region}, and applies to every replica."
        )


def _require_symmetric(key: Key, what: str) -> None:
    if key.key_spec is not KeySpec.SYMMETRIC_DEFAULT:
        raise UnsupportedOperationException(
            f"{key.arn} is not a symmetric encryption key; {what} is not supported."
        )


def _refuse_custom_key_store(key: Key) -> None:
    """AWS rotates no key of a custom key store, automatically or on demand."""
    if key.custom_key_store_id is not None:
        raise UnsupportedOperationException(
            f"{key.arn} is in the custom key store {key.custom_key_store_id}; "
            "keys in custom key stores cannot be rotated (create a new key instead)."
        )


def _require_automatic_rotation(key: Key) -> None:
    """Checked before the key's state, as AWS does: a PendingImport key is
    refused for its origin, not its state."""
    _require_symmetric(key, "automatic rotation")
    _refuse_custom_key_store(key)
    if key.origin is not Origin.AWS_KMS:
        raise UnsupportedOperationException(
            f"{key.arn} origin is {key.origin.value} which is not valid for this operation; "
            "keys with imported material rotate on demand (import new material, then "
            "RotateKeyOnDemand)."
        )


async def enable_key_rotation(deps: Deps, call: Call, req: EnableKeyRotationRequest) -> Outcome:
    if req.rotation_period_in_days is not None:
        call.conditions["kms:RotationPeriodInDays"] = req.rotation_period_in_days
    stored = await use_key(deps.keys, call, req.key_id, "kms:EnableKeyRotation")
    key = stored.value
    _require_automatic_rotation(key)
    _require_primary(key, "automatic rotation")
    require_state("EnableKeyRotation", key)
    now = deps.clock.now()
    if key.rotation_period_days is None or key.next_rotation is None:
        period = req.rotation_period_in_days or DEFAULT_ROTATION_DAYS
        due = now + timedelta(days=period)
    elif req.rotation_period_in_days in (None, key.rotation_period_days):
        return Outcome()  # already rotating on this period: nothing changes
    else:
        # A new period on a rotating key counts from its last rotation (or
        # its creation), as AWS does; a date already past rotates at once.
        period = req.rotation_period_in_days
        last = max((v.rotated for v in key.versions if v.rotated is not None), default=key.created)
        due = last + timedelta(days=period)
    new = key.replace(rotation_period_days=period, next_rotation=due)
    if new == key:
        return Outcome()
    return Outcome(None, await stage_rotation(deps.keys, stored, new))


async def disable_key_rotation(deps: Deps, call: Call, req: KeyRequest) -> Outcome:
    stored = await use_key(deps.keys, call, req.key_id, "kms:DisableKeyRotation")
    key = stored.value
    _require_automatic_rotation(key)
    _require_primary(key, "automatic rotation")
    require_state("DisableKeyRotation", key)
    new = key.replace(rotation_period_days=None, next_rotation=None)
    if new == key:
        return Outcome()
    return Outcome(None, await stage_rotation(deps.keys, stored, new))


async def get_key_rotation_status(deps: Deps, call: Call, req: KeyRequest) -> Outcome:
    # Answered in every state, for imported-material keys too (PendingImport
    # included), with automatic rotation off. AWS's key state table of 2020
    # refused EXTERNAL keys (UnsupportedOperationException) when imported
    # material could not rotate at all; now that it rotates on demand, AWS
    # documents this call as the status of automatic and on-demand rotation,
    # and that of keys that cannot rotate automatically as "always false".
    key = (
        await use_key(
            deps.keys, call, req.key_id, "kms:GetKeyRotationStatus", state="GetKeyRotationStatus"
        )
    ).value
    _require_symmetric(key, "key rotation")
    # A key on its way out does not rotate, and AWS reports so; cancelling
    # the deletion brings the schedule back. A multi-Region replica answers
    # its set's rotation, which every copy holds.
    enabled = key.rotation_period_days is not None and key.state not in (
        KeyState.PENDING_DELETION,
        KeyState.PENDING_REPLICA_DELETION,
    )
    return Outcome(
        GetKeyRotationStatusResult(
            key_rotation_enabled=enabled,
            key_id=key.arn,
            rotation_period_in_days=key.rotation_period_days,
            next_rotation_date=key.next_rotation if enabled else None,
            # On-demand rotations complete within the request, so none is
            # ever in progress to report.
        )
    )


async def rotate_key_on_demand(
    deps: Deps, call: Call, req: KeyRequest, *, keep_primary: bool = False
) -> Outcome:
    """A new current version; ``keep_primary``: leave a primary chosen
    through the Cloud KMS door to its caller (``stage_rotation``)."""
    stored = await use_key(deps.keys, call, req.key_id, "kms:RotateKeyOnDemand")
    key = stored.value
    _require_primary(key, "on-demand rotation")
    _refuse_custom_key_store(key)
    require_state("RotateKeyOnDemand", key)
    _require_symmetric(key, "on-demand rotation")
    if key.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS:
        raise LimitExceededException(
            f"{key.arn} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations."
        )
    now = deps.clock.now()
    if key.origin is Origin.EXTERNAL:
        pending = key.pending_rotation
        if pending is None or not pending.imported:
            raise KMSInvalidStateException(
                f"{key.arn} has no imported key material in PENDING_ROTATION state; "
                "import new key material first."
            )
        promoted = KeyVersion(
            version=pending.version,
            material_id=pending.material_id,
            rotated=now,
            rotation_type=RotationType.ON_DEMAND,
            imported=True,
            expiration_model=pending.expiration_model,
            valid_to=pending.valid_to,
            description=pending.description,
        )
        new = key.replace(
            current_version=pending.version,
            versions=(*key.versions[:-1], promoted),
            on_demand_rotations=key.on_demand_rotations + 1,
        )
        writes = await stage_rotation(deps.keys, stored, new, keep_primary=keep_primary)
        return Outcome(KeyIdResult(key.arn), writes)
    new, material = rotate(key, now, RotationType.ON_DEMAND)
    # On-demand rotations leave the automatic schedule as it was (AWS).
    new = new.replace(on_demand_rotations=key.on_demand_rotations + 1)
    writes = await stage_rotation(deps.keys, stored, new, keep_primary=keep_primary)
    writes.append(deps.keys.stage_key_material(key, new.current_version, material))
    call.detail = f"rotated to version {new.current_version}"
    return Outcome(KeyIdResult(key.arn), writes)


def _state(key: Key, version: KeyVersion, primary: int) -> str:
    if version.version == primary:
        return "CURRENT"
    if version.version > key.current_version:
        return "PENDING_ROTATION"
    return "NON_CURRENT"


def rotation_entry(key: Key, version: KeyVersion, primary: int) -> RotationsListEntry:
    """``primary``: the version Encrypt seals under (the newest, unless the
    Cloud KMS door chose another: ``version_gate.primary_version``), shown
    CURRENT."""
    imported = key.origin is Origin.EXTERNAL
    return RotationsListEntry(
        key_id=key.arn,
        key_material_id=version.material_id,
        key_material_state=_state(key, version, primary),
        rotation_date=version.rotated,
        rotation_type=None if version.rotation_type is None else version.rotation_type.value,
        key_material_description=version.description if imported else None,
        import_state=("IMPORTED" if version.imported else "PENDING_IMPORT") if imported else None,
        expiration_model=(
            version.expiration_model.value
            if imported and version.expiration_model is not None
            else None
        ),
        valid_to=version.valid_to if imported and version.imported else None,
    )


async def list_key_rotations(deps: Deps, call: Call, req: ListKeyRotationsRequest) -> Outcome:
    key = (
        await use_key(deps.keys, call, req.key_id, "kms:ListKeyRotations", state="ListKeyRotations")
    ).value
    _require_symmetric(key, "key rotation")
    limit = page_limit(req.limit, 100)
    start = offset_marker(req.marker)
    if req.include_key_material == "ALL_KEY_MATERIAL":
        versions = list(key.versions)
    else:
        # The default lists rotations only: not the first material, and not
        # imported material that no rotation has made current yet.
        versions = [v for v in key.versions if v.rotation_type is not None]
    page = versions[start : start + limit]
    primary = await primary_version(deps.keys, key)
    truncated = start + limit < len(versions)
    return Outcome(
        ListKeyRotationsResult(
            rotations=[rotation_entry(key, v, primary) for v in page],
            truncated=truncated,
            next_marker=str(start + limit) if truncated else None,
        )
    )
