"""Turning the references callers use (key id, key ARN, alias name, alias
ARN) into keys, as AWS accepts them per operation."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from keycask.arn import Arn
from keycask.config import partition
from keycask.errors import NotFoundException
from keycask.keys.ids import parse_mrk, record_id
from keycask.keys.keystore import KeyStore, Stored
from keycask.keys.model import Alias, Key, alias_arn, key_arn
from keycask.keys.states import require_state
from keycask.policy.conditions import ContextInput
from keycask.policy.request_context import REQUEST_ALIAS
from keycask.service.core.call import Call
from keycask.service.core.managed import is_managed_alias


def _parse_uuid(text: str) -> uuid.UUID | None:
    if len(text) != 36:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class KeyReference:
    """What a reference names, before anything is read: a key by id, or an
    alias by name, in ``account``. A multi-Region key's ``key_id`` is its
    record id in the caller's region, and ``public_id`` its ``mrk-`` id; a
    single-Region key's are the UUID and its text."""

    account: str
    key_id: uuid.UUID | None = None
    alias: str | None = None
    public_id: str = ""

    @property
    def multi_region(self) -> bool:
        return self.public_id.startswith("mrk-")


def _key_reference(account: str, region: str, text: str) -> KeyReference | None:
    """A key id as text (a UUID or ``mrk-`` and 32 hex digits), or None."""
    mrk = parse_mrk(text)
    if mrk is not None:
        return KeyReference(account, key_id=record_id(mrk, region), public_id=text)
    key_id = _parse_uuid(text)
    if key_id is None:
        return None
    return KeyReference(account, key_id=key_id, public_id=str(key_id))


def parse_reference(ref: str, *, account: str, region: str, allow_alias: bool) -> KeyReference:
    """Read ``ref`` as a caller of ``account`` in ``region`` means it (AWS's
    rules and error messages); NotFoundException if it cannot name a key."""
    if ref.startswith("arn:"):
        arn = Arn.parse_or_none(ref)
        # One partition is served (--partition): an ARN of another names a
        # key that cannot be here, whatever its id.
        if arn is None or arn.service != "kms" or arn.partition != partition():
            raise NotFoundException(f"Invalid arn {ref}")
        arn_region, resource = arn.region, arn.resource
        if resource.startswith("alias/"):
            if not allow_alias:
                raise NotFoundException(f"Invalid keyId '{ref}'")
            # Aliases are never usable across accounts (as in AWS): answering
            # NotFound also keeps other accounts' alias names unprobeable.
            if arn_region != region or arn.account != account:
                raise NotFoundException(f"Alias {ref} is not found.")
            return KeyReference(account, alias=resource)
        if arn_region != region:
            # AWS's words for a key ARN of another Region (the endpoint serves
            # one Region; the ARN is never looked up).
            raise NotFoundException(f"Invalid arn {arn_region}")
        if not resource.startswith("key/"):
            raise NotFoundException(f"Key '{ref}' does not exist")
        # An ARN may name another account: authorization decides.
        found = _key_reference(arn.account, region, resource[4:])
        if found is None:
            raise NotFoundException(f"Key '{ref}' does not exist")
        return found
    if ref.startswith("alias/"):
        if not allow_alias:
            raise NotFoundException(f"Invalid keyId '{ref}'")
        return KeyReference(account, alias=ref)
    found = _key_reference(account, region, ref)
    if found is None:
        raise NotFoundException(f"Invalid keyId '{ref}'")
    return found


# References already read, by (reference, account, region, aliases allowed,
# partition): callers name their keys by the same few strings over and over,
# and reading one (an ARN split, a UUID parsed) was ~2.7 of the ~3.4 us
# resolve_key took per Encrypt (thread_time, min of 7 x 5000). Only
# references that parse are kept (a refused one raises first), none longer
# than any ARN or alias name keycask serves, in a bounded first-in-first-out map.
_PARSED: dict[tuple[str, str, str, bool, str], KeyReference] = {}
_PARSED_MAX = 4096
_PARSED_LENGTH = 320


def _reference(ref: str, account: str, region: str, allow_alias: bool) -> KeyReference:
    """``parse_reference``, remembered."""
    cache_key = (ref, account, region, allow_alias, partition())
    found = _PARSED.get(cache_key)
    if found is None:
        found = parse_reference(ref, account=account, region=region, allow_alias=allow_alias)
        if len(ref) <= _PARSED_LENGTH:
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.pop(next(iter(_PARSED)), None)
            _PARSED[cache_key] = found
    return found


async def resolve_key(
    keys: KeyStore, call: Call, ref: str, *, allow_alias: bool = False
) -> Stored[Key]:
    """Find the key ``ref`` names, in the caller's region.

    A bare key id or alias name means the caller's own account; an ARN may
    name another account, and authorization decides whether that is allowed.
    """
    caller = call.caller
    assert caller is not None
    target = _reference(ref, caller.principal.account, caller.region, allow_alias)
    if target.alias is not None:
        return await _resolve_alias(keys, call, target.account, target.alias)
    return await _load_reference(keys, target, call.region)


async def find_key(
    keys: KeyStore, ref: str, *, account: str, region: str
) -> tuple[Stored[Key], str | None]:
    """The key ``ref`` names for a caller of ``account`` in ``region``, by
    the server's rules, without a call (the policy tools), and the alias
    name it was named by (``kms:RequestAlias``), if any. Nothing is made:
    an AWS managed key not used yet is not found."""
    target = parse_reference(ref, account=account, region=region, allow_alias=True)
    if target.alias is not None:
        alias = await keys.get_alias(target.account, region, target.alias)
        if alias is None:
            raise NotFoundException(
                f"Alias {alias_arn(region, target.account, target.alias)} is not found."
            )
        return await _load(keys, alias.value, target.account, region), target.alias
    return await _load_reference(keys, target, region), None


async def _resolve_alias(keys: KeyStore, call: Call, account: str, name: str) -> Stored[Key]:
    call.conditions[REQUEST_ALIAS] = name
    alias = await keys.get_alias(account, call.region, name)
    if alias is None and call.managed is not None and is_managed_alias(name):
        # A predefined alias/aws/<service> alias: its AWS managed key is
        # made on first use, as in AWS, if the caller may use it.
        candidate, _, _ = call.managed.new_key(account, call.region, name)
        action = _FIRST_USE_ACTIONS.get(call.operation or "", f"kms:{call.operation}")
        if not await call.would_allow(action, candidate):
            await call.authorize(action, candidate)  # records the refusal and raises
        alias = await call.managed.ensure(
            account,
            call.region,
            name,
            by=call.caller.principal.arn if call.caller else "?",
            request_id=call.request_id,
        )
    if alias is None:
        raise NotFoundException(f"Alias {alias_arn(call.region, account, name)} is not found.")
    return await _load(keys, alias.value, account, call.region)


# The action a first use of a managed alias is authorized for, where it is
# not "kms:<operation>" (ReEncrypt names its destination by alias).
_FIRST_USE_ACTIONS = {"ReEncrypt": "kms:ReEncryptTo"}


async def _load(keys: KeyStore, alias: Alias, account: str, region: str) -> Stored[Key]:
    """The key ``alias`` targets (by its stored id, a record id included)."""
    stored = await keys.get(alias.target)
    if stored is None or stored.value.account != account or stored.value.region != region:
        arn = key_arn(region, account, alias.target_public_id)
        raise NotFoundException(f"Key '{arn}' does not exist")
    return stored


async def _load_reference(keys: KeyStore, target: KeyReference, region: str) -> Stored[Key]:
    """The key a caller's key id names. A UUID that is a multi-Region copy's
    record id names nothing: record ids are internal and never resolve."""
    assert target.key_id is not None
    stored = await keys.get(target.key_id)
    if (
        stored is None
        or stored.value.account != target.account
        or stored.value.region != region
        or (stored.value.mrk is not None) != target.multi_region
    ):
        arn = key_arn(region, target.account, target.public_id)
        raise NotFoundException(f"Key '{arn}' does not exist")
    return stored


async def use_key(
    keys: KeyStore,
    call: Call,
    ref: str,
    action: str,
    *,
    state: str | None = None,
    allow_alias: bool = False,
    context: Mapping[str, ContextInput] | None = None,
) -> Stored[Key]:
    """The key ``ref`` names, once the caller may do ``action`` with it: see
    ``authorize_key``. ``allow_alias``: the operation takes an alias name or
    ARN for a key (as AWS documents it per operation)."""
    stored = await resolve_key(keys, call, ref, allow_alias=allow_alias)
    # authorize_key's body, inline: Encrypt comes here, and one coroutine
    # fewer per request is worth four repeated lines.
    key = stored.value
    call.key_arn = key.arn
    await call.authorize(action, key, context=context)
    if state is not None:
        require_state(state, key)
    return stored


async def authorize_key(
    call: Call,
    key: Key,
    action: str,
    *,
    state: str | None = None,
    context: Mapping[str, ContextInput] | None = None,
) -> None:
    """Record ``key`` on the call (its audit record names it, allowed or
    not), authorize ``action`` on it, then check the key state table's row
    for the operation ``state`` (None: the operation works in every state).
    Authorization comes first, as in AWS: a caller who may not use the key
    learns nothing of its state."""
    call.key_arn = key.arn
    await call.authorize(action, key, context=context)
    if state is not None:
        require_state(state, key)
