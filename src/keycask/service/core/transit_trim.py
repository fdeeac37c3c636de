"""Vault Transit's trim: old key versions destroyed for good.

Vault's trim deletes the key versions below ``min_available_version``, and
keycask does the same to the keycask key behind the transit name: the
material of each of those versions is deleted from the store in one commit
with the settings document that records the new floor. Nothing can open a
ciphertext of a trimmed version afterwards, through any door (the AWS door's
Decrypt finds no material and answers InvalidCiphertextException). The key's
rotation history (ListKeyRotations) still lists those versions: they
happened.

It is authorized as ``kms:ScheduleKeyDeletion``, the action AWS KMS gives
the power to destroy key material, with a waiting period of 0 days
(``kms:ScheduleKeyDeletionPendingWindowInDays``), on a key in a state that
ScheduleKeyDeletion takes (not one already waiting for deletion, which
CancelKeyDeletion could still bring back whole), and, as in Vault, it is only possible
once ``min_decryption_version`` and ``min_encryption_version`` (which need
``kms:PutKeyPolicy``, see ``transit.config_key``) already refuse the
versions it destroys: whoever raised them has had the time to see what
still used the old versions before anyone trims. There is no waiting
period after that, as in Vault.
"""

from __future__ import annotations

from keycask.errors import ValidationException
from keycask.keys.model import KeySpec, Origin
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.resolve import use_key
from keycask.service.core.transit import alias_name
from keycask.service.core.transit_requests import Settings, TransitKeyResult, TransitTrimRequest


def _check(req: TransitTrimRequest, settings: Settings) -> None:
    """Vault's own checks, in Vault's order, with Vault's messages."""
    wanted = req.min_available_version
    if wanted < settings.min_available_version:
        raise ValidationException("minimum available version cannot be decremented")
    if settings.min_encryption_version == 0:
        raise ValidationException(
            "minimum available version cannot be set when minimum encryption version is not set"
        )
    if wanted > settings.min_encryption_version:
        raise ValidationException(
            "minimum available version cannot be greater than minimum encryption version"
        )
    if wanted > settings.min_decryption_version:
        raise ValidationException(
            "minimum available version cannot be greater than minimum decryption version"
        )
    if wanted < 0:
        raise ValidationException("minimum available version cannot be negative")
    if wanted == 0:
        raise ValidationException("minimum available version should be positive")


async def trim_key(deps: Deps, call: Call, req: TransitTrimRequest) -> Outcome:
    # Destroyed at once: a waiting period of 0 days, so that a policy denying
    # deletion with too short a window (NumericLessThan) denies trim too.
    call.conditions["kms:ScheduleKeyDeletionPendingWindowInDays"] = 0
    key = (
        await use_key(
            deps.keys,
            call,
            alias_name(req.mount, req.name),
            "kms:ScheduleKeyDeletion",
            state="ScheduleKeyDeletion",
            allow_alias=True,
        )
    ).value
    # Material shared by several keys' records (a multi-Region set) or
    # imported by its owner is not this door's to destroy version by version.
    if key.mrk is not None:
        raise ValidationException(
            "trim is not supported for multi-Region keys: every copy shares their versions"
        )
    if key.origin is not Origin.AWS_KMS or key.key_spec is not KeySpec.SYMMETRIC_DEFAULT:
        raise ValidationException(
            "trim is supported for aes256-gcm96 keys whose material keycask made"
        )
    stored = await deps.keys.transit_settings(key.key_id)
    settings = Settings.from_doc(stored.value)
    _check(req, settings)
    new = Settings(
        settings.min_decryption_version,
        settings.min_encryption_version,
        settings.deletion_allowed,
        settings.derived,
        req.min_available_version,
    )
    start = max(settings.min_available_version, 1)
    trimmed = range(start, req.min_available_version)
    writes = [deps.keys.stage_transit_settings(key.key_id, new.to_doc(), stored.revision)]
    writes.extend(deps.keys.stage_delete_material(key.key_id, v) for v in trimmed)
    call.detail = (
        f"transit key {req.mount}/{req.name} trimmed: min_available_version "
        f"{req.min_available_version}, "
        + (
            f"material of versions {trimmed.start} to {trimmed.stop - 1} destroyed"
            if trimmed
            else "no version destroyed"
        )
    )
    return Outcome(TransitKeyResult(req.name, "aes256-gcm96", key, new), writes)
