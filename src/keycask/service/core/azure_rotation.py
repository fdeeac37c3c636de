"""Key Vault's rotation policies, carried out by keycask's scheduler.

A key's policy (its lifetime actions and expiryTime) is kept in the key's
settings document. Its Rotate action comes due ``timeAfterCreate`` after
the latest version was created, or ``timeBeforeExpiry`` before the latest
version's exp; the schedule entry ``JOB_AZURE_ROTATE`` for the key's first
keycask key is staged when the policy is put, and the scheduler
(``rotate_due``) then makes a new version (a keycask key of its own, as
rotate does, with the latest version's key spec, usage, key_ops and tags,
and exp = now + expiryTime when the policy has one) and stages the next
entry. An entry that comes due early (the key was rotated by hand since,
or the policy changed) only schedules the right time. Notify actions are
kept and shown: keycask has no event service to notify through.

Authorization: getting a policy is ``kms:GetKeyRotationStatus``, putting
one ``kms:EnableKeyRotation`` (``kms:DisableKeyRotation`` for a policy
without a Rotate action), on the key's first keycask key, as the AWS
door's automatic rotation is.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

from keycask.crypto import generate_private_key, key_material_id
from keycask.errors import ValidationException
from keycask.keys.keystore import KeyStore
from keycask.keys.model import Alias, Key, KeyState, KeyVersion, Origin
from keycask.ports import Write
from keycask.service.core.azure import anchor_of, gate_write
from keycask.service.core.azure_requests import (
    KeyRef,
    PolicyRequest,
    PolicyResult,
    RotationPolicy,
    Settings,
    Version,
    duration_days,
)
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.offload import run_slow
from keycask.service.core.resolve import authorize_key

MIN_ROTATE_DAYS = 7  # Key Vault's shortest timeAfterCreate for Rotate
MIN_EXPIRY_DAYS = 28  # and its shortest expiryTime
MAX_DAYS = 36500
_DAY = 86400.0


def check(policy: RotationPolicy) -> None:
    """Key Vault's rules for a policy: one action of each type, each with
    one trigger of whole days; timeBeforeExpiry only with an expiryTime."""
    seen = set()
    expiry = None if policy.expiry is None else duration_days(policy.expiry)
    if policy.expiry is not None and (expiry is None or not MIN_EXPIRY_DAYS <= expiry <= MAX_DAYS):
        raise ValidationException(
            f"expiryTime must be an ISO 8601 duration of {MIN_EXPIRY_DAYS} days or more "
            "(P28D, P90D, P1Y, ...)."
        )
    for action in policy.actions:
        if action.action not in ("Rotate", "Notify"):
            raise ValidationException("A lifetime action's type must be Rotate or Notify.")
        if action.action in seen:
            raise ValidationException(f"A rotation policy holds one {action.action} action.")
        seen.add(action.action)
        days = duration_days(action.duration)
        if days is None or not 1 <= days <= MAX_DAYS:
            raise ValidationException(
                f"The {action.trigger} of a {action.action} action must be an ISO 8601 duration "
                "of whole days (P30D, P3M, P1Y, ...)."
            )
        if action.trigger == "timeBeforeExpiry":
            if expiry is None:
                raise ValidationException("timeBeforeExpiry needs the policy's expiryTime.")
            if days >= expiry:
                raise ValidationException("timeBeforeExpiry must be shorter than expiryTime.")
        elif action.action == "Rotate" and days < MIN_ROTATE_DAYS:
            raise ValidationException(
                f"The timeAfterCreate of a Rotate action must be at least {MIN_ROTATE_DAYS} days."
            )


def due_at(policy: RotationPolicy | None, latest: Version) -> float | None:
    """When the Rotate action comes due for ``latest`` (None: never)."""
    rotate = None if policy is None else policy.action("Rotate")
    if rotate is None:
        return None
    if rotate.trigger == "timeAfterCreate":
        return latest.created + rotate.days * _DAY
    if latest.exp is None:
        return None
    return latest.exp - rotate.days * _DAY


async def get_policy(deps: Deps, call: Call, req: PolicyRequest) -> Outcome:
    anchor, _, settings = await anchor_of(deps, call, req.ref)
    await authorize_key(call, anchor, "kms:GetKeyRotationStatus")
    return Outcome(PolicyResult(req.ref, req.base, settings.policy))


async def put_policy(deps: Deps, call: Call, req: PolicyRequest) -> Outcome:
    assert req.policy is not None
    anchor, stored, settings = await anchor_of(deps, call, req.ref)
    rotates = req.policy.action("Rotate") is not None
    await authorize_key(
        call, anchor, "kms:EnableKeyRotation" if rotates else "kms:DisableKeyRotation"
    )
    check(req.policy)
    now = deps.clock.now().timestamp()
    created = settings.policy.created if settings.policy is not None else now
    policy = dataclasses.replace(req.policy, created=created, updated=now)
    new = dataclasses.replace(settings, policy=policy)
    writes: list[Write] = [deps.keys.stage_azure_key(anchor.key_id, new.to_doc(), stored.revision)]
    due = due_at(policy, settings.latest)
    if due is not None:
        writes.append(deps.keys.stage_azure_rotate(anchor.key_id, max(due, now)))
    call.detail = f"Azure key {req.ref.vault}/{req.ref.name}: rotation policy " + (
        f"rotates next at {datetime.fromtimestamp(max(due, now)).isoformat()}"
        if due is not None
        else "without a Rotate action"
    )
    return Outcome(PolicyResult(req.ref, req.base, policy), writes)


async def rotate_due(keys: KeyStore, anchor: Key, now: datetime) -> tuple[list[Write], str | None]:
    """The scheduler's job: a new version if the key's Rotate action is due
    (its writes and the audit detail), else only the entry for when it will
    be (detail None). Nothing for a key deleted or without a policy."""
    stored = await keys.azure_key(anchor.key_id)
    settings = Settings.from_doc(stored.value)
    if settings is None or settings.deleted is not None:
        return [], None
    latest = settings.latest
    due = due_at(settings.policy, latest)
    if due is None:
        return [], None
    if due > now.timestamp():
        return [keys.stage_azure_rotate(anchor.key_id, due)], None
    like = await keys.get(latest.key_id)
    model = anchor if like is None else like.value
    spec, usage = model.key_spec, model.key_usage
    material = await run_slow(generate_private_key, spec.value)
    key_id = uuid.uuid4()
    ref = KeyRef(settings.vault, settings.name)
    key = Key(
        key_id, anchor.account, anchor.region, now,
        f"Azure Key Vault key {ref.vault}/{ref.name}", KeyState.ENABLED, anchor.policy,
        key_usage=usage, key_spec=spec, origin=Origin.AWS_KMS, current_version=1,
        versions=(KeyVersion(1, key_material_id(material, key_id.bytes)),), last_version=1,
        policy_principals=anchor.policy_principals,
    )  # fmt: skip
    assert settings.policy is not None
    expiry = None if settings.policy.expiry is None else duration_days(settings.policy.expiry)
    stamp = now.timestamp()
    entry = Version(key_id.hex, stamp, stamp, latest.ops,
                    exp=None if expiry is None else stamp + expiry * _DAY,
                    tags=dict(latest.tags))  # fmt: skip
    new = dataclasses.replace(settings, versions=(*settings.versions, entry))
    alias = Alias(ref.version_alias(key_id.hex), anchor.account, anchor.region, key_id, now, now)
    writes: list[Write] = [
        *keys.stage_create(key, material),
        *keys.stage_put_alias(alias, expect=0),
        keys.stage_azure_key(anchor.key_id, new.to_doc(), stored.revision),
        gate_write(keys, entry),
    ]
    following = due_at(settings.policy, entry)
    if following is not None:
        writes.append(keys.stage_azure_rotate(anchor.key_id, max(following, stamp + _DAY)))
    return writes, (
        f"Azure key {ref.vault}/{ref.name} rotated by its policy: version {key_id.hex} ({key.arn})"
    )
