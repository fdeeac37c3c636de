"""CreateAlias, UpdateAlias, DeleteAlias, ListAliases."""

from __future__ import annotations

from keycask.errors import (
    AlreadyExistsException,
    InvalidMarkerException,
    NotAuthorizedException,
    NotFoundException,
    ValidationException,
)
from keycask.keys.keystore import Stored
from keycask.keys.model import Alias, Key, alias_arn
from keycask.keys.states import require_state
from keycask.service.call import Call, Outcome
from keycask.service.deps import Deps
from keycask.service.paging import page_limit
from keycask.service.requests import AliasRequest, DeleteAliasRequest, ListAliasesRequest
from keycask.service.resolve import resolve_key
from keycask.service.results import AliasListEntry, ListAliasesResult


def _check_name(name: str) -> None:
    """AWS's checks and answers, in AWS's order (the codec has already
    checked the model's length and pattern, ^[a-zA-Z0-9:/_-]+$)."""
    if not name.startswith("alias/") or len(name) <= len("alias/"):
        raise ValidationException(
            'Alias must start with the prefix "alias/". Please see '
            "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
        )
    if name.startswith("alias/aws/"):
        raise NotAuthorizedException(
            "Alias names that begin with alias/aws/ are reserved for AWS managed keys."
        )
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
    _check_name(req.alias_name)
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
    now = deps.clock.now()
    alias = Alias(req.alias_name, call.account, call.region, target.key_id, now, now)
    return Outcome(None, deps.keys.stage_put_alias(alias, expect=0))


async def update_alias(deps: Deps, call: Call, req: AliasRequest) -> Outcome:
    _check_name(req.alias_name)
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
    alias = Alias(
        req.alias_name,
        call.account,
        call.region,
        target.key_id,
        existing.value.created,
        deps.clock.now(),
    )
    return Outcome(None, deps.keys.stage_put_alias(alias, expect=existing.revision))


async def delete_alias(deps: Deps, call: Call, req: DeleteAliasRequest) -> Outcome:
    _check_name(req.alias_name)
    arn = alias_arn(call.region, call.account, req.alias_name)
    existing = await deps.keys.get_alias(call.account, call.region, req.alias_name)
    if existing is None:
        raise NotFoundException(f"Alias {arn} is not found.")
    await call.authorize("kms:DeleteAlias", resource=arn)
    # ...and on the key it points to (AWS requires both).
    current = await deps.keys.get(existing.value.target)
    if current is not None:
        call.key_arn = current.value.arn
        await call.authorize("kms:DeleteAlias", current.value)
    return Outcome(None, deps.keys.stage_delete_alias(existing))


async def list_aliases(deps: Deps, call: Call, req: ListAliasesRequest) -> Outcome:
    limit = page_limit(req.limit, 50)
    target = None
    if req.key_id is not None:
        key = (await resolve_key(deps.keys, call, req.key_id)).value
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
    truncated = len(found) > limit
    page = found[:limit]
    return Outcome(
        ListAliasesResult(
            aliases=[
                AliasListEntry(
                    alias_name=a.name,
                    alias_arn=a.arn,
                    target_key_id=str(a.target),
                    creation_date=a.created,
                    last_updated_date=a.updated,
                )
                for a in page
            ],
            truncated=truncated,
            next_marker=page[-1].name if truncated else None,
        )
    )
