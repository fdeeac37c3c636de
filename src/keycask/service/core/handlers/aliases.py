"""CreateAlias, UpdateAlias, DeleteAlias, ListAliases."""

from __future__ import annotations

from keycask.errors import (
    AlreadyExistsException,
    InvalidMarkerException,
    LimitExceededException,
    NotAuthorizedException,
    NotFoundException,
    ValidationException,
)
from keycask.keys.keystore import Stored
from keycask.keys.model import Alias, Key, KeySpec, alias_arn
from keycask.keys.states import require_state
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.managed import MANAGED_ALIASES
from keycask.service.core.paging import page_limit
from keycask.service.core.requests import AliasRequest, DeleteAliasRequest, ListAliasesRequest
from keycask.service.core.resolve import authorize_key, resolve_key
from keycask.service.core.results import AliasListEntry, ListAliasesResult

# AWS's quota on aliases per KMS key (Developer Guide, "Resource quotas":
# customer created aliases; adjustable there, fixed here).
MAX_ALIASES_PER_KEY = 50


def _key_type(key: Key) -> str:
    if key.key_spec is KeySpec.SYMMETRIC_DEFAULT:
        return "symmetric"
    return "HMAC" if key.key_spec.is_hmac else "asymmetric"


async def _check_alias_quota(deps: Deps, call: Call, target: Key) -> None:
    """A 51st alias for one key is LimitExceededException (AWS). Counted by
    scanning the account's aliases in the Region: they are few (ListAliases
    filtering by key does the same)."""
    count = 0
    after = ""
    while True:
        batch = await deps.keys.list_aliases(call.account, call.region, after, 500)
        count += sum(1 for a in batch if a.target == target.key_id)
        if len(batch) < 500:
            break
        after = batch[-1].name
    if count >= MAX_ALIASES_PER_KEY:
        raise LimitExceededException(
            f"The request was rejected because {target.arn} already has "
            f"{MAX_ALIASES_PER_KEY} aliases, the limit for a KMS key."
        )


# Alias name prefixes no caller's CreateAlias, UpdateAlias or DeleteAlias
# may write: (prefix, the door whose own operations write such aliases,
# what they are for). alias/aws/ is AWS's (its managed keys, made by
# keycask itself); alias/gcp/ names the Google Cloud KMS door's crypto keys
# and their versions (service/core/gcp.py), which that door writes
# directly: a name another door could take would let its holder stand in
# for someone else's crypto key version. alias/azure/ names the Azure Key
# Vault door's keys and their versions (service/core/azure.py), likewise.
RESERVED_ALIAS_PREFIXES: tuple[tuple[str, str | None, str], ...] = (
    ("alias/aws/", None, "AWS managed keys"),
    ("alias/gcp/", "gcp-kms", "the Cloud KMS door's crypto keys"),
    ("alias/azure/", "azure-keyvault", "the Azure Key Vault door's keys"),
)


def reserved_for_another_door(name: str, door: str | None) -> str | None:
    """What ``name`` is reserved for, if ``door`` may not write it; None if
    it may. Every writer of aliases asks: CreateAlias and UpdateAlias here,
    and the doors that write aliases of their own (Vault Transit's
    ``alias/<mount>/<name>``), so no door can take another's name."""
    for prefix, owner, use in RESERVED_ALIAS_PREFIXES:
        if name.startswith(prefix) and (owner is None or door != owner):
            return f"Alias names that begin with {prefix} are reserved for {use}."
    return None


def reserved_mount_segments() -> frozenset[str]:
    """The first path segments a door that names aliases ``alias/<segment>/...``
    (Vault Transit's mounts) must never take."""
    return frozenset(prefix.split("/")[1] for prefix, _, _ in RESERVED_ALIAS_PREFIXES)


def _check_name(call: Call, name: str) -> None:
    """AWS's checks and answers, in AWS's order (the codec has already
    checked the model's length and pattern, ^[a-zA-Z0-9:/_-]+$)."""
    if not name.startswith("alias/") or len(name) <= len("alias/"):
        raise ValidationException(
            'Alias must start with the prefix "alias/". Please see '
            "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
        )
    reserved = reserved_for_another_door(name, call.door)
    if reserved is not None:
        raise NotAuthorizedException(reserved)
    if ":" in name:
        # The model's pattern allows ':', AWS's alias names do not.
        raise ValidationException(f"{name} contains invalid characters for an alias")


def _check_target(ref: str) -> None:
    if ref.startswith("alias/") or (ref.startswith("arn:") and ":alias/" in ref):
        raise ValidationException("Aliases must refer to keys. Not aliases")


async def _target(deps: Deps, call: Call, ref: str, operation: str) -> Stored[Key]:
    stored = await resolve_key(deps.keys, call, ref)
    key = stored.value
    if key.account != call.account:
        raise NotFoundException(f"Key '{key.arn}' does not exist")
    require_state(operation, key)
    return stored


async def create_alias(deps: Deps, call: Call, req: AliasRequest) -> Outcome:
    _check_name(call, req.alias_name)
    _check_target(req.target_key_id)
    target = (await _target(deps, call, req.target_key_id, "CreateAlias")).value
    call.key_arn = target.arn
    await call.authorize(
        "kms:CreateAlias", resource=alias_arn(call.region, call.account, req.alias_name)
    )
    await call.authorize("kms:CreateAlias", target)
    if await deps.keys.get_alias(call.account, call.region, req.alias_name) is not None:
        raise AlreadyExistsException(
            f"An alias with the name {alias_arn(call.region, call.account, req.alias_name)} "
            "already exists"
        )
    await _check_alias_quota(deps, call, target)
    now = deps.clock.now()
    alias = Alias.to_key(req.alias_name, target, now, now)
    return Outcome(None, deps.keys.stage_put_alias(alias, expect=0))


async def update_alias(deps: Deps, call: Call, req: AliasRequest) -> Outcome:
    _check_name(call, req.alias_name)
    _check_target(req.target_key_id)
    existing = await deps.keys.get_alias(call.account, call.region, req.alias_name)
    arn = alias_arn(call.region, call.account, req.alias_name)
    if existing is None:
        raise NotFoundException(f"Alias {arn} is not found.")
    target = (await _target(deps, call, req.target_key_id, "UpdateAlias")).value
    call.key_arn = target.arn
    await call.authorize("kms:UpdateAlias", resource=arn)
    await call.authorize("kms:UpdateAlias", target)
    # AWS also requires the permission on the key the alias points to now:
    # repointing an alias away from a key changes what its users encrypt to.
    current = await deps.keys.get(existing.value.target)
    if current is not None and current.value.key_id != target.key_id:
        await call.authorize("kms:UpdateAlias", current.value)
        old = current.value
        # AWS: "The current and new KMS key must be the same type (both
        # symmetric or both asymmetric or both HMAC), and they must have the
        # same key usage", so code using the alias keeps working.
        if _key_type(old) != _key_type(target) or old.key_usage is not target.key_usage:
            raise ValidationException(
                f"Alias {arn} cannot be moved from a {_key_type(old)} key with key usage "
                f"{old.key_usage.value} to a {_key_type(target)} key with key usage "
                f"{target.key_usage.value}: the current and new KMS key must be the same "
                "type and have the same key usage."
            )
        await _check_alias_quota(deps, call, target)
    alias = Alias.to_key(req.alias_name, target, existing.value.created, deps.clock.now())
    return Outcome(None, deps.keys.stage_put_alias(alias, expect=existing.revision))


async def delete_alias(deps: Deps, call: Call, req: DeleteAliasRequest) -> Outcome:
    _check_name(call, req.alias_name)
    arn = alias_arn(call.region, call.account, req.alias_name)
    existing = await deps.keys.get_alias(call.account, call.region, req.alias_name)
    if existing is None:
        raise NotFoundException(f"Alias {arn} is not found.")
    await call.authorize("kms:DeleteAlias", resource=arn)
    # ...and on the key it points to (AWS requires both).
    current = await deps.keys.get(existing.value.target)
    if current is not None:
        await authorize_key(call, current.value, "kms:DeleteAlias")
    return Outcome(None, deps.keys.stage_delete_alias(existing))


async def list_aliases(deps: Deps, call: Call, req: ListAliasesRequest) -> Outcome:
    limit = page_limit(req.limit, 50)
    target = None
    if req.key_id is not None:
        key = (await resolve_key(deps.keys, call, req.key_id)).value
        if key.account != call.account:
            # ListAliases never lists another account's aliases (as in AWS),
            # and nothing is authorized on the key: the answer must not tell
            # another account's existing key from a missing one.
            raise NotFoundException(f"Key '{key.arn}' does not exist")
        call.key_arn = key.arn
        target = key.key_id
    await call.authorize("kms:ListAliases")
    after = req.marker or ""
    if after and not after.startswith("alias/"):
        raise InvalidMarkerException("The marker is not valid.")
    found: list[Alias] = []
    # Filtering by key means scanning: aliases are few per account and region.
    while len(found) <= limit:
        batch = await deps.keys.list_aliases(call.account, call.region, after, 500)
        if not batch:
            break
        found += [a for a in batch if target is None or a.target == target]
        after = batch[-1].name
    entries = [
        AliasListEntry(
            alias_name=a.name,
            alias_arn=a.arn,
            target_key_id=a.target_public_id,
            creation_date=a.created,
            last_updated_date=a.updated,
        )
        for a in found
    ]
    if target is None:
        entries = _with_predefined(entries, call, req.marker or "", limit)
    truncated = len(entries) > limit
    page = entries[:limit]
    return Outcome(
        ListAliasesResult(
            aliases=page,
            truncated=truncated,
            next_marker=page[-1].alias_name if truncated else None,
        )
    )


def _with_predefined(
    entries: list[AliasListEntry], call: Call, marker: str, limit: int
) -> list[AliasListEntry]:
    """``entries`` (stored aliases after ``marker``, in name order, at most
    ``limit`` + 1) with the predefined alias/aws/<service> aliases whose key
    is not made yet, as AWS lists them: no TargetKeyId, no dates. Only those
    up to the last stored entry read, when there may be more stored ones."""
    have = {e.alias_name for e in entries}
    last = entries[-1].alias_name if len(entries) > limit else None
    extra = [
        AliasListEntry(alias_name=name, alias_arn=alias_arn(call.region, call.account, name))
        for name in MANAGED_ALIASES
        if name > marker and name not in have and (last is None or name < last)
    ]
    if not extra:
        return entries
    return sorted([*entries, *extra], key=lambda e: e.alias_name)
