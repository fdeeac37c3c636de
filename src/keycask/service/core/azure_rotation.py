"""Key Vault's rotation policies, carried out by keycask's scheduler.

A key's policy (its lifetime actions and expiryTime) is kept in the key's
settings document, and the scheduler carries out both of its actions. Each
has its schedule entry for the key's first keycask key, staged with every
change that moves it (``azure_schedule.stage_entries``: the policy put, a
version made or its exp changed, the key recovered or restored); an entry
that comes due early (the key was rotated by hand since, or the policy
changed) only schedules the right time.

- Rotate (``JOB_AZURE_ROTATE``, ``rotate_due``) comes due
  ``timeAfterCreate`` after the latest version was created, or
  ``timeBeforeExpiry`` before the latest version's exp. The scheduler then
  makes a new version (a keycask key of its own, as rotate does, with the
  latest version's key spec, usage, key_ops and tags, and exp = now +
  expiryTime when the policy has one) and stages the next entry.
- Notify (``JOB_AZURE_NOTIFY``, ``notices_due``; timeBeforeExpiry only, as
  in Key Vault) is Key Vault's KeyNearExpiry event, which keycask, having
  no Event Grid, gives as an audit record (``AzureKeyVault.KeyNearExpiry``,
  door azure-keyvault, principal keycask, the version's key ARN), a
  key_near_expiry log event and the keycask_key_near_expiry_notices_total
  counter (``announce``). It fires once for each version whose exp is that
  close and still ahead, whether enabled or not: the version records the
  trigger it fired for and the exp it fired at (``Notified``) in the same
  commit, so a restart, the dev clock or another node finds it done; a new
  exp or another timeBeforeExpiry arms it again. A version without exp,
  already expired, or whose keycask key is gone or pending deletion gets
  none, nor does a soft-deleted key.

Both run as the scheduler's other jobs do: under the store's exclusive
write lock, re-reading the settings, audited before the commit, which
expects the settings' revision: however many nodes share the store, one
carries out each action.

Authorization: getting a policy is ``kms:GetKeyRotationStatus``, putting
one ``kms:EnableKeyRotation`` (``kms:DisableKeyRotation`` for a policy
without a Rotate action), on the key's first keycask key, as the AWS
door's automatic rotation is.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from keycask import metrics
from keycask.crypto import generate_private_key, key_material_id
from keycask.errors import UnsupportedOperationException, ValidationException
from keycask.keys.keystore import KeyStore
from keycask.keys.model import Alias, Key, KeyState, KeyVersion, Origin
from keycask.ports import Write
from keycask.service.core.azure import anchor_of, find_version_key, gate_write
from keycask.service.core.azure_requests import (
    KeyRef,
    Notified,
    PolicyRequest,
    PolicyResult,
    RotationPolicy,
    Settings,
    Version,
    duration_days,
)
from keycask.service.core.azure_schedule import (
    DAY,
    due_at,
    iso,
    next_notice,
    notify_due,
    stage_entries,
)
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.offload import run_slow
from keycask.service.core.resolve import authorize_key

MIN_ROTATE_DAYS = 7  # Key Vault's shortest timeAfterCreate for Rotate
MIN_EXPIRY_DAYS = 28  # and its shortest expiryTime
MAX_DAYS = 36500
# The door the policy's actions are audited and counted under.
DOOR = "azure-keyvault"
NOTIFY_OPERATION = "AzureKeyVault.KeyNearExpiry"
ROTATE_OPERATION = "AzureKeyVault.RotateKey"

log = logging.getLogger("keycask")


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
        elif action.action == "Notify":
            raise ValidationException(
                "A Notify action's trigger is timeBeforeExpiry: it notifies before a version "
                "expires."
            )
        elif days < MIN_ROTATE_DAYS:
            raise ValidationException(
                f"The timeAfterCreate of a Rotate action must be at least {MIN_ROTATE_DAYS} days."
            )


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
    if rotates and anchor.custom_key_store_id is not None:
        # The scheduler makes a rotation's new key in software: an -HSM key
        # rotated by policy would quietly leave the HSM. Such keys rotate by
        # the rotate operation, which makes the new version in the token.
        raise UnsupportedOperationException(
            "a rotation policy with a Rotate action cannot be set on a key held in an HSM "
            "(RSA-HSM, EC-HSM): rotate it with the rotate operation, which makes the new "
            "version in the HSM"
        )
    now = deps.clock.now().timestamp()
    created = settings.policy.created if settings.policy is not None else now
    policy = dataclasses.replace(req.policy, created=created, updated=now)
    new = dataclasses.replace(settings, policy=policy)
    writes: list[Write] = [
        deps.keys.stage_azure_key(anchor.key_id, new.to_doc(), stored.revision),
        *stage_entries(deps.keys, anchor.key_id, new, now),
    ]
    due = due_at(policy, settings.latest)
    call.detail = f"Azure key {req.ref.vault}/{req.ref.name}: rotation policy " + (
        f"rotates next at {iso(max(due, now))}" if due is not None else "without a Rotate action"
    )
    notice = next_notice(new, now)
    if notice is not None:
        call.detail += f", notifies next at {iso(max(notice, now))}"
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
    if model.custom_key_store_id is not None or anchor.custom_key_store_id is not None:
        # Never in software for a key held in an HSM (put_policy refuses
        # such a policy; a policy stored before that refusal stops here).
        log.error(
            "Azure key %s/%s is held in an HSM: its rotation policy is not carried out; "
            "rotate it with the rotate operation",
            settings.vault,
            settings.name,
        )
        return [], None
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
                    exp=None if expiry is None else stamp + expiry * DAY,
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
        writes.append(keys.stage_azure_rotate(anchor.key_id, max(following, stamp + DAY)))
    notice = next_notice(new, stamp)
    if notice is not None:
        writes.append(keys.stage_azure_notify(anchor.key_id, max(notice, stamp)))
    return writes, (
        f"Azure key {ref.vault}/{ref.name} rotated by its policy: version {key_id.hex} ({key.arn})"
    )


@dataclass(frozen=True, slots=True)
class Notice:
    """One version's KeyNearExpiry: what its audit record, log event and
    metric say."""

    ref: KeyRef
    key: Key  # the version's keycask key
    version: str
    exp: float
    before: str  # the Notify action's timeBeforeExpiry, as given
    now: float

    @property
    def detail(self) -> str:
        days = round((self.exp - self.now) / DAY)
        return (
            f"Azure key {self.ref.vault}/{self.ref.name} version {self.version} expires "
            f"{iso(self.exp)} (in {days} day(s)): its rotation policy's Notify action "
            f"(timeBeforeExpiry {self.before})"
        )


async def notices_due(
    keys: KeyStore, anchor: Key, now: datetime
) -> tuple[list[Write], list[Notice]]:
    """The scheduler's job: a notice for each version the Notify action is
    due for, each recorded in the settings (its writes: the settings and
    the next entry), else only the entry for when one will be due (no
    notices). Nothing for a key deleted or without a Notify action."""
    stored = await keys.azure_key(anchor.key_id)
    settings = Settings.from_doc(stored.value)
    if settings is None or settings.deleted is not None or settings.policy is None:
        return [], []
    notify = settings.policy.action("Notify")
    stamp = now.timestamp()
    due = [
        entry
        for entry in settings.versions
        if (when := notify_due(settings.policy, entry, stamp)) is not None and when <= stamp
    ]
    if notify is None or not due:
        later = next_notice(settings, stamp)
        return ([] if later is None else [keys.stage_azure_notify(anchor.key_id, later)]), []
    ref = KeyRef(settings.vault, settings.name)
    new = settings
    notices = []
    for entry in due:
        assert entry.exp is not None
        done = Notified(entry.exp, ()) if entry.notified is None else entry.notified
        new = new.replace(dataclasses.replace(entry, notified=done.add(entry.exp, notify.days)))
        found = await find_version_key(keys, anchor, entry)
        if found is None or found.state in (
            KeyState.PENDING_DELETION,
            KeyState.PENDING_REPLICA_DELETION,
        ):
            continue  # recorded, not noticed: the version is going or gone
        notices.append(Notice(ref, found, entry.id, entry.exp, notify.duration, stamp))
    writes: list[Write] = [keys.stage_azure_key(anchor.key_id, new.to_doc(), stored.revision)]
    later = next_notice(new, stamp)
    if later is not None:
        writes.append(keys.stage_azure_notify(anchor.key_id, max(later, stamp)))
    return writes, notices


def announce(notice: Notice) -> None:
    """Once the notice is committed: its log event (key_near_expiry,
    the fields an operator acts on) and its count."""
    metrics.KEY_NEAR_EXPIRY.labels(DOOR).inc()
    log.warning(
        "%s",
        notice.detail,
        extra={
            "event": "key_near_expiry",
            "fields": {
                "door": DOOR,
                "operation": NOTIFY_OPERATION,
                "vault": notice.ref.vault,
                "key": notice.ref.name,
                "version": notice.version,
                "exp": iso(notice.exp),
                "time_before_expiry": notice.before,
                "key_arn": notice.key.arn,
                "account": notice.key.account,
                "region": notice.key.region,
            },
        },
    )
