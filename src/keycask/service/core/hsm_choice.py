"""Which HSM key store a key made through a door that names no store goes
into: the Cloud KMS door's protection level HSM (``gcp_hsm``) and the
Azure Key Vault door's RSA-HSM and EC-HSM key types (``azure``).

The rule: the caller's account's AWS_CLOUDHSM custom key store in the
Region that is connected with its token answering; with several, the
oldest (creation time, then id), so the choice does not change when
another store is added or connected. With none, ``KMSInvalidStateException``
names the step that is missing: an ``--hsm`` for the account,
CreateCustomKeyStore, ConnectCustomKeyStore (each door answers it its own
way).
"""

from __future__ import annotations

import dataclasses

from keycask.errors import KMSInvalidStateException
from keycask.keys.custom_stores import CustomKeyStore
from keycask.keys.model import Origin
from keycask.service.core import requests as aws
from keycask.service.core.call import Call
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import keys
from keycask.service.core.hsm_keys import store_available

_STORE_TYPE = "AWS_CLOUDHSM"


def _missing(call: Call, what: str, door: tuple[str, str]) -> KMSInvalidStateException:
    return KMSInvalidStateException(
        f"{door[0]} needs a connected HSM key store of this account in "
        f"{call.region}, and {what}. See docs/hsm.md; {door[1]}"
    )


async def store_for(deps: Deps, call: Call, door: tuple[str, str]) -> CustomKeyStore:
    """The custom key store a new HSM-backed key goes into (the module's
    rule), or ``KMSInvalidStateException`` naming the next step. ``door``:
    what the caller asked for and what it may do instead, for the
    message."""
    if not any(deps.hsm.account_of(name) == call.account for name in deps.hsm.names()):
        raise _missing(
            call,
            "this keycask server has no HSM for this account: configure one (keycask "
            "server --hsm NAME[@ACCOUNT]=MODULE_PATH:TOKEN_LABEL), then create a custom key "
            "store of type AWS_CLOUDHSM naming it (CreateCustomKeyStore) and connect it "
            "(ConnectCustomKeyStore), through the AWS door",
            door,
        )
    stores = sorted(
        (
            s.value
            for s in await deps.keys.custom_stores(call.account, call.region)
            if s.value.store_type == _STORE_TYPE
        ),
        key=lambda s: (s.created, s.store_id),
    )
    if not stores:
        raise _missing(
            call,
            "it has none: create a custom key store of type AWS_CLOUDHSM naming a configured "
            "HSM (CreateCustomKeyStore) and connect it (ConnectCustomKeyStore), through the "
            "AWS door",
            door,
        )
    for store in stores:
        if await store_available(deps, store):
            return store
    names = ", ".join(f"{s.store_id} ({s.state})" for s in stores)
    raise _missing(
        call,
        f"none of its AWS_CLOUDHSM custom key stores ({names}) is connected with its HSM "
        "answering: connect one (ConnectCustomKeyStore), or make its HSM answer again",
        door,
    )


async def in_hsm(
    deps: Deps, call: Call, req: aws.CreateKeyRequest, door: tuple[str, str]
) -> aws.CreateKeyRequest:
    """CreateKey's request for an HSM-backed key: authorized as CreateKey
    with Origin AWS_CLOUDHSM first (the conditions CreateKey checks for a
    custom key store, ``kms:KeyOrigin`` among them), then in the store this
    module's rule picks."""
    req = dataclasses.replace(req, origin=Origin.AWS_CLOUDHSM.value)
    await keys.authorize_create(call, req)
    store = await store_for(deps, call, door)
    return dataclasses.replace(req, custom_key_store_id=store.store_id)
