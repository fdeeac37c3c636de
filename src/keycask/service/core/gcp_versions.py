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

The primary: updatePrimaryVersion may name any ENABLED version, and
versions.create leaves the primary as it was (Cloud KMS's behaviour). The
choice is the key's (``KeySettings.primary``): every door seals under it
(``crypto.seal_for``), and every other rotation clears it
(``rotation.stage_rotation``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta

from keycask.errors import (
    KMSInvalidStateException,
    NotFoundException,
    ValidationException,
)
from keycask.keys.keystore import KeyStore, Stored
from keycask.keys.model import Alias, Key, KeySpec, KeyState, Origin, alias_arn
from keycask.ports import Write
from keycask.service.core import gcp_hsm, gcp_pages
from keycask.service.core import requests as aws
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.gcp import aws_create, resolve_key_for, settings_of
from keycask.service.core.gcp_requests import (
    DESTROY_SCHEDULED,
    DESTROYED,
    DISABLED,
    ENABLED,
    KeyName,
    KeyRequest,
    KeyResult,
    KeySettings,
    ListRequest,
    UpdateVersionRequest,
    VersionRequest,
    VersionResult,
    VersionState,
    check_version,
    version_numbers,
)
from keycask.service.core.handlers import deletion, keys
from keycask.service.core.handlers import rotation as rotation_handlers
from keycask.service.core.resolve import authorize_key
from keycask.service.core.results import KeyMetadataResult
from keycask.service.core.version_gate import check_transit_floors


async def _load(
    deps: Deps, call: Call, req: VersionRequest | UpdateVersionRequest, action: str
) -> tuple[Key, Stored[bytes], KeySettings]:
    key = await resolve_key_for(deps, call, req.name)
    await authorize_key(call, key, action)
    stored = await deps.keys.gcp_key(key.key_id)
    settings = KeySettings.from_doc(stored.value, req.name.name)
    check_version(key, settings, req.name, req.version)
    return key, stored, settings


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


async def version_key(deps: Deps, call: Call, name: KeyName, version: int) -> Key:
    """The keycask key of an asymmetric or MAC crypto key's version (not
    authorized: the core operation that uses it authorizes); NOT_FOUND for
    a version it does not have. Version N > 1 is the key whose id the
    crypto key's settings document records for it (never the key an alias
    names: a name can be pointed elsewhere), and only while it is this
    account's and Region's."""
    key = await resolve_key_for(deps, call, name)
    if version == 1:
        return key
    settings = await settings_of(deps, key, name)
    key_id = settings.version_keys.get(version)
    stored = None
    if key_id is not None:
        try:
            stored = await deps.keys.get(uuid.UUID(key_id))
        except ValueError:
            stored = None
    if stored is None or (stored.value.account, stored.value.region) != (
        key.account,
        key.region,
    ):
        raise NotFoundException(f"CryptoKeyVersion {name.version_name(version)} not found.")
    return stored.value


async def _single_version_state(
    deps: Deps, call: Call, key: Key, req: UpdateVersionRequest
) -> Outcome:
    """An asymmetric or MAC crypto key's version is a keycask key of its
    own: its state is that key's (EnableKey, DisableKey)."""
    settings = await settings_of(deps, key, req.name)
    check_version(key, settings, req.name, req.version)
    version = await version_key(deps, call, req.name, req.version)
    ref = aws.KeyRequest(key_id=version.arn)
    if req.state == ENABLED:
        out = await keys.enable_key(deps, call, ref)
        new = version.replace(state=KeyState.ENABLED)
    else:
        out = await keys.disable_key(deps, call, ref)
        new = version.replace(state=KeyState.DISABLED)
    return Outcome(VersionResult(req.name, new, req.version, settings), out.writes)


def _destroyable(key: Key) -> None:
    if key.mrk is not None:
        raise KMSInvalidStateException(
            "a multi-Region key's versions are shared by every copy: destroy is not "
            "supported for them"
        )
    if key.hsm_object is not None:
        return  # its one version's material is the token object (an AES key or a pair)
    if key.origin is not Origin.AWS_KMS or key.key_spec is not KeySpec.SYMMETRIC_DEFAULT:
        raise KMSInvalidStateException(
            "destroy is supported for symmetric keys whose material keycask made or holds in an HSM"
        )


async def _key_version_lifecycle(
    deps: Deps, call: Call, req: VersionRequest, *, destroy: bool
) -> Outcome:
    """An asymmetric or MAC crypto key's version N > 1 is a keycask key of
    its own: destroy is ScheduleKeyDeletion of that key (the crypto key's
    destroyScheduledDuration in whole days, held to AWS KMS's 7 to 30), and
    restore CancelKeyDeletion (the key comes back Disabled, as a restored
    Cloud KMS version does). When the window ends the scheduler deletes the
    key, its material and its alias: the version shows DESTROYED."""
    anchor = await resolve_key_for(deps, call, req.name)
    settings = await settings_of(deps, anchor, req.name)
    check_version(anchor, settings, req.name, req.version)
    if req.version == 1:
        raise KMSInvalidStateException(
            f"{req.name.version_name(1)} is the crypto key's own keycask key: keycask does not "
            "destroy it alone (disable it, or schedule the whole key's deletion through the "
            "AWS door)"
        )
    try:
        version = await version_key(deps, call, req.name, req.version)
    except NotFoundException:
        raise KMSInvalidStateException(
            f"CryptoKeyVersion {req.name.version_name(req.version)} is DESTROYED."
        ) from None
    ref = version.arn
    if destroy:
        days = -(-settings.destroy_scheduled_seconds // 86400)
        days = min(max(days, deletion.MIN_PENDING_WINDOW_DAYS), deletion.MAX_PENDING_WINDOW_DAYS)
        out = await deletion.schedule_key_deletion(
            deps, call, aws.ScheduleKeyDeletionRequest(key_id=ref, pending_window_in_days=days)
        )
        new = version.replace(
            state=KeyState.PENDING_DELETION, deletion_date=deps.clock.now() + timedelta(days=days)
        )
    else:
        out = await deletion.cancel_key_deletion(deps, call, aws.KeyRequest(key_id=ref))
        new = version.replace(state=KeyState.DISABLED, deletion_date=None)
    return Outcome(VersionResult(req.name, new, req.version, settings), out.writes)


async def destroy(deps: Deps, call: Call, req: VersionRequest) -> Outcome:
    anchor = await resolve_key_for(deps, call, req.name)
    if (anchor.key_spec.is_asymmetric or anchor.key_spec.is_hmac) and anchor.hsm_object is None:
        return await _key_version_lifecycle(deps, call, req, destroy=True)
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
    anchor = await resolve_key_for(deps, call, req.name)
    if (anchor.key_spec.is_asymmetric or anchor.key_spec.is_hmac) and anchor.hsm_object is None:
        return await _key_version_lifecycle(deps, call, req, destroy=False)
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
    names = ", ".join(str(n) for n in due)
    if key.hsm_object is not None:
        # Its material is a token object, which the scheduler destroys
        # (hsm_keys.destroy); keycask's store holds none.
        return writes, f"Cloud KMS version(s) {names} destroyed"
    writes.extend(keys.stage_delete_material(key.key_id, number) for number in due)
    return writes, f"Cloud KMS version(s) {names} destroyed: their material deleted"


def primary_refused(key: Key) -> str | None:
    """Why a primary other than the newest version cannot hold for ``key``
    (None: it can). A multi-Region key's versions are its set's, and the
    choice, kept in this copy's settings, would not hold in the other
    Regions; a key of a custom key store (HSM- or XKS-backed) has one
    version; imported material comes and goes version by version
    (expiry, DeleteImportedKeyMaterial), so keycask keeps such keys
    encrypting under their newest material, as AWS KMS does."""
    if key.mrk is not None:
        return (
            "a multi-Region key's versions are shared by every copy of its set, in every "
            "Region, and a primary chosen here would hold in this Region only"
        )
    if key.custom_key_store_id is not None or key.hsm_object is not None or key.xks_key_id:
        return "a key of a custom key store (HSM- or XKS-backed) has one version"
    if key.origin is not Origin.AWS_KMS:
        return (
            "a key of imported material encrypts under its newest material: each version's "
            "material can expire or be deleted on its own"
        )
    return None


async def update_primary(deps: Deps, call: Call, req: VersionRequest) -> Outcome:
    """The version every door's Encrypt, GenerateDataKey and ReEncrypt seal
    under (``KeySettings.primary``, read by ``crypto.seal_for``), authorized
    as kms:RotateKeyOnDemand, the action that changes a keycask key's
    current version. The version must be ENABLED; naming the newest clears
    the choice (the newest is then the primary, as after any rotation)."""
    key = await resolve_key_for(deps, call, req.name)
    await authorize_key(call, key, "kms:RotateKeyOnDemand")
    stored = await deps.keys.gcp_key(key.key_id)
    settings = KeySettings.from_doc(stored.value, req.name.name)
    if settings.purpose != "ENCRYPT_DECRYPT" or not _symmetric(key):
        raise ValidationException(
            f"UpdateCryptoKeyPrimaryVersion is not valid for CryptoKey {req.name.name} with "
            f"purpose {settings.purpose}."
        )
    check_version(key, settings, req.name, req.version)
    state = settings.state_of(req.version).state
    if state == ENABLED and key.state is not KeyState.ENABLED:
        # The key's own state shows through its versions (as in the render).
        state = DESTROY_SCHEDULED if key.state is KeyState.PENDING_DELETION else DISABLED
    version_name = req.name.version_name(req.version)
    if state != ENABLED:
        raise KMSInvalidStateException(
            f"The request cannot be fulfilled. Resource {version_name} has value {state} in "
            "field crypto_key_version.state."
        )
    chosen: int | None = None
    if req.version != key.current_version:
        reason = primary_refused(key)
        if reason is not None:
            raise KMSInvalidStateException(
                f"{version_name} cannot become the primary of {req.name.name}: {reason}."
            )
        await check_transit_floors(deps.keys, key, req.version)
        chosen = req.version
    new = dataclasses.replace(settings, primary=chosen)
    call.detail = f"crypto key {req.name.name}: primary version {req.version}" + (
        "" if chosen is not None else " (the newest: no version chosen)"
    )
    if new.primary == settings.primary:
        return Outcome(KeyResult(req.name, key, new))
    writes = [deps.keys.stage_gcp_key(key.key_id, new.to_doc(), stored.revision)]
    return Outcome(KeyResult(req.name, key, new), writes)


def _symmetric(key: Key) -> bool:
    return key.key_spec is KeySpec.SYMMETRIC_DEFAULT


async def get_version(deps: Deps, call: Call, req: VersionRequest) -> Outcome:
    key = await resolve_key_for(deps, call, req.name)
    await authorize_key(call, key, "kms:DescribeKey")
    settings = await settings_of(deps, key, req.name)
    check_version(key, settings, req.name, req.version)
    return Outcome(await _shown(deps, call, req.name, key, settings, number=req.version))


async def _shown(
    deps: Deps, call: Call, name: KeyName, key: Key, settings: KeySettings, *, number: int
) -> VersionResult:
    """Version ``number`` as answered: an asymmetric or MAC key's version is
    its own key's; one whose key was deleted (its destroy window ended) is
    DESTROYED."""
    if _symmetric(key):
        return VersionResult(name, key, number, settings)
    try:
        return VersionResult(name, await version_key(deps, call, name, number), number, settings)
    except NotFoundException:
        gone = settings.with_version(number, VersionState(DESTROYED))
        return VersionResult(name, key, number, gone)


async def list_versions(deps: Deps, call: Call, req: ListRequest) -> Outcome:
    name = req.parent
    assert isinstance(name, KeyName)
    key = await resolve_key_for(deps, call, name)
    await authorize_key(call, key, "kms:ListKeyRotations")
    settings = await settings_of(deps, key, name)

    async def versions(after: str) -> AsyncGenerator[tuple[str, VersionResult]]:
        # A page token is a version number (ASCII digits, a few of them);
        # any other starts at the beginning.
        start = int(after) if after.isascii() and after.isdigit() and len(after) <= 9 else 0
        for number in version_numbers(key, settings):
            if number > start:
                yield str(number), await _shown(deps, call, name, key, settings, number=number)

    return Outcome(await gcp_pages.page(req, versions))


async def prepare_version(deps: Deps, call: Call, req: KeyRequest) -> None:
    """A new RSA version's material, made before the write lock is taken."""
    try:
        key = await resolve_key_for(deps, call, req.name)
    except NotFoundException:
        return
    if key.key_spec.is_rsa and key.hsm_object is None:
        await keys.prepare_material(call, aws_create(req.name, key.key_spec, key.key_usage))


async def create_version(deps: Deps, call: Call, req: KeyRequest) -> Outcome:
    """A symmetric key's new version is RotateKeyOnDemand
    (kms:RotateKeyOnDemand), AWS's limit of on-demand rotations per key
    holding; the primary stays as it was (Cloud KMS's behaviour) until
    updatePrimaryVersion. An asymmetric or MAC key's is a
    keycask key of its own (kms:RotateKeyOnDemand on the crypto key, then
    kms:CreateKey, kms:CreateAlias on its alias)."""
    key = await resolve_key_for(deps, call, req.name)
    if not _symmetric(key):
        # A right on the crypto key first, as a symmetric key's new version
        # (RotateKeyOnDemand) needs; then CreateKey and CreateAlias.
        await authorize_key(call, key, "kms:RotateKeyOnDemand")
        gcp_hsm.check_new_version(key)
        return await _create_key_version(deps, call, req.name, key)
    # Cloud KMS's new version is not the primary until updatePrimaryVersion:
    # the primary before the rotation is kept as the chosen one, in the
    # rotation's commit (any other rotation clears the choice). A key whose
    # primary cannot be chosen (primary_refused) encrypts under the new one.
    keep = primary_refused(key) is None
    out = await gcp_hsm.no_rotation(
        key,
        "a new CryptoKeyVersion cannot be created",
        rotation_handlers.rotate_key_on_demand(
            deps, call, aws.KeyRequest(key_id=key.arn), keep_primary=keep
        ),
    )
    stored = await deps.keys.gcp_key(key.key_id)
    settings = KeySettings.from_doc(stored.value, req.name.name)
    version = key.next_version()
    writes = list(out.writes)
    primary = settings.primary_of(key)
    if keep:
        settings = dataclasses.replace(settings, primary=primary)
        writes.append(deps.keys.stage_gcp_key(key.key_id, settings.to_doc(), stored.revision))
    else:
        settings = dataclasses.replace(settings, primary=None)
        primary = version
    call.detail = (
        f"crypto key {req.name.name}: version {version} created (a rotation); "
        f"the primary is version {primary}"
    )
    rotated = key.replace(current_version=version)
    return Outcome(VersionResult(req.name, rotated, version, settings), writes)


async def _create_key_version(deps: Deps, call: Call, name: KeyName, key: Key) -> Outcome:
    stored = await deps.keys.gcp_key(key.key_id)
    settings = KeySettings.from_doc(stored.value, name.name)
    number = settings.version_count + 1
    alias_name = name.version_alias(number)
    if await deps.keys.get_alias(call.account, call.region, alias_name) is not None:
        raise KMSInvalidStateException(
            f"the alias {alias_name} is taken by another key: remove it through the AWS door"
        )

    def shared_policy(made: Key) -> Key:
        # The crypto key's policy (its IAM bindings among its statements)
        # holds for every version: the new key takes it as it is, as it
        # passed the lockout check when it was put.
        return made.replace(policy=key.policy, policy_principals=key.policy_principals)

    created = await keys.create_key(
        deps, call, aws_create(name, key.key_spec, key.key_usage), adjust=shared_policy
    )
    result = created.result
    assert isinstance(result, KeyMetadataResult)
    await call.authorize(
        "kms:CreateAlias", resource=alias_arn(call.region, call.account, alias_name)
    )
    meta = result.key_metadata
    now = deps.clock.now()
    version = Key(
        uuid.UUID(meta.key_id), call.account, call.region, meta.creation_date,
        meta.description, KeyState.ENABLED, key.policy, key_usage=key.key_usage,
        key_spec=key.key_spec,
    )  # fmt: skip
    new = dataclasses.replace(
        settings,
        version_count=number,
        version_keys={**settings.version_keys, number: meta.key_id},
    )
    writes = [
        *created.writes,
        *deps.keys.stage_put_alias(Alias(alias_name, call.account, call.region,
                                         version.key_id, now, now), expect=0),
        deps.keys.stage_gcp_key(key.key_id, new.to_doc(), stored.revision),
    ]  # fmt: skip
    call.detail = f"crypto key {name.name}: version {number} created ({version.arn})"
    return Outcome(VersionResult(name, version, number, new), writes)
