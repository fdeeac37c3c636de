"""CreateCustomKeyStore, DescribeCustomKeyStores, UpdateCustomKeyStore,
ConnectCustomKeyStore, DisconnectCustomKeyStore, DeleteCustomKeyStore.

Account-level actions, as AWS has them: authorized by the caller's identity
policies on resource ``*`` (no key policy is involved), audited like every
operation, with the store's id in the record's detail. The rules of each
connection state are AWS's (CustomKeyStoreInvalidStateException): connect
neither a FAILED store (disconnect it first) nor, of course, a missing
one; disconnect only a store that is not DISCONNECTED; delete only a
DISCONNECTED store with no keys left (pending deletion included:
CustomKeyStoreHasCMKsException); change anything but the name only while
DISCONNECTED. What each type of store adds is ``custom_store_types.py``.
"""

from __future__ import annotations

import dataclasses

from keycask.errors import (
    CustomKeyStoreHasCMKsException,
    CustomKeyStoreInvalidStateException,
    CustomKeyStoreNameInUseException,
    CustomKeyStoreNotFoundException,
    InvalidMarkerException,
    LimitExceededException,
    ValidationException,
)
from keycask.keys.cache import Stored
from keycask.keys.custom_stores import (
    DISCONNECTED,
    FAILED,
    STORE_ID,
    CustomKeyStore,
    new_store_id,
)
from keycask.service.core.call import Call, Outcome
from keycask.service.core.custom_store_types import (
    DEFAULT_TYPE,
    TYPES,
    effective_state,
    type_fields,
)
from keycask.service.core.deps import Deps
from keycask.service.core.paging import page_limit
from keycask.service.core.requests import (
    CreateCustomKeyStoreRequest,
    CustomKeyStoreRequest,
    DescribeCustomKeyStoresRequest,
    UpdateCustomKeyStoreRequest,
)
from keycask.service.core.results import (
    CreateCustomKeyStoreResult,
    CustomKeyStoreEntry,
    DescribeCustomKeyStoresResult,
)

# AWS's quota: custom key stores per account and Region.
MAX_STORES = 10
DEFAULT_LIMIT = 1000


def _fields(request: object) -> dict[str, object]:
    return {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}  # type: ignore[arg-type]


async def _find(deps: Deps, call: Call, store_id: str) -> Stored[CustomKeyStore]:
    found = None
    if STORE_ID.fullmatch(store_id):
        found = await deps.keys.custom_store(call.account, call.region, store_id)
    if found is None:
        raise CustomKeyStoreNotFoundException(
            f"Custom key store {store_id} does not exist in this account and Region."
        )
    call.detail = f"custom key store {store_id}"
    return found


async def _name_free(deps: Deps, call: Call, name: str, store_id: str) -> int:
    """How many stores the account has here; the name must be no other's."""
    stores = await deps.keys.custom_stores(call.account, call.region)
    for other in stores:
        if other.value.name == name and other.value.store_id != store_id:
            raise CustomKeyStoreNameInUseException(
                f"A custom key store named {name} already exists in this account and Region."
            )
    return len(stores)


async def create_custom_key_store(
    deps: Deps, call: Call, req: CreateCustomKeyStoreRequest
) -> Outcome:
    await call.authorize("kms:CreateCustomKeyStore")
    store_type = TYPES[req.custom_key_store_type or DEFAULT_TYPE]
    fields = type_fields(store_type, _fields(req))
    if await _name_free(deps, call, req.custom_key_store_name, "") >= MAX_STORES:
        raise LimitExceededException(
            f"This account has {MAX_STORES} custom key stores in this Region, the most it may."
        )
    store = CustomKeyStore(
        store_id=new_store_id(),
        account=call.account,
        region=call.region,
        name=req.custom_key_store_name,
        store_type=store_type.name,
        created=deps.clock.now(),
    )
    store = await store_type.create(deps, call, fields, store)
    call.detail = f"custom key store {store.store_id} ({store.store_type})"
    return Outcome(
        CreateCustomKeyStoreResult(custom_key_store_id=store.store_id),
        [deps.keys.stage_put_custom_store(store, expect=0)],
    )


async def _entry(deps: Deps, call: Call, store: CustomKeyStore) -> CustomKeyStoreEntry:
    state, code = await effective_state(deps, call, store)
    return CustomKeyStoreEntry(
        custom_key_store_id=store.store_id,
        custom_key_store_name=store.name,
        custom_key_store_type=store.store_type,
        connection_state=state,
        connection_error_code=code,
        creation_date=store.created,
        **TYPES[store.store_type].entry(store),
    )


async def describe_custom_key_stores(
    deps: Deps, call: Call, req: DescribeCustomKeyStoresRequest
) -> Outcome:
    await call.authorize("kms:DescribeCustomKeyStores")
    if req.custom_key_store_id is not None and req.custom_key_store_name is not None:
        raise ValidationException("Specify CustomKeyStoreId or CustomKeyStoreName, not both.")
    stores = [s.value for s in await deps.keys.custom_stores(call.account, call.region)]
    if req.custom_key_store_id is not None:
        stores = [(await _find(deps, call, req.custom_key_store_id)).value]
    elif req.custom_key_store_name is not None:
        stores = [s for s in stores if s.name == req.custom_key_store_name]
        if not stores:
            raise CustomKeyStoreNotFoundException(
                f"No custom key store named {req.custom_key_store_name} exists in this "
                "account and Region."
            )
    if req.marker is not None:
        if not STORE_ID.fullmatch(req.marker):
            raise InvalidMarkerException("The marker is not valid.")
        stores = [s for s in stores if s.store_id > req.marker]
    limit = page_limit(req.limit, DEFAULT_LIMIT)
    page = stores[:limit]
    truncated = len(stores) > limit
    return Outcome(
        DescribeCustomKeyStoresResult(
            custom_key_stores=[await _entry(deps, call, s) for s in page],
            truncated=truncated,
            next_marker=page[-1].store_id if truncated else None,
        )
    )


async def update_custom_key_store(
    deps: Deps, call: Call, req: UpdateCustomKeyStoreRequest
) -> Outcome:
    await call.authorize("kms:UpdateCustomKeyStore")
    stored = await _find(deps, call, req.custom_key_store_id)
    store = stored.value
    store_type = TYPES[store.store_type]
    fields = type_fields(store_type, _fields(req))
    new = store
    if req.new_custom_key_store_name is not None:
        await _name_free(deps, call, req.new_custom_key_store_name, store.store_id)
        new = new.replace(name=req.new_custom_key_store_name)
    if any(value is not None for value in fields.values()):
        state, _ = await effective_state(deps, call, store)
        if state != DISCONNECTED:
            raise CustomKeyStoreInvalidStateException(
                f"Custom key store {store.store_id} is {state}: only its name can change "
                "until it is disconnected (DisconnectCustomKeyStore)."
            )
        new = await store_type.update(deps, call, fields, new)
    if new == store:
        return Outcome()
    return Outcome(None, [deps.keys.stage_put_custom_store(new, expect=stored.revision)])


async def connect_custom_key_store(deps: Deps, call: Call, req: CustomKeyStoreRequest) -> Outcome:
    await call.authorize("kms:ConnectCustomKeyStore")
    stored = await _find(deps, call, req.custom_key_store_id)
    store = stored.value
    state, _ = await effective_state(deps, call, store)
    if state == FAILED:
        raise CustomKeyStoreInvalidStateException(
            f"Custom key store {store.store_id} is FAILED: disconnect it "
            "(DisconnectCustomKeyStore), then connect it again."
        )
    if state != DISCONNECTED:
        return Outcome()  # connected already
    reached, code = await TYPES[store.store_type].connect(deps, call, store)
    call.detail = f"custom key store {store.store_id}: {reached}" + (f" ({code})" if code else "")
    new = store.replace(state=reached, error_code=code)
    return Outcome(None, [deps.keys.stage_put_custom_store(new, expect=stored.revision)])


async def disconnect_custom_key_store(
    deps: Deps, call: Call, req: CustomKeyStoreRequest
) -> Outcome:
    await call.authorize("kms:DisconnectCustomKeyStore")
    stored = await _find(deps, call, req.custom_key_store_id)
    store = stored.value
    if store.state == DISCONNECTED:
        raise CustomKeyStoreInvalidStateException(
            f"Custom key store {store.store_id} is already DISCONNECTED."
        )
    new = store.replace(state=DISCONNECTED, error_code=None)
    return Outcome(None, [deps.keys.stage_put_custom_store(new, expect=stored.revision)])


async def delete_custom_key_store(deps: Deps, call: Call, req: CustomKeyStoreRequest) -> Outcome:
    await call.authorize("kms:DeleteCustomKeyStore")
    stored = await _find(deps, call, req.custom_key_store_id)
    store = stored.value
    if store.state != DISCONNECTED:
        raise CustomKeyStoreInvalidStateException(
            f"Custom key store {store.store_id} is {store.state}: disconnect it "
            "(DisconnectCustomKeyStore) before deleting it."
        )
    if await deps.keys.custom_store_keys(store.store_id, limit=1):
        raise CustomKeyStoreHasCMKsException(
            f"Custom key store {store.store_id} still has KMS keys: schedule their deletion "
            "and wait for it to complete before deleting the store."
        )
    return Outcome(None, [deps.keys.stage_delete_custom_store(stored)])
