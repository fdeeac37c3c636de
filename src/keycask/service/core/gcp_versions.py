"""Cloud KMS's per-version states for symmetric crypto keys: ENABLED,
DISABLED, DESTROY_SCHEDULED and DESTROYED.

AWS KMS has one state per key; Cloud KMS one per version. keycask keeps a
version's own state in the key's Cloud KMS settings document
(``gcp/key/<key id>``, ``KeySettings.versions``); a version with none there
is ENABLED. The state is the key's, not the door's: every door's Encrypt
(``crypto.seal_for``) and Decrypt (``crypto._open``) refuse a version that
is not ENABLED, with KMSInvalidStateException (Cloud KMS's
FAILED_PRECONDITION).

- patch ``state`` ENABLED/DISABLED: ``kms:EnableKey`` / ``kms:DisableKey``,
  the actions AWS KMS gives the same power over a whole key.
- destroy: ``kms:ScheduleKeyDeletion``. The version is DESTROY_SCHEDULED
  until ``destroyScheduledDuration`` (the crypto key's, 24 hours to 120
  days, 30 days by default) has passed; then the scheduler
  (``JOB_GCP_DESTROY``) deletes its material from the store, in one commit
  with the state DESTROYED. Nothing opens its ciphertexts afterwards,
  through any door.
- restore: ``kms:CancelKeyDeletion``; a DESTROY_SCHEDULED version becomes
  DISABLED, as in Cloud KMS.

Material shared by a multi-Region set, or imported by its owner, is not
this door's to destroy version by version (as with Vault's trim).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from keycask.errors import KMSInvalidStateException, ValidationException
from keycask.keys.keystore import KeyStore, Stored
from keycask.keys.model import Key, KeySpec, KeyState, Origin
from keycask.ports import Write
from keycask.service.core import requests as aws
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.gcp import check_version, resolve_key_for, settings_of
from keycask.service.core.gcp_requests import (
    DESTROY_SCHEDULED,
    DESTROYED,
    DISABLED,
    ENABLED,
    KeyResult,
    KeySettings,
    UpdateVersionRequest,
    VersionRequest,
    VersionResult,
    VersionState,
)
from keycask.service.core.handlers import keys
from keycask.service.core.resolve import authorize_key


async def _load(
    deps: Deps, call: Call, req: VersionRequest | UpdateVersionRequest, action: str
) -> tuple[Key, Stored[bytes], KeySettings]:
    key = await resolve_key_for(deps, call, req.name)
    await authorize_key(call, key, action)
    check_version(key, req.name, req.version)
    stored = await deps.keys.gcp_key(key.key_id)
    return key, stored, KeySettings.from_doc(stored.value, req.name.name)


def _answer(
    deps: Deps, req: VersionRequest | UpdateVersionRequest, key: Key, stored: Stored[bytes],
    new: KeySettings, *, extra: list[Write] | None = None,
) -> Outcome:  # fmt: skip
    writes = [deps.keys.stage_gcp_key(key.key_id, new.to_doc(), stored.revision), *(extra or [])]
    return Outcome(VersionResult(req.name, key, req.version, new), writes)


async def update_version(deps: Deps, call: Call, req: UpdateVersionRequest) -> Outcome:
    if req.state not in (ENABLED, DISABLED):
        raise ValidationException(
            f"The state of a CryptoKeyVersion can be changed only to ENABLED or DISABLED, "
            f"not {req.state}."
        )
    action = "kms:EnableKey" if req.state == ENABLED else "kms:DisableKey"
    key = await resolve_key_for(deps, call, req.name)
    if key.key_spec is not KeySpec.SYMMETRIC_DEFAULT:
        return await _single_version_state(deps, call, key, req)
    key, stored, settings = await _load(deps, call, req, action)
    current = settings.state_of(req.version).state
    if current not in (ENABLED, DISABLED):
        raise KMSInvalidStateException(
            f"CryptoKeyVersion {req.name.version_name(req.version)} is {current}: only an "
            "ENABLED or DISABLED version can be enabled or disabled."
        )
    new = settings.with_version(req.version, VersionState(req.state))
    call.detail = f"{req.name.version_name(req.version)}: {current} -> {req.state}"
    return _answer(deps, req, key, stored, new)


async def _single_version_state(
    deps: Deps, call: Call, key: Key, req: UpdateVersionRequest
) -> Outcome:
    """An asymmetric or MAC crypto key's one version is its keycask key:
    its state is the key's (EnableKey, DisableKey)."""
    check_version(key, req.name, req.version)
    ref = aws.KeyRequest(key_id=key.arn)
    if req.state == ENABLED:
        out = await keys.enable_key(deps, call, ref)
        new = key.replace(state=KeyState.ENABLED)
    else:
        out = await keys.disable_key(deps, call, ref)
        new = key.replace(state=KeyState.DISABLED)
    settings = KeySettings.from_doc((await deps.keys.gcp_key(key.key_id)).value, req.name.name)
    return Outcome(VersionResult(req.name, new, req.version, settings), out.writes)


def _destroyable(key: Key) -> None:
    if key.mrk is not None:
        raise KMSInvalidStateException(
            "a multi-Region key's versions are shared by every copy: destroy is not "
            "supported for them"
        )
    if key.origin is not Origin.AWS_KMS or key.key_spec is not KeySpec.SYMMETRIC_DEFAULT:
        raise KMSInvalidStateException(
            "destroy is supported for symmetric keys whose material keycask made"
        )


async def destroy(deps: Deps, call: Call, req: VersionRequest) -> Outcome:
    key, stored, settings = await _load(deps, call, req, "kms:ScheduleKeyDeletion")
    _destroyable(key)
    current = settings.state_of(req.version).state
    if current not in (ENABLED, DISABLED):
        raise KMSInvalidStateException(
            f"CryptoKeyVersion {req.name.version_name(req.version)} is {current}: only an "
            "ENABLED or DISABLED version can be destroyed."
        )
    when = deps.clock.now() + timedelta(seconds=settings.destroy_scheduled_seconds)
    new = settings.with_version(req.version, VersionState(DESTROY_SCHEDULED, when.timestamp()))
    call.detail = (
        f"{req.name.version_name(req.version)}: DESTROY_SCHEDULED, its material "
        f"destroyed at {when.isoformat()}"
    )
    return _answer(
        deps,
        req,
        key,
        stored,
        new,
        extra=[deps.keys.stage_gcp_destroy(key.key_id, when.timestamp())],
    )


async def restore(deps: Deps, call: Call, req: VersionRequest) -> Outcome:
    key, stored, settings = await _load(deps, call, req, "kms:CancelKeyDeletion")
    current = settings.state_of(req.version)
    if current.state != DESTROY_SCHEDULED:
        raise KMSInvalidStateException(
            f"CryptoKeyVersion {req.name.version_name(req.version)} is {current.state}: "
            "only a DESTROY_SCHEDULED version can be restored."
        )
    new = settings.with_version(req.version, VersionState(DISABLED))
    call.detail = f"{req.name.version_name(req.version)}: restored (DISABLED)"
    return _answer(deps, req, key, stored, new)


async def destroy_due(keys: KeyStore, key: Key, now: datetime) -> tuple[list[Write], str] | None:
    """The scheduler's job: every version of ``key`` whose destroy time has
    come loses its material, in one commit with its state DESTROYED. None:
    nothing is due (a restore came first)."""
    stored = await keys.gcp_key(key.key_id)
    if not stored.revision:
        return None
    settings = KeySettings.from_doc(stored.value, "")
    due = sorted(
        n for n, v in settings.versions.items()
        if v.state == DESTROY_SCHEDULED and v.destroy_time is not None
        and v.destroy_time <= now.timestamp()
    )  # fmt: skip
    if not due:
        return None
    new = settings
    for number in due:
        old = settings.versions[number]
        new = new.with_version(number, VersionState(DESTROYED, old.destroy_time, now.timestamp()))
    writes = [keys.stage_gcp_key(key.key_id, new.to_doc(), stored.revision)]
    writes.extend(keys.stage_delete_material(key.key_id, number) for number in due)
    names = ", ".join(str(n) for n in due)
    return writes, f"Cloud KMS version(s) {names} destroyed: their material deleted"


async def update_primary(deps: Deps, call: Call, req: VersionRequest) -> Outcome:
    """keycask encrypts under a key's newest version: making that version
    the primary is a no-op (kms:RotateKeyOnDemand, the action that changes
    a keycask key's current version); any other is refused."""
    key = await resolve_key_for(deps, call, req.name)
    await authorize_key(call, key, "kms:RotateKeyOnDemand")
    settings = await settings_of(deps, key, req.name)
    if settings.purpose != "ENCRYPT_DECRYPT":
        raise ValidationException(
            f"UpdateCryptoKeyPrimaryVersion is not valid for CryptoKey {req.name.name} with "
            f"purpose {settings.purpose}."
        )
    check_version(key, req.name, req.version)
    if req.version != key.current_version:
        raise KMSInvalidStateException(
            f"keycask's primary version is always a crypto key's newest one (here "
            f"{key.current_version}): {req.name.version_name(req.version)} cannot become the "
            "primary again. Create a new version to change the primary."
        )
    return Outcome(KeyResult(req.name, key, settings))
