"""ReplicateKey and UpdatePrimaryRegion: the multi-Region set's own operations.

A multi-Region key is a set of regional copies that share their id, material
and the fields in ``model.SHARED_FIELDS`` (issue 22). Both operations are
called in the primary's region and change the whole set in one commit
(``KeyStore.stage_set_update``), so the transient states AWS shows while it
copies between its regions (Creating, Updating) are never observed here: the
replica is Enabled (or PendingImport) and the primary has moved the moment
the call answers.
"""

from __future__ import annotations

import re

from keycask.errors import (
    AlreadyExistsException,
    NotFoundException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.keys.cache import Stored
from keycask.keys.ids import record_id
from keycask.keys.model import Key, KeyState, default_key_policy, key_arn
from keycask.keys.states import require_state
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers.keys import check_lockout, check_policy, policy_principals
from keycask.service.core.handlers.tags import validate_new_tags
from keycask.service.core.multiregion_results import ReplicateKeyResult
from keycask.service.core.requests import ReplicateKeyRequest, UpdatePrimaryRegionRequest
from keycask.service.core.resolve import use_key
from keycask.service.core.results import KeyMetadata

# The model's RegionType (ReplicaRegion, PrimaryRegion), within what a SigV4
# scope may name (auth/sigv4.py): a region keycask can serve.
_REGION = re.compile(r"([a-z]+-){2,3}[0-9]+")


def _region(value: str, member: str) -> str:
    if len(value) > 32 or not _REGION.fullmatch(value):
        raise ValidationException(
            f"1 validation error detected: Value '{value[:64]}' at '{member}' failed to "
            r"satisfy constraint: Member must satisfy regular expression pattern: "
            r"^([a-z]+-){2,3}\d+$"
        )
    return value


def require_primary(key: Key, operation: str) -> None:
    """Only a multi-Region primary key is replicated or hands over its role;
    AWS names UnsupportedOperationException for the keys an operation does
    not support."""
    if key.mrk is None:
        raise UnsupportedOperationException(
            f"{key.arn} is not a multi-Region key; {operation} supports multi-Region "
            "primary keys only."
        )
    if key.multi_region_type != "PRIMARY":
        raise UnsupportedOperationException(
            f"{key.arn} is a multi-Region replica key; call {operation} on its primary "
            f"key, in {key.primary_region}."
        )


async def _usable_primary(
    deps: Deps, call: Call, key_id: str, operation: str, *, region: str, member: str
) -> tuple[Stored[Key], str]:
    """The primary ``key_id`` names, once ``kms:<operation>`` is allowed on
    it with the region (``member``, the request's) as its condition key, and
    its state allows the operation; and the region, checked."""
    checked = _region(region, member)
    call.conditions[_REGION_CONDITIONS[operation]] = checked
    stored = await use_key(deps.keys, call, key_id, "kms:" + operation)
    require_primary(stored.value, operation)
    require_state(operation, stored.value)
    assert stored.value.mrk is not None
    return stored, checked


_REGION_CONDITIONS = {
    "ReplicateKey": "kms:ReplicaRegion",
    "UpdatePrimaryRegion": "kms:PrimaryRegion",
}


async def replicate_key(deps: Deps, call: Call, req: ReplicateKeyRequest) -> Outcome:
    stored, region = await _usable_primary(
        deps, call, req.key_id, "ReplicateKey", region=req.replica_region, member="replicaRegion"
    )
    primary = stored.value
    assert primary.mrk is not None
    replica_id = record_id(primary.mrk, region)
    # Whatever state the copy there is in (PendingDeletion included), the
    # region holds the key: AWS answers AlreadyExists until it is deleted.
    if region in primary.regions or await deps.keys.get(replica_id) is not None:
        there = key_arn(region, primary.account, primary.public_id)
        raise AlreadyExistsException(f"{there} already exists.")
    tags_in = {t["tag_key"]: t["tag_value"] for t in req.tags or []}
    # The replica is a new key in its region: kms:CreateKey there, from the
    # caller's own policies (it has no key policy yet), as CreateKey is.
    await call.authorize(
        "kms:CreateKey",
        context={
            "aws:RequestedRegion": region,
            "kms:KeySpec": primary.key_spec.value,
            "kms:CustomerMasterKeySpec": primary.key_spec.value,
            "kms:KeyUsage": primary.key_usage.value,
            "kms:CustomerMasterKeyUsage": primary.key_usage.value,
            "kms:KeyOrigin": primary.origin.value,
            "kms:MultiRegion": True,
            "kms:MultiRegionKeyType": "REPLICA",
            "kms:BypassPolicyLockoutSafetyCheck": bool(req.bypass_policy_lockout_safety_check),
            **{"aws:RequestTag/" + k: v for k, v in tags_in.items()},
            **({"aws:TagKeys": tuple(tags_in)} if tags_in else {}),
        },
    )
    if req.policy is not None:
        check_policy(req.policy)
    tags = validate_new_tags((), req.tags or [])
    regions = tuple(sorted({*primary.regions, region}))
    replica = Key(
        key_id=replica_id,
        account=primary.account,
        region=region,
        created=deps.clock.now(),
        description=req.description or "",
        state=KeyState.ENABLED,
        policy=req.policy if req.policy is not None else default_key_policy(primary.account),
        tags=tags,
        mrk=primary.mrk,
        **{**primary.shared(), "regions": regions},
    ).settled()
    if tags:
        await call.authorize(
            "kms:TagResource",
            replica,
            context={
                "aws:RequestedRegion": region,
                **{"aws:RequestTag/" + k: v for k, v in tags_in.items()},
                "aws:TagKeys": tuple(tags_in),
            },
        )
    if req.policy is not None:
        replica = replica.replace(policy_principals=await policy_principals(deps, req.policy))
        await check_lockout(call, replica, req.bypass_policy_lockout_safety_check)
    # One commit: the replica, and every copy's list of regions.
    writes = await deps.keys.stage_set_update(primary, {"regions": regions})
    writes.extend(deps.keys.stage_create(replica, None))
    call.detail = f"replica {replica.arn}"
    return Outcome(
        ReplicateKeyResult(
            replica_key_metadata=KeyMetadata.of(replica),
            replica_policy=replica.policy,
            replica_tags=list(replica.tags),
        ),
        writes,
    )


async def update_primary_region(deps: Deps, call: Call, req: UpdatePrimaryRegionRequest) -> Outcome:
    stored, region = await _usable_primary(
        deps,
        call,
        req.key_id,
        "UpdatePrimaryRegion",
        region=req.primary_region,
        member="primaryRegion",
    )
    primary = stored.value
    assert primary.mrk is not None
    if region == primary.region:
        raise ValidationException(
            f"{primary.arn} is already the primary key; PrimaryRegion must name a "
            "Region that holds one of its replica keys."
        )
    found = await deps.keys.get(record_id(primary.mrk, region))
    if found is None or region not in primary.regions:
        raise NotFoundException(
            f"{primary.public_id} has no replica key in {region}; replicate it there first."
        )
    replica = found.value
    # Both keys authorize it (AWS): the caller must be allowed on each.
    await call.authorize("kms:UpdatePrimaryRegion", replica)
    require_state("UpdatePrimaryRegion", replica)
    # One commit: every copy names the new primary, and the rotation
    # schedule moves with it (keys/paths.py: only the primary has one).
    writes = await deps.keys.stage_set_update(primary, {"primary_region": region})
    call.detail = f"primary moved from {primary.region} to {region}: {replica.arn}"
    return Outcome(None, writes)
